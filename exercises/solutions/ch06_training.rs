//! Chapter 6: size the data for VGG19, train it with the lesson's `fit` call, and count
//! its parameters.
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

/// The parameters of a VGG with the three dense layers on top, counted from its layout
/// (`(convolutions, filters)` per block, each block ending in a 2 x 2 pool) and its input
/// `(height, width, channels)`, without building it: where VGG19's 143,667,240 are.
pub fn vgg_params(
    layout: &[(usize, usize)],
    input_shape: (usize, usize, usize),
    dense_units: usize,
    classes: usize,
) -> usize {
    // Instruction 4: each convolution (3 * 3 * c + 1) * f; each pool halves the map.
    let (mut height, mut width, mut channels) = input_shape;
    let mut params = 0;
    for &(convs, filters) in layout {
        for _ in 0..convs {
            params += (3 * 3 * channels + 1) * filters;
            channels = filters;
        }
        (height, width) = (height / 2, width / 2);
    }
    // The top: flatten, fc1, fc2, predictions; each dense layer (n + 1) * u.
    let flat = height * width * channels;
    params += (flat + 1) * dense_units;
    params += (dense_units + 1) * dense_units;
    params += (dense_units + 1) * classes;
    params
}
