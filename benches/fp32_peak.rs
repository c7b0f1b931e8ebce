//! The machine's FP32 peak, measured: fused multiply-adds on 8-lane vectors (AVX2 + FMA,
//! the instructions the `gemm` crate's kernels use on this CPU), twelve independent
//! accumulators per core so that nothing waits on a previous result, every core at
//! once. `benches/compare.py` divides the convolutions' FLOP rate by it.
//! `cargo bench --bench fp32_peak`.

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

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("no AVX2 + FMA on this CPU: peak not measured");
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let iterations = 200_000_000;
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        std::hint::black_box(unsafe { fma_loop(1_000_000) });
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..cores {
                // SAFETY: as above.
                s.spawn(|| std::hint::black_box(unsafe { fma_loop(iterations) }));
            }
        });
        let seconds = start.elapsed().as_secs_f64();
        // 12 accumulators x 8 lanes x 2 FLOPs (multiply and add) per iteration.
        let gflops = (cores * iterations * 12 * 8 * 2) as f64 / seconds / 1e9;
        println!(
            "FP32 peak (AVX2 FMA, {cores} cores): {gflops:.1} GFLOP/s, {:.1} per core",
            gflops / cores as f64
        );
        println!("RESULT peak.gflops {gflops:.2}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("the FP32 peak is measured on x86-64 only");
}
