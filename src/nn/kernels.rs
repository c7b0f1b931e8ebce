//! Fast CPU paths for the convolutions the course trains through, where candle 0.11 is
//! slow: a depthwise convolution (candle runs one convolution per channel and joins
//! them), the input gradient of a full convolution (candle's `conv_transpose2d` is a
//! scalar loop nest) and the pointwise 1 x 1 convolution (whose input gradient goes the
//! same way).
//!
//! Each op computes its output with plain candle ops or a direct loop, then attaches its
//! own backward pass through [`with_gradients`]. The gradients are checked against
//! candle's own autograd and finite differences in `tests/nn_kernels.rs`. On other
//! devices than the CPU the layers use candle's ops unchanged.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

type Backward = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor)> + Send + Sync;

/// `output`'s values, with gradients for `x` and `w` given by `backward(x, w, grad_out)`.
struct WithGradients {
    backward: Arc<Backward>,
}

impl CustomOp3 for WithGradients {
    fn name(&self) -> &'static str {
        "cxr-with-gradients"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        output: &CpuStorage,
        layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("cxr's fast convolutions need a contiguous output");
        };
        let values = match output {
            CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
            _ => candle_core::bail!("cxr's fast convolutions take f32 or f64 tensors"),
        };
        Ok((values, layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _output: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = (self.backward)(x, w, &grad.contiguous()?)?;
        Ok((Some(gx), Some(gw), None))
    }
}

/// `output` (computed from `x` and `w` without tracking), tracked again with the given
/// backward pass.
fn with_gradients(
    x: &Tensor,
    w: &Tensor,
    output: Tensor,
    backward: Arc<Backward>,
) -> Result<Tensor> {
    x.apply_op3(w, &output.contiguous()?, WithGradients { backward })
}

/// Reverses a tensor along `dim`.
fn flip(t: &Tensor, dim: usize) -> Result<Tensor> {
    let n = t.dim(dim)?;
    let index = Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, t.device())?;
    t.index_select(&index, dim)
}

/// A full 2-D convolution, stride 1, `padding` on each side, no groups, as
/// `x.conv2d(w, padding, 1, 1, 1)`, with the input gradient computed as a convolution
/// (im2col and a matrix product) instead of candle's `conv_transpose2d` loop.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    let float = matches!(x.dtype(), DType::F32 | DType::F64);
    if !x.device().is_cpu() || !float || !(x.track_op() || w.track_op()) {
        return x.conv2d(w, padding, 1, 1, 1);
    }
    let output = x.detach().conv2d(&w.detach(), padding, 1, 1, 1)?;
    let backward: Arc<Backward> = Arc::new(move |x, w, grad| {
        let k = w.dim(2)?;
        // dL/dx: the output gradient convolved with the kernel turned 180 degrees and
        // with its in and out channels swapped.
        let turned = flip(&flip(w, 2)?, 3)?.transpose(0, 1)?.contiguous()?;
        let gx = grad.conv2d(&turned, k - 1 - padding, 1, 1, 1)?;
        // dL/dw: each input channel correlated with each output channel's gradient over
        // the batch (the batch becomes the channel axis of a convolution).
        let gw = x
            .transpose(0, 1)?
            .contiguous()?
            .conv2d(&grad.transpose(0, 1)?.contiguous()?, padding, 1, 1, 1)?
            .transpose(0, 1)?
            .contiguous()?;
        // A size that does not divide evenly can leave gw a row or column too large.
        let gw = gw.narrow(2, 0, k)?.narrow(3, 0, w.dim(3)?)?;
        Ok((gx, gw))
    });
    with_gradients(x, w, output, backward)
}

/// A pointwise (1 x 1) convolution as a matrix product per image: `w (O, C, 1, 1)` times
/// `x (N, C, H*W)`. Forward and backward are both matrix products.
pub fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, c, h, width) = x.dims4()?;
    let o = w.dim(0)?;
    let w2 = w.reshape((o, c))?;
    let y = w2.broadcast_matmul(&x.reshape((n, c, h * width))?)?;
    y.reshape((n, o, h, width))
}

/// Plane geometry of a depthwise convolution.
#[derive(Clone, Copy)]
struct Plane {
    h: usize,
    w: usize,
    k: usize,
    p: usize,
    ho: usize,
    wo: usize,
}

impl Plane {
    /// For output row `y` and kernel row `i`, the input row, if inside.
    fn input_row(&self, y: usize, i: usize) -> Option<usize> {
        (y + i).checked_sub(self.p).filter(|&r| r < self.h)
    }

    /// For kernel column `j`: the output columns whose input column `x + j - p` is inside,
    /// and that input column's offset from the output column.
    fn columns(&self, j: usize) -> (usize, usize, isize) {
        let shift = j as isize - self.p as isize;
        let first = (-shift).max(0) as usize;
        let last = ((self.w as isize - shift).min(self.wo as isize)).max(0) as usize;
        (first, last.max(first), shift)
    }
}

/// `out[y][x] += sum_ij input[y + i - p][x + j - p] * kernel[i][j]` for one plane.
fn correlate_plane<T: Float>(input: &[T], kernel: &[T], out: &mut [T], g: Plane) {
    for y in 0..g.ho {
        let row = &mut out[y * g.wo..(y + 1) * g.wo];
        for i in 0..g.k {
            let Some(r) = g.input_row(y, i) else { continue };
            let src = &input[r * g.w..(r + 1) * g.w];
            for j in 0..g.k {
                let weight = kernel[i * g.k + j];
                let (first, last, shift) = g.columns(j);
                let from = (first as isize + shift) as usize;
                for (o, s) in row[first..last].iter_mut().zip(&src[from..]) {
                    *o += weight * *s;
                }
            }
        }
    }
}

/// The input gradient of [`correlate_plane`]: every output gradient pushed back through
/// the kernel.
fn correlate_plane_backward<T: Float>(grad: &[T], kernel: &[T], gx: &mut [T], g: Plane) {
    for y in 0..g.ho {
        let grow = &grad[y * g.wo..(y + 1) * g.wo];
        for i in 0..g.k {
            let Some(r) = g.input_row(y, i) else { continue };
            let dst = &mut gx[r * g.w..(r + 1) * g.w];
            for j in 0..g.k {
                let weight = kernel[i * g.k + j];
                let (first, last, shift) = g.columns(j);
                let from = (first as isize + shift) as usize;
                for (d, o) in dst[from..].iter_mut().zip(&grow[first..last]) {
                    *d += weight * *o;
                }
            }
        }
    }
}

/// `gw[i][j] += sum_yx grad[y][x] * input[y + i - p][x + j - p]` for one plane.
fn kernel_gradient_plane<T: Float>(grad: &[T], input: &[T], gw: &mut [T], g: Plane) {
    for y in 0..g.ho {
        let grow = &grad[y * g.wo..(y + 1) * g.wo];
        for i in 0..g.k {
            let Some(r) = g.input_row(y, i) else { continue };
            let src = &input[r * g.w..(r + 1) * g.w];
            for j in 0..g.k {
                let (first, last, shift) = g.columns(j);
                let from = (first as isize + shift) as usize;
                let mut dot = T::zero();
                for (a, b) in grow[first..last].iter().zip(&src[from..]) {
                    dot += *a * *b;
                }
                gw[i * g.k + j] += dot;
            }
        }
    }
}

/// The element types the direct kernels run in: f32 for training, f64 for gradient
/// checks.
pub trait Float:
    WithDType + Copy + Send + Sync + std::ops::Mul<Output = Self> + std::ops::AddAssign
{
}

impl Float for f32 {}

impl Float for f64 {}

fn to_vec<T: Float>(t: &Tensor) -> Result<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// A depthwise convolution (one `k` x `k` filter per channel, `w (C, 1, k, k)`), stride
/// 1, `padding` on each side: every channel plane is convolved directly, the planes in
/// parallel.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    let (_, c, h, width) = x.dims4()?;
    let k = w.dim(2)?;
    let direct = x.device().is_cpu()
        && x.dtype() == w.dtype()
        && w.dims4()? == (c, 1, k, k)
        && h + 2 * padding >= k
        && width + 2 * padding >= k;
    match x.dtype() {
        DType::F32 if direct => depthwise_direct::<f32>(x, w, padding),
        DType::F64 if direct => depthwise_direct::<f64>(x, w, padding),
        _ => x.conv2d(w, padding, 1, 1, c),
    }
}

fn depthwise_direct<T: Float>(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    let (n, c, h, width) = x.dims4()?;
    let k = w.dim(2)?;
    let g = Plane {
        h,
        w: width,
        k,
        p: padding,
        ho: h + 2 * padding + 1 - k,
        wo: width + 2 * padding + 1 - k,
    };
    let (input, kernel) = (to_vec::<T>(x)?, to_vec::<T>(w)?);
    let mut out = vec![T::zero(); n * c * g.ho * g.wo];
    out.par_chunks_mut(g.ho * g.wo)
        .enumerate()
        .for_each(|(plane, o)| {
            let ch = plane % c;
            correlate_plane(
                &input[plane * h * width..][..h * width],
                &kernel[ch * k * k..][..k * k],
                o,
                g,
            );
        });
    let output = Tensor::from_vec(out, (n, c, g.ho, g.wo), x.device())?;
    if !(x.track_op() || w.track_op()) {
        return Ok(output);
    }
    let backward: Arc<Backward> = Arc::new(move |x, w, grad| {
        let (input, kernel, grad_v) = (to_vec::<T>(x)?, to_vec::<T>(w)?, to_vec::<T>(grad)?);
        let mut gx = vec![T::zero(); n * c * h * width];
        gx.par_chunks_mut(h * width)
            .enumerate()
            .for_each(|(plane, d)| {
                let ch = plane % c;
                correlate_plane_backward(
                    &grad_v[plane * g.ho * g.wo..][..g.ho * g.wo],
                    &kernel[ch * k * k..][..k * k],
                    d,
                    g,
                );
            });
        // One partial kernel gradient per plane, summed over the batch per channel.
        let partial: Vec<Vec<T>> = (0..n * c)
            .into_par_iter()
            .map(|plane| {
                let mut gw = vec![T::zero(); k * k];
                kernel_gradient_plane(
                    &grad_v[plane * g.ho * g.wo..][..g.ho * g.wo],
                    &input[plane * h * width..][..h * width],
                    &mut gw,
                    g,
                );
                gw
            })
            .collect();
        let mut gw = vec![T::zero(); c * k * k];
        for (plane, part) in partial.iter().enumerate() {
            let ch = plane % c;
            for (a, b) in gw[ch * k * k..][..k * k].iter_mut().zip(part) {
                *a += *b;
            }
        }
        Ok((
            Tensor::from_vec(gx, (n, c, h, width), x.device())?,
            Tensor::from_vec(gw, (c, 1, k, k), x.device())?,
        ))
    });
    with_gradients(x, w, output, backward)
}
