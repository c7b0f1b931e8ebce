//! Grader for chapter 10: sensitivity and specificity at a threshold, then the threshold
//! for a target sensitivity, against the library's ROC-curve answer on seeded scores.

use cxr::ch10_explain::{pick_threshold as reference, sensitivity_specificity};

use crate::ch10_explain::{pick_threshold, sensitivity_and_specificity};

/// Seeded scores that rank pneumonias higher on the whole, with ties.
fn scores(seed: u64, n: usize) -> (Vec<bool>, Vec<f64>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let truth = next() < 0.6;
            let score = ((next() + if truth { 0.4 } else { 0.0 }) / 1.4 * 50.0).round() / 50.0;
            (truth, score)
        })
        .unzip()
}

#[test]
fn instruction_1_sensitivity_and_specificity() {
    let y = [true, true, true, false, false];
    let s = [0.9, 0.6, 0.2, 0.6, 0.1];
    let (sensitivity, specificity) = sensitivity_and_specificity(&y, &s, 0.6);
    assert!(
        (sensitivity - 2.0 / 3.0).abs() < 1e-12 && (specificity - 0.5).abs() < 1e-12,
        "scores {s:?} of truths {y:?} at threshold 0.6: you gave ({sensitivity}, \
         {specificity}). Hint: sensitivity is the share of the pneumonias (true) scoring at \
         or above the threshold, specificity the share of the healthy lungs (false) scoring \
         below it; a score equal to the threshold counts as PNEUMONIA"
    );
    for seed in 0..5 {
        let (y, s) = scores(seed, 200);
        for threshold in [0.2, 0.5, 0.71] {
            let (sens, spec) = sensitivity_specificity(&y, &s, threshold).unwrap();
            let ours = sensitivity_and_specificity(&y, &s, threshold);
            assert!(
                (ours.0 - sens.value).abs() < 1e-12 && (ours.1 - spec.value).abs() < 1e-12,
                "seed {seed}, 200 scores, threshold {threshold}: you gave {ours:?}, not the \
                 shares at or above (pneumonias) and below (healthy) the threshold"
            );
        }
    }
}

#[test]
fn instruction_2_the_threshold_for_a_target_sensitivity() {
    let y = [true, true, true, true, false, false];
    let s = [0.9, 0.8, 0.4, 0.3, 0.5, 0.1];
    let t = pick_threshold(&y, &s, 0.75);
    assert!(
        t == 0.4,
        "scores {s:?} of truths {y:?}, target sensitivity 0.75: you gave {t}. Hint: to find \
         3 of the 4 pneumonias the threshold must keep three of their scores at or above it; \
         the highest such threshold is one of those scores. Sort the pneumonias' scores from \
         high to low and take the k-th, k = ceil(target x pneumonias)"
    );
    for seed in 0..5 {
        let (y, s) = scores(seed, 300);
        for target in [0.5, 0.9, 0.95, 1.0] {
            let want = reference(&y, &s, target).unwrap();
            let got = pick_threshold(&y, &s, target);
            assert!(
                got == want,
                "seed {seed}, 300 scores, target {target}: you gave {got}, which is not the \
                 highest threshold that finds that share of the pneumonias. Hint: scores tie; \
                 k = ceil(target x pneumonias) counts pneumonias, not distinct scores"
            );
        }
    }
}
