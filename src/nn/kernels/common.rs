//! What the kernels share: a custom op that attaches a backward pass, values read in
//! place, vector-lane sums, plane geometry.

use std::ops::Range;
use std::sync::Arc;

use candle_core::backend::BackendDevice;
use candle_core::cpu_backend::CpuDevice;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

pub(super) type Backward =
    dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor)> + Send + Sync;

/// `output`'s values, with gradients for `x` and `w` given by `backward(x, w, grad_out)`.
pub(super) struct WithGradients {
    pub(super) backward: Arc<Backward>,
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

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        output: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((output.try_clone(layout)?, layout.shape().clone()))
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
pub(super) fn with_gradients(
    x: &Tensor,
    w: &Tensor,
    output: Tensor,
    backward: Arc<Backward>,
) -> Result<Tensor> {
    x.apply_op3(w, &output.contiguous()?, WithGradients { backward })
}

/// Reverses a tensor along `dim`.
pub(super) fn flip(t: &Tensor, dim: usize) -> Result<Tensor> {
    let n = t.dim(dim)?;
    let index = Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, t.device())?;
    t.index_select(&index, dim)
}

/// Plane geometry of a depthwise convolution.
#[derive(Clone, Copy)]
pub(super) struct Plane {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) p: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Plane {
    /// For output row `y` and kernel row `i`, the input row, if inside.
    pub(super) fn input_row(&self, y: usize, i: usize) -> Option<usize> {
        (y + i).checked_sub(self.p).filter(|&r| r < self.h)
    }

    /// For kernel column `j`: the output columns whose input column `x + j - p` is inside,
    /// and that input column's offset from the output column.
    pub(super) fn columns(&self, j: usize) -> (usize, usize, isize) {
        let shift = j as isize - self.p as isize;
        let first = (-shift).max(0) as usize;
        let last = ((self.w as isize - shift).min(self.wo as isize)).max(0) as usize;
        (first, last.max(first), shift)
    }
}

/// A plane's size, `(rows, columns)`.
pub(super) type Size = (usize, usize);

/// The direct kernels compute rows in strips of this many outputs, the widest vector
/// (16 `f32` lanes), over padded copies of their input.
pub(super) const LANES: usize = 16;

/// The row width of a padded plane read by a `k`-wide kernel for `cols` outputs per row:
/// whole strips plus the kernel's overhang, so that no strip reads past a row.
pub(super) fn padded_width(cols: usize, k: usize) -> usize {
    cols.next_multiple_of(LANES) + k - 1
}

/// Writes every value of `pad` (rows `width` apart): `pad[r][c]` is `src[r - qr][c - qc]`
/// where that lies inside the plane `src` of `size`, zero elsewhere. Each value is
/// written once, so a buffer kept between calls needs no clearing first.
pub(super) fn pad_plane<T: WithDType>(
    pad: &mut [T],
    width: usize,
    src: &[T],
    size: Size,
    q: (isize, isize),
) {
    pad_rows(pad, width, size, q, |r, cols, to| {
        to.copy_from_slice(&src[r * size.1..][cols])
    });
}

/// [`pad_plane`] of `src` where `mask` (a ReLU's output, of `src`'s size) is positive,
/// zero where it is not: the gradient through the ReLU, padded in the same pass.
pub(super) fn pad_plane_where(
    pad: &mut [f32],
    width: usize,
    (src, mask): (&[f32], &[f32]),
    size: Size,
    q: (isize, isize),
) {
    pad_rows(pad, width, size, q, |r, cols, to| {
        let (from, mask) = (&src[r * size.1..][cols.clone()], &mask[r * size.1..][cols]);
        widest(|| {
            for ((to, &g), &m) in to.iter_mut().zip(from).zip(mask) {
                *to = if m > 0.0 { g } else { 0.0 };
            }
        });
    });
}

/// The rows of [`pad_plane`]: zeros around what `copy(source row, its columns, into)`
/// writes.
fn pad_rows<T: WithDType>(
    pad: &mut [T],
    width: usize,
    (h, w): Size,
    (qr, qc): (isize, isize),
    mut copy: impl FnMut(usize, Range<usize>, &mut [T]),
) {
    // Source column c lands at padded column c + qc; those before column 0 or past the
    // row are never read.
    let first = (-qc).max(0) as usize;
    let last = (w as isize).min(width as isize - qc).max(first as isize) as usize;
    let at = (first as isize + qc).max(0) as usize;
    for (yy, line) in pad.chunks_exact_mut(width).enumerate() {
        let r = yy as isize - qr;
        if r < 0 || r >= h as isize || first >= last {
            line.fill(T::zero());
            continue;
        }
        line[..at].fill(T::zero());
        copy(r as usize, first..last, &mut line[at..at + last - first]);
        line[at + last - first..].fill(T::zero());
    }
}

/// The instruction set the kernels run on: the widest this CPU has, unless the
/// environment variable `CXR_SIMD` names a narrower one (`avx2` or `scalar`), read once:
/// so that the AVX2 and plain paths can be measured and tested on an AVX-512 machine.
pub(super) fn arch() -> pulp::Arch {
    static ARCH: std::sync::OnceLock<pulp::Arch> = std::sync::OnceLock::new();
    *ARCH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        match std::env::var("CXR_SIMD").as_deref() {
            Ok("scalar") => return pulp::Arch::Scalar,
            Ok("avx2") => match pulp::x86::V3::try_new() {
                Some(v3) => return pulp::Arch::V3(v3),
                None => eprintln!("CXR_SIMD=avx2: this CPU has no AVX2; using what it has"),
            },
            Ok(other) => eprintln!("CXR_SIMD={other}: unknown (avx2 or scalar); using the widest"),
            Err(_) => {}
        }
        pulp::Arch::new()
    })
}

/// Runs `f` compiled for the widest vectors this CPU has ([`arch`]): for plain loops
/// over slices, which the compiler vectorises only to the baseline's four lanes outside
/// such a function.
#[inline(always)]
pub(super) fn widest<R>(f: impl FnOnce() -> R) -> R {
    struct Run<F>(F);
    impl<R, F: FnOnce() -> R> pulp::WithSimd for Run<F> {
        type Output = R;

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> R {
            (self.0)()
        }
    }
    arch().dispatch(Run(f))
}

/// The `f32` lanes of the widest vectors [`arch`] runs on: 16 with AVX-512, 8 with
/// AVX2, 4 or 1 below.
pub(super) fn widest_lanes() -> usize {
    struct Lanes;
    impl pulp::WithSimd for Lanes {
        type Output = usize;

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> usize {
            S::F32_LANES
        }
    }
    arch().dispatch(Lanes)
}

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on `len` values of this thread's scratch buffer, whose contents are left
/// from earlier calls: for buffers that `f` writes whole before it reads them (padded
/// planes), so that no job allocates and zeroes its own. A nested call gets a buffer
/// of its own.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.take();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    SCRATCH.set(buffer);
    result
}

/// Runs `f` on `len` values of a buffer kept between calls, shared by the threads that
/// `f` starts (the scratch of [`with_scratch`] is each thread's own), whose contents are
/// left from earlier calls: for a padded copy of a layer's whole input, which `f`
/// writes before its jobs read it. Under the system allocator a fresh buffer of that size
/// (13 MB for VGG16's second layer) is faulted in and cleared page by page on every call
/// (see `crate::alloc`). A concurrent call gets a buffer of its own.
pub(super) fn with_shared_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    static SHARED: std::sync::Mutex<Vec<f32>> = std::sync::Mutex::new(Vec::new());
    let lock = || {
        SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut buffer = std::mem::take(&mut *lock());
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    let mut kept = lock();
    if kept.len() < buffer.len() {
        *kept = buffer;
    }
    result
}

/// A kernel's output of `len` values, for a kernel that writes every one of them before
/// anything reads it: allocated as candle allocates its own outputs, without the pass
/// over memory that zeroing (`vec![0.0; len]`) costs. Builds with debug assertions (CI's
/// tests) fill it with NaN instead, so that a value a kernel leaves unwritten shows in
/// the results the tests compare.
pub(super) fn for_overwrite<T: WithDType>(len: usize) -> Result<Vec<T>> {
    if cfg!(debug_assertions) {
        return Ok(vec![T::from_f64(f64::NAN); len]);
    }
    // SAFETY: candle's CPU allocation of `len` plain numbers (any bit pattern is a
    // value); every caller writes the whole buffer before reading from it.
    let storage = unsafe { CpuDevice.alloc_uninit(&Shape::from(len), T::DTYPE)? };
    T::cpu_storage_data(storage)
}

/// The first vector of `values` (which holds at least one), read unaligned.
#[inline(always)]
pub(super) fn load<S: pulp::Simd>(values: &[f32]) -> S::f32s {
    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&values[..S::F32_LANES]))
}

/// Stores a vector at the start of `out`, or as much of it as `out` holds: a plain
/// store for a whole vector (pulp's partial store goes through a call for each).
#[inline(always)]
pub(super) fn store<S: pulp::Simd>(simd: S, out: &mut [f32], v: S::f32s) {
    if out.len() >= S::F32_LANES {
        bytemuck::cast_slice_mut::<f32, u8>(&mut out[..S::F32_LANES])
            .copy_from_slice(bytemuck::bytes_of(&v));
    } else {
        simd.partial_store_f32s(out, v);
    }
}

/// `sum a[i]` in sixteen running sums, which the compiler keeps in one vector register
/// (a single running sum is a chain of dependent scalar additions, since floating-point
/// addition may not be reordered for it).
pub(super) fn sum(a: &[f32]) -> f32 {
    const LANES: usize = 16;
    widest(|| {
        let mut acc = [0f32; LANES];
        let chunks = a.chunks_exact(LANES);
        let rest: f32 = chunks.remainder().iter().sum();
        for x in chunks {
            for l in 0..LANES {
                acc[l] += x[l];
            }
        }
        rest + acc.iter().sum::<f32>()
    })
}

/// [`sum`] of a plane whose values arrive a row (or any run) at a time, in order: the
/// same sixteen running sums and the same remainder, so that the total equals
/// `sum(plane)` to the bit. For kernels that read a plane in bands of rows and take its
/// sum on the way (a bias's gradient) instead of in a pass of its own.
pub(super) struct PlaneSum {
    acc: [f32; 16],
    rest: Vec<f32>,
    /// Where [`sum`]'s remainder starts: the values from here on are summed one by one.
    main: usize,
    next: usize,
}

impl PlaneSum {
    pub(super) fn new(len: usize) -> Self {
        PlaneSum {
            acc: [0.0; 16],
            rest: Vec::new(),
            main: len - len % 16,
            next: 0,
        }
    }

    /// Adds the plane's values at positions `at..at + values.len()`, which must follow
    /// the ones added before.
    pub(super) fn add(&mut self, at: usize, values: &[f32]) {
        assert_eq!(at, self.next, "a plane's values added out of order");
        self.next += values.len();
        let (lanes, rest) = values.split_at(self.main.saturating_sub(at).min(values.len()));
        self.rest.extend_from_slice(rest);
        // Up to the next whole vector one by one, then whole vectors (lane l takes
        // position 16 k + l, as in `sum`), then the values left.
        let lead = ((16 - at % 16) % 16).min(lanes.len());
        for (i, &v) in lanes[..lead].iter().enumerate() {
            self.acc[(at + i) % 16] += v;
        }
        let chunks = lanes[lead..].chunks_exact(16);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (a, &v) in self.acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        for (l, &v) in tail.iter().enumerate() {
            self.acc[l] += v;
        }
    }

    pub(super) fn total(&self) -> f32 {
        let rest: f32 = self.rest.iter().sum();
        rest + self.acc.iter().sum::<f32>()
    }
}

/// `sum (v - m)²` over `x`, in sixteen running sums (see [`sum`]).
pub(super) fn squares(x: &[f32], m: f32) -> f32 {
    const LANES: usize = 16;
    widest(|| {
        let mut acc = [0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest: f32 = chunks.remainder().iter().map(|&v| (v - m) * (v - m)).sum();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += (c[l] - m) * (c[l] - m);
            }
        }
        rest + acc.iter().sum::<f32>()
    })
}

/// `sum g (v - m)` over `g` and `x`, in sixteen running sums (see [`sum`]).
pub(super) fn centred_dot(g: &[f32], x: &[f32], m: f32) -> f32 {
    const LANES: usize = 16;
    widest(|| {
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
    })
}

/// The element types the direct kernels run in: f32 for training, f64 for gradient
/// checks.
pub trait Float:
    WithDType + Copy + Send + Sync + std::ops::Mul<Output = Self> + std::ops::AddAssign
{
}

impl Float for f32 {}

impl Float for f64 {}

pub(super) fn to_vec<T: Float>(t: &Tensor) -> Result<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// A CPU tensor's values, borrowed from its storage when they lie contiguously there
/// (no copy of a whole activation per backward pass), else copied.
pub(super) enum Values<'a, T> {
    Borrowed(candle_core::StorageRef<'a>, Range<usize>),
    Copied(Vec<T>),
}

impl<'a, T: Float> Values<'a, T> {
    pub(super) fn of(t: &'a Tensor) -> Result<Self> {
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

/// The contiguous `f32` values of a CPU storage under `layout`.
pub(super) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("cxr's fused kernels take f32 tensors");
    };
    contiguous(values, layout)
}

/// [`f32_slice`] to change in place (an in-place op's first tensor).
pub(super) fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("cxr's fused kernels take f32 tensors");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut values[start..end]),
        None => candle_core::bail!("cxr's fused kernels need contiguous tensors"),
    }
}

/// The values a contiguous `layout` covers.
pub(super) fn contiguous<'a, T>(values: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("cxr's fused kernels need contiguous tensors"),
    }
}

/// `(images, channels, values per channel plane)` of an `(N, C, ...)` shape.
pub(super) fn planes(shape: &Shape) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        candle_core::bail!("batch norm needs (N, C, ...) input, got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Whether `tensors` are all `f32` on a CUDA device, where the kernels' CUDA halves run
/// (always false in a build without the `cuda` feature).
pub(super) fn on_gpu(tensors: &[&Tensor]) -> bool {
    cfg!(feature = "cuda")
        && tensors
            .iter()
            .all(|t| t.device().is_cuda() && t.dtype() == candle_core::DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row by row, in rows of any width, equals the plane's sum to the bit.
    #[test]
    fn plane_sum_by_rows_is_sum_to_the_bit() {
        for (len, row) in [
            (0, 1),
            (7, 3),
            (32400, 180),
            (8100, 90),
            (121, 11),
            (50, 7),
            (48, 16),
        ] {
            let plane: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1013) as f32 * 0.37 - 150.0 + 1e-3 * i as f32)
                .collect();
            let mut by_rows = PlaneSum::new(len);
            for (r, values) in plane.chunks(row).enumerate() {
                by_rows.add(r * row, values);
            }
            assert_eq!(
                by_rows.total().to_bits(),
                sum(&plane).to_bits(),
                "{len} in rows of {row}"
            );
        }
    }
}
