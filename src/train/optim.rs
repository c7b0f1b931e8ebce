//! Optimisers with Keras's arithmetic and a state that can be saved and resumed: Adam
//! (the tutorial's) and plain gradient descent (SGD, to compare with).
//!
//! candle-nn's `AdamW` with no weight decay differs from Keras's `Adam` in where epsilon
//! enters (it adds epsilon to the bias-corrected `sqrt(v)`, Keras to the raw one) and in
//! its default epsilon (1e-8 against 1e-7), and it keeps its moments private, so a
//! checkpoint could not hold them. This one follows Keras step for step (checked in
//! `tests/train_keras_parity.rs`) and exposes its state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::schedule::LearningRateSchedule;
use crate::nn::kernels::{AdamStep, adam_update};
use crate::{Error, Result};

/// What `Trainer::compile` takes as `optimizer=`: made without variables, bound to the
/// model's trained variables when compiled (one copy per replica).
pub trait Optimizer: Send {
    /// Keras's name for it (`"adam"`).
    fn name(&self) -> &'static str;
    /// Binds the optimiser to the variables it trains; earlier state is dropped.
    fn bind(&mut self, vars: Vec<(String, Var)>) -> Result<()>;
    /// Applies one update from the gradients of a backward pass; variables without a
    /// gradient (frozen ones) are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The learning rate of the next update.
    fn learning_rate(&self) -> f64;
    /// Updates applied so far (Keras's `optimizer.iterations`).
    fn iterations(&self) -> u64;
    /// The state to save with a run (moments, step count), as named tensors.
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Takes back what [`Optimizer::state`] gave; every part must be there.
    fn load_state(&mut self, state: &HashMap<String, Tensor>, source: &Path) -> Result<()>;
    /// An unbound copy with the same settings, for another replica.
    fn fresh(&self) -> Box<dyn Optimizer>;
}

/// One trained variable and its two moments.
struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

/// Keras's `Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7)`:
///
/// `m ← β₁ m + (1 - β₁) g`, `v ← β₂ v + (1 - β₂) g²`,
/// `w ← w - lr · sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ) · m / (sqrt(v) + ε)`.
pub struct Adam {
    slots: Vec<Slot>,
    schedule: Arc<dyn LearningRateSchedule>,
    iterations: u64,
    /// Decay of the first moment.
    pub beta_1: f64,
    /// Decay of the second moment.
    pub beta_2: f64,
    /// Added to `sqrt(v)`.
    pub epsilon: f64,
}

impl Adam {
    /// Adam with this learning rate: a number, or a schedule such as
    /// `ExponentialDecay`.
    pub fn new(learning_rate: impl LearningRateSchedule + 'static) -> Self {
        Adam {
            slots: Vec::new(),
            schedule: Arc::new(learning_rate),
            iterations: 0,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// Keras's `optimizer="adam"`: a learning rate of 0.001.
    pub fn default_keras() -> Self {
        Adam::new(0.001)
    }

    /// The names of the variables it trains.
    pub fn variables(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }
}

fn iterations_tensor(iterations: u64, var: Option<&Var>) -> Result<Tensor> {
    let device = var.map_or(candle_core::Device::Cpu, |v| v.device().clone());
    Ok(Tensor::new(&[iterations as f64], &device)?)
}

fn read_iterations(
    state: &HashMap<String, Tensor>,
    key: &str,
    problems: &mut Vec<String>,
) -> Result<u64> {
    Ok(match state.get(key) {
        Some(t) => t.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64,
        None => {
            problems.push(format!("{key}: missing"));
            0
        }
    })
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn bind(&mut self, vars: Vec<(String, Var)>) -> Result<()> {
        self.slots = vars
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
        self.iterations = 0;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.schedule.rate(self.iterations)
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.learning_rate();
        self.iterations += 1;
        let t = self.iterations as i32;
        let alpha = lr * (1.0 - self.beta_2.powi(t)).sqrt() / (1.0 - self.beta_1.powi(t));
        for slot in &self.slots {
            let Some(g) = grads.get(&slot.var) else {
                continue;
            };
            let step = AdamStep {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                alpha,
                epsilon: self.epsilon,
            };
            adam_update(&slot.var, &slot.m, &slot.v, g, step)?;
        }
        Ok(())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            out.insert(format!("adam.m.{}", slot.name), slot.m.as_tensor().clone());
            out.insert(format!("adam.v.{}", slot.name), slot.v.as_tensor().clone());
        }
        out.insert(
            "adam.iterations".into(),
            iterations_tensor(self.iterations, self.slots.first().map(|s| &s.var))?,
        );
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
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
        self.iterations = read_iterations(state, "adam.iterations", &mut problems)?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights {
                path: source.to_path_buf(),
                problems,
            })
        }
    }

    fn fresh(&self) -> Box<dyn Optimizer> {
        Box::new(Adam {
            slots: Vec::new(),
            schedule: Arc::clone(&self.schedule),
            iterations: 0,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
        })
    }
}

/// Keras's `SGD(learning_rate, momentum=0.0)`: plain gradient descent,
/// `w ← w - lr · g`; with momentum, `u ← momentum · u - lr · g` and `w ← w + u`.
pub struct Sgd {
    slots: Vec<(String, Var, Var)>,
    schedule: Arc<dyn LearningRateSchedule>,
    iterations: u64,
    /// The share of the last update carried into the next.
    pub momentum: f64,
}

impl Sgd {
    /// Gradient descent with this learning rate (a number or a schedule).
    pub fn new(learning_rate: impl LearningRateSchedule + 'static) -> Self {
        Sgd {
            slots: Vec::new(),
            schedule: Arc::new(learning_rate),
            iterations: 0,
            momentum: 0.0,
        }
    }

    /// With momentum (Keras's `momentum=`).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn bind(&mut self, vars: Vec<(String, Var)>) -> Result<()> {
        self.slots = vars
            .into_iter()
            .map(|(name, var)| {
                let u = Var::zeros(var.shape(), var.dtype(), var.device())?;
                Ok((name, var, u))
            })
            .collect::<Result<_>>()?;
        self.iterations = 0;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.schedule.rate(self.iterations)
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.learning_rate();
        self.iterations += 1;
        for (_, var, u) in &self.slots {
            let Some(g) = grads.get(var) else { continue };
            let update = ((u.as_tensor() * self.momentum)? - (g * lr)?)?;
            var.set(&(var.as_tensor() + &update)?)?;
            u.set(&update)?;
        }
        Ok(())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, _, u) in &self.slots {
            out.insert(format!("sgd.u.{name}"), u.as_tensor().clone());
        }
        out.insert(
            "sgd.iterations".into(),
            iterations_tensor(self.iterations, self.slots.first().map(|s| &s.1))?,
        );
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        let mut problems = Vec::new();
        for (name, _, u) in &self.slots {
            let key = format!("sgd.u.{name}");
            match state.get(&key) {
                Some(t) if t.dims() == u.dims() => u.set(&t.to_device(u.device())?)?,
                _ => problems.push(format!("{key}: missing or of another shape")),
            }
        }
        self.iterations = read_iterations(state, "sgd.iterations", &mut problems)?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights {
                path: source.to_path_buf(),
                problems,
            })
        }
    }

    fn fresh(&self) -> Box<dyn Optimizer> {
        Box::new(Sgd {
            slots: Vec::new(),
            schedule: Arc::clone(&self.schedule),
            iterations: 0,
            momentum: self.momentum,
        })
    }
}
