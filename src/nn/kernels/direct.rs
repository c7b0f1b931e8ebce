//! Direct convolutions for few input channels: no im2col copy, every output strip a sum
//! of multiply-adds read straight from a padded band of the input, eight output
//! channels at a time.

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use super::common::*;

/// Output channels computed together: eight vector accumulators, which stay in
/// registers on AVX2 (16 of them) and AVX-512 (32) beside the input and the weights.
const BLOCK: usize = 8;

/// Output rows padded and computed at a time: a band of input rows that stays in cache.
const BAND_BYTES: usize = 256 << 10;

/// Whether [`direct`] suits `c` input channels of a `k` x `k` kernel: an im2col column
/// would hold at most this many values, where its copy costs about what its product
/// does (beyond, the matrix product's reuse of each column wins).
pub(super) fn suits(c: usize, k: usize) -> bool {
    c * k * k <= 256
}

/// A convolution's geometry for [`direct`]: `n` images of `c` channels of `input`
/// size, `o` output channels of `output` size, a `k` x `k` kernel whose window starts
/// `q` rows and columns before the output position (the padding; negative for the
/// input gradient of a convolution padded by more than `k - 1`).
#[derive(Clone, Copy)]
pub(super) struct Direct {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) o: usize,
    pub(super) k: usize,
    pub(super) q: isize,
    pub(super) input: Size,
    pub(super) output: Size,
}

/// `out[n][o][y][x] = bias[o] + sum_cij w[o][c][i][j] x[n][c][y + i - q][x + j - q]`
/// (`x` zero outside), then ReLU if asked. Images and blocks of eight output channels
/// run in parallel; each job pads its input band by band.
pub(super) fn direct(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: Direct,
    relu: bool,
) -> Vec<f32> {
    let (hw, ohw, kk) = (g.input.0 * g.input.1, g.output.0 * g.output.1, g.k * g.k);
    // Weights as [block][c][i][j][t] (t, the channel within the block, innermost),
    // zero for the channels past `o` in the last block.
    let blocks = g.o.div_ceil(BLOCK);
    let mut blocked = vec![0f32; blocks * g.c * kk * BLOCK];
    for oc in 0..g.o {
        for ic in 0..g.c {
            for ij in 0..kk {
                let (b, t) = (oc / BLOCK, oc % BLOCK);
                blocked[((b * g.c + ic) * kk + ij) * BLOCK + t] = w[(oc * g.c + ic) * kk + ij];
            }
        }
    }
    let width = padded_width(g.output.1, g.k);
    let band = (BAND_BYTES / 4 / (g.c * width).max(1))
        .saturating_sub(g.k - 1)
        .clamp(1, g.output.0.max(1));
    let mut out = vec![0f32; g.n * g.o * ohw];
    out.par_chunks_mut(g.o * ohw)
        .enumerate()
        .flat_map(|(i, image)| {
            image
                .par_chunks_mut(BLOCK * ohw)
                .enumerate()
                .map(move |(b, chunk)| (i, b, chunk))
        })
        .for_each_init(Vec::new, |pad, (i, b, chunk)| {
            let image = &x[i * g.c * hw..][..g.c * hw];
            let weights = &blocked[b * g.c * kk * BLOCK..][..g.c * kk * BLOCK];
            let mut first = [0f32; BLOCK];
            let channels = chunk.len() / ohw;
            if let Some(bias) = bias {
                first[..channels].copy_from_slice(&bias[b * BLOCK..][..channels]);
            }
            for y0 in (0..g.output.0).step_by(band) {
                let rows = band.min(g.output.0 - y0);
                let plane_len = (rows + g.k - 1) * width;
                pad.resize(g.c * plane_len, 0f32);
                for (ch, plane) in pad.chunks_exact_mut(plane_len).enumerate() {
                    let src = &image[ch * hw..][..hw];
                    pad_plane(plane, width, src, g.input, (g.q - y0 as isize, g.q));
                }
                Arch::new().dispatch(Band {
                    pad,
                    width,
                    plane_len,
                    g,
                    weights,
                    first,
                    out: chunk,
                    rows: y0..y0 + rows,
                    relu,
                });
            }
        });
    out
}

/// One band of output rows of one block of output channels.
struct Band<'a> {
    pad: &'a [f32],
    width: usize,
    plane_len: usize,
    g: Direct,
    weights: &'a [f32],
    first: [f32; BLOCK],
    out: &'a mut [f32],
    rows: std::ops::Range<usize>,
    relu: bool,
}

impl WithSimd for Band<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (g, lanes) = (self.g, S::F32_LANES);
        let (k, cols) = (g.k, g.output.1);
        let ohw = g.output.0 * cols;
        let channels = self.out.len() / ohw;
        let zero = simd.splat_f32s(0.0);
        for (y, out_row) in self.rows.clone().enumerate().map(|(y, r)| (y, r * cols)) {
            for x0 in (0..cols).step_by(lanes) {
                let mut acc = self.first.map(|b| simd.splat_f32s(b));
                for ch in 0..g.c {
                    let plane = &self.pad[ch * self.plane_len..];
                    for i in 0..k {
                        let line = &plane[(y + i) * self.width + x0..];
                        for j in 0..k {
                            let v = load::<S>(&line[j..]);
                            let w = &self.weights[((ch * k + i) * k + j) * BLOCK..][..BLOCK];
                            for t in 0..BLOCK {
                                acc[t] = simd.mul_add_e_f32s(simd.splat_f32s(w[t]), v, acc[t]);
                            }
                        }
                    }
                }
                let end = (x0 + lanes).min(cols);
                for (t, &a) in acc.iter().enumerate().take(channels) {
                    let a = if self.relu { simd.max_f32s(a, zero) } else { a };
                    let at = t * ohw + out_row;
                    simd.partial_store_f32s(&mut self.out[at + x0..at + end], a);
                }
            }
        }
    }
}

/// The kernel's gradient of [`direct`]: `gw[o][c][i][j] = sum_nyx dy[n][o][y][x]
/// x[n][c][y + i - q][x + j - q]`, image by image in parallel, band by band, eight
/// output channels at a time (no im2col).
pub(super) fn direct_kernel_gradient(x: &[f32], dy: &[f32], g: Direct) -> Vec<f32> {
    let (hw, ohw, ckk) = (
        g.input.0 * g.input.1,
        g.output.0 * g.output.1,
        g.c * g.k * g.k,
    );
    let (rows_out, cols) = g.output;
    let width = padded_width(cols, g.k);
    let wide = cols.next_multiple_of(LANES);
    let band = (BAND_BYTES / 4 / ((g.c * width + g.o * wide).max(1))).clamp(1, rows_out.max(1));
    (0..g.n)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(pad, dy_pad), i| {
                let image = &x[i * g.c * hw..][..g.c * hw];
                let grad = &dy[i * g.o * ohw..][..g.o * ohw];
                let mut gw = vec![0f32; g.o * ckk];
                for y0 in (0..rows_out).step_by(band) {
                    let rows = band.min(rows_out - y0);
                    let plane_len = (rows + g.k - 1) * width;
                    pad.resize(g.c * plane_len, 0f32);
                    for (ch, plane) in pad.chunks_exact_mut(plane_len).enumerate() {
                        let src = &image[ch * hw..][..hw];
                        pad_plane(plane, width, src, g.input, (g.q - y0 as isize, g.q));
                    }
                    // The band's output gradient, rows widened by zeros to whole strips.
                    dy_pad.resize(g.o * rows * wide, 0f32);
                    for (ch, to) in dy_pad.chunks_exact_mut(rows * wide).enumerate() {
                        let from = &grad[ch * ohw + y0 * cols..][..rows * cols];
                        for (t, f) in to.chunks_exact_mut(wide).zip(from.chunks_exact(cols)) {
                            t[..cols].copy_from_slice(f);
                            t[cols..].fill(0.0);
                        }
                    }
                    for (b, gw) in gw.chunks_mut(BLOCK * ckk).enumerate() {
                        let channels = gw.len() / ckk;
                        let dy = &dy_pad[b * BLOCK * rows * wide..][..channels * rows * wide];
                        Arch::new().dispatch(BandGradient {
                            pad,
                            width,
                            plane_len,
                            dy,
                            rows,
                            wide,
                            g,
                            gw,
                        });
                    }
                }
                gw
            },
        )
        // Summed in image order, so that the result does not depend on how the work
        // was shared out between threads (a resumed run ends where an uninterrupted one
        // does).
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0f32; g.o * ckk], |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += *b);
            a
        })
}

/// One band's contribution to the kernel gradient of up to eight output channels.
struct BandGradient<'a> {
    pad: &'a [f32],
    width: usize,
    plane_len: usize,
    /// The channels' output gradient, `rows` rows `wide` apart per channel.
    dy: &'a [f32],
    rows: usize,
    wide: usize,
    g: Direct,
    /// The channels' kernel gradients, `c * k * k` each.
    gw: &'a mut [f32],
}

impl WithSimd for BandGradient<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (g, lanes, k) = (self.g, S::F32_LANES, self.g.k);
        let ckk = g.c * k * k;
        let channels = self.gw.len() / ckk;
        let plane = self.rows * self.wide;
        for ch in 0..g.c {
            for i in 0..k {
                for j in 0..k {
                    let mut acc = [simd.splat_f32s(0.0); BLOCK];
                    for y in 0..self.rows {
                        let line = &self.pad[ch * self.plane_len + (y + i) * self.width + j..];
                        for x0 in (0..self.wide).step_by(lanes) {
                            let v = load::<S>(&line[x0..]);
                            for (t, a) in acc.iter_mut().enumerate().take(channels) {
                                let d = load::<S>(&self.dy[t * plane + y * self.wide + x0..]);
                                *a = simd.mul_add_e_f32s(d, v, *a);
                            }
                        }
                    }
                    for (t, a) in acc.iter().enumerate().take(channels) {
                        self.gw[t * ckk + (ch * k + i) * k + j] += simd.reduce_sum_f32s(*a);
                    }
                }
            }
        }
    }
}
