//! Fast CPU paths for what the course trains through, where candle 0.11 is slow:
//! convolutions (direct ones for few input channels and, with AVX-512, for many; im2col
//! and the `gemm` crate's matrix products otherwise, in cache-sized bands run in
//! parallel; the bias and an optional ReLU fused in; candle runs a depthwise
//! convolution as one convolution per channel and the input gradient of a full one as a
//! scalar loop nest), ReLU, max-pool and batch normalisation (one parallel pass each
//! way, where candle chains single-threaded ops or, in inference mode, two passes).
//!
//! One op per file, each a candle custom op with its own backward pass, and each with one
//! convention: the public function takes any tensor and returns the result, running the
//! fused kernel for `f32` on the CPU and candle's own ops elsewhere (other devices and
//! types). Outputs and every gradient are checked against candle's ops in
//! `tests/nn_kernels.rs` (and finite differences of the layers in
//! `tests/nn_gradients.rs`).

mod adam;
mod batch_norm;
mod common;
mod conv;
#[cfg(feature = "cuda")]
mod cuda;
mod dense;
mod depthwise;
mod direct;
mod max_pool;
mod relu;
mod separable;
mod wide;

pub use adam::{AdamStep, adam_update};
pub use batch_norm::{batch_norm_train, channel_affine};
pub use common::Float;
pub use conv::{
    conv2d, conv2d_bias, conv2d_bias_relu, pointwise, pointwise_bias, pointwise_bias_relu,
};
pub use dense::linear;
pub use depthwise::depthwise_conv2d;
pub use max_pool::{max_pool2d, max_pool2d_t};
pub use relu::relu;
pub use separable::separable_conv2d;
