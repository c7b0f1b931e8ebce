#![doc = include_str!("../chapters/ch08-roc.md")]

use std::path::Path;

use linfa::dataset::Records;
use ndarray::{Axis, s};

use crate::Result;
use crate::baseline::{LogisticClassifier, Predictions, lesson_predictions};
use crate::data::{IRIS_CLASSES, Table, split_iris};
use crate::metrics::{
    Average, OperatingPoint, RocCurve, one_vs_rest, roc_auc_score_ovr, roc_curve,
};
use crate::plot::{Figure, Panel, Series, grid};

/// One colour per class, Matplotlib's names, as in the lesson.
pub const COLORS: [&str; 3] = ["aqua", "darkorange", "cornflowerblue"];

/// The sensitivity a screening reader asks for in this chapter: miss at most 1 in 20.
pub const TARGET_SENSITIVITY: f64 = 0.95;

/// The ROC curve of one class against the rest, and the area under it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRoc {
    /// The class, or "micro-average".
    pub name: String,
    /// Its curve (scikit-learn's `roc_curve`, intermediate points dropped).
    pub curve: RocCurve,
    /// The area under it.
    pub auc: f64,
}

/// One ROC curve per class: class `i`'s column of scores against "is it class `i`?", as
/// the lesson's `roc_curve(y_test[:, i], y_score[:, i])`.
pub fn per_class_roc(predictions: &Predictions) -> Result<Vec<ClassRoc>> {
    predictions
        .classes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let curve = roc_curve(
                &one_vs_rest(&predictions.y_true, i),
                &predictions.scores(i),
                true,
            )?;
            Ok(ClassRoc {
                name: name.clone(),
                auc: curve.auc()?,
                curve,
            })
        })
        .collect()
}

/// The micro-average: every (sample, class) pair pooled into one curve.
pub fn micro_average(predictions: &Predictions) -> Result<ClassRoc> {
    let n = predictions.classes.len();
    let truths: Vec<bool> = predictions
        .y_true
        .iter()
        .flat_map(|&t| (0..n).map(move |c| c == t))
        .collect();
    let scores: Vec<f64> = predictions.y_score.iter().copied().collect();
    let curve = roc_curve(&truths, &scores, true)?;
    Ok(ClassRoc {
        name: "micro-average".into(),
        auc: curve.auc()?,
        curve,
    })
}

/// The macro-average AUC: the plain mean of the per-class areas.
pub fn macro_auc(predictions: &Predictions) -> Result<f64> {
    roc_auc_score_ovr(
        &predictions.y_true,
        predictions.y_score.view(),
        Average::Macro,
    )
}

/// The threshold on class `class`'s score that reaches `sensitivity`, found on the full
/// curve (no point dropped).
pub fn operating_point(
    predictions: &Predictions,
    class: usize,
    sensitivity: f64,
) -> Result<Option<OperatingPoint>> {
    let curve = roc_curve(
        &one_vs_rest(&predictions.y_true, class),
        &predictions.scores(class),
        false,
    )?;
    Ok(curve.threshold_for_sensitivity(sensitivity))
}

/// Chapter 5's split of iris: 7 : 1.5 : 1.5, stratified, seed 42.
pub const IRIS_SPLIT: ([f64; 3], u64) = ([0.7, 0.15, 0.15], 42);

/// A three-class example on real data: logistic regression on iris's two sepal
/// measurements only (the petals would make it perfect), trained on chapter 5's train
/// part and scored on its validation and test parts together (46 flowers).
pub fn iris_predictions() -> Result<Predictions> {
    let (_, [train, val, test]) = split_iris(IRIS_SPLIT.0, IRIS_SPLIT.1)?;
    let sepals = |d: &Table| d.records().slice(s![.., 0..2]).to_owned();
    let model = LogisticClassifier::fit(
        sepals(&train).view(),
        train.targets().as_slice().unwrap_or(&[]),
    )?;
    let held_out = ndarray::concatenate(Axis(0), &[sepals(&val).view(), sepals(&test).view()])
        .map_err(|e| crate::Error::BadArgument(format!("iris parts: {e}")))?;
    let y_true: Vec<usize> = val
        .targets()
        .iter()
        .chain(test.targets())
        .copied()
        .collect();
    Ok(Predictions {
        y_score: model.predict_proba(held_out.view()),
        source: format!(
            "logistic regression on iris's sepal length and width, trained on {} flowers, scored on {} others",
            train.nsamples(),
            y_true.len()
        ),
        y_true,
        classes: IRIS_CLASSES.iter().map(|c| c.to_string()).collect(),
    })
}

/// One chart of [`roc_panel_figure`].
#[derive(Debug, Clone, Copy)]
pub struct RocPanel<'a> {
    /// What the chart shows.
    pub title: &'a str,
    /// Its curves, one per class (and averages).
    pub curves: &'a [ClassRoc],
    /// An operating point to mark, with its label.
    pub mark: Option<(&'a str, OperatingPoint)>,
}

/// ROC curves in the given colours with the chance diagonal, AUC in the legend, and an
/// optional marked operating point.
pub fn roc_panel_figure(panels: &[RocPanel], colors: &[&str]) -> Result<Figure> {
    let labels: Vec<Vec<String>> = panels
        .iter()
        .map(|panel| {
            panel
                .curves
                .iter()
                .map(|c| format!("{} (AUC = {:.2})", c.name, c.auc))
                .collect()
        })
        .collect();
    let series: Vec<Vec<Series>> = panels
        .iter()
        .zip(&labels)
        .map(|(panel, labels)| {
            panel
                .curves
                .iter()
                .zip(labels)
                .enumerate()
                .map(|(i, (c, label))| Series {
                    label,
                    color: if c.name == "micro-average" {
                        "deeppink"
                    } else {
                        colors.get(i).copied().unwrap_or("gray")
                    },
                    x: &c.curve.fpr,
                    y: &c.curve.tpr,
                })
                .collect()
        })
        .collect();
    let marks: Vec<Vec<(&str, (f64, f64))>> = panels
        .iter()
        .map(|panel| {
            panel
                .mark
                .iter()
                .map(|(label, p)| (*label, (p.fpr, p.tpr)))
                .collect()
        })
        .collect();
    let cells: Vec<Panel> = panels
        .iter()
        .zip(&series)
        .zip(&marks)
        .map(|((panel, series), marks)| Panel::Curves {
            title: panel.title,
            axes: ("false positive rate", "true positive rate"),
            series,
            diagonal: true,
            marks,
        })
        .collect();
    grid(cells.len(), &cells)
}

/// The chapter's figure: the X-ray classes with the 95%-sensitivity point, and iris.
pub fn lesson_figure(xrays: &Predictions, iris: &Predictions) -> Result<Figure> {
    let xray_curves = per_class_roc(xrays)?;
    let mut iris_curves = per_class_roc(iris)?;
    iris_curves.push(micro_average(iris)?);
    let point = operating_point(xrays, 1, TARGET_SENSITIVITY)?;
    let label = point.map(|p| format!("threshold {:.2}: FPR {:.2}", p.threshold, p.fpr));
    let mark = point.zip(label.as_deref()).map(|(p, l)| (l, p));
    roc_panel_figure(
        &[
            RocPanel {
                title: "X-ray baseline (generated images)",
                curves: &xray_curves,
                mark,
            },
            RocPanel {
                title: "iris, sepals only",
                curves: &iris_curves,
                mark: None,
            },
        ],
        &COLORS,
    )
}

/// A model's PNEUMONIA ROC curve against the baseline's on the same test images, the
/// model's 95%-sensitivity point marked: how much better than the baseline it ranks.
pub fn compare_figure(name: &str, model: &Predictions, baseline: &Predictions) -> Result<Figure> {
    let named = |name: &str, predictions: &Predictions| -> Result<ClassRoc> {
        let mut roc = per_class_roc(predictions)?.swap_remove(1);
        roc.name = name.to_string();
        Ok(roc)
    };
    let curves = [named(name, model)?, named("histogram baseline", baseline)?];
    let point = operating_point(model, 1, TARGET_SENSITIVITY)?;
    let label = point.map(|p| format!("threshold {:.2}: FPR {:.2}", p.threshold, p.fpr));
    let mark = point.zip(label.as_deref()).map(|(p, l)| (l, p));
    roc_panel_figure(
        &[RocPanel {
            title: "PNEUMONIA, same test images (generated)",
            curves: &curves,
            mark,
        }],
        &["darkorange", "cornflowerblue"],
    )
}

/// Runs the lesson on `predictions_csv` or, without one, on the course's CNN
/// ([`crate::run::CourseCnn`], trained under `out` the first time), with the histogram baseline as
/// the comparison, and on iris; prints every AUC and the 95%-sensitivity threshold, draws
/// the lesson's figure and the model against the baseline.
pub fn run(predictions_csv: Option<&Path>, out: &Path) -> Result<Vec<String>> {
    let (name, xrays, baseline) = crate::run::judged(predictions_csv, out)?;
    let iris = iris_predictions()?;
    let mut report = vec![format!("X-rays: {}", xrays.source)];
    for c in per_class_roc(&xrays)? {
        report.push(format!("  ROC AUC of {}: {:.4}", c.name, c.auc));
    }
    if let Some(p) = operating_point(&xrays, 1, TARGET_SENSITIVITY)? {
        report.push(format!(
            "  to find {:.0}% of pneumonias, call PNEUMONIA from a score of {:.4}: sensitivity {:.4}, false positive rate {:.4} (specificity {:.4})",
            TARGET_SENSITIVITY * 100.0,
            p.threshold,
            p.tpr,
            p.fpr,
            1.0 - p.fpr
        ));
    }
    report.push(format!("baseline: {}", baseline.source));
    report.push(format!(
        "  ROC AUC of PNEUMONIA: {:.4}",
        per_class_roc(&baseline)?[1].auc
    ));
    report.push(format!("iris: {}", iris.source));
    for c in per_class_roc(&iris)? {
        report.push(format!("  ROC AUC of {}: {:.4}", c.name, c.auc));
    }
    report.push(format!(
        "  micro-average {:.4}, macro-average {:.4}",
        micro_average(&iris)?.auc,
        macro_auc(&iris)?
    ));
    let figure = out.join("ch08-roc.png");
    lesson_figure(&lesson_predictions()?, &iris)?.save(&figure)?;
    report.push(format!("figure: {}", figure.display()));
    let figure = out.join("ch08-roc-model.png");
    compare_figure(name, &xrays, &baseline)?.save(&figure)?;
    report.push(format!("figure: {}", figure.display()));
    Ok(report)
}
