//! Chapter 6: size the data for VGG19 and train it with the lesson's `fit` call.
//!
//! The lesson is in the book (`chapters/ch06-training.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch06`; the grader is `src/graders/ch06_training.rs`.

use cxr::data::Pipeline;
use cxr::train::{Batch, Fit, History, Trainer};

/// The model's input, `(height, width, channels)`.
// TODO (instruction 1): VGG19 takes 224 x 224 images with three channels.
pub const INPUT_SHAPE: (usize, usize, usize) = (64, 64, 3);

/// The size the generators resize every image to, `(height, width)`.
// TODO (instruction 2): the same size as the model's input.
pub const TARGET_SIZE: (usize, usize) = (64, 64);

/// Trains with `training_set`, checking against `val_set` after every epoch.
pub fn fit_model(
    trainer: &mut Trainer,
    training_set: &Pipeline<Batch>,
    val_set: &Pipeline<Batch>,
) -> cxr::Result<History> {
    // TODO (instruction 3): 4 epochs of 20 steps each, with `val_set` as the
    // validation data (see `Fit`'s methods).
    let _ = val_set;
    trainer.fit(training_set, Fit::epochs(1).quiet())
}
