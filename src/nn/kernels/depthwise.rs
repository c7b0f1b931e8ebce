//! Depthwise convolutions, one filter per channel, each plane convolved directly in
//! vector-wide strips of a zero-padded copy.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::common::*;

/// A depthwise convolution (one `k` x `k` filter per channel, `w (C, 1, k, k)`), stride
/// 1, `padding` on each side: every channel plane is convolved directly, the planes in
/// parallel.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    let (_, c, h, width) = x.dims4()?;
    let k = w.dim(2)?;
    let direct = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.dtype() == w.dtype()
        && w.dims4()? == (c, 1, k, k)
        && h + 2 * padding >= k
        && width + 2 * padding >= k;
    if direct {
        return x
            .contiguous()?
            .apply_op2(&w.contiguous()?, Depthwise { padding });
    }
    x.conv2d(w, padding, 1, 1, c)
}

/// `out[y][x] = sum_ij src[y + i - q][x + j - q] kernel[i][j]` over a `k` x `k` kernel,
/// `src` zero outside its `size`, for every `(y, x)` of `out`'s size. The source is
/// first copied into `pad`, zero-bordered and its rows a whole number of vectors wide,
/// so that every output strip is `k²` multiply-adds of whole vectors held in registers.
/// `q` may be negative (the input gradient of a convolution padded by more than
/// `k - 1`).
pub(super) fn correlate<T: Strips>(
    src: &[T],
    size: Size,
    kernel: &[T],
    k: usize,
    q: isize,
    (out, out_size): (&mut [T], Size),
    pad: &mut Vec<T>,
) {
    let width = pad_into(pad, src, size, k, q, out_size);
    T::correlate_strips(pad, width, (kernel, k), (out, out_size));
}

/// `gw[i][j] += sum_yx dy[y][x] src[y + i - q][x + j - q]`: the kernel's gradient from
/// one plane, in vector-wide running sums (one register per kernel position).
pub(super) fn kernel_gradient<T: Strips>(
    (dy, dy_size): (&[T], Size),
    src: &[T],
    size: Size,
    k: usize,
    q: isize,
    gw: &mut [T],
    (pad, dy_pad): (&mut Vec<T>, &mut Vec<T>),
) {
    let width = pad_into(pad, src, size, k, q, dy_size);
    let (rows, cols) = dy_size;
    // The output gradient with its rows widened by zeros to whole strips.
    let wide = cols.next_multiple_of(LANES);
    dy_pad.resize(rows * wide, T::zero());
    for (to, from) in dy_pad.chunks_exact_mut(wide).zip(dy.chunks_exact(cols)) {
        to[..cols].copy_from_slice(from);
        to[cols..].fill(T::zero());
    }
    T::kernel_gradient_strips((dy_pad, rows, wide), pad, width, (gw, k));
}

/// The strip loops of [`correlate`] and [`kernel_gradient`] over padded planes: for
/// `f32` in the widest vectors this CPU has (AVX-512, AVX2 or SSE, chosen at run time
/// by `pulp`, as the `gemm` crate chooses its kernels), for `f64` (the gradient checks)
/// in plain loops.
pub(super) trait Strips: Float {
    /// `out[y][x] = sum_ij pad[y + i][x + j] kernel[i][j]`, `pad`'s rows `width` apart.
    fn correlate_strips(
        pad: &[Self],
        width: usize,
        kernel: (&[Self], usize),
        out: (&mut [Self], Size),
    );

    /// `gw[i][j] += sum_yx dy[y][x] pad[y + i][x + j]`, `dy`'s rows `wide` apart and
    /// zero past the plane.
    fn kernel_gradient_strips(
        dy: (&[Self], usize, usize),
        pad: &[Self],
        width: usize,
        gw: (&mut [Self], usize),
    );
}

impl Strips for f64 {
    fn correlate_strips(
        pad: &[f64],
        width: usize,
        (kernel, k): (&[f64], usize),
        (out, (rows, cols)): (&mut [f64], Size),
    ) {
        for y in 0..rows {
            for x in 0..cols {
                let mut acc = 0.0;
                for i in 0..k {
                    for j in 0..k {
                        acc += kernel[i * k + j] * pad[(y + i) * width + x + j];
                    }
                }
                out[y * cols + x] = acc;
            }
        }
    }

    fn kernel_gradient_strips(
        (dy, rows, wide): (&[f64], usize, usize),
        pad: &[f64],
        width: usize,
        (gw, k): (&mut [f64], usize),
    ) {
        for i in 0..k {
            for j in 0..k {
                let mut acc = 0.0;
                for y in 0..rows {
                    let line = &pad[(y + i) * width + j..][..wide];
                    acc += line
                        .iter()
                        .zip(&dy[y * wide..][..wide])
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
                }
                gw[i * k + j] += acc;
            }
        }
    }
}

impl Strips for f32 {
    fn correlate_strips(
        pad: &[f32],
        width: usize,
        kernel: (&[f32], usize),
        out: (&mut [f32], Size),
    ) {
        struct Op<'a> {
            pad: &'a [f32],
            width: usize,
            kernel: (&'a [f32], usize),
            out: (&'a mut [f32], Size),
        }
        impl WithSimd for Op<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                let ((kernel, k), (out, (rows, cols))) = (self.kernel, self.out);
                let lanes = S::F32_LANES;
                for y in 0..rows {
                    let row = &mut out[y * cols..][..cols];
                    for x0 in (0..cols).step_by(lanes) {
                        let mut acc = simd.splat_f32s(0.0);
                        for i in 0..k {
                            let line = &self.pad[(y + i) * self.width + x0..];
                            for j in 0..k {
                                let weight = simd.splat_f32s(kernel[i * k + j]);
                                acc = simd.mul_add_e_f32s(weight, load::<S>(&line[j..]), acc);
                            }
                        }
                        simd.partial_store_f32s(&mut row[x0..(x0 + lanes).min(cols)], acc);
                    }
                }
            }
        }
        arch().dispatch(Op {
            pad,
            width,
            kernel,
            out,
        });
    }

    fn kernel_gradient_strips(
        dy: (&[f32], usize, usize),
        pad: &[f32],
        width: usize,
        gw: (&mut [f32], usize),
    ) {
        struct Op<'a> {
            dy: (&'a [f32], usize, usize),
            pad: &'a [f32],
            width: usize,
            gw: (&'a mut [f32], usize),
        }
        impl WithSimd for Op<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                let ((dy, rows, wide), (gw, k)) = (self.dy, self.gw);
                let lanes = S::F32_LANES;
                for i in 0..k {
                    for j in 0..k {
                        let mut acc = simd.splat_f32s(0.0);
                        for y in 0..rows {
                            let line = &self.pad[(y + i) * self.width + j..][..wide];
                            let d = &dy[y * wide..][..wide];
                            for x0 in (0..wide).step_by(lanes) {
                                let (a, b) = (load::<S>(&d[x0..]), load::<S>(&line[x0..]));
                                acc = simd.mul_add_e_f32s(a, b, acc);
                            }
                        }
                        gw[i * k + j] += simd.reduce_sum_f32s(acc);
                    }
                }
            }
        }
        arch().dispatch(Op { dy, pad, width, gw });
    }
}

/// Copies `src` into `pad` so that `pad[y + i][x + j]` is `src[y + i - q][x + j - q]`
/// (zero outside) for every output `(y, x)` of `out_size`, rows rounded up to whole
/// vectors; returns the row width.
fn pad_into<T: Float>(
    pad: &mut Vec<T>,
    src: &[T],
    size: Size,
    k: usize,
    q: isize,
    (rows, cols): Size,
) -> usize {
    let width = padded_width(cols, k);
    pad.resize((rows + k - 1) * width, T::zero());
    pad_plane(pad, width, src, size, (q, q));
    width
}

/// The depthwise convolution as one op, so that its output is written once and its
/// backward pass reads the input and the output gradient in place.
struct Depthwise {
    padding: usize,
}

/// The geometry of a depthwise convolution.
#[derive(Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    k: usize,
    input: Size,
    output: Size,
}

impl Depthwise {
    fn geometry(&self, x: &Shape, w: &Shape) -> Result<Geometry> {
        let (n, c, h, width) = x.dims4()?;
        let k = w.dims4()?.2;
        let p = self.padding;
        Ok(Geometry {
            n,
            c,
            k,
            input: (h, width),
            output: (h + 2 * p + 1 - k, width + 2 * p + 1 - k),
        })
    }

    fn forward<T: Strips>(&self, x: &[T], w: &[T], g: Geometry) -> Vec<T> {
        let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
        let mut out = vec![T::zero(); g.n * g.c * ohw];
        out.par_chunks_mut(ohw)
            .enumerate()
            .for_each_init(Vec::new, |pad, (plane, o)| {
                let ch = plane % g.c;
                let src = &x[plane * hw..][..hw];
                let kernel = &w[ch * kk..][..kk];
                let q = self.padding as isize;
                correlate(src, g.input, kernel, g.k, q, (o, g.output), pad);
            });
        out
    }

    /// The input's gradient (unless `want_gx` is false) and the kernel's.
    fn backward<T: Strips>(
        &self,
        (x, w, dy): (&[T], &[T], &[T]),
        g: Geometry,
        want_gx: bool,
    ) -> (Vec<T>, Vec<T>) {
        let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
        // The input gradient is the output gradient correlated with the kernel turned
        // 180 degrees, shifted by k - 1 - p.
        let turned: Vec<T> = w
            .chunks_exact(kk)
            .flat_map(|kernel| kernel.iter().rev().copied())
            .collect();
        let q_back = g.k as isize - 1 - self.padding as isize;
        let mut gx = vec![T::zero(); if want_gx { g.n * g.c * hw } else { 0 }];
        let plane_work = |plane: usize, gx: Option<&mut [T]>, scratch: &mut (Vec<T>, Vec<T>)| {
            let ch = plane % g.c;
            let d = &dy[plane * ohw..][..ohw];
            if let Some(gx) = gx {
                let kernel = &turned[ch * kk..][..kk];
                correlate(
                    d,
                    g.output,
                    kernel,
                    g.k,
                    q_back,
                    (gx, g.input),
                    &mut scratch.0,
                );
            }
            let mut gw = vec![T::zero(); kk];
            let src = &x[plane * hw..][..hw];
            let q = self.padding as isize;
            let (pad, dy_pad) = (&mut scratch.0, &mut scratch.1);
            kernel_gradient((d, g.output), src, g.input, g.k, q, &mut gw, (pad, dy_pad));
            gw
        };
        let scratch = || (Vec::new(), Vec::new());
        // One partial kernel gradient per plane, summed over the batch per channel.
        let partial: Vec<Vec<T>> = match want_gx {
            true => gx
                .par_chunks_mut(hw)
                .enumerate()
                .map_init(scratch, |s, (plane, gx)| plane_work(plane, Some(gx), s))
                .collect(),
            false => (0..g.n * g.c)
                .into_par_iter()
                .map_init(scratch, |s, plane| plane_work(plane, None, s))
                .collect(),
        };
        let mut gw = vec![T::zero(); g.c * kk];
        for (plane, part) in partial.iter().enumerate() {
            let ch = plane % g.c;
            for (a, b) in gw[ch * kk..][..kk].iter_mut().zip(part) {
                *a += *b;
            }
        }
        (gx, gw)
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "cxr-depthwise"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(xl.shape(), wl.shape())?;
        let shape = Shape::from((g.n, g.c, g.output.0, g.output.1));
        let storage = match (xs, ws) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (x, w) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?);
                CpuStorage::F32(self.forward(x, w, g))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                let (x, w) = (contiguous(x, xl)?, contiguous(w, wl)?);
                CpuStorage::F64(self.forward(x, w, g))
            }
            _ => candle_core::bail!("cxr's depthwise convolution takes f32 or f64 tensors"),
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.shape(), w.shape())?;
        let grad = grad.contiguous()?;
        let want_gx = x.track_op();
        let (gx, gw) = match x.dtype() {
            DType::F32 => {
                let (xv, wv, dy) = (Values::of(x)?, Values::of(w)?, Values::of(&grad)?);
                let (gx, gw) = self.backward::<f32>((&xv, &wv, &dy), g, want_gx);
                (Tensor::new(gx, x.device())?, Tensor::new(gw, x.device())?)
            }
            _ => {
                let (xv, wv, dy) = (Values::of(x)?, Values::of(w)?, Values::of(&grad)?);
                let (gx, gw) = self.backward::<f64>((&xv, &wv, &dy), g, want_gx);
                (Tensor::new(gx, x.device())?, Tensor::new(gw, x.device())?)
            }
        };
        let gx = match want_gx {
            true => Some(gx.reshape(x.shape())?),
            false => None,
        };
        Ok((gx, Some(gw.reshape(w.shape())?)))
    }
}
