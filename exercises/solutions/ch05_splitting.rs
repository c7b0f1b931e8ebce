//! Chapter 5, reference solution.

use std::collections::{HashMap, HashSet};

use cxr::ch05_splitting::{SEED, load_iris, merge_data};
use cxr::data::{Split, SplitOptions, train_val_test_split};
use cxr::linfa::Dataset;
use cxr::linfa::prelude::*;
use cxr::ndarray::Ix1;

pub const SPLIT_RATIO: [f64; 3] = [0.7, 0.15, 0.15];

/// The train, validation and test parts of iris, in that order.
pub fn make_parts() -> cxr::Result<[Dataset<f64, usize, Ix1>; 3]> {
    let iris = load_iris();
    let labels = iris.targets().to_vec();
    let options = SplitOptions::seeded(SEED).stratify(&labels);
    let split = train_val_test_split(iris.nsamples(), SPLIT_RATIO, &options)?;
    let (x, y) = (iris.records().view(), iris.targets().view());

    let train = merge_data(x, y, &split.train);
    let val = merge_data(x, y, &split.val);
    let test = merge_data(x, y, &split.test);

    Ok([train, val, test])
}

/// How many patients have images in more than one part of `split`, where `patients[row]`
/// is the patient of row `row`: what a model could recognise instead of learning the
/// disease.
pub fn leaked_patients(split: &Split, patients: &[String]) -> usize {
    // Instruction 3: a patient leaks when their images sit in two or three parts.
    let mut parts_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (part, rows) in split.parts() {
        for &row in rows {
            parts_of
                .entry(patients[row].as_str())
                .or_default()
                .insert(part);
        }
    }
    parts_of.values().filter(|parts| parts.len() > 1).count()
}
