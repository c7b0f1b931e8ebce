//! Float images and affine warps with Keras's `apply_affine_transform` semantics
//! (introduced in chapter 3).
//!
//! Coordinates are `(row, column)`, as in Keras and SciPy: a matrix maps each *output*
//! pixel to the *input* position it samples, and sampling is bilinear (SciPy's `order=1`).

use candle_core::{Device, Tensor};
use image::DynamicImage;

use super::XRay;
use crate::Result;

/// Pixels as `f32`, `(height, width, channels)`: what Keras's `img_to_array` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Row after row, the channels of a pixel next to each other.
    pub data: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 for gray, 3 for RGB.
    pub channels: usize,
}

impl FloatImage {
    /// A `height` x `width` x `channels` image filled with `value`.
    pub fn filled(height: usize, width: usize, channels: usize, value: f32) -> Self {
        Self {
            data: vec![value; height * width * channels],
            height,
            width,
            channels,
        }
    }

    /// The raw values of an X-ray (0..=255 for 8-bit images).
    pub fn from_xray(xray: &XRay) -> Self {
        let (w, h) = xray.size();
        let channels = xray.mode().channels();
        let data = match xray.image() {
            DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| f32::from(v)).collect(),
            DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| f32::from(v)).collect(),
            other => other.as_bytes().iter().map(|&v| f32::from(v)).collect(),
        };
        Self {
            data,
            height: h as usize,
            width: w as usize,
            channels,
        }
    }

    /// The value at `(row, column, channel)`.
    pub fn get(&self, row: usize, column: usize, channel: usize) -> f32 {
        self.data[(row * self.width + column) * self.channels + channel]
    }

    /// Mirrors left and right (Keras's `horizontal_flip`).
    pub fn flip_horizontal(&self) -> Self {
        self.remap(|r, c| (r, self.width - 1 - c))
    }

    /// Mirrors top and bottom (Keras's `vertical_flip`).
    pub fn flip_vertical(&self) -> Self {
        self.remap(|r, c| (self.height - 1 - r, c))
    }

    fn remap(&self, source: impl Fn(usize, usize) -> (usize, usize)) -> Self {
        let mut out = Vec::with_capacity(self.data.len());
        for r in 0..self.height {
            for c in 0..self.width {
                let (sr, sc) = source(r, c);
                let at = (sr * self.width + sc) * self.channels;
                out.extend_from_slice(&self.data[at..at + self.channels]);
            }
        }
        Self { data: out, ..*self }
    }

    /// Multiplies every value, as Keras's `rescale` does (`1/255` maps 0..=255 to 0..=1).
    pub fn scale(&mut self, factor: f32) {
        self.data.iter_mut().for_each(|v| *v *= factor);
    }

    /// The pixels as a `(height, width, channels)` tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.height, self.width, self.channels),
            device,
        )?)
    }

    /// An 8-bit X-ray to look at: values are rounded and clipped to 0..=255, so pass
    /// an image in that range (before `rescale`, or multiplied back).
    pub fn to_xray(&self, name: &str) -> XRay {
        let bytes: Vec<u8> = self
            .data
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        let (w, h) = (self.width as u32, self.height as u32);
        let image = match self.channels {
            3 => image::RgbImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgb8),
            _ => image::GrayImage::from_raw(w, h, bytes).map(DynamicImage::ImageLuma8),
        };
        XRay::from_parts(name, image.unwrap_or_else(|| DynamicImage::new_luma8(w, h)))
    }
}

/// What a warp puts where it samples outside the input, Keras's `fill_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FillMode {
    /// A constant value, Keras's `fill_mode="constant"` with `cval`.
    Constant(f32),
    /// The nearest edge pixel repeated: `aaaa|abcd|dddd` (Keras's default).
    #[default]
    Nearest,
    /// Mirrored at the edge: `dcba|abcd|dcba`.
    Reflect,
    /// Repeated periodically: `abcd|abcd|abcd`.
    Wrap,
}

impl FillMode {
    /// The input index to read for index `i` of an axis of length `n`, or `None` for the
    /// constant.
    fn index(self, i: i64, n: usize) -> Option<usize> {
        let n = n as i64;
        let inside = (0..n).contains(&i);
        match self {
            FillMode::Constant(_) => inside.then_some(i as usize),
            FillMode::Nearest => Some(i.clamp(0, n - 1) as usize),
            FillMode::Reflect => {
                let period = 2 * n;
                let k = i.rem_euclid(period);
                Some(if k < n { k } else { period - 1 - k } as usize)
            }
            FillMode::Wrap => Some(i.rem_euclid(n) as usize),
        }
    }
}

/// A 3 x 3 matrix on `(row, column, 1)` coordinates.
pub type Matrix = [[f64; 3]; 3];

/// The identity matrix.
pub const IDENTITY: Matrix = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// The product `a @ b`.
pub fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Keras's transform for a rotation by `theta` degrees, a shift of `tx` rows and `ty`
/// columns, and a zoom of `zx` (rows) and `zy` (columns), about the image's centre:
/// `offset @ rotation @ shift @ zoom @ reset`, as `apply_affine_transform` builds it.
pub fn keras_transform(
    theta: f64,
    tx: f64,
    ty: f64,
    zx: f64,
    zy: f64,
    height: usize,
    width: usize,
) -> Matrix {
    let (sin, cos) = theta.to_radians().sin_cos();
    let rotation = [[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]];
    let shift = [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]];
    let zoom = [[zx, 0.0, 0.0], [0.0, zy, 0.0], [0.0, 0.0, 1.0]];
    let (or, oc) = (height as f64 / 2.0 - 0.5, width as f64 / 2.0 - 0.5);
    let offset = [[1.0, 0.0, or], [0.0, 1.0, oc], [0.0, 0.0, 1.0]];
    let reset = [[1.0, 0.0, -or], [0.0, 1.0, -oc], [0.0, 0.0, 1.0]];
    [offset, rotation, shift, zoom, reset]
        .iter()
        .fold(IDENTITY, |acc, m| matmul(&acc, m))
}

/// Warps `image`: output pixel `(r, c)` takes the bilinear sample of the input at
/// `matrix @ (r, c, 1)`. Samples outside the input follow `fill`; with
/// [`FillMode::Constant`] a sample point outside the image takes the constant, as SciPy's
/// `mode="constant"`.
pub fn affine_transform(image: &FloatImage, matrix: &Matrix, fill: FillMode) -> FloatImage {
    let (h, w, ch) = (image.height, image.width, image.channels);
    let mut out = FloatImage::filled(h, w, ch, 0.0);
    let constant = if let FillMode::Constant(v) = fill {
        Some(v)
    } else {
        None
    };
    let mut at = 0;
    for r in 0..h {
        for c in 0..w {
            let (rf, cf) = (r as f64, c as f64);
            let sr = matrix[0][0] * rf + matrix[0][1] * cf + matrix[0][2];
            let sc = matrix[1][0] * rf + matrix[1][1] * cf + matrix[1][2];
            let outside = sr < 0.0 || sc < 0.0 || sr > (h - 1) as f64 || sc > (w - 1) as f64;
            match constant {
                Some(value) if outside => out.data[at..at + ch].fill(value),
                _ => sample(image, sr, sc, fill, &mut out.data[at..at + ch]),
            }
            at += ch;
        }
    }
    out
}

fn sample(image: &FloatImage, r: f64, c: f64, fill: FillMode, out: &mut [f32]) {
    let (r0, c0) = (r.floor(), c.floor());
    let (fr, fc) = ((r - r0) as f32, (c - c0) as f32);
    let (r0, c0) = (r0 as i64, c0 as i64);
    let corners = [
        (r0, c0, (1.0 - fr) * (1.0 - fc)),
        (r0, c0 + 1, (1.0 - fr) * fc),
        (r0 + 1, c0, fr * (1.0 - fc)),
        (r0 + 1, c0 + 1, fr * fc),
    ];
    out.fill(0.0);
    for (ri, ci, weight) in corners {
        if weight == 0.0 {
            continue;
        }
        let value_at = match (fill.index(ri, image.height), fill.index(ci, image.width)) {
            (Some(rr), Some(cc)) => Some((rr * image.width + cc) * image.channels),
            _ => None,
        };
        for (k, o) in out.iter_mut().enumerate() {
            let v = match (value_at, fill) {
                (Some(at), _) => image.data[at + k],
                (None, FillMode::Constant(value)) => value,
                (None, _) => 0.0,
            };
            *o += weight * v;
        }
    }
}
