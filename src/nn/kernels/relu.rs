//! ReLU in one parallel pass each way.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;

/// Elements per parallel task: large enough that spawning a task costs nothing.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)` in one parallel pass, with a backward pass that reads the output once
/// (candle's takes five single-threaded passes).
struct Relu;

impl candle_core::CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "cxr-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let mut y = for_overwrite::<f32>(x.len())?;
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = v.max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&y.contiguous()?, &ReluBackward)?,
        ))
    }
}

/// The gradient of [`Relu`]: the output gradient where the output is positive.
struct ReluBackward;

impl candle_core::CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "cxr-relu-backward"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        y: &CpuStorage,
        y_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, y) = (f32_slice(grad, grad_layout)?, f32_slice(y, y_layout)?);
        let mut out = for_overwrite::<f32>(g.len())?;
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(o, (g, y))| {
                for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                    *o = if y > 0.0 { g } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(out), grad_layout.shape().clone()))
    }
}

/// ReLU: a fused parallel kernel for `f32` on the CPU, candle's op elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}
