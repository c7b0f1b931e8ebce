//! Grader for chapter 6: the input shape, the target size, then the `fit` call, run on a
//! small model and small images so that it grades in seconds.

use cxr::candle_core::ModuleT;
use cxr::ch06_training::{BATCH_SIZE, NUM_CLASSES, compile, generated_data, load_data, vgg19};

use crate::ch06_training::{INPUT_SHAPE, TARGET_SIZE, fit_model};

#[test]
fn instruction_1_input_shape() {
    assert!(
        INPUT_SHAPE == (224, 224, 3),
        "INPUT_SHAPE is {INPUT_SHAPE:?}, not the input instruction 1 asks for. Hint: the order \
         is (height, width, channels), and VGG19 takes colour (RGB) images"
    );
}

#[test]
fn instruction_2_target_size_matches_the_model() {
    assert!(
        TARGET_SIZE == (INPUT_SHAPE.0, INPUT_SHAPE.1),
        "TARGET_SIZE is {TARGET_SIZE:?}, INPUT_SHAPE {INPUT_SHAPE:?}: the generators must \
         resize images to the model's input size, (height, width) of INPUT_SHAPE"
    );
    assert!(
        TARGET_SIZE == (224, 224),
        "TARGET_SIZE is {TARGET_SIZE:?}: the size instruction 2 asks for is the model's input"
    );
    // A batch the generators make goes through the model.
    let dir = std::env::temp_dir().join("cxr-grader-ch06-224");
    generated_data(&dir, 24, TARGET_SIZE.0).unwrap();
    let [training_set, _, _] = load_data(&dir, TARGET_SIZE, 2).unwrap();
    let batch = training_set.batch(0, 0).unwrap();
    let model = vgg19(INPUT_SHAPE, NUM_CLASSES).unwrap();
    let out = model
        .forward_t(&batch.x_channels_first().unwrap(), false)
        .expect("the model refuses the generators' images: their sizes differ");
    assert_eq!(out.dims(), &[2, 2]);
}

#[test]
fn instruction_3_fit_with_steps_epochs_and_validation() {
    // A narrow VGG19 at 32 x 32 stands in for the lesson's, so that 80 steps take seconds.
    let dir = std::env::temp_dir().join("cxr-grader-ch06-32");
    generated_data(&dir, 40, 32).unwrap();
    let [training_set, val_set, _] = load_data(&dir, (32, 32), BATCH_SIZE).unwrap();
    let mut trainer = compile(vgg19((32, 32, 3), NUM_CLASSES).unwrap()).unwrap();
    let history = fit_model(&mut trainer, &training_set.pipeline(), &val_set.pipeline()).unwrap();
    assert!(
        history.epochs.len() == 4,
        "fit ran {} epochs, not the number instruction 3 asks for. Hint: Fit::epochs(n)",
        history.epochs.len()
    );
    assert!(
        trainer.optimizer().iterations() == 80,
        "the model took {} steps in 4 epochs. Hint: steps_per_epoch sets the steps of one \
         epoch, `.steps_per_epoch(n)` on the Fit",
        trainer.optimizer().iterations()
    );
    assert!(
        history.epochs[0].contains_key("val_loss"),
        "no val_loss in the history: pass val_set as the validation data"
    );
}

#[test]
fn instruction_4_count_the_parameters() {
    grade_vgg_params(crate::ch06_training::vgg_params);
}

/// Instruction 4's checks on any parameter count.
pub(crate) fn grade_vgg_params(
    vgg_params: impl Fn(&[(usize, usize)], (usize, usize, usize), usize, usize) -> usize,
) {
    let vgg16_layout = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)];
    let vgg19_layout = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];
    // A single convolution and its dense top: (27 + 1) * 8 + (16 * 16 * 8 + 1) * 4 +
    // (4 + 1) * 4 + (4 + 1) * 2 = 8,450.
    let tiny = vgg_params(&[(1, 8)], (32, 32, 3), 4, 2);
    assert!(
        tiny != 8_450 - 8 - 4 - 4 - 2,
        "your count leaves out the biases. Hint: each filter and each dense unit has one bias, \
         the + 1 in (3 * 3 * c + 1) * f and (n + 1) * u"
    );
    assert!(
        tiny == 8_450,
        "one 3 x 3 convolution of 8 filters on a 32 x 32 x 3 input, then dense layers of 4, 4 and \
         2 units: {tiny} parameters by your count, 8,450 by Keras's. Hint: the convolution has \
         (3 * 3 * 3 + 1) * 8; after the pool the map is 16 x 16 x 8, flattened to 2,048 inputs"
    );
    // Keras 3.15 (tests/fixtures/keras/models.json).
    for (name, layout, keras) in [
        ("VGG16", &vgg16_layout, 138_357_544),
        ("VGG19", &vgg19_layout, 143_667_240),
    ] {
        let ours = vgg_params(layout, (224, 224, 3), 4096, 1000);
        assert!(
            ours == keras,
            "{name} at 224 x 224 x 3: {ours} parameters by your count, {keras} by Keras's. Hint: \
             five pools take 224 to 7, so fc1 has 7 * 7 * 512 + 1 inputs per unit"
        );
    }
    // The chapter's VGG19, 1/16 as wide, at the size the grader trains it.
    let model = vgg19((32, 32, 3), NUM_CLASSES).unwrap();
    let narrow = vgg19_layout.map(|(c, f)| (c, f / 16));
    let ours = vgg_params(&narrow, (32, 32, 3), 4096 / 16, NUM_CLASSES);
    assert!(
        ours == model.summary().total_params(),
        "the chapter's narrow VGG19 at 32 x 32: {ours} by your count, {} built",
        model.summary().total_params()
    );
}
