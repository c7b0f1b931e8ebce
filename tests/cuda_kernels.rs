//! The CUDA halves of cxr's kernels against their CPU halves (which `nn_kernels.rs`
//! checks against candle's ops): outputs and every gradient, from the same inputs.
//! Built only with `--features cuda` (`cargo test --release --features cuda --test
//! cuda_kernels`); on a machine without a GPU each test says so and passes, since there
//! is nothing to compare.

use candle_core::{Device, Tensor, Var};
use cxr::nn::kernels::{
    AdamStep, adam_update, batch_norm_train, conv2d_bias, conv2d_bias_relu, depthwise_conv2d,
    max_pool2d, separable_conv2d,
};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("no CUDA device ({e}): nothing to compare");
            None
        }
    }
}

/// Replayable values in [-1, 1) from a small linear congruential generator.
fn values(seed: u64, shape: &[usize]) -> Tensor {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest difference between `a` and `b` (any devices), relative to `b`'s largest
/// magnitude.
fn relative_difference(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    let a: Vec<f32> = a.to_vec1().unwrap();
    let b: Vec<f32> = b.to_vec1().unwrap();
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Runs `f` on both devices from the same inputs, with `loss = sum(out * r)` for a fixed
/// `r`; compares the outputs and every input's gradient.
fn compare(
    what: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> candle_core::Result<Vec<Tensor>>,
    tolerance: f32,
) {
    let Some(gpu) = gpu() else { return };
    let run = |device: &Device| {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
            .collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let outs = f(&tensors).unwrap();
        let mut loss = Tensor::zeros((), candle_core::DType::F32, device).unwrap();
        for (i, out) in outs.iter().enumerate() {
            let r = values(100 + i as u64, out.dims())
                .to_device(device)
                .unwrap();
            loss = (loss + (out * r).unwrap().sum_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        let grads: Vec<Option<Tensor>> = vars.iter().map(|v| grads.get(v).cloned()).collect();
        (outs, grads)
    };
    let (cpu_out, cpu_grads) = run(&Device::Cpu);
    let (gpu_out, gpu_grads) = run(&gpu);
    for (i, (a, b)) in gpu_out.iter().zip(&cpu_out).enumerate() {
        let d = relative_difference(a, b);
        println!("{what}: output {i} differs by {d:.2e}");
        assert!(d < tolerance, "{what}: output {i} differs by {d}");
    }
    for (i, (a, b)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => {
                let d = relative_difference(a, b);
                println!("{what}: gradient of input {i} differs by {d:.2e}");
                assert!(
                    d < tolerance,
                    "{what}: gradient of input {i} differs by {d}"
                );
            }
            (None, None) => {}
            _ => panic!("{what}: input {i} has a gradient on one device only"),
        }
    }
}

#[test]
fn depthwise_convolutions_match_the_cpu() {
    for (k, padding, size) in [
        (3, 1, (9, 11)),
        (3, 0, (7, 5)),
        (5, 2, (6, 13)),
        (3, 2, (4, 4)),
    ] {
        let x = values(1, &[2, 5, size.0, size.1]);
        let w = values(2, &[5, 1, k, k]);
        compare(
            &format!("depthwise k={k} p={padding}"),
            &[x, w],
            |t| Ok(vec![depthwise_conv2d(&t[0], &t[1], padding)?]),
            1e-5,
        );
    }
    // Enough positions for the kernel gradient to be summed in several parts.
    let (x, w) = (values(3, &[4, 3, 90, 90]), values(4, &[3, 1, 3, 3]));
    compare(
        "depthwise 4x3x90x90",
        &[x, w],
        |t| Ok(vec![depthwise_conv2d(&t[0], &t[1], 1)?]),
        1e-5,
    );
}

#[test]
fn convolutions_match_the_cpu() {
    for (c, o, padding, size) in [
        (3, 16, 1, (17, 15)),
        (16, 16, 1, (17, 15)),
        (4, 6, 0, (17, 15)),
        (16, 16, 1, (40, 37)),
        (3, 20, 2, (9, 70)),
        // Too many input channels for the direct kernels: candle's convolution, with the
        // input gradient as a convolution.
        (40, 8, 1, (12, 11)),
    ] {
        let x = values(20, &[3, c, size.0, size.1]);
        let (w, b) = (values(21, &[o, c, 3, 3]), values(22, &[o]));
        compare(
            &format!("conv {c} -> {o} p={padding} {size:?}"),
            &[x, w, b],
            |t| Ok(vec![conv2d_bias_relu(&t[0], &t[1], Some(&t[2]), padding)?]),
            1e-4,
        );
    }
}

#[test]
fn convolutions_without_relu_match_the_cpu() {
    let x = values(23, &[2, 16, 21, 19]);
    let (w, b) = (values(24, &[16, 16, 3, 3]), values(25, &[16]));
    compare(
        "conv 16 -> 16 + bias, no relu",
        &[x, w, b],
        |t| Ok(vec![conv2d_bias(&t[0], &t[1], Some(&t[2]), 1)?]),
        1e-4,
    );
}

#[test]
fn separable_convolutions_match_the_cpu() {
    let x = values(5, &[3, 8, 12, 10]);
    let (dw, pw, b) = (
        values(6, &[8, 1, 3, 3]),
        values(7, &[16, 8, 1, 1]),
        values(8, &[16]),
    );
    compare(
        "separable + relu",
        &[x, dw, pw, b],
        |t| Ok(vec![separable_conv2d(&t[0], &t[1], &t[2], &t[3], 1, true)?]),
        1e-5,
    );
}

#[test]
fn batch_norm_matches_the_cpu() {
    for shape in [vec![3, 4, 5, 6], vec![7, 6], vec![25, 32, 45, 45]] {
        let c = shape[1];
        let x = (values(9, &shape) * 3.0).unwrap().affine(1.0, 0.5).unwrap();
        let (gamma, beta) = (values(10, &[c]), values(11, &[c]));
        compare(
            &format!("batch norm {shape:?}"),
            &[x, gamma, beta],
            |t| {
                let (y, mean, var) = batch_norm_train(&t[0], &t[1], &t[2], 1e-3)?;
                Ok(vec![y, mean, var])
            },
            1e-4,
        );
    }
}

#[test]
fn max_pooling_matches_the_cpu() {
    for (k, shape) in [
        (2, [2, 3, 9, 8]),
        (2, [25, 16, 180, 180]),
        (3, [2, 2, 10, 7]),
    ] {
        let x = values(12, &shape);
        compare(
            &format!("max pool k={k} {shape:?}"),
            &[x],
            |t| Ok(vec![max_pool2d(&t[0], k)?]),
            1e-7,
        );
    }
}

#[test]
fn adam_updates_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let step = AdamStep {
        beta_1: 0.9,
        beta_2: 0.999,
        alpha: 0.01,
        epsilon: 1e-7,
    };
    let run = |device: &Device| {
        let on = |t: Tensor| Var::from_tensor(&t.to_device(device).unwrap()).unwrap();
        let (w, m, v) = (
            on(values(13, &[33, 7])),
            on(values(14, &[33, 7])),
            on(values(15, &[33, 7]).sqr().unwrap()),
        );
        for s in 0..3 {
            let g = values(16 + s, &[33, 7]).to_device(device).unwrap();
            adam_update(&w, &m, &v, &g, step).unwrap();
        }
        [w, m, v].map(|t| t.as_tensor().clone())
    };
    let (cpu, on_gpu) = (run(&Device::Cpu), run(&gpu));
    for (name, (a, b)) in ["weight", "m", "v"].iter().zip(on_gpu.iter().zip(&cpu)) {
        let d = relative_difference(a, b);
        println!("adam: {name} differs by {d:.2e}");
        assert!(d < 1e-6, "adam: {name} differs by {d}");
    }
}
