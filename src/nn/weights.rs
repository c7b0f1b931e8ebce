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
/// torchvision's). Every variable must be found with its shape; otherwise nothing is
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

/// The variables an optimiser should train: all but batch norms' running statistics.
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
        .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
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
