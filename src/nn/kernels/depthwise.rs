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
    let fits = w.dims4()? == (c, 1, k, k) && h + 2 * padding >= k && width + 2 * padding >= k;
    let cpu = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.dtype() == w.dtype();
    // On a GPU: the kernel sizes kernels.cu is built for.
    let gpu = on_gpu(&[x, w]) && matches!(k, 1 | 3 | 5 | 7);
    if fits && (cpu || gpu) {
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
    kernel_gradient_padded((dy, dy_size), (pad, width), k, gw, dy_pad);
}

/// [`kernel_gradient`] from a plane already padded as it pads it (rows `width` apart).
pub(super) fn kernel_gradient_padded<T: Strips>(
    (dy, dy_size): (&[T], Size),
    (pad, width): (&[T], usize),
    k: usize,
    gw: &mut [T],
    dy_pad: &mut Vec<T>,
) {
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
                if k == 3 {
                    let w: [S::f32s; 9] = std::array::from_fn(|t| simd.splat_f32s(kernel[t]));
                    let (pad, out) = ((self.pad, self.width), (out, rows, cols));
                    // AVX-512's 32 registers hold four rows' sums beside the nine taps;
                    // with AVX2's 16, three rows measured faster than four.
                    match S::F32_LANES {
                        16 => plane3::<S, 4>(simd, pad, &w, out),
                        _ => plane3::<S, 3>(simd, pad, &w, out),
                    }
                    return;
                }
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
                        store(simd, &mut row[x0..(x0 + lanes).min(cols)], acc);
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
                if k == 3 {
                    let mut acc = [simd.splat_f32s(0.0); 9];
                    let mut y = 0;
                    while y + 2 <= rows {
                        taps3::<S, 2>(simd, (dy, wide), (self.pad, self.width), &mut acc, y);
                        y += 2;
                    }
                    if y < rows {
                        taps3::<S, 1>(simd, (dy, wide), (self.pad, self.width), &mut acc, y);
                    }
                    for (g, a) in gw.iter_mut().zip(acc) {
                        *g += simd.reduce_sum_f32s(a);
                    }
                    return;
                }
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

/// A whole plane of a 3 x 3 correlation, `R` output rows per pass (then the rows left).
#[inline(always)]
fn plane3<S: Simd, const R: usize>(
    simd: S,
    pad: (&[f32], usize),
    w: &[S::f32s; 9],
    (out, rows, cols): (&mut [f32], usize, usize),
) {
    let mut y = 0;
    while y + R <= rows {
        rows3::<S, R>(simd, pad, w, (out, cols), y);
        y += R;
    }
    match rows - y {
        3 => rows3::<S, 3>(simd, pad, w, (out, cols), y),
        2 => rows3::<S, 2>(simd, pad, w, (out, cols), y),
        1 => rows3::<S, 1>(simd, pad, w, (out, cols), y),
        _ => {}
    }
}

/// Output rows `y..y + R` of a 3 x 3 correlation (`w` the nine taps, splatted): each
/// strip of input columns is loaded once per input row and added into every output row
/// it reaches, `R` independent running sums in registers. Each output still adds its
/// taps in the order of the plain loop, so the results are the same to the bit.
#[inline(always)]
fn rows3<S: Simd, const R: usize>(
    simd: S,
    (pad, width): (&[f32], usize),
    w: &[S::f32s; 9],
    (out, cols): (&mut [f32], usize),
    y: usize,
) {
    let lanes = S::F32_LANES;
    for x0 in (0..cols).step_by(lanes) {
        let mut acc = [simd.splat_f32s(0.0); R];
        for r in 0..R + 2 {
            let line = &pad[(y + r) * width + x0..];
            // One input vector live at a time (AVX2 has 16 registers: 9 taps, R sums).
            for j in 0..3 {
                let v = load::<S>(&line[j..]);
                for (t, a) in acc.iter_mut().enumerate() {
                    // Input row y + r is kernel row r - t of output row y + t.
                    if r >= t && r - t < 3 {
                        *a = simd.mul_add_e_f32s(w[(r - t) * 3 + j], v, *a);
                    }
                }
            }
        }
        for (t, a) in acc.into_iter().enumerate() {
            let row = &mut out[(y + t) * cols..][..cols];
            store(simd, &mut row[x0..(x0 + lanes).min(cols)], a);
        }
    }
}

/// A 3 x 3 kernel's gradient from output-gradient rows `y..y + R`: the nine running
/// sums stay in registers, and each strip of a padded input row is loaded once for all
/// the `R` gradient rows that meet it.
#[inline(always)]
fn taps3<S: Simd, const R: usize>(
    simd: S,
    (dy, wide): (&[f32], usize),
    (pad, width): (&[f32], usize),
    sums: &mut [S::f32s; 9],
    y: usize,
) {
    // A local copy, which the compiler keeps in registers (through the reference it
    // would load and store every sum at each multiply-add).
    let mut acc = *sums;
    for x0 in (0..wide).step_by(S::F32_LANES) {
        let d: [S::f32s; R] = std::array::from_fn(|t| load::<S>(&dy[(y + t) * wide + x0..]));
        for r in 0..R + 2 {
            let line = &pad[(y + r) * width + x0..];
            for j in 0..3 {
                let v = load::<S>(&line[j..]);
                for (t, d) in d.iter().enumerate() {
                    if r >= t && r - t < 3 {
                        let tap = (r - t) * 3 + j;
                        acc[tap] = simd.mul_add_e_f32s(*d, v, acc[tap]);
                    }
                }
            }
        }
    }
    *sums = acc;
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

    fn forward<T: Strips>(&self, x: &[T], w: &[T], g: Geometry) -> Result<Vec<T>> {
        let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
        let mut out = for_overwrite::<T>(g.n * g.c * ohw)?;
        out.par_chunks_mut(ohw)
            .enumerate()
            .for_each_init(Vec::new, |pad, (plane, o)| {
                let ch = plane % g.c;
                let src = &x[plane * hw..][..hw];
                let kernel = &w[ch * kk..][..kk];
                let q = self.padding as isize;
                correlate(src, g.input, kernel, g.k, q, (o, g.output), pad);
            });
        Ok(out)
    }

    /// The input's gradient (unless `want_gx` is false) and the kernel's.
    fn backward<T: Strips>(
        &self,
        (x, w, dy): (&[T], &[T], &[T]),
        g: Geometry,
        want_gx: bool,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
        // The input gradient is the output gradient correlated with the kernel turned
        // 180 degrees, shifted by k - 1 - p.
        let turned: Vec<T> = w
            .chunks_exact(kk)
            .flat_map(|kernel| kernel.iter().rev().copied())
            .collect();
        let q_back = g.k as isize - 1 - self.padding as isize;
        let mut gx = for_overwrite::<T>(if want_gx { g.n * g.c * hw } else { 0 })?;
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
        Ok((gx, gw))
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
                CpuStorage::F32(self.forward(x, w, g)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                let (x, w) = (contiguous(x, xl)?, contiguous(w, wl)?);
                CpuStorage::F64(self.forward(x, w, g)?)
            }
            _ => candle_core::bail!("cxr's depthwise convolution takes f32 or f64 tensors"),
        };
        Ok((storage, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = self.geometry(xl.shape(), wl.shape())?;
        let y = gpu::forward(xs, xl, ws, wl, g, self.padding)?;
        Ok((y, Shape::from((g.n, g.c, g.output.0, g.output.1))))
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
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let p = self.padding;
            let gx = match want_gx {
                true => Some(grad.apply_op2_no_bwd(w, &gpu::InputGrad { g, p })?),
                false => None,
            };
            return Ok((
                gx,
                Some(x.apply_op2_no_bwd(&grad, &gpu::KernelGrad { g, p })?),
            ));
        }
        let (gx, gw) = match x.dtype() {
            DType::F32 => {
                let (xv, wv, dy) = (Values::of(x)?, Values::of(w)?, Values::of(&grad)?);
                let (gx, gw) = self.backward::<f32>((&xv, &wv, &dy), g, want_gx)?;
                (Tensor::new(gx, x.device())?, Tensor::new(gw, x.device())?)
            }
            _ => {
                let (xv, wv, dy) = (Values::of(x)?, Values::of(w)?, Values::of(&grad)?);
                let (gx, gw) = self.backward::<f64>((&xv, &wv, &dy), g, want_gx)?;
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

/// The CUDA half: `kernels.cu`'s `depthwise_*` kernels, one thread per output value,
/// the kernel gradient summed per channel in parts and the parts added in order.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{CpuStorage, CudaStorage, CustomOp2, Layout, Result, Shape};

    use super::super::cuda::{blocks, gpu_only, grid, launch, output, parts, view};
    use super::Geometry;

    /// The numbers every depthwise kernel takes after its buffers, as C `int`s.
    fn sizes(g: Geometry, p: usize) -> [i32; 8] {
        let (n, c, (h, w), (ho, wo)) = (g.n, g.c, g.input, g.output);
        [n, c, h, w, p, ho, wo, 0].map(|v| v as i32)
    }

    pub(super) fn forward(
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        g: Geometry,
        p: usize,
    ) -> Result<CudaStorage> {
        let dev = &xs.device;
        let (x, w) = (view(xs, xl)?, view(ws, wl)?);
        let len = g.n * g.c * g.output.0 * g.output.1;
        let y = output(dev, len)?;
        let [n, c, h, wd, p, ho, wo, _] = sizes(g, p);
        let name = format!("depthwise_forward_{}", g.k);
        launch!(
            dev,
            &name,
            grid(len),
            &x,
            &w,
            &y,
            &n,
            &c,
            &h,
            &wd,
            &p,
            &ho,
            &wo
        )?;
        Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
    }

    /// The input gradient, from the output gradient and the kernel.
    pub(super) struct InputGrad {
        pub(super) g: Geometry,
        pub(super) p: usize,
    }

    impl CustomOp2 for InputGrad {
        fn name(&self) -> &'static str {
            "cxr-depthwise-input-grad"
        }

        gpu_only!(op2);

        fn cuda_fwd(
            &self,
            ds: &CudaStorage,
            dl: &Layout,
            ws: &CudaStorage,
            wl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (dev, g) = (&ds.device, self.g);
            let (dy, w) = (view(ds, dl)?, view(ws, wl)?);
            let len = g.n * g.c * g.input.0 * g.input.1;
            let dx = output(dev, len)?;
            let [n, c, h, wd, p, ho, wo, _] = sizes(g, self.p);
            let name = format!("depthwise_input_grad_{}", g.k);
            launch!(
                dev,
                &name,
                grid(len),
                &dy,
                &w,
                &dx,
                &n,
                &c,
                &h,
                &wd,
                &p,
                &ho,
                &wo
            )?;
            let shape = Shape::from((g.n, g.c, g.input.0, g.input.1));
            Ok((CudaStorage::wrap_cuda_slice(dx, dev.clone()), shape))
        }
    }

    /// The kernel gradient, from the input and the output gradient.
    pub(super) struct KernelGrad {
        pub(super) g: Geometry,
        pub(super) p: usize,
    }

    impl CustomOp2 for KernelGrad {
        fn name(&self) -> &'static str {
            "cxr-depthwise-kernel-grad"
        }

        gpu_only!(op2);

        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            ds: &CudaStorage,
            dl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (dev, g) = (&xs.device, self.g);
            let (x, dy) = (view(xs, xl)?, view(ds, dl)?);
            let kk = g.k * g.k;
            let parts = parts(g.n * g.output.0 * g.output.1);
            let partial = output(dev, g.c * parts * kk)?;
            let [n, c, h, wd, p, ho, wo, _] = sizes(g, self.p);
            let name = format!("depthwise_kernel_grad_parts_{}", g.k);
            let cfg = blocks(g.c, parts);
            launch!(
                dev, &name, cfg, &x, &dy, &partial, &n, &c, &h, &wd, &p, &ho, &wo
            )?;
            let gw = output(dev, g.c * kk)?;
            let (rows, kk32, parts32) = ((g.c * kk) as i32, kk as i32, parts as i32);
            launch!(
                dev,
                "sum_parts",
                grid(g.c * kk),
                &partial,
                &gw,
                &rows,
                &kk32,
                &parts32
            )?;
            let shape = Shape::from((g.c, 1, g.k, g.k));
            Ok((CudaStorage::wrap_cuda_slice(gw, dev.clone()), shape))
        }
    }
}
