//! A training run of the tutorial's CNN, from data to predictions: the main job
//! (`cargo run --release`) and `cxr train`, built from the library's pieces as chapter 9
//! builds them by hand.
//!
//! A run's outputs stay together. Each run writes into its own folder,
//! `OUT/runs/run-NNN/`: the model (with its architecture, so the file alone can be
//! used), the history, the training state, the test predictions and the figure. Only
//! when a run has produced all of them does `OUT/latest` move to its folder (a link
//! replaced in one step), so a run stopped half way, by Ctrl-C or a crash, never mixes
//! its files with the previous run's, and `OUT/latest` always names a finished run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::baseline::Predictions;
use crate::data::{Parts, SynthOptions, batches, class_counts, ensure_generated, load_parts};
use crate::distribute::{ProcessGroup, Strategy};
use crate::nn::{BatchNormConfig, XrayCnnConfig, initial_bias, xray_cnn_on};
use crate::train::{
    Adam, CsvLogger, EarlyStopping, ExponentialDecay, Fit, Loss, ModelCheckpoint, TUTORIAL_METRICS,
    Trainer, format_logs,
};
use crate::{Error, Result};

/// Class 0 and class 1.
pub const CLASS_NAMES: [&str; 2] = ["NORMAL", "PNEUMONIA"];

/// The files a finished run holds, in its folder.
pub const MODEL_FILE: &str = "xray_model.safetensors";
/// The epochs' numbers.
pub const HISTORY_FILE: &str = "history.csv";
/// What `--resume` continues.
pub const STATE_FILE: &str = "train_state.safetensors";
/// The test part's predictions, what chapters 7 and 8 judge.
pub const PREDICTIONS_FILE: &str = "test_predictions.csv";
/// The tutorial's four-panel figure.
pub const HISTORY_FIGURE: &str = "history.png";
/// Its panels, as the tutorial plots them: each metric for training and validation.
pub const HISTORY_PANELS: [&str; 4] = ["precision", "recall", "binary_accuracy", "loss"];

/// How the tutorial trains, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Images are resized to `image_size` x `image_size` (the tutorial: 180).
    pub image_size: usize,
    /// Images per step on one device.
    pub batch_size: usize,
    /// At most this many epochs (the tutorial: 100, with early stopping).
    pub epochs: usize,
    /// Steps per epoch, the data repeating; `None`: one pass.
    pub steps_per_epoch: Option<usize>,
    /// Epochs without a better validation loss before stopping (the tutorial: 10).
    pub patience: usize,
    /// The learning-rate schedule (the tutorial: ExponentialDecay(0.015, 100000, 0.96,
    /// staircase)).
    pub learning_rate: ExponentialDecay,
    /// Seed of the weights, the shuffles and the generated data.
    pub seed: u64,
    /// How many images to generate when no data folder is given.
    pub generated_images: usize,
    /// Batch normalisation (Keras's: moving statistics keep 99% per step).
    pub batch_norm: BatchNormConfig,
    /// Progress bars and per-epoch lines.
    pub progress: bool,
    /// Continue the run saved in this training state (`OUT/runs/run-NNN/train_state.safetensors`).
    pub resume: Option<PathBuf>,
    /// Where to train (`--devices`): `cpu`, `cpu:N`, `cuda`, `cuda:0,1`, `metal` or
    /// `auto`; see [`Strategy::parse`].
    pub devices: String,
    /// With several processes training together (one per machine).
    pub group: Option<ProcessGroup>,
    /// Leave damaged images out (and list them) instead of stopping at the first.
    pub skip_damaged: bool,
}

impl TrainConfig {
    /// The tutorial's settings.
    pub fn tutorial() -> Self {
        TrainConfig {
            image_size: 180,
            batch_size: 25,
            epochs: 100,
            steps_per_epoch: None,
            patience: 10,
            learning_rate: ExponentialDecay::new(0.015, 100_000, 0.96).staircase(),
            seed: 9,
            generated_images: 2000,
            batch_norm: BatchNormConfig::keras(),
            progress: true,
            resume: None,
            devices: "cpu".into(),
            group: None,
            skip_damaged: false,
        }
    }

    /// A run of a few minutes on two cores: 2,000 generated images of 64 x 64, 8 epochs
    /// of about 65 steps. Two settings differ from the tutorial's, for these short runs:
    /// the learning rate starts at 0.003 (at the tutorial's 0.015 this model did not
    /// learn at all in 4 such epochs; at 0.001 it needed three times as many), and batch
    /// normalisation's moving statistics follow the batches faster (momentum 0.9
    /// instead of 0.99; with 0.99 they are still far from the data after the first
    /// epoch, and validation, which uses them, looks broken).
    pub fn quick() -> Self {
        TrainConfig {
            image_size: 64,
            epochs: 8,
            generated_images: 2000,
            learning_rate: ExponentialDecay::new(0.003, 100_000, 0.96).staircase(),
            batch_norm: BatchNormConfig {
                momentum: 0.9,
                ..BatchNormConfig::keras()
            },
            ..TrainConfig::tutorial()
        }
    }

    /// Refuses settings that cannot train, before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::BadArgument(what));
        let lr = self.learning_rate.initial;
        if self.image_size < 32 {
            return bad(format!(
                "--image-size {} is too small: the CNN halves the image five times and needs at least 32",
                self.image_size
            ));
        }
        if self.batch_size == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if self.epochs == 0 {
            return bad("--epochs 0 trains nothing; give at least 1".into());
        }
        if self.steps_per_epoch == Some(0) {
            return bad("--steps-per-epoch must be at least 1".into());
        }
        if !(lr.is_finite() && lr > 0.0 && lr < 10.0) {
            return bad(format!(
                "--learning-rate {lr} cannot train: give a positive number such as 0.003"
            ));
        }
        if self.generated_images < 40 {
            return bad(format!(
                "--generated-images {} is too few to split into training, validation and test parts of both classes; give at least 40",
                self.generated_images
            ));
        }
        Ok(())
    }

    /// What a resumed run must share with the run it continues.
    fn settings(&self, data: &str) -> serde_json::Value {
        serde_json::json!({
            "data": data,
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "learning_rate": self.learning_rate.initial,
            "seed": self.seed,
            "devices": self.devices,
            "batch_norm_momentum": self.batch_norm.momentum,
        })
    }
}

/// The tutorial's class weights, `(1 / count) * total / 2` per class: each class then
/// weighs as much in the loss as the other, however rare it is.
pub fn class_weights(normal: usize, pneumonia: usize) -> [f64; 2] {
    let total = (normal + pneumonia) as f64;
    [
        total / (2.0 * normal.max(1) as f64),
        total / (2.0 * pneumonia.max(1) as f64),
    ]
}

/// "This image is 87.65 percent PNEUMONIA", as the tutorial prints a prediction.
pub fn describe_prediction(p_pneumonia: f32) -> String {
    let p = f64::from(p_pneumonia);
    format!(
        "This image is {:.2} percent NORMAL and {:.2} percent PNEUMONIA",
        100.0 * (1.0 - p),
        100.0 * p
    )
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What to tell the user, line by line.
    pub lines: Vec<String>,
    /// The run's folder.
    pub folder: PathBuf,
    /// The run produced every output and `OUT/latest` names it; `false` when it was
    /// stopped before the end.
    pub completed: bool,
}

/// The data to train on: `data` in either layout, or a generated data set under
/// `out/generated-SIZE` (made once, reused), and what to call it in reports.
fn find_data(data: Option<&Path>, out: &Path, cfg: &TrainConfig) -> Result<(PathBuf, String)> {
    if let Some(dir) = data {
        return Ok((dir.to_path_buf(), dir.display().to_string()));
    }
    let dir = out.join(format!("generated-{}", cfg.image_size));
    let options = SynthOptions {
        n: cfg.generated_images,
        size: cfg.image_size as u32,
        seed: cfg.seed,
        ..Default::default()
    };
    let origin = ensure_generated(&dir, options)?;
    Ok((dir, origin))
}

/// The folder of a new run under `out/runs/`: `run-001`, `run-002`, ...
fn new_run_folder(out: &Path) -> Result<PathBuf> {
    let runs = out.join("runs");
    let last = std::fs::read_dir(&runs)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("run-")?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let folder = runs.join(format!("run-{:03}", last + 1));
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    Ok(folder)
}

/// The tutorial from data to prediction: data (given or generated), class weights and
/// initial bias from the counts, the CNN, ExponentialDecay and Adam, binary
/// cross-entropy, fit with validation, checkpoint and early stopping, the history
/// figure, evaluation on the test part, and one prediction.
pub fn train_tutorial(
    data: Option<&Path>,
    out: &Path,
    cfg: &TrainConfig,
    stop: Option<Arc<AtomicBool>>,
) -> Result<RunReport> {
    cfg.check()?;
    let (dir, origin) = find_data(data, out, cfg)?;
    let Parts {
        train,
        val,
        test,
        val_from_train,
        skipped,
    } = load_parts(&dir, cfg.image_size, cfg.seed, cfg.skip_damaged)?;
    let [normal, pneumonia] = class_counts(&train);
    let weights = class_weights(normal, pneumonia);
    let bias = initial_bias(normal, pneumonia);
    let mut lines = vec![format!("data: {origin}")];
    if !skipped.is_empty() {
        lines.push(format!(
            "left out {} damaged image(s) (--skip-damaged); the first: {}",
            skipped.len(),
            skipped[0]
        ));
    }
    lines.push(format!(
        "training images: {normal} NORMAL, {pneumonia} PNEUMONIA; validation {}{}; test {}",
        val.len(),
        if val_from_train {
            " (a tenth of the training patients)"
        } else {
            ""
        },
        test.len()
    ));
    lines.push(format!(
        "class weights: {:.2} for NORMAL, {:.2} for PNEUMONIA; initial output bias {bias:.4}",
        weights[0], weights[1]
    ));

    // The tutorial's strategy: every replica gets `batch_size` images per step.
    let strategy = Strategy::parse(&cfg.devices)?;
    let processes = cfg.group.as_ref().map_or(1, |g| g.world_size);
    let global_batch = strategy.global_batch_size(cfg.batch_size) * processes;
    lines.push(format!(
        "strategy: {strategy}; number of replicas: {}, global batch {global_batch}{}",
        strategy.num_replicas_in_sync() * processes,
        match &cfg.group {
            Some(g) => format!("; process {} of {}", g.rank, g.world_size),
            None => String::new(),
        }
    ));
    let mut replicas = strategy.replicate(|device, replica| {
        let model = XrayCnnConfig {
            image_size: (cfg.image_size, cfg.image_size),
            output_bias: Some(bias),
            batch_norm: cfg.batch_norm,
            seed: cfg.seed + replica as u64,
        };
        xray_cnn_on(model, device)
    })?;
    if let Some(group) = &cfg.group {
        replicas = replicas.in_group(group)?;
    }
    let mut trainer = Trainer::compile(
        replicas,
        Adam::new(cfg.learning_rate),
        Loss::BinaryCrossentropy,
        &TUTORIAL_METRICS,
    )?;

    let folder = match &cfg.resume {
        Some(state) => state.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => new_run_folder(out)?,
    };
    if cfg.resume.is_some() {
        for stale in crate::io::remove_stale_temps(&folder)? {
            lines.push(format!(
                "removed {}, half-written when the run stopped",
                stale.display()
            ));
        }
    }
    let train = batches(Arc::new(train), global_batch, Some(cfg.seed));
    let val = batches(Arc::new(val), global_batch, None);
    let test = batches(Arc::new(test), global_batch, None);
    let mut fit = Fit::epochs(cfg.epochs)
        .validation(&val)
        .class_weight(weights)
        .callback(ModelCheckpoint::best(folder.join(MODEL_FILE)))
        .callback(
            EarlyStopping::on("val_loss")
                .patience(cfg.patience)
                .restore_best_weights(),
        )
        .callback(CsvLogger::new(folder.join(HISTORY_FILE)))
        .save_state(folder.join(STATE_FILE))
        .settings(cfg.settings(&dir.display().to_string()));
    if let Some(steps) = cfg.steps_per_epoch {
        fit = fit.steps_per_epoch(steps);
    }
    if let Some(stop) = stop {
        fit = fit.stop_when(stop);
    }
    if let Some(state) = &cfg.resume {
        fit = fit.resume_from(state);
    }
    if !cfg.progress {
        fit = fit.quiet();
    }
    let started = std::time::Instant::now();
    let history = trainer.fit(&train, fit)?;
    let seconds = started.elapsed().as_secs_f64();
    if history.interrupted {
        lines.push(match history.epochs.len() {
            0 => format!(
                "stopped by Ctrl-C before the first epoch ended: no model was written; {} still names the last finished run",
                out.join("latest").display()
            ),
            n => format!(
                "stopped by Ctrl-C after {n} epoch(s): the best model so far is {}; continue with `cxr train --resume {}`",
                folder.join(MODEL_FILE).display(),
                folder.join(STATE_FILE).display()
            ),
        });
        return Ok(RunReport {
            lines,
            folder,
            completed: false,
        });
    }
    let figure = folder.join(HISTORY_FIGURE);
    crate::plot::history_figure(&history, &HISTORY_PANELS, 2)?.save(&figure)?;
    lines.push(format!(
        "trained {} epoch(s) in {seconds:.0} s; best val_loss at epoch {}",
        history.epochs.len(),
        history.best_epoch("val_loss").map_or(0, |e| e + 1)
    ));

    // Evaluate on the test part, and keep the predictions for chapters 7 and 8.
    lines.push(format!("test: {}", format_logs(&trainer.evaluate(&test)?)));
    let (y_true, p) = trainer.predict_all(&test)?;
    let p: Vec<f32> = p.flatten_all()?.to_vec1()?;
    let pneumonia_share =
        y_true.iter().filter(|&&y| y == 1).count() as f64 / y_true.len().max(1) as f64;
    lines.push(format!(
        "always answering the larger class would score accuracy {:.4} on this test part",
        pneumonia_share.max(1.0 - pneumonia_share)
    ));
    let y_score = ndarray::Array2::from_shape_fn((p.len(), 2), |(i, j)| {
        let q = f64::from(p[i]);
        if j == 1 { q } else { 1.0 - q }
    });
    let predictions = Predictions {
        y_true,
        y_score,
        classes: CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
        source: format!("the tutorial's CNN trained on {origin}"),
    };
    predictions.write_csv(folder.join(PREDICTIONS_FILE))?;
    if let Some(&first) = p.first() {
        lines.push(format!("first test image: {}", describe_prediction(first)));
    }
    crate::io::point_latest(out, &folder)?;
    lines.push(format!(
        "wrote {} ({MODEL_FILE}, {HISTORY_FILE}, {PREDICTIONS_FILE}, {HISTORY_FIGURE}, {STATE_FILE}); {} names it",
        folder.display(),
        out.join("latest").display()
    ));
    Ok(RunReport {
        lines,
        folder,
        completed: true,
    })
}

/// The course's trained CNN: the tutorial's network trained as the main job trains it
/// (`TrainConfig::quick`: 2,000 generated 64 x 64 images, 8 epochs), shared by the
/// chapters that judge or explain a trained model (7, 8, 10).
#[derive(Debug, Clone)]
pub struct CourseCnn {
    /// The run's folder: `latest/` holds the model, history and test predictions.
    pub folder: PathBuf,
    /// The generated data set it was trained and tested on (train/, val/, test/).
    pub data: PathBuf,
    /// How that data set was generated.
    pub options: SynthOptions,
}

impl CourseCnn {
    /// Trains the course's CNN under `out` the first time (about 90 s on two cores) and
    /// finds it after. Runs that ask at once (the book's examples, notebooks side by
    /// side) wait on a file lock for the one that trains. A finished main job
    /// (`cargo run --release`) trains this very model and leaves it here ([`adopt`]).
    ///
    /// [`adopt`]: CourseCnn::adopt
    pub fn load(out: impl AsRef<Path>) -> Result<CourseCnn> {
        let (cnn, cfg, _lock) = Self::locate(out.as_ref())?;
        if !cnn.is_trained() {
            let report = train_tutorial(None, &cnn.folder, &cfg, None)?;
            if !report.completed {
                return Err(Error::Training(format!(
                    "the course's CNN did not finish training; run again (its folder is {})",
                    cnn.folder.display()
                )));
            }
        }
        // An adopted model comes without its images; they are generated again, the same.
        ensure_generated(&cnn.data, cnn.options)?;
        Ok(cnn)
    }

    /// Keeps a finished run of the main job (`cxr` without a command, which trains
    /// [`TrainConfig::quick`] on generated images under `out`) as the course's CNN, when
    /// none is trained yet, so that the chapters do not train the same model again. The
    /// two are the same model: same settings, same seeds, same generated images (the
    /// main job's history and predictions equal the course CNN's to the last digit).
    /// Returns the course CNN's folder when the run was kept.
    pub fn adopt(out: impl AsRef<Path>, run: &RunReport) -> Result<Option<PathBuf>> {
        let (cnn, _, _lock) = Self::locate(out.as_ref())?;
        if !run.completed || cnn.is_trained() {
            return Ok(None);
        }
        let folder = new_run_folder(&cnn.folder)?;
        for file in [MODEL_FILE, PREDICTIONS_FILE, HISTORY_FILE] {
            let from = run.folder.join(file);
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
            crate::io::write_bytes_atomic(&folder.join(file), &bytes)?;
        }
        crate::io::point_latest(&cnn.folder, &folder)?;
        Ok(Some(cnn.folder))
    }

    /// Where the course's CNN lives under `out`, its settings, and the lock that is held
    /// while it is trained or adopted.
    fn locate(out: &Path) -> Result<(CourseCnn, TrainConfig, std::fs::File)> {
        let cfg = TrainConfig {
            progress: false,
            ..TrainConfig::quick()
        };
        let folder = out.join(format!(
            "course-cnn/model-{}x{}-{}epochs-seed{}",
            cfg.generated_images, cfg.image_size, cfg.epochs, cfg.seed
        ));
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let lock_path = folder.join(".training.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        let cnn = CourseCnn {
            data: folder.join(format!("generated-{}", cfg.image_size)),
            options: SynthOptions {
                n: cfg.generated_images,
                size: cfg.image_size as u32,
                seed: cfg.seed,
                ..Default::default()
            },
            folder,
        };
        Ok((cnn, cfg, lock))
    }

    fn is_trained(&self) -> bool {
        self.model_path().is_file() && self.predictions_path().is_file()
    }

    /// The trained model's file.
    pub fn model_path(&self) -> PathBuf {
        self.folder.join("latest").join(MODEL_FILE)
    }

    /// Its predictions on the test part (`label,p_NORMAL,p_PNEUMONIA`).
    pub fn predictions_path(&self) -> PathBuf {
        self.folder.join("latest").join(PREDICTIONS_FILE)
    }

    /// Those predictions, their source line naming the generated images.
    pub fn predictions(&self) -> Result<Predictions> {
        Predictions::read_csv(self.predictions_path())
    }

    /// The histogram baseline (chapter 7's logistic regression) trained on the same
    /// train part and judged on the same test images, for a fair comparison.
    pub fn baseline_predictions(&self) -> Result<Predictions> {
        crate::baseline::histogram_baseline(&self.options)
    }
}

/// What `cxr lesson 7` and `lesson 8` judge: the predictions in `predictions_csv` against
/// the lesson's baseline, or, without a file, the course's CNN (trained under `out` the
/// first time) against the baseline trained on its own images. Returns the model's name,
/// its predictions and the baseline's.
pub fn judged(
    predictions_csv: Option<&Path>,
    out: &Path,
) -> Result<(&'static str, Predictions, Predictions)> {
    match predictions_csv {
        Some(path) => Ok((
            "your model",
            Predictions::read_csv(path)?,
            crate::baseline::lesson_predictions()?,
        )),
        None => {
            let cnn = CourseCnn::load(out)?;
            Ok((
                "tutorial CNN",
                cnn.predictions()?,
                cnn.baseline_predictions()?,
            ))
        }
    }
}
