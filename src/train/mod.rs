//! Training: losses, learning-rate schedules, Adam, streaming metrics (chapters 6 and 9),
//! with Keras's definitions, each checked against Keras.

mod callbacks;
mod fit;
mod losses;
mod metrics;
mod optim;
mod schedule;
mod state;

pub use callbacks::{
    Callback, CallbackState, Control, CsvLogger, EarlyStopping, Logs, ModelCheckpoint,
};
pub use fit::{
    Batch, FitOptions, History, Loss, Trainer, evaluate, format_logs, predict, shard_sizes,
};
pub use losses::{
    binary_cross_entropy_with_logits, categorical_cross_entropy_with_logits, class_sample_weights,
    weighted_categorical_cross_entropy,
};
pub use metrics::{
    Auc, BinaryAccuracy, CategoricalAccuracy, MeanTracker, Metric, Precision, Recall,
    tutorial_metrics,
};
pub use optim::Adam;
pub use schedule::{Constant, CosineDecay, ExponentialDecay, LearningRateSchedule};
