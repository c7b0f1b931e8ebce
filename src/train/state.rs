//! The whole state of a training run in one safetensors file, written after every epoch
//! (Keras's `BackupAndRestore`): the weights (with batch norms' statistics and dropout's
//! random-stream positions), the optimiser's moments and step count, the epochs done,
//! the history so far and the callbacks' state. Resuming from it continues the run as if
//! it had never stopped.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::callbacks::{Callback, CallbackState};
use super::history::{History, Logs, logs_from_json, logs_to_json};
use super::optim::Optimizer;
use crate::nn::Sequential;
use crate::{Error, Result};

const FORMAT: &str = "cxr-train-state-1";

fn json(e: serde_json::Error) -> Error {
    Error::Training(format!("could not write the training state: {e}"))
}

/// A saved training run.
pub(crate) struct TrainState {
    /// Epochs finished.
    pub epoch: usize,
    /// Their logs.
    pub history: Vec<Logs>,
    /// What the run was started with (data, image size, learning rate, ...): a resumed
    /// run must say the same.
    pub settings: serde_json::Value,
    tensors: HashMap<String, Tensor>,
    callbacks: Vec<serde_json::Value>,
}

impl TrainState {
    /// The state after `epoch` epochs of `model` (the first replica), its optimiser and
    /// its callbacks.
    pub fn capture(
        model: &Sequential,
        optimizer: &dyn Optimizer,
        callbacks: &[Box<dyn Callback + '_>],
        epoch: usize,
        history: &History,
        settings: &serde_json::Value,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (name, var) in crate::nn::weights::lock(model.weights())?.iter() {
            tensors.insert(
                format!("model.{name}"),
                var.as_tensor().to_device(&Device::Cpu)?,
            );
        }
        for (name, t) in optimizer.state()? {
            tensors.insert(format!("optimizer.{name}"), t.to_device(&Device::Cpu)?);
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
            settings: settings.clone(),
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
        metadata.insert("settings".to_string(), self.settings.to_string());
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
        let settings = metadata
            .get("settings")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(TrainState {
            epoch,
            history,
            settings,
            tensors,
            callbacks,
        })
    }

    /// Refuses to resume when the run's settings differ from the saved ones, naming
    /// each difference.
    pub fn check_settings(&self, now: &serde_json::Value, path: &Path) -> Result<()> {
        let (Some(saved), Some(now)) = (self.settings.as_object(), now.as_object()) else {
            return Ok(());
        };
        let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
        keys.sort();
        keys.dedup();
        let differences: Vec<String> = keys
            .into_iter()
            .filter(|k| saved.get(*k) != now.get(*k))
            .map(|k| {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("(none)".into(), |v| v.to_string());
                format!("{k}: {} then, {} now", show(saved.get(k)), show(now.get(k)))
            })
            .collect();
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::Training(format!(
            "{} was saved by a run with other settings ({}); resume with the same settings, or start a new run without --resume",
            path.display(),
            differences.join("; ")
        )))
    }

    /// Puts the state into every replica, its optimiser, and the callbacks; returns the
    /// epoch to continue from.
    pub fn restore(
        &self,
        models: &[Sequential],
        optimizers: &mut [Box<dyn Optimizer>],
        callbacks: &mut [Box<dyn Callback + '_>],
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
        for model in models {
            crate::nn::weights::set_all(model.weights(), &self.tensors, "model.", path)?;
        }
        for opt in optimizers.iter_mut() {
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
