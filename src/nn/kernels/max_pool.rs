//! 2 x 2 (k x k) max-pooling in one parallel pass each way.

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;

/// A `k` x `k` max-pool, stride `k`, the last rows and columns that do not fill a
/// window dropped (Keras's `MaxPool2D`), in one parallel pass; its backward pass gives
/// each window's gradient to the first of its maxima, as PyTorch does.
struct MaxPool {
    k: usize,
}

/// The larger of `a` and `b`, or NaN if either is (as PyTorch's max-pool propagates it);
/// the first of equal values, so the gradient goes where the scalar loop sends it.
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() && !a.is_nan() {
        b
    } else {
        a
    }
}

impl candle_core::CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "cxr-max-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let k = self.k;
        let (ho, wo) = (h / k, w / k);
        let x = f32_slice(storage, layout)?;
        let mut y = for_overwrite::<f32>(n * c * ho * wo)?;
        if k == 2 {
            // The common case, as branch-free selects the compiler can vectorise.
            y.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|(y, x)| {
                    for (r, out) in y.chunks_exact_mut(wo).enumerate() {
                        let (top, bottom) =
                            (&x[2 * r * w..][..2 * wo], &x[(2 * r + 1) * w..][..2 * wo]);
                        for (o, (a, b)) in out
                            .iter_mut()
                            .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
                        {
                            *o = max_nan(max_nan(a[0], a[1]), max_nan(b[0], b[1]));
                        }
                    }
                });
            return Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))));
        }
        y.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(y, x)| {
                for r in 0..ho {
                    for col in 0..wo {
                        let mut best = f32::NEG_INFINITY;
                        for i in 0..k {
                            let row = &x[(r * k + i) * w + col * k..][..k];
                            for &v in row {
                                if v > best || v.is_nan() {
                                    best = v;
                                }
                            }
                        }
                        y[r * wo + col] = best;
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let y = gpu::forward(storage, layout, self.k)?;
        Ok((y, Shape::from((n, c, h / self.k, w / self.k))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPoolBackward { k: self.k },
        )?))
    }
}

/// The gradient of [`MaxPool`] with respect to its input.
struct MaxPoolBackward {
    k: usize,
}

impl candle_core::CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "cxr-max-pool-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, _, h, w) = x_layout.shape().dims4()?;
        let k = self.k;
        let (ho, wo) = (h / k, w / k);
        let (x, g) = (f32_slice(x, x_layout)?, f32_slice(grad, grad_layout)?);
        if k == 2 {
            // The windows tile an even-sized plane and write each of its values (the
            // gradient or zero), so only odd sizes need the zeros of a dropped last row
            // or column.
            let mut gx = match h % 2 == 0 && w % 2 == 0 {
                true => for_overwrite::<f32>(x.len())?,
                false => vec![0f32; x.len()],
            };
            gx.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w).zip(g.par_chunks(ho * wo)))
                .for_each(|(gx, (x, g))| {
                    for (r, g) in g.chunks_exact(wo).enumerate() {
                        let (gtop, gbottom) = gx[2 * r * w..].split_at_mut(w);
                        arch().dispatch(Windows2 {
                            top: &x[2 * r * w..][..2 * wo],
                            bottom: &x[(2 * r + 1) * w..][..2 * wo],
                            g,
                            gtop: &mut gtop[..2 * wo],
                            gbottom: &mut gbottom[..2 * wo],
                        });
                    }
                });
            return Ok((CpuStorage::F32(gx), x_layout.shape().clone()));
        }
        let mut gx = vec![0f32; x.len()];
        gx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(g.par_chunks(ho * wo)))
            .for_each(|(gx, (x, g))| {
                for r in 0..ho {
                    for col in 0..wo {
                        let (mut best, mut at) = (f32::NEG_INFINITY, (r * k) * w + col * k);
                        for i in 0..k {
                            for j in 0..k {
                                let p = (r * k + i) * w + col * k + j;
                                if x[p] > best {
                                    best = x[p];
                                    at = p;
                                }
                            }
                        }
                        gx[at] += g[r * wo + col];
                    }
                }
            });
        Ok((CpuStorage::F32(gx), x_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let gx = gpu::backward(xs, xl, gs, gl, self.k)?;
        Ok((gx, xl.shape().clone()))
    }
}

/// One row of 2 x 2 windows of [`MaxPoolBackward`]: each window's gradient `g` to its
/// first maximum, as the scalar loop's strict `>` in the order top left, top right,
/// bottom left, bottom right finds it.
struct Windows2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    g: &'a [f32],
    gtop: &'a mut [f32],
    gbottom: &'a mut [f32],
}

/// Windows taken apart at a time, so that the comparisons run as vector selects (a
/// branch per comparison mispredicts on about half of the windows).
const WINDOWS: usize = 16;

impl pulp::WithSimd for Windows2<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let n = self.g.len();
        let mut i0 = 0;
        while i0 < n {
            let m = WINDOWS.min(n - i0);
            let [mut a0, mut a1, mut b0, mut b1, mut g] = [[0f32; WINDOWS]; 5];
            for i in 0..m {
                let at = 2 * (i0 + i);
                (a0[i], a1[i]) = (self.top[at], self.top[at + 1]);
                (b0[i], b1[i]) = (self.bottom[at], self.bottom[at + 1]);
                g[i] = self.g[i0 + i];
            }
            let [mut o0, mut o1, mut o2, mut o3] = [[0f32; WINDOWS]; 4];
            for i in 0..WINDOWS {
                // Whether each value beat the best of those before it; the last that
                // did is the first maximum.
                let c1 = a1[i] > a0[i];
                let m1 = if c1 { a1[i] } else { a0[i] };
                let c2 = b0[i] > m1;
                let m2 = if c2 { b0[i] } else { m1 };
                let c3 = b1[i] > m2;
                o0[i] = if !(c1 | c2 | c3) { g[i] } else { 0.0 };
                o1[i] = if c1 & !c2 & !c3 { g[i] } else { 0.0 };
                o2[i] = if c2 & !c3 { g[i] } else { 0.0 };
                o3[i] = if c3 { g[i] } else { 0.0 };
            }
            for i in 0..m {
                let at = 2 * (i0 + i);
                (self.gtop[at], self.gtop[at + 1]) = (o0[i], o1[i]);
                (self.gbottom[at], self.gbottom[at + 1]) = (o2[i], o3[i]);
            }
            i0 += m;
        }
    }
}

/// A `k` x `k` max-pool, stride `k`, a last row or column that does not fill a window
/// dropped: a fused parallel kernel for `f32` on the CPU; elsewhere a reshape and two
/// `max` reductions in candle's ops (where tied maxima each get the gradient).
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (x.device().is_cpu() && x.dtype() == DType::F32) || on_gpu(&[x]) {
        return x.contiguous()?.apply_op1(MaxPool { k });
    }
    let (ho, wo) = (h / k, w / k);
    x.narrow(2, 0, ho * k)?
        .narrow(3, 0, wo * k)?
        .reshape((n, c, ho, k, wo, k))?
        .max(5)?
        .max(3)
}

/// The CUDA half: one thread per window each way.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{CudaStorage, Layout, Result};

    use super::super::cuda::{grid, launch, output, view};

    /// The numbers both kernels take after their buffers.
    fn sizes(layout: &Layout, k: usize) -> Result<(i64, [i32; 5])> {
        let (n, c, h, w) = layout.shape().dims4()?;
        Ok(((n * c) as i64, [h, w, k, h / k, w / k].map(|v| v as i32)))
    }

    pub(super) fn forward(xs: &CudaStorage, xl: &Layout, k: usize) -> Result<CudaStorage> {
        let dev = &xs.device;
        let x = view(xs, xl)?;
        let (planes, [h, w, k, ho, wo]) = sizes(xl, k)?;
        let len = planes as usize * (ho * wo) as usize;
        let y = output(dev, len)?;
        launch!(
            dev,
            "max_pool_forward",
            grid(len),
            &x,
            &y,
            &planes,
            &h,
            &w,
            &k,
            &ho,
            &wo
        )?;
        Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
    }

    pub(super) fn backward(
        xs: &CudaStorage,
        xl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
        k: usize,
    ) -> Result<CudaStorage> {
        let dev = &xs.device;
        let (x, dy) = (view(xs, xl)?, view(gs, gl)?);
        let (planes, [h, w, k, ho, wo]) = sizes(xl, k)?;
        // Zeroed: rows and columns outside every window get no gradient.
        let dx = dev.alloc_zeros::<f32>(xl.shape().elem_count())?;
        let len = planes as usize * (ho * wo) as usize;
        let cfg = grid(len);
        launch!(
            dev,
            "max_pool_backward",
            cfg,
            &x,
            &dy,
            &dx,
            &planes,
            &h,
            &w,
            &k,
            &ho,
            &wo
        )?;
        Ok(CudaStorage::wrap_cuda_slice(dx, dev.clone()))
    }
}
