//! Transfer learning as Keras does it: a VGG16 base frozen under a new head. The summary
//! counts what Keras counts (fixture `tests/fixtures/keras/transfer.json`, made by
//! `make_keras_transfer.py` beside it), training moves the head only, the optimiser keeps
//! no state for the base, no gradient reaches it, and a frozen batch norm keeps its
//! moving statistics.

use candle_core::{Device, ModuleT, Tensor};
use cxr::data::Pipeline;
use cxr::nn::layers::{BatchNormalization, Dense, Flatten, GlobalAveragePooling2D, Rescaling};
use cxr::nn::{Sequential, VggConfig, vgg};
use cxr::train::{Adam, Fit, Loss, Trainer};
use serde_json::Value;

use crate::common;

fn fixture() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/keras/transfer.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn count(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// VGG16 without its top, frozen, under global average pooling and a 2-class head.
fn transfer(base: VggConfig) -> Sequential {
    let mut base_model = vgg(VggConfig {
        include_top: false,
        ..base
    })
    .unwrap();
    base_model.trainable(false);
    let mut model = Sequential::new("transfer", base_model.input_shape().to_vec());
    model.add_model("vgg16", base_model).unwrap();
    model
        .add("global_average_pooling2d", GlobalAveragePooling2D)
        .unwrap();
    model.add("dense", Dense::new(2)).unwrap();
    model
}

#[test]
fn a_frozen_base_under_a_new_head_is_counted_as_keras_counts_it() {
    let keras = fixture();
    let model = transfer(VggConfig::vgg16());
    let summary = model.summary();
    let t = &keras["transfer"];
    assert_eq!(summary.total_params(), count(&t["total"]));
    assert_eq!(summary.trainable_params(), count(&t["trainable"]));
    assert_eq!(summary.non_trainable_params(), count(&t["non_trainable"]));
    let layers = keras["layers"].as_array().unwrap();
    assert_eq!(summary.rows.len(), layers.len());
    for (row, layer) in summary.rows.iter().zip(layers) {
        assert_eq!(row.kind, layer["class"].as_str().unwrap(), "{}", row.name);
        assert_eq!(
            row.trainable + row.non_trainable,
            count(&layer["params"]),
            "{}",
            row.name
        );
        let mut keras_shape: Vec<usize> = layer["output_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(count)
            .collect();
        if keras_shape.len() == 3 {
            keras_shape.rotate_right(1);
        }
        assert_eq!(row.output_shape, keras_shape, "{}", row.name);
    }
    let printed = summary.to_string();
    assert!(printed.contains("Trainable params: 1,026"), "{printed}");
    assert!(
        printed.contains("Non-trainable params: 14,714,688"),
        "{printed}"
    );
}

fn narrow() -> VggConfig {
    VggConfig {
        input_size: (32, 32),
        width_divisor: 16,
        ..VggConfig::vgg16()
    }
}

fn bright_or_dark(n: usize) -> Pipeline<(Tensor, Tensor)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut batches = Vec::new();
    for _ in 0..n {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..8 {
            let class = rng.random_range(0..2usize);
            let base = [60.0, 190.0][class];
            pixels.extend((0..3 * 32 * 32).map(|_| base + rng.random_range(-40.0f32..40.0)));
            labels.push(class as f32);
        }
        batches.push((
            Tensor::from_vec(pixels, (8, 3, 32, 32), &Device::Cpu).unwrap(),
            Tensor::from_vec(labels, 8, &Device::Cpu).unwrap(),
        ));
    }
    Pipeline::from_vec(batches)
}

#[test]
fn training_moves_the_head_only_and_the_base_gets_no_gradient_or_state() {
    let model = transfer(narrow());
    // No gradient reaches the frozen base: the backward pass stops where it ends.
    let (x, y) = bright_or_dark(1).iter().next().unwrap().unwrap();
    let loss = Loss::CategoricalCrossentropy
        .compute(&model.forward_t(&x, true).unwrap(), &y, None)
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in model.weights().data().lock().unwrap().iter() {
        let has = grads.get(var.as_tensor()).is_some();
        assert_eq!(has, name.starts_with("dense."), "{name}");
    }

    let before = common::weight_values(model.weights());
    let mut trainer = Trainer::compile(
        model,
        Adam::new(0.01),
        Loss::CategoricalCrossentropy,
        &["accuracy"],
    )
    .unwrap();
    let state = trainer.optimizer().state().unwrap();
    assert!(
        state
            .keys()
            .all(|k| k == "adam.iterations" || k.contains(".dense.")),
        "{:?}",
        state.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        state.len(),
        1 + 2 * 2,
        "moments of dense.weight and dense.bias"
    );
    trainer
        .fit(&bright_or_dark(6), Fit::epochs(2).quiet())
        .unwrap();
    let after = common::weight_values(trainer.model().weights());
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        if name.starts_with("dense.") {
            assert_ne!(a, b, "{name} was trained");
        } else {
            assert_eq!(a, b, "{name} is frozen");
        }
    }
}

#[test]
fn a_frozen_batch_norm_keeps_its_moving_statistics_and_unfreezing_trains_it() {
    let build = || {
        let mut model = Sequential::new("bn", [3, 32, 32]);
        model.add("rescaling", Rescaling::new(1.0 / 255.0)).unwrap();
        model.add("bn", BatchNormalization::new()).unwrap();
        model.add("flatten", Flatten).unwrap();
        model.add("dense", Dense::new(2)).unwrap();
        model
    };
    let moving = |model: &Sequential| -> Vec<(String, Vec<f32>)> {
        common::weight_values(model.weights())
            .into_iter()
            .filter(|(n, _)| n.starts_with("bn."))
            .collect()
    };
    for frozen in [true, false] {
        let mut model = build();
        model.set_trainable("bn", !frozen).unwrap();
        let summary = model.summary();
        let bn = summary.layer("bn").unwrap();
        assert_eq!(
            (bn.trainable, bn.non_trainable),
            if frozen { (0, 12) } else { (6, 6) }
        );
        let before = moving(&model);
        let mut trainer =
            Trainer::compile(model, Adam::new(0.01), Loss::CategoricalCrossentropy, &[]).unwrap();
        trainer
            .fit(&bright_or_dark(3), Fit::epochs(1).quiet())
            .unwrap();
        let after = moving(trainer.model());
        if frozen {
            assert_eq!(before, after, "a frozen batch norm changes nothing");
        } else {
            assert_ne!(before, after, "a trainable batch norm learns and moves");
        }
    }
    let error = build()
        .set_trainable("nope", false)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no layer `nope`") && error.contains("rescaling, bn"),
        "{error}"
    );
}
