//! Direct convolutions for few input channels: no im2col copy, every output strip a sum
//! of multiply-adds read straight from a padded band of the input, eight output
//! channels at a time.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::common::*;

/// Output channels computed together: eight vector accumulators, which stay in
/// registers on AVX2 (16 of them) and AVX-512 (32) beside the input and the weights.
pub(super) const BLOCK: usize = 8;

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
/// (`x` zero outside), then ReLU if asked. Bands of output rows of every image run in
/// parallel; each pads its input rows once and computes every output channel from them.
/// With a `mask` (of `x`'s shape), `x` counts only where the mask is positive: the
/// input gradient of a convolution with a ReLU reads the output gradient and the
/// layer's output, and applies the ReLU's gradient as it pads.
pub(super) fn direct(
    x: &[f32],
    mask: Option<&[f32]>,
    w: &[f32],
    bias: Option<&[f32]>,
    g: Direct,
    relu: bool,
) -> candle_core::Result<Vec<f32>> {
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
    let cols = g.output.1;
    let mut out = for_overwrite::<f32>(g.n * g.o * ohw)?;
    // Every (image, band) job gets its rows of each output channel's plane.
    let mut jobs = Vec::new();
    for (i, image) in out.chunks_mut((g.o * ohw).max(1)).enumerate() {
        let mut planes: Vec<_> = image
            .chunks_mut(ohw.max(1))
            .map(|plane| plane.chunks_mut((band * cols).max(1)))
            .collect();
        for y0 in (0..g.output.0).step_by(band) {
            let rows: Vec<&mut [f32]> = planes.iter_mut().filter_map(Iterator::next).collect();
            jobs.push((i, y0, rows));
        }
    }
    jobs.into_par_iter().for_each(|(i, y0, mut rows)| {
        let image = &x[i * g.c * hw..][..g.c * hw];
        let lines = band.min(g.output.0 - y0);
        let plane_len = (lines + g.k - 1) * width;
        with_scratch(g.c * plane_len, |pad| {
            for (ch, plane) in pad.chunks_exact_mut(plane_len).enumerate() {
                let src = &image[ch * hw..][..hw];
                let q = (g.q - y0 as isize, g.q);
                match mask {
                    Some(m) => {
                        let m = &m[(i * g.c + ch) * hw..][..hw];
                        pad_plane_where(plane, width, (src, m), g.input, q);
                    }
                    None => pad_plane(plane, width, src, g.input, q),
                }
            }
            arch().dispatch(Band {
                input: Padded {
                    pad,
                    width,
                    plane_len,
                    c: g.c,
                },
                g,
                weights: &blocked,
                bias,
                out: &mut rows,
                lines,
                relu,
            });
        });
    });
    Ok(out)
}

/// One band of output rows, every output channel.
struct Band<'a, 'b> {
    input: Padded<'a>,
    g: Direct,
    /// As [block][c][i][j][t].
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
    /// The band's rows of each output channel.
    out: &'a mut [&'b mut [f32]],
    lines: usize,
    relu: bool,
}

impl WithSimd for Band<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // A 3 x 3 kernel gets its loops unrolled. On AVX-512 (32 registers) two strips
        // share each weight broadcast: 16 accumulators. On AVX2 (16 registers) three
        // strips share the broadcasts of four channels: 12 accumulators, 7 loads for 12
        // multiply-adds (one strip of eight channels: 9 loads for 8).
        match (self.g.k, S::F32_LANES) {
            (3, 16) => self.rows::<S, 2, 8>(simd, 3),
            (3, 8) => self.rows::<S, 3, 4>(simd, 3),
            (3, _) => self.rows::<S, 1, 8>(simd, 3),
            (k, _) => self.rows::<S, 1, 8>(simd, k),
        }
    }
}

impl Band<'_, '_> {
    /// `R` strips of `T` output channels at a time (`T` divides [`BLOCK`]).
    #[inline(always)]
    fn rows<S: Simd, const R: usize, const T: usize>(self, simd: S, k: usize) {
        let (g, lanes, input) = (self.g, S::F32_LANES, self.input);
        let cols = g.output.1;
        let ckk = g.c * k * k;
        for (b, out) in self.out.chunks_mut(BLOCK).enumerate() {
            let weights = &self.weights[b * ckk * BLOCK..][..ckk * BLOCK];
            for part in (0..out.len()).step_by(T) {
                let out = &mut out[part..];
                let mut first = [0f32; T];
                if let Some(bias) = self.bias {
                    let n = out.len().min(T);
                    first[..n].copy_from_slice(&bias[b * BLOCK + part..][..n]);
                }
                for y in 0..self.lines {
                    let mut x0 = 0;
                    // R strips while they all start inside the row, then one at a time.
                    while x0 + (R - 1) * lanes < cols {
                        let at = y * input.width + x0;
                        let acc = input.strips::<S, R, T>(simd, k, at, weights, part, first);
                        store(simd, &acc, out, y * cols + x0, cols - x0, self.relu);
                        x0 += R * lanes;
                    }
                    while x0 < cols {
                        let at = y * input.width + x0;
                        let acc = input.strips::<S, 1, T>(simd, k, at, weights, part, first);
                        store(simd, &acc, out, y * cols + x0, cols - x0, self.relu);
                        x0 += lanes;
                    }
                }
            }
        }
    }
}

/// Stores `R` strips of `T` channels' accumulators at `at` in `out` (one slice per
/// channel, the first `T` of them), at most `room` values of a row, ReLU first if asked.
#[inline(always)]
fn store<S: Simd, const R: usize, const T: usize>(
    simd: S,
    acc: &[[S::f32s; T]; R],
    out: &mut [&mut [f32]],
    at: usize,
    room: usize,
    relu: bool,
) {
    let (lanes, zero) = (S::F32_LANES, simd.splat_f32s(0.0));
    for (r, acc) in acc.iter().enumerate() {
        let start = r * lanes;
        if start >= room {
            break;
        }
        let end = (start + lanes).min(room);
        for (out, &a) in out.iter_mut().zip(acc) {
            let a = if relu { simd.max_f32s(a, zero) } else { a };
            super::common::store(simd, &mut out[at + start..at + end], a);
        }
    }
}

/// The padded input band of [`Band`]: `c` planes `plane_len` apart, rows `width` apart.
#[derive(Clone, Copy)]
struct Padded<'a> {
    pad: &'a [f32],
    width: usize,
    plane_len: usize,
    c: usize,
}

impl Padded<'_> {
    /// `R` strips side by side from `at` (row and column in each padded plane), `T`
    /// output channels from channel `part` of the weights' block: each weight broadcast
    /// once and used `R` times.
    #[inline(always)]
    fn strips<S: Simd, const R: usize, const T: usize>(
        &self,
        simd: S,
        k: usize,
        at: usize,
        weights: &[f32],
        part: usize,
        first: [f32; T],
    ) -> [[S::f32s; T]; R] {
        let lanes = S::F32_LANES;
        let mut acc = [first.map(|b| simd.splat_f32s(b)); R];
        for ch in 0..self.c {
            let plane = &self.pad[ch * self.plane_len + at..];
            for i in 0..k {
                let line = &plane[i * self.width..][..R * lanes + k - 1];
                for j in 0..k {
                    let v: [S::f32s; R] =
                        std::array::from_fn(|r| load::<S>(&line[j + r * lanes..]));
                    let w = &weights[((ch * k + i) * k + j) * BLOCK + part..][..T];
                    for (t, &w) in w.iter().enumerate() {
                        let w = simd.splat_f32s(w);
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

/// The kernel's gradient of [`direct`]: `gw[o][c][i][j] = sum_nyx dy[n][o][y][x]
/// x[n][c][y + i - q][x + j - q]`, image by image in parallel, band by band, eight
/// output channels at a time (no im2col). With a `mask` (the ReLU's output, of `dy`'s
/// shape), `dy` counts only where it is positive. Also returns each output plane's sum
/// of `dy` (so masked), image by image (`n * o`): the bias's gradient, taken as the
/// bands are read, equal to the bit to [`sum`] of each plane.
pub(super) fn direct_kernel_gradient(
    x: &[f32],
    (dy, mask): (&[f32], Option<&[f32]>),
    g: Direct,
) -> (Vec<f32>, Vec<f32>) {
    let (hw, ohw, ckk) = (
        g.input.0 * g.input.1,
        g.output.0 * g.output.1,
        g.c * g.k * g.k,
    );
    let (rows_out, cols) = g.output;
    let width = padded_width(cols, g.k);
    let wide = cols.next_multiple_of(LANES);
    let band = (BAND_BYTES / 4 / ((g.c * width + g.o * wide).max(1))).clamp(1, rows_out.max(1));
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..g.n)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), vec![0f32; cols]),
            |(pad, dy_pad, line), i| {
                let image = &x[i * g.c * hw..][..g.c * hw];
                let grad = &dy[i * g.o * ohw..][..g.o * ohw];
                let mask = mask.map(|m| &m[i * g.o * ohw..][..g.o * ohw]);
                let mut gw = vec![0f32; g.o * ckk];
                let mut sums: Vec<PlaneSum> = (0..g.o).map(|_| PlaneSum::new(ohw)).collect();
                for y0 in (0..rows_out).step_by(band) {
                    let rows = band.min(rows_out - y0);
                    let plane_len = (rows + g.k - 1) * width;
                    pad.resize(g.c * plane_len, 0f32);
                    for (ch, plane) in pad.chunks_exact_mut(plane_len).enumerate() {
                        let src = &image[ch * hw..][..hw];
                        pad_plane(plane, width, src, g.input, (g.q - y0 as isize, g.q));
                    }
                    // The band's output gradient, rows widened by zeros to whole strips
                    // and packed per block of eight channels as [y][strip][t][LANES]:
                    // a strip's eight vectors side by side (zero past channel `o`).
                    let blocks = g.o.div_ceil(BLOCK);
                    dy_pad.resize(blocks * BLOCK * rows * wide, 0f32);
                    for (b, to) in dy_pad.chunks_exact_mut(BLOCK * rows * wide).enumerate() {
                        for (t, oc) in (b * BLOCK..(b + 1) * BLOCK).enumerate() {
                            for y in 0..rows {
                                let at = oc * ohw + (y0 + y) * cols;
                                let from: &[f32] = match (oc < g.o, mask) {
                                    (false, _) => &[],
                                    (true, None) => &grad[at..][..cols],
                                    (true, Some(m)) => {
                                        let (grad, m) = (&grad[at..][..cols], &m[at..][..cols]);
                                        widest(|| {
                                            let pairs = grad.iter().zip(m);
                                            for (l, (&d, &v)) in line.iter_mut().zip(pairs) {
                                                *l = if v > 0.0 { d } else { 0.0 };
                                            }
                                        });
                                        line
                                    }
                                };
                                if oc < g.o {
                                    sums[oc].add((y0 + y) * cols, from);
                                }
                                for x in (0..wide).step_by(LANES) {
                                    let at = (y * wide + x) * BLOCK + t * LANES;
                                    let to = &mut to[at..][..LANES];
                                    let from = from.get(x..).unwrap_or(&[]);
                                    let n = from.len().min(LANES);
                                    to[..n].copy_from_slice(&from[..n]);
                                    to[n..].fill(0.0);
                                }
                            }
                        }
                    }
                    for (b, gw) in gw.chunks_mut(BLOCK * ckk).enumerate() {
                        let dy = &dy_pad[b * BLOCK * rows * wide..][..BLOCK * rows * wide];
                        arch().dispatch(BandGradient {
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
                (gw, sums.iter().map(PlaneSum::total).collect())
            },
        )
        .collect();
    // Summed in image order, so that the result does not depend on how the work was
    // shared out between threads (a resumed run ends where an uninterrupted one does).
    let mut gw = vec![0f32; g.o * ckk];
    for (part, _) in &parts {
        gw.iter_mut().zip(part).for_each(|(a, b)| *a += *b);
    }
    (gw, parts.into_iter().flat_map(|(_, sums)| sums).collect())
}

/// One band's contribution to the kernel gradient of up to eight output channels.
struct BandGradient<'a> {
    pad: &'a [f32],
    width: usize,
    plane_len: usize,
    /// Eight channels' output gradient packed as [y][strip][t][LANES] (zero for the
    /// channels past `o`), `rows` rows of `wide` columns.
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
        // A 3 x 3 kernel takes its three columns at once: each output-gradient vector
        // loaded once for three columns, each input vector once for every channel. On
        // AVX-512 (32 registers) for all eight channels, 24 accumulators; on AVX2 (16)
        // for four, 12 accumulators (with the three input and one gradient vector, all
        // 16 registers).
        match (self.g.k, S::F32_LANES) {
            (3, 16) => self.columns::<S, 3, 8>(simd, 3),
            (3, 8) => self.columns::<S, 3, 4>(simd, 3),
            (k, _) => self.columns::<S, 1, 8>(simd, k),
        }
    }
}

impl BandGradient<'_> {
    /// The band's sums for `J` kernel columns of `T` channels at a time.
    #[inline(always)]
    fn columns<S: Simd, const J: usize, const T: usize>(self, simd: S, k: usize) {
        let (g, lanes) = (self.g, S::F32_LANES);
        let (rows, wide, width, plane_len) = (self.rows, self.wide, self.width, self.plane_len);
        let ckk = g.c * k * k;
        let channels = self.gw.len() / ckk;
        // Every load below lies inside these bounds, checked once here rather than at
        // each load: an input strip reaches column `x + lanes - 1 + k - 1` of a row
        // `width` wide, a gradient strip channel `T - 1` of its packed row.
        assert!(T <= BLOCK && J <= k && LANES.is_multiple_of(lanes) && wide.is_multiple_of(LANES));
        assert!(width >= wide + k - 1 && plane_len >= (rows + k - 1) * width);
        assert!(self.pad.len() >= g.c * plane_len && self.dy.len() >= BLOCK * rows * wide);
        let (pad, dy) = (self.pad.as_ptr(), self.dy.as_ptr());
        for t0 in (0..BLOCK).step_by(T) {
            for ch in 0..g.c {
                for i in 0..k {
                    for j0 in (0..k).step_by(J) {
                        let mut acc = [[simd.splat_f32s(0.0); J]; T];
                        // Every row and strip of the band into the same accumulators,
                        // which stay in registers from the first strip to the last.
                        for y in 0..rows {
                            let line = ch * plane_len + (y + i) * width + j0;
                            let packed = y * wide * BLOCK + t0 * LANES;
                            for x in (0..wide).step_by(lanes) {
                                let at = packed + x / LANES * LANES * BLOCK + x % LANES;
                                // SAFETY: inside `pad` and `dy` by the asserts above
                                // (x < wide, j0 + J <= k, t0 + T <= BLOCK).
                                let v: [S::f32s; J] = std::array::from_fn(|j| unsafe {
                                    pad.add(line + x + j).cast::<S::f32s>().read_unaligned()
                                });
                                for (t, acc) in acc.iter_mut().enumerate() {
                                    // SAFETY: as above.
                                    let d = unsafe {
                                        dy.add(at + t * LANES).cast::<S::f32s>().read_unaligned()
                                    };
                                    for (a, v) in acc.iter_mut().zip(v) {
                                        *a = simd.mul_add_e_f32s(d, v, *a);
                                    }
                                }
                            }
                        }
                        for (t, acc) in (t0..).zip(&acc).take(channels.saturating_sub(t0)) {
                            for (j, a) in acc.iter().enumerate() {
                                self.gw[t * ckk + (ch * k + i) * k + j0 + j] +=
                                    simd.reduce_sum_f32s(*a);
                            }
                        }
                    }
                }
            }
        }
    }
}
