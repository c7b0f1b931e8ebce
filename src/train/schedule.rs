//! Learning-rate schedules: the rate as a function of the optimiser step, with Keras's
//! formulas (checked against Keras in `tests/train_keras_parity.rs`).

/// A learning rate for every step.
pub trait LearningRateSchedule: Send + Sync {
    /// The rate at optimiser step `step` (0 for the first update).
    fn rate(&self, step: u64) -> f64;
}

/// A plain number is a constant rate: `Adam::new(0.001)`.
impl LearningRateSchedule for f64 {
    fn rate(&self, _step: u64) -> f64 {
        *self
    }
}

/// The same rate throughout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl LearningRateSchedule for Constant {
    fn rate(&self, _step: u64) -> f64 {
        self.0
    }
}

/// `initial * decay_rate ^ (step / decay_steps)`, the exponent rounded down when
/// `staircase` (so the rate drops in steps): Keras's `ExponentialDecay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialDecay {
    /// The rate at step 0.
    pub initial: f64,
    /// Steps per decay.
    pub decay_steps: u64,
    /// Factor per `decay_steps`.
    pub decay_rate: f64,
    /// Decay in whole steps of `decay_steps`.
    pub staircase: bool,
}

impl ExponentialDecay {
    /// Keras's `ExponentialDecay(initial, decay_steps, decay_rate)`: a smooth decay.
    pub fn new(initial: f64, decay_steps: u64, decay_rate: f64) -> Self {
        ExponentialDecay {
            initial,
            decay_steps: decay_steps.max(1),
            decay_rate,
            staircase: false,
        }
    }

    /// `staircase=True`: the rate drops once every `decay_steps` steps.
    pub fn staircase(self) -> Self {
        Self {
            staircase: true,
            ..self
        }
    }
}

impl LearningRateSchedule for ExponentialDecay {
    fn rate(&self, step: u64) -> f64 {
        let mut p = step as f64 / self.decay_steps as f64;
        if self.staircase {
            p = p.floor();
        }
        self.initial * self.decay_rate.powf(p)
    }
}

/// Half a cosine from `initial` down to `alpha * initial` over `decay_steps`, then flat:
/// Keras's `CosineDecay` (without warm-up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineDecay {
    /// The rate at step 0.
    pub initial: f64,
    /// Steps to the bottom.
    pub decay_steps: u64,
    /// The bottom, as a fraction of `initial`.
    pub alpha: f64,
}

impl LearningRateSchedule for CosineDecay {
    fn rate(&self, step: u64) -> f64 {
        let done = step.min(self.decay_steps) as f64 / self.decay_steps.max(1) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
        self.initial * ((1.0 - self.alpha) * cosine + self.alpha)
    }
}
