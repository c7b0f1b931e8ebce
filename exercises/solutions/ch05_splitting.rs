//! Chapter 5, reference solution.

use cxr::ch05_splitting::{SEED, load_iris, merge_data};
use cxr::data::{SplitOptions, train_val_test_split};
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
