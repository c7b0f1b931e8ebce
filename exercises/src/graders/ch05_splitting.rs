//! Grader for chapter 5: the ratio, then the sizes and class counts of each part.

use cxr::ch05_splitting::class_counts;
use cxr::linfa::prelude::*;

use crate::ch05_splitting::{SPLIT_RATIO, make_parts};

#[test]
fn instruction_1_split_ratio_is_7_to_1_5_to_1_5() {
    let total: f64 = SPLIT_RATIO.iter().sum();
    let shares = SPLIT_RATIO.map(|r| r / total);
    let wanted = [0.7, 0.15, 0.15];
    assert!(
        shares.iter().zip(wanted).all(|(s, w)| (s - w).abs() < 1e-9),
        "SPLIT_RATIO {SPLIT_RATIO:?} gives shares {shares:?}, not 7 : 1.5 : 1.5. Hint: each \
         share is its number divided by the sum of the three, so train's should be 7 of \
         every 10 and the other two 1.5 each"
    );
}

#[test]
fn instruction_2_parts_have_the_right_sizes_and_classes() {
    let parts = make_parts().unwrap_or_else(|e| panic!("make_parts failed: {e}"));
    let sizes = parts.each_ref().map(|p| p.nsamples());
    assert!(
        sizes == [104, 23, 23],
        "train, val and test hold {sizes:?} flowers: all 150 should be shared out at \
         7 : 1.5 : 1.5, validation and test rounded up as scikit-learn does. Hint: each part \
         is merge_data(x, y, rows) with its own rows, `&split.train` for train"
    );
    for (part, name) in parts.iter().zip(["train", "val", "test"]) {
        assert!(
            part.records().ncols() == 4,
            "{name} has {} features per flower; iris has four measurements",
            part.records().ncols()
        );
    }
    let counts = parts.each_ref().map(|p| class_counts(p, 3));
    assert!(
        counts == [vec![34, 35, 35], vec![8, 7, 8], vec![8, 8, 7]],
        "class counts per part are {counts:?}: each species should keep its third in every \
         part (the split is stratified). Hint: use the rows of the split as they are"
    );
}

#[test]
fn instruction_3_count_the_leaked_patients() {
    grade_leaked_patients(crate::ch05_splitting::leaked_patients);
}

/// Instruction 3's checks on any count of leaked patients.
pub(crate) fn grade_leaked_patients(
    leaked_patients: impl Fn(&cxr::data::Split, &[String]) -> usize,
) {
    use cxr::data::{Split, SplitOptions, train_val_test_split};

    // Five images of three patients: "a" in train and test, "b" only in val, "c" in
    // train, val and test.
    let patients: Vec<String> = ["a", "a", "b", "c", "c", "c", "b"]
        .map(String::from)
        .to_vec();
    let split = Split {
        train: vec![0, 3],
        val: vec![2, 4, 6],
        test: vec![1, 5],
    };
    let got = leaked_patients(&split, &patients);
    assert!(
        got != 5 && got != 7,
        "leaked_patients counted {got} for 7 images of 3 patients: that counts images. Hint: the \
         question is how many patients (distinct names) appear in more than one part"
    );
    assert!(
        got == 2,
        "leaked_patients gave {got} for: patient a in train and test, b only in val (twice), \
         c in all three parts. Hint: a patient leaks when their images are in 2 or 3 parts, \
         whatever the number of images"
    );
    // Kermany-like names: 2,000 images, most patients with one or two, split at random,
    // then by patient.
    let mut state = 42u64;
    let patients: Vec<String> = (0..2000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("patient{}", (state >> 33) % 1300)
        })
        .collect();
    let random = train_val_test_split(2000, [0.7, 0.15, 0.15], &SplitOptions::seeded(7)).unwrap();
    let expected = random.leaked_groups(&patients);
    let got = leaked_patients(&random, &patients);
    assert!(
        got == expected,
        "on 2,000 images of 1,300 patients split at random, your count is {got}, not the \
         number of patients seen in two or three parts"
    );
    let grouped = SplitOptions::seeded(7).groups(&patients);
    let by_patient = train_val_test_split(2000, [0.7, 0.15, 0.15], &grouped).unwrap();
    assert!(
        leaked_patients(&by_patient, &patients) == 0,
        "a split by patient leaks no one, your count says otherwise"
    );
}
