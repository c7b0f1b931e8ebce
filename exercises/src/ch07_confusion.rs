//! Chapter 7: read the four counts off a confusion matrix and compute the four scores.
//!
//! The lesson is in the book (`chapters/ch07-confusion.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch07`; the grader is `src/graders/ch07_confusion.rs`.

use cxr::ch07_confusion::Scores;

/// `(tp, fn_, fp, tn)` of PNEUMONIA (class 1) from a 2 x 2 confusion matrix whose rows
/// are the true classes and columns the predicted ones, as printed:
/// `[[m[0][0] m[0][1]]` / ` [m[1][0] m[1][1]]]`.
pub fn read_counts(m: [[u64; 2]; 2]) -> (u64, u64, u64, u64) {
    // TODO (instruction 1): pick each count's position in the matrix.
    let _ = m;
    let tp = 0;
    let fn_ = 0;
    let fp = 0;
    let tn = 0;
    (tp, fn_, fp, tn)
}

/// Accuracy, precision, recall and F1 from the four counts.
pub fn four_scores(tp: u64, fn_: u64, fp: u64, tn: u64) -> Scores {
    let (tp, fn_, fp, tn) = (tp as f64, fn_ as f64, fp as f64, tn as f64);
    // TODO (instruction 2): the four formulas of the lesson.
    let _ = (tp, fn_, fp, tn);
    let accuracy = 0.0;
    let precision = 0.0;
    let recall = 0.0;
    let f1 = 0.0;
    Scores {
        accuracy,
        precision,
        recall,
        f1,
    }
}
