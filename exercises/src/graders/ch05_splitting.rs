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
        "SPLIT_RATIO {SPLIT_RATIO:?} gives shares {shares:?}; 7 : 1.5 : 1.5 is [0.7, 0.15, 0.15]"
    );
}

#[test]
fn instruction_2_parts_have_the_right_sizes_and_classes() {
    let parts = make_parts().unwrap_or_else(|e| panic!("make_parts failed: {e}"));
    let sizes = parts.each_ref().map(|p| p.nsamples());
    assert_eq!(
        sizes,
        [104, 23, 23],
        "train, val and test hold {sizes:?} flowers; 150 at 7 : 1.5 : 1.5 is 104, 23 and 23. \
         Hint: merge_data(x, y, &split.train) and so on"
    );
    for (part, name) in parts.iter().zip(["train", "val", "test"]) {
        assert_eq!(
            part.records().ncols(),
            4,
            "{name} has {} features, iris has 4",
            part.records().ncols()
        );
    }
    let counts = parts.each_ref().map(|p| class_counts(p, 3));
    assert_eq!(
        counts,
        [vec![34, 35, 35], vec![8, 7, 8], vec![8, 8, 7]],
        "class counts per part: each species should keep its third in every part"
    );
}
