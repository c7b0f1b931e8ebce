//! Chapter 2: the gray-level histogram of an X-ray, and of its bottom-right quarter; then
//! the same histogram counted by hand.
//!
//! The lesson is in the book (`chapters/ch02-histograms.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch02`; the grader is `src/graders/ch02_histograms.rs`.

use std::ops::Range;

use cxr::imaging::{Histogram, Mask, calc_hist};
use cxr::prelude::*;

/// One bin per gray level.
pub const HIST_SIZE: [usize; 1] = [256];

// TODO (instruction 1): the channel(s) to count. The X-rays are grayscale images.
pub const CHANNELS: &[usize] = &[];

// TODO (instruction 2): the range of gray levels to count, [low, high). Gray levels run
// from 0 to 255, and every one of them must be counted.
pub const RANGES: (f32, f32) = (0.0, 0.0);

// TODO (instruction 3): the x_range and y_range of the bottom-right quarter of a
// `width` x `height` image. For the width: from `width / 2` up to `width`.
pub fn bottom_right(width: u32, height: u32) -> (Range<u32>, Range<u32>) {
    let _ = (width, height);
    (0..0, 0..0)
}

/// The histogram of the whole X-ray and of its bottom-right quarter, as in the lesson.
/// Nothing to change here.
pub fn histograms(xray: &XRay) -> Result<(Histogram, Histogram)> {
    let (width, height) = xray.size();
    let (x_range, y_range) = bottom_right(width, height);
    let mask = Mask::rect((width, height), x_range, y_range);
    let full = calc_hist(&[xray], CHANNELS, None, &HIST_SIZE, &[RANGES])?;
    let quarter = calc_hist(&[xray], CHANNELS, Some(&mask), &HIST_SIZE, &[RANGES])?;
    Ok((full, quarter))
}

/// The histogram of the pixels in `x_range` x `y_range`, counted by hand: `counts[v]` is
/// how many of those pixels have gray level `v`. It must equal `calc_hist` with the
/// matching mask.
pub fn count_gray_levels(xray: &XRay, x_range: Range<u32>, y_range: Range<u32>) -> [u32; 256] {
    let gray = xray.image().to_luma8();
    let mut counts = [0u32; 256];
    // TODO (instruction 4): for every row y in y_range and every column x in x_range,
    // read the gray level `gray.get_pixel(x, y).0[0]` (a u8, 0..=255) and add one to
    // its bin.
    let _ = (&gray, x_range, y_range, &mut counts);
    counts
}
