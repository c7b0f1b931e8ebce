//! Chapter 5: split iris into train, validation and test, 7 : 1.5 : 1.5.
//!
//! The lesson is in the book (`chapters/ch05-splitting.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch05`; the grader is `src/graders/ch05_splitting.rs`.

#[allow(unused_imports)] // for instruction 3
use std::collections::{HashMap, HashSet};

use cxr::ch05_splitting::{SEED, load_iris, merge_data};
use cxr::data::{Split, SplitOptions, train_val_test_split};
use cxr::linfa::Dataset;
use cxr::linfa::prelude::*;
use cxr::ndarray::Ix1;

// TODO (instruction 1): the shares of train, validation and test, so that they are
// 7 : 1.5 : 1.5.
pub const SPLIT_RATIO: [f64; 3] = [1.0, 0.0, 0.0];

/// The train, validation and test parts of iris, in that order.
pub fn make_parts() -> cxr::Result<[Dataset<f64, usize, Ix1>; 3]> {
    let iris = load_iris();
    let labels = iris.targets().to_vec();
    let options = SplitOptions::seeded(SEED).stratify(&labels);
    let split = train_val_test_split(iris.nsamples(), SPLIT_RATIO, &options)?;
    let (x, y) = (iris.records().view(), iris.targets().view());

    // TODO (instruction 2): build each part with `merge_data(x, y, rows)`, where `rows`
    // is `&split.train`, `&split.val` or `&split.test`.
    let _ = &split;
    let train = merge_data(x, y, &[]);
    let val = merge_data(x, y, &[]);
    let test = merge_data(x, y, &[]);

    Ok([train, val, test])
}

/// How many patients have images in more than one part of `split`, where `patients[row]`
/// is the patient of row `row`: what a model could recognise instead of learning the
/// disease.
pub fn leaked_patients(split: &Split, patients: &[String]) -> usize {
    // TODO (instruction 3): note, for each patient, the parts their images are in
    // (`split.parts()` gives each part's name and row numbers; `patients[row]` is the
    // row's patient), then count the patients found in more than one part. A HashMap
    // from patient to a HashSet of part names does it.
    let _ = (split, patients);
    0
}
