//! Plausible wrong answers, each run through its grader: the grader must fail and its
//! hint must name the mistake. These are not graders (their names do not start with
//! `graders::`), so `cxr grade` does not count them.

use std::panic::{UnwindSafe, catch_unwind};

use cxr::ch07_confusion::Scores;
use cxr::image::GrayImage;

use crate::graders::{ch03_augmentation, ch05_splitting, ch06_training, ch07_confusion};

/// The grader's panic message, or a failure if it passed.
fn hint_of(grade: impl FnOnce() + UnwindSafe) -> String {
    let payload = catch_unwind(grade).expect_err("the grader passed a wrong answer");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn scores(precision: f64, recall: f64, tp: f64, all: f64, tn: f64) -> Scores {
    Scores {
        accuracy: (tp + tn) / all,
        precision,
        recall,
        f1: 2.0 * precision * recall / (precision + recall),
    }
}

#[test]
fn precision_and_recall_swapped() {
    let hint = hint_of(|| {
        ch07_confusion::grade_four_scores(|tp, fn_, fp, tn| {
            let (tp, fn_, fp, tn) = (tp as f64, fn_ as f64, fp as f64, tn as f64);
            scores(tp / (tp + fn_), tp / (tp + fp), tp, tp + fn_ + fp + tn, tn)
        })
    });
    assert!(hint.contains("precision and recall are swapped"), "{hint}");
    assert!(hint.contains("of the images called PNEUMONIA"), "{hint}");
}

#[test]
fn accuracy_without_the_true_negatives() {
    let hint = hint_of(|| {
        ch07_confusion::grade_four_scores(|tp, fn_, fp, tn| {
            let (tp, fn_, fp, tn) = (tp as f64, fn_ as f64, fp as f64, tn as f64);
            let mut s = scores(tp / (tp + fp), tp / (tp + fn_), tp, tp + fn_ + fp + tn, tn);
            s.accuracy = tp / (tp + fn_ + fp + tn);
            s
        })
    });
    assert!(hint.contains("accuracy = (TP + TN) / all"), "{hint}");
}

#[test]
fn false_negatives_and_false_positives_swapped() {
    let hint =
        hint_of(|| ch07_confusion::grade_read_counts(|m| (m[1][1], m[0][1], m[1][0], m[0][0])));
    assert!(hint.contains("fn_ and fp are swapped"), "{hint}");
}

#[test]
fn a_vertical_flip_for_a_horizontal_one() {
    let hint = hint_of(|| {
        ch03_augmentation::grade_flip(|image: &GrayImage| {
            cxr::image::imageops::flip_vertical(image)
        })
    });
    assert!(hint.contains("upside down"), "{hint}");
}

#[test]
fn a_flip_one_column_off() {
    let hint = hint_of(|| {
        ch03_augmentation::grade_flip(|image: &GrayImage| {
            let (w, h) = image.dimensions();
            GrayImage::from_fn(w, h, |x, y| *image.get_pixel(w - x, y))
        })
    });
    assert!(hint.contains("width - 1 - x"), "{hint}");
}

#[test]
fn counting_images_instead_of_patients() {
    let hint = hint_of(|| {
        ch05_splitting::grade_leaked_patients(|split, patients| {
            let mut parts_of = std::collections::HashMap::<&str, usize>::new();
            for (_, rows) in split.parts() {
                for &row in rows {
                    *parts_of.entry(patients[row].as_str()).or_default() += 1;
                }
            }
            parts_of.values().filter(|&&n| n > 1).sum()
        })
    });
    assert!(hint.contains("that counts images"), "{hint}");
}

#[test]
fn parameters_without_the_biases() {
    let hint = hint_of(|| {
        ch06_training::grade_vgg_params(|layout, (mut h, mut w, mut c), units, classes| {
            let mut params = 0;
            for &(convs, filters) in layout {
                for _ in 0..convs {
                    params += 9 * c * filters;
                    c = filters;
                }
                (h, w) = (h / 2, w / 2);
            }
            params + h * w * c * units + units * units + units * classes
        })
    });
    assert!(hint.contains("leaves out the biases"), "{hint}");
}
