//! Training throughput of the tutorial's CNN: full steps (forward in training mode,
//! binary cross-entropy from the logit, backward, Adam) on batches of 25 images of
//! 180 x 180 x 3, as `cargo bench --bench train_step`. `benches/pytorch_train_step.py`
//! times the same model in PyTorch; BENCHMARKS.md has both. `DEVICE=cuda:0` (built with
//! `--features cuda`) times it on a GPU instead, reported as `train-cuda`; `BATCH` and
//! `STEPS` change the batch (reported with `-bN` when not 25) and the timed steps.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use std::time::Instant;

use candle_core::{ModuleT, Tensor};
use cxr::distribute::Strategy;
use cxr::nn::{XrayCnnConfig, xray_cnn_on};
use cxr::train::{Adam, Optimizer, binary_cross_entropy_with_logits};

fn main() -> cxr::Result<()> {
    let batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(25);
    let steps: usize = std::env::var("STEPS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(3);
    let spec = std::env::var("DEVICE").unwrap_or_else(|_| "cpu".into());
    let strategy = Strategy::parse(&spec)?;
    let device = strategy.devices()[0].clone();
    let mut key = String::from(if device.is_cpu() {
        "train"
    } else {
        "train-cuda"
    });
    if batch != 25 {
        key += &format!("-b{batch}");
    }
    let model = xray_cnn_on(XrayCnnConfig::default(), &device)?;
    let mut adam = Adam::new(1e-3);
    adam.bind(model.trainable_variables()?)?;
    let x = Tensor::rand(0f32, 255f32, (batch, 3, 180, 180), &device)?;
    let y = Tensor::rand(0f32, 1f32, (batch, 1), &device)?.round()?;
    // A GPU works asynchronously: a phase's time is known once the device has finished it.
    let done = || device.synchronize();
    let step = |adam: &mut Adam| -> cxr::Result<(f64, f64, f64)> {
        let t0 = Instant::now();
        let logits = model.forward_t(&x, true)?;
        let loss = binary_cross_entropy_with_logits(&logits, &y, None)?;
        done()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        done()?;
        let t2 = Instant::now();
        adam.step(&grads)?;
        done()?;
        let t3 = Instant::now();
        Ok((
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ))
    };
    // Two warm-up steps, as the Keras peer takes. A step's backward pass takes 0.14-0.16 s
    // on the 2-core AVX-512 machine, but one in five or so takes 0.22-0.55 s (within a
    // run, and so in the first step timed): compare.py times eight steps on every side.
    step(&mut adam)?;
    step(&mut adam)?;
    let (mut forward, mut backward, mut update) = (0.0, 0.0, 0.0);
    let start = Instant::now();
    for _ in 0..steps {
        let (f, b, u) = step(&mut adam)?;
        forward += f;
        backward += b;
        update += u;
    }
    let per_step = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "cxr tutorial CNN ({spec}), batch {batch}: {:.3} s per step (forward {:.2}, backward {:.2}, Adam {:.3}), {:.1} images/s",
        per_step,
        forward / steps as f64,
        backward / steps as f64,
        update / steps as f64,
        batch as f64 / per_step
    );
    println!("RESULT {key}.cxr {:.3}", batch as f64 / per_step);
    Ok(())
}
