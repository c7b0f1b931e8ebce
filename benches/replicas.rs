//! Data-parallel scaling of the tutorial CNN's training steps over replicas, as
//! `cargo bench --bench replicas`. Each replica keeps 25 images per step, so the global
//! batch grows with the replicas (the tutorial's `BATCH_SIZE = 25 *
//! strategy.num_replicas_in_sync`); the number is images per second over the whole step
//! (shards, forward and backward on every replica at once, the all-reduce, Adam).
//!
//! `DEVICES="cpu;cpu:2;cpu:4"` (the default) names the strategies, as `--devices` does;
//! on a GPU machine built with `--features cuda`: `DEVICES="cuda:0;cuda:0,1"`.
//! `IMAGE` (180), `PER_REPLICA` (25) and `STEPS` (3) change the sizes; `CSV=FILE` also
//! writes the table (`replicas,images_per_second`), as `chapters/figures/ch09-scaling.csv`
//! holds it for the book's figure.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use cxr::data::Pipeline;
use cxr::distribute::Strategy;
use cxr::nn::{XrayCnnConfig, xray_cnn};
use cxr::train::{Adam, Constant, FitOptions};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> cxr::Result<()> {
    let image = env("IMAGE", 180);
    let per_replica = env("PER_REPLICA", 25);
    let steps = env("STEPS", 3);
    let specs = std::env::var("DEVICES").unwrap_or_else(|_| "cpu;cpu:2;cpu:4".into());
    println!(
        "tutorial CNN, {image} x {image}, {per_replica} images per replica per step, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rows = String::from("devices,replicas,images_per_second\n");
    for spec in specs.split(';') {
        let strategy = Strategy::parse(spec)?;
        let global = strategy.global_batch_size(per_replica);
        let mirrored = strategy.replicate(DType::F32, 0, |vb, r| {
            xray_cnn(
                XrayCnnConfig {
                    image_size: (image, image),
                    seed: r as u64,
                    ..Default::default()
                },
                vb,
            )
        })?;
        let mut trainer = mirrored.trainer(|w| Adam::new(w, Arc::new(Constant(1e-3))))?;
        let x = Tensor::rand(0f32, 255f32, (global, 3, image, image), &Device::Cpu)?;
        let y = Tensor::from_iter((0..global).map(|i| (i % 2) as f32), &Device::Cpu)?
            .reshape((global, 1))?;
        let data = Pipeline::from_vec(vec![(x, y)]);
        let options = |steps| FitOptions {
            epochs: 1,
            steps_per_epoch: Some(steps),
            progress: false,
            ..Default::default()
        };
        trainer.fit(&data, None, &options(1), &mut [])?;
        let start = Instant::now();
        trainer.fit(&data, None, &options(steps), &mut [])?;
        let per_step = start.elapsed().as_secs_f64() / steps as f64;
        println!(
            "{spec:<12} {} replica(s), global batch {global:>4}: {per_step:.2} s per step, {:.1} images/s",
            strategy.num_replicas_in_sync(),
            global as f64 / per_step
        );
        rows.push_str(&format!(
            "{spec},{},{:.2}\n",
            strategy.num_replicas_in_sync(),
            global as f64 / per_step
        ));
    }
    if let Ok(path) = std::env::var("CSV") {
        cxr::io::write_bytes_atomic(std::path::Path::new(&path), rows.as_bytes())?;
    }
    Ok(())
}
