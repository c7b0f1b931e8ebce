//! Losses, computed from logits (the model's outputs before the sigmoid or softmax),
//! which is both numerically stable and what Keras does with `from_logits=True`.

use candle_core::{D, Tensor};

use crate::Result;

/// Binary cross-entropy of `logits` against 0/1 `targets` (both `(N, 1)` or `(N,)`),
/// averaged as Keras averages it: the sum of the per-sample losses, each times its
/// weight, divided by the number of samples (not by the sum of the weights). With
/// `class_weight`, the weight of a sample is its class's weight.
///
/// Each sample's loss is `max(x, 0) - x * y + ln(1 + exp(-|x|))`, which equals
/// `-y ln σ(x) - (1 - y) ln(1 - σ(x))` without overflowing for large `|x|`.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    sample_weight: Option<&Tensor>,
) -> Result<Tensor> {
    let x = logits.flatten_all()?;
    let y = targets.flatten_all()?.to_dtype(x.dtype())?;
    let per_sample =
        ((x.relu()? - (&x * &y)?)? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    let weighted = match sample_weight {
        Some(w) => (per_sample * w.flatten_all()?.to_dtype(x.dtype())?)?,
        None => per_sample,
    };
    Ok(weighted.mean_all()?)
}

/// The weight of each sample from its 0/1 label and `[weight of 0, weight of 1]`.
pub fn class_sample_weights(targets: &Tensor, class_weight: [f64; 2]) -> Result<Tensor> {
    let y = targets.flatten_all()?.to_dtype(candle_core::DType::F32)?;
    Ok(y.affine(class_weight[1] - class_weight[0], class_weight[0])?)
}

/// Categorical cross-entropy of `logits` `(N, C)` against class numbers `targets` `(N,)`,
/// averaged over samples (chapter 6's softmax VGG).
pub fn categorical_cross_entropy_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_probabilities = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    Ok(candle_nn::loss::nll(
        &log_probabilities,
        &targets.to_dtype(candle_core::DType::U32)?,
    )?)
}

/// [`categorical_cross_entropy_with_logits`] with a weight per sample, averaged as Keras
/// averages a weighted loss: the weighted sum divided by the number of samples.
pub fn weighted_categorical_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    sample_weight: Option<&Tensor>,
) -> Result<Tensor> {
    let Some(w) = sample_weight else {
        return categorical_cross_entropy_with_logits(logits, targets);
    };
    let log_probabilities = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let index = targets
        .flatten_all()?
        .to_dtype(candle_core::DType::U32)?
        .unsqueeze(1)?;
    let per_sample = log_probabilities.gather(&index, 1)?.flatten_all()?.neg()?;
    let weighted = (per_sample * w.flatten_all()?.to_dtype(logits.dtype())?)?;
    Ok(weighted.mean_all()?)
}

/// What the model's outputs are and how they are scored (Keras's `loss=`, always with
/// `from_logits=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// One logit per image, 0/1 labels: `BinaryCrossentropy`.
    #[default]
    BinaryCrossentropy,
    /// One logit per class, class-number (or one-hot) labels:
    /// `SparseCategoricalCrossentropy` (Keras's `CategoricalCrossentropy` on one-hot labels
    /// gives the same numbers).
    CategoricalCrossentropy,
}

impl Loss {
    /// The mean loss of a batch; each sample weighted by its class's `class_weight`.
    pub fn compute(
        &self,
        logits: &Tensor,
        y: &Tensor,
        class_weight: Option<&[f64]>,
    ) -> Result<Tensor> {
        let y = &class_numbers(y)?;
        let weights = match class_weight {
            Some(cw) => Some(sample_weights(&labels(y)?, cw, logits.device())?),
            None => None,
        };
        match self {
            Loss::BinaryCrossentropy => {
                binary_cross_entropy_with_logits(logits, y, weights.as_ref())
            }
            Loss::CategoricalCrossentropy => {
                weighted_categorical_cross_entropy(logits, y, weights.as_ref())
            }
        }
    }

    /// Probabilities from logits: `(N, 1)`, the sigmoid, for binary (the probability of
    /// class 1); `(N, k)`, the softmax, for categorical.
    pub fn probabilities(&self, logits: &Tensor) -> Result<Tensor> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        Ok(match self {
            Loss::BinaryCrossentropy => {
                let n = logits.dim(0)?;
                candle_nn::ops::sigmoid(&logits.reshape((n, ()))?)?
            }
            Loss::CategoricalCrossentropy => candle_nn::ops::softmax(&logits, D::Minus1)?,
        })
    }

    /// The name Keras's `metrics=["accuracy"]` stands for with this loss.
    pub fn accuracy_name(&self) -> &'static str {
        match self {
            Loss::BinaryCrossentropy => "binary_accuracy",
            Loss::CategoricalCrossentropy => "categorical_accuracy",
        }
    }
}

/// One number per sample: the 0/1 label, the class number, or the class of a one-hot
/// row (Keras's `class_mode="categorical"`).
pub fn labels(y: &Tensor) -> Result<Vec<f32>> {
    Ok(class_numbers(y)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

fn class_numbers(y: &Tensor) -> Result<Tensor> {
    Ok(match y.dims() {
        [_, k] if *k > 1 => y.argmax(1)?,
        _ => y.flatten_all()?,
    })
}

/// The weight of each sample: its class's entry in `class_weight`.
fn sample_weights(
    labels: &[f32],
    class_weight: &[f64],
    device: &candle_core::Device,
) -> Result<Tensor> {
    let weights =
        labels
            .iter()
            .map(|&l| {
                class_weight.get(l as usize).map(|&w| w as f32).ok_or_else(|| {
                crate::Error::Training(format!(
                    "class_weight has {} entries but a label is {l}; give one weight per class",
                    class_weight.len()
                ))
            })
            })
            .collect::<Result<Vec<f32>>>()?;
    Ok(Tensor::new(weights, device)?)
}
