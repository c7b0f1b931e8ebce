#![doc = include_str!("../chapters/ch02-histograms.md")]

use std::ops::Range;
use std::path::Path;

use crate::Result;
use crate::imaging::{Histogram, Mask, XRay, bitwise_and, calc_hist};
use crate::plot::{Figure, Panel, grid};

/// The X-ray the chapter looks at, relative to the repository root.
pub const EXAMPLE: &str = "data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg";
/// A grayscale image has a single channel, number 0.
pub const CHANNELS: [usize; 1] = [0];
/// One bin per gray level.
pub const HIST_SIZE: [usize; 1] = [256];
/// Every 8-bit value: the upper end is left out, so 256 takes in 255.
pub const RANGES: [(f32, f32); 1] = [(0.0, 256.0)];

/// The lesson's `x_range` and `y_range`: the bottom-right quarter of a `width` x `height`
/// image, from the middle (rounded down) to the edge.
pub fn bottom_right_quarter(width: u32, height: u32) -> (Range<u32>, Range<u32>) {
    (width / 2..width, height / 2..height)
}

/// What the lesson computes for one X-ray.
#[derive(Debug, Clone)]
pub struct MaskedHistograms {
    /// The histogram of the whole image.
    pub full: Histogram,
    /// The region: the bottom-right quarter.
    pub mask: Mask,
    /// `bitwise_and(xray, xray, mask)`: the image with everything outside the region black.
    pub masked: XRay,
    /// The histogram of the region only.
    pub region: Histogram,
}

/// The lesson on one X-ray: the full histogram, the bottom-right quarter as a mask, the
/// masked image and its histogram.
pub fn masked_histograms(xray: &XRay) -> Result<MaskedHistograms> {
    let (width, height) = xray.size();
    let (x_range, y_range) = bottom_right_quarter(width, height);
    let mask = Mask::rect((width, height), x_range, y_range);
    let full = calc_hist(&[xray], &CHANNELS, None, &HIST_SIZE, &RANGES)?;
    let region = calc_hist(&[xray], &CHANNELS, Some(&mask), &HIST_SIZE, &RANGES)?;
    let masked = bitwise_and(xray, xray, Some(&mask))?;
    Ok(MaskedHistograms {
        full,
        mask,
        masked,
        region,
    })
}

/// The lesson's 2 x 2 figure: the X-ray, the mask, the masked image, and both histograms.
pub fn histogram_view(xray: &XRay, result: &MaskedHistograms) -> Result<Figure> {
    let mask = result.mask.to_xray();
    let series = [
        ("whole image", &result.full),
        ("bottom-right quarter", &result.region),
    ];
    grid(
        2,
        &[
            Panel::Image {
                title: "X-ray",
                xray,
            },
            Panel::Image {
                title: "mask",
                xray: &mask,
            },
            Panel::Image {
                title: "masked",
                xray: &result.masked,
            },
            Panel::Histograms {
                title: "gray-level histograms",
                series: &series,
            },
        ],
    )
}

/// The whole lesson for `cxr lesson 2`: writes `out/ch02-histograms.png` and returns the
/// lines printed along the way.
pub fn run(example: &Path, out: &Path) -> Result<Vec<String>> {
    let xray = XRay::open(example)?.to_gray();
    let result = masked_histograms(&xray)?;
    let (width, height) = xray.size();
    let peak = |h: &Histogram| {
        let counts = h.counts();
        (0..counts.len())
            .max_by(|&a, &b| counts[a].total_cmp(&counts[b]))
            .unwrap_or(0)
    };
    let figure = out.join("ch02-histograms.png");
    histogram_view(&xray, &result)?.save(&figure)?;
    Ok(vec![
        format!(
            "{}: {width} x {height} = {} pixels",
            example.display(),
            width * height
        ),
        format!(
            "whole image: {} pixels counted, most common gray level {}",
            result.full.total(),
            peak(&result.full)
        ),
        format!(
            "bottom-right quarter: {} pixels counted (the mask selects {}), most common gray level {}",
            result.region.total(),
            result.mask.count(),
            peak(&result.region)
        ),
        format!("figure: {}", figure.display()),
    ])
}
