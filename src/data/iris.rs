//! Fisher's iris data, the lesson's table for splitting (chapter 5) and for ROC curves of
//! three classes (chapter 8), as linfa ships it.

use linfa::Dataset;
use linfa::dataset::Records;
use ndarray::{ArrayView1, ArrayView2, Axis, Ix1};

use super::split::{Split, SplitOptions, train_val_test_split};
use crate::Result;

/// A labelled table as linfa keeps it: a feature matrix and one class per row.
pub type Table = Dataset<f64, usize, Ix1>;

/// Iris's three classes, in label order.
pub const IRIS_CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// Fisher's iris data: 150 flowers, 4 measurements in cm (sepal length and width, petal
/// length and width), label 0, 1 or 2.
pub fn load_iris() -> Table {
    linfa_datasets::iris()
}

/// The lesson's helper: the rows `rows` of the features `x`, joined with their labels
/// `y` into one data set.
pub fn merge_data(x: ArrayView2<f64>, y: ArrayView1<usize>, rows: &[usize]) -> Table {
    Dataset::new(x.select(Axis(0), rows), y.select(Axis(0), rows))
}

/// Iris split by `split_ratio` with `seed`, stratified by class: the split and the three
/// merged parts, train, validation and test.
pub fn split_iris(split_ratio: [f64; 3], seed: u64) -> Result<(Split, [Table; 3])> {
    let iris = load_iris();
    let labels = iris.targets().to_vec();
    let options = SplitOptions::seeded(seed).stratify(&labels);
    let split = train_val_test_split(iris.nsamples(), split_ratio, &options)?;
    let (x, y) = (iris.records().view(), iris.targets().view());
    let parts = [&split.train, &split.val, &split.test].map(|rows| merge_data(x, y, rows));
    Ok((split, parts))
}
