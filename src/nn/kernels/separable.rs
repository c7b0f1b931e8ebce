//! Keras's separable convolution as one op: per image, the depthwise convolution into a
//! buffer that stays in cache, then the pointwise product with the bias straight into
//! the output, ReLU in place. The depthwise output never becomes a tensor: no copy of
//! it, and no gradient tensor for it in candle's backward pass (it is recomputed there,
//! a ninth or less of the pointwise work).

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;
use super::conv::matmul;
use super::depthwise::{Strips, correlate, kernel_gradient_padded};

/// A depthwise `k` x `k` convolution (`dw (C, 1, k, k)`, stride 1, `padding`), then a
/// pointwise one (`pw (O, C, 1, 1)`) plus `bias (O)`, then ReLU if asked: one fused op
/// for `f32` on the CPU, candle's ops elsewhere.
pub fn separable_conv2d(
    x: &Tensor,
    dw: &Tensor,
    pw: &Tensor,
    bias: &Tensor,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (o, k) = (pw.dim(0)?, dw.dim(2)?);
    let fused = x.device().is_cpu()
        && [x, dw, pw, bias].iter().all(|t| t.dtype() == DType::F32)
        && dw.dims4()? == (c, 1, k, k)
        && pw.dims4()? == (o, c, 1, 1)
        && h + 2 * padding >= k
        && w + 2 * padding >= k;
    if !fused {
        let mid = super::depthwise_conv2d(x, dw, padding)?;
        return match relu {
            true => super::pointwise_bias_relu(&mid, pw, Some(bias)),
            false => super::pointwise_bias(&mid, pw, Some(bias)),
        };
    }
    // Three inputs at most in a custom op: the bias rides as the pointwise matrix's last
    // column (a concatenation, whose gradient candle splits back).
    let pwb = Tensor::cat(&[pw.reshape((o, c))?, bias.reshape((o, 1))?], 1)?;
    x.contiguous()?
        .apply_op3(&dw.contiguous()?, &pwb, Separable { padding, relu })
}

/// The fused op; its third input is the pointwise matrix `(O, C)` with the bias as an
/// extra last column, `(O, C + 1)`.
struct Separable {
    padding: usize,
    relu: bool,
}

#[derive(Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    o: usize,
    k: usize,
    input: Size,
    output: Size,
}

impl Separable {
    fn geometry(&self, x: &Shape, dw: &Shape, pwb: &Shape) -> Result<Geometry> {
        let (n, c, h, w) = x.dims4()?;
        let k = dw.dims4()?.2;
        let (o, _) = pwb.dims2()?;
        let p = self.padding;
        Ok(Geometry {
            n,
            c,
            o,
            k,
            input: (h, w),
            output: (h + 2 * p + 1 - k, w + 2 * p + 1 - k),
        })
    }

    /// One image's depthwise output, `(C, ho * wo)`, into `mid`, each input plane padded
    /// into `pads` first: all of them kept side by side if `keep` (the backward pass
    /// reads them again for the kernel's gradient), else one buffer reused plane after
    /// plane. Returns the padded planes' row width and length.
    fn depthwise(
        &self,
        image: &[f32],
        dw: &[f32],
        g: Geometry,
        (mid, pads): (&mut Vec<f32>, &mut Vec<f32>),
        keep: bool,
    ) -> (usize, usize) {
        let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
        let width = padded_width(g.output.1, g.k);
        let plane_len = (g.output.0 + g.k - 1) * width;
        let q = self.padding as isize;
        mid.resize(g.c * ohw, 0.0);
        pads.resize(if keep { g.c } else { 1 } * plane_len, 0.0);
        for (ch, plane) in mid.chunks_exact_mut(ohw).enumerate() {
            let pad = &mut pads[if keep { ch * plane_len } else { 0 }..][..plane_len];
            pad_plane(pad, width, &image[ch * hw..][..hw], g.input, (q, q));
            let kernel = (&dw[ch * kk..][..kk], g.k);
            f32::correlate_strips(pad, width, kernel, (plane, g.output));
        }
        (width, plane_len)
    }
}

impl CustomOp3 for Separable {
    fn name(&self) -> &'static str {
        "cxr-separable-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dw, pwb) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?, f32_slice(ps, pl)?);
        let g = self.geometry(xl.shape(), wl.shape(), pl.shape())?;
        let (hw, ohw, c) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.c);
        let mut out = for_overwrite::<f32>(g.n * g.o * ohw)?;
        out.par_chunks_mut(g.o * ohw)
            .enumerate()
            .for_each(|(i, y)| {
                SCRATCH.with_borrow_mut(|s| {
                    let (mid, pad) = (&mut s.mid, &mut s.pad);
                    self.depthwise(&x[i * c * hw..][..c * hw], dw, g, (mid, pad), false);
                    let mid = (mid.as_slice(), ohw, 1);
                    matmul((g.o, ohw, c), (y, ohw, 1), (pwb, c + 1, 1), mid, false);
                    // The bias after the product, one pass fewer than a product added
                    // onto the bias and the same sums to the bit: gemm adds a block's
                    // sum to what the output held, and a depth (c) of up to 512 is
                    // one block.
                    widest(|| {
                        for (t, plane) in y.chunks_exact_mut(ohw).enumerate() {
                            let b = pwb[t * (c + 1) + c];
                            match self.relu {
                                true => plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
                                false => plane.iter_mut().for_each(|v| *v += b),
                            }
                        }
                    });
                })
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.n, g.o, g.output.0, g.output.1)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        dw: &Tensor,
        pwb: &Tensor,
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.shape(), dw.shape(), pwb.shape())?;
        let (hw, ohw, kk, c, o) = (
            g.input.0 * g.input.1,
            g.output.0 * g.output.1,
            g.k * g.k,
            g.c,
            g.o,
        );
        let grad = grad.contiguous()?;
        let (xv, dwv, pwbv, y, dy) = (
            Values::<f32>::of(x)?,
            Values::<f32>::of(dw)?,
            Values::<f32>::of(pwb)?,
            Values::<f32>::of(output)?,
            Values::<f32>::of(&grad)?,
        );
        let (xv, dwv, pwbv): (&[f32], &[f32], &[f32]) = (&xv, &dwv, &pwbv);
        // The depthwise input gradient correlates with each kernel turned 180 degrees.
        let turned: Vec<f32> = dwv
            .chunks_exact(kk)
            .flat_map(|kernel| kernel.iter().rev().copied())
            .collect();
        let q_back = g.k as isize - 1 - self.padding as isize;
        let want_gx = x.track_op();
        let mut gx = for_overwrite::<f32>(if want_gx { g.n * c * hw } else { 0 })?;
        let per_image = |i: usize, gx: Option<&mut [f32]>, s: &mut Scratch| {
            let image = &xv[i * c * hw..][..c * hw];
            // The padded planes stay for the depthwise kernel's gradient below.
            let (width, plane_len) = self.depthwise(image, dwv, g, (&mut s.mid, &mut s.pads), true);
            // Through the ReLU: the gradient passes where the output is positive.
            let dyi = &dy[i * o * ohw..][..o * ohw];
            match self.relu {
                true => {
                    let yi = &y[i * o * ohw..][..o * ohw];
                    // Every value written below (kept from image to image, no clearing).
                    s.dy.resize(o * ohw, 0.0);
                    widest(|| {
                        for ((m, &d), &v) in s.dy.iter_mut().zip(dyi).zip(yi) {
                            *m = if v > 0.0 { d } else { 0.0 };
                        }
                    });
                }
                false => {
                    s.dy.clear();
                    s.dy.extend_from_slice(dyi);
                }
            }
            // The pointwise matrix's gradient dy midᵀ, the bias's the sums of dy.
            let mut gpwb = vec![0f32; o * (c + 1)];
            let mid_t = (s.mid.as_slice(), 1, ohw);
            matmul(
                (o, c, ohw),
                (&mut gpwb, c + 1, 1),
                (&s.dy, ohw, 1),
                mid_t,
                false,
            );
            for (t, plane) in s.dy.chunks_exact(ohw).enumerate() {
                gpwb[t * (c + 1) + c] = sum(plane);
            }
            // The depthwise output's gradient pwᵀ dy, then through the depthwise kernel.
            s.dmid.resize(c * ohw, 0.0);
            let pw_t = (pwbv, 1, c + 1);
            matmul(
                (c, ohw, o),
                (&mut s.dmid, ohw, 1),
                pw_t,
                (&s.dy, ohw, 1),
                false,
            );
            let mut gdw = vec![0f32; c * kk];
            for ch in 0..c {
                let dmid = (&s.dmid[ch * ohw..][..ohw], g.output);
                let pad = (&s.pads[ch * plane_len..][..plane_len], width);
                let gw = &mut gdw[ch * kk..][..kk];
                kernel_gradient_padded(dmid, pad, g.k, gw, &mut s.dy_pad);
            }
            if let Some(gx) = gx {
                for (ch, plane) in gx.chunks_exact_mut(hw).enumerate() {
                    let dmid = &s.dmid[ch * ohw..][..ohw];
                    let kernel = &turned[ch * kk..][..kk];
                    correlate(
                        dmid,
                        g.output,
                        kernel,
                        g.k,
                        q_back,
                        (plane, g.input),
                        &mut s.pad,
                    );
                }
            }
            (gdw, gpwb)
        };
        // The images' partial gradients, summed in image order.
        let parts: Vec<(Vec<f32>, Vec<f32>)> = match want_gx {
            true => gx
                .par_chunks_mut(c * hw)
                .enumerate()
                .map(|(i, gx)| SCRATCH.with_borrow_mut(|s| per_image(i, Some(gx), s)))
                .collect(),
            false => (0..g.n)
                .into_par_iter()
                .map(|i| SCRATCH.with_borrow_mut(|s| per_image(i, None, s)))
                .collect(),
        };
        let (mut gdw, mut gpwb) = (vec![0f32; c * kk], vec![0f32; o * (c + 1)]);
        for (a, b) in &parts {
            gdw.iter_mut().zip(a).for_each(|(s, v)| *s += *v);
            gpwb.iter_mut().zip(b).for_each(|(s, v)| *s += *v);
        }
        let dev = x.device();
        let gx = match want_gx {
            true => Some(Tensor::from_vec(gx, x.shape(), dev)?),
            false => None,
        };
        Ok((
            gx,
            Some(Tensor::from_vec(gdw, dw.shape(), dev)?),
            Some(Tensor::from_vec(gpwb, pwb.shape(), dev)?),
        ))
    }
}

thread_local! {
    /// Each thread's buffers, kept from image to image and from call to call (buffers
    /// made per rayon job were zeroed again for every few images).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One thread's buffers.
#[derive(Default)]
struct Scratch {
    mid: Vec<f32>,
    dmid: Vec<f32>,
    dy: Vec<f32>,
    pad: Vec<f32>,
    /// An image's padded input planes, kept from the backward pass's depthwise output
    /// to its kernel gradient.
    pads: Vec<f32>,
    dy_pad: Vec<f32>,
}
