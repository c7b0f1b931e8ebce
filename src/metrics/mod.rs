//! How good is a classifier? Confusion matrices, the scores read off them (accuracy,
//! balanced accuracy, precision, recall, F1), ROC and precision-recall curves and their
//! areas, the log loss of probabilities, calibration curves and Wilson intervals, with scikit-learn's definitions (checked number for number against
//! scikit-learn 1.7 in `tests/metrics_sklearn_parity.rs`).
//!
//! Classes are numbered `0..n_classes`; for the X-rays 0 is NORMAL and 1 is PNEUMONIA, the
//! positive class, as `flow_from_directory` numbers the folders.
//!
//! Why not linfa's metrics? linfa 0.8.1's `ConfusionMatrix` puts predictions in rows and
//! its binary `precision()` and `recall()` come out swapped, its counts cannot be read,
//! and its ROC curve has neither scikit-learn's thresholds nor `drop_intermediate`.
//! `tests/metrics_linfa.rs` pins down where linfa agrees (accuracy, area under the curve)
//! and where it does not, so that an upstream fix shows up.

mod calibration;
mod confusion;
mod loss;
mod pr;
mod roc;

pub use calibration::{CalibrationCurve, Proportion, calibration_curve, wilson_interval};
pub use confusion::{
    Average, BinaryCounts, ClassScores, ConfusionMatrix, Report, ZeroDivision, accuracy_score,
    balanced_accuracy_score, classification_report, confusion_matrix, f1_score,
    precision_recall_fscore_support, precision_score, recall_score,
};
pub use loss::{binary_log_loss, log_loss};
pub use pr::{PrecisionRecallCurve, average_precision_score, precision_recall_curve, predict_at};
pub use roc::{
    OperatingPoint, RocCurve, auc, one_vs_rest, roc_auc_score, roc_auc_score_ovo,
    roc_auc_score_ovr, roc_curve,
};

use crate::{Error, Result};

/// Checks that predictions and truths pair up, and that there is something to score.
fn check_lengths(metric: &'static str, y_true: usize, y_other: usize) -> Result<()> {
    if y_true != y_other {
        return Err(Error::Metric {
            metric,
            detail: format!("{y_true} true labels but {y_other} predictions"),
            fix: "pass one prediction per sample, in the same order",
        });
    }
    if y_true == 0 {
        return Err(Error::Metric {
            metric,
            detail: "no samples".into(),
            fix: "score at least one prediction",
        });
    }
    Ok(())
}
