//! The CNN of the Keras tutorial "Pneumonia classification on TPU" (chapter 9):
//! two convolutions, four blocks of separable convolutions, three dense blocks, one
//! output, built from Keras's layers as the tutorial's `build_model()` builds it. Layer
//! names are the tutorial's structure spelled out (`block1_sepconv1`, `dense1_bn`),
//! since Keras's own (`separable_conv2d_3`) depend on build order.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::layers::{
    BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Rescaling, SeparableConv2D,
};
use super::modules::BatchNormConfig;
use super::sequential::Sequential;
use crate::{Error, Result};

/// Filters of the four `conv_block`s.
pub const CONV_BLOCKS: [usize; 4] = [32, 64, 128, 256];
/// Units and dropout rates of the three `dense_block`s.
pub const DENSE_BLOCKS: [(usize, f32); 3] = [(512, 0.7), (128, 0.5), (64, 0.3)];

/// The tutorial's `build_model()` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct XrayCnnConfig {
    /// `(height, width)` of the input, the tutorial's `IMAGE_SIZE`.
    pub image_size: (usize, usize),
    /// Initial bias of the output, `log(pneumonia / normal)`: see [`initial_bias`].
    pub output_bias: Option<f64>,
    /// Batch normalisation settings (Keras's by default).
    pub batch_norm: BatchNormConfig,
    /// Seed of the initial weights and of the dropout masks (each layer draws its own
    /// stream from it).
    pub seed: u64,
}

impl Default for XrayCnnConfig {
    fn default() -> Self {
        Self {
            image_size: (180, 180),
            output_bias: None,
            batch_norm: BatchNormConfig::keras(),
            seed: 0,
        }
    }
}

/// The tutorial's `initial_bias = np.log([COUNT_PNEUMONIA / COUNT_NORMAL])`: with it the
/// untrained model already predicts the class balance instead of 50%, so the first
/// epochs are not spent learning the prior.
pub fn initial_bias(normal: usize, pneumonia: usize) -> f64 {
    (pneumonia as f64 / normal.max(1) as f64).ln()
}

/// The tutorial's `conv_block(filters)`, as block number `block` of `model`: two
/// separable convolutions with ReLU, batch normalisation, max-pooling.
pub fn conv_block(
    model: &mut Sequential,
    block: usize,
    filters: usize,
    batch_norm: BatchNormConfig,
) -> Result<()> {
    let separable = SeparableConv2D::new(filters, 3).relu().padding_same();
    model.add(format!("block{block}_sepconv1"), separable)?;
    model.add(format!("block{block}_sepconv2"), separable)?;
    model.add(
        format!("block{block}_bn"),
        BatchNormalization::from(batch_norm),
    )?;
    model.add(format!("block{block}_pool"), MaxPool2D::new())?;
    Ok(())
}

/// The tutorial's `dense_block(units, dropout_rate)`, as dense block number `block`:
/// a dense layer with ReLU, batch normalisation, dropout.
pub fn dense_block(
    model: &mut Sequential,
    block: usize,
    (units, rate): (usize, f32),
    batch_norm: BatchNormConfig,
) -> Result<()> {
    model.add(format!("dense{block}"), Dense::new(units).relu())?;
    model.add(
        format!("dense{block}_bn"),
        BatchNormalization::from(batch_norm),
    )?;
    model.add(format!("dense{block}_dropout"), Dropout::new(rate))?;
    Ok(())
}

/// Builds the tutorial's model on the CPU; see [`xray_cnn_on`].
pub fn xray_cnn(cfg: XrayCnnConfig) -> Result<Sequential> {
    xray_cnn_on(cfg, &Device::Cpu)
}

/// Builds the tutorial's model with its weights on `device`. Input `(N, 3, H, W)` with
/// raw pixel values 0..=255 (the model rescales them itself); output `(N, 1)` logits:
/// the sigmoid of a logit is the predicted probability of pneumonia, applied by the
/// loss and by `predict` rather than here, for numerical stability.
pub fn xray_cnn_on(cfg: XrayCnnConfig, device: &Device) -> Result<Sequential> {
    let (h, w) = cfg.image_size;
    if h < 32 || w < 32 {
        return Err(Error::BadArgument(format!(
            "the X-ray CNN halves its input five times and needs at least 32 x 32, got {h} x {w}"
        )));
    }
    let mut model = Sequential::new("xray_cnn", [3, h, w])
        .seed(cfg.seed)
        .on(device);
    model.add("rescaling", Rescaling::new(1.0 / 255.0))?;
    model.add("conv1", Conv2D::new(16, 3).relu().padding_same())?;
    model.add("conv2", Conv2D::new(16, 3).relu().padding_same())?;
    model.add("pool", MaxPool2D::new())?;
    for (i, &filters) in CONV_BLOCKS.iter().enumerate() {
        let block = i + 1;
        conv_block(&mut model, block, filters, cfg.batch_norm)?;
        // The tutorial drops a fifth of the values after the third and fourth blocks.
        if block >= 3 {
            model.add(format!("block{block}_dropout"), Dropout::new(0.2))?;
        }
    }
    model.add("flatten", Flatten)?;
    for (i, &units_and_rate) in DENSE_BLOCKS.iter().enumerate() {
        dense_block(&mut model, i + 1, units_and_rate, cfg.batch_norm)?;
    }
    model.add(
        "output",
        Dense::new(1).initial_bias(cfg.output_bias.unwrap_or(0.0)),
    )?;
    model.set_architecture(serde_json::json!({ "model": "xray_cnn", "config": cfg }));
    Ok(model)
}
