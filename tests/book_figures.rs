//! The figures committed for the book are the ones the code draws now, pixel for pixel,
//! so the pictures can never drift from the code they illustrate.

use std::path::Path;

use cxr::plot::Figure;
use cxr::prelude::*;

/// With `CXR_UPDATE_FIGURES=1` a stale figure is rewritten instead of failing the test.
fn assert_current(committed: &str, drawn: Figure, regenerate: &str) {
    let committed_image = image::open(committed).unwrap().to_rgb8();
    if drawn.image() != &committed_image && std::env::var_os("CXR_UPDATE_FIGURES").is_some() {
        drawn.save(committed).unwrap();
        return;
    }
    assert!(
        drawn.image() == &committed_image,
        "{committed} is stale: run `{regenerate}` (or every figure at once: \
         `CXR_UPDATE_FIGURES=1 cargo test --release --test integration book_figures`)"
    );
}

#[test]
fn chapter_1() {
    let path = Path::new(ch01_loading::IMG_PATH).join(ch01_loading::EXAMPLE_FILE);
    let drawn = ch01_loading::resize_figure(path).unwrap();
    assert_current(
        "chapters/figures/ch01-resize.png",
        drawn,
        "cargo run -- lesson 1 --out chapters/figures",
    );
}

#[test]
fn chapter_2() {
    let xray = XRay::open(ch02_histograms::EXAMPLE).unwrap().to_gray();
    let result = ch02_histograms::masked_histograms(&xray).unwrap();
    let drawn = ch02_histograms::histogram_view(&xray, &result).unwrap();
    assert_current(
        "chapters/figures/ch02-histograms.png",
        drawn,
        "cargo run -- lesson 2 --out chapters/figures",
    );
}

#[test]
fn chapter_3() {
    let (augmentation, comparison) =
        ch03_augmentation::lesson_figures(Path::new(ch01_loading::IMG_PATH)).unwrap();
    let regenerate = "cargo run -- lesson 3 --out chapters/figures";
    assert_current(
        "chapters/figures/ch03-augmentation.png",
        augmentation,
        regenerate,
    );
    assert_current(
        "chapters/figures/ch03-real-and-generated.png",
        comparison,
        regenerate,
    );
}

#[test]
fn chapter_4() {
    let model = cxr::nn::vgg(cxr::nn::VggConfig::vgg16()).unwrap();
    let drawn = ch04_vgg::parameters_figure(&model.summary()).unwrap();
    assert_current(
        "chapters/figures/ch04-parameters.png",
        drawn,
        "cargo run --release -- lesson 4 --out chapters/figures",
    );
}

#[test]
fn chapter_5() {
    use ch05_splitting::{SPLIT_RATIO, patient_leak, split_figure, split_iris};
    let (_, parts) = split_iris(SPLIT_RATIO).unwrap();
    let leak = patient_leak(2000, SPLIT_RATIO).unwrap();
    assert_current(
        "chapters/figures/ch05-split.png",
        split_figure(&parts, &leak).unwrap(),
        "cargo run -- lesson 5 --out chapters/figures",
    );
}

#[test]
fn chapter_7() {
    let matrix =
        ch07_confusion::xray_confusion_matrix(&ch07_confusion::lesson_predictions().unwrap())
            .unwrap();
    assert_current(
        "chapters/figures/ch07-confusion.png",
        ch07_confusion::confusion_figure(&matrix, "confusion matrix: rows true, columns predicted")
            .unwrap(),
        "CXR_UPDATE_FIGURES=1 cargo test --release --test integration book_figures::chapter_7",
    );
}

#[test]
fn chapter_8() {
    let drawn = ch08_roc::lesson_figure(
        &ch07_confusion::lesson_predictions().unwrap(),
        &ch08_roc::iris_predictions().unwrap(),
    )
    .unwrap();
    assert_current(
        "chapters/figures/ch08-roc.png",
        drawn,
        "CXR_UPDATE_FIGURES=1 cargo test --release --test integration book_figures::chapter_8",
    );
}

#[test]
fn chapter_9() {
    use ch09_tutorial::*;
    let dir = tempfile::tempdir().unwrap();
    cxr::data::write_folder(Path::new(ch01_loading::IMG_PATH), dir.path()).unwrap();
    let ds = zip_tfrecords(
        dir.path().join("images.tfrec"),
        dir.path().join("paths.tfrec"),
    )
    .map(autotune(), |(path, image)| process_path(image, path))
    .shuffle(SHUFFLE_BUFFER, SEED);
    let batch = prepare_for_training(ds, Cache::None)
        .iter()
        .next()
        .unwrap()
        .unwrap();
    assert_current(
        "chapters/figures/ch09-batch.png",
        show_batch(&batch).unwrap(),
        "cargo run -- lesson 9 --out chapters/figures",
    );
}

#[test]
fn chapter_6() {
    // Drawn from the history the lesson's run wrote (`cxr lesson 6`).
    let history = cxr::train::History::read_csv("chapters/figures/ch06-history.csv").unwrap();
    assert_eq!(history.epochs.len(), ch06_training::EPOCHS);
    assert_current(
        "chapters/figures/ch06-history.png",
        ch06_training::history_figure(&history).unwrap(),
        "cargo run --release -- lesson 6 --out chapters/figures",
    );
}

#[test]
fn chapter_9_history() {
    // The main job's history (`cargo run --release`, out/latest/history.csv).
    let history = cxr::train::History::read_csv("chapters/figures/ch09-history.csv").unwrap();
    assert_current(
        "chapters/figures/ch09-history.png",
        ch09_tutorial::history_figure(&history).unwrap(),
        "cp out/latest/history.csv chapters/figures/ch09-history.csv, then cargo test --release --doc ch09 and cp out/ch09-history.png chapters/figures/",
    );
}

#[test]
fn chapter_9_scaling() {
    assert_current(
        "chapters/figures/ch09-scaling.png",
        ch09_tutorial::scaling_figure(ch09_tutorial::SCALING_CSV).unwrap(),
        "CSV=chapters/figures/ch09-scaling.csv cargo bench --bench replicas, then cargo run -- lesson 9 --out chapters/figures",
    );
}
