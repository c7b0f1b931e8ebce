//! Direct convolutions for many input channels (VGG's 64 to 512): no im2col copy, which
//! writes each input value nine times and reads it back twice (once to pack it for the
//! matrix product). Each image is padded once; a band of output rows is then computed
//! with its rows laid end to end, so that a 14 x 14 plane fills whole vectors too: a
//! padded row's last `k - 1` positions are computed and dropped.

use std::ops::Range;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::common::*;
use super::direct::{BLOCK, Direct};

/// Whether [`wide`] suits `c` input channels: from 64 on, with AVX-512, it outruns
/// im2col and the `gemm` crate (VGG16's layers one by one, BENCHMARKS.md). With AVX2
/// im2col stays: its `gemm` kernels ran VGG16 at 85% of that machine's FP32 peak, and 16
/// registers hold too few sums for this kernel to keep up.
pub(super) fn suits(c: usize) -> bool {
    c >= 64 && widest_lanes() == 16
}

/// Padded input values read per band: about half a core's L2 cache, so that the rows a
/// band reads three times (once for each row of the kernel) are still there.
const BAND_BYTES: usize = 1 << 20;

/// Input channels summed at a time: their weights for a block, `CHUNK * 9 * BLOCK`
/// values (18 KiB), stay in the L1 cache from one strip to the next.
const CHUNK: usize = 64;

/// Values past the last padded plane that the last strips may read (and drop).
const SLACK: usize = 4 * LANES + 8;

/// `out[n][o][y][x] = bias[o] + sum_cij w[o][c][i][j] x[n][c][y + i - q][x + j - q]`
/// (`x` zero outside; `q` the padding, at least 0), then ReLU if asked. Image by image:
/// its planes padded once, then every (band of rows, block of eight output channels) a
/// job of its own, run in parallel.
pub(super) fn wide(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    g: Direct,
    relu: bool,
) -> candle_core::Result<Vec<f32>> {
    if g.q < 0 {
        candle_core::bail!("a wide convolution pads by at least 0, not {}", g.q);
    }
    let (rows, cols) = g.output;
    let width = cols + g.k - 1;
    let plane_len = (rows + g.k - 1) * width;
    // Planes a whole number of kilobytes apart would fall on the same few sets of the
    // L1 cache (14 x 14 padded is exactly 1 KiB): one cache line between them.
    let stride = match plane_len % 256 {
        0 => plane_len + 16,
        _ => plane_len,
    };
    let (hw, ohw, ckk) = (g.input.0 * g.input.1, rows * cols, g.c * g.k * g.k);
    let band = (BAND_BYTES / 4 / (g.c * width).max(1))
        .saturating_sub(g.k - 1)
        .clamp(1, rows.max(1));
    let mut out = for_overwrite::<f32>(g.n * g.o * ohw)?;
    with_shared_scratch(g.c * stride + SLACK, |padded| {
        let chw = g.c * hw;
        for (image, out) in x.chunks(chw.max(1)).zip(out.chunks_mut((g.o * ohw).max(1))) {
            let (planes, slack) = padded.split_at_mut(g.c * stride);
            slack.fill(0.0);
            planes
                .par_chunks_mut(stride.max(1))
                .zip(image.par_chunks(hw.max(1)))
                .for_each(|(plane, src)| {
                    let (plane, gap) = plane.split_at_mut(plane_len);
                    pad_plane(plane, width, src, g.input, (g.q, g.q));
                    gap.fill(0.0);
                });
            // Each job gets its band's rows of its block's output planes.
            let mut planes: Vec<_> = out
                .chunks_mut(ohw.max(1))
                .map(|plane| plane.chunks_mut((band * cols).max(1)))
                .collect();
            let mut jobs = Vec::new();
            for first_row in (0..rows).step_by(band) {
                let mut band_rows = planes.iter_mut().filter_map(Iterator::next);
                for b in 0..g.o.div_ceil(BLOCK) {
                    let block: Vec<&mut [f32]> = band_rows.by_ref().take(BLOCK).collect();
                    jobs.push((first_row, b, block));
                }
            }
            let pad = &*padded;
            jobs.into_par_iter().for_each(|(first_row, b, mut out)| {
                let lines = band.min(rows - first_row);
                // The sums so far of the band's strips, between chunks of channels.
                let partial = (lines * width + SLACK) * BLOCK;
                with_scratch(partial, |partial| {
                    arch().dispatch(Strips {
                        pad,
                        plane_len,
                        stride,
                        width,
                        g,
                        first_row,
                        lines,
                        weights: &w[b * BLOCK * ckk..][..out.len() * ckk],
                        bias: &bias[b * BLOCK..][..out.len()],
                        out: &mut out,
                        relu,
                        partial,
                    })
                })
            });
        }
    });
    Ok(out)
}

/// One job of [`wide`]: a band of rows of up to [`BLOCK`] output channels.
struct Strips<'a, 'b> {
    /// The image's padded planes, then the slack.
    pad: &'a [f32],
    plane_len: usize,
    /// From one padded plane to the next.
    stride: usize,
    width: usize,
    g: Direct,
    /// The band's first output row, and how many it has.
    first_row: usize,
    lines: usize,
    /// The block's channels' weights as they lie, `[t][c][i][j]`: read in place
    /// (a reordered copy of VGG16's 9.4 MB kernels cost a millisecond a layer).
    weights: &'a [f32],
    bias: &'a [f32],
    /// The band's rows of each of the block's channels.
    out: &'a mut [&'b mut [f32]],
    relu: bool,
    /// Room for every strip's sums so far: a value for each output channel of the
    /// block and each position of the band, rounded up to whole strips.
    partial: &'a mut [f32],
}

impl WithSimd for Strips<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // VGG's 3 x 3 spelled out, so that its loops over the kernel unroll.
        match self.g.k {
            3 => self.run(simd, 3),
            k => self.run(simd, k),
        }
    }
}

/// Strips computed together: three strips of the block's eight channels make 24
/// accumulators in AVX-512's 32 registers, each input vector used eight times and each
/// weight broadcast three times. ([`suits`] keeps narrower instruction sets to im2col.)
const STRIPS: usize = 3;

impl Strips<'_, '_> {
    #[inline(always)]
    fn run<S: Simd>(mut self, simd: S, k: usize) {
        let (g, lanes, width) = (self.g, S::F32_LANES, self.width);
        let (step, total) = (STRIPS * lanes, self.lines * width);
        // Every load below lies inside these bounds, checked once here: a strip's last
        // value is read at most `step + k - 2` past the band's last padded row's end.
        assert!(step + k <= SLACK && lanes <= 16);
        assert!(self.first_row + self.lines + k - 1 <= self.plane_len / width);
        assert!(self.stride >= self.plane_len && self.pad.len() >= g.c * self.stride + SLACK);
        let channels = self.out.len();
        assert!((1..=BLOCK).contains(&channels) && self.weights.len() == channels * g.c * k * k);
        let tile = STRIPS * BLOCK * lanes;
        let partial = std::mem::take(&mut self.partial);
        assert!(partial.len() >= total.div_ceil(step) * tile);
        // The input channels in chunks whose weights stay in the L1 cache from one
        // group of strips to the next, the sums so far kept between chunks.
        for c0 in (0..g.c).step_by(CHUNK) {
            let chunk = c0..(c0 + CHUNK).min(g.c);
            for (f, kept) in (0..total).step_by(step).zip(partial.chunks_exact_mut(tile)) {
                // The band's last group as two strips or one where that is all it holds.
                let group = Group {
                    f,
                    kept,
                    chunk: chunk.clone(),
                    k,
                };
                match (total - f).div_ceil(lanes) {
                    1 => self.group::<S, 1>(simd, group),
                    2 => self.group::<S, 2>(simd, group),
                    _ => self.group::<S, STRIPS>(simd, group),
                }
            }
        }
    }

    /// `R` strips of the block's channels from position `f` of the band, summed over a
    /// chunk of input channels: from the bias or the sums kept, to the sums kept or, after
    /// the last chunk, to the output.
    #[inline(always)]
    fn group<S: Simd, const R: usize>(&mut self, simd: S, group: Group) {
        let Group { f, kept, chunk, k } = group;
        let (lanes, width, total) = (S::F32_LANES, self.width, self.lines * self.width);
        let zero = simd.splat_f32s(0.0);
        // Each accumulator read and written at a place known when compiling (a loop
        // over them that stops early would keep them all in memory through the sums).
        let mut acc = [[zero; BLOCK]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = match chunk.start {
                    // Past the block's last channel (sums dropped): 0.
                    0 => simd.splat_f32s(self.bias.get(t).copied().unwrap_or(0.0)),
                    _ => load::<S>(&kept[(r * BLOCK + t) * lanes..]),
                };
            }
        }
        let acc = self.sums(simd, acc, self.first_row * width + f, chunk.clone(), k);
        if chunk.end < self.g.c {
            for (r, acc) in acc.iter().enumerate() {
                for (t, &a) in acc.iter().enumerate() {
                    store(simd, &mut kept[(r * BLOCK + t) * lanes..], a);
                }
            }
            return;
        }
        let mut values = [[[0f32; 16]; BLOCK]; R];
        for (values, acc) in values.iter_mut().zip(&acc) {
            for (values, &a) in values.iter_mut().zip(acc) {
                let a = if self.relu { simd.max_f32s(a, zero) } else { a };
                store(simd, values, a);
            }
        }
        // Each strip to the output rows it belongs to, the padded rows' last `k - 1`
        // positions dropped.
        for (r, values) in values.iter().enumerate() {
            let from = f + r * lanes;
            let n = lanes.min(total.saturating_sub(from));
            for (out, values) in self.out.iter_mut().zip(values) {
                scatter(&values[..n], from, width, self.g.output.1, out);
            }
        }
    }

    /// `acc` plus the sums over `channels` for `R` strips from `start` (in each padded
    /// plane) of the block's output channels.
    #[inline(always)]
    fn sums<S: Simd, const R: usize>(
        &self,
        simd: S,
        mut acc: [[S::f32s; BLOCK]; R],
        start: usize,
        channels: Range<usize>,
        k: usize,
    ) -> [[S::f32s; BLOCK]; R] {
        let (lanes, width) = (S::F32_LANES, self.width);
        let (pad, weights, kk) = (self.pad.as_ptr(), self.weights.as_ptr(), k * k);
        // Where each channel's kernel starts; a channel past the block's last (its
        // sums dropped) reads the last one's.
        let last = self.out.len() - 1;
        let kernel: [usize; BLOCK] = std::array::from_fn(|t| t.min(last) * self.g.c * kk);
        for ch in channels {
            let plane = ch * self.stride + start;
            // The next channel's rows on their way to the L1 cache while this one's
            // are summed (5-8% on VGG16's layers).
            #[cfg(target_arch = "x86_64")]
            for i in 0..k {
                let next = plane + self.stride + i * width;
                for x in (0..R * lanes + k).step_by(16) {
                    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                    // SAFETY: a hint, which never faults; the address need not be valid.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(pad.wrapping_add(next + x).cast()) };
                }
            }
            for i in 0..k {
                for j in 0..k {
                    let at = plane + i * width + j;
                    // SAFETY: inside `pad` by the asserts of `run` (`at + R * lanes` is
                    // at most `c * stride + R * lanes + k - 2`).
                    let v: [S::f32s; R] = std::array::from_fn(|r| unsafe {
                        pad.add(at + r * lanes).cast::<S::f32s>().read_unaligned()
                    });
                    let tap = ch * kk + i * k + j;
                    for (t, &kernel) in kernel.iter().enumerate() {
                        // SAFETY: `kernel` starts one of the block's kernels, `c * k * k`
                        // values each (asserted in `run`), and `tap` lies within it.
                        let w = simd.splat_f32s(unsafe { *weights.add(kernel + tap) });
                        for (acc, v) in acc.iter_mut().zip(v) {
                            acc[t] = simd.mul_add_e_f32s(w, v, acc[t]);
                        }
                    }
                }
            }
        }
        acc
    }
}

/// A group of strips for [`Strips::group`].
struct Group<'a> {
    /// The first position, in the band's rows laid end to end.
    f: usize,
    /// The group's sums so far, between chunks.
    kept: &'a mut [f32],
    chunk: Range<usize>,
    k: usize,
}

/// Writes `values`, the band's positions from `from` on (rows `width` apart), into the
/// band's output rows (`cols` apart), dropping the columns past `cols`.
fn scatter(values: &[f32], from: usize, width: usize, cols: usize, out: &mut [f32]) {
    let mut done = 0;
    while done < values.len() {
        let (y, x) = ((from + done) / width, (from + done) % width);
        let run = (values.len() - done).min(width - x);
        if x < cols {
            let n = run.min(cols - x);
            out[y * cols + x..][..n].copy_from_slice(&values[done..][..n]);
        }
        done += run;
    }
}
