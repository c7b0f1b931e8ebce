//! Resizing with Pillow's filters.
//!
//! `fast_image_resize` computes a separable convolution the way Pillow's `Image.resize`
//! does (the filter widened by the scale factor when shrinking, 8-bit fixed-point
//! weights), so the same filter gives the same pixels within a level or two:
//! `tests/ch01_pillow_parity.rs` measures it against Pillow's own output.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{U8, U8x3, U16, U16x3};
use fast_image_resize::{FilterType, PixelTrait, ResizeAlg, ResizeOptions, Resizer};
use image::{ColorType, DynamicImage, ImageBuffer};

use crate::{Error, Result};

/// A resampling filter, named as Pillow names it (`Image.Resampling.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// The source pixel whose centre is nearest: blocky, but keeps the original values.
    Nearest,
    /// The mean of every source pixel the output pixel covers (OpenCV's `INTER_AREA`).
    Box,
    /// Linear weights over the neighbours (a triangle filter).
    Bilinear,
    /// A Hamming-windowed sinc: sharper than bilinear at the same cost.
    Hamming,
    /// Cubic convolution with a = -0.5: Pillow's default since version 7, and cxr's.
    #[default]
    Bicubic,
    /// A three-lobed Lanczos-windowed sinc: the sharpest, the slowest.
    Lanczos,
}

impl Filter {
    /// Every filter, in Pillow's order.
    pub const ALL: [Filter; 6] = [
        Filter::Nearest,
        Filter::Box,
        Filter::Bilinear,
        Filter::Hamming,
        Filter::Bicubic,
        Filter::Lanczos,
    ];

    /// The lower-case name Pillow's documentation uses.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Nearest => "nearest",
            Filter::Box => "box",
            Filter::Bilinear => "bilinear",
            Filter::Hamming => "hamming",
            Filter::Bicubic => "bicubic",
            Filter::Lanczos => "lanczos",
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            Filter::Nearest => ResizeAlg::Nearest, // unused: see `nearest`
            Filter::Box => ResizeAlg::Convolution(FilterType::Box),
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::Hamming => ResizeAlg::Convolution(FilterType::Hamming),
            Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Filter::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Filter::ALL.iter().map(|f| f.name()).collect();
                format!("unknown filter {s:?}; choose one of {}", names.join(", "))
            })
    }
}

/// Resizes `image` to exactly `(width, height)`; the aspect ratio is not kept, as in Pillow.
///
/// Takes the modes an [`XRay`](crate::imaging::XRay) has: 8- and 16-bit gray and RGB
/// (any mode with [`Filter::Nearest`]); others are an [`Error::Resize`] that says how to
/// convert them.
pub fn resize(
    image: &DynamicImage,
    (width, height): (u32, u32),
    filter: Filter,
) -> Result<DynamicImage> {
    if width == 0 || height == 0 {
        return Err(Error::BadSize { width, height });
    }
    if filter == Filter::Nearest {
        return Ok(nearest(image, (width, height)));
    }
    // Pillow filters rows first into an 8-bit (or 16-bit) image, clipping any overshoot,
    // then columns; doing the two passes separately clips where Pillow clips.
    let rows_done = if width == image.width() {
        image.clone()
    } else {
        convolve(image, (width, image.height()), filter)?
    };
    if height == image.height() {
        Ok(rows_done)
    } else {
        convolve(&rows_done, (width, height), filter)
    }
}

fn convolve(
    image: &DynamicImage,
    (width, height): (u32, u32),
    filter: Filter,
) -> Result<DynamicImage> {
    // One resizer per pixel type an X-ray can have (`Mode`). `Resizer::resize` on a
    // `DynamicImage` would compile the filters for all thirteen of fast_image_resize's
    // pixel types and every instruction set: 42% of cxr's generated code, for types an
    // X-ray never has (BENCHMARKS.md, the build's times).
    let resize_as: ResizeFn = match image.color() {
        ColorType::L8 => convolve_typed::<U8>,
        ColorType::Rgb8 => convolve_typed::<U8x3>,
        ColorType::L16 => convolve_typed::<U16>,
        ColorType::Rgb16 => convolve_typed::<U16x3>,
        other => {
            return Err(Error::Resize(format!(
                "a {other:?} image: resize takes the modes an X-ray has (L, I;16, RGB, RGB;16); \
                 XRay::from_image converts the others (it drops an alpha channel)"
            )));
        }
    };
    let mut out = DynamicImage::new(width, height, image.color());
    let options = ResizeOptions::new().resize_alg(filter.algorithm());
    resize_as(
        image.as_bytes(),
        (image.width(), image.height()),
        bytes_mut(&mut out),
        (width, height),
        &options,
    )
    .map_err(Error::Resize)?;
    Ok(out)
}

type ResizeFn =
    fn(&[u8], (u32, u32), &mut [u8], (u32, u32), &ResizeOptions) -> std::result::Result<(), String>;

/// The pixel bytes of an image of one of the modes `convolve` takes (empty for others,
/// which the resizer then refuses as too small).
fn bytes_mut(image: &mut DynamicImage) -> &mut [u8] {
    match image {
        DynamicImage::ImageLuma8(buf) => buf.as_mut(),
        DynamicImage::ImageRgb8(buf) => buf.as_mut(),
        DynamicImage::ImageLuma16(buf) => bytemuck::cast_slice_mut(buf.as_mut()),
        DynamicImage::ImageRgb16(buf) => bytemuck::cast_slice_mut(buf.as_mut()),
        _ => &mut [],
    }
}

/// Resizes a buffer of one pixel type into another; `dst` holds `(width, height)` pixels.
fn convolve_typed<P: PixelTrait>(
    src: &[u8],
    (src_width, src_height): (u32, u32),
    dst: &mut [u8],
    (width, height): (u32, u32),
    options: &ResizeOptions,
) -> std::result::Result<(), String> {
    let src =
        TypedImageRef::<P>::from_buffer(src_width, src_height, src).map_err(|e| e.to_string())?;
    let mut dst = TypedImage::<P>::from_buffer(width, height, dst).map_err(|e| e.to_string())?;
    Resizer::new()
        .resize_typed(&src, &mut dst, options)
        .map_err(|e| e.to_string())
}

/// Pillow's nearest neighbour: the source of output pixel `x` is the floor of
/// `scale / 2 + x * scale`, summed step by step in `f64` as Pillow's `ImagingScaleAffine`
/// does. Computing `(x + 0.5) * scale` directly picks a different pixel wherever the
/// product lands on a whole number, so the running sum is kept on purpose.
fn nearest(image: &DynamicImage, (width, height): (u32, u32)) -> DynamicImage {
    let table = |from: u32, to: u32| -> Vec<usize> {
        let scale = f64::from(from) / f64::from(to);
        let mut position = scale * 0.5;
        (0..to)
            .map(|_| {
                let index = (position as usize).min(from as usize - 1);
                position += scale;
                index
            })
            .collect()
    };
    let (columns, rows) = (table(image.width(), width), table(image.height(), height));
    let pick = |x: u32, y: u32| (columns[x as usize] as u32, rows[y as usize] as u32);
    macro_rules! gather {
        ($($variant:ident),*) => {
            match image {
                $(DynamicImage::$variant(buf) => DynamicImage::$variant(ImageBuffer::from_fn(width, height, |x, y| {
                    let (sx, sy) = pick(x, y);
                    *buf.get_pixel(sx, sy)
                })),)*
                other => {
                    let buf = other.to_rgba32f();
                    DynamicImage::ImageRgba32F(ImageBuffer::from_fn(width, height, |x, y| {
                        let (sx, sy) = pick(x, y);
                        *buf.get_pixel(sx, sy)
                    }))
                }
            }
        };
    }
    gather!(
        ImageLuma8,
        ImageLumaA8,
        ImageRgb8,
        ImageRgba8,
        ImageLuma16,
        ImageLumaA16,
        ImageRgb16,
        ImageRgba16
    )
}
