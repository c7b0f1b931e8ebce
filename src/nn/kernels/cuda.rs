//! What the kernels' CUDA halves share: `kernels.cu`, compiled by NVRTC the first time a
//! kernel is launched (so building needs no CUDA compiler beyond candle's own), loaded
//! once per device, and launched through the [`launch!`] macro.

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::{CudaDevice, CudaStorage, Layout, Result, Storage, Tensor};

/// The name candle caches the loaded module under.
pub(super) const MODULE: &str = "cxr_kernels";

const SOURCE: &str = include_str!("kernels.cu");

/// Threads per block; the kernels' block reductions assume this many at most.
pub(super) const THREADS: u32 = 256;

/// The PTX of `kernels.cu`, compiled on first use.
pub(super) fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|ptx| ptx.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| {
        candle_core::Error::Msg(format!(
            "cxr's CUDA kernels did not compile with NVRTC ({e}): check that the CUDA \
             toolkit's libnvrtc matches the driver, or train on the CPU"
        ))
    })
}

/// Launches kernel `$name` of `kernels.cu` on `$dev` with `$cfg` and the arguments in
/// order (device views and slices by reference, numbers as the C types they fill:
/// `i32` for `int`, `i64` for `long`, `f32`, `f64`).
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;
        let func = $dev.get_or_load_custom_func(
            $name,
            $crate::nn::kernels::cuda::MODULE,
            $crate::nn::kernels::cuda::ptx()?,
        )?;
        let mut builder = func.builder();
        $( builder.arg($arg); )*
        // SAFETY: the argument lists match kernels.cu's signatures, and every index a
        // kernel computes stays inside the sizes passed with its buffers.
        unsafe { builder.launch($cfg) }.w().map(|_| ())
    }};
}
pub(super) use launch;

/// The `cpu_fwd` of an op made only by a kernel's CUDA half (a gradient, the statistics
/// it keeps on the GPU): candle asks every op for one. The argument is the op's kind:
/// `op1`, `op2` or `op3`.
macro_rules! gpu_only {
    (@body) => {
        candle_core::bail!("cxr: an op of a CUDA kernel was given tensors on the CPU")
    };
    (op1) => {
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            gpu_only!(@body)
        }
    };
    (op2) => {
        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            gpu_only!(@body)
        }
    };
    (op3) => {
        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            gpu_only!(@body)
        }
    };
}
pub(super) use gpu_only;

/// A grid of [`THREADS`]-thread blocks for grid-stride loops over `total` elements.
pub(super) fn grid(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One [`THREADS`]-thread block for each of `rows` x `cols` work items.
pub(super) fn blocks(rows: usize, cols: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, cols as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The `f32` values of a contiguous tensor's storage.
pub(super) fn view<'a>(storage: &'a CudaStorage, layout: &Layout) -> Result<CudaView<'a, f32>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("cxr's CUDA kernels need contiguous tensors");
    };
    Ok(storage.as_cuda_slice::<f32>()?.slice(start..end))
}

/// The `f32` values of a contiguous tensor's storage, to be written in place.
pub(super) fn view_mut<'a>(
    storage: &'a mut CudaStorage,
    layout: &Layout,
) -> Result<CudaViewMut<'a, f32>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("cxr's CUDA kernels need contiguous tensors");
    };
    Ok(storage.as_cuda_slice_mut::<f32>()?.slice_mut(start..end))
}

/// Runs `f` on the CUDA storage of `tensor` (an op's extra input held outside candle's
/// argument list, such as batch norm's statistics).
pub(super) fn with_storage<R>(
    tensor: &Tensor,
    f: impl FnOnce(&CudaStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cuda(s) => f(s, layout),
        _ => candle_core::bail!("cxr's CUDA kernels: a tensor is not on the GPU"),
    }
}

/// An allocation of `len` values that the next kernel writes in full.
pub(super) fn output(dev: &CudaDevice, len: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: every caller launches a kernel that writes all `len` values before the
    // slice is read.
    unsafe { dev.alloc::<f32>(len) }
}

/// A buffer of `len` partial sums in `f64`, written in full by the next kernel.
pub(super) fn partial_sums(dev: &CudaDevice, len: usize) -> Result<CudaSlice<f64>> {
    // SAFETY: as for `output`.
    unsafe { dev.alloc::<f64>(len) }
}

/// Parts to split a reduction over `count` values into: enough blocks to fill the GPU,
/// each a few thousand values.
pub(super) fn parts(count: usize) -> usize {
    count.div_ceil(2048).clamp(1, 64)
}
