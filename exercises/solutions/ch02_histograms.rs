//! Chapter 2: the gray-level histogram of an X-ray, and of its bottom-right quarter
//! (reference solution).
//!
//! The lesson is in the book (`chapters/ch02-histograms.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch02`; the grader is `src/graders/ch02_histograms.rs`.

use std::ops::Range;

use cxr::imaging::{Histogram, Mask, calc_hist};
use cxr::prelude::*;

/// One bin per gray level.
pub const HIST_SIZE: [usize; 1] = [256];

// Instruction 1: a grayscale image has one channel, number 0.
pub const CHANNELS: &[usize] = &[0];

// Instruction 2: the high end is left out, so 256 takes in 255.
pub const RANGES: (f32, f32) = (0.0, 256.0);

// Instruction 3: from the middle (rounded down) to the edge, both ways.
pub fn bottom_right(width: u32, height: u32) -> (Range<u32>, Range<u32>) {
    (width / 2..width, height / 2..height)
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
    // Instruction 4: one visit per pixel of the rectangle, one count per visit.
    for y in y_range {
        for x in x_range.clone() {
            let level = gray.get_pixel(x, y).0[0];
            counts[usize::from(level)] += 1;
        }
    }
    counts
}
