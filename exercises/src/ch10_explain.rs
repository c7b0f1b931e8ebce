//! Chapter 10: score a threshold, then choose the one a screening tool needs.
//!
//! The lesson is in the book (`chapters/ch10-explain.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch10`; the grader is `src/graders/ch10_explain.rs`.

/// `(sensitivity, specificity)` when every score at or above `threshold` is called
/// PNEUMONIA: the share of the pneumonias (`true`) found, and the share of the healthy
/// lungs (`false`) left alone.
pub fn sensitivity_and_specificity(y_true: &[bool], scores: &[f64], threshold: f64) -> (f64, f64) {
    // TODO (instruction 1): count found pneumonias and cleared healthy lungs.
    let _ = (y_true, scores, threshold);
    let sensitivity = 0.0;
    let specificity = 0.0;
    (sensitivity, specificity)
}

/// The highest threshold whose sensitivity is at least `target` (0 < target <= 1): the
/// operating point chosen on the validation part.
pub fn pick_threshold(y_true: &[bool], scores: &[f64], target: f64) -> f64 {
    // TODO (instruction 2): how many pneumonias must score at or above the threshold,
    // and which score is then the highest threshold that keeps them?
    let _ = (y_true, scores, target);
    0.0
}
