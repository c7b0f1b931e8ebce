#![doc = include_str!("../chapters/ch04-vgg.md")]

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Device, ModuleT, Tensor};

use crate::Result;
use crate::nn::{Sequential, Summary, VggConfig, vgg};
use crate::plot::{Figure, Panel, grid};

/// The parameters of each of the five convolution blocks and of each dense layer: where a
/// VGG keeps its weights.
pub fn parameters_by_part(summary: &Summary) -> Vec<(String, usize)> {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for row in &summary.rows {
        let part = match row.name.split_once('_') {
            Some((block, _)) if block.starts_with("block") => block.to_string(),
            _ => row.name.clone(),
        };
        let params = row.trainable + row.non_trainable;
        if params == 0 {
            continue;
        }
        match parts.last_mut() {
            Some((last, total)) if *last == part => *total += params,
            _ => parts.push((part, params)),
        }
    }
    parts
}

/// A bar chart of [`parameters_by_part`].
pub fn parameters_figure(summary: &Summary) -> Result<Figure> {
    let parts = parameters_by_part(summary);
    let bars: Vec<(&str, f64)> = parts
        .iter()
        .map(|(name, n)| (name.as_str(), *n as f64))
        .collect();
    let total = crate::nn::summary::with_commas(summary.total_params());
    let title = format!(
        "where {}'s {total} parameters sit",
        summary.name.to_uppercase()
    );
    grid(
        1,
        &[Panel::Bars {
            title: &title,
            unit: "parameters",
            bars: &bars,
        }],
    )
}

/// The mean time of one forward pass (inference mode) on a batch of `batch` random images,
/// after one pass to warm up.
pub fn time_forward(model: &Sequential, batch: usize, repeats: usize) -> Result<Duration> {
    let mut shape = vec![batch];
    shape.extend_from_slice(model.input_shape());
    let x = Tensor::rand(0f32, 255f32, shape, &Device::Cpu)?;
    model.forward_t(&x, false)?;
    let start = Instant::now();
    for _ in 0..repeats.max(1) {
        model.forward_t(&x, false)?;
    }
    Ok(start.elapsed() / repeats.max(1) as u32)
}

/// The whole lesson for `cxr lesson 4`: VGG16's summary, where its parameters sit
/// (`out/ch04-parameters.png`), and the time of a forward pass.
pub fn run(out: &Path) -> Result<Vec<String>> {
    let model = vgg(VggConfig::vgg16())?;
    let summary = model.summary();
    let figure = out.join("ch04-parameters.png");
    parameters_figure(&summary)?.save(&figure)?;
    let time = time_forward(&model, 1, 3)?;
    Ok(vec![
        summary.to_string(),
        format!(
            "forward pass, one 224 x 224 image: {:.0} ms (untrained weights)",
            time.as_secs_f64() * 1000.0
        ),
        format!("figure: {}", figure.display()),
    ])
}
