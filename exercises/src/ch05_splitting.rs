//! Chapter 5: split iris into train, validation and test, 7 : 1.5 : 1.5.
//!
//! The lesson is in the book (`chapters/ch05-splitting.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch05`; the grader is `src/graders/ch05_splitting.rs`.

use cxr::ch05_splitting::{SEED, load_iris, merge_data};
use cxr::data::{SplitOptions, train_val_test_split};
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
