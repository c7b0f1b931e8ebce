//! The fast convolution paths against candle's own ops: the same outputs and the same
//! gradients (input and weights) on random shapes, odd sizes, several kernel sizes and
//! paddings. (Finite-difference checks of the layers built on them are in
//! tests/nn_gradients.rs.)

use candle_core::{Device, Tensor, Var};
use cxr::nn::kernels::{conv2d, depthwise_conv2d, pointwise};
use rand::{Rng, SeedableRng};

mod common;

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let diff = common::max_abs_diff(a, b);
    let size = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    assert!(
        diff <= 2e-5 * size,
        "{what}: max difference {diff} (scale {size})"
    );
}

/// Output and gradients of `ours` and `theirs` on the same input and weights, through a
/// loss that weights every output element differently.
fn compare(
    what: &str,
    x_shape: (usize, usize, usize, usize),
    w_shape: (usize, usize, usize, usize),
    ours: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    theirs: &dyn Fn(&Tensor, &Tensor) -> Tensor,
) {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, x_shape, &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, w_shape, &dev).unwrap()).unwrap();
    let (a, b) = (ours(&x, &w), theirs(&x, &w));
    close(&a, &b, &format!("{what} output"));
    let mix = Tensor::randn(0f32, 1.0, b.shape(), &dev).unwrap();
    let ga = (a * &mix).unwrap().sum_all().unwrap().backward().unwrap();
    let gb = (b * &mix).unwrap().sum_all().unwrap().backward().unwrap();
    close(
        ga.get(&x).unwrap(),
        gb.get(&x).unwrap(),
        &format!("{what} input gradient"),
    );
    close(
        ga.get(&w).unwrap(),
        gb.get(&w).unwrap(),
        &format!("{what} weight gradient"),
    );
}

#[test]
fn depthwise_matches_candles_grouped_convolution() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for (k, p) in [(3, 1), (3, 0), (5, 2), (1, 0), (3, 2)] {
        for _ in 0..3 {
            let (n, c) = (rng.random_range(1..4), rng.random_range(1..6));
            let (h, w) = (rng.random_range(k..k + 12), rng.random_range(k..k + 12));
            compare(
                &format!("depthwise k{k} p{p} {n}x{c}x{h}x{w}"),
                (n, c, h, w),
                (c, 1, k, k),
                &|x, w| depthwise_conv2d(x, w, p).unwrap(),
                &|x, w| x.conv2d(w, p, 1, 1, c).unwrap(),
            );
        }
    }
}

#[test]
fn full_convolution_matches_candle() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for (k, p) in [(3, 1), (3, 0), (5, 2), (1, 0)] {
        for _ in 0..3 {
            let (n, ci, co) = (
                rng.random_range(1..4),
                rng.random_range(1..5),
                rng.random_range(1..5),
            );
            let (h, w) = (rng.random_range(k..k + 10), rng.random_range(k..k + 10));
            compare(
                &format!("conv k{k} p{p} {n}x{ci}->{co} {h}x{w}"),
                (n, ci, h, w),
                (co, ci, k, k),
                &|x, w| conv2d(x, w, p).unwrap(),
                &|x, w| x.conv2d(w, p, 1, 1, 1).unwrap(),
            );
        }
    }
}

#[test]
fn pointwise_matches_a_1x1_convolution() {
    for (n, ci, co, h, w) in [(2, 3, 5, 7, 9), (1, 8, 2, 4, 4), (3, 1, 1, 5, 3)] {
        compare(
            &format!("pointwise {n}x{ci}->{co} {h}x{w}"),
            (n, ci, h, w),
            (co, ci, 1, 1),
            &|x, w| pointwise(x, w).unwrap(),
            &|x, w| x.conv2d(w, 0, 1, 1, 1).unwrap(),
        );
    }
}
