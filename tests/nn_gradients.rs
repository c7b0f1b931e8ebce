//! Gradient checks for every layer the models train through: the gradient candle's
//! autograd computes must equal central finite differences (in f64), for the input and
//! for every weight. Also the max-pool trap: candle 0.11.1's own `max_pool2d` backward is
//! wrong, ours is right.

use candle_core::{DType, Device, Module, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr::nn::modules::{Rescaling, batch_norm, conv2d_same, dense, max_pool2d, separable_conv2d};
use cxr::nn::{BatchNormConfig, SeparableConv2dConfig};

const EPS: f64 = 1e-6;

fn random(shape: &[usize], seed: u64) -> Tensor {
    // A deterministic spread of distinct values, so that max-pooling has no ties.
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let x = ((i as u64 + 1) * 2654435761 + seed * 97) % 10007;
            x as f64 / 10007.0 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Compares d(sum(f(x) * weights_out))/d(var) from autograd with finite differences at a
/// few coordinates of `var`.
fn check(name: &str, var: &Var, f: &dyn Fn() -> Tensor) {
    let out_weights = random(f().dims(), 7);
    let loss = || f().mul(&out_weights).unwrap().sum_all().unwrap();
    let grads = loss().backward().unwrap();
    let analytic = grads
        .get(var)
        .unwrap_or_else(|| panic!("{name}: no gradient"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let original = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let n = original.len();
    for k in 0..12.min(n) {
        let i = (k * 7919) % n;
        let at = |delta: f64| {
            let mut v = original.clone();
            v[i] += delta;
            var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
                .unwrap();
            loss().to_scalar::<f64>().unwrap()
        };
        let numeric = (at(EPS) - at(-EPS)) / (2.0 * EPS);
        var.set(&Tensor::from_vec(original.clone(), var.dims(), &Device::Cpu).unwrap())
            .unwrap();
        let scale = numeric.abs().max(analytic[i].abs()).max(1.0);
        assert!(
            (numeric - analytic[i]).abs() / scale < 1e-6,
            "{name}[{i}]: autograd {} vs finite differences {numeric}",
            analytic[i]
        );
    }
}

fn var(shape: &[usize], seed: u64) -> Var {
    Var::from_tensor(&random(shape, seed)).unwrap()
}

fn vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut all: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn f64_builder(varmap: &VarMap) -> VarBuilder<'_> {
    VarBuilder::from_varmap(varmap, DType::F64, &Device::Cpu)
}

#[test]
fn candles_own_max_pool_backward_is_wrong_and_ours_is_right() {
    for size in [44usize, 45] {
        let x = var(&[1, 1, size, size], 3);
        let windows = (size / 2) * (size / 2);
        let candle_sum = x
            .as_tensor()
            .max_pool2d(2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let candle_total = candle_sum
            .get(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_ne!(
            candle_total, windows as f64,
            "candle's max_pool2d backward is fixed: it could replace ours"
        );
        let ours = max_pool2d(x.as_tensor(), 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = ours.get(&x).unwrap();
        assert_eq!(
            grad.sum_all().unwrap().to_scalar::<f64>().unwrap(),
            windows as f64,
            "{size}: one unit per window"
        );
        // Each window's gradient sits on its maximum; the dropped last row and column get none.
        let g = grad
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let v = x
            .as_tensor()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        for wr in 0..size / 2 {
            for wc in 0..size / 2 {
                let cells = [
                    (2 * wr, 2 * wc),
                    (2 * wr, 2 * wc + 1),
                    (2 * wr + 1, 2 * wc),
                    (2 * wr + 1, 2 * wc + 1),
                ];
                let best = cells
                    .iter()
                    .max_by(|a, b| v[a.0][a.1].total_cmp(&v[b.0][b.1]))
                    .unwrap();
                for c in cells {
                    assert_eq!(g[c.0][c.1], if c == *best { 1.0 } else { 0.0 });
                }
            }
        }
        if size % 2 == 1 {
            assert!(g[size - 1].iter().all(|&x| x == 0.0));
        }
    }
    let x = var(&[2, 3, 9, 7], 5);
    check("max_pool2d input", &x, &|| {
        max_pool2d(x.as_tensor(), 2).unwrap()
    });
}

#[test]
fn convolution_dense_and_rescaling_gradients() {
    let varmap = VarMap::new();
    let conv = conv2d_same(3, 4, 3, f64_builder(&varmap).pp("conv")).unwrap();
    let x = var(&[2, 3, 6, 5], 11);
    check("conv input", &x, &|| conv.forward(x.as_tensor()).unwrap());
    for (name, v) in vars(&varmap) {
        check(&name, &v, &|| conv.forward(x.as_tensor()).unwrap());
    }
    let varmap = VarMap::new();
    let fc = dense(6, 3, f64_builder(&varmap).pp("fc")).unwrap();
    let x = var(&[4, 6], 13);
    check("dense input", &x, &|| {
        fc.forward(x.as_tensor()).unwrap().relu().unwrap()
    });
    for (name, v) in vars(&varmap) {
        check(&name, &v, &|| fc.forward(x.as_tensor()).unwrap());
    }
    let rescale = Rescaling {
        scale: 1.0 / 255.0,
        offset: 0.5,
    };
    check("rescaling", &x, &|| rescale.forward(x.as_tensor()).unwrap());
}

#[test]
fn separable_convolution_gradients() {
    let varmap = VarMap::new();
    let cfg = SeparableConv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let sep = separable_conv2d(3, 5, 3, cfg, f64_builder(&varmap).pp("sep")).unwrap();
    let x = var(&[2, 3, 5, 6], 17);
    check("separable input", &x, &|| {
        sep.forward(x.as_tensor()).unwrap()
    });
    let names: Vec<String> = vars(&varmap).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "sep.depthwise.weight",
            "sep.pointwise.bias",
            "sep.pointwise.weight"
        ]
    );
    for (name, v) in vars(&varmap) {
        check(&name, &v, &|| sep.forward(x.as_tensor()).unwrap());
    }
}

#[test]
fn batch_norm_gradients_in_training_mode() {
    for shape in [vec![4usize, 3, 2, 3], vec![5, 4]] {
        let varmap = VarMap::new();
        let bn = batch_norm(
            shape[1],
            BatchNormConfig::keras(),
            f64_builder(&varmap).pp("bn"),
        )
        .unwrap();
        let x = var(&shape, 19);
        check("batch norm input", &x, &|| {
            bn.forward_t(x.as_tensor(), true).unwrap()
        });
        for (name, v) in vars(&varmap) {
            if name.ends_with("weight") || name.ends_with("bias") {
                check(&name, &v, &|| bn.forward_t(x.as_tensor(), true).unwrap());
            }
        }
    }
}
