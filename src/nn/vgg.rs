//! VGG16 and VGG19 (Simonyan and Zisserman, 2014, configurations D and E), named as in
//! Keras (`block1_conv1` ... `fc1`, `fc2`, `predictions`), built as [`Sequential`]
//! models from Keras's layers, and loadable from torchvision's weights (introduced in
//! chapter 4).

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::layers::{
    Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool2D,
};
use super::sequential::Sequential;
use crate::{Error, Result};

/// Which VGG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The seed the initial weights are drawn from.
    pub seed: u64,
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
            seed: 0,
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

/// Builds a VGG on the CPU: Keras's `VGG16(include_top, weights=None, input_shape,
/// pooling, classes)` with fresh weights; see [`vgg_on`].
pub fn vgg(cfg: VggConfig) -> Result<Sequential> {
    vgg_on(cfg, &Device::Cpu)
}

/// Builds a VGG with its weights on `device`. Its output is the class scores before
/// the softmax (logits) with the top, else the last block's feature maps or their
/// pooled values. Weights are named `block{b}_conv{i}`, `fc1`, `fc2`, `predictions`.
pub fn vgg_on(cfg: VggConfig, device: &Device) -> Result<Sequential> {
    let (h, w) = cfg.input_size;
    if h < 32 || w < 32 || cfg.classes == 0 {
        return Err(Error::BadArgument(format!(
            "VGG needs an input of at least 32 x 32 and at least one class, got {h} x {w} and {}",
            cfg.classes
        )));
    }
    let mut model = Sequential::new(cfg.depth.name(), [cfg.channels, h, w])
        .seed(cfg.seed)
        .on(device);
    for (b, (&convs, &filters)) in cfg
        .layout
        .iter()
        .map(|(c, _)| c)
        .zip(&cfg.filters())
        .enumerate()
    {
        for i in 1..=convs {
            model.add(
                format!("block{}_conv{i}", b + 1),
                Conv2D::new(filters, 3).relu().padding_same(),
            )?;
        }
        model.add(format!("block{}_pool", b + 1), MaxPool2D::new())?;
    }
    if cfg.include_top {
        let units = cfg.dense_units();
        model.add("flatten", Flatten)?;
        model.add("fc1", Dense::new(units).relu())?;
        model.add("fc2", Dense::new(units).relu())?;
        model.add("predictions", Dense::new(cfg.classes))?;
    } else {
        match cfg.pooling {
            Pooling::None => {}
            Pooling::Avg => {
                model.add("global_average_pooling2d", GlobalAveragePooling2D)?;
            }
            Pooling::Max => {
                model.add("global_max_pooling2d", GlobalMaxPooling2D)?;
            }
        }
    }
    model.set_architecture(serde_json::json!({ "model": "vgg", "config": cfg }));
    Ok(model)
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
