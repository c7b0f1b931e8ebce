//! What `fit` returns: the numbers of every epoch, Keras's `history.history` as rows,
//! as a table and as CSV.

use std::collections::BTreeMap;
use std::path::Path;

use polars_core::prelude::{Column, DataFrame};

use crate::{Error, Result};

/// The numbers of one epoch: `loss`, the metrics, their `val_` twins, `learning_rate`.
pub type Logs = std::collections::BTreeMap<String, f64>;

/// The logs of every epoch of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// One map of numbers per finished epoch.
    pub epochs: Vec<Logs>,
    /// Training was stopped from outside (Ctrl-C) before all epochs ran.
    pub interrupted: bool,
}

/// Whether smaller or larger is better for a monitored quantity: Keras's `mode="auto"`,
/// which takes anything named like a loss or an error as "smaller".
pub fn smaller_is_better(monitor: &str) -> bool {
    let name = monitor.trim_start_matches("val_");
    name.contains("loss") || name.contains("error")
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

    /// The epoch (counted from 0) where `monitor` was best (lowest for a loss, highest
    /// otherwise): the one whose weights `EarlyStopping(restore_best_weights)` keeps.
    pub fn best_epoch(&self, monitor: &str) -> Option<usize> {
        let values = self.series(monitor);
        let better = |a: f64, b: f64| {
            if smaller_is_better(monitor) {
                a < b
            } else {
                a > b
            }
        };
        let mut best: Option<(usize, f64)> = None;
        for (epoch, v) in values.into_iter().enumerate() {
            if v.is_finite() && best.is_none_or(|(_, b)| better(v, b)) {
                best = Some((epoch, v));
            }
        }
        best.map(|(epoch, _)| epoch)
    }

    /// The last epoch's logs.
    pub fn last(&self) -> Option<&Logs> {
        self.epochs.last()
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
                .cast(&polars_core::prelude::DataType::Float64)
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

/// Epoch logs as JSON, which has no NaN or infinity: those are written as null.
pub(crate) fn logs_to_json(history: &[Logs]) -> serde_json::Value {
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
pub(crate) fn logs_from_json(value: serde_json::Value) -> Result<Vec<Logs>> {
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
