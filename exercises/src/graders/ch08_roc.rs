//! Grader for chapter 8: each class's AUC on the X-ray and iris curves, then the colours.

use cxr::baseline::Predictions;
use cxr::ch07_confusion::lesson_predictions;
use cxr::ch08_roc::{iris_predictions, per_class_roc};
use cxr::plot::named_color;

use crate::ch08_roc::{COLORS, roc_auc_per_class};

fn check(predictions: &Predictions) {
    let curves = per_class_roc(predictions).unwrap();
    let fpr: Vec<Vec<f64>> = curves.iter().map(|c| c.curve.fpr.clone()).collect();
    let tpr: Vec<Vec<f64>> = curves.iter().map(|c| c.curve.tpr.clone()).collect();
    let ours = roc_auc_per_class(&fpr, &tpr).unwrap_or_else(|e| panic!("auc failed: {e}"));
    let expected: Vec<f64> = curves.iter().map(|c| c.auc).collect();
    assert_eq!(ours.len(), expected.len(), "one AUC per class");
    for ((area, want), c) in ours.iter().zip(&expected).zip(&curves) {
        assert!(
            (area - want).abs() < 1e-12,
            "your AUC of {} is {area:.4}, not the area under its ROC curve. Hint: class i's \
             curve is fpr[i] against tpr[i], and auc(&fpr[i], &tpr[i]) measures the area \
             under it; one AUC per class, in the classes' order",
            c.name
        );
    }
}

#[test]
fn instruction_1_auc_of_each_class() {
    check(&lesson_predictions().unwrap());
    check(&iris_predictions().unwrap());
}

#[test]
fn instruction_2_a_colour_per_class() {
    for color in COLORS {
        assert!(
            named_color(color).is_some(),
            "{color:?} is not a colour name cxr knows; try \"aqua\", \"darkorange\", \"cornflowerblue\""
        );
    }
    for (i, a) in COLORS.iter().enumerate() {
        for (j, b) in COLORS.iter().enumerate().skip(i + 1) {
            assert!(
                named_color(a) != named_color(b),
                "classes {i} and {j} share a colour; each class needs its own"
            );
        }
    }
}
