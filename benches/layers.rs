//! Where a training step of the tutorial CNN goes, layer by layer at the model's own
//! shapes (batch 25, 180 x 180): each layer's forward pass, then its backward pass
//! (through a loss that weights every output element differently, whose own time is
//! measured alone and taken off), the fastest of several runs (on a shared machine
//! other work slows some). `cargo bench --bench layers`; BENCHMARKS.md has a table.
//! `REPEATS` sets the runs (5), `ONLY` times only the layers whose name contains it.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use std::time::Instant;

use candle_core::{DType, Device, Module, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr::distribute::Strategy;
use cxr::nn::modules::{Rescaling, batch_norm, conv2d_same, max_pool2d, separable_conv2d};
use cxr::nn::{BatchNormConfig, SeparableConv2dConfig};

/// Runs of each timing, `REPEATS` in the environment or 5.
fn repeats() -> usize {
    std::env::var("REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1)
}

/// The fastest of [`repeats`] runs of `f` after one warm-up, each until `device` has
/// finished it (a GPU works asynchronously).
fn seconds(
    device: &Device,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    device.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats() {
        let start = Instant::now();
        f()?;
        device.synchronize()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Forward and backward time of `layer` on an input of `shape`.
fn time(
    name: &str,
    shape: (usize, usize, usize, usize),
    layer: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    (device, total): (&Device, &mut (f64, f64)),
) -> candle_core::Result<()> {
    if !name.contains(std::env::var("ONLY").as_deref().unwrap_or("")) {
        return Ok(());
    }
    let x = Var::from_tensor(&Tensor::rand(0f32, 1f32, shape, device)?)?;
    let forward = seconds(device, || layer(&x).map(|_| ()))?;
    let y = layer(&x)?;
    let mix = Tensor::rand(0f32, 1f32, y.shape(), device)?;
    let both = seconds(device, || {
        let y = layer(&x)?;
        (y * &mix)?.sum_all()?.backward().map(|_| ())
    })?;
    // The loss itself (a product, a sum and their backward pass) timed alone at the
    // output's shape, and taken off.
    let z = Var::from_tensor(&y)?;
    let loss = seconds(device, || {
        (z.as_tensor() * &mix)?.sum_all()?.backward().map(|_| ())
    })?;
    let backward = (both - forward - loss).max(0.0);
    total.0 += forward;
    total.1 += backward;
    println!(
        "{name:<44} {:>8.2} ms forward {:>8.2} ms backward",
        forward * 1e3,
        backward * 1e3
    );
    Ok(())
}

fn main() -> cxr::Result<()> {
    let n = 25;
    let spec = std::env::var("DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = &Strategy::parse(&spec)?.devices()[0].clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let mut total = (0.0, 0.0);
    println!(
        "tutorial CNN layers ({spec}), batch {n}, fastest of {} runs",
        repeats()
    );
    let rescale = Rescaling {
        scale: 1.0 / 255.0,
        offset: 0.0,
    };
    time(
        "rescaling 3 x 180 x 180",
        (n, 3, 180, 180),
        &|x| x.apply(&rescale),
        (device, &mut total),
    )?;
    let conv1 = conv2d_same(3, 16, 3, vb.pp("conv1"))?.with_relu();
    time(
        "conv + relu 3 -> 16, 180 x 180",
        (n, 3, 180, 180),
        &|x| conv1.forward(x),
        (device, &mut total),
    )?;
    let conv2 = conv2d_same(16, 16, 3, vb.pp("conv2"))?.with_relu();
    time(
        "conv + relu 16 -> 16, 180 x 180",
        (n, 16, 180, 180),
        &|x| conv2.forward(x),
        (device, &mut total),
    )?;
    time(
        "max-pool 16 x 180 x 180",
        (n, 16, 180, 180),
        &|x| max_pool2d(x, 2),
        (device, &mut total),
    )?;
    let mut size = 90;
    let mut c = 16;
    for (b, f) in [32, 64, 128, 256].into_iter().enumerate() {
        let cfg = SeparableConv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let sep1 = separable_conv2d(c, f, 3, cfg, vb.pp(format!("b{b}s1")))?.with_relu();
        let sep2 = separable_conv2d(f, f, 3, cfg, vb.pp(format!("b{b}s2")))?.with_relu();
        let bn = batch_norm(f, BatchNormConfig::keras(), vb.pp(format!("b{b}bn")))?;
        let at = format!("{size} x {size}");
        time(
            &format!("separable + relu {c} -> {f}, {at}"),
            (n, c, size, size),
            &|x| sep1.forward(x),
            (device, &mut total),
        )?;
        time(
            &format!("separable + relu {f} -> {f}, {at}"),
            (n, f, size, size),
            &|x| sep2.forward(x),
            (device, &mut total),
        )?;
        time(
            &format!("batch norm (training) {f} x {at}"),
            (n, f, size, size),
            &|x| bn.forward_t(x, true),
            (device, &mut total),
        )?;
        time(
            &format!("max-pool {f} x {at}"),
            (n, f, size, size),
            &|x| max_pool2d(x, 2),
            (device, &mut total),
        )?;
        size /= 2;
        c = f;
    }
    println!(
        "{:<44} {:>8.2} ms forward {:>8.2} ms backward",
        "sum of the layers above",
        total.0 * 1e3,
        total.1 * 1e3
    );
    Ok(())
}
