//! The histogram baseline of chapters 7 and 8: its predictions are deterministic, better
//! than chance on generated images, and survive a CSV round trip.

use cxr::baseline::Predictions;
use cxr::ch07_confusion::lesson_predictions;
use cxr::metrics::{one_vs_rest, roc_auc_score};

#[test]
fn baseline_beats_chance_and_is_deterministic() {
    let predictions = lesson_predictions().unwrap();
    let again =
        cxr::baseline::generated_xray_predictions(1000, 64, cxr::ch07_confusion::SEED).unwrap();
    assert_eq!(predictions, again);
    assert!(predictions.source.contains("GENERATED"));
    let auc = roc_auc_score(&one_vs_rest(&predictions.y_true, 1), &predictions.scores(1)).unwrap();
    assert!(auc > 0.6, "AUC {auc}");
    for row in predictions.y_score.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn predictions_round_trip_through_csv() {
    let predictions = lesson_predictions().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.csv");
    predictions.write_csv(&path).unwrap();
    let back = Predictions::read_csv(&path).unwrap();
    assert_eq!(back.y_true, predictions.y_true);
    assert_eq!(back.classes, predictions.classes);
    assert_eq!(back.source, predictions.source);
    let diff = (&back.y_score - &predictions.y_score)
        .mapv(f64::abs)
        .fold(0.0, |a: f64, &b| a.max(b));
    assert!(diff < 1e-12, "{diff}");
}

#[test]
fn a_predictions_file_without_probabilities_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "label,score\n0,0.2\n1,0.9\n").unwrap();
    let message = Predictions::read_csv(&path).unwrap_err().to_string();
    assert!(
        message.contains("bad.csv") && message.contains("p_NORMAL"),
        "{message}"
    );
}

#[test]
fn a_finished_main_job_is_kept_as_the_course_cnn_once() {
    use cxr::run::{CourseCnn, RunReport};
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("runs/run-001");
    std::fs::create_dir_all(&run).unwrap();
    for (file, text) in [
        ("xray_model.safetensors", "model"),
        ("test_predictions.csv", "label,p_NORMAL,p_PNEUMONIA\n"),
        ("history.csv", "epoch,loss\n"),
    ] {
        std::fs::write(run.join(file), text).unwrap();
    }
    let report = |completed| RunReport {
        lines: Vec::new(),
        folder: run.clone(),
        completed,
    };
    // A run stopped half way is never kept.
    assert_eq!(CourseCnn::adopt(out.path(), &report(false)).unwrap(), None);
    let kept = CourseCnn::adopt(out.path(), &report(true))
        .unwrap()
        .expect("kept");
    // Once there is a course CNN, a later run leaves it alone.
    assert_eq!(CourseCnn::adopt(out.path(), &report(true)).unwrap(), None);
    let cnn = CourseCnn::load(out.path()).unwrap();
    assert_eq!(cnn.folder, kept);
    assert_eq!(std::fs::read_to_string(cnn.model_path()).unwrap(), "model");
    // Its generated images, which the run's copy does not carry, are made again.
    assert!(cnn.data.join("README.md").is_file());
}
