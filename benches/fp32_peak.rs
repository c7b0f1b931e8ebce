//! The machine's FP32 peak, measured: fused multiply-adds on the widest vectors the CPU
//! has (16 lanes with AVX-512, else 8 with AVX2 + FMA; cxr builds the `gemm` crate with
//! its AVX-512 kernels), twelve independent accumulators per core so that nothing waits
//! on a previous result, every core at once. `benches/compare.py` divides the models'
//! FLOP rates by it. `cargo bench --bench fp32_peak`.

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    let mut out = [0f32; 8];
    // SAFETY: `out` holds exactly the eight lanes stored.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_512(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    _mm512_reduce_add_ps(sum)
}

/// GFLOP/s of `kernel` (doing `flops_per_iteration` each time round) on every core.
fn measure(cores: usize, flops_per_iteration: usize, kernel: fn(usize) -> f32) -> f64 {
    let iterations = 200_000_000;
    std::hint::black_box(kernel(1_000_000));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| std::hint::black_box(kernel(iterations)));
        }
    });
    (cores * iterations * flops_per_iteration) as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("no AVX2 + FMA on this CPU: peak not measured");
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        // 12 accumulators x lanes x 2 FLOPs (multiply and add) per iteration.
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        let avx2 = measure(cores, 12 * 8 * 2, |n| unsafe { fma_loop(n) });
        println!("FP32, AVX2 FMA, {cores} cores: {avx2:.1} GFLOP/s");
        let mut peak = avx2;
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            let avx512 = measure(cores, 12 * 16 * 2, |n| unsafe { fma_loop_512(n) });
            println!("FP32, AVX-512 FMA, {cores} cores: {avx512:.1} GFLOP/s");
            peak = peak.max(avx512);
        }
        println!(
            "FP32 peak: {peak:.1} GFLOP/s, {:.1} per core",
            peak / cores as f64
        );
        println!("RESULT peak.gflops {peak:.2}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("the FP32 peak is measured on x86-64 only");
}
