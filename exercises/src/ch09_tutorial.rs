//! Chapter 9: the tutorial's label from a path, and its split size.
//!
//! The lesson is in the book (`chapters/ch09-tutorial.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch09`; the grader is `src/graders/ch09_tutorial.rs`.

/// 1 for an X-ray in a `PNEUMONIA` folder, 0 otherwise, read from the second-to-last part
/// of a path such as `chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg`.
pub fn get_label(file_path: &str) -> u8 {
    // TODO (instruction 1): split the path on '/', look at the part before the file
    // name, and return 1 if it is "PNEUMONIA".
    let _ = file_path;
    0
}

/// How many of `total` images go to training when the tutorial's 4,200-of-5,232 split is
/// scaled to `total` (rounded to the nearest image).
pub fn train_size(total: usize) -> usize {
    // TODO (instruction 2): scale 4200 / 5232 to `total` and round.
    total
}

/// The tutorial's class weights `[weight of NORMAL, weight of PNEUMONIA]` from the two
/// counts: each class's weight is `(1 / its count) * total / 2`.
pub fn class_weights(normal: usize, pneumonia: usize) -> [f64; 2] {
    // TODO (instruction 3): weigh the rarer class up, so both classes count the same.
    let _ = (normal, pneumonia);
    [1.0, 1.0]
}

use cxr::nn::Sequential;
#[allow(unused_imports)]
use cxr::nn::layers::{BatchNormalization, Dense, Dropout, MaxPool2D, SeparableConv2D};

/// The tutorial's `conv_block(filters)`, as block number `block` of `model`: two 3 x 3
/// separable convolutions with ReLU and `"same"` padding, batch normalisation, then
/// max-pooling, named `block{block}_sepconv1`, `block{block}_sepconv2`, `block{block}_bn`
/// and `block{block}_pool`.
pub fn conv_block(model: &mut Sequential, block: usize, filters: usize) -> cxr::Result<()> {
    // TODO (instruction 4): add the four layers with `model.add(name, layer)?`, as the
    // chapter's `conv_block` does (Keras's defaults for the batch normalisation).
    let _ = (model, block, filters);
    Ok(())
}

/// The tutorial's `dense_block(units, dropout_rate)`, as dense block number `block`: a
/// dense layer with ReLU, batch normalisation, dropout, named `dense{block}`,
/// `dense{block}_bn` and `dense{block}_dropout`.
pub fn dense_block(
    model: &mut Sequential,
    block: usize,
    units: usize,
    dropout_rate: f32,
) -> cxr::Result<()> {
    // TODO (instruction 4): the three layers of a dense block.
    let _ = (model, block, units, dropout_rate);
    Ok(())
}
