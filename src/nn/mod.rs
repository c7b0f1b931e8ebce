//! Neural networks on candle (introduced in chapter 4): Keras's layers
//! ([`layers`]), a model that owns them and its weights ([`Sequential`]), the course's
//! models (VGG, the tutorial's CNN), summaries, weights on disk, and the fast CPU
//! kernels underneath.
//!
//! Every model is a `ModuleT` (`forward_t(x, train)`), so one training loop serves them
//! all and batch norm and dropout know whether they are training. Tensors are channels
//! first, `(N, C, H, W)`, as candle's convolutions take them.

pub mod kernels;
pub mod layers;
pub mod modules;
mod saved;
mod sequential;
pub mod summary;
pub mod vgg;
pub mod weights;
pub mod xray_cnn;

pub use modules::{BatchNormConfig, SeparableConv2dConfig};
pub use saved::load_model;
pub use sequential::{BuildContext, Built, Layer, MODEL_FORMAT, Sequential, layer_seed};
pub use summary::{LayerRow, Summary};
pub use vgg::{Pooling, VGG16_LAYOUT, VGG19_LAYOUT, VggConfig, VggDepth, vgg, vgg_on};
pub use weights::{load, save, seeded_var_builder};
pub use xray_cnn::{XrayCnnConfig, conv_block, dense_block, initial_bias, xray_cnn, xray_cnn_on};
