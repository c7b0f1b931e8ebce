//! Depthwise convolutions, one filter per channel, each plane convolved directly.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::common::*;

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
