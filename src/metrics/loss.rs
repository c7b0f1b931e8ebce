//! Scores of probabilities themselves, not of the decisions made from them.

use ndarray::ArrayView2;

use super::check_lengths;
use crate::{Error, Result};

/// The cross-entropy of predicted class probabilities, as scikit-learn's `log_loss`:
/// the mean of `-ln p(true class)`, each probability first clipped to `[eps, 1 - eps]`
/// (`eps` of `f64`, so a confident wrong answer costs a lot but not infinitely) and each
/// row then normalised to sum to 1. This is the number a classifier's training
/// minimises (chapter 9's loss, without class weights).
pub fn log_loss(y_true: &[usize], y_prob: ArrayView2<f64>) -> Result<f64> {
    check_lengths("log loss", y_true.len(), y_prob.nrows())?;
    let classes = y_prob.ncols();
    if classes < 2 {
        return Err(Error::Metric {
            metric: "log loss",
            detail: format!("{classes} probability column(s)"),
            fix: "give one column per class (for a binary model, [1 - p, p])",
        });
    }
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (row, &t) in y_prob.rows().into_iter().zip(y_true) {
        if t >= classes {
            return Err(Error::Metric {
                metric: "log loss",
                detail: format!("class {t} but probabilities for {classes} classes"),
                fix: "give y_prob one column per class",
            });
        }
        if row.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(Error::Metric {
                metric: "log loss",
                detail: format!("a row of probabilities holds {row}"),
                fix: "pass probabilities (after the sigmoid or softmax), not logits or NaN",
            });
        }
        let clipped = |p: f64| p.clamp(eps, 1.0 - eps);
        let sum: f64 = row.iter().map(|&p| clipped(p)).sum();
        total -= (clipped(row[t]) / sum).ln();
    }
    Ok(total / y_true.len() as f64)
}

/// [`log_loss`] of a binary model from the probability of the positive class alone.
pub fn binary_log_loss(y_true: &[bool], p_positive: &[f64]) -> Result<f64> {
    check_lengths("log loss", y_true.len(), p_positive.len())?;
    let rows = ndarray::Array2::from_shape_fn((p_positive.len(), 2), |(i, j)| {
        if j == 1 {
            p_positive[i]
        } else {
            1.0 - p_positive[i]
        }
    });
    let truths: Vec<usize> = y_true.iter().map(|&t| usize::from(t)).collect();
    log_loss(&truths, rows.view())
}
