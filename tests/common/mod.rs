// Each test crate uses only some of these helpers.
#![allow(dead_code)]

//! Helpers the parity tests share: tensors from fixture JSON, and the comparison of logits.

use candle_core::{Device, Tensor};
use serde_json::Value;

/// A nested JSON array of numbers as an f32 tensor of the same shape.
pub fn json_tensor(value: &Value) -> Tensor {
    fn flatten(v: &Value, out: &mut Vec<f32>, dims: &mut Vec<usize>, depth: usize) {
        match v {
            Value::Array(items) => {
                if dims.len() == depth {
                    dims.push(items.len());
                }
                items.iter().for_each(|i| flatten(i, out, dims, depth + 1));
            }
            number => out.push(number.as_f64().unwrap() as f32),
        }
    }
    let (mut data, mut dims) = (Vec::new(), Vec::new());
    flatten(value, &mut data, &mut dims, 0);
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Logits equal within `tolerance` of their size, and the fixture's logits really depend
/// on the input (otherwise only the last bias would be tested).
pub fn assert_logits(ours: &Tensor, expected: &Tensor, what: &str, tolerance: f32) {
    let scale = expected
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    let diff = max_abs_diff(ours, expected);
    assert!(
        diff / scale < tolerance,
        "{what}: max difference {diff} on logits of size {scale}"
    );
    let rows = expected.to_vec2::<f32>().unwrap();
    let spread = rows
        .iter()
        .flat_map(|r| r.iter().zip(&rows[0]).map(|(a, b)| (a - b).abs()))
        .fold(0.0f32, f32::max);
    assert!(
        spread > 0.01 * scale,
        "{what}: the fixture's inputs give nearly the same logits"
    );
}

/// Every variable of `weights` with its values, sorted by name (a HashMap's order differs
/// from one map to the next): what "the same weights" compares.
pub fn weight_values(weights: &candle_nn::VarMap) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<_> = weights
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Normal random values from a seeded generator: candle's CPU `Tensor::randn` cannot be
/// seeded, and a comparison that fails once must fail again on the same numbers.
pub fn randn<S: Into<candle_core::Shape>>(seed: u64, mean: f32, std: f32, shape: S) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let shape = shape.into();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(mean, std).unwrap();
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| normal.sample(&mut rng))
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}
