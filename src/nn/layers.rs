//! Keras's layers, by their Keras names, for [`super::Sequential::add`] (introduced in
//! chapter 4): each is a small description that builds its weights once it knows the
//! shape of its input, as `keras.layers` do.
//!
//! ```text
//! Keras                                              cxr
//! layers.Conv2D(16, 3, activation="relu",            Conv2D::new(16, 3).relu().padding_same()
//!               padding="same")
//! layers.SeparableConv2D(32, 3, activation="relu",   SeparableConv2D::new(32, 3).relu().padding_same()
//!                        padding="same")
//! layers.BatchNormalization()                        BatchNormalization::new()
//! layers.MaxPool2D()                                 MaxPool2D::new()
//! layers.Dropout(0.2)                                Dropout::new(0.2)
//! layers.Flatten()                                   Flatten
//! layers.Dense(512, activation="relu")               Dense::new(512).relu()
//! layers.Rescaling(1.0 / 255)                        Rescaling::new(1.0 / 255.0)
//! layers.GlobalAveragePooling2D()                    GlobalAveragePooling2D
//! ```
//!
//! Shapes are channels first, `(C, H, W)`, as candle's convolutions take them; Keras
//! writes `(H, W, C)`.

use super::modules::{
    self, BatchNormConfig, GlobalPool, SeparableConv2dConfig, glorot_uniform, max_pool2d_t,
};
use super::sequential::{BuildContext, Built, Layer};
use crate::{Error, Result};

pub use super::modules::{Flatten, ReLU};

/// What a layer applies to its output (Keras's `activation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// The output as it is (Keras's default, `None`).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
}

/// How a convolution treats the border (Keras's `padding=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: the output is `k - 1` smaller (Keras's default).
    #[default]
    Valid,
    /// Zeros around the input so that the output keeps its size.
    Same,
}

impl Padding {
    fn pixels(self, k: usize) -> usize {
        match self {
            Padding::Valid => 0,
            Padding::Same => k / 2,
        }
    }
}

fn image_shape(kind: &str, input: &[usize]) -> Result<(usize, usize, usize)> {
    match input {
        &[c, h, w] => Ok((c, h, w)),
        other => Err(Error::BadArgument(format!(
            "{kind} takes images (channels, height, width), not a shape {other:?}; \
             put it before Flatten"
        ))),
    }
}

fn conv_output(
    kind: &str,
    (h, w): (usize, usize),
    k: usize,
    padding: Padding,
) -> Result<(usize, usize)> {
    let p = padding.pixels(k);
    if h + 2 * p < k || w + 2 * p < k || k == 0 {
        return Err(Error::BadArgument(format!(
            "{kind}: a {k} x {k} kernel does not fit a {h} x {w} input"
        )));
    }
    Ok((h + 2 * p - k + 1, w + 2 * p - k + 1))
}

/// Keras's `Conv2D(filters, kernel_size)`: a full convolution, stride 1, with a bias;
/// Glorot-uniform weights `(filters, channels, k, k)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2D {
    /// Output channels.
    pub filters: usize,
    /// The kernel's side.
    pub kernel_size: usize,
    /// `Valid` unless told.
    pub padding: Padding,
    /// `Linear` unless told.
    pub activation: Activation,
}

impl Conv2D {
    /// `filters` kernels of `kernel_size` x `kernel_size`.
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        Conv2D {
            filters,
            kernel_size,
            padding: Padding::Valid,
            activation: Activation::Linear,
        }
    }

    /// `activation="relu"` (fused into the convolution on the CPU).
    pub fn relu(self) -> Self {
        Self {
            activation: Activation::Relu,
            ..self
        }
    }

    /// `padding="same"`.
    pub fn padding_same(self) -> Self {
        Self {
            padding: Padding::Same,
            ..self
        }
    }
}

impl Layer for Conv2D {
    fn kind(&self) -> String {
        "Conv2D".into()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let (c, h, w) = image_shape("Conv2D", input)?;
        let (ho, wo) = conv_output("Conv2D", (h, w), self.kernel_size, self.padding)?;
        let k = self.kernel_size;
        let conv = modules::conv2d(c, self.filters, k, self.padding.pixels(k), ctx.vb)?;
        let conv = match self.activation {
            Activation::Relu => conv.with_relu(),
            Activation::Linear => conv,
        };
        Ok(Built {
            module: Box::new(conv),
            output_shape: vec![self.filters, ho, wo],
        })
    }
}

/// Keras's `SeparableConv2D(filters, kernel_size)`: a depthwise `k` x `k` convolution
/// (one kernel per input channel, no bias) then a pointwise 1 x 1 one (with bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparableConv2D {
    /// Output channels.
    pub filters: usize,
    /// The depthwise kernel's side.
    pub kernel_size: usize,
    /// `Valid` unless told.
    pub padding: Padding,
    /// `Linear` unless told.
    pub activation: Activation,
}

impl SeparableConv2D {
    /// `filters` outputs from `kernel_size` x `kernel_size` depthwise kernels.
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        SeparableConv2D {
            filters,
            kernel_size,
            padding: Padding::Valid,
            activation: Activation::Linear,
        }
    }

    /// `activation="relu"` (fused into the pointwise convolution on the CPU).
    pub fn relu(self) -> Self {
        Self {
            activation: Activation::Relu,
            ..self
        }
    }

    /// `padding="same"`.
    pub fn padding_same(self) -> Self {
        Self {
            padding: Padding::Same,
            ..self
        }
    }
}

impl Layer for SeparableConv2D {
    fn kind(&self) -> String {
        "SeparableConv2D".into()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let (c, h, w) = image_shape("SeparableConv2D", input)?;
        let k = self.kernel_size;
        let (ho, wo) = conv_output("SeparableConv2D", (h, w), k, self.padding)?;
        let cfg = SeparableConv2dConfig {
            padding: self.padding.pixels(k),
            ..Default::default()
        };
        let conv = modules::separable_conv2d(c, self.filters, k, cfg, ctx.vb)?;
        let conv = match self.activation {
            Activation::Relu => conv.with_relu(),
            Activation::Linear => conv,
        };
        Ok(Built {
            module: Box::new(conv),
            output_shape: vec![self.filters, ho, wo],
        })
    }
}

/// Keras's `BatchNormalization()`: per channel, the batch's mean and variance in
/// training, the moving ones in inference; `gamma` and `beta` are trained, the moving
/// statistics are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormalization {
    /// Momentum and epsilon, Keras's unless told.
    pub config: BatchNormConfig,
}

impl BatchNormalization {
    /// Keras's defaults: momentum 0.99, epsilon 0.001.
    pub fn new() -> Self {
        BatchNormalization {
            config: BatchNormConfig::keras(),
        }
    }

    /// How much of the moving statistics each training step keeps.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.config.momentum = momentum;
        self
    }

    /// Added to the variance before the square root.
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.config.eps = epsilon;
        self
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl From<BatchNormConfig> for BatchNormalization {
    fn from(config: BatchNormConfig) -> Self {
        BatchNormalization { config }
    }
}

impl Layer for BatchNormalization {
    fn kind(&self) -> String {
        "BatchNormalization".into()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let Some(&channels) = input.first() else {
            return Err(Error::BadArgument(
                "BatchNormalization needs at least one axis".into(),
            ));
        };
        Ok(Built {
            module: Box::new(modules::batch_norm(channels, self.config, ctx.vb)?),
            output_shape: input.to_vec(),
        })
    }
}

/// Keras's `MaxPool2D(pool_size)`: the maximum of each window, stride the window's
/// side; a last row or column that does not fill a window is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2D {
    /// The window's side (2 unless told).
    pub pool_size: usize,
}

/// Keras's other name for [`MaxPool2D`].
pub type MaxPooling2D = MaxPool2D;

impl MaxPool2D {
    /// 2 x 2 windows.
    pub fn new() -> Self {
        MaxPool2D { pool_size: 2 }
    }

    /// `pool_size` x `pool_size` windows.
    pub fn pool_size(pool_size: usize) -> Self {
        MaxPool2D { pool_size }
    }
}

impl Default for MaxPool2D {
    fn default() -> Self {
        Self::new()
    }
}

struct Pool(usize);

impl candle_core::ModuleT for Pool {
    fn forward_t(
        &self,
        xs: &candle_core::Tensor,
        train: bool,
    ) -> candle_core::Result<candle_core::Tensor> {
        max_pool2d_t(xs, self.0, train)
    }
}

impl Layer for MaxPool2D {
    fn kind(&self) -> String {
        "MaxPooling2D".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        let (c, h, w) = image_shape("MaxPool2D", input)?;
        let k = self.pool_size.max(1);
        if h < k || w < k {
            return Err(Error::BadArgument(format!(
                "MaxPool2D: a {k} x {k} window does not fit a {h} x {w} input"
            )));
        }
        Ok(Built {
            module: Box::new(Pool(k)),
            output_shape: vec![c, h / k, w / k],
        })
    }
}

/// Keras's `Dropout(rate)`: in training, each value is zeroed with probability `rate`
/// and the rest scaled by `1 / (1 - rate)`. Its masks come from a seed (the model's and
/// the layer's position unless told), so the same seed drops the same values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// The share of values dropped.
    pub rate: f32,
    /// The masks' seed; `None`: from the model's seed.
    pub seed: Option<u64>,
}

impl Dropout {
    /// Drops `rate` of the values in training.
    pub fn new(rate: f32) -> Self {
        Dropout { rate, seed: None }
    }

    /// Draws the masks from `seed`.
    pub fn seed(self, seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..self
        }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> String {
        "Dropout".into()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let seed = self.seed.unwrap_or(ctx.seed);
        Ok(Built {
            module: Box::new(modules::dropout(self.rate, seed, ctx.vb)?),
            output_shape: input.to_vec(),
        })
    }
}

impl Layer for Flatten {
    fn kind(&self) -> String {
        "Flatten".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        Ok(Built {
            module: Box::new(self),
            output_shape: vec![input.iter().product()],
        })
    }
}

impl Layer for ReLU {
    fn kind(&self) -> String {
        "ReLU".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        Ok(Built {
            module: Box::new(self),
            output_shape: input.to_vec(),
        })
    }
}

/// Keras's `Rescaling(scale, offset)`: `x * scale + offset`, e.g. `1 / 255` to bring
/// pixels into 0..1 inside the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescaling {
    /// The built module.
    pub module: modules::Rescaling,
}

impl Rescaling {
    /// `x * scale`.
    pub fn new(scale: f64) -> Self {
        Rescaling {
            module: modules::Rescaling { scale, offset: 0.0 },
        }
    }

    /// `x * scale + offset`.
    pub fn with_offset(scale: f64, offset: f64) -> Self {
        Rescaling {
            module: modules::Rescaling { scale, offset },
        }
    }
}

impl Layer for Rescaling {
    fn kind(&self) -> String {
        "Rescaling".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        Ok(Built {
            module: Box::new(self.module),
            output_shape: input.to_vec(),
        })
    }
}

/// Keras's `Dense(units)`: every input to every output, plus a bias; Glorot-uniform
/// weights `(units, inputs)` as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dense {
    /// Outputs.
    pub units: usize,
    /// `Linear` unless told.
    pub activation: Activation,
    /// The bias's starting value (Keras's `bias_initializer=Constant(b)`), 0 unless told.
    pub initial_bias: f64,
}

impl Dense {
    /// `units` outputs.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            initial_bias: 0.0,
        }
    }

    /// `activation="relu"`.
    pub fn relu(self) -> Self {
        Self {
            activation: Activation::Relu,
            ..self
        }
    }

    /// Starts the bias at `bias` (the tutorial's output bias, chapter 9).
    pub fn initial_bias(self, bias: f64) -> Self {
        Self {
            initial_bias: bias,
            ..self
        }
    }
}

struct DenseModule {
    weight: candle_core::Tensor,
    bias: candle_core::Tensor,
    relu: bool,
}

impl candle_core::Module for DenseModule {
    /// `x Wᵀ + b`, the product as [`super::kernels::linear`] takes it: `(W xᵀ)ᵀ`, so that
    /// candle's backward pass makes W's gradient in W's own `(out, in)` layout (through
    /// `x Wᵀ` it is the transpose of an `(in, out)` product, copied element by element
    /// into place: 3% of a training step for the tutorial's 6,400 x 512 layer), and for a
    /// single input W's rows shared out over the cores.
    fn forward(&self, xs: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        let y = super::kernels::linear(xs, &self.weight)?.broadcast_add(&self.bias)?;
        if self.relu {
            super::kernels::relu(&y)
        } else {
            Ok(y)
        }
    }
}

impl Layer for Dense {
    fn kind(&self) -> String {
        "Dense".into()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let &[features] = input else {
            return Err(Error::BadArgument(format!(
                "Dense takes one row of features per sample, not a shape {input:?}; put Flatten \
                 (or GlobalAveragePooling2D) before it"
            )));
        };
        let weight = ctx.vb.get_with_hints(
            (self.units, features),
            "weight",
            glorot_uniform(features, self.units),
        )?;
        let bias = ctx.vb.get_with_hints(
            self.units,
            "bias",
            candle_nn::Init::Const(self.initial_bias),
        )?;
        Ok(Built {
            module: Box::new(DenseModule {
                weight,
                bias,
                relu: self.activation == Activation::Relu,
            }),
            output_shape: vec![self.units],
        })
    }
}

/// Keras's `GlobalAveragePooling2D()`: each feature map averaged to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalAveragePooling2D;

/// Keras's `GlobalMaxPooling2D()`: each feature map's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalMaxPooling2D;

fn global_pool(kind: &str, input: &[usize], pool: GlobalPool) -> Result<Built> {
    let (c, _, _) = image_shape(kind, input)?;
    Ok(Built {
        module: Box::new(pool),
        output_shape: vec![c],
    })
}

impl Layer for GlobalAveragePooling2D {
    fn kind(&self) -> String {
        "GlobalAveragePooling2D".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        global_pool("GlobalAveragePooling2D", input, GlobalPool::Average)
    }
}

impl Layer for GlobalMaxPooling2D {
    fn kind(&self) -> String {
        "GlobalMaxPooling2D".into()
    }

    fn build(self, input: &[usize], _ctx: BuildContext<'_>) -> Result<Built> {
        global_pool("GlobalMaxPooling2D", input, GlobalPool::Max)
    }
}

/// Any candle module as a layer: `build` gets the input shape and the variables'
/// builder, and returns the module and its output shape. For models of your own that
/// the Keras layers above do not cover.
pub struct Custom<F> {
    kind: String,
    build: F,
}

impl<F, M> Custom<F>
where
    F: FnOnce(&[usize], candle_nn::VarBuilder<'static>) -> candle_core::Result<(M, Vec<usize>)>,
    M: candle_core::ModuleT + Send + Sync + 'static,
{
    /// A layer shown as `kind` in the summary, made by `build`.
    pub fn new(kind: impl Into<String>, build: F) -> Self {
        Custom {
            kind: kind.into(),
            build,
        }
    }
}

impl<F, M> Layer for Custom<F>
where
    F: FnOnce(&[usize], candle_nn::VarBuilder<'static>) -> candle_core::Result<(M, Vec<usize>)>,
    M: candle_core::ModuleT + Send + Sync + 'static,
{
    fn kind(&self) -> String {
        self.kind.clone()
    }

    fn build(self, input: &[usize], ctx: BuildContext<'_>) -> Result<Built> {
        let (module, output_shape) = (self.build)(input, ctx.vb)?;
        Ok(Built {
            module: Box::new(module),
            output_shape,
        })
    }
}
