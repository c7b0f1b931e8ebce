//! Saving and loading weights as safetensors, atomically, with errors that list every
//! tensor that does not fit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

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
/// absent: they keep their value); otherwise nothing is changed and the error lists
/// each missing and each mis-shaped tensor.
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
pub(crate) const NOT_TRAINED: [&str; 3] = [".running_mean", ".running_var", ".rng_step"];

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

/// A `VarBuilder` whose new variables are drawn from a seeded generator: the same seed
/// builds the same model. (candle's CPU generator cannot be seeded, so models built
/// with `VarBuilder::from_varmap` start from different weights on every run.) Each
/// variable's stream depends on the seed and its name alone, so the order in which a
/// model creates its layers does not matter. Variables already in `varmap` are kept.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(Seeded {
            map: varmap.clone(),
            seed,
        }),
        dtype,
        device.clone(),
    )
}

struct Seeded {
    map: VarMap,
    seed: u64,
}

/// FNV-1a: a hash that is the same on every machine and Rust version.
fn stable_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Seeded {
    fn draw(&self, shape: &Shape, name: &str, init: Init) -> candle_core::Result<Tensor> {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(name));
        let n = shape.elem_count();
        let uniform = |lo: f64, up: f64, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f64> {
            let d = rand_distr::Uniform::new(lo, up).unwrap_or_else(|_| {
                rand_distr::Uniform::new_inclusive(lo, lo).expect("a one-point range")
            });
            (0..n).map(|_| d.sample(rng)).collect()
        };
        let normal = |mean: f64, stdev: f64, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f64> {
            let d = rand_distr::Normal::new(mean, stdev.max(0.0))
                .unwrap_or_else(|_| rand_distr::Normal::new(mean, 0.0).expect("zero spread"));
            (0..n).map(|_| d.sample(rng)).collect()
        };
        let values = match init {
            Init::Const(v) => vec![v; n],
            Init::Uniform { lo, up } => uniform(lo, up, &mut rng),
            Init::Randn { mean, stdev } => normal(mean, stdev, &mut rng),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(-bound, bound, &mut rng)
                    }
                    candle_nn::init::NormalOrUniform::Normal => normal(0.0, std, &mut rng),
                }
            }
        };
        Tensor::from_vec(values, shape.clone(), &Device::Cpu)
    }
}

impl candle_nn::var_builder::SimpleBackend for Seeded {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self.map.data().lock().map_err(|_| {
            candle_core::Error::Msg("the weights are locked by a thread that panicked".into())
        })?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "{name} exists with shape {:?}, asked for {:?}",
                    var.dims(),
                    shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let tensor = self
            .draw(&shape, name, init)?
            .to_dtype(dtype)?
            .to_device(device)?;
        let var = Var::from_tensor(&tensor)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: a seeded builder makes variables with a shape; use `get`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .is_ok_and(|vars| vars.contains_key(name))
    }
}
