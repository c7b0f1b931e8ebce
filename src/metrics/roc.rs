//! ROC curves and the area under them.

use ndarray::ArrayView2;

use super::check_lengths;
use crate::{Error, Result};

/// A ROC curve as scikit-learn's `roc_curve` returns it: point `i` is the false and true
/// positive rates of calling every score `>= thresholds[i]` positive. The first threshold
/// is infinity (nothing called positive), so the curve starts at (0, 0).
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    /// False positive rates, rising.
    pub fpr: Vec<f64>,
    /// True positive rates (sensitivity), rising.
    pub tpr: Vec<f64>,
    /// Decision thresholds, falling.
    pub thresholds: Vec<f64>,
}

/// One point of a ROC curve and the threshold that gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    /// Call a score positive when it is at least this.
    pub threshold: f64,
    /// Sensitivity at this threshold.
    pub tpr: f64,
    /// False positive rate (1 - specificity) at this threshold.
    pub fpr: f64,
}

/// The ROC curve of scores against yes/no truths, as scikit-learn's
/// `roc_curve(y_true, y_score, drop_intermediate=...)`.
///
/// Tied scores form one point. With `drop_intermediate`, points on a straight segment
/// between their neighbours are dropped: the curve looks the same with fewer points.
/// When `y_true` has no positives (or no negatives) the true (false) positive rates are
/// NaN, as in scikit-learn.
pub fn roc_curve(y_true: &[bool], y_score: &[f64], drop_intermediate: bool) -> Result<RocCurve> {
    check_lengths("a ROC curve", y_true.len(), y_score.len())?;
    if let Some(i) = y_score.iter().position(|s| s.is_nan()) {
        return Err(Error::Metric {
            metric: "a ROC curve",
            detail: format!("score {i} is NaN"),
            fix: "check the model's output for NaN before scoring it",
        });
    }
    let mut order: Vec<usize> = (0..y_score.len()).collect();
    order.sort_by(|&a, &b| y_score[b].total_cmp(&y_score[a]));

    // One point after the last sample of each run of equal scores.
    let (mut tps, mut fps, mut thresholds) = (vec![0.0], vec![0.0], vec![f64::INFINITY]);
    let mut positives = 0u64;
    for (rank, &i) in order.iter().enumerate() {
        positives += u64::from(y_true[i]);
        let last_of_run = order
            .get(rank + 1)
            .is_none_or(|&next| y_score[next] != y_score[i]);
        if last_of_run {
            tps.push(positives as f64);
            fps.push((rank + 1) as f64 - positives as f64);
            thresholds.push(y_score[i]);
        }
    }
    if drop_intermediate && tps.len() > 3 {
        // Keep a point where the slope changes: a non-zero second difference.
        let keep: Vec<bool> = (0..tps.len())
            .map(|k| {
                k <= 1
                    || k + 1 == tps.len()
                    || fps[k - 1] - 2.0 * fps[k] + fps[k + 1] != 0.0
                    || tps[k - 1] - 2.0 * tps[k] + tps[k + 1] != 0.0
            })
            .collect();
        let filter = |v: Vec<f64>| -> Vec<f64> {
            v.into_iter()
                .zip(&keep)
                .filter_map(|(x, &k)| k.then_some(x))
                .collect()
        };
        (tps, fps, thresholds) = (filter(tps), filter(fps), filter(thresholds));
    }
    let rates = |counts: Vec<f64>| -> Vec<f64> {
        let total = *counts.last().unwrap_or(&0.0);
        counts
            .into_iter()
            .map(|c| if total > 0.0 { c / total } else { f64::NAN })
            .collect()
    };
    Ok(RocCurve {
        fpr: rates(fps),
        tpr: rates(tps),
        thresholds,
    })
}

/// The area under a curve by the trapezoid rule, as scikit-learn's `auc(x, y)`: `x` must
/// rise or fall throughout.
pub fn auc(x: &[f64], y: &[f64]) -> Result<f64> {
    check_lengths("the area under a curve", x.len(), y.len())?;
    if x.len() < 2 {
        return Err(Error::Metric {
            metric: "the area under a curve",
            detail: format!("{} point(s)", x.len()),
            fix: "a curve needs at least two points",
        });
    }
    let steps: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let direction = if steps.iter().any(|&d| d < 0.0) {
        if steps.iter().all(|&d| d <= 0.0) {
            -1.0
        } else {
            return Err(Error::Metric {
                metric: "the area under a curve",
                detail: "x goes up and down".into(),
                fix: "sort the points by x, or pass a ROC curve's fpr as x",
            });
        }
    } else {
        1.0
    };
    let area: f64 = steps
        .iter()
        .zip(y.windows(2))
        .map(|(dx, w)| dx * (w[0] + w[1]) / 2.0)
        .sum();
    Ok(direction * area)
}

/// The area under the ROC curve of one yes/no question, as scikit-learn's binary
/// `roc_auc_score`: the chance that a random positive scores above a random negative.
/// With only one class in `y_true` it is NaN, as in scikit-learn 1.7 (which warns;
/// older versions raised an error).
pub fn roc_auc_score(y_true: &[bool], y_score: &[f64]) -> Result<f64> {
    check_lengths("ROC AUC", y_true.len(), y_score.len())?;
    let curve = roc_curve(y_true, y_score, true)?;
    auc(&curve.fpr, &curve.tpr)
}

/// Which samples are `class`: the yes/no truths of one class against the rest, like a
/// column of one-hot labels (`y_test[:, i]` in lesson 8).
pub fn one_vs_rest(y_true: &[usize], class: usize) -> Vec<bool> {
    y_true.iter().map(|&t| t == class).collect()
}

/// Multi-class ROC AUC, one class against the rest, as scikit-learn's
/// `roc_auc_score(y_true, y_score, multi_class="ovr", average=...)`. `y_score` holds one
/// row of class probabilities per sample. `Macro` averages the per-class areas, `Weighted`
/// weights them by class frequency, and `Micro` pools every (sample, class) pair into one
/// curve.
pub fn roc_auc_score_ovr(
    y_true: &[usize],
    y_score: ArrayView2<f64>,
    average: super::Average,
) -> Result<f64> {
    use super::Average;
    check_lengths("ROC AUC", y_true.len(), y_score.nrows())?;
    let n_classes = y_score.ncols();
    if let Some(&bad) = y_true.iter().find(|&&t| t >= n_classes) {
        return Err(Error::Metric {
            metric: "ROC AUC",
            detail: format!("class {bad} but scores for {n_classes} classes"),
            fix: "give y_score one column per class",
        });
    }
    match average {
        Average::Micro => {
            let truths: Vec<bool> = y_true
                .iter()
                .flat_map(|&t| (0..n_classes).map(move |c| c == t))
                .collect();
            let scores: Vec<f64> = y_score.iter().copied().collect();
            roc_auc_score(&truths, &scores)
        }
        Average::Macro | Average::Weighted => {
            let (mut sum, mut weights) = (0.0, 0.0);
            for class in 0..n_classes {
                let truths = one_vs_rest(y_true, class);
                let scores = y_score.column(class).to_vec();
                let weight = match average {
                    Average::Weighted => truths.iter().filter(|&&t| t).count() as f64,
                    _ => 1.0,
                };
                sum += weight * roc_auc_score(&truths, &scores)?;
                weights += weight;
            }
            Ok(sum / weights)
        }
        Average::Binary { positive } => {
            let truths = one_vs_rest(y_true, positive);
            roc_auc_score(&truths, &y_score.column(positive).to_vec())
        }
    }
}

/// Multi-class ROC AUC, one class against one other, as scikit-learn's
/// `roc_auc_score(y_true, y_score, multi_class="ovo", average=...)` (Hand and Till,
/// 2001): for each pair of classes, the samples of those two only, each class's column
/// scored against the other and the two areas averaged; `Macro` averages the pairs,
/// `Weighted` weights each by the share of samples in its two classes. Insensitive to how
/// common each class is. Each row of `y_score` must be probabilities summing to 1.
pub fn roc_auc_score_ovo(
    y_true: &[usize],
    y_score: ArrayView2<f64>,
    average: super::Average,
) -> Result<f64> {
    use super::Average;
    check_lengths("ROC AUC", y_true.len(), y_score.nrows())?;
    let n_classes = y_score.ncols();
    if let Some(&bad) = y_true.iter().find(|&&t| t >= n_classes) {
        return Err(Error::Metric {
            metric: "ROC AUC",
            detail: format!("class {bad} but scores for {n_classes} classes"),
            fix: "give y_score one column per class",
        });
    }
    if y_score
        .rows()
        .into_iter()
        .any(|r| (r.sum() - 1.0).abs() > 1e-6)
    {
        return Err(Error::Metric {
            metric: "one-vs-one ROC AUC",
            detail: "a row of scores does not sum to 1".into(),
            fix: "pass class probabilities (after the softmax)",
        });
    }
    let weighted = match average {
        Average::Macro => false,
        Average::Weighted => true,
        _ => {
            return Err(Error::Metric {
                metric: "one-vs-one ROC AUC",
                detail: "only macro and weighted averages are defined".into(),
                fix: "use Average::Macro or Average::Weighted",
            });
        }
    };
    let present: Vec<usize> = (0..n_classes).filter(|c| y_true.contains(c)).collect();
    let (mut sum, mut weights) = (0.0, 0.0);
    for (i, &a) in present.iter().enumerate() {
        for &b in &present[i + 1..] {
            let rows: Vec<usize> = (0..y_true.len())
                .filter(|&r| y_true[r] == a || y_true[r] == b)
                .collect();
            let area = |class: usize| -> Result<f64> {
                let truths: Vec<bool> = rows.iter().map(|&r| y_true[r] == class).collect();
                let scores: Vec<f64> = rows.iter().map(|&r| y_score[[r, class]]).collect();
                roc_auc_score(&truths, &scores)
            };
            let pair = (area(a)? + area(b)?) / 2.0;
            let weight = if weighted {
                rows.len() as f64 / y_true.len() as f64
            } else {
                1.0
            };
            sum += weight * pair;
            weights += weight;
        }
    }
    Ok(sum / weights)
}

impl RocCurve {
    /// The area under this curve.
    pub fn auc(&self) -> Result<f64> {
        auc(&self.fpr, &self.tpr)
    }

    /// The highest threshold that finds at least `sensitivity` of the positives, and the
    /// false positive rate that costs: a clinical reader's "how many false alarms do I
    /// pay to miss at most 5% of pneumonias?". Use a curve made without
    /// `drop_intermediate`, so that no threshold is skipped. `None` if no point reaches it.
    pub fn threshold_for_sensitivity(&self, sensitivity: f64) -> Option<OperatingPoint> {
        (0..self.tpr.len())
            .find(|&i| self.tpr[i] >= sensitivity)
            .map(|i| OperatingPoint {
                threshold: self.thresholds[i],
                tpr: self.tpr[i],
                fpr: self.fpr[i],
            })
    }
}
