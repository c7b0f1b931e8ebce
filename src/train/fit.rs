//! `fit`, `evaluate` and `predict` with Keras's semantics, for classifiers that output
//! logits: one per image with binary cross-entropy (the tutorial's CNN), one per class
//! with categorical cross-entropy (chapter 6's VGG19). On one device or mirrored over
//! several (see [`crate::distribute`]), and resumable from a saved training state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::VarMap;
use polars::prelude::{Column, DataFrame};

use super::callbacks::{Callback, Control, Logs};
use super::losses::{binary_cross_entropy_with_logits, weighted_categorical_cross_entropy};
use super::metrics::{MeanTracker, Metric};
use super::optim::Adam;
use super::state::TrainState;
use crate::data::{Pipeline, Stream};
use crate::{Error, Result};

/// A batch: images `(N, C, H, W)` and labels `(N, 1)` (0/1, binary) or `(N,)` (class
/// numbers, categorical).
pub type Batch = (Tensor, Tensor);

/// What the model's outputs are and how they are scored (Keras's `loss=`, always with
/// `from_logits=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// One logit per image, 0/1 labels: `BinaryCrossentropy`.
    #[default]
    BinaryCrossentropy,
    /// One logit per class, class-number labels: `SparseCategoricalCrossentropy` (Keras's
    /// `CategoricalCrossentropy` on one-hot labels gives the same numbers).
    CategoricalCrossentropy,
}

impl Loss {
    /// The mean loss of a batch; each sample weighted by its class's `class_weight`.
    pub fn compute(
        &self,
        logits: &Tensor,
        y: &Tensor,
        class_weight: Option<&[f64]>,
    ) -> Result<Tensor> {
        let y = &class_numbers(y)?;
        let weights = match class_weight {
            Some(cw) => Some(sample_weights(&labels(y)?, cw, logits.device())?),
            None => None,
        };
        match self {
            Loss::BinaryCrossentropy => {
                binary_cross_entropy_with_logits(logits, y, weights.as_ref())
            }
            Loss::CategoricalCrossentropy => {
                weighted_categorical_cross_entropy(logits, y, weights.as_ref())
            }
        }
    }

    /// Probabilities from logits, flattened: one per image (of class 1) for binary, one
    /// per image and class, row by row, for categorical.
    pub fn probabilities(&self, logits: &Tensor) -> Result<Vec<f32>> {
        let p = match self {
            Loss::BinaryCrossentropy => candle_nn::ops::sigmoid(&logits.flatten_all()?)?,
            Loss::CategoricalCrossentropy => {
                candle_nn::ops::softmax(logits, candle_core::D::Minus1)?.flatten_all()?
            }
        };
        Ok(p.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }
}

/// The weight of each sample: its class's entry in `class_weight`.
fn sample_weights(labels: &[f32], class_weight: &[f64], device: &Device) -> Result<Tensor> {
    let weights =
        labels
            .iter()
            .map(|&l| {
                class_weight.get(l as usize).map(|&w| w as f32).ok_or_else(|| {
                Error::Training(format!(
                    "class_weight has {} entries but a label is {l}; give one weight per class",
                    class_weight.len()
                ))
            })
            })
            .collect::<Result<Vec<f32>>>()?;
    Ok(Tensor::new(weights, device)?)
}

/// How to train.
#[derive(Clone)]
pub struct FitOptions {
    /// Passes over the data (or of `steps_per_epoch` steps each).
    pub epochs: usize,
    /// Steps per epoch; the data repeats when it runs out, and the next epoch carries on
    /// where this one stopped, as in Keras. `None`: one full pass per epoch.
    pub steps_per_epoch: Option<usize>,
    /// One weight per class (`[NORMAL, PNEUMONIA]` for the tutorial), Keras's
    /// `class_weight`.
    pub class_weight: Option<Vec<f64>>,
    /// Show a progress bar per epoch (on a terminal).
    pub progress: bool,
    /// Set from outside (e.g. by Ctrl-C) to stop after the current step.
    pub stop: Option<Arc<AtomicBool>>,
    /// Write the whole training state (weights, optimiser, epoch, history, callbacks) here
    /// after every epoch, atomically: what `resume_from` continues from.
    pub save_state: Option<PathBuf>,
    /// Continue the run saved in this file: epochs already done are not repeated, the
    /// data is read from where that run was, and with the same seeds the result is the
    /// uninterrupted run's.
    pub resume_from: Option<PathBuf>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            steps_per_epoch: None,
            class_weight: None,
            progress: true,
            stop: None,
            save_state: None,
            resume_from: None,
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

    /// Reads back a history written by [`History::save_csv`] (or by `CsvLogger`).
    pub fn read_csv(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let frame = crate::data::read_csv(path)?;
        let mut epochs = vec![Logs::new(); frame.height()];
        for column in frame.columns() {
            let name = column.name().to_string();
            if name == "epoch" {
                continue;
            }
            let values = column
                .cast(&polars::prelude::DataType::Float64)
                .and_then(|c| c.f64().map(|v| v.to_vec()))
                .map_err(|e| Error::Table {
                    path: path.into(),
                    detail: format!("column {name} is not numeric: {e}"),
                })?;
            for (logs, v) in epochs.iter_mut().zip(values) {
                logs.insert(name.clone(), v.unwrap_or(f64::NAN));
            }
        }
        Ok(History {
            epochs,
            interrupted: false,
        })
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

/// One number per sample: the 0/1 label, the class number, or the class of a one-hot
/// row (Keras's `class_mode="categorical"`).
fn labels(y: &Tensor) -> Result<Vec<f32>> {
    Ok(class_numbers(y)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

fn class_numbers(y: &Tensor) -> Result<Tensor> {
    Ok(match y.dims() {
        [_, k] if *k > 1 => y.argmax(1)?,
        _ => y.flatten_all()?,
    })
}

/// One copy of the model on one device, with its own optimiser. Replicas start equal
/// and receive equal updates, so they stay equal.
struct Replica<'a> {
    model: &'a (dyn ModuleT + Sync),
    weights: &'a VarMap,
    optimizer: Adam,
    device: Device,
}

/// What one replica computed on its shard of a batch.
struct ShardResult {
    samples: usize,
    loss: f32,
    probabilities: Vec<f32>,
    grads: candle_core::backprop::GradStore,
}

/// A model made ready to train, as Keras's `model.compile(optimizer, loss, metrics)`:
/// the model (or its replicas), the variables holding its weights, the optimiser, the
/// loss and the metrics to report.
pub struct Trainer<'a> {
    replicas: Vec<Replica<'a>>,
    /// One NCCL communicator per replica, or none: gradients are averaged through host
    /// memory.
    nccl: Vec<crate::distribute::NcclComm>,
    /// With several processes: the first of this process's shards, and the shards of a
    /// global batch in all (`None`: this process's replicas share each batch alone).
    shards: Option<(usize, usize)>,
    /// What is reported each epoch besides the loss.
    pub metrics: Vec<Box<dyn Metric>>,
    /// The loss, binary cross-entropy unless set.
    pub loss: Loss,
}

impl<'a> Trainer<'a> {
    /// One model on one device, trained with `optimizer` (made for `weights`).
    pub fn new(model: &'a (dyn ModuleT + Sync), weights: &'a VarMap, optimizer: Adam) -> Self {
        let device = first_device(weights);
        Trainer {
            replicas: vec![Replica {
                model,
                weights,
                optimizer,
                device,
            }],
            nccl: Vec::new(),
            shards: None,
            metrics: Vec::new(),
            loss: Loss::default(),
        }
    }

    /// Replicas of one model, one per device, each with its own optimiser (all made
    /// alike): data parallelism. Every batch is cut into one shard per replica, the
    /// replicas run at once on their own threads, their gradients are averaged (weighted
    /// by shard size, which makes the step the one-device step on the whole batch) and
    /// every replica applies the same update. Use [`crate::distribute::Strategy`] to build
    /// the replicas.
    pub fn mirrored(
        replicas: Vec<(&'a (dyn ModuleT + Sync), &'a VarMap)>,
        make_optimizer: impl Fn(&VarMap) -> Result<Adam>,
    ) -> Result<Self> {
        if replicas.is_empty() {
            return Err(Error::BadArgument(
                "a trainer needs at least one replica".into(),
            ));
        }
        let replicas = replicas
            .into_iter()
            .map(|(model, weights)| {
                Ok(Replica {
                    model,
                    weights,
                    optimizer: make_optimizer(weights)?,
                    device: first_device(weights),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Trainer {
            replicas,
            nccl: Vec::new(),
            shards: None,
            metrics: Vec::new(),
            loss: Loss::default(),
        })
    }

    /// Averages gradients GPU to GPU through these communicators, one per replica.
    pub(crate) fn with_nccl(mut self, comms: Vec<crate::distribute::NcclComm>) -> Self {
        self.nccl = comms;
        self
    }

    /// Trains on shards `first..first + replicas` of every global batch cut into `total`
    /// shards: this process's part when several processes train together.
    pub(crate) fn with_shards(mut self, first: usize, total: usize) -> Self {
        self.shards = Some((first, total));
        self
    }

    /// Reports these metrics (Keras's `metrics=[...]`).
    pub fn with_metrics(mut self, metrics: Vec<Box<dyn Metric>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Uses this loss.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// The first replica's optimiser (all replicas' are equal).
    pub fn optimizer(&self) -> &Adam {
        &self.replicas[0].optimizer
    }

    /// The weights of the first replica: the model's weights.
    pub fn weights(&self) -> &VarMap {
        self.replicas[0].weights
    }

    /// How many replicas train in step (Keras's `strategy.num_replicas_in_sync`).
    pub fn num_replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Trains on `train`, checking against `validation` after every epoch; returns the
    /// history. Training mode is on during steps (batch norm uses batch statistics and
    /// updates its running ones; dropout drops) and off during validation.
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
        let mut first_epoch = 0;
        if let Some(path) = &options.resume_from {
            let state = TrainState::load(path)?;
            first_epoch = state.restore(self, callbacks, path)?;
            history.epochs = state.history;
        }
        // With steps_per_epoch the data repeats and epochs continue one stream; a resumed
        // run reads past what the first run read, so it sees the same batches.
        let mut endless: Option<Stream<Batch>> = options
            .steps_per_epoch
            .map(|_| train.clone().repeat(None).iter());
        match (endless.as_mut(), options.steps_per_epoch) {
            (Some(stream), Some(steps)) => {
                for batch in stream.by_ref().take(first_epoch * steps) {
                    batch?;
                }
            }
            _ => {
                for _ in 0..first_epoch {
                    drop(train.iter());
                }
            }
        }
        if let Some(val) = validation {
            for _ in 0..first_epoch {
                drop(val.iter());
            }
        }
        let mut seen_classes: Vec<bool> = Vec::new();
        for epoch in first_epoch..options.epochs {
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
                    let class = t as usize;
                    if seen_classes.len() <= class {
                        seen_classes.resize(class + 1, false);
                    }
                    seen_classes[class] = true;
                }
                let (loss_value, probs) =
                    self.train_step(&x, &y, options.class_weight.as_deref())?;
                if !loss_value.is_finite() {
                    bar.abandon();
                    return Err(non_finite(epoch, step, loss_value));
                }
                // With several processes, this one saw its shards of the batch only.
                let mine = &truths[self.own_samples(truths.len())];
                loss_mean.add(f64::from(loss_value), mine.len());
                for m in self.metrics.iter_mut() {
                    m.update(mine, &probs);
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
            if epoch == first_epoch && seen_classes.iter().filter(|&&s| s).count() < 2 {
                return Err(Error::Training(format!(
                    "the first epoch saw only {} images; a classifier needs examples of at least two classes (NORMAL and PNEUMONIA), check the data folder",
                    match seen_classes.iter().position(|&s| s) {
                        Some(0) => "NORMAL".to_string(),
                        Some(1) => "PNEUMONIA".to_string(),
                        Some(c) => format!("class {c}"),
                        None => "no".to_string(),
                    }
                )));
            }
            let mut logs = Logs::new();
            logs.insert("loss".into(), loss_mean.result());
            for m in self.metrics.iter() {
                logs.insert(m.name().to_string(), m.result());
            }
            logs.insert("learning_rate".into(), self.optimizer().learning_rate());
            if stopped {
                history.interrupted = true;
                break;
            }
            if let Some(val) = validation {
                let val_logs = self.evaluate(val)?;
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
                if cb.on_epoch_end(epoch, &logs, self.weights())? == Control::Stop {
                    stop = true;
                }
            }
            if let Some(path) = &options.save_state {
                TrainState::capture(self, callbacks, epoch + 1, &history)?.save(path)?;
            }
            if stop {
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(&history, self.weights())?;
        }
        Ok(history)
    }

    /// The samples of a batch of `total` that this process's replicas train on.
    fn own_samples(&self, total: usize) -> std::ops::Range<usize> {
        match self.shards {
            None => 0..total,
            Some((first, count)) => {
                let all = shard_sizes(total, count);
                let start: usize = all[..first].iter().sum();
                let len: usize = all[first..first + self.replicas.len()].iter().sum();
                start..start + len
            }
        }
    }

    /// One training step on a batch: forward, loss, backward and the optimiser's update,
    /// on every replica. Returns the batch's mean loss and its probabilities.
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        class_weight: Option<&[f64]>,
    ) -> Result<(f32, Vec<f32>)> {
        let loss = self.loss;
        if self.replicas.len() == 1 && self.shards.is_none() {
            let replica = &mut self.replicas[0];
            let (x, y) = (x.to_device(&replica.device)?, y.to_device(&replica.device)?);
            let result = replica_step(replica.model, loss, &x, &y, class_weight)?;
            replica.optimizer.step(&result.grads)?;
            return Ok((result.loss, result.probabilities));
        }
        let total = x.dim(0)?;
        let (first, count) = self.shards.unwrap_or((0, self.replicas.len()));
        let all = shard_sizes(total, count);
        let shards = &all[first..first + self.replicas.len()];
        let mut start: usize = all[..first].iter().sum();
        let nccl = &self.nccl;
        let mut results: Vec<Option<ShardResult>> = std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (r, (replica, &size)) in self.replicas.iter().zip(shards).enumerate() {
                let (model, weights, device) =
                    (replica.model, replica.weights, replica.device.clone());
                let comm = nccl.get(r);
                let begin = start;
                start += size;
                handles.push(scope.spawn(move || -> Result<Option<ShardResult>> {
                    let mut result = if size == 0 {
                        None
                    } else {
                        let xs = x.narrow(0, begin, size)?.to_device(&device)?;
                        let ys = y.narrow(0, begin, size)?.to_device(&device)?;
                        Some(replica_step(model, loss, &xs, &ys, class_weight)?)
                    };
                    // With NCCL every replica sums its share of the gradients on its GPU,
                    // an idle one adding zeros.
                    if let Some(comm) = comm {
                        let vars = crate::nn::weights::trainable_named(weights)?;
                        let mut grads = match result.take() {
                            Some(r) => r,
                            None => ShardResult {
                                samples: 0,
                                loss: 0.0,
                                probabilities: Vec::new(),
                                grads: match vars.first() {
                                    Some((_, v)) => empty_grads(v)?,
                                    None => return Ok(None),
                                },
                            },
                        };
                        comm.all_reduce_grads(
                            &mut grads.grads,
                            &vars,
                            size as f64 / total.max(1) as f64,
                        )?;
                        result = Some(grads);
                    }
                    Ok(result)
                }));
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| Error::Training("a replica's thread panicked".into()))?
                })
                .collect::<Result<Vec<_>>>()
        })?;
        if !self.nccl.is_empty() {
            return self.apply(&results, total);
        }
        if self.shards.is_some() {
            return Err(Error::Training(
                "shards of a batch spread over several processes need NCCL to sum their gradients"
                    .into(),
            ));
        }
        // All-reduce: the shard-size-weighted mean of the gradients, summed on the host,
        // handed to every replica.
        let named: Vec<Vec<(String, candle_core::Var)>> = self
            .replicas
            .iter()
            .map(|r| crate::nn::weights::trainable_named(r.weights))
            .collect::<Result<_>>()?;
        for (j, (name, _)) in named[0].iter().enumerate() {
            let mut sum: Option<Tensor> = None;
            for (r, result) in results.iter().enumerate() {
                let Some(result) = result else { continue };
                let var = &named[r][j].1;
                let Some(g) = result.grads.get(var) else {
                    continue;
                };
                let g = (g.to_device(&Device::Cpu)? * (result.samples as f64 / total as f64))?;
                sum = Some(match sum {
                    Some(s) => (s + g)?,
                    None => g,
                });
            }
            let Some(sum) = sum else { continue };
            for (r, replica) in self.replicas.iter().enumerate() {
                let var = &named[r][j].1;
                if named[r][j].0 != *name {
                    return Err(Error::Training(format!(
                        "replica {r} has {} where the first has {name}; replicas must be built alike",
                        named[r][j].0
                    )));
                }
                let averaged = sum.to_device(&replica.device)?;
                if let Some(Some(result)) = results.get_mut(r) {
                    result.grads.insert(var, averaged);
                } else {
                    let mut store = empty_grads(var)?;
                    store.insert(var, averaged);
                    results[r] = Some(ShardResult {
                        samples: 0,
                        loss: 0.0,
                        probabilities: Vec::new(),
                        grads: store,
                    });
                }
            }
        }
        self.apply(&results, total)
    }

    /// Every replica's update from its (averaged) gradients; the mean loss and the
    /// probabilities of this process's shards, shard after shard.
    fn apply(&mut self, results: &[Option<ShardResult>], total: usize) -> Result<(f32, Vec<f32>)> {
        let (mut loss_sum, mut samples) = (0.0, 0);
        let mut probabilities = Vec::with_capacity(total);
        for (replica, result) in self.replicas.iter_mut().zip(results) {
            if let Some(result) = result {
                replica.optimizer.step(&result.grads)?;
                loss_sum += f64::from(result.loss) * result.samples as f64;
                samples += result.samples;
                probabilities.extend_from_slice(&result.probabilities);
            }
        }
        // This process's samples: the whole batch, unless other processes share it.
        Ok(((loss_sum / samples.max(1) as f64) as f32, probabilities))
    }

    /// Loss and metrics on `data` in inference mode (Keras's `model.evaluate`), on the
    /// first replica; the loss is not class-weighted, as in Keras.
    pub fn evaluate(&mut self, data: &Pipeline<Batch>) -> Result<Logs> {
        let replica = &self.replicas[0];
        evaluate_with(
            replica.model,
            self.loss,
            &replica.device,
            data,
            &mut self.metrics,
        )
    }

    /// Probabilities (Keras's `model.predict`), see [`Loss::probabilities`].
    pub fn predict(&self, images: &Tensor) -> Result<Vec<f32>> {
        let replica = &self.replicas[0];
        let logits = replica
            .model
            .forward_t(&images.to_device(&replica.device)?, false)?;
        self.loss.probabilities(&logits)
    }

    pub(crate) fn optimizers_mut(&mut self) -> impl Iterator<Item = &mut Adam> {
        self.replicas.iter_mut().map(|r| &mut r.optimizer)
    }

    pub(crate) fn all_weights(&self) -> impl Iterator<Item = &VarMap> {
        self.replicas.iter().map(|r| r.weights)
    }
}

/// A GradStore to put averaged gradients in, for a replica whose shard was empty: the
/// gradients of a zero made from the variable.
fn empty_grads(var: &candle_core::Var) -> Result<candle_core::backprop::GradStore> {
    Ok((var.as_tensor().sum_all()? * 0.0)?.backward()?)
}

/// Forward, loss and backward of one model on one batch (or shard).
fn replica_step(
    model: &(dyn ModuleT + Sync),
    loss: Loss,
    x: &Tensor,
    y: &Tensor,
    class_weight: Option<&[f64]>,
) -> Result<ShardResult> {
    let logits = model.forward_t(x, true)?;
    let value = loss.compute(&logits, y, class_weight)?;
    let loss_value = value.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    Ok(ShardResult {
        samples: x.dim(0)?,
        loss: loss_value,
        probabilities: loss.probabilities(&logits)?,
        grads: value.backward()?,
    })
}

/// Sizes of `replicas` shards of a batch of `total`: as equal as can be, the first ones
/// one larger when it does not divide (as `tf.distribute` splits a batch).
pub fn shard_sizes(total: usize, replicas: usize) -> Vec<usize> {
    let replicas = replicas.max(1);
    (0..replicas)
        .map(|r| total / replicas + usize::from(r < total % replicas))
        .collect()
}

fn first_device(weights: &VarMap) -> Device {
    weights
        .all_vars()
        .first()
        .map_or(Device::Cpu, |v| v.device().clone())
}

/// Loss and metrics of a binary model on `data` in inference mode (Keras's
/// `model.evaluate`); the loss is not class-weighted, as in Keras.
pub fn evaluate(
    model: &dyn ModuleT,
    data: &Pipeline<Batch>,
    metrics: &mut [Box<dyn Metric>],
) -> Result<Logs> {
    evaluate_with(model, Loss::BinaryCrossentropy, &Device::Cpu, data, metrics)
}

fn evaluate_with(
    model: &dyn ModuleT,
    loss: Loss,
    device: &Device,
    data: &Pipeline<Batch>,
    metrics: &mut [Box<dyn Metric>],
) -> Result<Logs> {
    for m in metrics.iter_mut() {
        m.reset();
    }
    let mut loss_mean = MeanTracker::default();
    for batch in data.iter() {
        let (x, y) = batch?;
        let (x, y) = (x.to_device(device)?, y.to_device(device)?);
        let logits = model.forward_t(&x, false)?;
        let value = loss
            .compute(&logits, &y, None)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        let truths = labels(&y)?;
        loss_mean.add(f64::from(value), truths.len());
        let probs = loss.probabilities(&logits)?;
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
/// mode (Keras's `model.predict`), for a model with one logit.
pub fn predict(model: &dyn ModuleT, images: &Tensor) -> Result<Vec<f32>> {
    Loss::BinaryCrossentropy.probabilities(&model.forward_t(images, false)?)
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
