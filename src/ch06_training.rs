#![doc = include_str!("../chapters/ch06-training.md")]

use std::path::{Path, PathBuf};

use crate::Result;
use crate::data::{
    Batch, ClassMode, DirectoryIterator, FlowOptions, ImageDataGenerator, Pipeline, SynthOptions,
};
use crate::nn::{Sequential, VggConfig, vgg};
use crate::plot::Figure;
use crate::train::{Adam, Fit, History, Loss, Trainer};

/// Instruction 1: the model's input, `(height, width, channels)` as Keras writes
/// `input_shape`.
pub const INPUT_SHAPE: (usize, usize, usize) = (224, 224, 3);

/// Instruction 2: the size every image is resized to, `(height, width)`.
pub const TARGET_SIZE: (usize, usize) = (224, 224);

/// Instruction 3: steps (batches) per epoch.
pub const STEPS_PER_EPOCH: usize = 20;

/// Instruction 3: epochs.
pub const EPOCHS: usize = 4;

/// Images per batch.
pub const BATCH_SIZE: usize = 8;

/// Classes: NORMAL and PNEUMONIA, one softmax output each.
pub const NUM_CLASSES: usize = 2;

/// Every layer of the lesson's VGG19 is this many times narrower: the same 19 layers,
/// with 4 to 32 filters instead of 64 to 512 and 256 dense units instead of 4,096, so
/// that 80 steps at 224 x 224 run in minutes on a CPU.
pub const WIDTH_DIVISOR: usize = 16;

/// Keras's default learning rate for `optimizer="adam"`.
pub const LEARNING_RATE: f64 = 0.001;

/// The seed of the initial weights and of the generators' shuffles.
pub const SEED: u64 = 42;

/// The lesson's `vgg.VGG19(input_shape, num_classes)`: VGG19 with its three dense layers
/// on top and `num_classes` outputs (logits; the softmax is in the loss and in
/// `predict`), its weights drawn from [`SEED`] (Keras's
/// `keras.utils.set_random_seed(42)`).
pub fn vgg19(input_shape: (usize, usize, usize), num_classes: usize) -> Result<Sequential> {
    let (height, width, channels) = input_shape;
    vgg(VggConfig {
        input_size: (height, width),
        channels,
        classes: num_classes,
        width_divisor: WIDTH_DIVISOR,
        seed: SEED,
        ..VggConfig::vgg19()
    })
}

/// `model.compile(optimizer="adam", loss="categorical_crossentropy",
/// metrics=["accuracy"])`.
pub fn compile(model: Sequential) -> Result<Trainer> {
    Trainer::compile(
        model,
        Adam::new(LEARNING_RATE),
        Loss::CategoricalCrossentropy,
        &["accuracy"],
    )
}

/// The lesson's three generators over `data_dir/{train,val,test}`: training images
/// rescaled to 0..1 and flipped at random, validation and test images only rescaled
/// and never shuffled; labels one-hot (`class_mode="categorical"`).
pub fn load_data(
    data_dir: &Path,
    target_size: (usize, usize),
    batch_size: usize,
) -> Result<[DirectoryIterator; 3]> {
    let options = FlowOptions {
        target_size,
        batch_size,
        class_mode: ClassMode::Categorical,
        seed: SEED,
        ..Default::default()
    };
    let train_datagen = ImageDataGenerator::new()
        .rescale(1.0 / 255.0)
        .horizontal_flip(true);
    let test_datagen = ImageDataGenerator::new().rescale(1.0 / 255.0);
    let fixed = FlowOptions {
        shuffle: false,
        ..options
    };
    Ok([
        train_datagen.flow_from_directory(data_dir.join("train"), options)?,
        test_datagen.flow_from_directory(data_dir.join("val"), fixed)?,
        test_datagen.flow_from_directory(data_dir.join("test"), fixed)?,
    ])
}

/// Instruction 3: `model.fit(training_set, steps_per_epoch=20, epochs=4,
/// validation_data=val_set)`.
pub fn fit_model(
    trainer: &mut Trainer,
    training_set: &Pipeline<Batch>,
    val_set: &Pipeline<Batch>,
) -> Result<History> {
    let fit = Fit::epochs(EPOCHS)
        .steps_per_epoch(STEPS_PER_EPOCH)
        .validation(val_set);
    trainer.fit(training_set, fit)
}

/// Writes (once) `n` generated images of `size` x `size` under `dir` in
/// `train/val/test` class folders, and says what they are.
pub fn generated_data(dir: &Path, n: usize, size: usize) -> Result<String> {
    let options = SynthOptions {
        n,
        size: size as u32,
        ..Default::default()
    };
    crate::data::ensure_generated(dir, options)
}

/// Accuracy and loss, training against validation, epoch by epoch.
pub fn history_figure(history: &History) -> Result<Figure> {
    crate::plot::history_figure(history, &["accuracy", "loss"], 2)
}

/// The lesson for `cxr lesson 6`: VGG19 at 224 x 224, 20 steps x 4 epochs with
/// validation, then the test part. On `data` (class folders `train`, `val`, `test`) or
/// on 640 generated images.
pub fn run(data: Option<&Path>, out: &Path) -> Result<Vec<String>> {
    let (dir, origin): (PathBuf, String) = match data {
        Some(dir) => (dir.to_path_buf(), dir.display().to_string()),
        None => {
            let dir = out.join("generated-224");
            let origin = generated_data(&dir, 640, TARGET_SIZE.0)?;
            (dir, origin)
        }
    };
    let [training_set, val_set, test_set] = load_data(&dir, TARGET_SIZE, BATCH_SIZE)?;
    let model = vgg19(INPUT_SHAPE, NUM_CLASSES)?;
    let parameters = model.summary().total_params();
    let mut trainer = compile(model)?;
    let mut report = vec![
        format!("data: {origin}"),
        format!(
            "{} training, {} validation, {} test images; classes {:?}",
            training_set.samples(),
            val_set.samples(),
            test_set.samples(),
            training_set.class_indices()
        ),
        format!("model: VGG19 (each layer 1/{WIDTH_DIVISOR} as wide), {parameters} parameters"),
    ];
    let started = std::time::Instant::now();
    let history = fit_model(&mut trainer, &training_set.pipeline(), &val_set.pipeline())?;
    report.push(format!(
        "trained {} x {STEPS_PER_EPOCH} steps of {BATCH_SIZE} images in {:.0} s",
        history.epochs.len(),
        started.elapsed().as_secs_f64()
    ));
    for (epoch, logs) in history.epochs.iter().enumerate() {
        report.push(format!(
            "epoch {}: {}",
            epoch + 1,
            crate::train::format_logs(logs)
        ));
    }
    let test = trainer.evaluate(&test_set.pipeline())?;
    report.push(format!("test: {}", crate::train::format_logs(&test)));
    let counts = class_counts(&test_set);
    report.push(format!(
        "always answering the larger class would score accuracy {:.4} on this test part",
        *counts.iter().max().unwrap_or(&0) as f64 / test_set.samples().max(1) as f64
    ));
    let figure = out.join("ch06-history.png");
    history_figure(&history)?.save(&figure)?;
    history.save_csv(out.join("ch06-history.csv"))?;
    report.push(format!(
        "figure: {} (numbers: ch06-history.csv)",
        figure.display()
    ));
    Ok(report)
}

/// Images per class in a generator's folder.
pub fn class_counts(set: &DirectoryIterator) -> Vec<usize> {
    let mut counts = vec![0; set.class_indices().len()];
    for (_, class) in set.files() {
        counts[*class] += 1;
    }
    counts
}
