//! Chapter 4: complete VGG16's third and fourth convolution blocks (reference solution).
//!
//! The lesson is in the book (`chapters/ch04-vgg.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch04`; the grader is `src/graders/ch04_vgg.rs`.

use cxr::nn::layers::{Conv2D, MaxPool2D};
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

/// One VGG block written with the layer API, as Keras's `VGG16` source writes it: block
/// number `block` (1 to 5) of `convs` 3 x 3 convolutions with `filters` filters each, ReLU
/// and "same" padding, then a 2 x 2 max-pooling.
pub fn add_block(
    model: &mut Sequential,
    block: usize,
    convs: usize,
    filters: usize,
) -> cxr::Result<()> {
    // Instruction 2: the convolutions keep the size ("same"), the pool halves it.
    for i in 1..=convs {
        let conv = Conv2D::new(filters, 3).relu().padding_same();
        model.add(format!("block{block}_conv{i}"), conv)?;
    }
    model.add(format!("block{block}_pool"), MaxPool2D::new())?;
    Ok(())
}

/// VGG16's convolutional part (`include_top=False`) built with your `add_block`, one call
/// per entry of `BLOCKS`. Nothing to change here.
pub fn vgg16_features() -> cxr::Result<Sequential> {
    let mut model = Sequential::new("vgg16", [3, 224, 224]);
    for (b, &(convs, filters)) in BLOCKS.iter().enumerate() {
        add_block(&mut model, b + 1, convs, filters)?;
    }
    Ok(model)
}
