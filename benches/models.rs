//! Forward-pass throughput of the course's models on the CPU (inference mode):
//! `cargo bench --bench models`. Results and the peer numbers (Keras on the same machine,
//! `benches/keras_models.py`) are in BENCHMARKS.md.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use std::time::Instant;

use candle_core::{Device, ModuleT, Tensor};
use cxr::nn::{VggConfig, XrayCnnConfig, vgg, xray_cnn};

fn time(
    name: &str,
    key: &str,
    model: &dyn ModuleT,
    shape: (usize, usize, usize, usize),
    repeats: usize,
) -> candle_core::Result<()> {
    let x = Tensor::rand(0f32, 255f32, shape, &Device::Cpu)?;
    model.forward_t(&x, false)?;
    let start = Instant::now();
    for _ in 0..repeats {
        model.forward_t(&x, false)?;
    }
    let per_batch = start.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{name:<32} batch {:>3}: {:>8.1} ms per batch, {:>7.1} images/s",
        shape.0,
        per_batch * 1000.0,
        shape.0 as f64 / per_batch
    );
    println!("RESULT {key}.cxr {:.3}", shape.0 as f64 / per_batch);
    Ok(())
}

fn main() -> cxr::Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "cxr {} on candle's CPU backend, {threads} threads",
        env!("CARGO_PKG_VERSION")
    );
    // ONLY=cnn skips VGG16 (for profiling the tutorial CNN alone).
    let only_cnn = std::env::var("ONLY").is_ok_and(|m| m == "cnn");
    let vgg16 = vgg(VggConfig::vgg16())?;
    if !only_cnn {
        time("VGG16 224x224", "vgg16-b1", &vgg16, (1, 3, 224, 224), 5)?;
        time("VGG16 224x224", "vgg16-b8", &vgg16, (8, 3, 224, 224), 2)?;
    }
    let cnn = xray_cnn(XrayCnnConfig::default())?;
    let repeats = if only_cnn { 30 } else { 5 };
    time(
        "tutorial CNN 180x180",
        "infer",
        &cnn,
        (25, 3, 180, 180),
        repeats,
    )?;
    Ok(())
}
