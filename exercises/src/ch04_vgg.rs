//! Chapter 4: complete VGG16's third and fourth convolution blocks, then write a block
//! with the layer API.
//!
//! The lesson is in the book (`chapters/ch04-vgg.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch04`; the grader is `src/graders/ch04_vgg.rs`.

#[allow(unused_imports)] // for instruction 2
use cxr::nn::layers::{Conv2D, MaxPool2D};
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

/// One VGG block written with the layer API, as Keras's `VGG16` source writes it: block
/// number `block` (1 to 5) of `convs` 3 x 3 convolutions with `filters` filters each, ReLU
/// and "same" padding, then a 2 x 2 max-pooling.
pub fn add_block(
    model: &mut Sequential,
    block: usize,
    convs: usize,
    filters: usize,
) -> cxr::Result<()> {
    // TODO (instruction 2): `convs` convolutions, each
    // `Conv2D::new(filters, 3).relu().padding_same()` named "block{block}_conv{i}" for
    // i = 1, 2, ..., then one `MaxPool2D::new()` named "block{block}_pool". Add each with
    // `model.add(name, layer)?;`.
    let _ = (model, block, convs, filters);
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
