//! Grader for chapter 7: the counts by position, then the four scores, on the chapter's
//! matrix and on the 624-image matrix of the scikit-learn fixture.

use cxr::ch07_confusion::{lesson_predictions, xray_confusion_matrix};

use crate::ch07_confusion::{four_scores, read_counts};

fn lesson_matrix() -> [[u64; 2]; 2] {
    let matrix = xray_confusion_matrix(&lesson_predictions().unwrap()).unwrap();
    let c = matrix.counts();
    [[c[0][0], c[0][1]], [c[1][0], c[1][1]]]
}

#[test]
fn instruction_1_counts_by_position() {
    let m = lesson_matrix();
    assert_eq!(
        read_counts(m),
        (m[1][1], m[1][0], m[0][1], m[0][0]),
        "for {m:?} (rows true, columns predicted) the counts (tp, fn_, fp, tn) are wrong. \
         Hint: a true positive is a PNEUMONIA (row 1) predicted PNEUMONIA (column 1)"
    );
    assert_eq!(read_counts([[176, 58], [63, 327]]), (327, 63, 58, 176));
}

#[test]
fn instruction_2_four_scores_match_scikit_learn() {
    // scikit-learn 1.7 on the 624 predictions of tests/fixtures/sklearn/metrics.json.
    let s = four_scores(327, 63, 58, 176);
    let expected = [
        ("accuracy", s.accuracy, 503.0 / 624.0),
        ("precision", s.precision, 0.8493506493506493),
        ("recall", s.recall, 0.8384615384615385),
        ("F1", s.f1, 0.8438709677419355),
    ];
    for (name, ours, theirs) in expected {
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{name} of tp 327, fn 63, fp 58, tn 176 is {ours}, scikit-learn says {theirs}"
        );
    }
    let (tp, fn_, fp, tn) = (266, 24, 63, 25);
    let s = four_scores(tp, fn_, fp, tn);
    assert!(
        (s.precision - 266.0 / 329.0).abs() < 1e-9,
        "precision is TP / (TP + FP)"
    );
    assert!(
        (s.recall - 266.0 / 290.0).abs() < 1e-9,
        "recall is TP / (TP + FN)"
    );
}
