//! Gradients averaged GPU to GPU with NCCL (the `nccl` feature), instead of through host
//! memory: one communicator per GPU of this process, made together with
//! `ncclCommInitAll`, each used by its replica's thread.

use candle_core::backprop::GradStore;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Device, Layout, Shape, Var};

use crate::{Error, Result};

/// The communicator of one replica's GPU.
pub(crate) struct NcclComm(Comm);

// SAFETY: a communicator is used by one thread at a time (its replica's, during a step),
// which is what NCCL requires.
unsafe impl Send for NcclComm {}
unsafe impl Sync for NcclComm {}

impl NcclComm {
    /// One communicator per device, in order (each a CUDA device of this process).
    pub(crate) fn for_devices(devices: &[Device]) -> Result<Vec<NcclComm>> {
        let streams = devices
            .iter()
            .map(|d| Ok(d.as_cuda_device()?.cuda_stream()))
            .collect::<Result<Vec<_>>>()?;
        let comms = Comm::from_devices(streams).map_err(|e| {
            Error::Training(format!(
                "NCCL could not start ({e:?}); check that every GPU is visible, or build without the nccl feature to average through host memory"
            ))
        })?;
        Ok(comms.into_iter().map(NcclComm).collect())
    }

    /// The communicator of this process's one GPU in a group of processes: rank 0 makes
    /// NCCL's id and shares it through the group's file, every rank joins with it.
    pub(crate) fn for_rank(device: &Device, group: &super::ProcessGroup) -> Result<NcclComm> {
        use candle_core::cuda_backend::cudarc::nccl::safe::Id;
        let failed = |e: &dyn std::fmt::Debug| {
            Error::Training(format!(
                "NCCL could not start rank {} of {} ({e:?}); check that every machine reaches the others",
                group.rank, group.world_size
            ))
        };
        let bytes = group.share_id(|| {
            let id = Id::new().map_err(|e| failed(&e))?;
            Ok(id.internal().map(|c| c as u8))
        })?;
        let id = Id::uninit(bytes.map(|b| b as std::ffi::c_char));
        let stream = device.as_cuda_device()?.cuda_stream();
        Comm::from_rank(stream, group.rank, group.world_size, id)
            .map(NcclComm)
            .map_err(|e| failed(&e))
    }

    /// Replaces each of `vars`' gradients in `grads` by the sum over replicas of
    /// `scale` times it (a replica without a gradient adds zeros): with `scale` the
    /// replica's share of the batch, every replica ends with the same average. Every
    /// replica must call this at the same step with the same variables, in the same order.
    pub(crate) fn all_reduce_grads(
        &self,
        grads: &mut GradStore,
        vars: &[(String, Var)],
        scale: f64,
    ) -> Result<()> {
        for (_, var) in vars {
            let g = match grads.get(var) {
                Some(g) => (g * scale)?,
                None => var.as_tensor().zeros_like()?,
            };
            let summed = g
                .to_dtype(candle_core::DType::F32)?
                .contiguous()?
                .apply_op1_no_bwd(&AllReduce { comm: &self.0 })?
                .to_dtype(var.dtype())?;
            grads.insert(var, summed);
        }
        Ok(())
    }
}

/// The sum of a tensor over all ranks, as a candle op on CUDA storage.
struct AllReduce<'a> {
    comm: &'a Comm,
}

// SAFETY: see NcclComm; the op lives for one call on the replica's thread.
unsafe impl Send for AllReduce<'_> {}
unsafe impl Sync for AllReduce<'_> {}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!(
            "the NCCL all-reduce takes CUDA tensors; CPU replicas average through host memory"
        )
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let n = layout.shape().elem_count();
        let source = storage.as_cuda_slice::<f32>()?;
        match layout.contiguous_offsets() {
            Some((0, end)) if end == n && source.len() == n => {}
            _ => candle_core::bail!("the NCCL all-reduce needs a contiguous tensor"),
        }
        let mut summed = storage.device.alloc_zeros::<f32>(n)?;
        self.comm
            .all_reduce(source, &mut summed, &ReduceOp::Sum)
            .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce failed: {e:?}")))?;
        Ok((
            CudaStorage::wrap_cuda_slice(summed, storage.device.clone()),
            layout.shape().clone(),
        ))
    }
}
