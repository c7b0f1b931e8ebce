//! The fast convolution paths against candle's own ops: the same outputs and the same
//! gradients (input and weights) on random shapes, odd sizes, several kernel sizes and
//! paddings. (Finite-difference checks of the layers built on them are in
//! tests/nn_gradients.rs.)

use candle_core::{Device, Tensor, Var};
use cxr::nn::kernels::{
    AdamStep, adam_update, conv2d, conv2d_bias, conv2d_bias_relu, depthwise_conv2d, pointwise,
    separable_conv2d,
};
use rand::{Rng, SeedableRng};

use crate::common;

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

/// A seed from a case's name: every case draws its own numbers, the same on every run.
fn seed(what: &str) -> u64 {
    what.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// `ours` and `theirs` equal, and so the gradients of every one of `vars` through a loss
/// that weights each output element differently.
fn same_outputs_and_gradients(what: &str, ours: Tensor, theirs: Tensor, vars: &[(&Var, &str)]) {
    close(&ours, &theirs, &format!("{what} output"));
    let mix = common::randn(seed(what) + 1, 0.0, 1.0, theirs.shape());
    let ga = (ours * &mix)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gb = (theirs * &mix)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (var, name) in vars {
        close(
            ga.get(var).unwrap(),
            gb.get(var).unwrap(),
            &format!("{what} {name} gradient"),
        );
    }
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
    let x = Var::from_tensor(&common::randn(seed(what) + 2, 0.0, 1.0, x_shape)).unwrap();
    let w = Var::from_tensor(&common::randn(seed(what) + 3, 0.0, 1.0, w_shape)).unwrap();
    let (a, b) = (ours(&x, &w), theirs(&x, &w));
    same_outputs_and_gradients(what, a, b, &[(&x, "input"), (&w, "weight")]);
}

#[test]
fn depthwise_matches_candles_grouped_convolution() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // Widths on both sides of the kernel's 16-wide strips, and paddings wider than the
    // kernel (whose input gradient reads the output gradient shifted the other way).
    for (k, p) in [(3, 1), (3, 0), (5, 2), (1, 0), (3, 2), (3, 3), (1, 1)] {
        for _ in 0..3 {
            let (n, c) = (rng.random_range(1..4), rng.random_range(1..6));
            let (h, w) = (rng.random_range(k..k + 12), rng.random_range(k..k + 40));
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

/// The fused separable convolution (depthwise, pointwise, bias, ReLU in one op, the
/// depthwise output recomputed in the backward pass) against candle's grouped and 1 x 1
/// convolutions, a broadcast bias and ReLU: the output and all four gradients.
#[test]
fn fused_separable_convolution_matches_candle() {
    for (n, c, o, h, w, k, p) in [
        (2, 3, 5, 9, 21, 3, 1),
        (3, 8, 4, 17, 6, 3, 0),
        (1, 5, 7, 12, 33, 5, 2),
        (2, 4, 3, 7, 7, 3, 3),
    ] {
        let case = (n * c * o * h * w * k + p) as u64;
        let x = Var::from_tensor(&common::randn(case, 0.0, 1.0, (n, c, h, w))).unwrap();
        let dw = Var::from_tensor(&common::randn(case + 1, 0.0, 0.5, (c, 1, k, k))).unwrap();
        let pw = Var::from_tensor(&common::randn(case + 2, 0.0, 0.5, (o, c, 1, 1))).unwrap();
        let b = Var::from_tensor(&common::randn(case + 3, 0.0, 1.0, o)).unwrap();
        for relu in [false, true] {
            let ours = separable_conv2d(&x, &dw, &pw, &b, p, relu).unwrap();
            let theirs = x
                .conv2d(&dw, p, 1, 1, c)
                .and_then(|m| m.conv2d(&pw, 0, 1, 1, 1))
                .and_then(|y| y.broadcast_add(&b.reshape((1, o, 1, 1))?))
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            let what = format!("separable k{k} p{p} {n}x{c}->{o} {h}x{w} relu {relu}");
            let vars = [
                (&x, "input"),
                (&dw, "depthwise"),
                (&pw, "pointwise"),
                (&b, "bias"),
            ];
            same_outputs_and_gradients(&what, ours, theirs, &vars);
        }
    }
}

#[test]
fn full_convolution_matches_candle() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    // (3, 3) and (1, 1) pad by more than k - 1, so their input gradient cannot be a
    // convolution with the turned kernel and goes through col2im.
    for (k, p) in [(3, 1), (3, 0), (5, 2), (1, 0), (3, 3), (1, 1)] {
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

/// Shapes whose im2col columns are cut into several bands of rows (64 input channels
/// at 3 x 3 make 576 rows of columns; the bands are about a megabyte each), with a
/// bias and with and without the fused ReLU, against candle's convolution plus a
/// broadcast bias (and its ReLU).
#[test]
fn banded_convolution_with_bias_matches_candle() {
    for (n, ci, co, h, w, k, p) in [
        (2, 64, 5, 41, 30, 3, 1),
        (1, 64, 3, 70, 17, 3, 0),
        (3, 80, 4, 33, 29, 3, 1),
        // Many input channels: on AVX-512 the wide direct convolution (im2col with
        // CXR_SIMD=avx2): output channels in a whole block of eight and a part block,
        // input channels in chunks of 64 and a part chunk, a 14 x 14 plane whose padded
        // rows run into one another, and 256 channels 30 wide in bands of 30 rows.
        (2, 64, 12, 14, 14, 3, 1),
        (1, 130, 9, 11, 7, 3, 1),
        (1, 256, 9, 70, 30, 3, 1),
        (2, 64, 8, 5, 9, 3, 0),
        // ... and other kernel sizes: 5 x 5 (its loops not unrolled), 1 x 1 padded.
        (1, 70, 10, 12, 9, 5, 2),
        (1, 64, 3, 6, 7, 1, 1),
        // Few input channels: the direct convolution and its gradients, in several
        // bands of rows (16 channels 40 wide make bands of 79 and 41 rows).
        (2, 16, 16, 100, 40, 3, 1),
        (1, 3, 9, 130, 21, 3, 0),
        // 1 x 1: the image is its own columns, and 256 channels make bands of 34 rows.
        (2, 256, 3, 40, 30, 1, 0),
    ] {
        let case = (n * ci * co * h * w * k + p) as u64;
        let x = Var::from_tensor(&common::randn(case, 0.0, 1.0, (n, ci, h, w))).unwrap();
        let k = Var::from_tensor(&common::randn(case + 1, 0.0, 0.1, (co, ci, k, k))).unwrap();
        let b = Var::from_tensor(&common::randn(case + 2, 0.0, 1.0, co)).unwrap();
        for relu in [false, true] {
            let ours = match relu {
                true => conv2d_bias_relu(&x, &k, Some(&b), p).unwrap(),
                false => conv2d_bias(&x, &k, Some(&b), p).unwrap(),
            };
            let theirs = x
                .conv2d(&k, p, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, co, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            let what = format!("conv k{k} {n}x{ci}->{co} {h}x{w} p{p} relu {relu}");
            let vars = [(&x, "input"), (&k, "weight"), (&b, "bias")];
            same_outputs_and_gradients(&what, ours, theirs, &vars);
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

#[test]
fn single_row_linear_matches_candles_matmul() {
    // One row: the weight rows split over the cores (a last chunk shorter than the
    // others); two rows: candle's product.
    for (n, inputs, units) in [(1, 37, 300), (1, 5, 1), (1, 1000, 513), (2, 37, 300)] {
        let what = format!("linear {n}x{inputs} -> {units}");
        let x = Var::from_tensor(&common::randn(seed(&what) + 2, 0.0, 1.0, (n, inputs))).unwrap();
        let w =
            Var::from_tensor(&common::randn(seed(&what) + 3, 0.0, 1.0, (units, inputs))).unwrap();
        let ours = cxr::nn::kernels::linear(&x, &w).unwrap();
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        same_outputs_and_gradients(&what, ours, theirs, &[(&x, "input"), (&w, "weight")]);
    }
}

/// Output and input gradient of a one-input op against a reference.
fn compare_unary(
    what: &str,
    shape: (usize, usize, usize, usize),
    ours: &dyn Fn(&Tensor) -> Tensor,
    theirs: &dyn Fn(&Tensor) -> Tensor,
) {
    let x = Var::from_tensor(&common::randn(seed(what), 0.0, 1.0, shape)).unwrap();
    let (a, b) = (ours(&x), theirs(&x));
    same_outputs_and_gradients(what, a, b, &[(&x, "input")]);
}

#[test]
fn fused_relu_matches_candle() {
    for shape in [(2, 3, 7, 9), (1, 1, 1, 1), (4, 16, 45, 45)] {
        compare_unary(
            &format!("relu {shape:?}"),
            shape,
            &|x| cxr::nn::kernels::relu(x).unwrap(),
            &|x| x.relu().unwrap(),
        );
    }
}

#[test]
fn fused_max_pool_matches_reshape_and_max() {
    // Random normal values have no ties, so "first maximum" and candle's "every maximum"
    // agree; odd sizes drop the last row and column.
    // Both backward passes: from the winners the forward pass keeps in training, and
    // from the input read again.
    for ((shape, k), train) in [
        ((2, 3, 8, 8), 2),
        ((1, 2, 45, 45), 2),
        ((2, 3, 9, 8), 2),
        ((2, 3, 8, 9), 2),
        ((3, 1, 7, 10), 3),
        ((1, 4, 5, 5), 5),
    ]
    .into_iter()
    .flat_map(|case| [(case, true), (case, false)])
    {
        compare_unary(
            &format!("max-pool k{k} {shape:?} train {train}"),
            shape,
            &|x| cxr::nn::kernels::max_pool2d_t(x, k, train).unwrap(),
            &|x| {
                let (n, c, h, w) = x.dims4().unwrap();
                let (ho, wo) = (h / k, w / k);
                x.narrow(2, 0, ho * k)
                    .unwrap()
                    .narrow(3, 0, wo * k)
                    .unwrap()
                    .reshape((n, c, ho, k, wo, k))
                    .unwrap()
                    .max(5)
                    .unwrap()
                    .max(3)
                    .unwrap()
            },
        );
    }
}

#[test]
fn fused_max_pool_gives_a_tied_window_one_gradient() {
    // After a ReLU, windows of zeros are common: the gradient goes to the first, as in
    // PyTorch, and the total gradient is what flowed in.
    let x = Var::from_tensor(
        &Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let y = cxr::nn::kernels::max_pool2d(&x, 2).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let gx = g
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(gx.iter().sum::<f32>(), 4.0);
    assert_eq!(gx[0], 1.0);
    assert_eq!(gx[1], 0.0);
}

/// The two backward passes of a 2 x 2 max-pool, from the winners kept in training and
/// from the input read again, give a plain loop's gradient to the bit where windows tie
/// (zeros after a ReLU, values rounded to a few levels) and hold NaN, infinities or the
/// lowest value: each window's gradient to its first maximum.
#[test]
fn max_pool_backward_from_winners_matches_the_one_reading_the_input() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("max-pool winners"));
    let special = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN,
        0.0,
        -0.0,
    ];
    // k = 3 checks the plain path of other window sizes by the same rule.
    for (k, h, w) in [(2, 8, 8), (2, 9, 7), (2, 2, 34), (2, 45, 45), (3, 9, 11)] {
        let values: Vec<f32> = (0..2 * 3 * h * w)
            .map(|_| match rng.random_range(0..10) {
                0 => special[rng.random_range(0..special.len())],
                1..=4 => 0.0,
                _ => rng.random_range(-2i32..3) as f32 * 0.5,
            })
            .collect();
        let x = Var::from_vec(values, (2, 3, h, w), &Device::Cpu).unwrap();
        let (ho, wo) = (h / k, w / k);
        let mix = common::randn(seed("max-pool winners mix"), 0.0, 1.0, (2, 3, ho, wo));
        let gradient = |train: bool| {
            let y = cxr::nn::kernels::max_pool2d_t(&x, k, train).unwrap();
            let g = (y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(&x).unwrap().flatten_all().unwrap();
            gx.to_vec1::<f32>().unwrap()
        };
        // The rule written out once more, as a plain loop: each window's gradient to the
        // last value that beats every one before it (strict `>`, starting from the first
        // value), or to the first value when none does. NaN beats nothing, and nothing
        // beats a NaN first value (the CUDA kernel's rule too).
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ms = mix.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut expected = vec![0f32; xs.len()];
        for plane in 0..6 {
            for r in 0..ho {
                for c in 0..wo {
                    let at = |i: usize, j: usize| plane * h * w + (k * r + i) * w + k * c + j;
                    let (mut best, mut won) = (xs[at(0, 0)], at(0, 0));
                    for (i, j) in (0..k).flat_map(|i| (0..k).map(move |j| (i, j))) {
                        if xs[at(i, j)] > best {
                            (best, won) = (xs[at(i, j)], at(i, j));
                        }
                    }
                    expected[won] = ms[(plane * ho + r) * wo + c];
                }
            }
        }
        let (kept, read) = (gradient(true), gradient(false));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let case = format!("k {k}, {h} x {w}");
        // The forward pass, in training (which keeps the winners) and in inference:
        // each window's first maximum, or NaN where the window holds one.
        let mut maxima = Vec::new();
        for plane in 0..6 {
            for r in 0..ho {
                for c in 0..wo {
                    let mut best = xs[plane * h * w + k * r * w + k * c];
                    for (i, j) in (0..k).flat_map(|i| (0..k).map(move |j| (i, j))) {
                        let v = xs[plane * h * w + (k * r + i) * w + k * c + j];
                        if v > best || v.is_nan() && !best.is_nan() {
                            best = v;
                        }
                    }
                    maxima.push(best);
                }
            }
        }
        for train in [true, false] {
            let y = cxr::nn::kernels::max_pool2d_t(&x, k, train).unwrap();
            let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(bits(&y), bits(&maxima), "{case}: forward, train {train}");
        }
        assert_eq!(bits(&kept), bits(&expected), "{case}: kept winners");
        assert_eq!(bits(&read), bits(&expected), "{case}: input read again");
        assert!(
            kept.iter().all(|v| v.is_finite()),
            "{case}: a non-finite gradient"
        );
    }
}

/// Batch norm in training mode from candle's ops: what the fused kernel replaces.
fn batch_norm_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    let c = x.dim(1).unwrap();
    let mut shape = vec![1; x.rank()];
    shape[1] = c;
    let per_channel = x
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((c, ()))
        .unwrap();
    let mean = per_channel.mean(1).unwrap();
    let var = per_channel
        .broadcast_sub(&mean.unsqueeze(1).unwrap())
        .unwrap()
        .sqr()
        .unwrap()
        .mean(1)
        .unwrap();
    let inv = (var + eps).unwrap().sqrt().unwrap().recip().unwrap();
    let scale = (gamma * inv).unwrap();
    let shift = (beta - (&mean * &scale).unwrap()).unwrap();
    x.broadcast_mul(&scale.reshape(shape.as_slice()).unwrap())
        .unwrap()
        .broadcast_add(&shift.reshape(shape.as_slice()).unwrap())
        .unwrap()
}

#[test]
fn fused_batch_norm_matches_candles_ops_with_all_three_gradients() {
    for shape in [
        vec![4, 3, 5, 7],
        vec![25, 8],
        vec![2, 16, 9, 9],
        vec![1, 2, 3, 3],
    ] {
        let c = shape[1];
        let case = shape.iter().product::<usize>() as u64;
        let x = Var::from_tensor(&common::randn(case, 0.5, 2.0, shape.as_slice())).unwrap();
        let gamma = Var::from_tensor(&common::randn(case + 1, 1.0, 0.3, c)).unwrap();
        let beta = Var::from_tensor(&common::randn(case + 2, 0.0, 0.3, c)).unwrap();
        let (ours, _, _) = cxr::nn::kernels::batch_norm_train(&x, &gamma, &beta, 1e-3).unwrap();
        let theirs = batch_norm_reference(&x, &gamma, &beta, 1e-3);
        let what = format!("batch norm {shape:?}");
        let vars = [(&x, "x"), (&gamma, "gamma"), (&beta, "beta")];
        same_outputs_and_gradients(&what, ours, theirs, &vars);
    }
}

/// Batch normalisation in inference mode, `x * scale + shift` per channel in one pass,
/// against candle's `broadcast_mul` then `broadcast_add`: the same values to the bit
/// (each rounded as those ops round it), and the gradients of all three inputs, over
/// planes small and large enough to be split between the tasks, and a flat `(N, C)`.
#[test]
fn channel_affine_matches_candles_broadcast_ops() {
    for shape in [
        vec![4, 3, 5, 7],
        vec![25, 8],
        vec![3, 5, 90, 91],
        vec![2, 64, 11, 11],
        vec![1, 1, 1, 1],
    ] {
        let c = shape[1];
        let case = shape.iter().product::<usize>() as u64;
        let x = Var::from_tensor(&common::randn(case, 0.5, 2.0, shape.as_slice())).unwrap();
        let scale = Var::from_tensor(&common::randn(case + 1, 1.0, 0.5, c)).unwrap();
        let shift = Var::from_tensor(&common::randn(case + 2, 0.0, 0.5, c)).unwrap();
        let ours = cxr::nn::kernels::channel_affine(&x, &scale, &shift).unwrap();
        let mut per_channel = vec![1; shape.len()];
        per_channel[1] = c;
        let theirs = x
            .broadcast_mul(&scale.reshape(per_channel.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&shift.reshape(per_channel.as_slice()).unwrap())
            .unwrap();
        let what = format!("channel affine {shape:?}");
        assert_eq!(
            common::max_abs_diff(&ours, &theirs),
            0.0,
            "{what}: not the same values"
        );
        let vars = [(&x, "x"), (&scale, "scale"), (&shift, "shift")];
        same_outputs_and_gradients(&what, ours, theirs, &vars);
    }
}

/// The in-place Adam kernel against the update written in candle's ops, bit for bit:
/// each value rounded as the ops round it, over several steps (moments from zero, and
/// gradients with exact zeros, where `-0` and `+0` differ).
#[test]
fn fused_adam_matches_candles_ops_bit_for_bit() {
    let shape = (37, 1000);
    let w = Var::from_tensor(&common::randn(71, 0.0, 1.0, shape)).unwrap();
    let (m, v) = (
        Var::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap(),
        Var::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let (mut w2, mut m2, mut v2) = (
        w.as_tensor().copy().unwrap(),
        m.as_tensor().copy().unwrap(),
        v.as_tensor().copy().unwrap(),
    );
    for step in 0..3u64 {
        let g = common::randn(72 + step, 0.0, 1.0, shape).relu().unwrap();
        let s = AdamStep {
            beta_1: 0.9,
            beta_2: 0.999,
            alpha: 1e-3 * (step + 1) as f64,
            epsilon: 1e-7,
        };
        adam_update(&w, &m, &v, &g, s).unwrap();
        m2 = (&m2 + ((&g - &m2).unwrap() * (1.0 - s.beta_1)).unwrap()).unwrap();
        v2 = (&v2 + ((g.sqr().unwrap() - &v2).unwrap() * (1.0 - s.beta_2)).unwrap()).unwrap();
        let update =
            ((&m2 / (v2.sqrt().unwrap() + s.epsilon).unwrap()).unwrap() * s.alpha).unwrap();
        w2 = (&w2 - update).unwrap();
        for (what, ours, theirs) in [
            ("w", w.as_tensor(), &w2),
            ("m", m.as_tensor(), &m2),
            ("v", v.as_tensor(), &v2),
        ] {
            let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let differ = a
                .iter()
                .zip(&b)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "Adam step {step}: {differ} values of {what} differ"
            );
        }
    }
}

/// The kernels' narrower paths (AVX2's eight lanes, plain code), which a machine with
/// AVX-512 never takes: the tests of this file again, in a process that `CXR_SIMD`
/// limits to them.
#[test]
fn narrower_instruction_sets_match_candle_too() {
    if std::env::var_os("CXR_SIMD").is_some() {
        return;
    }
    for simd in ["avx2", "scalar"] {
        let run = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["nn_kernels::", "--test-threads", "2"])
            .env("CXR_SIMD", simd)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "CXR_SIMD={simd}:\n{printed}");
        assert!(
            !printed.contains("running 0 tests"),
            "CXR_SIMD={simd}: no test ran\n{printed}"
        );
    }
}
