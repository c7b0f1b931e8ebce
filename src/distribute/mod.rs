//! Training on several devices at once (chapter 9, part 3): the counterpart of the
//! tutorial's `tf.distribute` strategies.
//!
//! The tutorial asks for a TPU and falls back to the default strategy:
//!
//! ```python
//! strategy = tf.distribute.TPUStrategy(tpu)          # 8 replicas
//! BATCH_SIZE = 25 * strategy.num_replicas_in_sync     # the global batch
//! with strategy.scope():
//!     model = build_model()
//! ```
//!
//! Here a [`Strategy`] is a list of candle devices: one CPU, several CPU replicas,
//! CUDA GPUs or a Metal GPU. [`Strategy::replicate`] builds one copy of the model per
//! device with equal weights; `Trainer::compile` takes the [`Mirrored`] replicas as it
//! takes one model, and its steps cut every global batch into one shard per replica,
//! run the replicas at the same time on their own threads, average their gradients (an
//! all-reduce, weighted by shard size, so the step is the one-device step on the whole
//! batch) and apply the same update on every replica, which therefore never drift
//! apart. The trainer sees none of this: [`Mirrored`] hands it a
//! [`crate::train::GradientStep`].
//!
//! Batch normalisation computes its statistics per replica, on the replica's shard, as
//! Keras's `BatchNormalization` does by default under a strategy (`synchronized=False`);
//! dropout draws its own masks on each replica (the seed differs by replica).
//!
//! The all-reduce goes through host memory by default: every replica's gradients are
//! copied to the CPU, summed there and copied back. That works for every backend and
//! costs nothing for CPU replicas; for several GPUs it adds two copies per step, which
//! the `nccl` feature avoids: then several CUDA GPUs sum their gradients GPU to GPU with
//! NCCL (through cudarc, as candle's CUDA backend reaches it), each replica's thread
//! driving its own communicator.

use std::fmt;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

use crate::nn::Sequential;
use crate::train::{GradientStep, Loss, Replicas, ShardResult, replica_step, shard_sizes};
use crate::{Error, Result};

mod group;
#[cfg(feature = "nccl")]
mod nccl;

pub use group::{ID_BYTES, ProcessGroup};
#[cfg(feature = "nccl")]
pub(crate) use nccl::NcclComm;

/// Without the `nccl` feature there is no NCCL communicator: this type has no values.
#[cfg(not(feature = "nccl"))]
pub(crate) enum NcclComm {}

#[cfg(not(feature = "nccl"))]
impl NcclComm {
    pub(crate) fn all_reduce_grads(
        &self,
        _grads: &mut candle_core::backprop::GradStore,
        _vars: &[(String, candle_core::Var)],
        _scale: f64,
    ) -> Result<()> {
        match *self {}
    }
}

/// How the replicas' gradients are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduce {
    /// Copied to the CPU, summed there, copied back: any backend.
    HostMemory,
    /// GPU to GPU with NCCL (CUDA, the `nccl` feature).
    Nccl,
}

/// Which kind of device the replicas run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The processor (replicas share its cores).
    Cpu,
    /// NVIDIA GPUs (the `cuda` feature).
    Cuda,
    /// An Apple GPU (the `metal` feature).
    Metal,
}

/// How many devices train together, and which: `tf.distribute`'s `OneDeviceStrategy`
/// (one device) or `MirroredStrategy` (several).
#[derive(Debug, Clone)]
pub struct Strategy {
    backend: Backend,
    devices: Vec<Device>,
    ordinals: Vec<usize>,
    all_reduce: AllReduce,
}

impl Strategy {
    /// One CPU: the default strategy.
    pub fn cpu() -> Self {
        Strategy {
            backend: Backend::Cpu,
            devices: vec![Device::Cpu],
            ordinals: vec![0],
            all_reduce: AllReduce::HostMemory,
        }
    }

    /// `n` replicas on the CPU: data parallelism on one machine's cores, and the way the
    /// tests check the multi-device code path without a GPU.
    pub fn cpu_replicas(n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::Device {
                spec: "cpu:0".into(),
                detail: "no replicas".into(),
                fix: "ask for at least one (cpu:1 or cpu:2)".into(),
            });
        }
        Ok(Strategy {
            backend: Backend::Cpu,
            devices: vec![Device::Cpu; n],
            ordinals: (0..n).collect(),
            all_reduce: AllReduce::HostMemory,
        })
    }

    /// Reads `--devices`: `cpu`, `cpu:N` (N replicas), `cuda` (every GPU), `cuda:0,1`
    /// (those GPUs), `metal`, or `auto` ([`Strategy::detect`]).
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        let (kind, list) = spec.split_once(':').unwrap_or((spec, ""));
        let numbers = || -> Result<Vec<usize>> {
            list.split(',')
                .map(|n| {
                    n.trim().parse::<usize>().map_err(|_| Error::Device {
                        spec: spec.into(),
                        detail: format!("`{n}` is not a number"),
                        fix: "write cpu:2 for two CPU replicas, cuda:0,1 for the first two GPUs"
                            .into(),
                    })
                })
                .collect()
        };
        match kind.to_ascii_lowercase().as_str() {
            "auto" if list.is_empty() => Ok(Strategy::detect()),
            "cpu" if list.is_empty() => Ok(Strategy::cpu()),
            "cpu" => match numbers()?.as_slice() {
                [n] => Strategy::cpu_replicas(*n),
                _ => Err(Error::Device {
                    spec: spec.into(),
                    detail: "the CPU takes a replica count, not a list".into(),
                    fix: "write cpu:4 for four replicas".into(),
                }),
            },
            "cuda" | "gpu" => {
                let ordinals = if list.is_empty() {
                    (0..cuda_device_count()).collect()
                } else {
                    numbers()?
                };
                Strategy::on_gpus(Backend::Cuda, spec, ordinals)
            }
            "metal" => {
                let ordinals = if list.is_empty() { vec![0] } else { numbers()? };
                Strategy::on_gpus(Backend::Metal, spec, ordinals)
            }
            _ => Err(Error::Device {
                spec: spec.into(),
                detail: "unknown device".into(),
                fix: "use cpu, cpu:N, cuda, cuda:0,1, metal or auto".into(),
            }),
        }
    }

    fn on_gpus(backend: Backend, spec: &str, ordinals: Vec<usize>) -> Result<Self> {
        let feature = match backend {
            Backend::Metal => "metal",
            _ => "cuda",
        };
        if ordinals.is_empty() {
            return Err(Error::Device {
                spec: spec.into(),
                detail: format!("no {feature} device found"),
                fix: format!(
                    "build with `--features {feature}` on a machine with such a GPU, or train on the CPU with --devices cpu"
                ),
            });
        }
        let mut sorted = ordinals.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != ordinals.len() {
            return Err(Error::Device {
                spec: spec.into(),
                detail: "a GPU is named twice".into(),
                fix: "name each GPU once, e.g. cuda:0,1".into(),
            });
        }
        let devices = ordinals
            .iter()
            .map(|&i| {
                let device = match backend {
                    Backend::Metal => Device::new_metal(i),
                    _ => Device::new_cuda(i),
                };
                device.map_err(|e| Error::Device {
                    spec: spec.into(),
                    detail: format!("{feature} device {i} is not available ({e})"),
                    fix: format!(
                        "build with `--features {feature}` (needs the {} toolkit), check the GPU number, or use --devices cpu",
                        if feature == "cuda" { "CUDA" } else { "Xcode" }
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Several CUDA GPUs talk through NCCL when it is built in.
        let all_reduce = if backend == Backend::Cuda && devices.len() > 1 && cfg!(feature = "nccl")
        {
            AllReduce::Nccl
        } else {
            AllReduce::HostMemory
        };
        Ok(Strategy {
            backend,
            devices,
            ordinals,
            all_reduce,
        })
    }

    /// Every CUDA GPU when built with `cuda` and any is present, else a Metal GPU when
    /// built with `metal`, else one CPU: what the tutorial's "TPU if there is one, else
    /// the default strategy" becomes.
    pub fn detect() -> Self {
        if candle_core::utils::cuda_is_available()
            && cuda_device_count() > 0
            && let Ok(s) =
                Strategy::on_gpus(Backend::Cuda, "auto", (0..cuda_device_count()).collect())
        {
            return s;
        }
        if candle_core::utils::metal_is_available()
            && let Ok(s) = Strategy::on_gpus(Backend::Metal, "auto", vec![0])
        {
            return s;
        }
        Strategy::cpu()
    }

    /// Replicas that train in step (Keras's `strategy.num_replicas_in_sync`).
    pub fn num_replicas_in_sync(&self) -> usize {
        self.devices.len()
    }

    /// The replicas' devices.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Their backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How gradients are averaged.
    pub fn all_reduce(&self) -> AllReduce {
        self.all_reduce
    }

    /// Averages gradients this way instead: NCCL needs CUDA devices and the `nccl`
    /// feature (on one GPU it is an identity, which checks the code path).
    pub fn with_all_reduce(mut self, all_reduce: AllReduce) -> Result<Self> {
        if all_reduce == AllReduce::Nccl
            && (self.backend != Backend::Cuda || !cfg!(feature = "nccl"))
        {
            return Err(Error::Device {
                spec: format!("{self}"),
                detail: "NCCL averages gradients between CUDA GPUs only".into(),
                fix: "build with --features nccl and train on cuda devices, or keep the host-memory all-reduce".into(),
            });
        }
        self.all_reduce = all_reduce;
        Ok(self)
    }

    /// The tutorial's `BATCH_SIZE = 25 * strategy.num_replicas_in_sync`: each replica
    /// keeps `per_replica` images per step.
    pub fn global_batch_size(&self, per_replica: usize) -> usize {
        per_replica * self.num_replicas_in_sync()
    }

    /// Builds one copy of a model per device, as `with strategy.scope(): build_model()`:
    /// `build` gets the device and the replica's number (for per-replica dropout
    /// seeds); then every replica's variables are set to the first replica's, so all
    /// start equal.
    pub fn replicate(
        &self,
        build: impl Fn(&Device, usize) -> Result<Sequential>,
    ) -> Result<Mirrored> {
        let models = self
            .devices
            .iter()
            .enumerate()
            .map(|(r, device)| build(device, r))
            .collect::<Result<Vec<_>>>()?;
        broadcast_from_first(&models)?;
        Ok(Mirrored {
            models,
            all_reduce: self.all_reduce,
            group: None,
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.num_replicas_in_sync();
        match (self.backend, n) {
            (Backend::Cpu, 1) => write!(f, "one device: the CPU"),
            (Backend::Cpu, _) => write!(
                f,
                "mirrored over {n} CPU replicas (gradients averaged in host memory)"
            ),
            (backend, 1) => write!(f, "one device: {backend:?} GPU {}", self.ordinals[0]),
            (backend, _) => write!(
                f,
                "mirrored over {n} {backend:?} GPUs {:?} (gradients averaged {})",
                self.ordinals,
                match self.all_reduce {
                    AllReduce::Nccl => "GPU to GPU by NCCL",
                    AllReduce::HostMemory => "in host memory",
                }
            ),
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Strategy::parse(s)
    }
}

/// How many CUDA GPUs candle can open (0 without the `cuda` feature).
fn cuda_device_count() -> usize {
    if !candle_core::utils::cuda_is_available() {
        return 0;
    }
    (0..64).take_while(|&i| Device::new_cuda(i).is_ok()).count()
}

/// One model per device, equal weights: what [`Strategy::replicate`] builds, and what
/// `Trainer::compile` takes to train them in step.
pub struct Mirrored {
    models: Vec<Sequential>,
    all_reduce: AllReduce,
    /// With several processes: the group, this process's first shard and the shards of
    /// a global batch in all.
    group: Option<(ProcessGroup, usize, usize)>,
}

impl Mirrored {
    /// The first replica.
    pub fn primary(&self) -> &Sequential {
        &self.models[0]
    }

    /// Every replica.
    pub fn replicas(&self) -> &[Sequential] {
        &self.models
    }

    /// This process's share of a group of processes (one per machine or per GPU, see
    /// [`ProcessGroup`]): it must hold one CUDA replica, and gradients are summed across
    /// processes by NCCL. Each process reads the same global batches and trains on its
    /// shard of each.
    pub fn in_group(mut self, group: &ProcessGroup) -> Result<Self> {
        if group.world_size == 1 {
            return Ok(self);
        }
        let on_cuda = self.models.iter().all(|m| m.device().is_cuda());
        if self.models.len() != 1 || !on_cuda || !cfg!(feature = "nccl") {
            return Err(Error::Device {
                spec: format!("rank {} of {}", group.rank, group.world_size),
                detail: "several processes train together through NCCL, with one CUDA GPU each"
                    .into(),
                fix: "build with --features nccl and give each process one GPU (--devices cuda:N)"
                    .into(),
            });
        }
        let shards = group.shards(1);
        self.group = Some((group.clone(), shards.start, group.world_size));
        self.all_reduce = AllReduce::Nccl;
        Ok(self)
    }

    /// The largest difference between any replica's trained weights and the first
    /// replica's: 0 while they are in sync.
    pub fn max_divergence(&self) -> Result<f32> {
        max_divergence(&self.models)
    }
}

/// Sets every replica's variables to the first replica's (after building, or after
/// loading weights into the first).
pub fn broadcast_from_first(models: &[Sequential]) -> Result<()> {
    let Some((first, rest)) = models.split_first() else {
        return Ok(());
    };
    let source = crate::nn::weights::lock(first.weights())?;
    for model in rest {
        let vars = crate::nn::weights::lock(model.weights())?;
        for (name, var) in vars.iter() {
            let Some(from) = source.get(name) else {
                return Err(Error::Training(format!(
                    "a replica has a variable {name} that the first one lacks; build every replica with the same code"
                )));
            };
            var.set(&from.as_tensor().to_device(var.device())?)?;
        }
    }
    Ok(())
}

/// The largest difference between any replica's trained weights and the first
/// replica's: 0 while they are in sync. Batch norm's moving statistics are left out:
/// each replica keeps its own, from its own shards.
pub fn max_divergence(models: &[Sequential]) -> Result<f32> {
    let Some((first, rest)) = models.split_first() else {
        return Ok(0.0);
    };
    let source: std::collections::HashMap<String, candle_core::Var> =
        first.trainable_variables()?.into_iter().collect();
    let mut worst = 0f32;
    for model in rest {
        for (name, var) in model.trainable_variables()? {
            if let Some(from) = source.get(&name) {
                worst = worst.max(max_abs_diff(var.as_tensor(), from.as_tensor())?);
            }
        }
    }
    Ok(worst)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a.to_device(&Device::Cpu)? - b.to_device(&Device::Cpu)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}

impl From<Mirrored> for Replicas {
    fn from(mirrored: Mirrored) -> Self {
        let step = MirroredStep::new(&mirrored);
        Replicas {
            models: mirrored.models,
            step: Box::new(step),
        }
    }
}

/// A step on replicas: shards of the batch on threads, gradients averaged through
/// host memory or by NCCL.
struct MirroredStep {
    /// This process's first shard and the shards of a batch in all.
    shards: Option<(usize, usize)>,
    /// One NCCL communicator per replica; empty: through host memory.
    nccl: Vec<NcclComm>,
    /// Why NCCL could not start, said at the first step.
    nccl_error: Option<String>,
    describe: String,
}

impl MirroredStep {
    fn new(mirrored: &Mirrored) -> Self {
        let mut step = MirroredStep {
            shards: mirrored
                .group
                .as_ref()
                .map(|(_, first, total)| (*first, *total)),
            nccl: Vec::new(),
            nccl_error: None,
            describe: format!("{} replicas", mirrored.models.len()),
        };
        if mirrored.all_reduce == AllReduce::Nccl {
            let comms = match &mirrored.group {
                Some((group, _, _)) => group_comm(&mirrored.models[0], group).map(|c| vec![c]),
                None => nccl_comms(&mirrored.models),
            };
            match comms {
                Ok(comms) => step.nccl = comms,
                Err(e) => step.nccl_error = Some(e.to_string()),
            }
        }
        step
    }
}

impl GradientStep for MirroredStep {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn own_samples(&self, total: usize) -> std::ops::Range<usize> {
        match self.shards {
            None => 0..total,
            Some((first, count)) => {
                let all = shard_sizes(total, count);
                let start: usize = all[..first].iter().sum();
                let len: usize = all[first..first + 1].iter().sum();
                start..start + len
            }
        }
    }

    fn gradients(
        &mut self,
        replicas: &[Sequential],
        x: &Tensor,
        y: &Tensor,
        loss: Loss,
        class_weight: Option<&[f64]>,
    ) -> Result<Vec<Option<ShardResult>>> {
        if let Some(e) = &self.nccl_error {
            return Err(Error::Training(e.clone()));
        }
        let total = x.dim(0)?;
        let (first, count) = self.shards.unwrap_or((0, replicas.len()));
        let all = shard_sizes(total, count);
        let shards = &all[first..first + replicas.len()];
        let mut start: usize = all[..first].iter().sum();
        let nccl = &self.nccl;
        let mut results: Vec<Option<ShardResult>> = std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (r, (model, &size)) in replicas.iter().zip(shards).enumerate() {
                let comm = nccl.get(r);
                let begin = start;
                start += size;
                handles.push(scope.spawn(move || -> Result<Option<ShardResult>> {
                    let result = if size == 0 {
                        None
                    } else {
                        let xs = x.narrow(0, begin, size)?;
                        let ys = y.narrow(0, begin, size)?;
                        Some(replica_step(model, loss, &xs, &ys, class_weight)?)
                    };
                    match comm {
                        // Every replica sums its share of the gradients on its GPU, an
                        // idle one adding zeros.
                        Some(comm) => nccl_average(comm, model, result, size, total),
                        None => Ok(result),
                    }
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
            return Ok(results);
        }
        if self.shards.is_some() {
            return Err(Error::Training(
                "shards of a batch spread over several processes need NCCL to sum their gradients"
                    .into(),
            ));
        }
        host_average(replicas, &mut results, total)?;
        Ok(results)
    }
}

/// NCCL's sum of every replica's share of the gradients, on its own GPU.
fn nccl_average(
    comm: &NcclComm,
    model: &Sequential,
    result: Option<ShardResult>,
    size: usize,
    total: usize,
) -> Result<Option<ShardResult>> {
    let vars = model.trainable_variables()?;
    let mut result = match result {
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
    comm.all_reduce_grads(&mut result.grads, &vars, size as f64 / total.max(1) as f64)?;
    Ok(Some(result))
}

/// All-reduce through host memory: the shard-size-weighted mean of the gradients,
/// summed on the CPU, handed to every replica.
fn host_average(
    replicas: &[Sequential],
    results: &mut [Option<ShardResult>],
    total: usize,
) -> Result<()> {
    let named: Vec<Vec<(String, candle_core::Var)>> = replicas
        .iter()
        .map(Sequential::trainable_variables)
        .collect::<Result<_>>()?;
    for (j, (name, _)) in named[0].iter().enumerate() {
        let mut sum: Option<Tensor> = None;
        for (r, result) in results.iter().enumerate() {
            let Some(result) = result else { continue };
            let Some(g) = result.grads.get(&named[r][j].1) else {
                continue;
            };
            let g = (g.to_device(&Device::Cpu)? * (result.samples as f64 / total as f64))?;
            sum = Some(match sum {
                Some(s) => (s + g)?,
                None => g,
            });
        }
        let Some(sum) = sum else { continue };
        for (r, model) in replicas.iter().enumerate() {
            let var = &named[r][j].1;
            if named[r][j].0 != *name {
                return Err(Error::Training(format!(
                    "replica {r} has {} where the first has {name}; replicas must be built alike",
                    named[r][j].0
                )));
            }
            let averaged = sum.to_device(model.device())?;
            match &mut results[r] {
                Some(result) => {
                    result.grads.insert(var, averaged);
                }
                empty => {
                    let mut store = empty_grads(var)?;
                    store.insert(var, averaged);
                    *empty = Some(ShardResult {
                        samples: 0,
                        loss: 0.0,
                        probabilities: Vec::new(),
                        grads: store,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A GradStore to put averaged gradients in, for a replica whose shard was empty: the
/// gradients of a zero made from the variable.
fn empty_grads(var: &candle_core::Var) -> Result<GradStore> {
    Ok((var.as_tensor().sum_all()? * 0.0)?.backward()?)
}

#[cfg(feature = "nccl")]
fn group_comm(model: &Sequential, group: &ProcessGroup) -> Result<NcclComm> {
    NcclComm::for_rank(model.device(), group)
}

#[cfg(not(feature = "nccl"))]
fn group_comm(_model: &Sequential, _group: &ProcessGroup) -> Result<NcclComm> {
    Err(Error::Training(
        "this build has no NCCL; rebuild with --features nccl".into(),
    ))
}

#[cfg(feature = "nccl")]
fn nccl_comms(models: &[Sequential]) -> Result<Vec<NcclComm>> {
    let devices: Vec<Device> = models.iter().map(|m| m.device().clone()).collect();
    NcclComm::for_devices(&devices)
}

#[cfg(not(feature = "nccl"))]
fn nccl_comms(_models: &[Sequential]) -> Result<Vec<NcclComm>> {
    Err(Error::Training(
        "this build has no NCCL; rebuild with --features nccl".into(),
    ))
}

/// What `cxr devices --check` measures on each device: one training step of the
/// tutorial's CNN against the same step on the CPU (the largest weight difference after
/// it), then the time of further steps.
#[derive(Debug, Clone)]
pub struct DeviceCheck {
    /// The strategy checked.
    pub strategy: String,
    /// Largest absolute difference between its weights and the CPU's after one step.
    pub max_weight_difference: f32,
    /// Images per second over the timed steps (global batch / seconds per step).
    pub images_per_second: f64,
    /// Global batch of each step.
    pub global_batch: usize,
}

/// Runs the check on `strategy` with `per_replica` images of `image` x `image` per
/// replica, timing `steps` steps.
pub fn check_strategy(
    strategy: &Strategy,
    image: usize,
    per_replica: usize,
    steps: usize,
) -> Result<DeviceCheck> {
    use crate::data::Pipeline;
    use crate::nn::{XrayCnnConfig, xray_cnn_on};
    use crate::train::{Adam, Fit, Trainer};
    use rand::{Rng, SeedableRng};

    let global = strategy.global_batch_size(per_replica);
    let build = |device: &Device, replica: usize| {
        let cfg = XrayCnnConfig {
            image_size: (image, image),
            seed: replica as u64,
            ..Default::default()
        };
        xray_cnn_on(cfg, device)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pixels: Vec<f32> = (0..global * 3 * image * image)
        .map(|_| rng.random_range(0.0..255.0))
        .collect();
    let x = Tensor::from_vec(pixels, (global, 3, image, image), &Device::Cpu)?;
    let y = Tensor::from_iter((0..global).map(|i| (i % 2) as f32), &Device::Cpu)?
        .reshape((global, 1))?;
    let data = Pipeline::from_vec(vec![(x, y)]);
    let fit = |steps| Fit::epochs(1).steps_per_epoch(steps).quiet();
    let compile = |m: Mirrored| Trainer::compile(m, Adam::new(1e-3), Loss::BinaryCrossentropy, &[]);

    // The reference: the same replicas, all on the CPU, from the same weights.
    let reference = Strategy::cpu_replicas(strategy.num_replicas_in_sync())?.replicate(build)?;
    let checked = strategy.replicate(build)?;
    copy_weights(reference.primary(), checked.primary())?;
    broadcast_from_first(checked.replicas())?;
    let mut reference = compile(reference)?;
    reference.fit(&data, fit(1))?;
    let mut trainer = compile(checked)?;
    trainer.fit(&data, fit(1))?;
    let mut worst = 0f32;
    {
        let source = crate::nn::weights::lock(reference.model().weights())?;
        for (name, var) in crate::nn::weights::lock(trainer.model().weights())?.iter() {
            if let Some(s) = source.get(name) {
                worst = worst.max(max_abs_diff(var.as_tensor(), s.as_tensor())?);
            }
        }
    }
    let start = std::time::Instant::now();
    trainer.fit(&data, fit(steps))?;
    let per_step = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    Ok(DeviceCheck {
        strategy: strategy.to_string(),
        max_weight_difference: worst,
        images_per_second: global as f64 / per_step,
        global_batch: global,
    })
}

/// Sets `to`'s variables to `from`'s, across devices.
fn copy_weights(from: &Sequential, to: &Sequential) -> Result<()> {
    let source = crate::nn::weights::lock(from.weights())?;
    for (name, var) in crate::nn::weights::lock(to.weights())?.iter() {
        if let Some(s) = source.get(name) {
            var.set(&s.as_tensor().to_device(var.device())?)?;
        }
    }
    Ok(())
}
