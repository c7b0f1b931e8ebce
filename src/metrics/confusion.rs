//! The confusion matrix and the scores read off it.

use std::fmt;

use polars_core::prelude::{Column, DataFrame};

use super::check_lengths;
use crate::{Error, Result};

/// What a score is when its denominator is zero, as scikit-learn's `zero_division`.
///
/// Precision is undefined for a class that is never predicted, recall for a class that
/// never occurs. scikit-learn's default, `"warn"`, returns 0 and prints a warning;
/// [`ZeroDivision::Zero`] is that default without the warning. With
/// [`ZeroDivision::Nan`] the undefined classes are left out of macro and weighted
/// averages, as scikit-learn does.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ZeroDivision {
    /// Undefined scores are 0 (scikit-learn's default).
    #[default]
    Zero,
    /// Undefined scores are 1.
    One,
    /// Undefined scores are NaN and skipped when averaging.
    Nan,
}

impl ZeroDivision {
    fn value(self) -> f64 {
        match self {
            ZeroDivision::Zero => 0.0,
            ZeroDivision::One => 1.0,
            ZeroDivision::Nan => f64::NAN,
        }
    }

    fn ratio(self, numerator: u64, denominator: u64) -> f64 {
        if denominator == 0 {
            self.value()
        } else {
            numerator as f64 / denominator as f64
        }
    }
}

/// How per-class scores become one number, as scikit-learn's `average`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Average {
    /// The score of one class, the positive one (scikit-learn's `average="binary"` with
    /// `pos_label`).
    Binary {
        /// The positive class: 1 (PNEUMONIA) for the X-rays.
        positive: usize,
    },
    /// The plain mean over classes: every class counts the same, however rare.
    Macro,
    /// The mean weighted by each class's number of true samples (its support).
    Weighted,
    /// Counts pooled over classes before dividing; equals accuracy for single-label data.
    Micro,
}

/// Rows are the true classes, columns the predicted ones: scikit-learn's layout, so
/// `counts()[1][0]` is the number of PNEUMONIA images predicted NORMAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<u64>>,
    names: Vec<String>,
}

/// Builds the confusion matrix of `y_true` against `y_pred` over the classes
/// `0..n_classes`, as scikit-learn's `confusion_matrix(y_true, y_pred, labels=range(n))`.
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<ConfusionMatrix> {
    check_lengths("the confusion matrix", y_true.len(), y_pred.len())?;
    let mut counts = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        if t >= n_classes || p >= n_classes {
            return Err(Error::Metric {
                metric: "the confusion matrix",
                detail: format!("class {} is outside 0..{n_classes}", t.max(p)),
                fix: "number the classes from 0 and pass their count as n_classes",
            });
        }
        counts[t][p] += 1;
    }
    Ok(ConfusionMatrix::from_counts(counts))
}

impl ConfusionMatrix {
    /// A matrix from its counts (rows true, columns predicted); classes are named by number
    /// until [`ConfusionMatrix::with_names`] names them.
    ///
    /// # Panics
    /// If the rows are not all as long as there are rows.
    pub fn from_counts(counts: Vec<Vec<u64>>) -> Self {
        let n = counts.len();
        assert!(
            counts.iter().all(|row| row.len() == n),
            "a confusion matrix is square"
        );
        let names = (0..n).map(|i| i.to_string()).collect();
        ConfusionMatrix { counts, names }
    }

    /// Names the classes, for reports and figures.
    pub fn with_names<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        for (slot, name) in self.names.iter_mut().zip(names) {
            *slot = name.as_ref().to_string();
        }
        self
    }

    /// `counts()[true_class][predicted_class]`.
    pub fn counts(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// The class names, in class order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of classes.
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    /// The number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// How many samples truly are `class`.
    pub fn support(&self, class: usize) -> u64 {
        self.counts[class].iter().sum()
    }

    /// The share of samples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.n_classes()).map(|i| self.counts[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// TP, FN, FP and TN of `positive` against all other classes.
    pub fn binary(&self, positive: usize) -> BinaryCounts {
        let tp = self.counts[positive][positive];
        let fn_ = self.support(positive) - tp;
        let fp = (0..self.n_classes())
            .map(|t| self.counts[t][positive])
            .sum::<u64>()
            - tp;
        BinaryCounts {
            tp,
            fn_,
            fp,
            tn: self.total() - tp - fn_ - fp,
        }
    }

    /// Precision, recall, F1 and support of every class (scikit-learn's
    /// `precision_recall_fscore_support(average=None)`).
    pub fn class_scores(&self, zero_division: ZeroDivision) -> Vec<ClassScores> {
        (0..self.n_classes())
            .map(|class| {
                let counts = self.binary(class);
                ClassScores {
                    precision: counts.precision(zero_division),
                    recall: counts.recall(zero_division),
                    f1: counts.f1(zero_division),
                    support: counts.tp + counts.fn_,
                }
            })
            .collect()
    }

    /// Precision, recall and F1 averaged as `average` says.
    pub fn scores(&self, average: Average, zero_division: ZeroDivision) -> ClassScores {
        let per_class = self.class_scores(zero_division);
        match average {
            Average::Binary { positive } => per_class[positive],
            Average::Micro => {
                let (mut tp, mut fp, mut fn_) = (0, 0, 0);
                for class in 0..self.n_classes() {
                    let c = self.binary(class);
                    (tp, fp, fn_) = (tp + c.tp, fp + c.fp, fn_ + c.fn_);
                }
                let pooled = BinaryCounts { tp, fp, fn_, tn: 0 };
                ClassScores {
                    precision: pooled.precision(zero_division),
                    recall: pooled.recall(zero_division),
                    f1: pooled.f1(zero_division),
                    support: self.total(),
                }
            }
            Average::Macro | Average::Weighted => {
                let weight = |s: &ClassScores| match average {
                    Average::Weighted => s.support as f64,
                    _ => 1.0,
                };
                let mean = |value: fn(&ClassScores) -> f64| {
                    nan_average(per_class.iter().map(|s| (value(s), weight(s))))
                };
                ClassScores {
                    precision: mean(|s| s.precision),
                    recall: mean(|s| s.recall),
                    f1: mean(|s| s.f1),
                    support: self.total(),
                }
            }
        }
    }

    /// The matrix as a table: one row per true class, one column per predicted class.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut columns = vec![Column::new("true \\ predicted".into(), self.names.clone())];
        for (j, name) in self.names.iter().enumerate() {
            let values: Vec<u64> = self.counts.iter().map(|row| row[j]).collect();
            columns.push(Column::new(name.as_str().into(), values));
        }
        Ok(DataFrame::new(self.n_classes(), columns)?)
    }
}

/// The mean of the values that are not NaN, weighted; NaN when none is left or the
/// weights add up to zero (scikit-learn's `_nanaverage`).
fn nan_average(values: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut sum, mut weights) = (0.0, 0.0);
    for (value, weight) in values.filter(|(v, _)| !v.is_nan()) {
        sum += value * weight;
        weights += weight;
    }
    if weights == 0.0 {
        f64::NAN
    } else {
        sum / weights
    }
}

/// Prints like NumPy prints `confusion_matrix(...)`, which is what lesson 7 reads the
/// counts from: `[[176  58]` / ` [ 63 327]]`.
impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .counts
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1);
        for (i, row) in self.counts.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:>width$}")).collect();
            let open = if i == 0 { "[[" } else { " [" };
            let close = if i + 1 == self.counts.len() {
                "]]"
            } else {
                "]\n"
            };
            write!(f, "{open}{}{close}", cells.join(" "))?;
        }
        Ok(())
    }
}

/// The four counts of a yes/no question, named as lesson 7 names them. `fn_` carries an
/// underscore because `fn` is a Rust keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BinaryCounts {
    /// True positives: positive, predicted positive.
    pub tp: u64,
    /// False negatives: positive, predicted negative (a missed pneumonia).
    pub fn_: u64,
    /// False positives: negative, predicted positive (a false alarm).
    pub fp: u64,
    /// True negatives: negative, predicted negative.
    pub tn: u64,
}

impl BinaryCounts {
    /// (TP + TN) / all.
    pub fn accuracy(&self) -> f64 {
        let all = self.tp + self.fn_ + self.fp + self.tn;
        ZeroDivision::Nan.ratio(self.tp + self.tn, all)
    }

    /// TP / (TP + FP): of the images called positive, how many are.
    pub fn precision(&self, zero_division: ZeroDivision) -> f64 {
        zero_division.ratio(self.tp, self.tp + self.fp)
    }

    /// TP / (TP + FN), also called sensitivity or true positive rate: of the positive
    /// images, how many are found.
    pub fn recall(&self, zero_division: ZeroDivision) -> f64 {
        zero_division.ratio(self.tp, self.tp + self.fn_)
    }

    /// TN / (TN + FP): of the negative images, how many are cleared.
    pub fn specificity(&self, zero_division: ZeroDivision) -> f64 {
        zero_division.ratio(self.tn, self.tn + self.fp)
    }

    /// The harmonic mean of precision and recall, computed as 2TP / (2TP + FP + FN): it
    /// is 0, not undefined, when one of the two is 0 and the other is not (scikit-learn
    /// 1.3 and later).
    pub fn f1(&self, zero_division: ZeroDivision) -> f64 {
        zero_division.ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// Precision, recall, F1 and support of one class or one average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// 2TP / (2TP + FP + FN).
    pub f1: f64,
    /// The number of true samples counted.
    pub support: u64,
}

fn n_classes_of(y_true: &[usize], y_pred: &[usize]) -> usize {
    y_true
        .iter()
        .chain(y_pred)
        .max()
        .map_or(0, |m| m + 1)
        .max(2)
}

/// The share of predictions that are right.
pub fn accuracy_score(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    check_lengths("accuracy", y_true.len(), y_pred.len())?;
    let right = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(right as f64 / y_true.len() as f64)
}

/// The mean of each class's recall, as scikit-learn's `balanced_accuracy_score`: the
/// accuracy a model would score if every class were equally common. On the X-rays, where
/// three in four are PNEUMONIA, always answering PNEUMONIA scores 0.74 accuracy and 0.5
/// balanced accuracy. Classes absent from `y_true` are left out, as in scikit-learn.
pub fn balanced_accuracy_score(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    check_lengths("balanced accuracy", y_true.len(), y_pred.len())?;
    let matrix = confusion_matrix(y_true, y_pred, n_classes_of(y_true, y_pred))?;
    let recalls: Vec<f64> = (0..matrix.n_classes())
        .filter(|&c| matrix.support(c) > 0)
        .map(|c| matrix.counts()[c][c] as f64 / matrix.support(c) as f64)
        .collect();
    Ok(recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// Per-class precision, recall, F1 and support over classes `0..n` (at least 2, or as
/// many as the labels need).
pub fn precision_recall_fscore_support(
    y_true: &[usize],
    y_pred: &[usize],
    zero_division: ZeroDivision,
) -> Result<Vec<ClassScores>> {
    let matrix = confusion_matrix(y_true, y_pred, n_classes_of(y_true, y_pred))?;
    Ok(matrix.class_scores(zero_division))
}

fn averaged(
    y_true: &[usize],
    y_pred: &[usize],
    average: Average,
    zero_division: ZeroDivision,
) -> Result<ClassScores> {
    let n = n_classes_of(y_true, y_pred);
    if let Average::Binary { positive } = average
        && (positive >= n || n > 2)
    {
        return Err(Error::Metric {
            metric: "a binary score",
            detail: format!("positive class {positive} with {n} classes"),
            fix: "use Average::Macro, Weighted or Micro for more than two classes",
        });
    }
    Ok(confusion_matrix(y_true, y_pred, n)?.scores(average, zero_division))
}

/// TP / (TP + FP), as scikit-learn's `precision_score`.
pub fn precision_score(
    y_true: &[usize],
    y_pred: &[usize],
    average: Average,
    zero_division: ZeroDivision,
) -> Result<f64> {
    Ok(averaged(y_true, y_pred, average, zero_division)?.precision)
}

/// TP / (TP + FN), as scikit-learn's `recall_score`.
pub fn recall_score(
    y_true: &[usize],
    y_pred: &[usize],
    average: Average,
    zero_division: ZeroDivision,
) -> Result<f64> {
    Ok(averaged(y_true, y_pred, average, zero_division)?.recall)
}

/// 2TP / (2TP + FP + FN), as scikit-learn's `f1_score`.
pub fn f1_score(
    y_true: &[usize],
    y_pred: &[usize],
    average: Average,
    zero_division: ZeroDivision,
) -> Result<f64> {
    Ok(averaged(y_true, y_pred, average, zero_division)?.f1)
}

/// scikit-learn's `classification_report`: per-class scores, accuracy, and the macro and
/// weighted averages; prints as scikit-learn prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `(class name, scores)` in class order.
    pub classes: Vec<(String, ClassScores)>,
    /// The share of right predictions.
    pub accuracy: f64,
    /// Unweighted means over classes.
    pub macro_avg: ClassScores,
    /// Means weighted by support.
    pub weighted_avg: ClassScores,
    /// Digits printed after the decimal point.
    pub digits: usize,
}

/// Builds the classification report of `y_true` against `y_pred`, the classes named by
/// `names` (class `i` is `names[i]`).
pub fn classification_report<S: AsRef<str>>(
    y_true: &[usize],
    y_pred: &[usize],
    names: &[S],
    digits: usize,
) -> Result<Report> {
    let matrix = confusion_matrix(y_true, y_pred, names.len())?.with_names(names);
    Ok(matrix.report(ZeroDivision::Zero, digits))
}

impl ConfusionMatrix {
    /// The classification report of this matrix.
    pub fn report(&self, zero_division: ZeroDivision, digits: usize) -> Report {
        Report {
            classes: self
                .names
                .iter()
                .cloned()
                .zip(self.class_scores(zero_division))
                .collect(),
            accuracy: self.accuracy(),
            macro_avg: self.scores(Average::Macro, zero_division),
            weighted_avg: self.scores(Average::Weighted, zero_division),
            digits,
        }
    }
}

impl Report {
    /// The report as a table, one row per class and average.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut rows: Vec<(String, ClassScores)> = self.classes.clone();
        rows.push(("macro avg".into(), self.macro_avg));
        rows.push(("weighted avg".into(), self.weighted_avg));
        let column = |name: &str, value: fn(&ClassScores) -> f64| {
            Column::new(
                name.into(),
                rows.iter().map(|(_, s)| value(s)).collect::<Vec<_>>(),
            )
        };
        Ok(DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    "class".into(),
                    rows.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                ),
                column("precision", |s| s.precision),
                column("recall", |s| s.recall),
                column("f1-score", |s| s.f1),
                Column::new(
                    "support".into(),
                    rows.iter().map(|(_, s)| s.support).collect::<Vec<_>>(),
                ),
            ],
        )?)
    }
}

/// Character for character scikit-learn's text report.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits;
        let longest = self.classes.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let width = longest.max("weighted avg".len()).max(d);
        let headers = ["precision", "recall", "f1-score", "support"];
        write!(f, "{:>width$} ", "")?;
        writeln!(f, " {}\n", headers.map(|h| format!("{h:>9}")).join(" "))?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, s: &ClassScores| {
            writeln!(
                f,
                "{name:>width$}  {:>9.d$} {:>9.d$} {:>9.d$} {:>9}",
                s.precision, s.recall, s.f1, s.support
            )
        };
        for (name, scores) in &self.classes {
            row(f, name, scores)?;
        }
        writeln!(f)?;
        let total = self.weighted_avg.support;
        writeln!(
            f,
            "{:>width$}  {:>9} {:>9} {:>9.d$} {:>9}",
            "accuracy", "", "", self.accuracy, total
        )?;
        row(f, "macro avg", &self.macro_avg)?;
        row(f, "weighted avg", &self.weighted_avg)
    }
}
