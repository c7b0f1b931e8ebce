//! A dense layer's product for a single input: the weight rows shared out over the cores.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;
use super::conv::matmul;

/// Weight rows per parallel task.
const ROWS: usize = 256;

/// `x wᵀ` for `x` of shape `(n, inputs)` and `w` of shape `(units, inputs)`.
///
/// For one input row on the CPU the weight rows are split over the cores: candle hands a
/// batch of one to a single-threaded matrix-vector product, which read VGG16's 411 MB
/// `fc1` weights on one core (28 ms against PyTorch's 24 ms on two). Otherwise candle's
/// product, taken as `(w xᵀ)ᵀ` so that its backward pass makes `w`'s gradient in `w`'s
/// own layout (through `x wᵀ` it would be a transposed copy).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, inputs) = x.dims2()?;
    let (_, w_inputs) = w.dims2()?;
    if n == 1
        && inputs == w_inputs
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
    {
        return x.contiguous()?.apply_op2(&w.contiguous()?, Linear);
    }
    w.matmul(&x.t()?)?.t()
}

/// [`linear`] for one input row.
struct Linear;

impl candle_core::CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "cxr-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?);
        let (units, inputs) = wl.shape().dims2()?;
        let mut y = for_overwrite::<f32>(units)?;
        y.par_chunks_mut(ROWS)
            .zip(w.par_chunks(ROWS * inputs))
            .for_each(|(y, w)| {
                // y (rows x 1) = w (rows x inputs) times x (inputs x 1).
                matmul(
                    (y.len(), 1, inputs),
                    (y, 1, 1),
                    (w, inputs, 1),
                    (x, 1, 1),
                    false,
                );
            });
        Ok((CpuStorage::F32(y), Shape::from((1, units))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // y = x wᵀ: dx = dy w, dw = dyᵀ x.
        Ok((Some(grad.matmul(w)?), Some(grad.t()?.matmul(x)?)))
    }
}
