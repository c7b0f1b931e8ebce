//! Chapter 8: the area under each class's ROC curve, and a colour per class.
//!
//! The lesson is in the book (`chapters/ch08-roc.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch08`; the grader is `src/graders/ch08_roc.rs`.

#[allow(unused_imports)]
use cxr::metrics::auc;

/// The AUC of each class, from the false and true positive rates of its ROC curve
/// (`fpr[i]` and `tpr[i]` belong to class `i`).
pub fn roc_auc_per_class(fpr: &[Vec<f64>], tpr: &[Vec<f64>]) -> cxr::Result<Vec<f64>> {
    // TODO (instruction 1): the area under class i's curve is `auc(&fpr[i], &tpr[i])?`.
    let _ = tpr;
    Ok(vec![0.0; fpr.len()])
}

// TODO (instruction 2): one colour per class, each different, e.g. the lesson's "aqua",
// "darkorange" and "cornflowerblue" (any name `cxr::plot::named_color` knows).
pub const COLORS: [&str; 3] = ["gray", "gray", "gray"];
