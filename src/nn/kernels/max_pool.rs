//! 2 x 2 (k x k) max-pooling in one parallel pass each way.

use std::sync::OnceLock;

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;

/// A `k` x `k` max-pool, stride `k`, the last rows and columns that do not fill a
/// window dropped (Keras's `MaxPool2D`), in one parallel pass; its backward pass gives
/// each window's gradient to the first of its maxima, as PyTorch does.
struct MaxPool {
    k: usize,
    /// Whether the forward pass of a 2 x 2 pool keeps each window's [`Winners2`] for the
    /// backward pass (when the input needs a gradient), which then reads a byte per
    /// window instead of the four input values again.
    keep_winners: bool,
    winners: OnceLock<Vec<u8>>,
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
        if k == 2 && self.keep_winners {
            let mut winners = vec![0u8; y.len()];
            y.par_chunks_mut(ho * wo)
                .zip(winners.par_chunks_mut(ho * wo))
                .zip(x.par_chunks(h * w))
                .for_each(|((y, won), x)| {
                    let rows = y.chunks_exact_mut(wo).zip(won.chunks_exact_mut(wo));
                    for (r, (y, won)) in rows.enumerate() {
                        arch().dispatch(Winners2 {
                            top: &x[2 * r * w..][..2 * wo],
                            bottom: &x[(2 * r + 1) * w..][..2 * wo],
                            y,
                            won,
                        });
                    }
                });
            // Set once: this op runs its forward pass once.
            let _ = self.winners.set(winners);
            return Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))));
        }
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
        if let Some(winners) = self.winners.get() {
            let (n, c, h, w) = x.dims4()?;
            let grad = grad.contiguous()?;
            let g = Values::<f32>::of(&grad)?;
            let gx = from_winners(&g, winners, (n * c, h, w))?;
            return Ok(Some(Tensor::from_vec(gx, x.shape(), x.device())?));
        }
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
                        // From the window's first value, as the 2 x 2 kernels and the
                        // CUDA kernel start: a NaN there keeps the gradient.
                        let at0 = (r * k) * w + col * k;
                        let (mut best, mut at) = (x[at0], at0);
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
            let [a0, a1, b0, b1] = windows(self.top, self.bottom, i0, m);
            let mut g = [0f32; WINDOWS];
            g[..m].copy_from_slice(&self.g[i0..i0 + m]);
            let [mut o0, mut o1, mut o2, mut o3] = [[0f32; WINDOWS]; 4];
            for i in 0..WINDOWS {
                let won = winner([a0[i], a1[i], b0[i], b1[i]]);
                o0[i] = if won == 0 { g[i] } else { 0.0 };
                o1[i] = if won == 1 { g[i] } else { 0.0 };
                o2[i] = if won == 2 { g[i] } else { 0.0 };
                o3[i] = if won == 3 { g[i] } else { 0.0 };
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

/// The values of windows `i0..i0 + m` of a pair of rows, by position (top left, top
/// right, bottom left, bottom right), zero past `m`.
#[inline(always)]
fn windows(top: &[f32], bottom: &[f32], i0: usize, m: usize) -> [[f32; WINDOWS]; 4] {
    let [mut a0, mut a1, mut b0, mut b1] = [[0f32; WINDOWS]; 4];
    for i in 0..m {
        let at = 2 * (i0 + i);
        (a0[i], a1[i]) = (top[at], top[at + 1]);
        (b0[i], b1[i]) = (bottom[at], bottom[at + 1]);
    }
    [a0, a1, b0, b1]
}

/// Which value of a window is its first maximum (0 top left, 1 top right, 2 bottom left,
/// 3 bottom right), as the scalar loop's strict `>` in that order finds it, starting from
/// the first value: whether each value beat the best of those before it; the last that
/// did. A later NaN never wins; a NaN first value keeps the gradient (nothing beats it).
#[inline(always)]
fn winner([a0, a1, b0, b1]: [f32; 4]) -> u8 {
    let c1 = a1 > a0;
    let m1 = if c1 { a1 } else { a0 };
    let c2 = b0 > m1;
    let m2 = if c2 { b0 } else { m1 };
    if b1 > m2 {
        3
    } else if c2 {
        2
    } else {
        u8::from(c1)
    }
}

/// One row of 2 x 2 windows of the forward pass with its winners: each window's
/// maximum (NaN if any value is, as [`max_nan`] gives it) and which of its values the
/// backward pass gives the gradient to, its [`winner`].
struct Winners2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    y: &'a mut [f32],
    won: &'a mut [u8],
}

impl pulp::WithSimd for Winners2<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let n = self.y.len();
        let mut i0 = 0;
        while i0 < n {
            let m = WINDOWS.min(n - i0);
            let [a0, a1, b0, b1] = windows(self.top, self.bottom, i0, m);
            let (mut y, mut won) = ([0f32; WINDOWS], [0u8; WINDOWS]);
            for i in 0..WINDOWS {
                won[i] = winner([a0[i], a1[i], b0[i], b1[i]]);
                y[i] = max_nan(max_nan(a0[i], a1[i]), max_nan(b0[i], b1[i]));
            }
            self.y[i0..i0 + m].copy_from_slice(&y[..m]);
            self.won[i0..i0 + m].copy_from_slice(&won[..m]);
            i0 += m;
        }
    }
}

/// The input gradient of a 2 x 2 max-pool from the output gradient `g` and the windows'
/// winners: each window's gradient to its winner, zero to the other three and to a
/// dropped last row or column. `planes` of `h` x `w` values.
fn from_winners(
    g: &[f32],
    winners: &[u8],
    (planes, h, w): (usize, usize, usize),
) -> Result<Vec<f32>> {
    let (ho, wo) = (h / 2, w / 2);
    if g.len() != planes * ho * wo || winners.len() != g.len() {
        candle_core::bail!(
            "max-pool backward: {} gradients for {} windows",
            g.len(),
            winners.len()
        );
    }
    let mut gx = for_overwrite::<f32>(planes * h * w)?;
    gx.par_chunks_mut(h * w)
        .zip(g.par_chunks(ho * wo).zip(winners.par_chunks(ho * wo)))
        .for_each(|(gx, (g, won))| {
            for (r, (g, won)) in g.chunks_exact(wo).zip(won.chunks_exact(wo)).enumerate() {
                let (top, bottom) = gx[2 * r * w..][..2 * w].split_at_mut(w);
                for ((&g, &won), (t, b)) in g
                    .iter()
                    .zip(won)
                    .zip(top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2)))
                {
                    t[0] = if won == 0 { g } else { 0.0 };
                    t[1] = if won == 1 { g } else { 0.0 };
                    b[0] = if won == 2 { g } else { 0.0 };
                    b[1] = if won == 3 { g } else { 0.0 };
                }
                top[2 * wo..].fill(0.0);
                bottom[2 * wo..].fill(0.0);
            }
            gx[2 * ho * w..].fill(0.0);
        });
    Ok(gx)
}

/// A `k` x `k` max-pool, stride `k`, a last row or column that does not fill a window
/// dropped: a fused parallel kernel for `f32` on the CPU; elsewhere a reshape and two
/// `max` reductions in candle's ops (where tied maxima each get the gradient).
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    max_pool2d_t(x, k, true)
}

/// [`max_pool2d`], told whether it trains: a 2 x 2 pool in training whose input needs a
/// gradient keeps a byte per window (which value won) for its backward pass, which then
/// writes the input gradient without reading the input again (half the time of a pass
/// that reads it). In inference the backward pass is rare (a saliency map) and takes the
/// longer way.
pub fn max_pool2d_t(x: &Tensor, k: usize, train: bool) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (x.device().is_cpu() && x.dtype() == DType::F32) || on_gpu(&[x]) {
        let op = MaxPool {
            k,
            keep_winners: train && k == 2 && x.device().is_cpu() && x.track_op(),
            winners: OnceLock::new(),
        };
        return x.contiguous()?.apply_op1(op);
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
