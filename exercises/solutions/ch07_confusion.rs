//! Chapter 7, reference solution.

use cxr::ch07_confusion::Scores;

/// `(tp, fn_, fp, tn)` of PNEUMONIA (class 1) from a 2 x 2 confusion matrix whose rows
/// are the true classes and columns the predicted ones.
pub fn read_counts(m: [[u64; 2]; 2]) -> (u64, u64, u64, u64) {
    let tp = m[1][1];
    let fn_ = m[1][0];
    let fp = m[0][1];
    let tn = m[0][0];
    (tp, fn_, fp, tn)
}

/// Accuracy, precision, recall and F1 from the four counts.
pub fn four_scores(tp: u64, fn_: u64, fp: u64, tn: u64) -> Scores {
    let (tp, fn_, fp, tn) = (tp as f64, fn_ as f64, fp as f64, tn as f64);
    let accuracy = (tp + tn) / (tp + fn_ + fp + tn);
    let precision = tp / (tp + fp);
    let recall = tp / (tp + fn_);
    let f1 = 2.0 * precision * recall / (precision + recall);
    Scores {
        accuracy,
        precision,
        recall,
        f1,
    }
}
