//! The built layers underneath [`super::layers`], in candle's shape: a constructor
//! taking the `VarBuilder` last, and a `Module` or `ModuleT` impl. Candle lacks them, or
//! has them with other semantics than Keras's (introduced in chapter 4).
//!
//! Initial weights follow Keras: Glorot-uniform kernels, zero biases.

use candle_core::{DType, Module, ModuleT, Result, Tensor, Var};
use candle_nn::{Conv2dConfig, Init, Linear, VarBuilder};

/// Keras's default kernel initialiser: uniform in `±sqrt(6 / (fan_in + fan_out))`.
pub fn glorot_uniform(fan_in: usize, fan_out: usize) -> Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -limit,
        up: limit,
    }
}

/// A convolution with stride 1 and `padding` zeros on each side (`k / 2` is Keras's
/// `padding="same"` for odd kernels, 0 its `"valid"`); weights `(out, in, k, k)` as in
/// PyTorch. On the CPU its gradients go through [`super::kernels::conv2d`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    relu: bool,
}

/// Builds a [`Conv2d`] with weights `weight` `(out, in, k, k)` and `bias` `(out)`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let init = glorot_uniform(in_channels * k * k, out_channels * k * k);
    let weight = vb.get_with_hints((out_channels, in_channels, k, k), "weight", init)?;
    let bias = vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?;
    Ok(Conv2d {
        weight,
        bias,
        padding,
        relu: false,
    })
}

/// [`conv2d`] with Keras's `padding="same"`: the output keeps the input's size.
pub fn conv2d_same(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    conv2d(in_channels, out_channels, k, k / 2, vb)
}

impl Conv2d {
    /// With ReLU applied to the output, Keras's `activation="relu"`; on the CPU it is
    /// fused into the convolution (one op, one pass fewer each way).
    pub fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let bias = Some(&self.bias);
        match self.relu {
            true => super::kernels::conv2d_bias_relu(xs, &self.weight, bias, self.padding),
            false => super::kernels::conv2d_bias(xs, &self.weight, bias, self.padding),
        }
    }
}

/// A fully connected layer, Keras's `Dense(units)`; weight `(out, in)` as in PyTorch.
pub fn dense(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_features, in_features),
        "weight",
        glorot_uniform(in_features, out_features),
    )?;
    let bias = vb.get_with_hints(out_features, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

/// Keras's `MaxPool2D()`: the maximum of each `k` x `k` window, stride `k`, and a last row
/// or column that does not fill a window is dropped (45 x 45 becomes 22 x 22).
///
/// Not candle's `max_pool2d`, whose backward pass in candle 0.11.1 scales the gradient
/// by 1/k² and misplaces it when the size is odd (`tests/nn_gradients.rs` shows both):
/// on the CPU a fused kernel ([`super::kernels::max_pool2d`]) whose gradient goes to the
/// first maximum of each window, as PyTorch's does; elsewhere a reshape and two `max`
/// reductions, where tied maxima each get the gradient.
pub fn max_pool2d(xs: &Tensor, k: usize) -> Result<Tensor> {
    max_pool2d_t(xs, k, true)
}

/// [`max_pool2d`], told whether it trains (see [`super::kernels::max_pool2d_t`]: in
/// training its backward pass is faster, for a byte per window kept).
pub fn max_pool2d_t(xs: &Tensor, k: usize, train: bool) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let (ho, wo) = (h / k, w / k);
    if ho == 0 || wo == 0 {
        candle_core::bail!("max_pool2d: a {h} x {w} input is smaller than the {k} x {k} window");
    }
    super::kernels::max_pool2d_t(xs, k, train)
}

/// [`max_pool2d`] as a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size and stride.
    pub k: usize,
}

impl Default for MaxPool2d {
    fn default() -> Self {
        Self { k: 2 }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        max_pool2d(xs, self.k)
    }
}

/// Keras's `Rescaling(scale, offset)`: `x * scale + offset`, e.g. `1/255` to map pixels
/// into 0..1 inside the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescaling {
    /// Multiplier.
    pub scale: f64,
    /// Added after the multiplication.
    pub offset: f64,
}

impl Module for Rescaling {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.affine(self.scale, self.offset)
    }
}

/// Keras's `Dropout(rate, seed)`: in training, zeroes each value with probability
/// `rate` and scales the rest by `1 / (1 - rate)`; in inference, passes values through.
///
/// candle's own `Dropout` draws from an unseeded generator, so two runs never drop the
/// same values. Here the mask of the `k`-th training call comes from `seed` and `k`
/// alone, and `k` is a variable of the model (`rng_step`), saved and restored with the
/// weights: the same seed gives the same run, and a run resumed from a checkpoint drops
/// exactly what the uninterrupted run would have. The counter is not trained; see
/// [`crate::nn::trainable_vars`].
#[derive(Debug, Clone)]
pub struct Dropout {
    rate: f32,
    seed: u64,
    step: Var,
}

/// Builds a [`Dropout`] whose masks follow `seed`; its counter is `rng_step` under `vb`.
pub fn dropout(rate: f32, seed: u64, vb: VarBuilder) -> Result<Dropout> {
    if !(0.0..1.0).contains(&rate) {
        candle_core::bail!("dropout needs a rate in 0..1, got {rate}");
    }
    // The counter stays in host memory whatever the model's device: each training call
    // reads it, and on a GPU that read would wait for every queued kernel.
    let step =
        vb.set_device(candle_core::Device::Cpu)
            .get_with_hints(1, RNG_STEP, Init::Const(0.0))?;
    Ok(Dropout {
        rate,
        seed,
        step: Var::from_tensor(&step)?,
    })
}

/// The name of a dropout layer's counter of training calls.
pub const RNG_STEP: &str = "rng_step";

impl Dropout {
    /// The share of values dropped in training.
    pub fn rate(&self) -> f32 {
        self.rate
    }

    /// Training calls so far (the position in the random stream).
    pub fn calls(&self) -> Result<u64> {
        let k = self.step.as_tensor().flatten_all()?.to_dtype(DType::F64)?;
        Ok(k.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64)
    }
}

impl ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.rate == 0.0 {
            return Ok(xs.clone());
        }
        use rand::{Rng, SeedableRng};
        let k = self.calls()?;
        self.step.set(
            &Tensor::new(&[(k + 1) as f32], self.step.device())?.to_dtype(self.step.dtype())?,
        )?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(k);
        let keep = 1.0 / (1.0 - self.rate);
        let mask: Vec<f32> = (0..xs.elem_count())
            .map(|_| {
                if rng.random::<f32>() < self.rate {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs * mask
    }
}

/// Keras's `ReLU()` (`activation="relu"`): `max(x, 0)`, with a fused parallel kernel on
/// the CPU ([`super::kernels::relu`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReLU;

impl Module for ReLU {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        super::kernels::relu(xs)
    }
}

/// Keras's `Flatten()`: everything after the batch axis in one row. On `(N, C, H, W)` the
/// order is channel-major, PyTorch's; Keras flattens `(N, H, W, C)`, so a dense layer's
/// weights from Keras need their rows reordered (the fixture scripts do it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.flatten_from(1)
    }
}

/// Keras's `GlobalAveragePooling2D()` (`mean`) and `GlobalMaxPooling2D()` (`max`):
/// one number per channel, `(N, C, H, W)` to `(N, C)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalPool {
    /// The mean of each feature map.
    Average,
    /// The maximum of each feature map.
    Max,
}

impl Module for GlobalPool {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            GlobalPool::Average => xs.mean((2, 3)),
            GlobalPool::Max => xs.max(3)?.max(2),
        }
    }
}

/// Configuration of [`SeparableConv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparableConv2dConfig {
    /// Zero padding on each side; `k / 2` keeps the size (Keras's `padding="same"`).
    pub padding: usize,
    /// Filters per input channel in the depthwise step (Keras's `depth_multiplier`).
    pub depth_multiplier: usize,
}

impl Default for SeparableConv2dConfig {
    fn default() -> Self {
        Self {
            padding: 0,
            depth_multiplier: 1,
        }
    }
}

/// Keras's `SeparableConv2D`: a depthwise `k` x `k` convolution (one filter per input
/// channel, no bias) followed by a pointwise 1 x 1 convolution (with bias). It sees the
/// same neighbourhood as a full convolution with about `1/out + 1/k²` of its weights.
#[derive(Debug, Clone)]
pub struct SeparableConv2d {
    depthwise: candle_nn::Conv2d,
    pointwise_weight: Tensor,
    pointwise_bias: Tensor,
    relu: bool,
}

impl SeparableConv2d {
    /// With ReLU applied to the output, Keras's `activation="relu"`, fused into the
    /// pointwise convolution on the CPU.
    pub fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }
}

/// Builds a [`SeparableConv2d`]; weights `depthwise.weight` `(in * m, 1, k, k)`,
/// `pointwise.weight` `(out, in * m, 1, 1)` and `pointwise.bias` `(out)`.
pub fn separable_conv2d(
    in_channels: usize,
    out_channels: usize,
    k: usize,
    cfg: SeparableConv2dConfig,
    vb: VarBuilder,
) -> Result<SeparableConv2d> {
    let mid = in_channels * cfg.depth_multiplier;
    let depthwise_cfg = Conv2dConfig {
        padding: cfg.padding,
        groups: in_channels,
        ..Default::default()
    };
    let dw = vb.pp("depthwise");
    let dw_weight = dw.get_with_hints(
        (mid, 1, k, k),
        "weight",
        glorot_uniform(k * k, k * k * cfg.depth_multiplier),
    )?;
    let pw = vb.pp("pointwise");
    let pw_weight = pw.get_with_hints(
        (out_channels, mid, 1, 1),
        "weight",
        glorot_uniform(mid, out_channels),
    )?;
    let pw_bias = pw.get_with_hints(out_channels, "bias", Init::Const(0.0))?;
    Ok(SeparableConv2d {
        depthwise: candle_nn::Conv2d::new(dw_weight, None, depthwise_cfg),
        pointwise_weight: pw_weight,
        pointwise_bias: pw_bias,
        relu: false,
    })
}

impl Module for SeparableConv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let cfg = self.depthwise.config();
        let (w, b) = (&self.pointwise_weight, Some(&self.pointwise_bias));
        if cfg.groups == xs.dim(1)? && cfg.stride == 1 && cfg.dilation == 1 {
            let dw = self.depthwise.weight();
            return super::kernels::separable_conv2d(
                xs,
                dw,
                w,
                &self.pointwise_bias,
                cfg.padding,
                self.relu,
            );
        }
        let mid = xs.apply(&self.depthwise)?;
        match self.relu {
            true => super::kernels::pointwise_bias_relu(&mid, w, b),
            false => super::kernels::pointwise_bias(&mid, w, b),
        }
    }
}

/// Configuration of [`BatchNorm`], in Keras's terms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// How much of the old running statistics each training step keeps (Keras's meaning:
    /// 0.99; PyTorch's `momentum=0.1` is 0.9 here).
    pub momentum: f64,
    /// Update the running variance with the unbiased batch variance (PyTorch) instead of
    /// the biased one (Keras). Training batches are always normalised with the biased one.
    pub unbiased_running_var: bool,
}

impl BatchNormConfig {
    /// Keras's `BatchNormalization()`: momentum 0.99, epsilon 0.001.
    pub fn keras() -> Self {
        Self {
            eps: 1e-3,
            momentum: 0.99,
            unbiased_running_var: false,
        }
    }

    /// PyTorch's `BatchNorm2d`: momentum 0.1 (0.9 in Keras's terms), epsilon 1e-5.
    pub fn pytorch() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.9,
            unbiased_running_var: true,
        }
    }
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self::keras()
    }
}

/// Batch normalisation over the channel axis (axis 1), for `(N, C)` and `(N, C, H, W)`.
///
/// Training mode (`forward_t(x, true)`) normalises with the batch's own mean and variance
/// and moves the running statistics towards them; evaluation mode uses the running
/// statistics. The running statistics are variables too (`running_mean`, `running_var`),
/// so they are saved with the weights, but they are not trained: see
/// [`crate::nn::trainable_vars`].
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    cfg: BatchNormConfig,
}

/// Builds a [`BatchNorm`] for `channels` channels: `weight` (gamma, ones), `bias` (beta,
/// zeros), `running_mean` (zeros), `running_var` (ones).
pub fn batch_norm(channels: usize, cfg: BatchNormConfig, vb: VarBuilder) -> Result<BatchNorm> {
    if cfg.eps < 0.0 || !(0.0..=1.0).contains(&cfg.momentum) {
        candle_core::bail!(
            "batch norm needs eps >= 0 and momentum in 0..=1, got {} and {}",
            cfg.eps,
            cfg.momentum
        );
    }
    let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
    let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
    // Backed by a VarMap, these tensors are its variables and `from_tensor` returns them
    // as they are, so training updates land in the weights that get saved.
    Ok(BatchNorm {
        weight,
        bias,
        running_mean: Var::from_tensor(&running_mean)?,
        running_var: Var::from_tensor(&running_var)?,
        cfg,
    })
}

impl BatchNorm {
    /// The running mean, one value per channel.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance, one value per channel.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if xs.rank() < 2 {
            candle_core::bail!("batch norm needs (N, C, ...) input, got {:?}", xs.dims());
        }
        let dtype = xs.dtype();
        if train {
            let channels = xs.dim(1)?;
            let count = xs.elem_count() / channels.max(1);
            let (y, mean, var) =
                super::kernels::batch_norm_train(xs, &self.weight, &self.bias, self.cfg.eps)?;
            let keep = self.cfg.momentum;
            let moving_var = if self.cfg.unbiased_running_var && count > 1 {
                (&var * (count as f64 / (count - 1) as f64))?
            } else {
                var
            };
            let stats = self.running_mean.dtype();
            let new_mean = ((self.running_mean.as_tensor() * keep)?
                + (mean.detach().to_dtype(stats)? * (1.0 - keep))?)?;
            let new_var = ((self.running_var.as_tensor() * keep)?
                + (moving_var.detach().to_dtype(stats)? * (1.0 - keep))?)?;
            self.running_mean.set(&new_mean)?;
            self.running_var.set(&new_var)?;
            return Ok(y);
        }
        let (mean, var) = (
            self.running_mean.as_tensor().to_dtype(dtype)?,
            self.running_var.as_tensor().to_dtype(dtype)?,
        );
        let inv_std = (var + self.cfg.eps)?.sqrt()?.recip()?;
        let scale = (self.weight.to_dtype(dtype)? * inv_std)?;
        let shift = (self.bias.to_dtype(dtype)? - (&mean * &scale)?)?;
        super::kernels::channel_affine(xs, &scale, &shift)
    }
}
