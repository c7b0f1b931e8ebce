//! `fit`, `evaluate` and `predict` for binary classifiers that output one logit per
//! image (the tutorial's CNN), with Keras's semantics.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{ModuleT, Tensor};
use candle_nn::VarMap;
use polars::prelude::{Column, DataFrame};

use super::callbacks::{Callback, Control, Logs};
use super::losses::{binary_cross_entropy_with_logits, class_sample_weights};
use super::metrics::{MeanTracker, Metric};
use super::optim::Adam;
use crate::data::{Pipeline, Stream};
use crate::{Error, Result};

/// A batch: images `(N, 3, H, W)` and 0/1 labels `(N, 1)`.
pub type Batch = (Tensor, Tensor);

/// How to train.
#[derive(Clone)]
pub struct FitOptions {
    /// Passes over the data (or of `steps_per_epoch` steps each).
    pub epochs: usize,
    /// Steps per epoch; the data repeats when it runs out, and the next epoch carries on
    /// where this one stopped, as in Keras. `None`: one full pass per epoch.
    pub steps_per_epoch: Option<usize>,
    /// `[weight of NORMAL, weight of PNEUMONIA]`, Keras's `class_weight`.
    pub class_weight: Option<[f64; 2]>,
    /// Show a progress bar per epoch (on a terminal).
    pub progress: bool,
    /// Set from outside (e.g. by Ctrl-C) to stop after the current step.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            steps_per_epoch: None,
            class_weight: None,
            progress: true,
            stop: None,
        }
    }
}

/// What `fit` returns: the logs of every epoch, Keras's `history.history` as rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// One map of numbers per finished epoch.
    pub epochs: Vec<Logs>,
    /// Training was stopped from outside (Ctrl-C) before all epochs ran.
    pub interrupted: bool,
}

impl History {
    /// The values of one quantity over the epochs (`history.history["loss"]`).
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.epochs
            .iter()
            .map(|logs| logs.get(name).copied().unwrap_or(f64::NAN))
            .collect()
    }

    /// Every quantity logged, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.epochs.iter().flat_map(|l| l.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The history as a table: an `epoch` column and one column per quantity.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut columns = vec![Column::new(
            "epoch".into(),
            (1..=self.epochs.len() as u32).collect::<Vec<_>>(),
        )];
        for name in self.names() {
            columns.push(Column::new(name.as_str().into(), self.series(&name)));
        }
        Ok(DataFrame::new(self.epochs.len(), columns)?)
    }

    /// Writes the table as CSV, atomically.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut frame = self.to_frame()?;
        crate::data::write_csv(&mut frame, path)
    }
}

fn non_finite(epoch: usize, step: usize, loss: f32) -> Error {
    Error::Training(format!(
        "the loss became {loss} at epoch {}, step {}; the weights are diverging. \
         Lower the learning rate, check the inputs for NaN, and restart from the last checkpoint, which is intact",
        epoch + 1,
        step + 1
    ))
}

/// The probability of class 1 for each logit.
fn probabilities(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(candle_nn::ops::sigmoid(&logits.flatten_all()?)?.to_vec1::<f32>()?)
}

fn labels(y: &Tensor) -> Result<Vec<f32>> {
    Ok(y.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

/// A model made ready to train, as Keras's `model.compile(optimizer, loss, metrics)`:
/// the model, the variables holding its weights, the optimiser and the metrics to
/// report. The loss is binary cross-entropy from the model's logit.
pub struct Trainer<'a> {
    /// The model: one logit per image.
    pub model: &'a dyn ModuleT,
    /// Its weights (what checkpoints save).
    pub weights: &'a VarMap,
    /// The optimiser.
    pub optimizer: Adam,
    /// What is reported each epoch besides the loss.
    pub metrics: Vec<Box<dyn Metric>>,
}

impl Trainer<'_> {
    /// Trains `model` (whose weights are in `weights`) with `optimizer` on `train`, checking
    /// against `validation` after every epoch; returns the history. Training mode is on
    /// during steps (batch norm uses batch statistics and updates its running ones; dropout
    /// drops) and off during validation.
    ///
    /// A NaN or infinite loss stops training with an error naming the epoch and step; the
    /// callbacks' files (checkpoints, logs) hold the last good epoch.
    pub fn fit(
        &mut self,
        train: &Pipeline<Batch>,
        validation: Option<&Pipeline<Batch>>,
        options: &FitOptions,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let mut history = History::default();
        // With steps_per_epoch the data repeats and epochs continue one stream.
        let mut endless: Option<Stream<Batch>> = options
            .steps_per_epoch
            .map(|_| train.clone().repeat(None).iter());
        let mut seen_classes = [false, false];
        for epoch in 0..options.epochs {
            for m in self.metrics.iter_mut() {
                m.reset();
            }
            let mut loss_mean = MeanTracker::default();
            let bar = epoch_bar(options, epoch);
            let mut fresh: Option<Stream<Batch>> = None;
            let batches: Box<dyn Iterator<Item = Result<Batch>> + '_> = match endless.as_mut() {
                Some(stream) => {
                    Box::new(stream.by_ref().take(options.steps_per_epoch.unwrap_or(0)))
                }
                None => Box::new(fresh.insert(train.iter()).by_ref()),
            };
            let mut step = 0;
            let mut stopped = false;
            for batch in batches {
                let (x, y) = batch?;
                let truths = labels(&y)?;
                for &t in &truths {
                    seen_classes[usize::from(t > 0.5)] = true;
                }
                let logits = self.model.forward_t(&x, true)?;
                let sample_weight = match options.class_weight {
                    Some(cw) => Some(class_sample_weights(&y, cw)?),
                    None => None,
                };
                let loss = binary_cross_entropy_with_logits(&logits, &y, sample_weight.as_ref())?;
                let loss_value = loss.to_scalar::<f32>()?;
                if !loss_value.is_finite() {
                    bar.abandon();
                    return Err(non_finite(epoch, step, loss_value));
                }
                self.optimizer.step(&loss.backward()?)?;
                loss_mean.add(f64::from(loss_value), truths.len());
                let probs = probabilities(&logits)?;
                for m in self.metrics.iter_mut() {
                    m.update(&truths, &probs);
                }
                step += 1;
                bar.inc(1);
                bar.set_message(progress_line(loss_mean.result(), &self.metrics));
                if options
                    .stop
                    .as_ref()
                    .is_some_and(|s| s.load(Ordering::Relaxed))
                {
                    stopped = true;
                    break;
                }
            }
            bar.finish_and_clear();
            if step == 0 {
                return Err(Error::Training(
                    "the training data gave no batch; check the data folder and the batch size"
                        .into(),
                ));
            }
            if epoch == 0 && !(seen_classes[0] && seen_classes[1]) {
                return Err(Error::Training(format!(
                    "the first epoch saw only {} images; a classifier needs both NORMAL and PNEUMONIA examples, check the data folder",
                    if seen_classes[1] {
                        "PNEUMONIA"
                    } else {
                        "NORMAL"
                    }
                )));
            }
            let mut logs = Logs::new();
            logs.insert("loss".into(), loss_mean.result());
            for m in self.metrics.iter() {
                logs.insert(m.name().to_string(), m.result());
            }
            logs.insert("learning_rate".into(), self.optimizer.learning_rate());
            if stopped {
                history.interrupted = true;
                break;
            }
            if let Some(val) = validation {
                let val_logs = evaluate(self.model, val, &mut self.metrics)?;
                for (k, v) in val_logs {
                    logs.insert(format!("val_{k}"), v);
                }
            }
            if options.progress {
                eprintln!(
                    "Epoch {}/{}: {}",
                    epoch + 1,
                    options.epochs,
                    format_logs(&logs)
                );
            }
            history.epochs.push(logs.clone());
            let mut stop = false;
            for cb in callbacks.iter_mut() {
                if cb.on_epoch_end(epoch, &logs, self.weights)? == Control::Stop {
                    stop = true;
                }
            }
            if stop {
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(&history, self.weights)?;
        }
        Ok(history)
    }

    /// Loss and metrics on `data` in inference mode (Keras's `model.evaluate`).
    pub fn evaluate(&mut self, data: &Pipeline<Batch>) -> Result<Logs> {
        evaluate(self.model, data, &mut self.metrics)
    }

    /// Probabilities of PNEUMONIA (Keras's `model.predict`).
    pub fn predict(&self, images: &Tensor) -> Result<Vec<f32>> {
        predict(self.model, images)
    }
}

/// Loss and metrics on `data` in inference mode (Keras's `model.evaluate`); the loss is
/// not class-weighted, as in Keras.
pub fn evaluate(
    model: &dyn ModuleT,
    data: &Pipeline<Batch>,
    metrics: &mut [Box<dyn Metric>],
) -> Result<Logs> {
    for m in metrics.iter_mut() {
        m.reset();
    }
    let mut loss_mean = MeanTracker::default();
    for batch in data.iter() {
        let (x, y) = batch?;
        let logits = model.forward_t(&x, false)?;
        let loss = binary_cross_entropy_with_logits(&logits, &y, None)?.to_scalar::<f32>()?;
        let truths = labels(&y)?;
        loss_mean.add(f64::from(loss), truths.len());
        let probs = probabilities(&logits)?;
        for m in metrics.iter_mut() {
            m.update(&truths, &probs);
        }
    }
    let mut logs = Logs::new();
    logs.insert("loss".into(), loss_mean.result());
    for m in metrics.iter() {
        logs.insert(m.name().to_string(), m.result());
    }
    Ok(logs)
}

/// The probability of PNEUMONIA for every image of `images` `(N, 3, H, W)`, in inference
/// mode (Keras's `model.predict`).
pub fn predict(model: &dyn ModuleT, images: &Tensor) -> Result<Vec<f32>> {
    probabilities(&model.forward_t(images, false)?)
}

fn progress_line(loss: f64, metrics: &[Box<dyn Metric>]) -> String {
    let mut line = format!("loss {loss:.4}");
    for m in metrics {
        line.push_str(&format!(" - {} {:.4}", m.name(), m.result()));
    }
    line
}

/// `loss 0.1234 - auc 0.9 - ...` in Keras's order: loss first, then the rest by name.
pub fn format_logs(logs: &Logs) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(loss) = logs.get("loss") {
        parts.push(format!("loss {loss:.4}"));
    }
    for (k, v) in logs {
        if k != "loss" {
            parts.push(format!("{k} {v:.4}"));
        }
    }
    parts.join(" - ")
}

fn epoch_bar(options: &FitOptions, epoch: usize) -> indicatif::ProgressBar {
    if !options.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match options.steps_per_epoch {
        Some(steps) => indicatif::ProgressBar::new(steps as u64),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{} [{{bar:25}}] {{pos}}/{{len}} {{elapsed}} {{msg}}",
        epoch + 1,
        options.epochs
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}
