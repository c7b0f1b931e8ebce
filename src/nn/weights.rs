//! Saving and loading weights as safetensors, atomically, with errors that list every
//! tensor that does not fit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// Saves every variable of `varmap` to `path` as safetensors, through a temporary file
/// and a rename, so an interrupted save never leaves a torn file.
pub fn save(varmap: &VarMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors: HashMap<String, Tensor> = lock(varmap)?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    crate::io::replace_atomic(path, |tmp| {
        Ok(candle_core::safetensors::save(&tensors, tmp)?)
    })
}

/// Loads `path` into the variables of `varmap`. `rename` maps a cxr name to the name in
/// the file (the identity for files cxr saved; [`crate::nn::vgg::torchvision_name`] for
/// torchvision's). Every variable must be found with its shape (dropout counters may be
/// absent: they keep their value); otherwise nothing is
/// changed and the error lists each missing and each mis-shaped tensor.
pub fn load(
    varmap: &VarMap,
    path: impl AsRef<Path>,
    rename: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::io(path, std::io::ErrorKind::NotFound.into()));
    }
    let file = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Weights {
        path: path.into(),
        problems: vec![format!("not a safetensors file: {e}")],
    })?;
    set_from(varmap, &file, rename, path)
}

/// Sets every variable of `varmap` from `tensors`, where the one for variable `name` is
/// `prefix` + `name` (a training state keeps the weights under `model.`).
pub(crate) fn set_all(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    set_from(
        varmap,
        tensors,
        |name| Some(format!("{prefix}{name}")),
        path,
    )
}

fn set_from(
    varmap: &VarMap,
    file: &HashMap<String, Tensor>,
    rename: impl Fn(&str) -> Option<String>,
    path: &Path,
) -> Result<()> {
    let vars = lock(varmap)?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut problems = Vec::new();
    let mut ready: Vec<(&Var, Tensor)> = Vec::new();
    for name in names {
        let var = &vars[name];
        let Some(stored) = rename(name) else {
            problems.push(format!("{name}: no name for it in this file's naming"));
            continue;
        };
        match file.get(&stored) {
            // Files from Keras or torchvision hold no random-stream position.
            None if name.ends_with(".rng_step") => {}
            None => problems.push(format!("{stored}: missing")),
            Some(t) if t.dims() != var.dims() => problems.push(format!(
                "{stored}: shape {:?}, the model needs {:?}",
                t.dims(),
                var.dims()
            )),
            Some(t) => ready.push((var, t.to_dtype(var.dtype())?.to_device(var.device())?)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Weights {
            path: path.into(),
            problems,
        });
    }
    for (var, tensor) in ready {
        var.set(&tensor)?;
    }
    Ok(())
}

/// Suffixes of variables that are state, not weights: batch norms' running statistics
/// and dropout's position in its random stream.
const NOT_TRAINED: [&str; 3] = [".running_mean", ".running_var", ".rng_step"];

/// The variables an optimiser should train: all but batch norms' running statistics
/// and dropout's counters.
pub fn trainable_vars(varmap: &VarMap) -> Result<Vec<Var>> {
    Ok(trainable_named(varmap)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// [`trainable_vars`] with their names, sorted by name.
pub fn trainable_named(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let vars = lock(varmap)?;
    let mut named: Vec<(String, Var)> = vars
        .iter()
        .filter(|(k, _)| !NOT_TRAINED.iter().any(|s| k.ends_with(s)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// The variables of `varmap`, or an error if a thread panicked while holding them.
pub(crate) fn lock(varmap: &VarMap) -> Result<std::sync::MutexGuard<'_, HashMap<String, Var>>> {
    varmap
        .data()
        .lock()
        .map_err(|_| Error::BadArgument("the weights are locked by a thread that panicked".into()))
}
