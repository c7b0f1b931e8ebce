//! Neural network layers and models on candle (introduced in chapter 4).
//!
//! Every model is a `ModuleT` (`forward_t(x, train)`), so one training loop serves them
//! all and batch norm and dropout know whether they are training. Tensors are channels
//! first, `(N, C, H, W)`, as candle's convolutions take them.

pub mod kernels;
pub mod layers;
pub mod summary;
pub mod vgg;
pub mod weights;
pub mod xray_cnn;

pub use layers::{
    BatchNorm, BatchNormConfig, Conv2dSame, Dropout, Flatten, MaxPool2d, ReLU, Rescaling,
    SeparableConv2d, SeparableConv2dConfig, dropout,
};
pub use summary::{LayerRow, Summary};
pub use vgg::{Pooling, VGG16_LAYOUT, VGG19_LAYOUT, Vgg, VggConfig, VggDepth, vgg};
pub use weights::{load, save, seeded_var_builder, trainable_vars};
pub use xray_cnn::{XrayCnn, XrayCnnConfig, initial_bias, xray_cnn};
