//! Forward-pass throughput of the course's models on the CPU (inference mode):
//! `cargo bench --bench models`. Results and the peer numbers (Keras on the same machine,
//! `benches/keras_models.py`) are in BENCHMARKS.md. `ONLY=vgg-layers` times VGG16's
//! layers one by one instead, beside `ONLY=vgg-layers benches/pytorch_models.py`.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use std::time::Instant;

use candle_core::{Device, ModuleT, Tensor};
use cxr::nn::Sequential;
use cxr::nn::kernels::conv2d_bias_relu;
use cxr::nn::layers::Dense;
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

/// VGG16's convolutions one by one at batch 1 (`ONLY=vgg-layers`): each distinct shape's
/// forward pass with bias and ReLU, the fastest of `REPEATS` runs (10), so that two builds
/// can be compared layer by layer on a machine whose speed moves between runs.
fn vgg_layers() -> cxr::Result<()> {
    let repeats = std::env::var("REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10usize)
        .max(1);
    let shapes = [
        (3, 64, 224),
        (64, 64, 224),
        (64, 128, 112),
        (128, 128, 112),
        (128, 256, 56),
        (256, 256, 56),
        (256, 512, 28),
        (512, 512, 28),
        (512, 512, 14),
    ];
    // SHAPE=512-512-14 times that one shape alone (for a profiler).
    let only = std::env::var("SHAPE").ok();
    let mut total = 0.0;
    for (c, o, size) in shapes {
        if only
            .as_ref()
            .is_some_and(|s| *s != format!("{c}-{o}-{size}"))
        {
            continue;
        }
        let x = Tensor::rand(0f32, 1f32, (1, c, size, size), &Device::Cpu)?;
        let w = Tensor::rand(-0.1f32, 0.1f32, (o, c, 3, 3), &Device::Cpu)?;
        let b = Tensor::rand(-0.1f32, 0.1f32, o, &Device::Cpu)?;
        let mut best = f64::INFINITY;
        for _ in 0..=repeats {
            let start = Instant::now();
            conv2d_bias_relu(&x, &w, Some(&b), 1)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (o * c * 9 * size * size) as f64 / best / 1e9;
        println!(
            "VGG16 conv {c:>3} -> {o:>3}, {size:>3} x {size:<3}: {:>7.2} ms, {gflops:>5.1} GFLOP/s",
            best * 1e3
        );
        println!("RESULT vgg16-conv-{c}-{o}-{size}.cxr {:.3}", best * 1e3);
        total += best;
    }
    println!("all shapes once: {:.1} ms", total * 1e3);
    // The dense layers at batch 1 read their weights once per image (411 and 67 MB).
    for (name, inputs, units) in [("fc1", 25088, 4096), ("fc2", 4096, 4096)] {
        let mut model = Sequential::new("dense", [inputs]).seed(1);
        model.add(name, Dense::new(units).relu())?;
        let x = Tensor::rand(0f32, 1f32, (1, inputs), &Device::Cpu)?;
        let mut best = f64::INFINITY;
        for _ in 0..=repeats {
            let start = Instant::now();
            model.forward_t(&x, false)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "VGG16 {name} {inputs} -> {units}, batch 1: {:.2} ms",
            best * 1e3
        );
        println!("RESULT vgg16-{name}.cxr {:.3}", best * 1e3);
    }
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
    if std::env::var("ONLY").is_ok_and(|m| m == "vgg-layers") {
        return vgg_layers();
    }
    // ONLY=cnn skips VGG16; ONLY=vgg16 runs it alone at batch BATCH (1), for a profiler.
    let only_cnn = std::env::var("ONLY").is_ok_and(|m| m == "cnn");
    if std::env::var("ONLY").is_ok_and(|m| m == "vgg16") {
        let vgg16 = vgg(VggConfig::vgg16())?;
        let batch = std::env::var("BATCH")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(1);
        let key = format!("vgg16-b{batch}");
        time(
            "VGG16 224x224",
            &key,
            &vgg16,
            (batch, 3, 224, 224),
            240 / batch.max(1),
        )?;
        return Ok(());
    }
    if !only_cnn {
        let vgg16 = vgg(VggConfig::vgg16())?;
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
