//! Grader for chapter 3: one test per instruction of the lesson.

use crate::ch03_augmentation::{HORIZONTAL_FLIP, RESCALE_RATIO, make_datasets};

#[test]
fn instruction_1_rescale_ratio() {
    assert!(
        (RESCALE_RATIO * 255.0 - 1.0).abs() < 1e-6,
        "RESCALE_RATIO is {RESCALE_RATIO}, so the brightest pixel, 255, becomes {}.\n\
         Hint: which number times 255 gives 1?",
        RESCALE_RATIO * 255.0
    );
}

#[test]
#[allow(clippy::assertions_on_constants)] // grading a constant is the point
fn instruction_2_horizontal_flip() {
    assert!(
        HORIZONTAL_FLIP,
        "HORIZONTAL_FLIP is off. Hint: the lesson turns the flip on with a boolean."
    );
}

#[test]
fn instruction_3_generate_dataset() {
    let (train, test) = make_datasets().unwrap_or_else(|e| panic!("make_datasets failed: {e}"));
    assert!(
        train.generator().horizontal_flip && !test.generator().horizontal_flip,
        "only the training images are flipped. Hint: pass HORIZONTAL_FLIP to generate_dataset."
    );
    assert_eq!(
        train.generator().rescale,
        Some(RESCALE_RATIO),
        "pass RESCALE_RATIO to generate_dataset"
    );
    assert_eq!(
        test.generator().rescale,
        Some(RESCALE_RATIO),
        "the test images are rescaled too"
    );
    assert_eq!(
        train.class_indices().get("PNEUMONIA"),
        Some(&1),
        "read the folders TRAIN_DIR and TEST_DIR"
    );
    assert_eq!((train.samples(), test.samples()), (16, 16));
    let batch = test.batch(0, 0).unwrap_or_else(|e| panic!("{e}"));
    let max = batch
        .x
        .max_all()
        .and_then(|m| m.to_scalar::<f32>())
        .unwrap_or(f32::NAN);
    assert!(
        max <= 1.0 && max > 0.5,
        "test images should run from 0 to 1, the largest value is {max}"
    );
}
