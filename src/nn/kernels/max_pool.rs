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
                        arch().dispatch(Row(Winners2 {
                            top: &x[2 * r * w..][..2 * wo],
                            bottom: &x[(2 * r + 1) * w..][..2 * wo],
                            y,
                            won,
                        }));
                    }
                });
            // Set once: this op runs its forward pass once.
            let _ = self.winners.set(winners);
            return Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))));
        }
        if k == 2 {
            y.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|(y, x)| {
                    for (r, y) in y.chunks_exact_mut(wo).enumerate() {
                        arch().dispatch(Row(Max2 {
                            top: &x[2 * r * w..][..2 * wo],
                            bottom: &x[(2 * r + 1) * w..][..2 * wo],
                            y,
                        }));
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
                        arch().dispatch(Row(Windows2 {
                            top: &x[2 * r * w..][..2 * wo],
                            bottom: &x[(2 * r + 1) * w..][..2 * wo],
                            g,
                            gtop: &mut gtop[..2 * wo],
                            gbottom: &mut gbottom[..2 * wo],
                        }));
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

/// Windows taken at a time: a loop of this fixed length over a row's windows turns into
/// vector loads, shuffles and selects (a branch per comparison mispredicts on about
/// half of the windows, and the baseline's four lanes leave most of the vector unused).
const WINDOWS: usize = 16;

/// A kernel over one row of 2 x 2 windows, run by [`Row`]: `span(i0)` does windows
/// `i0..i0 + WINDOWS` in a loop of fixed length; `short` does a row of fewer.
trait Span {
    fn windows(&self) -> usize;
    fn span(&mut self, i0: usize);
    fn short(&mut self);
}

/// Runs a [`Span`] over its row in the widest vectors this CPU has: in groups of
/// [`WINDOWS`], the last ending at the row's end and overlapping the one before (those
/// windows are computed twice, the same). A shorter row goes through a group's worth
/// of zero-padded copies (a loop of eight or four windows compiles to scalar code).
struct Row<K>(K);

impl<K: Span> pulp::WithSimd for Row<K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Row(mut kernel) = self;
        let n = kernel.windows();
        if n < WINDOWS {
            return kernel.short();
        }
        for i0 in (0..n).step_by(WINDOWS) {
            kernel.span(i0.min(n - WINDOWS));
        }
    }
}

/// `values` zero-padded to a group of `L` (`WINDOWS` or twice that).
#[inline(always)]
fn padded<T: Copy + Default, const L: usize>(values: &[T]) -> [T; L] {
    let mut group = [T::default(); L];
    group[..values.len()].copy_from_slice(values);
    group
}

/// A short row's pair of input rows, zero-padded to a group's.
#[inline(always)]
fn padded_rows(top: &[f32], bottom: &[f32]) -> ([f32; 2 * WINDOWS], [f32; 2 * WINDOWS]) {
    (padded(top), padded(bottom))
}

/// The input values of windows `i0..i0 + WINDOWS`: the two rows' stretches under them.
#[inline(always)]
fn group<'a>(top: &'a [f32], bottom: &'a [f32], i0: usize) -> (&'a [f32], &'a [f32]) {
    (
        &top[2 * i0..][..2 * WINDOWS],
        &bottom[2 * i0..][..2 * WINDOWS],
    )
}

/// Window `i` of a [`group`]: its four values in [`winner`]'s order.
#[inline(always)]
fn quad((a, b): (&[f32], &[f32]), i: usize) -> [f32; 4] {
    [a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1]]
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

/// A window's gradient `g` on its four values (in [`winner`]'s order): all to the one
/// that `won`.
#[inline(always)]
fn spread(g: f32, won: u8) -> [f32; 4] {
    std::array::from_fn(|at| if usize::from(won) == at { g } else { 0.0 })
}

/// One row of 2 x 2 windows of the forward pass, each window's maximum (NaN if any
/// value is, as [`max_nan`] gives it).
struct Max2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    y: &'a mut [f32],
}

impl Span for Max2<'_> {
    fn windows(&self) -> usize {
        self.y.len()
    }

    #[inline(always)]
    fn span(&mut self, i0: usize) {
        let rows = group(self.top, self.bottom, i0);
        for (i, y) in self.y[i0..][..WINDOWS].iter_mut().enumerate() {
            let [a0, a1, b0, b1] = quad(rows, i);
            *y = max_nan(max_nan(a0, a1), max_nan(b0, b1));
        }
    }

    #[inline(always)]
    fn short(&mut self) {
        let n = self.y.len();
        let (top, bottom) = padded_rows(self.top, self.bottom);
        let mut y = [0f32; WINDOWS];
        Max2 {
            top: &top,
            bottom: &bottom,
            y: &mut y,
        }
        .span(0);
        self.y.copy_from_slice(&y[..n]);
    }
}

/// [`Max2`] in training: also which of each window's values the backward pass gives
/// the gradient to, its [`winner`].
struct Winners2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    y: &'a mut [f32],
    won: &'a mut [u8],
}

impl Span for Winners2<'_> {
    fn windows(&self) -> usize {
        self.y.len()
    }

    #[inline(always)]
    fn span(&mut self, i0: usize) {
        let rows = group(self.top, self.bottom, i0);
        let (y, won) = (&mut self.y[i0..][..WINDOWS], &mut self.won[i0..][..WINDOWS]);
        for i in 0..WINDOWS {
            let [a0, a1, b0, b1] = quad(rows, i);
            y[i] = max_nan(max_nan(a0, a1), max_nan(b0, b1));
            won[i] = winner([a0, a1, b0, b1]);
        }
    }

    #[inline(always)]
    fn short(&mut self) {
        let n = self.y.len();
        let (top, bottom) = padded_rows(self.top, self.bottom);
        let (mut y, mut won) = ([0f32; WINDOWS], [0u8; WINDOWS]);
        let mut group = Winners2 {
            top: &top,
            bottom: &bottom,
            y: &mut y,
            won: &mut won,
        };
        group.span(0);
        self.y.copy_from_slice(&y[..n]);
        self.won.copy_from_slice(&won[..n]);
    }
}

/// One row of 2 x 2 windows of [`MaxPoolBackward`], which reads the input again: each
/// window's gradient `g` to its [`winner`].
struct Windows2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    g: &'a [f32],
    gtop: &'a mut [f32],
    gbottom: &'a mut [f32],
}

impl Span for Windows2<'_> {
    fn windows(&self) -> usize {
        self.g.len()
    }

    #[inline(always)]
    fn span(&mut self, i0: usize) {
        let rows = group(self.top, self.bottom, i0);
        let g = &self.g[i0..][..WINDOWS];
        let top = &mut self.gtop[2 * i0..][..2 * WINDOWS];
        let bottom = &mut self.gbottom[2 * i0..][..2 * WINDOWS];
        for i in 0..WINDOWS {
            let [t0, t1, b0, b1] = spread(g[i], winner(quad(rows, i)));
            (top[2 * i], top[2 * i + 1]) = (t0, t1);
            (bottom[2 * i], bottom[2 * i + 1]) = (b0, b1);
        }
    }

    #[inline(always)]
    fn short(&mut self) {
        let n = self.g.len();
        let (a, b) = padded_rows(self.top, self.bottom);
        let g = padded::<_, WINDOWS>(self.g);
        let (mut top, mut bottom) = ([0f32; 2 * WINDOWS], [0f32; 2 * WINDOWS]);
        let mut group = Windows2 {
            top: &a,
            bottom: &b,
            g: &g,
            gtop: &mut top,
            gbottom: &mut bottom,
        };
        group.span(0);
        self.gtop.copy_from_slice(&top[..2 * n]);
        self.gbottom.copy_from_slice(&bottom[..2 * n]);
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
                widest(|| {
                    for ((&g, &won), (t, b)) in g
                        .iter()
                        .zip(won)
                        .zip(top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2)))
                    {
                        [t[0], t[1], b[0], b[1]] = spread(g, won);
                    }
                });
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
