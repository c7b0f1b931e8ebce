//! Every number of `tests/fixtures/sklearn/metrics.json` (made by scikit-learn 1.7 with
//! `make_sklearn_metrics.py` beside it) against cxr's metrics: confusion matrices, scores
//! under each `zero_division`, averages, reports, ROC curves with and without
//! `drop_intermediate`, thresholds included, and the areas.

use cxr::metrics::{
    Average, ConfusionMatrix, ZeroDivision, accuracy_score, auc, classification_report,
    confusion_matrix, one_vs_rest, roc_auc_score, roc_auc_score_ovr, roc_curve,
};
use ndarray::Array2;
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/sklearn/metrics.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unexpected number {other}"),
        },
        v => v.as_f64().unwrap(),
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(number).collect()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn counts(v: &Value) -> Vec<Vec<u64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| labels(row).into_iter().map(|c| c as u64).collect())
        .collect()
}

/// Equal within 1e-12, NaN equal to NaN, infinities equal to themselves.
fn assert_close(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-12;
        assert!(same, "{what}[{i}]: cxr {a}, scikit-learn {b}");
    }
}

fn zero_division(key: &str) -> ZeroDivision {
    match key {
        "0.0" => ZeroDivision::Zero,
        "1.0" => ZeroDivision::One,
        "nan" => ZeroDivision::Nan,
        other => panic!("unknown zero_division {other}"),
    }
}

fn check_scores(case: &Value, matrix: &ConfusionMatrix) {
    let name = case["name"].as_str().unwrap();
    for (key, by_average) in case["scores"].as_object().unwrap() {
        let zd = zero_division(key);
        for (average_name, expected) in by_average.as_object().unwrap() {
            let what = format!("{name} zero_division={key} average={average_name}");
            let (precision, recall, f1) = if average_name == "per_class" {
                let scores = matrix.class_scores(zd);
                (
                    scores.iter().map(|s| s.precision).collect(),
                    scores.iter().map(|s| s.recall).collect(),
                    scores.iter().map(|s| s.f1).collect(),
                )
            } else {
                let average = match average_name.as_str() {
                    "binary" => Average::Binary { positive: 1 },
                    "macro" => Average::Macro,
                    "weighted" => Average::Weighted,
                    "micro" => Average::Micro,
                    other => panic!("unknown average {other}"),
                };
                let s = matrix.scores(average, zd);
                (vec![s.precision], vec![s.recall], vec![s.f1])
            };
            assert_close(&precision, &numbers(&expected["precision"]), &what);
            assert_close(&recall, &numbers(&expected["recall"]), &what);
            assert_close(&f1, &numbers(&expected["f1"]), &what);
        }
    }
}

fn check_curve(y: &[bool], scores: &[f64], drop: bool, expected: &Value, what: &str) {
    let curve = roc_curve(y, scores, drop).unwrap();
    assert_close(
        &curve.fpr,
        &numbers(&expected["fpr"]),
        &format!("{what} fpr"),
    );
    assert_close(
        &curve.tpr,
        &numbers(&expected["tpr"]),
        &format!("{what} tpr"),
    );
    assert_close(
        &curve.thresholds,
        &numbers(&expected["thresholds"]),
        &format!("{what} thresholds"),
    );
}

#[test]
fn binary_cases_match_scikit_learn() {
    let fixture = fixture();
    for case in fixture["binary"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y_true = labels(&case["y_true"]);
        let y_pred = labels(&case["y_pred"]);
        let scores = numbers(&case["y_score"]);
        let threshold = number(&case["threshold"]);
        let ours_pred: Vec<usize> = scores
            .iter()
            .map(|&s| usize::from(s >= threshold))
            .collect();
        assert_eq!(ours_pred, y_pred, "{name}: thresholded predictions");

        let matrix = confusion_matrix(&y_true, &y_pred, 2).unwrap();
        assert_eq!(matrix.counts(), counts(&case["confusion_matrix"]), "{name}");
        let accuracy = accuracy_score(&y_true, &y_pred).unwrap();
        assert_close(&[accuracy], &[number(&case["accuracy"])], name);
        assert_close(&[matrix.accuracy()], &[number(&case["accuracy"])], name);
        check_scores(case, &matrix);

        let truths = one_vs_rest(&y_true, 1);
        check_curve(&truths, &scores, true, &case["roc"], name);
        check_curve(&truths, &scores, false, &case["roc_all"], name);
        let curve = roc_curve(&truths, &scores, true).unwrap();
        let area = auc(&curve.fpr, &curve.tpr).unwrap();
        assert_close(&[area], &[number(&case["auc"])], &format!("{name} auc"));
        let ours = roc_auc_score(&truths, &scores).unwrap();
        assert_close(
            &[ours],
            &[number(&case["roc_auc"])],
            &format!("{name} roc_auc"),
        );
    }
}

#[test]
fn three_classes_match_scikit_learn() {
    let fixture = fixture();
    let case = &fixture["multiclass"];
    let y_true = labels(&case["y_true"]);
    let y_pred = labels(&case["y_pred"]);
    let rows: Vec<Vec<f64>> = case["y_score"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    let scores = Array2::from_shape_vec((rows.len(), 3), rows.concat()).unwrap();

    let matrix = confusion_matrix(&y_true, &y_pred, 3).unwrap();
    assert_eq!(matrix.counts(), counts(&case["confusion_matrix"]));
    check_scores(case, &matrix);

    for class in 0..3 {
        let truths = one_vs_rest(&y_true, class);
        let column = scores.column(class).to_vec();
        let what = format!("class {class}");
        check_curve(&truths, &column, true, &case["per_class_roc"][class], &what);
        let area = roc_auc_score(&truths, &column).unwrap();
        assert_close(&[area], &[number(&case["per_class_auc"][class])], &what);
    }
    let pooled: Vec<bool> = y_true
        .iter()
        .flat_map(|&t| (0..3).map(move |c| c == t))
        .collect();
    let flat: Vec<f64> = scores.iter().copied().collect();
    check_curve(&pooled, &flat, true, &case["micro_roc"], "micro");
    for (average, key) in [
        (Average::Macro, "roc_auc_ovr_macro"),
        (Average::Weighted, "roc_auc_ovr_weighted"),
        (Average::Micro, "roc_auc_micro"),
    ] {
        let ours = roc_auc_score_ovr(&y_true, scores.view(), average).unwrap();
        assert_close(&[ours], &[number(&case[key])], key);
    }
}

#[test]
fn reports_print_as_scikit_learn_prints_them() {
    let fixture = fixture();
    let case = &fixture["multiclass"];
    let report = classification_report(
        &labels(&case["y_true"]),
        &labels(&case["y_pred"]),
        &["class 0", "class 1", "class 2"],
        4,
    )
    .unwrap();
    assert_eq!(report.to_string(), case["report"].as_str().unwrap());

    let kermany = &fixture["binary"][0];
    let report = classification_report(
        &labels(&kermany["y_true"]),
        &labels(&kermany["y_pred"]),
        &["NORMAL", "PNEUMONIA"],
        2,
    )
    .unwrap();
    assert_eq!(
        report.to_string(),
        fixture["report_binary"].as_str().unwrap()
    );
}

#[test]
fn matrices_print_as_numpy_prints_them() {
    let fixture = fixture();
    let matrix = ConfusionMatrix::from_counts(counts(&fixture["binary"][0]["confusion_matrix"]));
    assert_eq!(matrix.to_string(), "[[176  58]\n [ 63 327]]");
    let counts = matrix.binary(1);
    assert_eq!(
        (counts.tp, counts.fn_, counts.fp, counts.tn),
        (327, 63, 58, 176)
    );
}

/// `tests/fixtures/sklearn/curves.json`, made by `make_sklearn_curves.py` beside it.
fn curves_fixture() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/sklearn/curves.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn precision_recall_curves_and_average_precision_equal_scikit_learns() {
    use cxr::metrics::{average_precision_score, precision_recall_curve, predict_at};
    for case in curves_fixture()["binary"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y: Vec<bool> = labels(&case["y_true"]).iter().map(|&t| t == 1).collect();
        let s = numbers(&case["y_score"]);
        let curve = precision_recall_curve(&y, &s).unwrap();
        assert_close(&curve.precision, &numbers(&case["precision"]), name);
        assert_close(&curve.recall, &numbers(&case["recall"]), name);
        assert_close(&curve.thresholds, &numbers(&case["thresholds"]), name);
        let ap = average_precision_score(&y, &s).unwrap();
        assert_close(&[ap], &[number(&case["average_precision"])], name);
        // Balanced accuracy of the decisions at 0.5.
        let pred: Vec<usize> = predict_at(&s, 0.5).into_iter().map(usize::from).collect();
        let truth: Vec<usize> = y.iter().map(|&t| usize::from(t)).collect();
        let balanced = cxr::metrics::balanced_accuracy_score(&truth, &pred).unwrap();
        assert_close(&[balanced], &[number(&case["balanced_accuracy"])], name);
        let loss = cxr::metrics::binary_log_loss(&y, &s).unwrap();
        assert!(
            (loss - number(&case["log_loss"])).abs() < 1e-9,
            "{name}: log loss {loss} against {}",
            case["log_loss"]
        );
    }
}

#[test]
fn multiclass_log_loss_balanced_accuracy_and_one_vs_one_auc_equal_scikit_learns() {
    use cxr::metrics::{balanced_accuracy_score, log_loss, roc_auc_score_ovo};
    let case = &curves_fixture()["multiclass"];
    let y = labels(&case["y_true"]);
    let rows: Vec<Vec<f64>> = case["y_score"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    let scores = Array2::from_shape_vec((rows.len(), 3), rows.concat()).unwrap();
    let loss = log_loss(&y, scores.view()).unwrap();
    assert!((loss - number(&case["log_loss"])).abs() < 1e-12, "{loss}");
    let pred: Vec<usize> = scores
        .rows()
        .into_iter()
        .map(|r| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect();
    let balanced = balanced_accuracy_score(&y, &pred).unwrap();
    assert_close(
        &[balanced],
        &[number(&case["balanced_accuracy"])],
        "balanced",
    );
    for (average, key) in [
        (Average::Macro, "roc_auc_ovo_macro"),
        (Average::Weighted, "roc_auc_ovo_weighted"),
    ] {
        let ours = roc_auc_score_ovo(&y, scores.view(), average).unwrap();
        assert_close(&[ours], &[number(&case[key])], key);
    }
    // Scores that are not probabilities are refused, as scikit-learn refuses them.
    let doubled = &scores * 2.0;
    let err = roc_auc_score_ovo(&y, doubled.view(), Average::Macro)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sum to 1"), "{err}");
}

/// `tests/fixtures/sklearn/calibration.json`, made by `make_calibration.py` beside it.
#[test]
fn calibration_curves_and_wilson_intervals_equal_scikit_learns_and_statsmodels() {
    use cxr::metrics::{calibration_curve, wilson_interval};
    let text = std::fs::read_to_string("tests/fixtures/sklearn/calibration.json").unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    for case in fixture["curves"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y: Vec<bool> = labels(&case["y_true"]).iter().map(|&l| l == 1).collect();
        let prob = numbers(&case["y_prob"]);
        let bins = case["n_bins"].as_u64().unwrap() as usize;
        let curve = calibration_curve(&y, &prob, bins).unwrap();
        assert_close(&curve.prob_true, &numbers(&case["prob_true"]), name);
        assert_close(&curve.prob_pred, &numbers(&case["prob_pred"]), name);
        let counts: Vec<usize> = labels(&case["counts"]);
        assert_eq!(curve.counts, counts, "{name}");
        let ece = curve.expected_calibration_error();
        assert!((ece - number(&case["ece"])).abs() < 1e-12, "{name}: {ece}");
    }
    for case in fixture["wilson"].as_array().unwrap() {
        let (k, n) = (
            case["successes"].as_u64().unwrap() as usize,
            case["n"].as_u64().unwrap() as usize,
        );
        let interval = wilson_interval(k, n, 1.0 - number(&case["alpha"])).unwrap();
        for (ours, theirs) in [(interval.low, &case["low"]), (interval.high, &case["high"])] {
            assert!(
                (ours - number(theirs)).abs() < 1e-8,
                "{k}/{n}: {ours} vs {theirs}"
            );
        }
    }
    // What cannot be scored is refused, with what to do.
    assert!(calibration_curve(&[true], &[1.5], 10).is_err());
    assert!(
        wilson_interval(0, 0, 0.95)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}
