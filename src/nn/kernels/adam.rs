//! One Adam update of one weight, in place: three passes (the two moments, then the
//! weight) where candle's ops make a dozen and allocate as many tensors, on the CPU as
//! on a GPU.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

use super::common::*;

/// The numbers of one Adam step: the moments' decay rates, the step size with both bias
/// corrections folded in, and epsilon (added to `sqrt(v)`, as Keras adds it).
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub beta_1: f64,
    pub beta_2: f64,
    pub alpha: f64,
    pub epsilon: f64,
}

/// `m += (g - m)(1 - beta_1)`, `v += (g² - v)(1 - beta_2)`,
/// `w -= alpha m / (sqrt(v) + epsilon)`, in place. Each value is rounded as candle's ops
/// round it (one `f32` operation at a time), so either path gives the same weights.
pub fn adam_update(w: &Var, m: &Var, v: &Var, g: &Tensor, step: AdamStep) -> Result<()> {
    let f32s = [w, m, v, g]
        .iter()
        .all(|t| t.dtype() == candle_core::DType::F32);
    let here = w.device().is_cpu() || on_gpu(&[w, m, v, g]);
    if f32s && here && [w, m, v].iter().all(|t| t.is_contiguous()) {
        let g = g.contiguous()?;
        m.inplace_op2(
            &g,
            &Moment {
                keep: 1.0 - step.beta_1,
                square: false,
            },
        )?;
        v.inplace_op2(
            &g,
            &Moment {
                keep: 1.0 - step.beta_2,
                square: true,
            },
        )?;
        return w.inplace_op3(
            m,
            v,
            &Apply {
                alpha: step.alpha,
                epsilon: step.epsilon,
            },
        );
    }
    let m_next = (m.as_tensor() + ((g - m.as_tensor())? * (1.0 - step.beta_1))?)?;
    let v_next = (v.as_tensor() + ((g.sqr()? - v.as_tensor())? * (1.0 - step.beta_2))?)?;
    let update = ((&m_next / (v_next.sqrt()? + step.epsilon)?)? * step.alpha)?;
    w.set(&(w.as_tensor() - update)?)?;
    m.set(&m_next)?;
    v.set(&v_next)
}

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// A moment moved towards the gradient (or its square).
struct Moment {
    keep: f64,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "cxr-adam-moment"
    }

    fn cpu_fwd(
        &self,
        ms: &mut CpuStorage,
        ml: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let (m, g) = (f32_slice_mut(ms, ml)?, f32_slice(gs, gl)?);
        if m.len() != g.len() {
            candle_core::bail!(
                "Adam: a gradient of {} values for a weight of {}",
                g.len(),
                m.len()
            );
        }
        let (keep, square) = (self.keep as f32, self.square);
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = if square { g * g } else { g };
                    // candle's `affine` adds its 0 too (which turns -0 into +0).
                    *m += (g - *m) * keep + 0.0;
                }
            });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ms: &mut candle_core::CudaStorage,
        ml: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<()> {
        gpu::moment(self, ms, ml, gs, gl)
    }
}

/// The weight moved by the moments.
struct Apply {
    alpha: f64,
    epsilon: f64,
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "cxr-adam-apply"
    }

    fn cpu_fwd(
        &self,
        ws: &mut CpuStorage,
        wl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        let (w, m, v) = (
            f32_slice_mut(ws, wl)?,
            f32_slice(ms, ml)?,
            f32_slice(vs, vl)?,
        );
        if m.len() != w.len() || v.len() != w.len() {
            candle_core::bail!(
                "Adam: moments of {} and {} values for a weight of {}",
                m.len(),
                v.len(),
                w.len()
            );
        }
        let (alpha, eps) = (self.alpha as f32, self.epsilon as f32);
        w.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(w, (m, v))| {
                for (w, (&m, &v)) in w.iter_mut().zip(m.iter().zip(v)) {
                    *w -= m / (v.sqrt() + eps) * alpha + 0.0;
                }
            });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        ws: &mut candle_core::CudaStorage,
        wl: &Layout,
        ms: &candle_core::CudaStorage,
        ml: &Layout,
        vs: &candle_core::CudaStorage,
        vl: &Layout,
    ) -> Result<()> {
        gpu::apply(self, ws, wl, ms, ml, vs, vl)
    }
}

/// The CUDA half: `adam_moment` twice, then `adam_apply`.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{CudaStorage, Layout, Result};

    use super::super::cuda::{grid, launch, view, view_mut};
    use super::{Apply, Moment};

    pub(super) fn moment(
        op: &Moment,
        ms: &mut CudaStorage,
        ml: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
    ) -> Result<()> {
        let dev = ms.device.clone();
        let total = ml.shape().elem_count();
        let g = view(gs, gl)?;
        let mut m = view_mut(ms, ml)?;
        let (total64, keep, square) = (total as i64, op.keep as f32, op.square as i32);
        launch!(
            dev,
            "adam_moment",
            grid(total),
            &mut m,
            &g,
            &total64,
            &keep,
            &square
        )
    }

    pub(super) fn apply(
        op: &Apply,
        ws: &mut CudaStorage,
        wl: &Layout,
        ms: &CudaStorage,
        ml: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> Result<()> {
        let dev = ws.device.clone();
        let total = wl.shape().elem_count();
        let (m, v) = (view(ms, ml)?, view(vs, vl)?);
        let mut w = view_mut(ws, wl)?;
        let (total64, alpha, eps) = (total as i64, op.alpha as f32, op.epsilon as f32);
        launch!(
            dev,
            "adam_apply",
            grid(total),
            &mut w,
            &m,
            &v,
            &total64,
            &alpha,
            &eps
        )
    }
}
