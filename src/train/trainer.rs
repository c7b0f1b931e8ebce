//! Keras's `model.compile(...)`, `model.fit(...)`, `model.evaluate(...)` and
//! `model.predict(...)` for classifiers that output logits: one per image with binary
//! cross-entropy (the tutorial's CNN), one per class with categorical cross-entropy
//! (chapter 6's VGG19). The trainer owns the model, so a notebook can compile in one
//! cell, fit in the next and predict in a third.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, ModuleT, Tensor};

use super::callbacks::{Callback, Control};
use super::history::{History, Logs, format_logs};
use super::losses::{Loss, labels};
use super::metrics::{MeanTracker, Metric, metric_named};
use super::optim::Optimizer;
use super::state::TrainState;
use super::step::{GradientStep, Replicas, ShardResult};
use crate::data::{Batch, Pipeline, Stream};
use crate::nn::Sequential;
use crate::{Error, Result};

/// How to fit: Keras's `fit` arguments, named as Keras names them.
///
/// ```text
/// model.fit(train_ds, epochs=100, validation_data=val_ds,
///           class_weight={0: 1.94, 1: 0.67},
///           callbacks=[checkpoint_cb, early_stopping_cb])
/// ```
/// is
/// ```text
/// trainer.fit(&train_ds, Fit::epochs(100).validation(&val_ds)
///     .class_weight([1.94, 0.67])
///     .callback(ModelCheckpoint::best("xray_model.safetensors"))
///     .callback(EarlyStopping::on("val_loss").patience(10).restore_best_weights()))?
/// ```
pub struct Fit<'a> {
    epochs: usize,
    steps_per_epoch: Option<usize>,
    validation: Option<&'a Pipeline<Batch>>,
    class_weight: Option<Vec<f64>>,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    verbose: bool,
    stop: Option<Arc<AtomicBool>>,
    save_state: Option<PathBuf>,
    resume_from: Option<PathBuf>,
    settings: serde_json::Value,
}

impl<'a> Fit<'a> {
    /// Passes over the data (or of `steps_per_epoch` steps each).
    pub fn epochs(epochs: usize) -> Self {
        Fit {
            epochs,
            steps_per_epoch: None,
            validation: None,
            class_weight: None,
            callbacks: Vec::new(),
            verbose: true,
            stop: None,
            save_state: None,
            resume_from: None,
            settings: serde_json::Value::Null,
        }
    }

    /// Steps per epoch; the data repeats when it runs out, and the next epoch carries
    /// on where this one stopped, as in Keras.
    pub fn steps_per_epoch(self, steps: usize) -> Self {
        Fit {
            steps_per_epoch: Some(steps),
            ..self
        }
    }

    /// `validation_data=`: scored after every epoch (`val_loss`, `val_auc`, ...).
    pub fn validation(self, data: &'a Pipeline<Batch>) -> Self {
        Fit {
            validation: Some(data),
            ..self
        }
    }

    /// `class_weight=`: one weight per class (`[NORMAL, PNEUMONIA]`), each sample's
    /// loss multiplied by its class's.
    pub fn class_weight(self, weights: impl Into<Vec<f64>>) -> Self {
        Fit {
            class_weight: Some(weights.into()),
            ..self
        }
    }

    /// Adds a callback (`ModelCheckpoint`, `EarlyStopping`, `CsvLogger`, or your own).
    pub fn callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// `verbose=0`: no progress bar and no line per epoch.
    pub fn quiet(self) -> Self {
        Fit {
            verbose: false,
            ..self
        }
    }

    /// Stops after the current step when `flag` is set (by Ctrl-C, say).
    pub fn stop_when(self, flag: Arc<AtomicBool>) -> Self {
        Fit {
            stop: Some(flag),
            ..self
        }
    }

    /// Writes the whole training state (weights, optimiser, epoch, history, callbacks)
    /// to `path` after every epoch, atomically: what [`Fit::resume_from`] continues.
    pub fn save_state(self, path: impl Into<PathBuf>) -> Self {
        Fit {
            save_state: Some(path.into()),
            ..self
        }
    }

    /// Continues the run saved in `path`: epochs already done are not repeated, the data
    /// is read from where that run was, and with the same seeds the result is the
    /// uninterrupted run's.
    pub fn resume_from(self, path: impl Into<PathBuf>) -> Self {
        Fit {
            resume_from: Some(path.into()),
            ..self
        }
    }

    /// What this run is (data, image size, learning rate, ...), saved with its state; a
    /// resumed run with other settings is refused, naming each difference.
    pub fn settings(self, settings: serde_json::Value) -> Self {
        Fit { settings, ..self }
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::BadArgument(what));
        if self.epochs == 0 {
            return bad(
                "epochs must be at least 1: training 0 epochs leaves the model as it was".into(),
            );
        }
        if self.steps_per_epoch == Some(0) {
            return bad("steps_per_epoch must be at least 1".into());
        }
        if let Some(w) = &self.class_weight
            && (w.is_empty() || w.iter().any(|&v| !v.is_finite() || v <= 0.0))
        {
            return bad(format!(
                "class weights must be positive numbers, one per class, got {w:?}"
            ));
        }
        Ok(())
    }
}

/// A model made ready to train, as Keras's `model.compile(optimizer, loss, metrics)`:
/// it owns the model (or its replicas), the optimiser, the loss and the metrics.
pub struct Trainer {
    models: Vec<Sequential>,
    step: Box<dyn GradientStep>,
    optimizers: Vec<Box<dyn Optimizer>>,
    loss: Loss,
    metrics: Vec<Box<dyn Metric>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.models[0].name())
            .field("replicas", &self.models.len())
            .field("optimizer", &self.optimizers[0].name())
            .field("loss", &self.loss)
            .field(
                "metrics",
                &self.metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Trainer {
    /// `model.compile(optimizer=..., loss=..., metrics=[...])`: metrics by Keras's
    /// names (`"accuracy"`, `"binary_accuracy"`, `"precision"`, `"recall"`, `"auc"`).
    /// The optimiser trains the model's trainable variables: freeze layers before
    /// compiling, as in Keras.
    pub fn compile(
        model: impl Into<Replicas>,
        optimizer: impl Optimizer + 'static,
        loss: Loss,
        metrics: &[&str],
    ) -> Result<Self> {
        let Replicas { models, step } = model.into();
        let mut optimizers: Vec<Box<dyn Optimizer>> = Vec::with_capacity(models.len());
        for model in &models {
            let mut opt = optimizer.fresh();
            opt.bind(model.trainable_variables()?)?;
            optimizers.push(opt);
        }
        let metrics = metrics
            .iter()
            .map(|name| metric_named(name, loss))
            .collect::<Result<_>>()?;
        Ok(Trainer {
            models,
            step,
            optimizers,
            loss,
            metrics,
        })
    }

    /// Reports this metric too (one of your own, say).
    pub fn with_metric(mut self, metric: impl Metric + 'static) -> Self {
        self.metrics.push(Box::new(metric));
        self
    }

    /// The model (the first replica): to evaluate, save, predict, explain.
    pub fn model(&self) -> &Sequential {
        &self.models[0]
    }

    /// Every replica, the model first.
    pub fn replicas(&self) -> &[Sequential] {
        &self.models
    }

    /// The model, trained, without its trainer.
    pub fn into_model(mut self) -> Sequential {
        self.models.swap_remove(0)
    }

    /// The optimiser (every replica's is alike).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizers[0].as_ref()
    }

    /// The loss it was compiled with.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// How many replicas train in step (Keras's `strategy.num_replicas_in_sync`).
    pub fn num_replicas(&self) -> usize {
        self.models.len()
    }

    /// Trains on `train` as `fit` says; returns the history. Training mode is on during
    /// steps (batch norm uses batch statistics and updates its moving ones; dropout
    /// drops) and off during validation.
    ///
    /// A NaN or infinite loss stops training with an error naming the epoch and step;
    /// the callbacks' files (checkpoints, logs) hold the last good epoch.
    pub fn fit(&mut self, train: &Pipeline<Batch>, mut fit: Fit<'_>) -> Result<History> {
        fit.check()?;
        let mut history = History::default();
        let mut first_epoch = 0;
        if let Some(path) = &fit.resume_from {
            let state = TrainState::load(path)?;
            state.check_settings(&fit.settings, path)?;
            first_epoch =
                state.restore(&self.models, &mut self.optimizers, &mut fit.callbacks, path)?;
            history.epochs = state.history;
        }
        // With steps_per_epoch the data repeats and epochs continue one stream; a resumed
        // run reads past what the first run read, so it sees the same batches.
        let mut endless: Option<Stream<Batch>> = match fit.steps_per_epoch {
            Some(steps) => {
                let mut stream = train.clone().repeat(None).iter();
                for batch in stream.by_ref().take(first_epoch * steps) {
                    batch?;
                }
                Some(stream)
            }
            None => {
                (0..first_epoch).for_each(|_| drop(train.iter()));
                None
            }
        };
        if let Some(val) = fit.validation {
            (0..first_epoch).for_each(|_| drop(val.iter()));
        }
        for epoch in first_epoch..fit.epochs {
            let batches: Box<dyn Iterator<Item = Result<Batch>> + '_> =
                match (&mut endless, fit.steps_per_epoch) {
                    (Some(stream), Some(steps)) => Box::new(stream.by_ref().take(steps)),
                    _ => train.iter(),
                };
            let (mut logs, stopped) =
                self.train_epoch(batches, epoch, &fit, epoch == first_epoch)?;
            if stopped {
                history.interrupted = true;
                break;
            }
            if let Some(val) = fit.validation {
                for (k, v) in self.evaluate(val)? {
                    logs.insert(format!("val_{k}"), v);
                }
            }
            if fit.verbose {
                println!("Epoch {}/{}: {}", epoch + 1, fit.epochs, format_logs(&logs));
            }
            history.epochs.push(logs.clone());
            if self.end_epoch(epoch, &logs, &mut fit, &history)? == Control::Stop {
                break;
            }
        }
        for cb in fit.callbacks.iter_mut() {
            cb.on_train_end(&history, &self.models[0])?;
        }
        // Weights restored into the first replica reach the others too.
        self.sync_replicas()?;
        Ok(history)
    }

    /// The steps of one epoch; returns its logs, and whether it was stopped from outside.
    fn train_epoch(
        &mut self,
        batches: impl Iterator<Item = Result<Batch>>,
        epoch: usize,
        fit: &Fit<'_>,
        first: bool,
    ) -> Result<(Logs, bool)> {
        self.metrics.iter_mut().for_each(|m| m.reset());
        let mut loss_mean = MeanTracker::default();
        let bar = epoch_bar(fit, epoch);
        let (mut steps, mut stopped, mut seen) = (0, false, Vec::<bool>::new());
        for batch in batches {
            let (x, y) = batch?;
            let truths = labels(&y)?;
            for &t in &truths {
                let class = t as usize;
                seen.resize(seen.len().max(class + 1), false);
                seen[class] = true;
            }
            let (loss, probabilities) = self.train_step(&x, &y, fit.class_weight.as_deref())?;
            if !loss.is_finite() {
                bar.abandon();
                return Err(non_finite(epoch, steps, loss));
            }
            // With several processes, this one saw its shards of the batch only.
            let mine = &truths[self.step.own_samples(truths.len())];
            loss_mean.add(f64::from(loss), mine.len());
            self.metrics
                .iter_mut()
                .for_each(|m| m.update(mine, &probabilities));
            steps += 1;
            bar.inc(1);
            bar.set_message(progress_line(loss_mean.result(), &self.metrics));
            if fit.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                stopped = true;
                break;
            }
        }
        bar.finish_and_clear();
        if steps == 0 {
            return Err(Error::Training(
                "the training data gave no batch; check the data folder and the batch size".into(),
            ));
        }
        if first && !stopped && seen.iter().filter(|&&s| s).count() < 2 {
            return Err(one_class(&seen));
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), loss_mean.result());
        for m in &self.metrics {
            logs.insert(m.name().to_string(), m.result());
        }
        logs.insert("learning_rate".into(), self.optimizers[0].learning_rate());
        Ok((logs, stopped))
    }

    /// The callbacks' turn after an epoch, then the training state.
    fn end_epoch(
        &mut self,
        epoch: usize,
        logs: &Logs,
        fit: &mut Fit<'_>,
        history: &History,
    ) -> Result<Control> {
        let mut control = Control::Continue;
        for cb in fit.callbacks.iter_mut() {
            if cb.on_epoch_end(epoch, logs, &self.models[0])? == Control::Stop {
                control = Control::Stop;
            }
        }
        if let Some(path) = &fit.save_state {
            let optimizer = self.optimizers[0].as_ref();
            TrainState::capture(
                &self.models[0],
                optimizer,
                &fit.callbacks,
                epoch + 1,
                history,
                &fit.settings,
            )?
            .save(path)?;
        }
        Ok(control)
    }

    /// Forward, backward and update on every replica; the batch's mean loss and the
    /// probabilities of this process's samples.
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        class_weight: Option<&[f64]>,
    ) -> Result<(f32, Vec<f32>)> {
        let results = self
            .step
            .gradients(&self.models, x, y, self.loss, class_weight)?;
        let (mut loss_sum, mut samples) = (0.0, 0);
        let mut probabilities = Vec::new();
        for (optimizer, result) in self.optimizers.iter_mut().zip(&results) {
            let Some(ShardResult {
                samples: n,
                loss,
                probabilities: p,
                grads,
            }) = result
            else {
                continue;
            };
            optimizer.step(grads)?;
            loss_sum += f64::from(*loss) * *n as f64;
            samples += n;
            probabilities.extend_from_slice(p);
        }
        Ok(((loss_sum / samples.max(1) as f64) as f32, probabilities))
    }

    /// Copies the first replica's variables into the others.
    fn sync_replicas(&self) -> Result<()> {
        let (first, rest) = self.models.split_first().expect("a trainer has a model");
        if rest.is_empty() {
            return Ok(());
        }
        let source = crate::nn::weights::lock(first.weights())?;
        for model in rest {
            for (name, var) in crate::nn::weights::lock(model.weights())?.iter() {
                if let Some(from) = source.get(name) {
                    var.set(&from.as_tensor().to_device(var.device())?)?;
                }
            }
        }
        Ok(())
    }

    /// Loss and metrics on `data` in inference mode (Keras's `model.evaluate`); the
    /// loss is not class-weighted, as in Keras.
    pub fn evaluate(&mut self, data: &Pipeline<Batch>) -> Result<Logs> {
        self.metrics.iter_mut().for_each(|m| m.reset());
        let mut loss_mean = MeanTracker::default();
        let model = &self.models[0];
        for batch in data.iter() {
            let (x, y) = batch?;
            let (x, y) = (x.to_device(model.device())?, y.to_device(model.device())?);
            let logits = model.forward_t(&x, false)?;
            let value = self.loss.compute(&logits, &y, None)?;
            let truths = labels(&y)?;
            loss_mean.add(
                f64::from(value.to_dtype(DType::F32)?.to_scalar::<f32>()?),
                truths.len(),
            );
            let probabilities = self
                .loss
                .probabilities(&logits)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            self.metrics
                .iter_mut()
                .for_each(|m| m.update(&truths, &probabilities));
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), loss_mean.result());
        for m in &self.metrics {
            logs.insert(m.name().to_string(), m.result());
        }
        Ok(logs)
    }

    /// Probabilities in inference mode (Keras's `model.predict`): `(N, 1)`, the
    /// probability of class 1, for a binary model; `(N, k)` for a softmax one.
    pub fn predict(&self, images: &Tensor) -> Result<Tensor> {
        predict(&self.models[0], self.loss, images)
    }

    /// The true classes and predicted probabilities of every sample of `data`, in
    /// order: what chapters 7 and 8 judge.
    pub fn predict_all(&self, data: &Pipeline<Batch>) -> Result<(Vec<usize>, Tensor)> {
        let (mut truths, mut probabilities) = (Vec::new(), Vec::new());
        for batch in data.iter() {
            let (x, y) = batch?;
            truths.extend(labels(&y)?.into_iter().map(|t| t as usize));
            probabilities.push(self.predict(&x)?.to_device(&candle_core::Device::Cpu)?);
        }
        if probabilities.is_empty() {
            return Err(Error::Training(
                "there is nothing to predict: the data gave no batch".into(),
            ));
        }
        Ok((truths, Tensor::cat(&probabilities, 0)?))
    }
}

/// Probabilities from a model in inference mode, as [`Trainer::predict`] gives them.
pub fn predict(model: &Sequential, loss: Loss, images: &Tensor) -> Result<Tensor> {
    let logits = model.forward_t(&images.to_device(model.device())?, false)?;
    loss.probabilities(&logits)
}

fn non_finite(epoch: usize, step: usize, loss: f32) -> Error {
    Error::Training(format!(
        "the loss became {loss} at epoch {}, step {}; the weights are diverging. \
         Lower the learning rate, check the inputs for NaN, and restart from the last checkpoint, which is intact",
        epoch + 1,
        step + 1
    ))
}

fn one_class(seen: &[bool]) -> Error {
    let name = match seen.iter().position(|&s| s) {
        Some(0) => "NORMAL".to_string(),
        Some(1) => "PNEUMONIA".to_string(),
        Some(c) => format!("class {c}"),
        None => "no".to_string(),
    };
    Error::Training(format!(
        "the first epoch saw only {name} images; a classifier needs examples of at least two classes (NORMAL and PNEUMONIA), check the data folder"
    ))
}

fn progress_line(loss: f64, metrics: &[Box<dyn Metric>]) -> String {
    let mut line = format!("loss {loss:.4}");
    for m in metrics {
        line.push_str(&format!(" - {} {:.4}", m.name(), m.result()));
    }
    line
}

fn epoch_bar(fit: &Fit<'_>, epoch: usize) -> indicatif::ProgressBar {
    if !fit.verbose {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match fit.steps_per_epoch {
        Some(steps) => indicatif::ProgressBar::new(steps as u64),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{} [{{bar:25}}] {{pos}}/{{len}} {{elapsed}} {{msg}}",
        epoch + 1,
        fit.epochs
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}
