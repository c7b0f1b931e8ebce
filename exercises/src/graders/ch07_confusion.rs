//! Grader for chapter 7: the counts by position, then the four scores, on the chapter's
//! matrix and on the 624-image matrix of the scikit-learn fixture.

use cxr::ch07_confusion::{Scores, lesson_predictions, xray_confusion_matrix};

use crate::ch07_confusion::{four_scores, read_counts};

fn lesson_matrix() -> [[u64; 2]; 2] {
    let matrix = xray_confusion_matrix(&lesson_predictions().unwrap()).unwrap();
    let c = matrix.counts();
    [[c[0][0], c[0][1]], [c[1][0], c[1][1]]]
}

#[test]
fn instruction_1_counts_by_position() {
    grade_read_counts(read_counts);
}

/// Instruction 1's checks on any `read_counts`, so that wrong answers can be tried too.
pub(crate) fn grade_read_counts(read_counts: impl Fn([[u64; 2]; 2]) -> (u64, u64, u64, u64)) {
    for m in [lesson_matrix(), [[176, 58], [63, 327]]] {
        let got = read_counts(m);
        assert!(
            got != (m[1][1], m[0][1], m[1][0], m[0][0]),
            "fn_ and fp are swapped. Hint: a false negative is a PNEUMONIA the model called \
             NORMAL (row 1, column 0); a false positive a NORMAL it called PNEUMONIA"
        );
        assert!(
            got == (m[1][1], m[1][0], m[0][1], m[0][0]),
            "for {m:?} (rows true, columns predicted) your counts (tp, fn_, fp, tn) are \
             {got:?}. Hint: a true positive is a PNEUMONIA (row 1) predicted PNEUMONIA \
             (column 1); each count is where its true row meets its predicted column"
        );
    }
}

#[test]
fn instruction_2_four_scores_match_scikit_learn() {
    grade_four_scores(four_scores);
}

/// Instruction 2's checks on any `four_scores`.
pub(crate) fn grade_four_scores(four_scores: impl Fn(u64, u64, u64, u64) -> Scores) {
    // scikit-learn 1.7 on the 624 predictions of tests/fixtures/sklearn/metrics.json.
    let s = four_scores(327, 63, 58, 176);
    let (precision, recall) = (0.8493506493506493, 0.8384615384615385);
    assert!(
        !((s.precision - recall).abs() < 1e-9 && (s.recall - precision).abs() < 1e-9),
        "precision and recall are swapped. Hint: precision = TP / (TP + FP): of the images \
         called PNEUMONIA, the share that are; recall = TP / (TP + FN): of the pneumonias, \
         the share found"
    );
    let hints = [
        "accuracy = (TP + TN) / all: the share of all images classified correctly",
        "precision = TP / (TP + FP): of the images called PNEUMONIA, the share that are",
        "recall = TP / (TP + FN): of the pneumonias, the share the model found",
        "F1 = 2 x precision x recall / (precision + recall), the harmonic mean of the two",
    ];
    let expected = [
        ("accuracy", s.accuracy, 503.0 / 624.0),
        ("precision", s.precision, 0.8493506493506493),
        ("recall", s.recall, 0.8384615384615385),
        ("F1", s.f1, 0.8438709677419355),
    ];
    for ((name, ours, theirs), hint) in expected.into_iter().zip(hints) {
        assert!(
            (ours - theirs).abs() < 1e-9,
            "your {name} of tp 327, fn 63, fp 58, tn 176 is {ours}, not scikit-learn's. Hint: {hint}"
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
