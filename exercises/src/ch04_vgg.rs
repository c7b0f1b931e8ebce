//! Chapter 4: complete VGG16's third and fourth convolution blocks.
//!
//! The lesson is in the book (`chapters/ch04-vgg.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch04`; the grader is `src/graders/ch04_vgg.rs`.

use cxr::nn::{Sequential, VggConfig, vgg};

/// VGG16's five blocks as `(number of conv3 layers, filters)`, in order.
pub const BLOCKS: [(usize, usize); 5] = [
    (2, 64),
    (2, 128),
    // TODO (instruction 1): the third block: conv3 layers with 256 filters (see the table).
    (0, 0),
    // TODO (instruction 1): the fourth block: conv3 layers with 512 filters.
    (0, 0),
    (3, 512),
];

/// VGG16 built from `BLOCKS`, with the usual 224 x 224 x 3 input and 1,000 classes.
/// Nothing to change here.
pub fn build_vgg16() -> cxr::Result<Sequential> {
    vgg(VggConfig {
        layout: BLOCKS,
        ..VggConfig::vgg16()
    })
}
