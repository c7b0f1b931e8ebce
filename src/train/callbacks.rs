//! What `fit` calls after every epoch: Keras's `ModelCheckpoint`, `EarlyStopping` and
//! `CSVLogger`.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;

use super::history::{History, Logs, smaller_is_better};
use crate::Result;
use crate::nn::Sequential;

/// Whether training goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Something that watches training: it reads the epoch's logs (and the model) and
/// says whether to go on; it never drives the loop.
pub trait Callback {
    /// After epoch `epoch` (counted from 0) with its `logs`.
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &Sequential) -> Result<Control>;

    /// When training ends, however it ends.
    fn on_train_end(&mut self, _history: &History, _model: &Sequential) -> Result<()> {
        Ok(())
    }

    /// What a resumed run needs to carry on where this one is (saved with the training
    /// state after every epoch).
    fn state(&self) -> Result<CallbackState> {
        Ok(CallbackState::default())
    }

    /// Takes back what [`Callback::state`] gave.
    fn restore_state(&mut self, _state: CallbackState) -> Result<()> {
        Ok(())
    }
}

/// A callback's state in a training state file: numbers as JSON, weights as tensors.
#[derive(Debug, Clone, Default)]
pub struct CallbackState {
    /// Counters, best values and the like.
    pub values: serde_json::Value,
    /// Saved weights, by name.
    pub tensors: Vec<(String, Tensor)>,
}

fn field<T: serde::de::DeserializeOwned>(state: &CallbackState, name: &str) -> Result<T> {
    serde_json::from_value(state.values.get(name).cloned().unwrap_or_default()).map_err(|e| {
        crate::Error::Training(format!(
            "the saved callback state has no usable `{name}` ({e}); resume with the callbacks the run was started with"
        ))
    })
}

fn improved(monitor: &str, value: f64, best: Option<f64>, min_delta: f64) -> bool {
    match best {
        None => value.is_finite(),
        Some(best) if smaller_is_better(monitor) => value < best - min_delta,
        Some(best) => value > best + min_delta,
    }
}

/// Saves the model (safetensors with its architecture, written to a temporary file and
/// renamed, so a crash never leaves a torn file): after every epoch, or with
/// `save_best_only` only when the monitored quantity improves (Keras's
/// `ModelCheckpoint("xray_model.keras", save_best_only=True)`, which monitors
/// `val_loss`).
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    /// Where the weights go.
    pub path: PathBuf,
    /// What decides "best", e.g. `"val_loss"`.
    pub monitor: String,
    /// Save only improvements.
    pub save_best_only: bool,
    /// The best value so far.
    pub best: Option<f64>,
    /// The epoch of the last save.
    pub saved_epoch: Option<usize>,
}

impl ModelCheckpoint {
    /// `save_best_only=True`: saves when `val_loss` improves.
    pub fn best(path: impl AsRef<Path>) -> Self {
        ModelCheckpoint {
            path: path.as_ref().to_path_buf(),
            monitor: "val_loss".into(),
            save_best_only: true,
            best: None,
            saved_epoch: None,
        }
    }

    /// Saves after every epoch (Keras's default).
    pub fn every_epoch(path: impl AsRef<Path>) -> Self {
        ModelCheckpoint {
            save_best_only: false,
            ..ModelCheckpoint::best(path)
        }
    }

    /// Decides "best" by `monitor` (`"val_auc"`: larger is better) instead of `val_loss`.
    pub fn monitor(self, monitor: &str) -> Self {
        ModelCheckpoint {
            monitor: monitor.to_string(),
            ..self
        }
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &Sequential) -> Result<Control> {
        // Without the monitored value (no validation data), every epoch counts as best.
        let value = logs.get(&self.monitor).copied();
        let better = value.is_none_or(|v| improved(&self.monitor, v, self.best, 0.0));
        if !self.save_best_only || better {
            model.save(&self.path)?;
            self.saved_epoch = Some(epoch);
        }
        if better && let Some(v) = value {
            self.best = Some(v);
        }
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<CallbackState> {
        Ok(CallbackState {
            values: serde_json::json!({"best": self.best, "saved_epoch": self.saved_epoch}),
            tensors: Vec::new(),
        })
    }

    fn restore_state(&mut self, state: CallbackState) -> Result<()> {
        self.best = field(&state, "best")?;
        self.saved_epoch = field(&state, "saved_epoch")?;
        Ok(())
    }
}

/// Stops when the monitored quantity has not improved for `patience` epochs, and with
/// `restore_best_weights` puts back the weights of the best epoch (Keras's
/// `EarlyStopping(patience=10, restore_best_weights=True)`).
#[derive(Debug)]
pub struct EarlyStopping {
    /// What is watched, e.g. `"val_loss"`.
    pub monitor: String,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// The least change that counts as an improvement.
    pub min_delta: f64,
    /// Put the best epoch's weights back at the end.
    pub restore_best_weights: bool,
    best: Option<f64>,
    best_epoch: Option<usize>,
    best_weights: Option<Vec<(String, Tensor)>>,
    wait: usize,
    /// The epoch training was stopped after, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor` (`"val_loss"`), stopping at the first epoch that does not
    /// improve on it unless [`EarlyStopping::patience`] says otherwise.
    pub fn on(monitor: &str) -> Self {
        EarlyStopping {
            monitor: monitor.to_string(),
            patience: 0,
            min_delta: 0.0,
            restore_best_weights: false,
            best: None,
            best_epoch: None,
            best_weights: None,
            wait: 0,
            stopped_epoch: None,
        }
    }

    /// Epochs without improvement before stopping.
    pub fn patience(self, patience: usize) -> Self {
        Self { patience, ..self }
    }

    /// The least change that counts as an improvement.
    pub fn min_delta(self, min_delta: f64) -> Self {
        Self { min_delta, ..self }
    }

    /// Puts the best epoch's weights back when training ends.
    pub fn restore_best_weights(self) -> Self {
        Self {
            restore_best_weights: true,
            ..self
        }
    }

    /// The epoch whose weights are kept, once one has been seen.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }
}

fn snapshot(weights: &VarMap) -> Result<Vec<(String, Tensor)>> {
    let vars = crate::nn::weights::lock(weights)?;
    vars.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(weights: &VarMap, saved: &[(String, Tensor)]) -> Result<()> {
    let vars = crate::nn::weights::lock(weights)?;
    for (name, tensor) in saved {
        if let Some(var) = vars.get(name) {
            var.set(tensor)?;
        }
    }
    Ok(())
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, model: &Sequential) -> Result<Control> {
        let weights = model.weights();
        let Some(&value) = logs.get(&self.monitor) else {
            return Ok(Control::Continue);
        };
        if improved(&self.monitor, value, self.best, self.min_delta) {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(snapshot(weights)?);
            }
            return Ok(Control::Continue);
        }
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(epoch);
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, _history: &History, model: &Sequential) -> Result<()> {
        if let Some(saved) = &self.best_weights {
            restore(model.weights(), saved)?;
        }
        Ok(())
    }

    fn state(&self) -> Result<CallbackState> {
        Ok(CallbackState {
            values: serde_json::json!({
                "best": self.best,
                "best_epoch": self.best_epoch,
                "wait": self.wait,
            }),
            tensors: self.best_weights.clone().unwrap_or_default(),
        })
    }

    fn restore_state(&mut self, state: CallbackState) -> Result<()> {
        self.best = field(&state, "best")?;
        self.best_epoch = field(&state, "best_epoch")?;
        self.wait = field(&state, "wait")?;
        self.best_weights = (!state.tensors.is_empty()).then_some(state.tensors);
        Ok(())
    }
}

/// Writes the history table to a CSV file after every epoch (Keras's `CSVLogger`), each
/// time whole and atomically, so the file always holds every finished epoch.
#[derive(Debug, Clone)]
pub struct CsvLogger {
    /// The CSV file.
    pub path: PathBuf,
    rows: History,
}

impl CsvLogger {
    /// Logs to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        CsvLogger {
            path: path.as_ref().to_path_buf(),
            rows: History::default(),
        }
    }
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, _epoch: usize, logs: &Logs, _model: &Sequential) -> Result<Control> {
        self.rows.epochs.push(logs.clone());
        self.rows.save_csv(&self.path)?;
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<CallbackState> {
        Ok(CallbackState {
            values: serde_json::json!({ "rows": super::history::logs_to_json(&self.rows.epochs) }),
            tensors: Vec::new(),
        })
    }

    fn restore_state(&mut self, state: CallbackState) -> Result<()> {
        self.rows.epochs = super::history::logs_from_json(field(&state, "rows")?)?;
        Ok(())
    }
}
