//! One Adam update of one weight: on a GPU three in-place kernels (the two moments, then
//! the weight) where candle's ops launch a dozen and allocate as many tensors.

use candle_core::{Result, Tensor, Var};

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
/// `w -= alpha m / (sqrt(v) + epsilon)`, in place.
pub fn adam_update(w: &Var, m: &Var, v: &Var, g: &Tensor, step: AdamStep) -> Result<()> {
    #[cfg(feature = "cuda")]
    if super::common::on_gpu(&[w, m, v, g]) && [w, m, v].iter().all(|t| t.is_contiguous()) {
        return gpu::adam_update(w, m, v, &g.contiguous()?, step);
    }
    let m_next = (m.as_tensor() + ((g - m.as_tensor())? * (1.0 - step.beta_1))?)?;
    let v_next = (v.as_tensor() + ((g.sqr()? - v.as_tensor())? * (1.0 - step.beta_2))?)?;
    let update = ((&m_next / (v_next.sqrt()? + step.epsilon)?)? * step.alpha)?;
    w.set(&(w.as_tensor() - update)?)?;
    m.set(&m_next)?;
    v.set(&v_next)
}

/// The CUDA half: `adam_moment` twice, then `adam_apply`.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{CpuStorage, CudaStorage, InplaceOp2, InplaceOp3, Layout, Result};
    use candle_core::{Tensor, Var};

    use super::super::cuda::{gpu_only, grid, launch, view, view_mut};
    use super::AdamStep;

    pub(super) fn adam_update(w: &Var, m: &Var, v: &Var, g: &Tensor, s: AdamStep) -> Result<()> {
        m.inplace_op2(
            g,
            &Moment {
                keep: 1.0 - s.beta_1,
                square: false,
            },
        )?;
        v.inplace_op2(
            g,
            &Moment {
                keep: 1.0 - s.beta_2,
                square: true,
            },
        )?;
        w.inplace_op3(
            m,
            v,
            &Apply {
                alpha: s.alpha,
                epsilon: s.epsilon,
            },
        )
    }

    /// A moment moved towards the gradient (or its square).
    struct Moment {
        keep: f64,
        square: bool,
    }

    impl InplaceOp2 for Moment {
        fn name(&self) -> &'static str {
            "cxr-adam-moment"
        }

        gpu_only!(inplace2);

        fn cuda_fwd(
            &self,
            ms: &mut CudaStorage,
            ml: &Layout,
            gs: &CudaStorage,
            gl: &Layout,
        ) -> Result<()> {
            let dev = ms.device.clone();
            let total = ml.shape().elem_count();
            let g = view(gs, gl)?;
            let mut m = view_mut(ms, ml)?;
            let (total64, keep, square) = (total as i64, self.keep as f32, self.square as i32);
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

        gpu_only!(inplace3);

        fn cuda_fwd(
            &self,
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
            let (total64, alpha, eps) = (total as i64, self.alpha as f32, self.epsilon as f32);
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
}
