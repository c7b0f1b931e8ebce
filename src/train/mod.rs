//! Training with Keras's vocabulary and arithmetic (chapters 6 and 9): `compile` and
//! `fit` ([`Trainer`], [`Fit`]), losses, optimisers, learning-rate schedules, streaming
//! metrics, callbacks, resumable runs; each checked against Keras.
//!
//! The files, bottom up: `history` (what `fit` returns), `losses`, `metrics`,
//! `schedule`, `optim`, `callbacks` (they read the history and say go on or stop),
//! `state` (a run on disk), `step` (one step's gradients, where several devices plug in),
//! `trainer` (the loop).

mod callbacks;
mod history;
mod losses;
mod metrics;
mod optim;
mod schedule;
mod state;
mod step;
mod trainer;

pub use crate::data::Batch;
pub use callbacks::{Callback, CallbackState, Control, CsvLogger, EarlyStopping, ModelCheckpoint};
pub use history::{History, Logs, format_logs, smaller_is_better};
pub use losses::{
    Loss, binary_cross_entropy_with_logits, categorical_cross_entropy_with_logits,
    class_sample_weights, labels, weighted_categorical_cross_entropy,
};
pub use metrics::{
    Auc, BinaryAccuracy, CategoricalAccuracy, MeanTracker, Metric, Precision, Recall,
    TUTORIAL_METRICS, metric_named,
};
pub use optim::{Adam, Optimizer, Sgd};
pub use schedule::{Constant, CosineDecay, ExponentialDecay, LearningRateSchedule};
pub use step::{GradientStep, OneDevice, Replicas, ShardResult, replica_step};
pub use trainer::{Fit, Trainer, predict};

/// Sizes of `replicas` shards of a batch of `total`: as equal as can be, the first ones
/// one larger when it does not divide (as `tf.distribute` splits a batch).
pub fn shard_sizes(total: usize, replicas: usize) -> Vec<usize> {
    let replicas = replicas.max(1);
    (0..replicas)
        .map(|r| total / replicas + usize::from(r < total % replicas))
        .collect()
}
