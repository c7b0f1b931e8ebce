//! Chapter 6: size the data for VGG19, train it with the lesson's `fit` call, and count
//! its parameters.
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

/// The parameters of a VGG with the three dense layers on top, counted from its layout
/// (`(convolutions, filters)` per block, each block ending in a 2 x 2 pool) and its input
/// `(height, width, channels)`, without building it: where VGG19's 143,667,240 are.
pub fn vgg_params(
    layout: &[(usize, usize)],
    input_shape: (usize, usize, usize),
    dense_units: usize,
    classes: usize,
) -> usize {
    // TODO (instruction 4): walk through the blocks, keeping the number of channels
    // (starting at the input's). A 3 x 3 convolution from c to f channels has
    // (3 * 3 * c + 1) * f parameters (a kernel per input and output channel, and a bias
    // per filter); a pool has none but halves the height and width (rounding down).
    // Then the top: Flatten gives height * width * channels inputs; a Dense layer from
    // n inputs to u units has (n + 1) * u parameters. fc1 and fc2 have `dense_units`,
    // predictions `classes`.
    let _ = (layout, input_shape, dense_units, classes);
    0
}
