//! The CNN of the Keras tutorial "Pneumonia classification on TPU" (chapter 9):
//! two convolutions, four blocks of separable convolutions, three dense blocks, one
//! output. Layer names are the tutorial's structure spelled out (`block1_sepconv1`,
//! `dense1_bn`), since Keras's own (`separable_conv2d_3`) depend on build order.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::layers::{
    BatchNorm, BatchNormConfig, Conv2dSame, Dropout, ReLU, Rescaling, SeparableConv2d,
    SeparableConv2dConfig, batch_norm, conv2d_same, dense, dropout, glorot_uniform, max_pool2d,
    separable_conv2d,
};
use super::summary::{Summary, SummaryBuilder};

/// Filters of the four `conv_block`s.
pub const CONV_BLOCKS: [usize; 4] = [32, 64, 128, 256];
/// Units and dropout rates of the three `dense_block`s.
pub const DENSE_BLOCKS: [(usize, f32); 3] = [(512, 0.7), (128, 0.5), (64, 0.3)];

/// The tutorial's `build_model()` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XrayCnnConfig {
    /// `(height, width)` of the input, the tutorial's `IMAGE_SIZE`.
    pub image_size: (usize, usize),
    /// Initial bias of the output, `log(pneumonia / normal)`: see [`initial_bias`].
    pub output_bias: Option<f64>,
    /// Batch normalisation settings (Keras's by default).
    pub batch_norm: BatchNormConfig,
    /// Seed of the dropout masks (each layer draws its own stream from it).
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

/// A layer's own seed from the model's: distinct streams for distinct layers.
fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(layer as u64)
}

#[derive(Debug, Clone)]
struct ConvBlock {
    sep1: SeparableConv2d,
    sep2: SeparableConv2d,
    bn: BatchNorm,
    dropout: Option<Dropout>,
}

#[derive(Debug, Clone)]
struct DenseBlock {
    dense: Linear,
    bn: BatchNorm,
    dropout: Dropout,
}

/// The tutorial's model. Input `(N, 3, H, W)` with raw pixel values 0..=255 (the model
/// rescales them itself); output `(N, 1)` logits: the sigmoid of a logit is the predicted
/// probability of pneumonia, applied by the loss and by `predict` rather than here, for
/// numerical stability.
#[derive(Debug, Clone)]
pub struct XrayCnn {
    cfg: XrayCnnConfig,
    rescale: Rescaling,
    conv1: Conv2dSame,
    conv2: Conv2dSame,
    blocks: Vec<ConvBlock>,
    dense: Vec<DenseBlock>,
    output: Linear,
    summary: Summary,
}

/// Builds the tutorial's model.
pub fn xray_cnn(cfg: XrayCnnConfig, vb: VarBuilder) -> Result<XrayCnn> {
    let (h, w) = cfg.image_size;
    if h < 32 || w < 32 {
        candle_core::bail!(
            "the X-ray CNN halves its input five times and needs at least 32 x 32, got {h} x {w}"
        );
    }
    let mut spec = SummaryBuilder::new("xray_cnn", vec![3, h, w]);
    spec.layer("rescaling", "Rescaling");
    // Keras's `activation="relu"`: fused into the convolutions.
    let conv1 = conv2d_same(3, 16, 3, vb.pp("conv1"))?.with_relu();
    spec.conv("conv1", 16, 3);
    let conv2 = conv2d_same(16, 16, 3, vb.pp("conv2"))?.with_relu();
    spec.conv("conv2", 16, 3);
    spec.pool("pool", 2);
    let same = SeparableConv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let mut blocks = Vec::new();
    let mut channels = 16;
    for (i, &filters) in CONV_BLOCKS.iter().enumerate() {
        let b = i + 1;
        let sep1 = separable_conv2d(
            channels,
            filters,
            3,
            same,
            vb.pp(format!("block{b}_sepconv1")),
        )?
        .with_relu();
        spec.separable(&format!("block{b}_sepconv1"), filters, 3);
        let sep2 = separable_conv2d(
            filters,
            filters,
            3,
            same,
            vb.pp(format!("block{b}_sepconv2")),
        )?
        .with_relu();
        spec.separable(&format!("block{b}_sepconv2"), filters, 3);
        let bn = batch_norm(filters, cfg.batch_norm, vb.pp(format!("block{b}_bn")))?;
        spec.batch_norm(&format!("block{b}_bn"));
        spec.pool(&format!("block{b}_pool"), 2);
        let block_dropout = if b >= 3 {
            spec.layer(&format!("block{b}_dropout"), "Dropout");
            Some(dropout(
                0.2,
                layer_seed(cfg.seed, b),
                vb.pp(format!("block{b}_dropout")),
            )?)
        } else {
            None
        };
        blocks.push(ConvBlock {
            sep1,
            sep2,
            bn,
            dropout: block_dropout,
        });
        channels = filters;
    }
    spec.flatten("flatten");
    let mut features = spec.shape()[0];
    let mut dense_blocks = Vec::new();
    for (i, &(units, rate)) in DENSE_BLOCKS.iter().enumerate() {
        let d = i + 1;
        let layer = dense(features, units, vb.pp(format!("dense{d}")))?;
        spec.dense(&format!("dense{d}"), units);
        let bn = batch_norm(units, cfg.batch_norm, vb.pp(format!("dense{d}_bn")))?;
        spec.batch_norm(&format!("dense{d}_bn"));
        spec.layer(&format!("dense{d}_dropout"), "Dropout");
        dense_blocks.push(DenseBlock {
            dense: layer,
            bn,
            dropout: dropout(
                rate,
                layer_seed(cfg.seed, 10 + d),
                vb.pp(format!("dense{d}_dropout")),
            )?,
        });
        features = units;
    }
    let out = vb.pp("output");
    let weight = out.get_with_hints((1, features), "weight", glorot_uniform(features, 1))?;
    let bias = out.get_with_hints(1, "bias", Init::Const(cfg.output_bias.unwrap_or(0.0)))?;
    spec.dense("output", 1);
    Ok(XrayCnn {
        cfg,
        rescale: Rescaling {
            scale: 1.0 / 255.0,
            offset: 0.0,
        },
        conv1,
        conv2,
        blocks,
        dense: dense_blocks,
        output: Linear::new(weight, Some(bias)),
        summary: spec.finish(),
    })
}

impl XrayCnn {
    /// The configuration it was built with.
    pub fn config(&self) -> &XrayCnnConfig {
        &self.cfg
    }

    /// Keras's `model.summary()`.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

impl ModuleT for XrayCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (h, w) = self.cfg.image_size;
        if xs.rank() != 4 || xs.dims()[1..] != [3, h, w] {
            candle_core::bail!(
                "the X-ray CNN expects input (N, 3, {h}, {w}) with pixel values 0..=255, got {:?}; resize the images to {h} x {w}",
                xs.dims()
            );
        }
        let xs = xs
            .apply(&self.rescale)?
            .apply(&self.conv1)?
            .apply(&self.conv2)?;
        let mut xs = max_pool2d(&xs, 2)?;
        for block in &self.blocks {
            xs = xs.apply(&block.sep1)?.apply(&block.sep2)?;
            xs = max_pool2d(&block.bn.forward_t(&xs, train)?, 2)?;
            if let Some(dropout) = &block.dropout {
                xs = dropout.forward_t(&xs, train)?;
            }
        }
        let mut xs = xs.flatten_from(1)?;
        for block in &self.dense {
            xs = block.dense.forward(&xs)?.apply(&ReLU)?;
            xs = block
                .dropout
                .forward_t(&block.bn.forward_t(&xs, train)?, train)?;
        }
        self.output.forward(&xs)
    }
}
