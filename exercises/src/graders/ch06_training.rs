//! Grader for chapter 6: the input shape, the target size, then the `fit` call, run on a
//! small model and small images so that it grades in seconds.

use cxr::candle_core::ModuleT;
use cxr::ch06_training::{BATCH_SIZE, NUM_CLASSES, compile, generated_data, load_data, vgg19};

use crate::ch06_training::{INPUT_SHAPE, TARGET_SIZE, fit_model};

#[test]
fn instruction_1_input_shape() {
    assert_eq!(
        INPUT_SHAPE,
        (224, 224, 3),
        "VGG19 takes 224 x 224 images with 3 channels: input_shape = (224, 224, 3)"
    );
}

#[test]
fn instruction_2_target_size_matches_the_model() {
    assert_eq!(
        TARGET_SIZE,
        (INPUT_SHAPE.0, INPUT_SHAPE.1),
        "the generators must resize images to the model's input size"
    );
    assert_eq!(TARGET_SIZE, (224, 224), "target_size = (224, 224)");
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
    assert_eq!(
        history.epochs.len(),
        4,
        "fit should run epochs = 4, it ran {}",
        history.epochs.len()
    );
    assert_eq!(
        trainer.optimizer().iterations(),
        80,
        "4 epochs of steps_per_epoch = 20 are 80 steps, the model took {}",
        trainer.optimizer().iterations()
    );
    assert!(
        history.epochs[0].contains_key("val_loss"),
        "no val_loss in the history: pass val_set as the validation data"
    );
}
