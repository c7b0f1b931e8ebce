//! The pieces of a training step against Keras 3 (fixture made by
//! tests/fixtures/keras/make_keras_training.py): binary cross-entropy from logits with and
//! without class weights, ExponentialDecay and CosineDecay, Adam's updates, and the
//! streaming metrics the tutorial prints.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use cxr::train::{
    Adam, Auc, BinaryAccuracy, Constant, CosineDecay, ExponentialDecay, LearningRateSchedule,
    Metric, Optimizer, Precision, Recall, binary_cross_entropy_with_logits, class_sample_weights,
};
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/keras/training.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn binary_cross_entropy_matches_keras_and_a_hand_computation() {
    let f = fixture();
    let bce = &f["bce"];
    let device = Device::Cpu;
    let logits = Tensor::new(floats(&bce["logits"]), &device).unwrap();
    let targets = Tensor::new(floats(&bce["targets"]), &device).unwrap();
    let loss = binary_cross_entropy_with_logits(&logits, &targets, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let keras = bce["loss"].as_f64().unwrap() as f32;
    assert!(
        (loss - keras).abs() < 1e-5 * keras,
        "{loss} vs Keras {keras}"
    );

    // By hand, in f64: -y ln σ(x) - (1 - y) ln(1 - σ(x)), weights 1.94 for 0 and 0.67 for 1,
    // summed and divided by the number of samples.
    let (x, y) = (floats(&bce["logits"]), floats(&bce["targets"]));
    let hand: f64 = x
        .iter()
        .zip(&y)
        .map(|(&x, &y)| {
            let (x, y) = (f64::from(x), f64::from(y));
            let weight = if y > 0.5 { 0.67 } else { 1.94 };
            let log_sigmoid = -(1.0 + (-x).exp()).ln();
            let log_one_minus = -(1.0 + x.exp()).ln();
            weight * -(y * log_sigmoid + (1.0 - y) * log_one_minus)
        })
        .sum::<f64>()
        / x.len() as f64;
    let weights = class_sample_weights(&targets, [1.94, 0.67]).unwrap();
    let weighted = binary_cross_entropy_with_logits(&logits, &targets, Some(&weights))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let keras = bce["weighted_loss"].as_f64().unwrap();
    assert!(
        (f64::from(weighted) - hand).abs() < 1e-5 * hand,
        "{weighted} vs hand {hand}"
    );
    assert!(
        (hand - keras).abs() < 1e-5 * keras,
        "hand {hand} vs Keras {keras}"
    );
}

#[test]
fn schedules_match_keras() {
    let f = fixture();
    let s = &f["schedules"];
    let steps: Vec<u64> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for (schedule, key) in [
        (
            ExponentialDecay::new(0.015, 100_000, 0.96).staircase(),
            "exponential_staircase",
        ),
        (ExponentialDecay::new(0.015, 100_000, 0.96), "exponential"),
    ] {
        for (step, keras) in steps.iter().zip(floats(&s[key])) {
            let ours = schedule.rate(*step);
            assert!(
                (ours - f64::from(keras)).abs() < 1e-6 * ours,
                "{key} at {step}: {ours} vs {keras}"
            );
        }
    }
    let cosine = CosineDecay {
        initial: 0.01,
        decay_steps: 1000,
        alpha: 0.1,
    };
    let cosine_steps = s["cosine_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap());
    for (step, keras) in cosine_steps.zip(floats(&s["cosine"])) {
        let ours = cosine.rate(step);
        assert!(
            (ours - f64::from(keras)).abs() < 1e-6,
            "cosine at {step}: {ours} vs {keras}"
        );
    }
    assert_eq!(Constant(0.1).rate(12345), 0.1);
}

#[test]
fn adam_follows_keras_step_by_step() {
    let f = fixture();
    let a = &f["adam"];
    let varmap = VarMap::new();
    let start = floats(&a["start"]);
    let var = varmap
        .get(4, "w", Init::Const(0.0), DType::F32, &Device::Cpu)
        .unwrap();
    let tensors = varmap.data().lock().unwrap();
    tensors["w"]
        .set(&Tensor::new(start, &Device::Cpu).unwrap())
        .unwrap();
    let w = tensors["w"].clone();
    drop(tensors);
    let mut adam = Adam::new(Constant(a["learning_rate"].as_f64().unwrap()));
    adam.bind(vec![("w".to_string(), w)]).unwrap();
    for (grad, expected) in a["grads"]
        .as_array()
        .unwrap()
        .iter()
        .zip(a["values"].as_array().unwrap())
    {
        // A loss whose gradient with respect to w is exactly `grad`: sum(w * grad).
        let g = Tensor::new(floats(grad), &Device::Cpu).unwrap();
        let loss = (&var * &g).unwrap().sum_all().unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        let ours = varmap.data().lock().unwrap()["w"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        for (o, e) in ours.iter().zip(floats(expected)) {
            assert!((o - e).abs() < 1e-6, "{ours:?} vs Keras {expected}");
        }
    }
    assert_eq!(adam.iterations(), 5);
}

#[test]
fn streaming_metrics_match_keras() {
    let f = fixture();
    let text = std::fs::read_to_string("tests/fixtures/sklearn/metrics.json").unwrap();
    let sk: Value = serde_json::from_str(&text).unwrap();
    let case = &sk["binary"][0];
    let y = floats(&case["y_true"]);
    let p = floats(&case["y_score"]);
    let mut metrics: Vec<Box<dyn Metric>> = vec![
        Box::new(BinaryAccuracy::default()),
        Box::new(Precision::default()),
        Box::new(Recall::default()),
        Box::new(Auc::default()),
    ];
    let batch = f["metrics"]["batch"].as_u64().unwrap() as usize;
    for (ys, ps) in y.chunks(batch).zip(p.chunks(batch)) {
        for m in metrics.iter_mut() {
            m.update(ys, ps);
        }
    }
    for m in &metrics {
        let keras = f["metrics"][m.name()].as_f64().unwrap();
        assert!(
            (m.result() - keras).abs() < 1e-6,
            "{}: {} vs Keras {keras}",
            m.name(),
            m.result()
        );
    }
}
