//! Chapter 4: complete VGG16's third and fourth convolution blocks (reference solution).
//!
//! The lesson is in the book (`chapters/ch04-vgg.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch04`; the grader is `src/graders/ch04_vgg.rs`.

use cxr::nn::{Sequential, VggConfig, vgg};

/// VGG16's five blocks as `(number of conv3 layers, filters)`, in order.
pub const BLOCKS: [(usize, usize); 5] = [
    (2, 64),
    (2, 128),
    // Instruction 1: three conv3 layers with 256 filters, then three with 512.
    (3, 256),
    (3, 512),
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
