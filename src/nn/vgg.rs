//! VGG16 and VGG19 (Simonyan and Zisserman, 2014, configurations D and E), named as in
//! Keras (`block1_conv1` ... `fc1`, `fc2`, `predictions`) and loadable from torchvision's
//! weights (introduced in chapter 4).

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::layers::{Conv2dSame, ReLU, conv2d_same, dense, max_pool2d};
use super::summary::{Summary, SummaryBuilder};

/// Which VGG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VggDepth {
    /// 13 convolutions and 3 dense layers.
    Vgg16,
    /// 16 convolutions and 3 dense layers.
    Vgg19,
}

impl VggDepth {
    /// Convolutions in each of the five blocks.
    pub fn convs_per_block(self) -> [usize; 5] {
        match self {
            VggDepth::Vgg16 => VGG16_LAYOUT.map(|(c, _)| c),
            VggDepth::Vgg19 => VGG19_LAYOUT.map(|(c, _)| c),
        }
    }

    fn name(self) -> &'static str {
        match self {
            VggDepth::Vgg16 => "vgg16",
            VggDepth::Vgg19 => "vgg19",
        }
    }
}

/// What follows the convolutions when there is no classifier on top (Keras's `pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Keep the last block's feature maps.
    #[default]
    None,
    /// Average each feature map to one number.
    Avg,
    /// Take each feature map's maximum.
    Max,
}

/// VGG16's five blocks, `(convolutions, filters)`: the paper's configuration D.
pub const VGG16_LAYOUT: [(usize, usize); 5] = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)];
/// VGG19's five blocks: configuration E, one more convolution in each of the last three.
pub const VGG19_LAYOUT: [(usize, usize); 5] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)];
/// Units of `fc1` and `fc2`.
pub const VGG_DENSE: usize = 4096;

/// A VGG's shape, with Keras's `VGG16(...)` arguments as fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VggConfig {
    /// 16 or 19 layers: the name, and the layout torchvision's names follow.
    pub depth: VggDepth,
    /// `(convolutions, filters)` of each block, before the width divisor.
    pub layout: [(usize, usize); 5],
    /// `(height, width)` of the input; Keras's VGG with its classifier needs 224 x 224
    /// for ImageNet weights, any multiple of 32 works with fresh ones.
    pub input_size: (usize, usize),
    /// Channels of the input.
    pub channels: usize,
    /// Keep the three dense layers on top (`include_top`).
    pub include_top: bool,
    /// Without the top: how to summarise the feature maps.
    pub pooling: Pooling,
    /// Outputs of the last layer.
    pub classes: usize,
    /// Every layer's width divided by this: 1 is the paper's VGG, 8 or 16 a narrow copy of
    /// the same architecture that trains on a CPU.
    pub width_divisor: usize,
}

impl VggConfig {
    /// Keras's `VGG16()`: 224 x 224 x 3 in, 1,000 classes out.
    pub fn vgg16() -> Self {
        Self {
            depth: VggDepth::Vgg16,
            layout: VGG16_LAYOUT,
            input_size: (224, 224),
            channels: 3,
            include_top: true,
            pooling: Pooling::None,
            classes: 1000,
            width_divisor: 1,
        }
    }

    /// Keras's `VGG19()`.
    pub fn vgg19() -> Self {
        Self {
            depth: VggDepth::Vgg19,
            layout: VGG19_LAYOUT,
            ..Self::vgg16()
        }
    }

    /// The filters of each block after the width divisor.
    pub fn filters(&self) -> [usize; 5] {
        self.layout
            .map(|(_, f)| (f / self.width_divisor.max(1)).max(1))
    }

    /// The units of `fc1` and `fc2` after the width divisor.
    pub fn dense_units(&self) -> usize {
        (VGG_DENSE / self.width_divisor.max(1)).max(1)
    }
}

/// A VGG network. Input `(N, C, H, W)`; output the class scores before softmax (logits)
/// with the top, else the feature maps or their pooled values.
#[derive(Debug, Clone)]
pub struct Vgg {
    cfg: VggConfig,
    blocks: Vec<Vec<Conv2dSame>>,
    top: Option<(Linear, Linear, Linear)>,
    summary: Summary,
}

/// Builds a VGG; weights under `block{b}_conv{i}`, `fc1`, `fc2`, `predictions`.
pub fn vgg(cfg: VggConfig, vb: VarBuilder) -> Result<Vgg> {
    let (h, w) = cfg.input_size;
    if h < 32 || w < 32 || cfg.classes == 0 {
        candle_core::bail!(
            "VGG needs an input of at least 32 x 32 and at least one class, got {h} x {w} and {}",
            cfg.classes
        );
    }
    let mut spec = SummaryBuilder::new(cfg.depth.name(), vec![cfg.channels, h, w]);
    let mut blocks = Vec::new();
    let mut channels = cfg.channels;
    for (b, (&convs, &filters)) in cfg
        .depth
        .convs_per_block()
        .iter()
        .zip(&cfg.filters())
        .enumerate()
    {
        let mut block = Vec::new();
        for i in 1..=convs {
            let name = format!("block{}_conv{i}", b + 1);
            // Keras's `activation="relu"`, fused into the convolution.
            block.push(conv2d_same(channels, filters, 3, vb.pp(&name))?.with_relu());
            spec.conv(&name, filters, 3);
            channels = filters;
        }
        spec.pool(&format!("block{}_pool", b + 1), 2);
        blocks.push(block);
    }
    let top = if cfg.include_top {
        spec.flatten("flatten");
        let flat = spec.shape()[0];
        let units = cfg.dense_units();
        let fc1 = dense(flat, units, vb.pp("fc1"))?;
        spec.dense("fc1", units);
        let fc2 = dense(units, units, vb.pp("fc2"))?;
        spec.dense("fc2", units);
        let predictions = dense(units, cfg.classes, vb.pp("predictions"))?;
        spec.dense("predictions", cfg.classes);
        Some((fc1, fc2, predictions))
    } else {
        match cfg.pooling {
            Pooling::None => {}
            Pooling::Avg => spec.global_pool("global_average_pooling2d", "GlobalAveragePooling2D"),
            Pooling::Max => spec.global_pool("global_max_pooling2d", "GlobalMaxPooling2D"),
        }
        None
    };
    Ok(Vgg {
        cfg,
        blocks,
        top,
        summary: spec.finish(),
    })
}

impl Vgg {
    /// The configuration it was built with.
    pub fn config(&self) -> &VggConfig {
        &self.cfg
    }

    /// Keras's `model.summary()`.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let (h, w) = self.cfg.input_size;
        let expected = [self.cfg.channels, h, w];
        match xs.dims() {
            [_, rest @ ..] if rest == expected => Ok(()),
            dims => candle_core::bail!(
                "{} expects input (N, {}, {h}, {w}), got {dims:?}; resize the images to {h} x {w} (channels first), \
                 or build the model with input_size ({}, {})",
                self.cfg.depth.name().to_uppercase(),
                self.cfg.channels,
                dims.get(2).copied().unwrap_or(0),
                dims.get(3).copied().unwrap_or(0)
            ),
        }
    }
}

impl ModuleT for Vgg {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        self.check_input(xs)?;
        let mut xs = xs.clone();
        for block in &self.blocks {
            for conv in block {
                xs = xs.apply(conv)?;
            }
            xs = max_pool2d(&xs, 2)?;
        }
        match (&self.top, self.cfg.pooling) {
            (Some((fc1, fc2, predictions)), _) => {
                let xs = xs.flatten_from(1)?;
                predictions.forward(
                    &fc2.forward(&fc1.forward(&xs)?.apply(&ReLU)?)?
                        .apply(&ReLU)?,
                )
            }
            (None, Pooling::None) => Ok(xs),
            (None, Pooling::Avg) => xs.mean((2, 3)),
            (None, Pooling::Max) => xs.max(3)?.max(2),
        }
    }
}

/// The name a cxr VGG weight has in torchvision's `vgg16()`/`vgg19()` state dict:
/// `block2_conv1.weight` is `features.5.weight`, `fc1` is `classifier.0`, `fc2`
/// `classifier.3`, `predictions` `classifier.6`. Layouts agree (PyTorch's `(out, in, k, k)`
/// and a channel-major flatten), so the tensors load as they are.
pub fn torchvision_name(depth: VggDepth, name: &str) -> Option<String> {
    let (layer, tensor) = name.rsplit_once('.')?;
    let renamed = match layer {
        "fc1" => "classifier.0".to_string(),
        "fc2" => "classifier.3".to_string(),
        "predictions" => "classifier.6".to_string(),
        _ => {
            let rest = layer.strip_prefix("block")?;
            let (block, conv) = rest.split_once("_conv")?;
            let (block, conv): (usize, usize) = (block.parse().ok()?, conv.parse().ok()?);
            let convs = depth.convs_per_block();
            if block == 0 || block > 5 || conv == 0 || conv > convs[block - 1] {
                return None;
            }
            // Each convolution is followed by a ReLU (two indices), each block by a pool.
            let before: usize = convs[..block - 1].iter().map(|c| 2 * c + 1).sum();
            format!("features.{}", before + 2 * (conv - 1))
        }
    };
    Some(format!("{renamed}.{tensor}"))
}
