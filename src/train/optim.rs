//! Adam with Keras's arithmetic, and a state that can be saved and resumed.
//!
//! candle-nn's `AdamW` with no weight decay differs from Keras's `Adam` in where epsilon
//! enters (it adds epsilon to the bias-corrected `sqrt(v)`, Keras to the raw one) and in
//! its default epsilon (1e-8 against 1e-7), and it keeps its moments private, so a
//! checkpoint could not hold them. This one follows Keras step for step (checked in
//! `tests/train_keras_parity.rs`) and exposes its state.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::schedule::LearningRateSchedule;
use crate::{Error, Result};

/// One trained variable and its two moments.
struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

/// Keras's `Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7)`.
pub struct Adam {
    slots: Vec<Slot>,
    schedule: Arc<dyn LearningRateSchedule>,
    /// Updates applied so far (Keras's `optimizer.iterations`).
    pub iterations: u64,
    /// Decay of the first moment.
    pub beta_1: f64,
    /// Decay of the second moment.
    pub beta_2: f64,
    /// Added to `sqrt(v)`.
    pub epsilon: f64,
}

impl Adam {
    /// Trains every variable of `varmap` except batch-norm running statistics.
    pub fn new(varmap: &VarMap, schedule: Arc<dyn LearningRateSchedule>) -> Result<Self> {
        let named = crate::nn::weights::trainable_named(varmap)?;
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    m: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    v: Var::zeros(var.shape(), var.dtype(), var.device())?,
                    name,
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            slots,
            schedule,
            iterations: 0,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        })
    }

    /// The learning rate of the next update.
    pub fn learning_rate(&self) -> f64 {
        self.schedule.rate(self.iterations)
    }

    /// Applies one update from the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.learning_rate();
        self.iterations += 1;
        let t = self.iterations as i32;
        let alpha = lr * (1.0 - self.beta_2.powi(t)).sqrt() / (1.0 - self.beta_1.powi(t));
        for slot in &self.slots {
            let Some(g) = grads.get(&slot.var) else {
                continue;
            };
            let m = (slot.m.as_tensor() + ((g - slot.m.as_tensor())? * (1.0 - self.beta_1))?)?;
            let v =
                (slot.v.as_tensor() + ((g.sqr()? - slot.v.as_tensor())? * (1.0 - self.beta_2))?)?;
            let update = ((&m / (v.sqrt()? + self.epsilon)?)? * alpha)?;
            slot.var.set(&(slot.var.as_tensor() - update)?)?;
            slot.m.set(&m)?;
            slot.v.set(&v)?;
        }
        Ok(())
    }

    /// The moments and the step count as named tensors, for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            out.insert(format!("adam.m.{}", slot.name), slot.m.as_tensor().clone());
            out.insert(format!("adam.v.{}", slot.name), slot.v.as_tensor().clone());
        }
        let device = self
            .slots
            .first()
            .map_or(candle_core::Device::Cpu, |s| s.var.device().clone());
        out.insert(
            "adam.iterations".into(),
            Tensor::new(&[self.iterations as f64], &device)?,
        );
        Ok(out)
    }

    /// Restores what [`Adam::state`] saved; every moment must be there.
    pub fn load_state(
        &mut self,
        state: &HashMap<String, Tensor>,
        source: &std::path::Path,
    ) -> Result<()> {
        let mut problems = Vec::new();
        for slot in &self.slots {
            for (kind, var) in [("m", &slot.m), ("v", &slot.v)] {
                let key = format!("adam.{kind}.{}", slot.name);
                match state.get(&key) {
                    Some(t) if t.dims() == var.dims() => var.set(&t.to_device(var.device())?)?,
                    Some(t) => problems.push(format!(
                        "{key}: shape {:?}, needs {:?}",
                        t.dims(),
                        var.dims()
                    )),
                    None => problems.push(format!("{key}: missing")),
                }
            }
        }
        match state.get("adam.iterations") {
            Some(t) => self.iterations = t.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64,
            None => problems.push("adam.iterations: missing".into()),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights {
                path: source.to_path_buf(),
                problems,
            })
        }
    }
}
