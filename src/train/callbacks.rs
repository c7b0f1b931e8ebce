//! What `fit` calls after every epoch: Keras's `ModelCheckpoint`, `EarlyStopping` and
//! `CSVLogger`.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;

use super::History;
use crate::Result;

/// The numbers of one epoch: `loss`, the metrics, their `val_` twins, `lr`.
pub type Logs = std::collections::BTreeMap<String, f64>;

/// Whether training goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Something that watches training.
pub trait Callback {
    /// After epoch `epoch` (counted from 0) with its `logs`; `weights` are the model's.
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, weights: &VarMap) -> Result<Control>;

    /// When training ends, however it ends.
    fn on_train_end(&mut self, _history: &History, _weights: &VarMap) -> Result<()> {
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

/// Whether smaller or larger is better for a monitored quantity: Keras's `mode="auto"`,
/// which takes anything named like a loss or an error as "smaller".
fn smaller_is_better(monitor: &str) -> bool {
    let name = monitor.trim_start_matches("val_");
    name.contains("loss") || name.contains("error")
}

fn improved(monitor: &str, value: f64, best: Option<f64>, min_delta: f64) -> bool {
    match best {
        None => value.is_finite(),
        Some(best) if smaller_is_better(monitor) => value < best - min_delta,
        Some(best) => value > best + min_delta,
    }
}

/// Saves the weights (safetensors, written to a temporary file and renamed, so a crash
/// never leaves a torn file): after every epoch, or with `save_best_only` only when the
/// monitored quantity improves (Keras's `ModelCheckpoint("xray_model.keras",
/// save_best_only=True)`, which monitors `val_loss`).
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
    /// Keras's defaults: every epoch unless `save_best_only`, monitoring `val_loss`.
    pub fn new(path: impl AsRef<Path>, save_best_only: bool) -> Self {
        ModelCheckpoint {
            path: path.as_ref().to_path_buf(),
            monitor: "val_loss".into(),
            save_best_only,
            best: None,
            saved_epoch: None,
        }
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, weights: &VarMap) -> Result<Control> {
        // Without the monitored value (no validation data), every epoch counts as best.
        let value = logs.get(&self.monitor).copied();
        let better = value.is_none_or(|v| improved(&self.monitor, v, self.best, 0.0));
        if !self.save_best_only || better {
            crate::nn::save(weights, &self.path)?;
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
    /// Watches `monitor` with this `patience`.
    pub fn new(monitor: &str, patience: usize, restore_best_weights: bool) -> Self {
        EarlyStopping {
            monitor: monitor.to_string(),
            patience,
            min_delta: 0.0,
            restore_best_weights,
            best: None,
            best_epoch: None,
            best_weights: None,
            wait: 0,
            stopped_epoch: None,
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
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, weights: &VarMap) -> Result<Control> {
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

    fn on_train_end(&mut self, _history: &History, weights: &VarMap) -> Result<()> {
        if let Some(saved) = &self.best_weights {
            restore(weights, saved)?;
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
    fn on_epoch_end(&mut self, _epoch: usize, logs: &Logs, _weights: &VarMap) -> Result<Control> {
        self.rows.epochs.push(logs.clone());
        self.rows.save_csv(&self.path)?;
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<CallbackState> {
        Ok(CallbackState {
            values: serde_json::json!({ "rows": super::state::logs_to_json(&self.rows.epochs) }),
            tensors: Vec::new(),
        })
    }

    fn restore_state(&mut self, state: CallbackState) -> Result<()> {
        self.rows.epochs = super::state::logs_from_json(field(&state, "rows")?)?;
        Ok(())
    }
}
