//! Where linfa 0.8.1's classification metrics agree with cxr's (and so with
//! scikit-learn's), and where they do not. If an upgrade of linfa fixes a disagreement,
//! the test that pins it fails: then cxr can use linfa's version instead of its own.

use cxr::metrics::{confusion_matrix, one_vs_rest, roc_auc_score};
use linfa::prelude::*;
use ndarray::Array1;
use serde_json::Value;

/// The 624-sample case of the scikit-learn fixture: labels, thresholded predictions and
/// scores.
fn kermany_case() -> (Vec<usize>, Vec<usize>, Vec<f64>) {
    let text = std::fs::read_to_string("tests/fixtures/sklearn/metrics.json").unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let case = &fixture["binary"][0];
    let list = |key: &str| -> Vec<usize> {
        case[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let scores = case["y_score"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (list("y_true"), list("y_pred"), scores)
}

#[test]
fn accuracy_and_f1_agree_with_linfa() {
    let (y_true, y_pred, _) = kermany_case();
    let ours = confusion_matrix(&y_true, &y_pred, 2).unwrap();
    let theirs = Array1::from(y_pred.clone())
        .confusion_matrix(Array1::from(y_true.clone()))
        .unwrap();
    assert!((f64::from(theirs.accuracy()) - ours.accuracy()).abs() < 1e-6);
    let f1 = ours.binary(1).f1(Default::default());
    assert!((f64::from(theirs.f1_score()) - f1).abs() < 1e-6);
}

#[test]
fn linfa_swaps_binary_precision_and_recall() {
    let (y_true, y_pred, _) = kermany_case();
    let counts = confusion_matrix(&y_true, &y_pred, 2).unwrap().binary(1);
    let (precision, recall) = (
        counts.precision(Default::default()),
        counts.recall(Default::default()),
    );
    assert!(
        (precision - recall).abs() > 1e-3,
        "the case must tell them apart"
    );
    let theirs = Array1::from(y_pred)
        .confusion_matrix(Array1::from(y_true))
        .unwrap();
    // linfa counts predictions in rows, then reads precision along the true-class axis.
    assert!((f64::from(theirs.precision()) - recall).abs() < 1e-6);
    assert!((f64::from(theirs.recall()) - precision).abs() < 1e-6);
}

#[test]
fn area_under_the_roc_curve_agrees_with_linfa() {
    let (y_true, _, scores) = kermany_case();
    let truths = one_vs_rest(&y_true, 1);
    let ours = roc_auc_score(&truths, &scores).unwrap();
    let probabilities: Array1<Pr> = scores.iter().map(|&s| Pr::new(s as f32)).collect();
    let theirs = probabilities.roc(&truths[..]).unwrap();
    assert!((f64::from(theirs.area_under_curve()) - ours).abs() < 1e-5);
    // linfa's thresholds rise and have no infinite first point: not scikit-learn's curve.
    let thresholds = theirs.get_thresholds();
    assert!(thresholds.windows(2).all(|w| w[0] <= w[1]));
    assert!(thresholds.iter().all(|t| t.is_finite()));
}
