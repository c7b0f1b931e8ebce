//! Full and 1 x 1 convolutions: im2col and `gemm`'s matrix products in cache-sized bands,
//! with the bias and an optional ReLU fused in.

use std::ops::Range;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;
use super::direct::{self, Direct, direct, direct_kernel_gradient};
use super::wide::{self, wide};

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
    // On a GPU, few input channels: direct kernels (candle's im2col copies every input
    // value k² times, and its gradients go through a scalar transposed convolution).
    #[cfg(feature = "cuda")]
    if on_gpu(&[x, w])
        && wc == c
        && k == kw
        && matches!(k, 1 | 3 | 5)
        && c * k * k <= 256
        && h + 2 * padding >= k
        && width + 2 * padding >= k
    {
        return gpu::conv2d(x, w, bias, padding, relu);
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
/// would run its `conv_transpose2d` loop (f64 tensors on the CPU, and `f32` on a GPU,
/// where candle's `conv_transpose2d` is one thread per value looping over every
/// channel, and the convolution an im2col and a cuBLAS product).
fn conv2d_candle(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
    let float = matches!(x.dtype(), DType::F32 | DType::F64);
    let here = (x.device().is_cpu() && float) || on_gpu(&[x, w]);
    if !here || !(x.track_op() || w.track_op()) {
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
pub(super) fn matmul(
    (m, n, k): (usize, usize, usize),
    (c, c_rs, c_cs): (&mut [f32], usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // Every element written lies inside `c`, and they are distinct (one stride is 1 and
    // the other spans it).
    assert!((c_cs == 1 && c_rs >= n) || (c_rs == 1 && c_cs >= m));
    assert!(c.len() > (m - 1) * c_rs + (n - 1) * c_cs);
    // SAFETY: the asserts above bound every index of `c`, a borrow of its own.
    unsafe { matmul_into((m, n, k), (c.as_mut_ptr(), c_rs, c_cs), a, b, accumulate) }
}

/// [`matmul`] into `c` given by a pointer, for products whose outputs interleave with
/// other threads' in one buffer.
///
/// # Safety
/// The `m` x `n` values at `c` with strides `c_rs`, `c_cs` must be valid for writes,
/// distinct, and written or read by no one else during the call.
unsafe fn matmul_into(
    (m, n, k): (usize, usize, usize),
    (c, c_rs, c_cs): (*mut f32, usize, usize),
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: `a` and `b` are bounded by the asserts, `c` by the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
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

/// An output buffer that parallel jobs write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);

// SAFETY: each job writes only its own part of the buffer (see the users).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// The address `offset` values in; the caller keeps it inside the buffer.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
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
    /// Bands of output rows per image, each about [`TILE_BYTES`] of columns.
    bands: usize,
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
        // As many (image, band) jobs as a multiple of the threads where the rows allow,
        // so that no core idles at the end of a layer (at batch 1, 7 bands on 2 cores
        // had left one idle for a seventh of the layer).
        let threads = rayon::current_num_threads().max(1);
        let mut bands = g.ho.div_ceil(rows_per_tile).max(1);
        while !(n * bands).is_multiple_of(threads) && bands < g.ho {
            bands += 1;
        }
        Self { n, c, o, g, bands }
    }

    /// The convolution that carries the output gradient back to the input: `o` channels
    /// in, `c` out, the kernel turned 180 degrees, padding `k - 1 - p`; `None` when the
    /// padding is wider than the kernel.
    fn input_gradient(&self) -> Option<Self> {
        let p = (self.g.k - 1).checked_sub(self.g.p)?;
        let back = Self::of(self.n, self.o, self.c, (self.g.ho, self.g.wo), self.g.k, p);
        (back.g.ho == self.g.h && back.g.wo == self.g.w).then_some(back)
    }

    /// This convolution as a [`direct`] one, where that suits its input channels.
    fn direct(&self) -> Option<Direct> {
        (!self.pointwise() && direct::suits(self.c, self.g.k)).then(|| self.geometry())
    }

    /// This convolution as a [`wide`] one, where that suits its input channels.
    fn wide(&self) -> Option<Direct> {
        (!self.pointwise() && wide::suits(self.c)).then(|| self.geometry())
    }

    /// The geometry of [`direct`] and [`wide`].
    fn geometry(&self) -> Direct {
        Direct {
            n: self.n,
            c: self.c,
            o: self.o,
            k: self.g.k,
            q: self.g.p as isize,
            input: (self.g.h, self.g.w),
            output: (self.g.ho, self.g.wo),
        }
    }

    /// The convolution that carries the output gradient back to the input as a
    /// [`direct`] one (the kernel turned, its window shifted by `k - 1 - p`), where that
    /// suits the output channels; any padding.
    fn input_gradient_direct(&self) -> Option<Direct> {
        (!self.pointwise() && direct::suits(self.o, self.g.k)).then_some(Direct {
            n: self.n,
            c: self.o,
            o: self.c,
            k: self.g.k,
            q: self.g.k as isize - 1 - self.g.p as isize,
            input: (self.g.ho, self.g.wo),
            output: (self.g.h, self.g.w),
        })
    }

    /// A 1 x 1 convolution without padding, whose im2col columns are the input itself.
    fn pointwise(&self) -> bool {
        self.g.k == 1 && self.g.p == 0
    }

    fn ckk(&self) -> usize {
        self.c * self.g.k * self.g.k
    }

    fn tiles(&self) -> impl Iterator<Item = Range<usize>> + Clone + '_ {
        // Rows split evenly: band sizes differ by at most one row.
        let (ho, bands) = (self.g.ho, self.bands);
        (0..bands).map(move |b| b * ho / bands..(b + 1) * ho / bands)
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
        let shape = Shape::from((s.n, o, g.ho, g.wo));
        if let Some(d) = s.direct() {
            let out = direct(input, None, kernel, Some(bias), d, relu)?;
            return Ok((CpuStorage::F32(out), shape));
        }
        if let Some(d) = s.wide() {
            let out = wide(input, kernel, bias, d, relu)?;
            return Ok((CpuStorage::F32(out), shape));
        }
        let (hw, chw) = (g.ho * g.wo, s.c * g.h * g.w);
        let jobs: Vec<(usize, Range<usize>)> = (0..s.n)
            .flat_map(|i| s.tiles().map(move |t| (i, t)))
            .collect();
        let mut out = for_overwrite::<f32>(s.n * o * hw)?;
        let dst = SharedOutput(out.as_mut_ptr());
        jobs.par_iter().for_each(|(i, rows)| {
            // This job's part of the output: each channel's `cols` values from the
            // band's first row on, `hw` apart; no other job writes there.
            let first = i * o * hw + rows.start * g.wo;
            let cols = rows.len() * g.wo;
            let band = |ch: usize| {
                // SAFETY: `first + ch * hw + cols` stays within image `i`'s channel `ch`
                // (the band ends at or before the plane's last row), the jobs' bands are
                // disjoint, and `out` outlives the parallel loop.
                unsafe { std::slice::from_raw_parts_mut(dst.at(first + ch * hw), cols) }
            };
            for (ch, &b) in bias.iter().enumerate() {
                band(ch).fill(b);
            }
            let image = &input[i * chw..][..chw];
            let col;
            // The product transposed, pixels by channels (`colᵀ kernelᵀ`): the kernel,
            // the same in every band, is then read where it lies instead of being packed
            // again for each band, and the result goes straight into the output's
            // channel planes.
            let x = match s.pointwise() {
                true => (&image[rows.start * g.wo..], 1, hw),
                false => {
                    col = im2col(image, s.c, g, rows.clone());
                    (col.as_slice(), 1, cols)
                }
            };
            // SAFETY: as for `band`: the `cols` x `o` values from `first`, one apart
            // along a band and `hw` apart between channels, are this job's alone.
            unsafe {
                matmul_into(
                    (cols, o, ckk),
                    (dst.at(first), 1, hw),
                    x,
                    (kernel, 1, ckk),
                    true,
                )
            };
            if relu {
                for ch in 0..o {
                    band(ch).iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        });
        Ok((CpuStorage::F32(out), shape))
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
        let y = match self.relu {
            true => Some(Values::<f32>::of(output)?),
            false => None,
        };
        // The input's gradient is skipped where nothing upstream needs it (the image).
        // With few output channels it is a direct convolution of the output gradient
        // with the turned kernel; otherwise image by image with the kernel's gradient.
        let direct_back = s.input_gradient_direct().filter(|_| x.track_op());
        let want_gx = x.track_op() && direct_back.is_none();
        let back = s.input_gradient().filter(|_| !s.pointwise());
        // The kernel as the backward convolution needs it: `(c, o, k, k)`, turned.
        let turned: Vec<f32> = match back.is_some() || direct_back.is_some() {
            true => {
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
            false => Vec::new(),
        };
        let dev = x.device();
        // Few input channels, and the input's gradient not wanted or direct too: every
        // gradient directly (no im2col), each applying the ReLU's gradient as it reads
        // the output gradient (no masked copy of it), the bias's gradient summed on
        // the way.
        if let Some(d) = s.direct().filter(|_| !want_gx) {
            let mask = y.as_deref();
            let (gw, plane_sums) = direct_kernel_gradient(&input, (&dy, mask), d);
            let gx = match direct_back {
                Some(b) => Some(Tensor::from_vec(
                    direct(&dy, mask, &turned, None, b, false)?,
                    x.shape(),
                    dev,
                )?),
                None => None,
            };
            return Ok((
                gx,
                Some(Tensor::from_vec(gw, w.shape(), dev)?),
                Some(Tensor::from_vec(image_order_sum(&plane_sums, o), o, dev)?),
            ));
        }
        // Through the ReLU first: the gradient passes where the output is positive. Each
        // plane's sum (the bias's gradient, image by image) is taken in the same pass,
        // while the plane is still in cache.
        let masked: Vec<f32>;
        let (dy, plane_sums): (&[f32], Vec<f32>) = match &y {
            Some(y) => {
                let mut m = for_overwrite::<f32>(dy.len())?;
                let sums = m
                    .par_chunks_mut(hw)
                    .zip(dy.par_chunks(hw).zip(y.par_chunks(hw)))
                    .map(|(m, (g, y))| {
                        for ((m, &g), &v) in m.iter_mut().zip(g).zip(y) {
                            *m = if v > 0.0 { g } else { 0.0 };
                        }
                        sum(m)
                    })
                    .collect();
                masked = m;
                (&masked, sums)
            }
            None => (&dy, dy.par_chunks(hw).map(sum).collect()),
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
            gw
        };
        // The images' partial gradients summed in image order, whatever the threads did
        // (a resumed run ends where an uninterrupted one does).
        let parts: Vec<_> = match want_gx {
            true => gx
                .par_chunks_mut(chw)
                .enumerate()
                .map(|(i, gxi)| per_image(i, Some(gxi)))
                .collect(),
            false => (0..s.n)
                .into_par_iter()
                .map(|i| per_image(i, None))
                .collect(),
        };
        let gw = parts
            .into_iter()
            .fold(vec![0f32; o * ckk], |mut acc, part| {
                acc.iter_mut().zip(&part).for_each(|(a, b)| *a += *b);
                acc
            });
        let gb = image_order_sum(&plane_sums, o);
        let gx = match (direct_back, want_gx) {
            (Some(b), _) => Some(Tensor::from_vec(
                direct(dy, None, &turned, None, b, false)?,
                x.shape(),
                dev,
            )?),
            (None, true) => Some(Tensor::from_vec(gx, x.shape(), dev)?),
            (None, false) => None,
        };
        Ok((
            gx,
            Some(Tensor::from_vec(gw, w.shape(), dev)?),
            Some(Tensor::from_vec(gb, o, dev)?),
        ))
    }
}

/// Each channel's sum over the images of `per_image` (`n * o` values, image by image),
/// added in image order.
fn image_order_sum(per_image: &[f32], o: usize) -> Vec<f32> {
    per_image
        .chunks_exact(o)
        .fold(vec![0f32; o], |mut acc, image| {
            acc.iter_mut().zip(image).for_each(|(a, b)| *a += *b);
            acc
        })
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

/// The CUDA half for few input channels: `conv_direct` (a tile of outputs for sixteen
/// output channels per block, inputs and weights through shared memory, the bias and
/// the ReLU applied as they are written) forward and, with the kernel turned and
/// transposed, for the input gradient; the kernel gradient summed per band of rows and
/// the bands added in order; the bias's gradient per channel in parts, as batch norm's
/// sums.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::Tensor;
    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig};
    use candle_core::{
        CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout,
        Result, Shape,
    };

    use super::super::cuda::{
        THREADS, blocks, gpu_only, grid, launch, output, partial_sums, parts, view,
    };

    pub(super) fn conv2d(
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        padding: usize,
        relu: bool,
    ) -> Result<Tensor> {
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(w.dim(0)?, DType::F32, w.device())?,
        };
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &bias, Conv { padding, relu })
    }

    /// `out (n, o, ho, wo)` from `input (n, c, h, w)` and the weights, turned and
    /// transposed with `flip`.
    struct Direct<'a> {
        input: CudaView<'a, f32>,
        weights: CudaView<'a, f32>,
        input_shape: (usize, usize, usize, usize),
        o: usize,
        k: usize,
        padding: usize,
        flip: bool,
        /// Added per output channel, then ReLU if asked (the forward pass only).
        bias: Option<(CudaView<'a, f32>, bool)>,
    }

    impl Direct<'_> {
        fn run(&self, dev: &CudaDevice) -> Result<(CudaSlice<f32>, Shape)> {
            let (n, c, h, w) = self.input_shape;
            let (o, k, p) = (self.o, self.k, self.padding);
            let (ho, wo) = (h + 2 * p + 1 - k, w + 2 * p + 1 - k);
            let out = output(dev, n * o * ho * wo)?;
            let cfg = LaunchConfig {
                grid_dim: (
                    wo.div_ceil(32) as u32,
                    ho.div_ceil(8) as u32,
                    (n * o.div_ceil(16)) as u32,
                ),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let (has_bias, relu) = (self.bias.is_some(), matches!(self.bias, Some((_, true))));
            let [
                n32,
                c32,
                h32,
                w32,
                o32,
                p32,
                ho32,
                wo32,
                flip,
                has_bias,
                relu,
            ] = [
                n,
                c,
                h,
                w,
                o,
                p,
                ho,
                wo,
                self.flip as usize,
                has_bias as usize,
                relu as usize,
            ]
            .map(|v| v as i32);
            let name = format!("conv_direct_{k}");
            let (x, wt) = (&self.input, &self.weights);
            // Without a bias the kernel reads none: the weights stand in for the pointer.
            let b = self.bias.as_ref().map_or(wt, |(b, _)| b);
            launch!(
                dev, &name, cfg, x, wt, b, &out, &n32, &c32, &h32, &w32, &o32, &p32, &ho32, &wo32,
                &flip, &has_bias, &relu
            )?;
            Ok((out, Shape::from((n, o, ho, wo))))
        }
    }

    /// The convolution, plus the bias, then ReLU if asked.
    struct Conv {
        padding: usize,
        relu: bool,
    }

    impl CustomOp3 for Conv {
        fn name(&self) -> &'static str {
            "cxr-conv-direct"
        }

        gpu_only!(op3);

        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            ws: &CudaStorage,
            wl: &Layout,
            bs: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (o, _, k, _) = wl.shape().dims4()?;
            let (y, shape) = Direct {
                input: view(xs, xl)?,
                weights: view(ws, wl)?,
                input_shape: xl.shape().dims4()?,
                o,
                k,
                padding: self.padding,
                flip: false,
                bias: Some((view(bs, bl)?, self.relu)),
            }
            .run(&xs.device)?;
            Ok((CudaStorage::wrap_cuda_slice(y, xs.device.clone()), shape))
        }

        fn bwd(
            &self,
            x: &Tensor,
            w: &Tensor,
            _bias: &Tensor,
            y: &Tensor,
            grad: &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            // Through the ReLU first: the gradient passes where the output is positive.
            let mut grad = grad.contiguous()?;
            if self.relu {
                grad = grad.apply_op2_no_bwd(y, &ReluMask)?;
            }
            let p = self.padding;
            let gx = match x.track_op() {
                true => Some(grad.apply_op2_no_bwd(w, &InputGrad { padding: p })?),
                false => None,
            };
            let gw = x.apply_op2_no_bwd(&grad, &WeightGrad { padding: p })?;
            Ok((gx, Some(gw), Some(grad.apply_op1_no_bwd(&ChannelSums)?)))
        }
    }

    /// The output gradient where the output is positive, zero elsewhere.
    struct ReluMask;

    impl CustomOp2 for ReluMask {
        fn name(&self) -> &'static str {
            "cxr-relu-mask"
        }

        gpu_only!(op2);

        fn cuda_fwd(
            &self,
            ds: &CudaStorage,
            dl: &Layout,
            ys: &CudaStorage,
            yl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = &ds.device;
            let (dy, y) = (view(ds, dl)?, view(ys, yl)?);
            let total = dl.shape().elem_count();
            let out = output(dev, total)?;
            let total64 = total as i64;
            launch!(dev, "relu_mask", grid(total), &dy, &y, &out, &total64)?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                dl.shape().clone(),
            ))
        }
    }

    /// Each channel's sum over the images and positions: the bias's gradient.
    struct ChannelSums;

    impl CustomOp1 for ChannelSums {
        fn name(&self) -> &'static str {
            "cxr-channel-sums"
        }

        gpu_only!(op1);

        fn cuda_fwd(&self, ds: &CudaStorage, dl: &Layout) -> Result<(CudaStorage, Shape)> {
            let dev = &ds.device;
            let (n, c, h, w) = dl.shape().dims4()?;
            let dy = view(ds, dl)?;
            let parts = parts(n * h * w);
            let partial = partial_sums(dev, 2 * c * parts)?;
            let [n32, c32, plane32, parts32] = [n, c, h * w, parts].map(|v| v as i32);
            let cfg = blocks(c, parts);
            launch!(
                dev,
                "batch_norm_stats_parts",
                cfg,
                &dy,
                &partial,
                &n32,
                &c32,
                &plane32
            )?;
            let sums = output(dev, c)?;
            launch!(
                dev,
                "channel_sums",
                grid(c),
                &partial,
                &sums,
                &c32,
                &parts32
            )?;
            Ok((
                CudaStorage::wrap_cuda_slice(sums, dev.clone()),
                Shape::from(c),
            ))
        }
    }

    /// The input gradient: the output gradient convolved with the kernel turned 180
    /// degrees and its channels transposed, padded by `k - 1 - padding`.
    struct InputGrad {
        padding: usize,
    }

    impl CustomOp2 for InputGrad {
        fn name(&self) -> &'static str {
            "cxr-conv-direct-input-grad"
        }

        gpu_only!(op2);

        fn cuda_fwd(
            &self,
            ds: &CudaStorage,
            dl: &Layout,
            ws: &CudaStorage,
            wl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (_, c, k, _) = wl.shape().dims4()?;
            let (dx, shape) = Direct {
                input: view(ds, dl)?,
                weights: view(ws, wl)?,
                input_shape: dl.shape().dims4()?,
                o: c,
                k,
                padding: k - 1 - self.padding,
                flip: true,
                bias: None,
            }
            .run(&ds.device)?;
            Ok((CudaStorage::wrap_cuda_slice(dx, ds.device.clone()), shape))
        }
    }

    /// The kernel gradient, from the input and the output gradient.
    struct WeightGrad {
        padding: usize,
    }

    /// Output rows per block of the kernel gradient's first stage.
    const BAND: usize = 16;

    impl CustomOp2 for WeightGrad {
        fn name(&self) -> &'static str {
            "cxr-conv-direct-weight-grad"
        }

        gpu_only!(op2);

        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            ds: &CudaStorage,
            dl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = &xs.device;
            let (n, c, h, w) = xl.shape().dims4()?;
            let (_, o, ho, wo) = dl.shape().dims4()?;
            let k = h + 2 * self.padding + 1 - ho;
            let (x, dy) = (view(xs, xl)?, view(ds, dl)?);
            let (rows, bands) = (o * c * k * k, ho.div_ceil(BAND));
            let partial = output(dev, n * bands * rows)?;
            let cfg = LaunchConfig {
                grid_dim: (n as u32, bands as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: THREADS * (k * k * 4) as u32,
            };
            let [n32, c32, h32, w32, o32, p32, ho32, wo32, band] =
                [n, c, h, w, o, self.padding, ho, wo, BAND].map(|v| v as i32);
            let name = format!("conv_weight_grad_parts_{k}");
            launch!(
                dev, &name, cfg, &x, &dy, &partial, &n32, &c32, &h32, &w32, &o32, &p32, &ho32,
                &wo32, &band
            )?;
            let gw = output(dev, rows)?;
            let (rows32, parts) = (rows as i32, (n * bands) as i32);
            launch!(
                dev,
                "sum_blocks",
                grid(rows),
                &partial,
                &gw,
                &rows32,
                &parts
            )?;
            let shape = Shape::from((o, c, k, k));
            Ok((CudaStorage::wrap_cuda_slice(gw, dev.clone()), shape))
        }
    }
}
