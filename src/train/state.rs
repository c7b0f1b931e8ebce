//! The whole state of a training run in one safetensors file, written after every epoch
//! (Keras's `BackupAndRestore`): the weights (with batch norms' statistics and dropout's
//! random-stream positions), the optimiser's moments and step count, the epochs done,
//! the history so far and the callbacks' state. Resuming from it continues the run as if
//! it had never stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use super::callbacks::{Callback, CallbackState, Logs};
use super::fit::Trainer;
use crate::{Error, Result};

const FORMAT: &str = "cxr-train-state-1";

/// Epoch logs as JSON, which has no NaN or infinity: those are written as null.
pub(super) fn logs_to_json(history: &[Logs]) -> serde_json::Value {
    let rows: Vec<BTreeMap<&str, Option<f64>>> = history
        .iter()
        .map(|logs| {
            logs.iter()
                .map(|(k, &v)| (k.as_str(), v.is_finite().then_some(v)))
                .collect()
        })
        .collect();
    serde_json::json!(rows)
}

/// What [`logs_to_json`] wrote; null reads back as NaN.
pub(super) fn logs_from_json(value: serde_json::Value) -> Result<Vec<Logs>> {
    let rows: Vec<BTreeMap<String, Option<f64>>> = serde_json::from_value(value)
        .map_err(|e| Error::Training(format!("unreadable epoch logs: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|logs| {
            logs.into_iter()
                .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
                .collect()
        })
        .collect())
}

fn json(e: serde_json::Error) -> Error {
    Error::Training(format!("could not write the training state: {e}"))
}

/// A saved training run.
pub(crate) struct TrainState {
    /// Epochs finished.
    pub epoch: usize,
    /// Their logs.
    pub history: Vec<Logs>,
    tensors: HashMap<String, Tensor>,
    callbacks: Vec<serde_json::Value>,
}

impl TrainState {
    /// The state of `trainer` and `callbacks` after `epoch` epochs.
    pub fn capture(
        trainer: &mut Trainer,
        callbacks: &[&mut dyn Callback],
        epoch: usize,
        history: &super::fit::History,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (name, var) in crate::nn::weights::lock(trainer.weights())?.iter() {
            tensors.insert(
                format!("model.{name}"),
                var.as_tensor().to_device(&Device::Cpu)?,
            );
        }
        if let Some(optimizer) = trainer.optimizers_mut().next() {
            for (name, t) in optimizer.state()? {
                tensors.insert(format!("optimizer.{name}"), t.to_device(&Device::Cpu)?);
            }
        }
        let mut values = Vec::new();
        for (i, cb) in callbacks.iter().enumerate() {
            let state = cb.state()?;
            for (name, t) in state.tensors {
                tensors.insert(format!("callback.{i}.{name}"), t.to_device(&Device::Cpu)?);
            }
            values.push(state.values);
        }
        Ok(TrainState {
            epoch,
            history: history.epochs.clone(),
            tensors,
            callbacks: values,
        })
    }

    /// Writes the state to `path` through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut metadata = HashMap::new();
        metadata.insert("format".to_string(), FORMAT.to_string());
        metadata.insert("epoch".to_string(), self.epoch.to_string());
        metadata.insert(
            "history".to_string(),
            logs_to_json(&self.history).to_string(),
        );
        metadata.insert(
            "callbacks".to_string(),
            serde_json::to_string(&self.callbacks).map_err(json)?,
        );
        crate::io::replace_atomic(path, |tmp| {
            safetensors::serialize_to_file(self.tensors.iter(), Some(metadata.clone()), tmp)
                .map_err(|e| Error::Training(format!("could not write the training state: {e}")))
        })
    }

    /// Reads a state written by [`TrainState::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let damaged = |detail: String| Error::Weights {
            path: path.into(),
            problems: vec![format!(
                "{detail}; this is not a training state written by cxr (`cxr train` writes out/train_state.safetensors)"
            )],
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| damaged(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(damaged("no cxr training-state header".into()));
        }
        let epoch = metadata
            .get("epoch")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| damaged("no epoch count".into()))?;
        let history = serde_json::from_str(metadata.get("history").map_or("[]", String::as_str))
            .map_err(|e| damaged(format!("unreadable history: {e}")))
            .and_then(|v| logs_from_json(v).map_err(|e| damaged(e.to_string())))?;
        let callbacks =
            serde_json::from_str(metadata.get("callbacks").map_or("[]", String::as_str))
                .map_err(|e| damaged(format!("unreadable callback state: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(TrainState {
            epoch,
            history,
            tensors,
            callbacks,
        })
    }

    /// Puts the state into `trainer` (every replica) and `callbacks`; returns the epoch
    /// to continue from. Nothing is changed unless everything fits.
    pub fn restore(
        &self,
        trainer: &mut Trainer,
        callbacks: &mut [&mut dyn Callback],
        path: &Path,
    ) -> Result<usize> {
        if self.callbacks.len() != callbacks.len() {
            return Err(Error::Training(format!(
                "{} was saved by a run with {} callbacks, this one has {}; resume with the same callbacks",
                path.display(),
                self.callbacks.len(),
                callbacks.len()
            )));
        }
        let optimizer: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix("optimizer.")?.to_string(), t.clone())))
            .collect();
        for weights in trainer.all_weights() {
            crate::nn::weights::set_all(weights, &self.tensors, "model.", path)?;
        }
        for opt in trainer.optimizers_mut() {
            opt.load_state(&optimizer, path)?;
        }
        for (i, (cb, values)) in callbacks.iter_mut().zip(&self.callbacks).enumerate() {
            let prefix = format!("callback.{i}.");
            let tensors = self
                .tensors
                .iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(&prefix)?.to_string(), t.clone())))
                .collect();
            cb.restore_state(CallbackState {
                values: values.clone(),
                tensors,
            })?;
        }
        Ok(self.epoch)
    }
}
