//! Chapter 10, solved: sensitivity and specificity at a threshold, and the threshold
//! for a target sensitivity.

/// `(sensitivity, specificity)` when every score at or above `threshold` is called
/// PNEUMONIA.
pub fn sensitivity_and_specificity(y_true: &[bool], scores: &[f64], threshold: f64) -> (f64, f64) {
    let pairs = || y_true.iter().zip(scores);
    let positives = y_true.iter().filter(|&&t| t).count() as f64;
    let negatives = y_true.len() as f64 - positives;
    let found = pairs().filter(|&(&t, &s)| t && s >= threshold).count() as f64;
    let cleared = pairs().filter(|&(&t, &s)| !t && s < threshold).count() as f64;
    (found / positives, cleared / negatives)
}

/// The highest threshold whose sensitivity is at least `target`: the k-th highest
/// pneumonia score, where k pneumonias are the fewest that reach the target.
pub fn pick_threshold(y_true: &[bool], scores: &[f64], target: f64) -> f64 {
    let mut positive: Vec<f64> = y_true
        .iter()
        .zip(scores)
        .filter(|&(&t, _)| t)
        .map(|(_, &s)| s)
        .collect();
    positive.sort_by(|a, b| b.total_cmp(a));
    let needed = (target * positive.len() as f64).ceil().max(1.0) as usize;
    positive[needed.min(positive.len()) - 1]
}
