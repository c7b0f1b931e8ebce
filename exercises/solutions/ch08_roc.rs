//! Chapter 8, reference solution.

use cxr::metrics::auc;

/// The AUC of each class, from the false and true positive rates of its ROC curve.
pub fn roc_auc_per_class(fpr: &[Vec<f64>], tpr: &[Vec<f64>]) -> cxr::Result<Vec<f64>> {
    let mut roc_auc = Vec::new();
    for i in 0..fpr.len() {
        roc_auc.push(auc(&fpr[i], &tpr[i])?);
    }
    Ok(roc_auc)
}

pub const COLORS: [&str; 3] = ["aqua", "darkorange", "cornflowerblue"];
