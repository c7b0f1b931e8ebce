//! Precision-recall curves and average precision: how much of what a threshold calls
//! positive is positive, against how much of the positives it finds. For rare positives
//! they show what a ROC curve flattens.

use super::check_lengths;
use crate::{Error, Result};

/// A precision-recall curve as scikit-learn's `precision_recall_curve` returns it:
/// `precision[i]` and `recall[i]` at calling every score `>= thresholds[i]` positive,
/// thresholds rising; one last point (precision 1, recall 0) with no threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionRecallCurve {
    /// Precision, one more than the thresholds.
    pub precision: Vec<f64>,
    /// Recall, falling to 0.
    pub recall: Vec<f64>,
    /// The distinct scores, rising.
    pub thresholds: Vec<f64>,
}

/// True and false positives when calling every score at or above each distinct score
/// positive, scores falling (scikit-learn's `_binary_clf_curve`).
pub(crate) fn cumulative_counts(
    metric: &'static str,
    y_true: &[bool],
    y_score: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    check_lengths(metric, y_true.len(), y_score.len())?;
    if let Some(i) = y_score.iter().position(|s| s.is_nan()) {
        return Err(Error::Metric {
            metric,
            detail: format!("score {i} is NaN"),
            fix: "check the model's output for NaN before scoring it",
        });
    }
    let mut order: Vec<usize> = (0..y_score.len()).collect();
    order.sort_by(|&a, &b| y_score[b].total_cmp(&y_score[a]));
    let (mut tps, mut fps, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let mut positives = 0u64;
    for (rank, &i) in order.iter().enumerate() {
        positives += u64::from(y_true[i]);
        if order
            .get(rank + 1)
            .is_none_or(|&next| y_score[next] != y_score[i])
        {
            tps.push(positives as f64);
            fps.push((rank + 1) as f64 - positives as f64);
            thresholds.push(y_score[i]);
        }
    }
    Ok((tps, fps, thresholds))
}

/// The precision-recall curve of scores against yes/no truths, as scikit-learn 1.7's
/// `precision_recall_curve(y_true, y_score)`. Without positives the recall is 1
/// throughout, as in scikit-learn (which warns).
pub fn precision_recall_curve(y_true: &[bool], y_score: &[f64]) -> Result<PrecisionRecallCurve> {
    let (tps, fps, thresholds) = cumulative_counts("a precision-recall curve", y_true, y_score)?;
    let total = tps.last().copied().unwrap_or(0.0);
    let mut precision: Vec<f64> = tps
        .iter()
        .zip(&fps)
        .map(|(&tp, &fp)| if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 })
        .collect();
    let mut recall: Vec<f64> = tps
        .iter()
        .map(|&tp| if total > 0.0 { tp / total } else { 1.0 })
        .collect();
    let mut thresholds = thresholds;
    precision.reverse();
    recall.reverse();
    thresholds.reverse();
    precision.push(1.0);
    recall.push(0.0);
    Ok(PrecisionRecallCurve {
        precision,
        recall,
        thresholds,
    })
}

/// Average precision, as scikit-learn's `average_precision_score`: the precision at each
/// threshold weighted by the recall it adds, `sum((R[n] - R[n-1]) P[n])` (no
/// interpolation between points).
pub fn average_precision_score(y_true: &[bool], y_score: &[f64]) -> Result<f64> {
    let curve = precision_recall_curve(y_true, y_score)?;
    Ok(-curve
        .recall
        .windows(2)
        .zip(&curve.precision)
        .map(|(r, p)| (r[1] - r[0]) * p)
        .sum::<f64>())
}

/// Yes/no predictions from scores: a score at or above `threshold` is positive. Where a
/// screening tool puts its threshold is chapter 8's question; 0.5 is only the default.
pub fn predict_at(y_score: &[f64], threshold: f64) -> Vec<bool> {
    y_score.iter().map(|&s| s >= threshold).collect()
}
