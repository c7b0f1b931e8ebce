//! [`Sequential`]: a model that owns its layers and its weights, built layer by layer as
//! Keras builds one (introduced in chapter 4, trained from chapter 6 on).
//!
//! Owning is what lets a notebook keep a model in one cell and train it in the next: a
//! value that borrowed its weights could not outlive the cell that made it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::summary::{LayerRow, Summary};
use super::weights::{NOT_TRAINED, lock, seeded_var_builder};
use crate::{Error, Result};

/// Everything a layer needs to make its weights: where they go, and its own seed.
pub struct BuildContext<'a> {
    /// Creates the layer's variables under its name (`conv1.weight`), drawn from the
    /// model's seed.
    pub vb: VarBuilder<'static>,
    /// A seed of the layer's own (the model's seed and the layer's position), for
    /// dropout's masks.
    pub seed: u64,
    /// The layer's name: its variables are `{name}.*`.
    pub name: &'a str,
}

/// What a layer becomes once built: the module that computes it and its output shape.
pub struct Built {
    /// The computation (inference or training mode).
    pub module: Box<dyn ModuleT + Send + Sync>,
    /// The output's shape without the batch axis, channels first.
    pub output_shape: Vec<usize>,
}

/// A layer as `Sequential::add` takes it: a description (`Conv2D::new(16, 3)`) that
/// builds itself for the shape of its input, as Keras layers do.
pub trait Layer {
    /// Keras's class name, shown by `summary()` (`"Conv2D"`).
    fn kind(&self) -> String;

    /// Creates the weights for an input of `input_shape` (without the batch axis) and
    /// returns the module with its output shape.
    fn build(self, input_shape: &[usize], ctx: BuildContext<'_>) -> Result<Built>;
}

enum Module {
    Leaf(Box<dyn ModuleT + Send + Sync>),
    Nested(Box<Sequential>),
}

struct Entry {
    name: String,
    kind: String,
    output_shape: Vec<usize>,
    module: Module,
    /// The layer's variables, by their names in the model.
    vars: Vec<String>,
    trainable: bool,
}

impl Entry {
    fn forward(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        // A frozen batch norm normalises with its moving statistics even while the
        // rest of the model trains, as Keras's does.
        let train = train && (self.trainable || self.kind != "BatchNormalization");
        match &self.module {
            Module::Leaf(m) => m.forward_t(xs, train),
            Module::Nested(model) => model.forward_t(xs, train),
        }
    }
}

/// A stack of layers, each fed by the one before: Keras's `Sequential` (and its
/// functional models that are a chain). It owns its weights, counts its parameters as
/// Keras does, freezes layers, saves and loads itself.
///
/// ```
/// use cxr::nn::Sequential;
/// use cxr::nn::layers::{Conv2D, Dense, Flatten, MaxPool2D};
///
/// let mut model = Sequential::new("tiny", [3, 32, 32]);
/// model.add("conv", Conv2D::new(8, 3).relu().padding_same())?;
/// model.add("pool", MaxPool2D::new())?;
/// model.add("flatten", Flatten)?;
/// model.add("output", Dense::new(1))?;
/// println!("{}", model.summary());
/// assert_eq!(model.summary().total_params(), 3 * 3 * 3 * 8 + 8 + 8 * 16 * 16 + 1);
/// # Ok::<(), cxr::Error>(())
/// ```
pub struct Sequential {
    name: String,
    input_shape: Vec<usize>,
    entries: Vec<Entry>,
    weights: VarMap,
    seed: u64,
    device: Device,
    dtype: DType,
    architecture: Option<serde_json::Value>,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layers: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} ({})", e.name, e.kind))
            .collect();
        f.debug_struct("Sequential")
            .field("name", &self.name)
            .field("input_shape", &self.input_shape)
            .field("layers", &layers)
            .finish()
    }
}

/// The safetensors metadata key holding what a model file is.
const FORMAT_KEY: &str = "format";
/// What [`Sequential::save`] writes under [`FORMAT_KEY`].
pub const MODEL_FORMAT: &str = "cxr-model-1";

impl Sequential {
    /// An empty model named `name` for inputs of `input_shape` without the batch axis,
    /// channels first (`[3, 180, 180]`); weights are drawn from seed 0, on the CPU, in
    /// f32 unless [`Sequential::seed`], [`Sequential::on`] or [`Sequential::dtype`] say
    /// otherwise.
    pub fn new(name: impl Into<String>, input_shape: impl Into<Vec<usize>>) -> Self {
        Sequential {
            name: name.into(),
            input_shape: input_shape.into(),
            entries: Vec::new(),
            weights: VarMap::new(),
            seed: 0,
            device: Device::Cpu,
            dtype: DType::F32,
            architecture: None,
        }
    }

    /// Draws the initial weights of the layers added from now on from `seed`
    /// (`keras.utils.set_random_seed`): the same seed builds the same model.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Puts the weights of the layers added from now on on `device`.
    pub fn on(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    /// Makes the weights of the layers added from now on of this type (f32 unless told).
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Adds a layer named `name` on top: its weights are created now, for the shape the
    /// model has so far, under `{name}.`.
    pub fn add(&mut self, name: impl Into<String>, layer: impl Layer) -> Result<&mut Self> {
        let name = name.into();
        self.check_new_name(&name)?;
        let kind = layer.kind();
        let input = self.output_shape().to_vec();
        let before: BTreeSet<String> = lock(&self.weights)?.keys().cloned().collect();
        let vb = seeded_var_builder(&self.weights, self.seed, self.dtype, &self.device).pp(&name);
        let seed = layer_seed(self.seed, self.entries.len());
        let built = layer
            .build(
                &input,
                BuildContext {
                    vb,
                    seed,
                    name: &name,
                },
            )
            .map_err(|e| {
                Error::BadArgument(format!(
                    "layer `{name}` ({kind}) cannot follow an output of shape {input:?}: {e}"
                ))
            })?;
        let vars: Vec<String> = lock(&self.weights)?
            .keys()
            .filter(|k| !before.contains(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.entries.push(Entry {
            name,
            kind,
            output_shape: built.output_shape,
            module: Module::Leaf(built.module),
            vars,
            trainable: true,
        });
        Ok(self)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape of one input, without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The shape of one output, without the batch axis.
    pub fn output_shape(&self) -> &[usize] {
        self.entries
            .last()
            .map_or(&self.input_shape, |e| &e.output_shape)
    }

    /// The names of the layers, in order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every variable: weights, batch norms' moving statistics, dropout's counters.
    pub fn weights(&self) -> &VarMap {
        &self.weights
    }

    /// Keras's `layer.trainable = value` for the layer `name` (for a model used as a
    /// layer, every layer inside it too). A frozen layer keeps its weights: the
    /// optimiser gets no gradient for them and keeps no state for them, and a frozen
    /// batch norm uses its moving statistics even in training.
    pub fn set_trainable(&mut self, name: &str, trainable: bool) -> Result<()> {
        let names = self.layer_names().join(", ");
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                Error::BadArgument(format!(
                    "the model {} has no layer `{name}`; its layers are {names}",
                    self.name
                ))
            })?;
        entry.trainable = trainable;
        if let Module::Nested(inner) = &mut entry.module {
            inner.trainable(trainable);
        }
        Ok(())
    }

    /// Keras's `model.trainable = value`: every layer.
    pub fn trainable(&mut self, trainable: bool) {
        for entry in &mut self.entries {
            entry.trainable = trainable;
            if let Module::Nested(inner) = &mut entry.module {
                inner.trainable(trainable);
            }
        }
    }

    /// Whether the variable `name` is trained: it is a weight (not a moving statistic
    /// or a counter) of a layer that is not frozen.
    fn is_trained(&self, name: &str) -> bool {
        if NOT_TRAINED.iter().any(|s| name.ends_with(s)) {
            return false;
        }
        self.entries
            .iter()
            .find(|e| e.vars.iter().any(|v| v == name))
            .is_some_and(|e| {
                e.trainable
                    && match &e.module {
                        Module::Leaf(_) => true,
                        Module::Nested(inner) => name
                            .strip_prefix(&format!("{}.", e.name))
                            .is_some_and(|n| inner.is_trained(n)),
                    }
            })
    }

    /// The variables an optimiser trains, sorted by name.
    pub fn trainable_variables(&self) -> Result<Vec<(String, Var)>> {
        let vars = lock(&self.weights)?;
        let mut named: Vec<(String, Var)> = vars
            .iter()
            .filter(|(k, _)| self.is_trained(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(named)
    }

    /// Keras's `model.summary()`: every layer with its output shape and parameters,
    /// frozen ones counted as non-trainable.
    pub fn summary(&self) -> Summary {
        let vars = self.weights.data().lock().map(|v| {
            v.iter()
                .map(|(k, var)| (k.clone(), var.elem_count()))
                .collect::<HashMap<_, _>>()
        });
        let sizes = vars.unwrap_or_default();
        let mut rows = vec![LayerRow {
            name: "input_layer".into(),
            kind: "InputLayer".into(),
            output_shape: self.input_shape.clone(),
            trainable: 0,
            non_trainable: 0,
        }];
        for e in &self.entries {
            let (mut trainable, mut frozen) = (0, 0);
            for v in e.vars.iter().filter(|v| !v.ends_with(".rng_step")) {
                let n = sizes.get(v).copied().unwrap_or(0);
                if self.is_trained(v) {
                    trainable += n;
                } else {
                    frozen += n;
                }
            }
            rows.push(LayerRow {
                name: e.name.clone(),
                kind: e.kind.clone(),
                output_shape: e.output_shape.clone(),
                trainable,
                non_trainable: frozen,
            });
        }
        Summary {
            name: self.name.clone(),
            rows,
        }
    }

    fn check_input(&self, xs: &Tensor) -> candle_core::Result<()> {
        if xs.rank() == self.input_shape.len() + 1 && xs.dims()[1..] == self.input_shape[..] {
            return Ok(());
        }
        let expected: Vec<String> = self.input_shape.iter().map(|d| d.to_string()).collect();
        candle_core::bail!(
            "{} expects input (N, {}), got {:?}; {}",
            self.name,
            expected.join(", "),
            xs.dims(),
            match self.input_shape.as_slice() {
                [c, h, w] => format!(
                    "give it {c}-channel images of {h} x {w}, channels first, or build the model for the size you have"
                ),
                _ => "reshape the input to the model's".to_string(),
            }
        )
    }

    fn position(&self, layer: &str) -> Result<usize> {
        self.entries
            .iter()
            .position(|e| e.name == layer)
            .ok_or_else(|| {
                Error::BadArgument(format!(
                    "the model {} has no layer `{layer}`; its layers are {}",
                    self.name,
                    self.layer_names().join(", ")
                ))
            })
    }

    /// The output of layer `layer` for `xs`, in inference mode: what that layer "sees"
    /// (for Grad-CAM, chapter 10).
    pub fn forward_until(&self, xs: &Tensor, layer: &str) -> Result<Tensor> {
        self.check_input(xs)?;
        let end = self.position(layer)?;
        let mut x = xs.clone();
        for e in &self.entries[..=end] {
            x = e.forward(&x, false)?;
        }
        Ok(x)
    }

    /// The rest of the model from the output of layer `layer`, in inference mode:
    /// `forward_from(forward_until(x, l), l)` is the model's output.
    pub fn forward_from(&self, activations: &Tensor, layer: &str) -> Result<Tensor> {
        let start = self.position(layer)? + 1;
        let mut x = activations.clone();
        for e in &self.entries[start..] {
            x = e.forward(&x, false)?;
        }
        Ok(x)
    }

    /// How many leading layers hold no trained weight and are worth cutting the
    /// backward pass after (at least one of them is frozen).
    fn frozen_prefix(&self) -> usize {
        let mut prefix = 0;
        let mut any_frozen = false;
        for e in &self.entries {
            if e.vars.iter().any(|v| self.is_trained(v)) {
                break;
            }
            any_frozen |= !e.trainable && !e.vars.is_empty();
            prefix += 1;
        }
        if any_frozen { prefix } else { 0 }
    }

    /// Records how the model was made (a builder's name and configuration), saved with
    /// its weights so that [`super::load_model`] can rebuild it.
    pub fn set_architecture(&mut self, architecture: serde_json::Value) {
        self.architecture = Some(architecture);
    }

    /// How the model was made, when its builder said so.
    pub fn architecture(&self) -> Option<&serde_json::Value> {
        self.architecture.as_ref()
    }

    /// Saves every variable to `path` (safetensors), atomically, with the model's name,
    /// input shape and architecture in the file's header, so that the file alone is
    /// enough to use it ([`super::load_model`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors: HashMap<String, Tensor> = lock(&self.weights)?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let mut metadata = HashMap::new();
        metadata.insert(FORMAT_KEY.to_string(), MODEL_FORMAT.to_string());
        metadata.insert("name".to_string(), self.name.clone());
        metadata.insert(
            "input_shape".to_string(),
            serde_json::to_string(&self.input_shape).unwrap_or_default(),
        );
        if let Some(a) = &self.architecture {
            metadata.insert("architecture".to_string(), a.to_string());
        }
        crate::io::replace_atomic(path, |tmp| {
            safetensors::serialize_to_file(&tensors, Some(metadata.clone()), tmp).map_err(|e| {
                Error::Io {
                    path: path.into(),
                    source: std::io::Error::other(e),
                }
            })
        })
    }

    /// Loads weights saved by [`Sequential::save`] (or by cxr's checkpoints): every
    /// variable must be in the file with its shape, or nothing changes and the error
    /// lists what does not fit.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        super::weights::load(&self.weights, path, |name| Some(name.to_string()))
    }

    /// Loads weights stored under other names: `rename` maps each of this model's
    /// variable names to the file's (e.g. [`super::vgg::torchvision_name`]).
    pub fn load_weights_renamed(
        &self,
        path: impl AsRef<Path>,
        rename: impl Fn(&str) -> Option<String>,
    ) -> Result<()> {
        super::weights::load(&self.weights, path, rename)
    }
}

impl ModuleT for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.check_input(xs)?;
        let frozen = if train { self.frozen_prefix() } else { 0 };
        // Predicting (no training, no gradient wanted for the input): a batch norm
        // followed by a max-pool may run after the pool, on a quarter of the values.
        let predicting = !train && !xs.track_op() && xs.device().is_cpu();
        let mut x = xs.clone();
        let mut i = 0;
        while let Some(e) = self.entries.get(i) {
            if predicting
                && let Some(pool) = self.entries.get(i + 1)
                && self.norm_commutes_with_pool(e, pool)?
            {
                x = e.forward(&pool.forward(&x, false)?, false)?;
                i += 2;
                continue;
            }
            x = e.forward(&x, train)?;
            i += 1;
            // Nothing before here is trained: the backward pass can stop.
            if i == frozen {
                x = x.detach();
            }
        }
        Ok(x)
    }
}

impl Sequential {
    /// Whether `norm`, in inference mode, then `pool` gives the same values to the bit
    /// as `pool` then `norm`: a batch norm before a max-pool whose per-channel map
    /// `scale * x + shift` never decreases as `x` grows, rounding included. Then the
    /// window's largest input gives its largest output, and a NaN (which the pool
    /// passes on) stays one. The norm itself answers, on a probe of 0 and +inf per
    /// channel: a finite image of 0 means a finite scale and shift, and +inf staying
    /// +inf a positive scale.
    fn norm_commutes_with_pool(&self, norm: &Entry, pool: &Entry) -> candle_core::Result<bool> {
        if norm.kind != "BatchNormalization" || pool.kind != "MaxPooling2D" {
            return Ok(false);
        }
        let Some(&channels) = norm.output_shape.first() else {
            return Ok(false);
        };
        let probe = [0f32, f32::INFINITY].repeat(channels);
        let probe = Tensor::from_vec(probe, (1, channels, 1, 2), &self.device)?;
        let mapped = norm.forward(&probe.to_dtype(self.dtype)?, false)?;
        let mapped = mapped
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(mapped
            .chunks_exact(2)
            .all(|m| m[0].is_finite() && m[1] == f32::INFINITY))
    }
}

impl Sequential {
    /// Adds a whole model as one layer: the transfer-learning pattern, a VGG16 base
    /// under a new head. Its variables join this model's under `{name}.`, and it shows
    /// as one row of the summary, as Keras shows a nested model; freezing it
    /// ([`Sequential::set_trainable`]) freezes every layer in it.
    pub fn add_model(&mut self, name: impl Into<String>, model: Sequential) -> Result<&mut Self> {
        let name = name.into();
        self.check_new_name(&name)?;
        let input = self.output_shape();
        if input != model.input_shape.as_slice() {
            return Err(Error::BadArgument(format!(
                "the model {} takes inputs of shape {:?}, but the layers before `{name}` give {input:?}",
                model.name, model.input_shape
            )));
        }
        let mut vars = Vec::new();
        {
            let inner = lock(&model.weights)?;
            let mut outer = lock(&self.weights)?;
            for (inner_name, var) in inner.iter() {
                let full = format!("{name}.{inner_name}");
                outer.insert(full.clone(), var.clone());
                vars.push(full);
            }
        }
        vars.sort();
        self.entries.push(Entry {
            name,
            kind: "Functional".into(),
            output_shape: model.output_shape().to_vec(),
            trainable: true,
            vars,
            module: Module::Nested(Box::new(model)),
        });
        Ok(self)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('.') || name == "input_layer" {
            return Err(Error::BadArgument(format!(
                "`{name}` cannot name a layer: use letters, digits and `_` (no dots), and not `input_layer`"
            )));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::BadArgument(format!(
                "the model {} already has a layer named `{name}`; give each layer its own name",
                self.name
            )));
        }
        Ok(())
    }
}

/// A layer's own seed from the model's: distinct streams for distinct layers.
pub fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(layer as u64)
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use crate::nn::{XrayCnnConfig, xray_cnn};

    /// The pairs that predicting reorders: each of the tutorial CNN's four batch norms
    /// before a max-pool while its scales are positive, not the one whose gamma turns
    /// negative, and none of the three before a dropout (tests/nn_inference.rs checks
    /// the predictions are the same to the bit).
    #[test]
    fn batch_norm_goes_after_the_pool_only_with_positive_scales() {
        let model = xray_cnn(XrayCnnConfig::default()).unwrap();
        let pairs = |model: &super::Sequential| -> Vec<bool> {
            let entries = &model.entries;
            let norms = entries.iter().zip(&entries[1..]);
            let norms = norms.filter(|(e, _)| e.kind == "BatchNormalization");
            norms
                .map(|(e, p)| model.norm_commutes_with_pool(e, p).unwrap())
                .collect()
        };
        assert_eq!(pairs(&model), [true, true, true, true, false, false, false]);
        let vars = model.weights().data().lock().unwrap();
        let gamma = &vars["block2_bn.weight"];
        let mut values = gamma.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[3] = -0.5;
        let negative = Tensor::from_vec(values, gamma.shape(), gamma.device()).unwrap();
        gamma.set(&negative).unwrap();
        drop(vars);
        assert_eq!(
            pairs(&model),
            [true, false, true, true, false, false, false]
        );
    }
}
