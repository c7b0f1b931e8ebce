//! One training step's gradients, on one device or on several: the seam where
//! [`crate::distribute`] plugs its replicas into the trainer, which never needs to know
//! how gradients travel between devices.

use std::ops::Range;

use candle_core::backprop::GradStore;
use candle_core::{DType, ModuleT, Tensor};

use super::losses::Loss;
use crate::nn::Sequential;
use crate::{Error, Result};

/// What one replica computed on its shard of a batch.
pub struct ShardResult {
    /// Images in the shard.
    pub samples: usize,
    /// The shard's mean loss.
    pub loss: f32,
    /// The shard's probabilities, row after row.
    pub probabilities: Vec<f32>,
    /// Gradients of the trained variables (averaged over replicas once the step's
    /// all-reduce is done).
    pub grads: GradStore,
}

/// How a step's gradients are computed: on each replica's shard of the batch, then
/// made equal across replicas (averaged), so every replica applies the same update.
pub trait GradientStep: Send {
    /// Says how, for reports (`"one device: the CPU"`).
    fn describe(&self) -> String;

    /// Forward and backward passes of every replica on its shard of `(x, y)`, with the
    /// gradients averaged; `None` for a replica whose shard was empty and that needs no
    /// update.
    fn gradients(
        &mut self,
        replicas: &[Sequential],
        x: &Tensor,
        y: &Tensor,
        loss: Loss,
        class_weight: Option<&[f64]>,
    ) -> Result<Vec<Option<ShardResult>>>;

    /// The samples of a batch of `total` that this process trains on (all of them,
    /// unless several processes share each batch).
    fn own_samples(&self, total: usize) -> Range<usize> {
        0..total
    }
}

/// Forward, loss and backward of one model on one batch (or shard), with the gradients
/// of frozen variables left out.
pub fn replica_step(
    model: &Sequential,
    loss: Loss,
    x: &Tensor,
    y: &Tensor,
    class_weight: Option<&[f64]>,
) -> Result<ShardResult> {
    let (x, y) = (x.to_device(model.device())?, y.to_device(model.device())?);
    let logits = model.forward_t(&x, true)?;
    let value = loss.compute(&logits, &y, class_weight)?;
    let loss_value = value.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    let mut grads = value.backward()?;
    let trained: std::collections::HashSet<String> = model
        .trainable_variables()?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for (name, var) in crate::nn::weights::lock(model.weights())?.iter() {
        if !trained.contains(name) {
            grads.remove(var.as_tensor());
        }
    }
    Ok(ShardResult {
        samples: x.dim(0)?,
        loss: loss_value,
        probabilities: loss
            .probabilities(&logits)?
            .flatten_all()?
            .to_vec1::<f32>()?,
        grads,
    })
}

/// One model on one device: the step is the model's own.
pub struct OneDevice;

impl GradientStep for OneDevice {
    fn describe(&self) -> String {
        "one device".into()
    }

    fn gradients(
        &mut self,
        replicas: &[Sequential],
        x: &Tensor,
        y: &Tensor,
        loss: Loss,
        class_weight: Option<&[f64]>,
    ) -> Result<Vec<Option<ShardResult>>> {
        let model = replicas
            .first()
            .ok_or_else(|| Error::Training("no model to train".into()))?;
        Ok(vec![Some(replica_step(model, loss, x, y, class_weight)?)])
    }
}

/// What a trainer trains: one model, or replicas of it with the step that keeps them
/// equal (built by [`crate::distribute::Strategy::replicate`]).
pub struct Replicas {
    pub(crate) models: Vec<Sequential>,
    pub(crate) step: Box<dyn GradientStep>,
}

impl Replicas {
    /// Replicas built alike, one per device, and the step that averages their
    /// gradients.
    pub fn new(models: Vec<Sequential>, step: Box<dyn GradientStep>) -> Result<Self> {
        if models.is_empty() {
            return Err(Error::BadArgument(
                "a trainer needs at least one replica".into(),
            ));
        }
        Ok(Replicas { models, step })
    }
}

impl From<Sequential> for Replicas {
    fn from(model: Sequential) -> Self {
        Replicas {
            models: vec![model],
            step: Box::new(OneDevice),
        }
    }
}
