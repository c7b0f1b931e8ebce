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
//! device with equal weights, and [`Mirrored::trainer`] gives a
//! [`Trainer`] that cuts every global batch into one shard per replica, runs the replicas
//! at the same time on their own threads, averages their gradients (an all-reduce,
//! weighted by shard size, so the step is the one-device step on the whole batch) and
//! applies the same update on every replica, which therefore never drift apart.
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

use candle_core::{DType, Device, ModuleT};
use candle_nn::{VarBuilder, VarMap};

use crate::train::{Adam, Trainer};
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
    /// `build` gets the variables' builder (drawing initial weights from `seed`) and the
    /// replica's number (for per-replica seeds); then every replica's variables are set
    /// to the first replica's, so all start equal.
    pub fn replicate<M>(
        &self,
        dtype: DType,
        seed: u64,
        build: impl Fn(VarBuilder, usize) -> candle_core::Result<M>,
    ) -> Result<Mirrored<M>> {
        let mut replicas = Vec::with_capacity(self.devices.len());
        for (r, device) in self.devices.iter().enumerate() {
            let varmap = VarMap::new();
            let vb = crate::nn::weights::seeded_var_builder(&varmap, seed, dtype, device);
            let model = build(vb, r)?;
            replicas.push((model, varmap));
        }
        let mirrored = Mirrored {
            replicas,
            all_reduce: self.all_reduce,
        };
        mirrored.broadcast_from_first()?;
        Ok(mirrored)
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

/// One model per device, equal weights: what [`Strategy::replicate`] builds.
pub struct Mirrored<M> {
    replicas: Vec<(M, VarMap)>,
    all_reduce: AllReduce,
}

impl<M> Mirrored<M> {
    /// The first replica: the model to evaluate, save and predict with.
    pub fn primary(&self) -> (&M, &VarMap) {
        let (model, weights) = &self.replicas[0];
        (model, weights)
    }

    /// Every replica.
    pub fn replicas(&self) -> &[(M, VarMap)] {
        &self.replicas
    }

    /// Sets every replica's variables to the first replica's (after building, or after
    /// loading weights into the first).
    pub fn broadcast_from_first(&self) -> Result<()> {
        let (_, first) = &self.replicas[0];
        let source = crate::nn::weights::lock(first)?;
        for (_, weights) in &self.replicas[1..] {
            let vars = crate::nn::weights::lock(weights)?;
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
    /// replica's: 0 while they are in sync. Batch norm's running statistics are left
    /// out: each replica keeps its own, from its own shards.
    pub fn max_divergence(&self) -> Result<f32> {
        let (_, first) = &self.replicas[0];
        let source: std::collections::HashMap<String, candle_core::Var> =
            crate::nn::weights::trainable_named(first)?
                .into_iter()
                .collect();
        let mut worst = 0f32;
        for (_, weights) in &self.replicas[1..] {
            for (name, var) in crate::nn::weights::trainable_named(weights)? {
                if let Some(from) = source.get(&name) {
                    let diff = (var.as_tensor().to_device(&Device::Cpu)?
                        - from.as_tensor().to_device(&Device::Cpu)?)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?;
                    worst = worst.max(diff);
                }
            }
        }
        Ok(worst)
    }
}

impl<M: ModuleT + Sync> Mirrored<M> {
    /// A trainer over every replica, each with an optimiser from `make_optimizer` (call
    /// it the same way for each).
    pub fn trainer(&self, make_optimizer: impl Fn(&VarMap) -> Result<Adam>) -> Result<Trainer<'_>> {
        let trainer = Trainer::mirrored(
            self.replicas
                .iter()
                .map(|(m, w)| (m as &(dyn ModuleT + Sync), w))
                .collect(),
            make_optimizer,
        )?;
        Ok(match self.all_reduce {
            AllReduce::HostMemory => trainer,
            AllReduce::Nccl => trainer.with_nccl(self.nccl_comms()?),
        })
    }

    /// A trainer for this process's share of a group of processes (one per machine or
    /// per GPU, see [`ProcessGroup`]): this process must hold one CUDA replica, and
    /// gradients are summed across processes by NCCL. Each process reads the same global
    /// batches and trains on its shard of each.
    pub fn trainer_in_group(
        &self,
        group: &ProcessGroup,
        make_optimizer: impl Fn(&VarMap) -> Result<Adam>,
    ) -> Result<Trainer<'_>> {
        if group.world_size == 1 {
            return self.trainer(make_optimizer);
        }
        if self.replicas.len() != 1 || self.all_reduce_capable().is_err() {
            return Err(Error::Device {
                spec: format!("rank {} of {}", group.rank, group.world_size),
                detail: "several processes train together through NCCL, with one CUDA GPU each"
                    .into(),
                fix: "build with --features nccl and give each process one GPU (--devices cuda:N)"
                    .into(),
            });
        }
        let comm = self.group_comm(group)?;
        let shards = group.shards(1);
        Ok(self
            .trainer(make_optimizer)?
            .with_nccl(vec![comm])
            .with_shards(shards.start, group.world_size))
    }

    fn all_reduce_capable(&self) -> Result<()> {
        let on_cuda = self
            .replicas
            .iter()
            .all(|(_, w)| w.all_vars().first().is_some_and(|v| v.device().is_cuda()));
        if on_cuda && cfg!(feature = "nccl") {
            Ok(())
        } else {
            Err(Error::Training("no NCCL here".into()))
        }
    }

    #[cfg(feature = "nccl")]
    fn group_comm(&self, group: &ProcessGroup) -> Result<NcclComm> {
        let device = self.replicas[0]
            .1
            .all_vars()
            .first()
            .map_or(Device::Cpu, |v| v.device().clone());
        NcclComm::for_rank(&device, group)
    }

    #[cfg(not(feature = "nccl"))]
    fn group_comm(&self, _group: &ProcessGroup) -> Result<NcclComm> {
        Err(Error::Training(
            "this build has no NCCL; rebuild with --features nccl".into(),
        ))
    }

    #[cfg(feature = "nccl")]
    fn nccl_comms(&self) -> Result<Vec<NcclComm>> {
        let devices: Vec<Device> = self
            .replicas
            .iter()
            .map(|(_, w)| {
                w.all_vars()
                    .first()
                    .map_or(Device::Cpu, |v| v.device().clone())
            })
            .collect();
        NcclComm::for_devices(&devices)
    }

    #[cfg(not(feature = "nccl"))]
    fn nccl_comms(&self) -> Result<Vec<NcclComm>> {
        Err(Error::Training(
            "this build has no NCCL; rebuild with --features nccl".into(),
        ))
    }
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
    use std::sync::Arc;

    use crate::data::Pipeline;
    use crate::nn::{XrayCnnConfig, xray_cnn};
    use crate::train::{Adam, Constant, FitOptions};
    use rand::{Rng, SeedableRng};

    let global = strategy.global_batch_size(per_replica);
    let build = |vb: VarBuilder, replica: usize| {
        xray_cnn(
            XrayCnnConfig {
                image_size: (image, image),
                seed: replica as u64,
                ..Default::default()
            },
            vb,
        )
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pixels: Vec<f32> = (0..global * 3 * image * image)
        .map(|_| rng.random_range(0.0..255.0))
        .collect();
    let x = candle_core::Tensor::from_vec(pixels, (global, 3, image, image), &Device::Cpu)?;
    let y = candle_core::Tensor::from_iter((0..global).map(|i| (i % 2) as f32), &Device::Cpu)?
        .reshape((global, 1))?;
    let data = Pipeline::from_vec(vec![(x, y)]);
    let options = |steps| FitOptions {
        epochs: 1,
        steps_per_epoch: Some(steps),
        progress: false,
        ..Default::default()
    };
    let adam = |w: &VarMap| Adam::new(w, Arc::new(Constant(1e-3)));

    // The reference: the same replicas, all on the CPU.
    let reference =
        Strategy::cpu_replicas(strategy.num_replicas_in_sync())?.replicate(DType::F32, 1, build)?;
    let checked = strategy.replicate(DType::F32, 1, build)?;
    let (_, from) = reference.primary();
    let (_, to) = checked.primary();
    {
        let source = crate::nn::weights::lock(from)?;
        for (name, var) in crate::nn::weights::lock(to)?.iter() {
            if let Some(s) = source.get(name) {
                var.set(&s.as_tensor().to_device(var.device())?)?;
            }
        }
    }
    checked.broadcast_from_first()?;
    reference
        .trainer(adam)?
        .fit(&data, None, &options(1), &mut [])?;
    let mut trainer = checked.trainer(adam)?;
    trainer.fit(&data, None, &options(1), &mut [])?;
    let mut worst = 0f32;
    {
        let source = crate::nn::weights::lock(from)?;
        for (name, var) in crate::nn::weights::lock(to)?.iter() {
            if let Some(s) = source.get(name) {
                let diff = (var.as_tensor().to_device(&Device::Cpu)? - s.as_tensor())?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                worst = worst.max(diff);
            }
        }
    }
    let start = std::time::Instant::now();
    trainer.fit(&data, None, &options(steps), &mut [])?;
    let per_step = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    Ok(DeviceCheck {
        strategy: strategy.to_string(),
        max_weight_difference: worst,
        images_per_second: global as f64 / per_step,
        global_batch: global,
    })
}
