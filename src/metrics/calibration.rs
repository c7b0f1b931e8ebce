//! Can a score be read as a probability? Calibration curves and the expected calibration
//! error, and confidence intervals for a sensitivity or specificity measured on few cases.

use super::check_lengths;
use crate::{Error, Result};

/// scikit-learn's `calibration_curve(y_true, y_prob, n_bins)` (uniform bins): for every
/// bin that holds a score, the share of positives in it (`prob_true`) against the mean
/// score in it (`prob_pred`). A calibrated model's points lie on the diagonal.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationCurve {
    /// Share of positives in each non-empty bin.
    pub prob_true: Vec<f64>,
    /// Mean predicted probability in each non-empty bin.
    pub prob_pred: Vec<f64>,
    /// Samples in each non-empty bin.
    pub counts: Vec<usize>,
}

impl CalibrationCurve {
    /// The expected calibration error: the gap between `prob_true` and `prob_pred`,
    /// averaged over bins weighted by how many samples each holds. 0 for a calibrated
    /// model; 0.1 means its stated probabilities are off by ten points on average.
    pub fn expected_calibration_error(&self) -> f64 {
        let total: usize = self.counts.iter().sum();
        self.counts
            .iter()
            .zip(self.prob_true.iter().zip(&self.prob_pred))
            .map(|(&n, (t, p))| n as f64 / total as f64 * (t - p).abs())
            .sum()
    }
}

/// The calibration curve of probabilities `y_prob` against truths, in `n_bins` equal
/// bins of [0, 1]; a score on a bin's upper edge counts in that bin, as in scikit-learn.
pub fn calibration_curve(
    y_true: &[bool],
    y_prob: &[f64],
    n_bins: usize,
) -> Result<CalibrationCurve> {
    check_lengths("a calibration curve", y_true.len(), y_prob.len())?;
    if n_bins == 0 {
        return Err(Error::BadArgument(
            "a calibration curve needs at least one bin; 10 is usual".into(),
        ));
    }
    if let Some(i) = y_prob.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::Metric {
            metric: "a calibration curve",
            detail: format!("probability {i} is {}, outside [0, 1]", y_prob[i]),
            fix: "pass probabilities (a sigmoid's or softmax's output), not logits",
        });
    }
    let mut positives = vec![0usize; n_bins];
    let mut sums = vec![0.0; n_bins];
    let mut counts = vec![0usize; n_bins];
    for (&truth, &p) in y_true.iter().zip(y_prob) {
        // Inner edges k / n_bins strictly below p: numpy's searchsorted(side="left").
        let bin = (1..n_bins)
            .take_while(|&k| (k as f64 / n_bins as f64) < p)
            .count();
        positives[bin] += usize::from(truth);
        sums[bin] += p;
        counts[bin] += 1;
    }
    let filled = (0..n_bins).filter(|&b| counts[b] > 0);
    Ok(CalibrationCurve {
        prob_true: filled
            .clone()
            .map(|b| positives[b] as f64 / counts[b] as f64)
            .collect(),
        prob_pred: filled.clone().map(|b| sums[b] / counts[b] as f64).collect(),
        counts: filled.map(|b| counts[b]).collect(),
    })
}

/// A share measured on `n` cases, with its Wilson score interval: the range that holds
/// the true share with the stated confidence. On 40 pneumonias a measured sensitivity of
/// 0.925 could be anything from 0.80 to 0.97; the interval says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportion {
    /// successes / n.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Successes.
    pub successes: usize,
    /// Cases.
    pub n: usize,
}

impl std::fmt::Display for Proportion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} ({}/{}, 95% CI {:.3}-{:.3})",
            self.value, self.successes, self.n, self.low, self.high
        )
    }
}

/// The Wilson score interval of `successes` out of `n` at `confidence` (0.95 for 95%), as
/// statsmodels' `proportion_confint(successes, n, alpha=1 - confidence, method="wilson")`.
/// Unlike the textbook p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty when
/// every case succeeded.
pub fn wilson_interval(successes: usize, n: usize, confidence: f64) -> Result<Proportion> {
    if n == 0 || successes > n {
        return Err(Error::BadArgument(format!(
            "a proportion needs 0 <= successes <= n and n > 0, got {successes} of {n}: \
             is the class missing from this part of the data?"
        )));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::BadArgument(format!(
            "confidence must lie between 0 and 1 (0.95 for 95%), got {confidence}"
        )));
    }
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let (k, n_f) = (successes as f64, n as f64);
    let p = k / n_f;
    let z2 = z * z;
    let centre = (k + z2 / 2.0) / (n_f + z2);
    let half = z * n_f.sqrt() / (n_f + z2) * (p * (1.0 - p) + z2 / (4.0 * n_f)).sqrt();
    Ok(Proportion {
        value: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
        successes,
        n,
    })
}

/// The standard normal quantile (the inverse of its distribution function), by Acklam's
/// rational approximation (relative error below 1.2e-9), for 0 < p < 1.
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.024_25;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
