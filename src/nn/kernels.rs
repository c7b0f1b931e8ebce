//! Fast CPU paths for what the course trains through, where candle 0.11 is slow:
//! convolutions (im2col and the `gemm` crate's matrix products, in cache-sized bands run
//! in parallel, with the bias and an optional ReLU fused in; candle runs a depthwise
//! convolution as one convolution per channel and the input gradient of a full one as a
//! scalar loop nest), ReLU, max-pool and batch normalisation in training mode (one
//! parallel pass each way, where candle chains single-threaded ops).
//!
//! Each op is a candle custom op with its own backward pass. Outputs and every gradient
//! are checked against candle's own ops in `tests/nn_kernels.rs` (and finite differences
//! of the layers in `tests/nn_gradients.rs`). On other devices than the CPU the layers
//! use candle's ops unchanged.

use std::ops::Range;
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
    conv2d_bias(x, w, None, padding)
}

/// [`conv2d`] plus a per-channel `bias`, added as the products are summed (on the CPU
/// there is no separate pass over the output to add it, nor one to sum its gradient).
pub fn conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<Tensor> {
    conv2d_act(x, w, bias, padding, false)
}

/// [`conv2d_bias`] followed by ReLU, Keras's `Conv2D(..., activation="relu")`: on the
/// CPU the ReLU is applied as the output is written and its gradient inside the
/// convolution's backward pass (no separate op, no extra pass over the activation).
pub fn conv2d_bias_relu(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<Tensor> {
    conv2d_act(x, w, bias, padding, true)
}

fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    let (_, c, h, width) = x.dims4()?;
    let (o, wc, k, kw) = w.dims4()?;
    if x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32)
        && wc == c
        && k == kw
        && h + 2 * padding >= k
        && width + 2 * padding >= k
    {
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(o, DType::F32, x.device())?;
                &zeros
            }
        };
        return x.apply_op3(w, bias, Im2colConv { padding, relu });
    }
    bias_relu(conv2d_candle(x, w, padding)?, bias, relu)
}

/// `y` plus the per-channel `bias`, then ReLU: the fused ops' work in candle's ops, for
/// the devices and types they do not take.
fn bias_relu(y: Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    };
    if relu { y.relu() } else { Ok(y) }
}

/// candle's convolution, with the input gradient taken as a convolution where candle
/// would run its `conv_transpose2d` loop (f64 tensors on the CPU).
fn conv2d_candle(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
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

/// `c = a b` (or `c += a b` with `accumulate`) for `a` m x k and `b` k x n, each given
/// as its values with a row stride and a column stride (so that a transposed view is
/// just other strides), and `c` m x n the same way. Single-threaded: callers run one per
/// image, in parallel.
fn matmul(
    (m, n, k): (usize, usize, usize),
    (c, c_rs, c_cs): (&mut [f32], usize, usize),
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // Every element read or written lies inside its slice.
    // `c`'s elements are distinct (one stride is 1 and the other spans it).
    assert!((c_cs == 1 && c_rs >= n) || (c_rs == 1 && c_cs >= m));
    assert!(c.len() > (m - 1) * c_rs + (n - 1) * c_cs);
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts above bound every index gemm computes from these strides; the
    // three slices are distinct borrows, so `c` does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The columns of output rows `rows` of one image for a `k` x `k` convolution: row
/// `(channel, i, j)` holds the input shifted by `(i - p, j - p)` at each of those output
/// positions, zero outside.
fn im2col(image: &[f32], channels: usize, g: Plane, rows: Range<usize>) -> Vec<f32> {
    // Written front to back, each value once (zeroing the whole buffer first cost as
    // much as the copy).
    let mut col = Vec::with_capacity(channels * g.k * g.k * rows.len() * g.wo);
    let zeros = |col: &mut Vec<f32>, n: usize| col.extend(std::iter::repeat_n(0f32, n));
    for ch in 0..channels {
        let plane = &image[ch * g.h * g.w..][..g.h * g.w];
        for i in 0..g.k {
            for j in 0..g.k {
                let (first, last, shift) = g.columns(j);
                let from = (first as isize + shift) as usize;
                for y in rows.clone() {
                    let Some(r) = g.input_row(y, i) else {
                        zeros(&mut col, g.wo);
                        continue;
                    };
                    zeros(&mut col, first);
                    col.extend_from_slice(&plane[r * g.w + from..][..last - first]);
                    zeros(&mut col, g.wo - last);
                }
            }
        }
    }
    col
}

/// The reverse of [`im2col`]: every column value added back to the input position it
/// came from.
fn col2im(col: &[f32], image: &mut [f32], channels: usize, g: Plane, rows: Range<usize>) {
    let cols = rows.len() * g.wo;
    for ch in 0..channels {
        let plane = &mut image[ch * g.h * g.w..][..g.h * g.w];
        for i in 0..g.k {
            for j in 0..g.k {
                let row = &col[((ch * g.k + i) * g.k + j) * cols..][..cols];
                let (first, last, shift) = g.columns(j);
                let from = (first as isize + shift) as usize;
                for (t, y) in rows.clone().enumerate() {
                    let Some(r) = g.input_row(y, i) else { continue };
                    let dst = &mut plane[r * g.w + from..][..last - first];
                    for (d, v) in dst.iter_mut().zip(&row[t * g.wo + first..t * g.wo + last]) {
                        *d += *v;
                    }
                }
            }
        }
    }
}

/// Bytes of im2col columns built at a time: about a core's L2 cache, so that the matrix
/// product reads them back from cache instead of memory.
const TILE_BYTES: usize = 1 << 20;

/// The geometry of an im2col convolution and how its output rows are cut into tiles.
#[derive(Clone, Copy)]
struct ConvShape {
    n: usize,
    c: usize,
    o: usize,
    g: Plane,
    rows_per_tile: usize,
}

impl ConvShape {
    fn new(x: &Layout, w: &Layout, padding: usize) -> Result<Self> {
        let (n, c, h, width) = x.shape().dims4()?;
        let (o, _, k, _) = w.shape().dims4()?;
        Ok(Self::of(n, c, o, (h, width), k, padding))
    }

    fn of(n: usize, c: usize, o: usize, (h, w): (usize, usize), k: usize, p: usize) -> Self {
        let g = Plane {
            h,
            w,
            k,
            p,
            ho: h + 2 * p + 1 - k,
            wo: w + 2 * p + 1 - k,
        };
        let columns = TILE_BYTES / 4 / (c * k * k).max(1);
        let rows_per_tile = (columns / g.wo.max(1)).clamp(1, g.ho.max(1));
        Self {
            n,
            c,
            o,
            g,
            rows_per_tile,
        }
    }

    /// The convolution that carries the output gradient back to the input: `o` channels
    /// in, `c` out, the kernel turned 180 degrees, padding `k - 1 - p`; `None` when the
    /// padding is wider than the kernel.
    fn input_gradient(&self) -> Option<Self> {
        let p = (self.g.k - 1).checked_sub(self.g.p)?;
        let back = Self::of(self.n, self.o, self.c, (self.g.ho, self.g.wo), self.g.k, p);
        (back.g.ho == self.g.h && back.g.wo == self.g.w).then_some(back)
    }

    /// A 1 x 1 convolution without padding, whose im2col columns are the input itself.
    fn pointwise(&self) -> bool {
        self.g.k == 1 && self.g.p == 0
    }

    fn ckk(&self) -> usize {
        self.c * self.g.k * self.g.k
    }

    fn tiles(&self) -> impl Iterator<Item = Range<usize>> + Clone + '_ {
        (0..self.g.ho)
            .step_by(self.rows_per_tile)
            .map(|y| y..(y + self.rows_per_tile).min(self.g.ho))
    }
}

/// A full convolution with bias, stride 1, as im2col and matrix products: the output is
/// cut into (image, band of rows) tiles whose columns fit in cache, computed in
/// parallel, so a single image uses every core. The backward pass runs the images in
/// parallel and rebuilds each band's columns for both gradients (`dw += dy colᵀ`,
/// `dcol = wᵀ dy`, then col2im); the bias gradient is the sum of `dy` per channel.
struct Im2colConv {
    padding: usize,
    /// ReLU on the output, and its gradient folded into the backward pass.
    relu: bool,
}

impl CustomOp3 for Im2colConv {
    fn name(&self) -> &'static str {
        "cxr-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (input, kernel, bias) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?, f32_slice(bs, bl)?);
        let s = ConvShape::new(xl, wl, self.padding)?;
        let (g, o, ckk, relu) = (s.g, s.o, s.ckk(), self.relu);
        let (hw, chw) = (g.ho * g.wo, s.c * g.h * g.w);
        let tiles: Vec<Range<usize>> = s.tiles().collect();
        let jobs: Vec<(usize, Range<usize>)> = (0..s.n)
            .flat_map(|i| tiles.iter().map(move |t| (i, t.clone())))
            .collect();
        let done: Vec<Vec<f32>> = jobs
            .par_iter()
            .map(|(i, rows)| {
                let cols = rows.len() * g.wo;
                let mut y: Vec<f32> = bias
                    .iter()
                    .flat_map(|&b| std::iter::repeat_n(b, cols))
                    .collect();
                let image = &input[i * chw..][..chw];
                if s.pointwise() {
                    // A 1 x 1 convolution's columns are the image itself.
                    let x = (&image[rows.start * g.wo..], hw, 1);
                    matmul((o, cols, ckk), (&mut y, cols, 1), (kernel, ckk, 1), x, true);
                } else {
                    let col = im2col(image, s.c, g, rows.clone());
                    let col = (col.as_slice(), cols, 1);
                    matmul(
                        (o, cols, ckk),
                        (&mut y, cols, 1),
                        (kernel, ckk, 1),
                        col,
                        true,
                    );
                }
                y
            })
            .collect();
        let mut out = vec![0f32; s.n * o * hw];
        out.par_chunks_mut(o * hw)
            .zip(done.par_chunks(tiles.len()))
            .for_each(|(image, bands)| {
                for (rows, y) in tiles.iter().zip(bands) {
                    let cols = rows.len() * g.wo;
                    for ch in 0..o {
                        let out = &mut image[ch * hw + rows.start * g.wo..][..cols];
                        let values = &y[ch * cols..][..cols];
                        if relu {
                            for (o, &v) in out.iter_mut().zip(values) {
                                *o = v.max(0.0);
                            }
                        } else {
                            out.copy_from_slice(values);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((s.n, o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = ConvShape::new(x.layout(), w.layout(), self.padding)?;
        let (g, o, c, ckk) = (s.g, s.o, s.c, s.ckk());
        let (hw, chw) = (g.ho * g.wo, c * g.h * g.w);
        let (input, kernel, dy) = (
            Values::<f32>::of(x)?,
            Values::<f32>::of(w)?,
            Values::<f32>::of(grad)?,
        );
        // Through the ReLU first: the gradient passes where the output is positive.
        let masked: Vec<f32>;
        let dy: &[f32] = if self.relu {
            let y = Values::<f32>::of(output)?;
            masked = dy
                .par_iter()
                .zip(y.par_iter())
                .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
                .collect();
            &masked
        } else {
            &dy
        };
        // The input's gradient is skipped where nothing upstream needs it (the image).
        let want_gx = x.track_op();
        let back = s.input_gradient().filter(|_| !s.pointwise());
        // The kernel as the backward convolution needs it: `(c, o, k, k)`, turned.
        let turned: Vec<f32> = match back {
            Some(_) => {
                let kk = g.k * g.k;
                let mut t = vec![0f32; c * o * kk];
                for oc in 0..o {
                    for ic in 0..c {
                        for ij in 0..kk {
                            t[(ic * o + oc) * kk + kk - 1 - ij] = kernel[(oc * c + ic) * kk + ij];
                        }
                    }
                }
                t
            }
            None => Vec::new(),
        };
        let mut gx = vec![0f32; if want_gx { s.n * chw } else { 0 }];
        let per_image = |i: usize, gxi: Option<&mut [f32]>| {
            let image = &input[i * chw..][..chw];
            let dyi = &dy[i * o * hw..][..o * hw];
            let mut gw = vec![0f32; o * ckk];
            let wt = (&kernel[..], 1, ckk);
            let mut gxi = gxi;
            for rows in s.tiles() {
                let cols = rows.len() * g.wo;
                let dyt = &dyi[rows.start * g.wo..];
                if s.pointwise() {
                    // dw += dy xᵀ; dx = wᵀ dy, straight into the input's gradient.
                    let x = (&image[rows.start * g.wo..], 1, hw);
                    matmul((o, ckk, cols), (&mut gw, ckk, 1), (dyt, hw, 1), x, true);
                    if let Some(gxi) = gxi.as_deref_mut() {
                        let gxt = (&mut gxi[rows.start * g.wo..], hw, 1);
                        matmul((ckk, cols, o), gxt, wt, (dyt, hw, 1), false);
                    }
                    continue;
                }
                let col = im2col(image, c, g, rows.clone());
                // dw += dy (o x cols, rows hw apart) times colᵀ (cols x ckk).
                let colt = (col.as_slice(), 1, cols);
                matmul((o, ckk, cols), (&mut gw, ckk, 1), (dyt, hw, 1), colt, true);
                if let (Some(gxi), None) = (gxi.as_deref_mut(), back) {
                    // dcol = wᵀ (ckk x o) times dy, folded back onto the image.
                    let mut dcol = vec![0f32; ckk * cols];
                    matmul(
                        (ckk, cols, o),
                        (&mut dcol, cols, 1),
                        wt,
                        (dyt, hw, 1),
                        false,
                    );
                    col2im(&dcol, gxi, c, g, rows);
                }
            }
            if let (Some(gxi), Some(b)) = (gxi, back) {
                // dx: dy convolved with the turned kernel, band by band of dx's rows.
                let (bg, okk) = (b.g, b.ckk());
                for rows in b.tiles() {
                    let cols = rows.len() * bg.wo;
                    let col = im2col(dyi, o, bg, rows.clone());
                    let gxt = (&mut gxi[rows.start * bg.wo..], g.h * g.w, 1);
                    matmul(
                        (c, cols, okk),
                        gxt,
                        (&turned, okk, 1),
                        (&col, cols, 1),
                        false,
                    );
                }
            }
            let gb: Vec<f32> = dyi.chunks_exact(hw).map(sum).collect();
            (gw, gb)
        };
        let zero = || (vec![0f32; o * ckk], vec![0f32; o]);
        let add = |(mut aw, mut ab): (Vec<f32>, Vec<f32>), (bw, bb): (Vec<f32>, Vec<f32>)| {
            aw.iter_mut().zip(&bw).for_each(|(a, b)| *a += *b);
            ab.iter_mut().zip(&bb).for_each(|(a, b)| *a += *b);
            (aw, ab)
        };
        let (gw, gb) = if want_gx {
            gx.par_chunks_mut(chw)
                .enumerate()
                .map(|(i, gxi)| per_image(i, Some(gxi)))
                .reduce(zero, add)
        } else {
            (0..s.n)
                .into_par_iter()
                .map(|i| per_image(i, None))
                .reduce(zero, add)
        };
        let dev = x.device();
        let gx = match want_gx {
            true => Some(Tensor::from_vec(gx, x.shape(), dev)?),
            false => None,
        };
        Ok((
            gx,
            Some(Tensor::from_vec(gw, w.shape(), dev)?),
            Some(Tensor::from_vec(gb, o, dev)?),
        ))
    }
}

/// A pointwise (1 x 1) convolution as a matrix product per image: `w (O, C, 1, 1)` times
/// `x (N, C, H*W)`. Forward and backward are both matrix products.
pub fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    pointwise_bias(x, w, None)
}

/// [`pointwise`] plus a per-channel bias; on the CPU the im2col convolution, which for
/// a 1 x 1 kernel multiplies the image in place and adds the bias as it goes.
pub fn pointwise_bias(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    pointwise_act(x, w, bias, false)
}

/// [`pointwise_bias`] followed by ReLU, fused on the CPU as in [`conv2d_bias_relu`].
pub fn pointwise_bias_relu(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    pointwise_act(x, w, bias, true)
}

fn pointwise_act(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return conv2d_act(x, w, bias, 0, relu);
    }
    let (n, c, h, width) = x.dims4()?;
    let o = w.dim(0)?;
    let w2 = w.reshape((o, c))?;
    let y = w2.broadcast_matmul(&x.reshape((n, c, h * width))?)?;
    bias_relu(y.reshape((n, o, h, width))?, bias, relu)
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
                let len = last - first;
                gw[i * g.k + j] += dot(&grow[first..last], &src[from..from + len]);
            }
        }
    }
}

/// `sum a[i] b[i]` in sixteen running sums, which the compiler keeps in one vector
/// register (a single running sum is a chain of dependent scalar additions, since
/// floating-point addition may not be reordered for it).
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    const LANES: usize = 16;
    let mut acc = [T::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut sum = T::zero();
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        sum += *x * *y;
    }
    for (x, y) in a_chunks.zip(b_chunks) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for v in acc {
        sum += v;
    }
    sum
}

/// `sum a[i]`, in sixteen running sums (see [`dot`]).
fn sum(a: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// `sum (v - m)²` over `x`, in sixteen running sums (see [`dot`]).
fn squares(x: &[f32], m: f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&v| (v - m) * (v - m)).sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += (c[l] - m) * (c[l] - m);
        }
    }
    rest + acc.iter().sum::<f32>()
}

/// `sum g (v - m)` over `g` and `x`, in sixteen running sums (see [`dot`]).
fn centred_dot(g: &[f32], x: &[f32], m: f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    let rest: f32 = gc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(&a, &v)| a * (v - m))
        .sum();
    for (a, v) in gc.zip(xc) {
        for l in 0..LANES {
            acc[l] += a[l] * (v[l] - m);
        }
    }
    rest + acc.iter().sum::<f32>()
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

/// A CPU tensor's values, borrowed from its storage when they lie contiguously there
/// (no copy of a whole activation per backward pass), else copied.
enum Values<'a, T> {
    Borrowed(candle_core::StorageRef<'a>, Range<usize>),
    Copied(Vec<T>),
}

impl<'a, T: Float> Values<'a, T> {
    fn of(t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
            && T::cpu_storage_as_slice(cpu).is_ok()
        {
            return Ok(Self::Borrowed(storage, start..end));
        }
        drop(storage);
        Ok(Self::Copied(to_vec(t)?))
    }
}

impl<T: Float> std::ops::Deref for Values<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::Borrowed(storage, range) => match &**storage {
                candle_core::Storage::Cpu(cpu) => match T::cpu_storage_as_slice(cpu) {
                    Ok(values) => &values[range.clone()],
                    Err(_) => unreachable!("the dtype was checked in Values::of"),
                },
                _ => unreachable!("the device was checked in Values::of"),
            },
            Self::Copied(values) => values,
        }
    }
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
    let (input, kernel) = (Values::<T>::of(x)?, Values::<T>::of(w)?);
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
    // Release the storages' read locks before the op below takes them again.
    drop((input, kernel));
    let output = Tensor::from_vec(out, (n, c, g.ho, g.wo), x.device())?;
    if !(x.track_op() || w.track_op()) {
        return Ok(output);
    }
    let backward: Arc<Backward> = Arc::new(move |x, w, grad| {
        let (input, kernel, grad_v) = (
            Values::<T>::of(x)?,
            Values::<T>::of(w)?,
            Values::<T>::of(grad)?,
        );
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

/// The contiguous `f32` values of a CPU storage under `layout`.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("cxr's fused kernels take f32 tensors");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("cxr's fused kernels need contiguous tensors"),
    }
}

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
        let mut y = vec![0f32; x.len()];
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
        let mut out = vec![0f32; g.len()];
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
        let mut y = vec![0f32; n * c * ho * wo];
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
        let mut gx = vec![0f32; x.len()];
        if k == 2 {
            // Each window's gradient to its first maximum, as selects (no branches).
            gx.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w).zip(g.par_chunks(ho * wo)))
                .for_each(|(gx, (x, g))| {
                    for (r, g) in g.chunks_exact(wo).enumerate() {
                        let (top, bottom) =
                            (&x[2 * r * w..][..2 * wo], &x[(2 * r + 1) * w..][..2 * wo]);
                        let (gtop, gbottom) = gx[2 * r * w..].split_at_mut(w);
                        let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                        let outs = gtop.chunks_exact_mut(2).zip(gbottom.chunks_exact_mut(2));
                        for ((&g, (a, b)), (ga, gb)) in g.iter().zip(windows).zip(outs) {
                            let (mut best, mut at) = (a[0], 0);
                            for (v, i) in [(a[1], 1), (b[0], 2), (b[1], 3)] {
                                if v > best {
                                    (best, at) = (v, i);
                                }
                            }
                            ga[0] = if at == 0 { g } else { 0.0 };
                            ga[1] = if at == 1 { g } else { 0.0 };
                            gb[0] = if at == 2 { g } else { 0.0 };
                            gb[1] = if at == 3 { g } else { 0.0 };
                        }
                    }
                });
            return Ok((CpuStorage::F32(gx), x_layout.shape().clone()));
        }
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
}

/// A `k` x `k` max-pool, stride `k`: a fused parallel kernel for `f32` on the CPU, `None`
/// elsewhere (the caller uses candle's ops).
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Option<Tensor>> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4 {
        Ok(Some(x.contiguous()?.apply_op1(MaxPool { k })?))
    } else {
        Ok(None)
    }
}

/// `(images, channels, values per channel plane)` of an `(N, C, ...)` shape.
fn planes(shape: &Shape) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        candle_core::bail!("batch norm needs (N, C, ...) input, got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Each channel's mean and biased variance over every image and position, in f64.
fn moments(x: &[f32], (n, c, plane): (usize, usize, usize)) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let count = (n * plane).max(1) as f64;
            // Each plane summed in f32 lanes (a few hundred values per lane), the planes
            // added in f64.
            let planes = || (0..n).map(|i| &x[(i * c + ch) * plane..][..plane]);
            let mean = planes().map(|p| f64::from(sum(p))).sum::<f64>() / count;
            let m = mean as f32;
            let squares: f64 = planes().map(|p| f64::from(squares(p, m))).sum();
            // The mean was rounded to f32 for the lanes: correct the squares for it.
            let shift = mean - f64::from(m);
            (mean, (squares / count - shift * shift).max(0.0))
        })
        .collect()
}

/// Batch normalisation in training mode, `gamma * (x - mean) / sqrt(var + eps) + beta`
/// with the batch's own per-channel statistics, in one parallel pass; its backward pass
/// gives the gradients of `x`, `gamma` and `beta` in one more (candle's chain of
/// broadcast ops takes about fifteen single-threaded passes).
struct BatchNormTrain {
    eps: f64,
    /// Per channel mean and (biased) variance of the batch, computed once.
    stats: Arc<Vec<(f64, f64)>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "cxr-batch-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, plane) = planes(x_layout.shape())?;
        let x = f32_slice(x, x_layout)?;
        let (gamma, beta) = (
            f32_slice(gamma, gamma_layout)?,
            f32_slice(beta, beta_layout)?,
        );
        let stats = &self.stats;
        if stats.len() != c {
            candle_core::bail!("batch norm: {} statistics for {c} channels", stats.len());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane.max(1))
            .zip(x.par_chunks(plane.max(1)))
            .enumerate()
            .for_each(|(p, (y, x))| {
                let ch = p % c;
                let (mean, var) = stats[ch];
                let scale = f64::from(gamma[ch]) / (var + self.eps).sqrt();
                let shift = f64::from(beta[ch]) - mean * scale;
                let (scale, shift) = (scale as f32, shift as f32);
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = v * scale + shift;
                }
            });
        Ok((CpuStorage::F32(y), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.elem_count();
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad.contiguous()?,
            &BatchNormBackward {
                eps: self.eps,
                stats: self.stats.clone(),
            },
        )?;
        let dx = packed.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let dgamma = packed
            .narrow(0, x.elem_count(), c)?
            .reshape(gamma.shape())?;
        let dbeta = packed
            .narrow(0, x.elem_count() + c, c)?
            .reshape(gamma.shape())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The gradients of [`BatchNormTrain`], packed into one vector: `dx`, then `dgamma`,
/// then `dbeta`. With `xh` the normalised input and `m` the count per channel:
/// `dbeta = sum(dy)`, `dgamma = sum(dy * xh)`,
/// `dx = gamma / sqrt(var + eps) * (dy - dbeta / m - xh * dgamma / m)`.
struct BatchNormBackward {
    eps: f64,
    stats: Arc<Vec<(f64, f64)>>,
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "cxr-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, plane) = planes(x_layout.shape())?;
        let x = f32_slice(x, x_layout)?;
        let gamma = f32_slice(gamma, gamma_layout)?;
        let dy = f32_slice(grad, grad_layout)?;
        let stats = &self.stats;
        // Per channel: sum(dy) and sum(dy * xh), each plane in f32 lanes.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + self.eps).sqrt();
                let (mut sd, mut sdx) = (0f64, 0f64);
                let m = mean as f32;
                for i in 0..n {
                    let at = (i * c + ch) * plane;
                    let (g, v) = (&dy[at..at + plane], &x[at..at + plane]);
                    let plane_sd = f64::from(sum(g));
                    // Centred on the f32 mean; the rest of the f64 mean is added back.
                    let plane_sdx =
                        f64::from(centred_dot(g, v, m)) - plane_sd * (mean - f64::from(m));
                    sd += plane_sd;
                    sdx += plane_sdx * inv;
                }
                (sd, sdx)
            })
            .collect();
        let m = (n * plane).max(1) as f64;
        let mut out = vec![0f32; x.len() + 2 * c];
        let (dx, rest) = out.split_at_mut(x.len());
        dx.par_chunks_mut(plane.max(1))
            .zip(x.par_chunks(plane.max(1)).zip(dy.par_chunks(plane.max(1))))
            .enumerate()
            .for_each(|(p, (dx, (x, dy)))| {
                let ch = p % c;
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + self.eps).sqrt();
                let (sd, sdx) = sums[ch];
                let scale = f64::from(gamma[ch]) * inv;
                for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let xh = (f64::from(v) - mean) * inv;
                    *o = (scale * (f64::from(g) - sd / m - xh * sdx / m)) as f32;
                }
            });
        for (ch, &(sd, sdx)) in sums.iter().enumerate() {
            rest[ch] = sdx as f32;
            rest[c + ch] = sd as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Whether [`batch_norm_train`] takes these tensors: `f32` on the
/// CPU, `(N, C, ...)`.
pub fn batch_norm_fusable(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && gamma.dtype() == DType::F32
        && beta.dtype() == DType::F32
        && x.rank() >= 2
}

/// Batch normalisation in training mode with the batch's statistics: a fused kernel for
/// `f32` on the CPU, `None` elsewhere (the caller uses candle's ops).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Option<Tensor>> {
    Ok(batch_norm_train_with_moments(x, gamma, beta, eps)?.map(|(y, _, _)| y))
}

/// [`batch_norm_train`] and the batch's per-channel mean and (biased) variance, which
/// the layer folds into its running statistics: computed once for all three uses.
pub fn batch_norm_train_with_moments(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !batch_norm_fusable(x, gamma, beta) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let (n, c, plane) = planes(x.shape())?;
    let stats = moments(&Values::<f32>::of(&x)?, (n, c, plane));
    let mean: Vec<f32> = stats.iter().map(|&(m, _)| m as f32).collect();
    let var: Vec<f32> = stats.iter().map(|&(_, v)| v as f32).collect();
    let op = BatchNormTrain {
        eps,
        stats: Arc::new(stats),
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let dev = x.device();
    Ok(Some((
        y,
        Tensor::from_vec(mean, c, dev)?,
        Tensor::from_vec(var, c, dev)?,
    )))
}
