//! A classifier without a neural network, so that chapters 7 and 8 have real predictions
//! to judge before chapter 6 trains one: multinomial logistic regression (linfa-logistic)
//! on each X-ray's gray-level histogram (chapter 2's `calc_hist`).
//!
//! Pneumonia brightens the lungs, which shifts the histogram; a linear model on the
//! histogram catches part of that and nothing else. By default it is trained and tested
//! on generated images ([`crate::data::synth_xray`]), and every result says so.

use std::path::Path;

use image::DynamicImage;
use linfa::prelude::*;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use polars_core::prelude::{Column, DataFrame, DataType};
use polars_io::prelude::{CsvReadOptions, CsvWriter, SerReader, SerWriter};

use crate::data::{Label, SynthOptions, synth_plan, synth_xray};
use crate::imaging::{Mask, XRay, calc_hist};
use crate::{Error, Result};

/// Histogram bins per image: the features of the model.
pub const BINS: usize = 32;

/// The share of the chest's pixels in each of [`BINS`] equal gray-level bins. Only the
/// middle of the image counts (a [`Mask`] over 20-80% of the width and 15-80% of the
/// height, where the lungs are), as in chapter 2: the body outline and the background
/// would otherwise drown the lungs.
pub fn histogram_features(xray: &XRay) -> Result<Vec<f64>> {
    let gray = xray.to_gray();
    let (w, h) = gray.size();
    let mask = Mask::rect((w, h), w / 5..w * 4 / 5, h * 3 / 20..h * 4 / 5);
    let hist = calc_hist(&[&gray], &[0], Some(&mask), &[BINS], &[(0.0, 256.0)])?;
    let total = f64::from(hist.total()).max(1.0);
    Ok(hist
        .counts()
        .iter()
        .map(|&c| f64::from(c) / total)
        .collect())
}

/// Multinomial logistic regression (linfa-logistic) on standardised features, for any
/// number of classes `0..n_classes`: the baseline's model on histograms, and chapter 8's
/// on iris.
#[derive(Debug, Clone)]
pub struct LogisticClassifier {
    model: MultiFittedLogisticRegression<f64, usize>,
    n_classes: usize,
    mean: Array1<f64>,
    scale: Array1<f64>,
}

impl LogisticClassifier {
    /// Fits the model to one row of features per image and its class.
    pub fn fit(features: ArrayView2<f64>, labels: &[usize]) -> Result<Self> {
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        if n_classes < 2 || (0..n_classes).any(|c| !labels.contains(&c)) {
            return Err(Error::BadArgument(format!(
                "the classifier needs samples of every class 0..{}; check the labels",
                n_classes.max(2)
            )));
        }
        // Standardised features (scikit-learn's StandardScaler) let the optimiser converge.
        let mean = features
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(features.ncols()));
        let scale = features
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        let scaled = (&features - &mean) / &scale;
        let data = Dataset::new(scaled, Array1::from(labels.to_vec()));
        let model = MultiLogisticRegression::default()
            .alpha(1e-2)
            .max_iterations(300)
            .fit(&data)
            .map_err(|e| Error::BadArgument(format!("logistic regression did not fit: {e}")))?;
        Ok(LogisticClassifier {
            model,
            n_classes,
            mean,
            scale,
        })
    }

    /// One row of class probabilities per image, column `i` for class `i`.
    pub fn predict_proba(&self, features: ArrayView2<f64>) -> Array2<f64> {
        let scaled = (&features - &self.mean) / &self.scale;
        let probabilities = self.model.predict_probabilities(&scaled);
        // linfa orders the columns by its sorted classes; put each under its own number.
        let mut out = Array2::zeros((features.nrows(), self.n_classes));
        for (column, &class) in self.model.classes().iter().enumerate() {
            out.column_mut(class).assign(&probabilities.column(column));
        }
        out
    }
}

/// A model's scores on a labelled set: what chapters 7 and 8 judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The true class of each sample.
    pub y_true: Vec<usize>,
    /// One row of class probabilities per sample.
    pub y_score: Array2<f64>,
    /// The class names, in class order.
    pub classes: Vec<String>,
    /// Which model made them, on which data: printed with every result.
    pub source: String,
}

impl Predictions {
    /// The most probable class of each sample (NumPy's `argmax(axis=1)`).
    pub fn y_pred(&self) -> Vec<usize> {
        self.y_score
            .axis_iter(Axis(0))
            .map(|row| {
                (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The probabilities of class `class`, one per sample (`y_score[:, class]`).
    pub fn scores(&self, class: usize) -> Vec<f64> {
        self.y_score.column(class).to_vec()
    }

    /// Writes a CSV with columns `label` and `p_<CLASS>` per class; the first line is a
    /// comment naming the source.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut columns = vec![Column::new(
            "label".into(),
            self.y_true.iter().map(|&y| y as u64).collect::<Vec<_>>(),
        )];
        for (i, name) in self.classes.iter().enumerate() {
            columns.push(Column::new(format!("p_{name}").into(), self.scores(i)));
        }
        let mut frame = DataFrame::new(self.y_true.len(), columns)?;
        let mut bytes = format!("# {}\n", self.source.replace('\n', " ")).into_bytes();
        CsvWriter::new(&mut bytes)
            .finish(&mut frame)
            .map_err(|e| Error::Table {
                path: path.as_ref().into(),
                detail: e.to_string(),
            })?;
        crate::io::write_bytes_atomic(path.as_ref(), &bytes)
    }

    /// Reads what [`Predictions::write_csv`] wrote (or any CSV with a `label` column of
    /// class numbers and one `p_<CLASS>` column per class).
    pub fn read_csv(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let source = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .unwrap_or("predictions from a file")
            .to_string();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let table = |detail: String| Error::Table {
            path: path.into(),
            detail: format!("{detail}; expected columns label,p_NORMAL,p_PNEUMONIA"),
        };
        let frame = CsvReadOptions::default()
            .with_has_header(true)
            .into_reader_with_file_handle(std::io::Cursor::new(body.into_bytes()))
            .finish()
            .map_err(|e| table(e.to_string()))?;
        let labels = frame
            .column("label")
            .and_then(|c| c.cast(&DataType::UInt64))
            .map_err(|e| table(e.to_string()))?;
        let y_true: Vec<usize> = labels
            .u64()
            .map_err(|e| table(e.to_string()))?
            .iter()
            .map(|v| {
                v.map(|v| v as usize)
                    .ok_or_else(|| table("a label is missing".into()))
            })
            .collect::<Result<_>>()?;
        let mut classes = Vec::new();
        let mut columns = Vec::new();
        for column in frame.columns() {
            if let Some(name) = column.name().strip_prefix("p_") {
                let values = column
                    .cast(&DataType::Float64)
                    .map_err(|e| table(e.to_string()))?;
                let values: Vec<f64> = values
                    .f64()
                    .map_err(|e| table(e.to_string()))?
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect();
                classes.push(name.to_string());
                columns.push(values);
            }
        }
        if classes.len() < 2 || y_true.iter().any(|&y| y >= classes.len()) {
            return Err(table(format!(
                "{} probability column(s) and labels up to {}",
                classes.len(),
                y_true.iter().max().copied().unwrap_or(0)
            )));
        }
        if y_true.is_empty() {
            return Err(table("no rows: nothing to judge".into()));
        }
        let mut y_score = Array2::zeros((y_true.len(), classes.len()));
        for (j, values) in columns.iter().enumerate() {
            for (i, &v) in values.iter().enumerate() {
                y_score[[i, j]] = v;
            }
        }
        // A score that is not a probability would still rank and count: refuse it.
        for (i, row) in y_score.rows().into_iter().enumerate() {
            let valid = row.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p));
            if !valid || (row.sum() - 1.0).abs() > 1e-3 {
                return Err(table(format!(
                    "data row {} holds {:?}: each row's probabilities must be numbers from 0 to 1 \
                     that add up to 1",
                    i + 1,
                    row.to_vec()
                )));
            }
        }
        Ok(Predictions {
            y_true,
            y_score,
            classes,
            source,
        })
    }
}

/// Trains the histogram classifier on the train part of a generated data set of `n`
/// images of `size` x `size` pixels and returns its predictions on the test part. The
/// same seed gives the same numbers.
pub fn generated_xray_predictions(n: usize, size: u32, seed: u64) -> Result<Predictions> {
    histogram_baseline(&SynthOptions {
        n,
        size,
        seed,
        splits: [0.6, 0.0, 0.4],
        ..SynthOptions::default()
    })
}

/// The histogram classifier trained on the train part of the generated data set that
/// `options` describes and judged on its test part (the validation part is not used):
/// the baseline for a network trained on the same images.
pub fn histogram_baseline(options: &SynthOptions) -> Result<Predictions> {
    let (size, seed) = (options.size, options.seed);
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (vec![], vec![], vec![], vec![]);
    for file in synth_plan(options) {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(file.seed);
        let image = synth_xray(size, file.label == Label::Pneumonia, &mut rng);
        let xray = XRay::from_image(file.path(), DynamicImage::ImageLuma8(image))?;
        let features = histogram_features(&xray)?;
        if file.split == "train" {
            train_x.extend(features);
            train_y.push(file.label.index());
        } else if file.split == "test" {
            test_x.extend(features);
            test_y.push(file.label.index());
        }
    }
    let to_array = |values: Vec<f64>, rows: usize| {
        Array2::from_shape_vec((rows, BINS), values)
            .map_err(|e| Error::BadArgument(format!("feature table: {e}")))
    };
    let train = to_array(train_x, train_y.len())?;
    let test = to_array(test_x, test_y.len())?;
    let model = LogisticClassifier::fit(train.view(), &train_y)?;
    Ok(Predictions {
        y_score: model.predict_proba(test.view()),
        source: format!(
            "logistic regression on {BINS}-bin histograms, trained on {} and tested on {} \
             GENERATED images ({size} x {size}, seed {seed}), not real X-rays",
            train_y.len(),
            test_y.len()
        ),
        y_true: test_y,
        classes: Label::ALL.iter().map(|l| l.name().to_string()).collect(),
    })
}

/// The seed of the images [`lesson_predictions`] generates.
pub const LESSON_SEED: u64 = 7;

/// The predictions chapters 7 and 8 judge when no trained model's are given: the
/// histogram classifier above, trained on 600 and tested on 400 generated 64 x 64
/// images. Made once per program, then shared.
pub fn lesson_predictions() -> Result<Predictions> {
    static MADE: std::sync::OnceLock<Predictions> = std::sync::OnceLock::new();
    if let Some(made) = MADE.get() {
        return Ok(made.clone());
    }
    let made = generated_xray_predictions(1000, 64, LESSON_SEED)?;
    Ok(MADE.get_or_init(|| made).clone())
}
