//! Batch normalisation in training mode: statistics once per step, one pass each way.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::*;

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
        if stats.len() != c || gamma.len() != c || beta.len() != c {
            candle_core::bail!(
                "batch norm: {} statistics, {} scales and {} offsets for {c} channels",
                stats.len(),
                gamma.len(),
                beta.len()
            );
        }
        // Each channel's scale and shift from its statistics, in f64, then rounded once.
        let (scale, shift): (Vec<f32>, Vec<f32>) = stats
            .iter()
            .zip(gamma.iter().zip(beta))
            .map(|(&(mean, var), (&g, &b))| {
                let scale = f64::from(g) / (var + self.eps).sqrt();
                (scale as f32, (f64::from(b) - mean * scale) as f32)
            })
            .unzip();
        let y = scale_shift(x, plane, &scale, &shift)?;
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
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad.contiguous()?,
            &BatchNormBackward {
                eps: self.eps,
                stats: self.stats.clone(),
            },
        )?;
        unpack(&packed, x, gamma)
    }
}

/// The three gradients out of the backward kernels' one vector: `dx`, `dgamma`, `dbeta`.
#[allow(clippy::type_complexity)]
fn unpack(
    packed: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (len, c) = (x.elem_count(), gamma.elem_count());
    let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
    let dgamma = packed.narrow(0, len, c)?.reshape(gamma.shape())?;
    let dbeta = packed.narrow(0, len + c, c)?.reshape(gamma.shape())?;
    Ok((Some(dx), Some(dgamma), Some(dbeta)))
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
        let mut out = for_overwrite::<f32>(x.len() + 2 * c)?;
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
                widest(|| {
                    for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
                        let xh = (f64::from(v) - mean) * inv;
                        *o = (scale * (f64::from(g) - sd / m - xh * sdx / m)) as f32;
                    }
                });
            });
        for (ch, &(sd, sdx)) in sums.iter().enumerate() {
            rest[ch] = sdx as f32;
            rest[c + ch] = sd as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Batch normalisation in training mode with the batch's statistics, and the batch's
/// per-channel mean and (biased) variance, which the layer folds into its moving
/// statistics: `(y, mean, var)`. A fused kernel for `f32` on the CPU (the statistics
/// computed once for all three uses); elsewhere candle's ops.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let fusable = x.device().is_cpu()
        && x.dtype() == DType::F32
        && gamma.dtype() == DType::F32
        && beta.dtype() == DType::F32;
    #[cfg(feature = "cuda")]
    if on_gpu(&[x, gamma, beta]) {
        return gpu::batch_norm_train(x, gamma, beta, eps);
    }
    let (n, c, plane) = planes(x.shape())?;
    if !fusable {
        let per_channel = by_channel(x)?;
        let mean = per_channel.mean(1)?;
        let centred = per_channel.broadcast_sub(&mean.unsqueeze(1)?)?;
        let var = centred.sqr()?.mean(1)?;
        let inv_std = (&var + eps)?.sqrt()?.recip()?;
        let scale = (gamma.to_dtype(x.dtype())? * inv_std)?;
        let shift = (beta.to_dtype(x.dtype())? - (&mean * &scale)?)?;
        let y = channel_affine(x, &scale, &shift)?;
        return Ok((y, mean, var));
    }
    let x = x.contiguous()?;
    let stats = moments(&Values::<f32>::of(&x)?, (n, c, plane));
    let mean: Vec<f32> = stats.iter().map(|&(m, _)| m as f32).collect();
    let var: Vec<f32> = stats.iter().map(|&(_, v)| v as f32).collect();
    let op = BatchNormTrain {
        eps,
        stats: Arc::new(stats),
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let dev = x.device();
    Ok((
        y,
        Tensor::from_vec(mean, c, dev)?,
        Tensor::from_vec(var, c, dev)?,
    ))
}

/// Values per parallel task of [`scale_shift`]: whole planes, at least this many.
const AFFINE_CHUNK: usize = 1 << 15;

/// `x * scale[c] + shift[c]` for every value of channel `c`: batch normalisation in
/// inference mode, with the moving statistics folded into `scale` and `shift`, in one
/// parallel pass (candle's `broadcast_mul` then `broadcast_add` take two). The product
/// and the sum are rounded as those two ops round them, so the values are the same.
struct ChannelAffine;

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "cxr-channel-affine"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        scale: &CpuStorage,
        scale_layout: &Layout,
        shift: &CpuStorage,
        shift_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, plane) = planes(x_layout.shape())?;
        let x = f32_slice(x, x_layout)?;
        let (scale, shift) = (
            f32_slice(scale, scale_layout)?,
            f32_slice(shift, shift_layout)?,
        );
        if scale.len() != c || shift.len() != c {
            candle_core::bail!(
                "channel affine: {} scales and {} shifts for {c} channels",
                scale.len(),
                shift.len()
            );
        }
        let y = scale_shift(x, plane, scale, shift)?;
        Ok((CpuStorage::F32(y), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let shape = channel_shape(x, scale.elem_count());
        let dx = grad.broadcast_mul(&scale.reshape(shape.as_slice())?)?;
        let sums = |t: &Tensor| by_channel(t)?.sum(1)?.reshape(scale.shape());
        Ok((Some(dx), Some(sums(&(grad * x)?)?), Some(sums(grad)?)))
    }
}

/// `x * scale[c] + shift[c]` over the planes of `plane` values of an `(N, C, ...)`
/// input, in parallel tasks of whole planes.
fn scale_shift(x: &[f32], plane: usize, scale: &[f32], shift: &[f32]) -> Result<Vec<f32>> {
    let c = scale.len();
    let mut y = for_overwrite::<f32>(x.len())?;
    let plane = plane.max(1);
    let per_task = (AFFINE_CHUNK / plane).max(1);
    y.par_chunks_mut(plane * per_task)
        .zip(x.par_chunks(plane * per_task))
        .enumerate()
        .for_each(|(task, (y, x))| {
            let planes = y.chunks_mut(plane).zip(x.chunks(plane));
            for (p, (y, x)) in planes.enumerate() {
                let ch = (task * per_task + p) % c;
                let (a, b) = (scale[ch], shift[ch]);
                widest(|| {
                    for (o, &v) in y.iter_mut().zip(x) {
                        *o = v * a + b;
                    }
                });
            }
        });
    Ok(y)
}

/// An `(N, C, ...)` tensor as `(C, N * ...)`: each channel's values in one row.
fn by_channel(t: &Tensor) -> Result<Tensor> {
    let c = t.dim(1)?;
    t.transpose(0, 1)?.contiguous()?.reshape((c, ()))
}

/// `(1, C, 1, ...)` for an `(N, C, ...)` input: the shape a per-channel vector
/// broadcasts from.
fn channel_shape(x: &Tensor, c: usize) -> Vec<usize> {
    let mut shape = vec![1; x.rank()];
    shape[1] = c;
    shape
}

/// `x * scale + shift` per channel of an `(N, C, ...)` input (`scale` and `shift` of
/// length `C`): batch normalisation in inference mode. One fused pass for `f32` on the
/// CPU; candle's broadcast ops elsewhere. Gradients reach all three.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let (_, c, _) = planes(x.shape())?;
    let fusable = x.device().is_cpu()
        && [x, scale, shift].iter().all(|t| t.dtype() == DType::F32)
        && scale.elem_count() == c
        && shift.elem_count() == c;
    if fusable {
        return x.contiguous()?.apply_op3(
            &scale.flatten_all()?.contiguous()?,
            &shift.flatten_all()?.contiguous()?,
            ChannelAffine,
        );
    }
    let shape = channel_shape(x, c);
    x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)
}

/// The CUDA half: the statistics in one block per channel (sums in f64) into a tensor
/// that the forward and backward kernels read on the GPU; the backward pass as one
/// kernel for the per-channel sums and one for `dx`, into the same packed vector as on
/// the CPU.
#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::{
        CpuStorage, CudaStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor,
    };

    use super::super::cuda::{
        blocks, gpu_only, grid, launch, output, partial_sums, parts, view, with_storage,
    };
    use super::{planes, unpack};

    pub(super) fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let x = x.contiguous()?;
        let stats = x.apply_op1_no_bwd(&Stats)?;
        let op = Train {
            eps,
            stats: stats.clone(),
        };
        let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        Ok((y, stats.get(0)?, stats.get(1)?))
    }

    /// `(2, C)`: each channel's mean, then its biased variance.
    struct Stats;

    impl CustomOp1 for Stats {
        fn name(&self) -> &'static str {
            "cxr-batch-norm-stats"
        }

        gpu_only!(op1);

        fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
            let dev = &xs.device;
            let (n, c, plane) = planes(xl.shape())?;
            let x = view(xs, xl)?;
            let parts = parts(n * plane);
            let partial = partial_sums(dev, 2 * c * parts)?;
            let [n32, c32, plane32, parts32] = [n, c, plane, parts].map(|v| v as i32);
            let cfg = blocks(c, parts);
            launch!(
                dev,
                "batch_norm_stats_parts",
                cfg,
                &x,
                &partial,
                &n32,
                &c32,
                &plane32
            )?;
            let stats = output(dev, 2 * c)?;
            let cfg = grid(c);
            launch!(
                dev,
                "batch_norm_stats",
                cfg,
                &partial,
                &stats,
                &n32,
                &c32,
                &plane32,
                &parts32
            )?;
            Ok((
                CudaStorage::wrap_cuda_slice(stats, dev.clone()),
                Shape::from((2, c)),
            ))
        }
    }

    struct Train {
        eps: f64,
        stats: Tensor,
    }

    impl CustomOp3 for Train {
        fn name(&self) -> &'static str {
            "cxr-batch-norm"
        }

        gpu_only!(op3);

        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            gs: &CudaStorage,
            gl: &Layout,
            bs: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = &xs.device;
            let (_, c, plane) = planes(xl.shape())?;
            let (x, gamma, beta) = (view(xs, xl)?, view(gs, gl)?, view(bs, bl)?);
            let total = xl.shape().elem_count();
            let y = output(dev, total)?;
            with_storage(&self.stats, |ss, sl| {
                let stats = view(ss, sl)?;
                let (total64, c32, plane32) = (total as i64, c as i32, plane as i32);
                let cfg = grid(total);
                launch!(
                    dev,
                    "batch_norm_forward",
                    cfg,
                    &x,
                    &gamma,
                    &beta,
                    &stats,
                    &y,
                    &total64,
                    &c32,
                    &plane32,
                    &self.eps
                )
            })?;
            Ok((
                CudaStorage::wrap_cuda_slice(y, dev.clone()),
                xl.shape().clone(),
            ))
        }

        fn bwd(
            &self,
            x: &Tensor,
            gamma: &Tensor,
            _beta: &Tensor,
            _y: &Tensor,
            grad: &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let op = Backward {
                eps: self.eps,
                stats: self.stats.clone(),
            };
            let packed = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?;
            unpack(&packed, x, gamma)
        }
    }

    /// `dx`, `dgamma`, `dbeta` packed into one vector, as the CPU's backward op packs them.
    struct Backward {
        eps: f64,
        stats: Tensor,
    }

    impl CustomOp3 for Backward {
        fn name(&self) -> &'static str {
            "cxr-batch-norm-backward"
        }

        gpu_only!(op3);

        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            gs: &CudaStorage,
            gl: &Layout,
            ds: &CudaStorage,
            dl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = &xs.device;
            let (n, c, plane) = planes(xl.shape())?;
            let (x, gamma, dy) = (view(xs, xl)?, view(gs, gl)?, view(ds, dl)?);
            let total = xl.shape().elem_count();
            let out = output(dev, total + 2 * c)?;
            with_storage(&self.stats, |ss, sl| {
                let stats = view(ss, sl)?;
                let (total64, eps) = (total as i64, self.eps);
                let parts = parts(n * plane);
                let partial = partial_sums(dev, 2 * c * parts)?;
                let [n32, c32, plane32, parts32] = [n, c, plane, parts].map(|v| v as i32);
                let cfg = blocks(c, parts);
                launch!(
                    dev,
                    "batch_norm_backward_parts",
                    cfg,
                    &x,
                    &dy,
                    &stats,
                    &partial,
                    &n32,
                    &c32,
                    &plane32
                )?;
                let cfg = grid(c);
                launch!(
                    dev,
                    "batch_norm_backward_sums",
                    cfg,
                    &partial,
                    &stats,
                    &out,
                    &total64,
                    &c32,
                    &parts32,
                    &eps
                )?;
                launch!(
                    dev,
                    "batch_norm_backward_dx",
                    grid(total),
                    &x,
                    &dy,
                    &gamma,
                    &stats,
                    &out,
                    &total64,
                    &n32,
                    &c32,
                    &plane32,
                    &eps
                )
            })?;
            let len = total + 2 * c;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from(len),
            ))
        }
    }
}
