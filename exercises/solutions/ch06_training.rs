//! Chapter 6: size the data for VGG19 and train it with the lesson's `fit` call.
//!
//! The lesson is in the book (`chapters/ch06-training.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch06`; the grader is `src/graders/ch06_training.rs`.

use cxr::data::Pipeline;
use cxr::train::{Batch, Fit, History, Trainer};

/// The model's input, `(height, width, channels)`.
pub const INPUT_SHAPE: (usize, usize, usize) = (224, 224, 3);

/// The size the generators resize every image to, `(height, width)`.
pub const TARGET_SIZE: (usize, usize) = (224, 224);

/// Trains with `training_set`, checking against `val_set` after every epoch.
pub fn fit_model(
    trainer: &mut Trainer,
    training_set: &Pipeline<Batch>,
    val_set: &Pipeline<Batch>,
) -> cxr::Result<History> {
    let fit = Fit::epochs(4)
        .steps_per_epoch(20)
        .validation(val_set)
        .quiet();
    trainer.fit(training_set, fit)
}
