#![doc = include_str!("../chapters/ch07-confusion.md")]

use std::path::Path;

use crate::Result;
use crate::baseline::Predictions;

pub use crate::baseline::lesson_predictions;
use crate::metrics::{BinaryCounts, ConfusionMatrix, ZeroDivision, confusion_matrix};
use crate::plot::{Figure, Panel, grid};

/// The seed of the chapter's generated images.
pub const SEED: u64 = crate::baseline::LESSON_SEED;

/// The four scores of lesson 7, from the four counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// (TP + TN) / all.
    pub accuracy: f64,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// 2 * precision * recall / (precision + recall).
    pub f1: f64,
}

/// Accuracy, precision, recall and F1 of PNEUMONIA (class 1), as scikit-learn computes
/// them (an undefined score is 0).
pub fn scores(counts: BinaryCounts) -> Scores {
    let zd = ZeroDivision::Zero;
    Scores {
        accuracy: counts.accuracy(),
        precision: counts.precision(zd),
        recall: counts.recall(zd),
        f1: counts.f1(zd),
    }
}

/// The confusion matrix of predictions, PNEUMONIA as the positive class, classes named.
pub fn xray_confusion_matrix(predictions: &Predictions) -> Result<ConfusionMatrix> {
    let matrix = confusion_matrix(
        &predictions.y_true,
        &predictions.y_pred(),
        predictions.classes.len(),
    )?;
    Ok(matrix.with_names(&predictions.classes))
}

/// The confusion matrix as a heat map, with each cell's count and its share of the true
/// class (so the diagonal shows specificity and recall).
pub fn confusion_figure(matrix: &ConfusionMatrix, title: &str) -> Result<Figure> {
    grid(
        1,
        &[Panel::Heatmap {
            title,
            names: matrix.names(),
            counts: matrix.counts(),
        }],
    )
}

/// Accuracy, precision, recall, F1 and specificity of PNEUMONIA at the 0.5 threshold, one
/// row per model, side by side: how a model compares with a baseline.
pub fn compare(models: &[(&str, &Predictions)]) -> Result<String> {
    let width = models.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut table = format!(
        "{:width$}  accuracy  precision  recall  F1      specificity  images\n",
        "model"
    );
    for (name, predictions) in models {
        let counts = xray_confusion_matrix(predictions)?.binary(1);
        let s = scores(counts);
        table.push_str(&format!(
            "{name:width$}  {:<8.4}  {:<9.4}  {:<6.4}  {:<6.4}  {:<11.4}  {}\n",
            s.accuracy,
            s.precision,
            s.recall,
            s.f1,
            counts.specificity(ZeroDivision::Zero),
            predictions.y_true.len()
        ));
    }
    Ok(table)
}

/// Runs the lesson on `predictions_csv` (written by a trained model) or, without one, on
/// the course's CNN ([`crate::run::CourseCnn`], trained under `out` the first time), with the
/// histogram baseline as the comparison; prints the matrix, the counts and the scores and
/// draws the figure.
pub fn run(predictions_csv: Option<&Path>, out: &Path) -> Result<Vec<String>> {
    let (name, predictions, baseline) = crate::run::judged(predictions_csv, out)?;
    let matrix = xray_confusion_matrix(&predictions)?;
    let counts = matrix.binary(1);
    let s = scores(counts);
    let majority = predictions
        .y_true
        .iter()
        .filter(|&&y| y == 1)
        .count()
        .max(predictions.y_true.iter().filter(|&&y| y == 0).count()) as f64
        / predictions.y_true.len().max(1) as f64;
    let figure = out.join("ch07-confusion.png");
    confusion_figure(&matrix, "confusion matrix: rows true, columns predicted")?.save(&figure)?;
    Ok(vec![
        format!("predictions: {}", predictions.source),
        format!("confusion matrix (rows true NORMAL, PNEUMONIA; columns predicted):\n{matrix}"),
        format!(
            "tp {}, fn {}, fp {}, tn {}",
            counts.tp, counts.fn_, counts.fp, counts.tn
        ),
        format!(
            "accuracy {:.4}, precision {:.4}, recall {:.4}, F1 {:.4}, specificity {:.4}",
            s.accuracy,
            s.precision,
            s.recall,
            s.f1,
            counts.specificity(ZeroDivision::Zero)
        ),
        format!("always answering the larger class would score accuracy {majority:.4}"),
        matrix.report(ZeroDivision::Zero, 4).to_string(),
        format!("baseline: {}", baseline.source),
        compare(&[(name, &predictions), ("histogram baseline", &baseline)])?,
        format!("figure: {}", figure.display()),
    ])
}
