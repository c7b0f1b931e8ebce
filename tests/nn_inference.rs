//! Predicting runs a batch norm that comes before a max-pool after the pool, where that
//! gives the same values to the bit (`Sequential::forward_t`): the tutorial CNN's
//! predictions against the same forward pass with the input's gradient wanted, which
//! keeps the layers in their order.

use candle_core::{Device, Tensor, Var};
use candle_nn::ModuleT;
use cxr::nn::{XrayCnnConfig, xray_cnn};
use rand::{Rng, SeedableRng};

/// Every value's bits, NaN included.
fn bits(t: &Tensor) -> Vec<u32> {
    let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values.iter().map(|v| v.to_bits()).collect()
}

/// The batch norms' weights drawn anew: means around 0, variances 0.2-3, and gammas
/// positive, or with a negative one in block 2 (whose pool then must not go first:
/// a negative scale turns the window's largest input into its smallest output).
fn draw_batch_norms(model: &cxr::nn::Sequential, seed: u64, negative: bool) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let vars = model.weights().data().lock().unwrap();
    for (name, var) in vars.iter().filter(|(n, _)| n.contains("_bn.")) {
        let n = var.elem_count();
        let values: Vec<f32> = match name.rsplit('.').next().unwrap() {
            "running_mean" | "bias" => (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
            "running_var" => (0..n).map(|_| rng.random_range(0.2..3.0)).collect(),
            _ => (0..n)
                .map(|c| match negative && name.starts_with("block2") && c == 3 {
                    true => -0.7,
                    false => rng.random_range(0.1..2.0),
                })
                .collect(),
        };
        var.set(&Tensor::from_vec(values, n, &Device::Cpu).unwrap())
            .unwrap();
    }
}

#[test]
fn batch_norm_after_the_pool_predicts_the_same_to_the_bit() {
    let model = xray_cnn(XrayCnnConfig::default()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut pixels: Vec<f32> = (0..2 * 3 * 180 * 180)
        .map(|_| rng.random_range(0.0..255.0))
        .collect();
    // A NaN and an infinity, which the pools pass on.
    pixels[1234] = f32::NAN;
    pixels[3 * 180 * 180 + 999] = f32::INFINITY;
    let x = Tensor::from_vec(pixels, (2, 3, 180, 180), &Device::Cpu).unwrap();
    for negative in [false, true] {
        draw_batch_norms(&model, 11, negative);
        let predicted = model.forward_t(&x, false).unwrap();
        let in_order = model
            .forward_t(Var::from_tensor(&x).unwrap().as_tensor(), false)
            .unwrap();
        assert_eq!(
            bits(&predicted),
            bits(&in_order),
            "negative gamma: {negative}"
        );
    }
}
