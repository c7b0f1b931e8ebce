//! The training loop: it learns, repeats data for `steps_per_epoch`, stops early and
//! restores the best weights at the right epoch, checkpoints atomically, refuses a NaN
//! loss and single-class data with errors that say what to do.

use candle_core::{DType, Device, Tensor};
use cxr::data::Pipeline;
use cxr::nn::Sequential;
use cxr::nn::layers::{Dense, Flatten, Rescaling};
use cxr::train::{
    Adam, Batch, Callback, Control, CsvLogger, EarlyStopping, Fit, Logs, Loss, ModelCheckpoint,
    TUTORIAL_METRICS, Trainer,
};

/// Logistic regression on flattened 3 x 4 x 4 images: enough to learn "bright or
/// dark".
fn tiny_with(outputs: usize) -> Sequential {
    let mut model = Sequential::new("tiny", [3, 4, 4]);
    model.add("rescaling", Rescaling::new(1.0 / 255.0)).unwrap();
    model.add("flatten", Flatten).unwrap();
    model.add("dense", Dense::new(outputs)).unwrap();
    model
}

fn tiny() -> Sequential {
    tiny_with(1)
}

/// `n` images of 3 x 4 x 4: bright ones are PNEUMONIA (1), dark ones NORMAL (0), in
/// batches of `batch`.
fn data(n: usize, batch: usize, seed: u64) -> Pipeline<Batch> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut batches = Vec::new();
    for start in (0..n).step_by(batch) {
        let size = batch.min(n - start);
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..size {
            let bright = rng.random_bool(0.5);
            let base = if bright { 150.0 } else { 90.0 };
            pixels.extend((0..48).map(|_| base + rng.random_range(-40.0f32..40.0)));
            labels.push(f32::from(u8::from(bright)));
        }
        let x = Tensor::from_vec(pixels, (size, 3, 4, 4), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(labels, (size, 1), &Device::Cpu).unwrap();
        batches.push((x, y));
    }
    Pipeline::from_vec(batches)
}

fn trainer(model: Sequential, lr: f64) -> Trainer {
    Trainer::compile(
        model,
        Adam::new(lr),
        Loss::BinaryCrossentropy,
        &TUTORIAL_METRICS,
    )
    .unwrap()
}

fn quiet<'a>(epochs: usize) -> Fit<'a> {
    Fit::epochs(epochs).quiet()
}

#[test]
fn a_model_learns_and_the_history_says_so() {
    let mut trainer = trainer(tiny(), 0.05);
    let (train, val) = (data(400, 25, 1), data(100, 25, 2));
    let before = trainer.evaluate(&val).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logger = CsvLogger::new(dir.path().join("history.csv"));
    let history = trainer
        .fit(&train, quiet(8).validation(&val).callback(logger))
        .unwrap();
    assert_eq!(history.epochs.len(), 8);
    let loss = history.series("loss");
    assert!(loss[7] < loss[0] * 0.8, "{loss:?}");
    let val_accuracy = history.series("val_binary_accuracy")[7];
    assert!(val_accuracy > 0.9, "{val_accuracy} (before: {before:?})");
    assert!(history.names().contains(&"val_auc".to_string()));
    let frame = history.to_frame().unwrap();
    assert_eq!(frame.height(), 8);
    let csv = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert!(csv.starts_with("epoch,"), "{csv}");
    assert_eq!(csv.lines().count(), 9);
}

#[test]
fn steps_per_epoch_repeats_the_data_and_carries_on() {
    let mut trainer = trainer(tiny(), 0.01);
    // 3 batches of data, 4 epochs of 5 steps: 20 steps, the data seen almost 7 times.
    trainer
        .fit(&data(75, 25, 3), quiet(4).steps_per_epoch(5))
        .unwrap();
    assert_eq!(trainer.optimizer().iterations(), 20);
}

/// Sets the weight to the epoch number, so that the restored weights tell which epoch
/// they come from.
fn stamp(model: &Sequential, epoch: usize) {
    for var in model.weights().data().lock().unwrap().values() {
        let value = Tensor::full(epoch as f32, var.shape(), &Device::Cpu).unwrap();
        var.set(&value).unwrap();
    }
}

fn stamped(model: &Sequential) -> f32 {
    let vars = model.weights().data().lock().unwrap();
    let var = vars.values().next().unwrap();
    var.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0]
}

#[test]
fn early_stopping_stops_and_restores_at_the_right_epoch() {
    let weights = tiny();
    let mut early = EarlyStopping::on("val_loss")
        .patience(3)
        .restore_best_weights();
    let val_losses = [1.0, 0.8, 0.9, 0.85, 0.81, 0.7, 0.95];
    let mut stopped_at = None;
    for (epoch, &v) in val_losses.iter().enumerate() {
        stamp(&weights, epoch);
        let logs = Logs::from([("val_loss".to_string(), v)]);
        if early.on_epoch_end(epoch, &logs, &weights).unwrap() == Control::Stop {
            stopped_at = Some(epoch);
            break;
        }
    }
    // Best at epoch 1 (0.8); epochs 2, 3 and 4 do not beat it: stop after epoch 4.
    assert_eq!(stopped_at, Some(4));
    assert_eq!(early.best_epoch(), Some(1));
    early.on_train_end(&Default::default(), &weights).unwrap();
    assert_eq!(stamped(&weights), 1.0);

    // Larger is better for anything not named like a loss.
    let mut early = EarlyStopping::on("val_auc").patience(1);
    let logs = |v: f64| Logs::from([("val_auc".to_string(), v)]);
    assert_eq!(
        early.on_epoch_end(0, &logs(0.7), &weights).unwrap(),
        Control::Continue
    );
    assert_eq!(
        early.on_epoch_end(1, &logs(0.8), &weights).unwrap(),
        Control::Continue
    );
    assert_eq!(
        early.on_epoch_end(2, &logs(0.75), &weights).unwrap(),
        Control::Stop
    );
}

#[test]
fn checkpoints_keep_the_best_and_an_interrupted_write_leaves_the_last_intact() {
    let weights = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xray_model.safetensors");
    let mut checkpoint = ModelCheckpoint::best(&path);
    for (epoch, v) in [0.9, 0.7, 0.8].into_iter().enumerate() {
        stamp(&weights, epoch);
        let logs = Logs::from([("val_loss".to_string(), v)]);
        checkpoint.on_epoch_end(epoch, &logs, &weights).unwrap();
    }
    assert_eq!(checkpoint.saved_epoch, Some(1));
    let saved = std::fs::read(&path).unwrap();
    let loaded = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let first = loaded.values().next().unwrap().flatten_all().unwrap();
    assert_eq!(first.to_vec1::<f32>().unwrap()[0], 1.0);

    // A save that dies half way (the writer fails after some bytes) changes nothing.
    let result = cxr::io::replace_atomic(&path, |tmp| {
        std::fs::write(tmp, &saved[..saved.len() / 2]).unwrap();
        Err(cxr::Error::BadArgument("the machine lost power".into()))
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), saved);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
}

#[test]
fn a_nan_loss_stops_training_with_the_step_and_keeps_the_checkpoint() {
    let mut trainer = trainer(tiny(), 0.01);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let good = data(50, 25, 4);
    trainer
        .fit(
            &good,
            quiet(1).callback(ModelCheckpoint::every_epoch(&path)),
        )
        .unwrap();
    let saved = std::fs::read(&path).unwrap();

    let mut batches = good.collect_vec().unwrap();
    let (x, y) = batches.pop().unwrap();
    let poisoned = x
        .broadcast_mul(&Tensor::new(f32::NAN, &Device::Cpu).unwrap())
        .unwrap();
    batches.push((poisoned, y));
    let bad = Pipeline::from_vec(batches);
    let error = trainer
        .fit(&bad, quiet(1).callback(ModelCheckpoint::every_epoch(&path)))
        .unwrap_err()
        .to_string();
    assert!(error.contains("NaN at epoch 1, step 2"), "{error}");
    assert!(error.contains("Lower the learning rate"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), saved);
}

#[test]
fn single_class_data_is_refused() {
    let mut trainer = trainer(tiny(), 0.01);
    let x = Tensor::zeros((10, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros((10, 1), DType::F32, &Device::Cpu).unwrap();
    let only_normal = Pipeline::from_vec(vec![(x, y)]);
    let error = trainer.fit(&only_normal, quiet(2)).unwrap_err().to_string();
    assert!(
        error.contains("only NORMAL") && error.contains("at least two classes"),
        "{error}"
    );
    let empty: Pipeline<Batch> = Pipeline::from_vec(Vec::new());
    let error = trainer.fit(&empty, quiet(1)).unwrap_err().to_string();
    assert!(error.contains("no batch"), "{error}");
    let error = trainer.fit(&empty, quiet(0)).unwrap_err().to_string();
    assert!(error.contains("at least 1"), "{error}");
}

#[test]
fn the_history_figure_has_the_tutorials_four_panels() {
    let mut history = cxr::train::History::default();
    for epoch in 0..3 {
        let mut logs = Logs::new();
        for name in ["precision", "recall", "binary_accuracy", "loss"] {
            logs.insert(name.to_string(), 0.5 + epoch as f64 / 10.0);
            logs.insert(format!("val_{name}"), 0.4 + epoch as f64 / 10.0);
        }
        history.epochs.push(logs);
    }
    let figure = cxr::ch09_tutorial::history_figure(&history).unwrap();
    let (w, h) = figure.size();
    assert!(w > 1000 && h > 800, "{w} x {h}");
}

#[test]
fn weighted_categorical_cross_entropy_equals_a_hand_computation() {
    let logits = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 0.3]], &Device::Cpu).unwrap();
    let classes = Tensor::new(&[0f32, 2.0], &Device::Cpu).unwrap();
    let weights = [0.5f64, 1.0, 3.0];
    let loss = cxr::train::Loss::CategoricalCrossentropy
        .compute(&logits, &classes, Some(&weights))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let nll = |row: [f64; 3], class: usize| {
        let total: f64 = row.iter().map(|v| v.exp()).sum();
        -(row[class].exp() / total).ln()
    };
    // Keras: the weighted sum over the samples, divided by the number of samples.
    let expected = (0.5 * nll([2.0, 0.5, -1.0], 0) + 3.0 * nll([0.1, 0.2, 0.3], 2)) / 2.0;
    assert!(
        (f64::from(loss) - expected).abs() < 1e-6,
        "{loss} against {expected}"
    );
    // One-hot rows (Keras's class_mode="categorical") give the same loss.
    let one_hot = Tensor::new(&[[1f32, 0.0, 0.0], [0.0, 0.0, 1.0]], &Device::Cpu).unwrap();
    let again = cxr::train::Loss::CategoricalCrossentropy
        .compute(&logits, &one_hot, Some(&weights))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(loss, again);
}

#[test]
fn a_softmax_model_learns_three_classes_with_categorical_loss() {
    let model = tiny_with(3);
    // Dark, middle and bright images are classes 0, 1 and 2, labels one-hot.
    let make = |seed: u64| {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut batches = Vec::new();
        for _ in 0..8 {
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for _ in 0..24 {
                let class = rng.random_range(0..3usize);
                let base = [60.0, 130.0, 200.0][class];
                pixels.extend((0..48).map(|_| base + rng.random_range(-30.0f32..30.0)));
                let mut row = [0f32; 3];
                row[class] = 1.0;
                labels.extend(row);
            }
            batches.push((
                Tensor::from_vec(pixels, (24, 3, 4, 4), &Device::Cpu).unwrap(),
                Tensor::from_vec(labels, (24, 3), &Device::Cpu).unwrap(),
            ));
        }
        Pipeline::from_vec(batches)
    };
    let mut trainer = Trainer::compile(
        model,
        Adam::new(0.1),
        Loss::CategoricalCrossentropy,
        &["accuracy"],
    )
    .unwrap();
    let val = make(2);
    let history = trainer.fit(&make(1), quiet(15).validation(&val)).unwrap();
    let accuracy = history.series("val_accuracy");
    assert!(accuracy[14] > 0.9, "{accuracy:?}");
    let p = trainer
        .predict(&Tensor::full(200f32, (1, 3, 4, 4), &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(p.dims(), [1, 3]);
    let p: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        (p.iter().sum::<f32>() - 1.0).abs() < 1e-5 && p[2] > 0.5,
        "{p:?}"
    );
}
