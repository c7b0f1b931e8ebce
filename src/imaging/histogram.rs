//! Histograms with OpenCV's `cv.calcHist` semantics, masks, and `cv.bitwise_and`
//! (introduced in chapter 2).

use std::ops::Range;

use image::{DynamicImage, GrayImage, Luma};

use super::{FloatImage, XRay};
use crate::{Error, Result};

/// A region of an image: pixels whose mask value is not zero are "in".
///
/// Masks are 8-bit images of the same size as the image they select from, as in OpenCV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    image: GrayImage,
}

impl Mask {
    /// A mask that selects the pixels `x_range` x `y_range` of a `(width, height)` image,
    /// like NumPy's `mask[y0:y1, x0:x1] = 255`; ranges are clipped to the image.
    pub fn rect((width, height): (u32, u32), x_range: Range<u32>, y_range: Range<u32>) -> Self {
        let image = GrayImage::from_fn(width, height, |x, y| {
            Luma([if x_range.contains(&x) && y_range.contains(&y) {
                255
            } else {
                0
            }])
        });
        Self { image }
    }

    /// The lesson's region: the bottom-right quarter, `width/2..width` x `height/2..height`.
    pub fn bottom_right_quarter((width, height): (u32, u32)) -> Self {
        Self::rect((width, height), width / 2..width, height / 2..height)
    }

    /// Any 8-bit image as a mask (non-zero selects).
    pub fn from_image(image: GrayImage) -> Self {
        Self { image }
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    /// How many pixels the mask selects.
    pub fn count(&self) -> usize {
        self.image.as_raw().iter().filter(|&&v| v != 0).count()
    }

    /// The mask as a black-and-white X-ray, to look at it.
    pub fn to_xray(&self) -> XRay {
        XRay::from_parts("mask", DynamicImage::ImageLuma8(self.image.clone()))
    }

    fn selects(&self, index: usize) -> bool {
        self.image.as_raw()[index] != 0
    }
}

/// Counts per bin, as `cv.calcHist` returns them: `f32`, one axis per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<f32>,
    shape: Vec<usize>,
    ranges: Vec<(f32, f32)>,
}

impl Histogram {
    /// The counts, the last axis varying fastest (OpenCV's order).
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }

    /// Bins per axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The `[low, high)` value range of each axis.
    pub fn ranges(&self) -> &[(f32, f32)] {
        &self.ranges
    }

    /// How many pixels were counted (those in range and in the mask).
    pub fn total(&self) -> f32 {
        self.counts.iter().sum()
    }

    /// The lowest value of each bin of a one-axis histogram: where to draw it.
    pub fn bin_starts(&self) -> Vec<f32> {
        let (low, high) = self.ranges[0];
        let bins = self.shape[0];
        (0..bins)
            .map(|i| low + (high - low) * i as f32 / bins as f32)
            .collect()
    }
}

/// `cv.calcHist(images, channels, mask, histSize, ranges)`.
///
/// - `images`: one or more images of the same size and bit depth;
/// - `channels`: which channels to count, numbered across all images in turn (with two
///   RGB images, 0-2 are the first image's, 3-5 the second's); one histogram axis each;
/// - `mask`: `None` for the whole image, or a [`Mask`] of the images' size;
/// - `hist_size`: bins per axis;
/// - `ranges`: the `[low, high)` values per axis: `(0.0, 256.0)` covers every 8-bit value,
///   while `(0.0, 255.0)` leaves out 255, exactly as in OpenCV.
///
/// A value `v` with `low <= v < high` falls in bin
/// `floor(v * bins / (high - low) - low * bins / (high - low))`, clamped to the bins and
/// computed in `f64` as OpenCV does, so the counts equal OpenCV's on the same pixels.
pub fn calc_hist(
    images: &[&XRay],
    channels: &[usize],
    mask: Option<&Mask>,
    hist_size: &[usize],
    ranges: &[(f32, f32)],
) -> Result<Histogram> {
    let first = images
        .first()
        .ok_or_else(|| bad("calc_hist needs at least one image"))?;
    let size = first.size();
    if let Some(other) = images.iter().find(|x| x.size() != size) {
        return Err(bad(format!(
            "calc_hist needs images of one size: {} is {:?}, {} is {:?}; resize them first",
            first.path().display(),
            size,
            other.path().display(),
            other.size()
        )));
    }
    if channels.is_empty() || channels.len() != hist_size.len() || channels.len() != ranges.len() {
        return Err(bad(format!(
            "calc_hist needs one bin count and one range per channel: got {} channel(s), {} bin count(s), {} range(s)",
            channels.len(),
            hist_size.len(),
            ranges.len()
        )));
    }
    if let Some(&zero) = hist_size.iter().find(|&&b| b == 0) {
        return Err(bad(format!(
            "calc_hist: {zero} bins; every axis needs at least one bin"
        )));
    }
    // Written so that a NaN bound counts as empty too.
    if let Some(&(low, high)) = ranges
        .iter()
        .find(|(low, high)| low.partial_cmp(high) != Some(std::cmp::Ordering::Less))
    {
        return Err(bad(format!(
            "calc_hist: the range [{low}, {high}) is empty; use e.g. (0.0, 256.0)"
        )));
    }
    if let Some(mask) = mask.filter(|m| m.size() != size) {
        return Err(bad(format!(
            "the mask is {:?} but the images are {size:?}; make it with Mask::rect({size:?}, ..)",
            mask.size()
        )));
    }
    // Channel numbers run across the images, as in OpenCV.
    let mut planes = Vec::new();
    for image in images {
        for c in 0..image.mode().channels() {
            planes.push((*image, c));
        }
    }
    let sources: Vec<(&XRay, usize)> = channels
        .iter()
        .map(|&c| {
            planes.get(c).copied().ok_or_else(|| {
                bad(format!(
                    "channel {c} does not exist: the images have {} channel(s) in all (a grayscale image has only channel 0)",
                    planes.len()
                ))
            })
        })
        .collect::<Result<_>>()?;

    // Per axis: OpenCV's scale and offset in f64, the range, and the stride in the flat array.
    let axes: Vec<Axis> = hist_size
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(i, (&bins, &(low, high)))| {
            let (low, high) = (f64::from(low), f64::from(high));
            let scale = bins as f64 / (high - low);
            Axis {
                scale,
                offset: -scale * low,
                low,
                high,
                last: bins - 1,
                stride: hist_size[i + 1..].iter().product(),
            }
        })
        .collect();
    let values: Vec<Vec<f64>> = sources.iter().map(|(x, c)| channel_values(x, *c)).collect();
    let mut counts = vec![0f32; hist_size.iter().product()];
    let pixels = size.0 as usize * size.1 as usize;
    'pixel: for p in 0..pixels {
        if mask.is_some_and(|m| !m.selects(p)) {
            continue;
        }
        let mut at = 0;
        for (axis, values) in axes.iter().zip(&values) {
            let value = values[p];
            // OpenCV decides "in range" on the value itself, then clamps the bin, so
            // rounding in the bin arithmetic can never drop or add a pixel at the ends.
            if value < axis.low || value >= axis.high {
                continue 'pixel;
            }
            let bin = (value * axis.scale + axis.offset)
                .floor()
                .clamp(0.0, axis.last as f64);
            at += bin as usize * axis.stride;
        }
        counts[at] += 1.0;
    }
    Ok(Histogram {
        counts,
        shape: hist_size.to_vec(),
        ranges: ranges.to_vec(),
    })
}

/// `cv.bitwise_and(image1, image2, mask)`: pixel values ANDed bit by bit where the mask
/// selects, zero elsewhere. With `image1 == image2` it cuts out the masked region.
pub fn bitwise_and(image1: &XRay, image2: &XRay, mask: Option<&Mask>) -> Result<XRay> {
    if image1.size() != image2.size() || image1.mode() != image2.mode() {
        return Err(bad(format!(
            "bitwise_and needs two images of one size and mode: {:?} {} and {:?} {}",
            image1.size(),
            image1.mode(),
            image2.size(),
            image2.mode()
        )));
    }
    if let Some(mask) = mask.filter(|m| m.size() != image1.size()) {
        return Err(bad(format!(
            "the mask is {:?} but the images are {:?}",
            mask.size(),
            image1.size()
        )));
    }
    let channels = image1.mode().channels();
    let mut out = image1.image().clone();
    match (&mut out, image2.image()) {
        (DynamicImage::ImageLuma8(a), DynamicImage::ImageLuma8(b)) => {
            and_pixels(a.as_mut(), b.as_raw(), mask, channels)
        }
        (DynamicImage::ImageRgb8(a), DynamicImage::ImageRgb8(b)) => {
            and_pixels(a.as_mut(), b.as_raw(), mask, channels)
        }
        (DynamicImage::ImageLuma16(a), DynamicImage::ImageLuma16(b)) => {
            and_pixels(a.as_mut(), b.as_raw(), mask, channels)
        }
        (DynamicImage::ImageRgb16(a), DynamicImage::ImageRgb16(b)) => {
            and_pixels(a.as_mut(), b.as_raw(), mask, channels)
        }
        _ => {
            return Err(bad(format!(
                "bitwise_and does not support {} images",
                image1.mode()
            )));
        }
    }
    Ok(XRay::from_parts(image1.path(), out).with_original_size(image1.original_size()))
}

fn and_pixels<T>(a: &mut [T], b: &[T], mask: Option<&Mask>, channels: usize)
where
    T: Copy + Default + std::ops::BitAnd<Output = T>,
{
    for (i, (x, y)) in a.iter_mut().zip(b).enumerate() {
        *x = if mask.is_none_or(|m| m.selects(i / channels)) {
            *x & *y
        } else {
            T::default()
        };
    }
}

struct Axis {
    scale: f64,
    offset: f64,
    low: f64,
    high: f64,
    last: usize,
    stride: usize,
}

fn channel_values(xray: &XRay, channel: usize) -> Vec<f64> {
    // f32 holds every 8- and 16-bit value exactly.
    let pixels = FloatImage::from_xray(xray);
    pixels
        .data
        .iter()
        .skip(channel)
        .step_by(pixels.channels)
        .map(|&v| f64::from(v))
        .collect()
}

fn bad(message: impl Into<String>) -> Error {
    Error::BadArgument(message.into())
}
