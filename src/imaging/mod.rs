//! Reading X-rays from disk and turning them into pixels and tensors (introduced in chapter 1).
//!
//! An [`XRay`] is a decoded image that remembers the file it came from and its size on
//! disk, so that every later step (resize, tensor, figure) can still say which file it is.

mod affine;
mod decode;
mod histogram;
mod resize;
mod tf_resize;

pub use affine::{
    FillMode, FloatImage, IDENTITY, Matrix, affine_transform, keras_transform, matmul,
};
pub use decode::{check_header, check_size, decode, ends_complete, sniff};
pub use histogram::{Histogram, Mask, bitwise_and, calc_hist};
pub use resize::{Filter, resize};
pub use tf_resize::resize_bilinear_tf;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, ImageFormat};

use crate::{Error, Result};

/// Pillow refuses images over twice its `MAX_IMAGE_PIXELS` (89,478,485) as decompression
/// bombs; cxr uses the same number so a file Pillow opens, cxr opens too.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// How to open an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Width times height above which the file is refused before it is decoded.
    pub max_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// What a pixel holds, named as Pillow names its modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 8-bit grayscale, Pillow's `"L"`: what the Kermany X-rays are.
    L,
    /// 16-bit grayscale, Pillow's `"I;16"`: common in DICOM exports.
    I16,
    /// 8-bit colour, Pillow's `"RGB"`.
    Rgb,
    /// 16-bit colour (Pillow has no such mode; it would convert).
    Rgb16,
}

impl Mode {
    /// Colour channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            Mode::L | Mode::I16 => 1,
            Mode::Rgb | Mode::Rgb16 => 3,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::L => "L",
            Mode::I16 => "I;16",
            Mode::Rgb => "RGB",
            Mode::Rgb16 => "RGB;16",
        })
    }
}

/// Where the channel axis goes in a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `(height, width, channels)`: NumPy's and Keras's order.
    Hwc,
    /// `(channels, height, width)`: PyTorch's and candle's convolution order.
    Chw,
}

/// A decoded X-ray and the file it came from.
#[derive(Clone)]
pub struct XRay {
    path: PathBuf,
    original_size: (u32, u32),
    image: DynamicImage,
}

impl XRay {
    /// Opens a JPEG or PNG file, refusing anything over [`DEFAULT_MAX_PIXELS`].
    ///
    /// The EXIF orientation tag is ignored, as Pillow's `Image.open` ignores it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, LoadOptions::default())
    }

    /// Opens a file with explicit [`LoadOptions`], through the guarded [`decode`].
    pub fn open_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        Self::from_image(path, decode(&bytes, path, options)?)
    }

    /// Decodes an image file's bytes (from a TFRecord, say) through the guarded
    /// [`decode`]; `origin` names it in errors.
    pub fn from_bytes(
        bytes: &[u8],
        origin: impl AsRef<Path>,
        options: LoadOptions,
    ) -> Result<Self> {
        let origin = origin.as_ref();
        Self::from_image(origin, decode(bytes, origin, options)?)
    }

    /// Wraps an image that is already in memory; `path` is only used in messages and titles.
    pub fn from_image(path: impl Into<PathBuf>, image: DynamicImage) -> Result<Self> {
        let path = path.into();
        let image = match image {
            DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageRgb8(_)
            | DynamicImage::ImageRgb16(_) => image,
            // An alpha channel carries nothing in a radiograph: drop it, as `convert("RGB")` would.
            DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(image.to_luma8()),
            DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma16(image.to_luma16()),
            DynamicImage::ImageRgba8(_) => DynamicImage::ImageRgb8(image.to_rgb8()),
            DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgb16(image.to_rgb16()),
            other => {
                return Err(Error::UnsupportedMode {
                    path,
                    mode: format!("{:?}", other.color()),
                });
            }
        };
        let original_size = (image.width(), image.height());
        Ok(Self {
            path,
            original_size,
            image,
        })
    }

    /// Wraps an image whose mode is already one of [`Mode`]'s.
    pub(crate) fn from_parts(path: impl Into<PathBuf>, image: DynamicImage) -> Self {
        let original_size = (image.width(), image.height());
        Self {
            path: path.into(),
            original_size,
            image,
        }
    }

    /// The same X-ray, remembering `size` as the size on disk.
    pub(crate) fn with_original_size(mut self, size: (u32, u32)) -> Self {
        self.original_size = size;
        self
    }

    /// The file this X-ray was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(width, height)` now, in Pillow's order (`img.size`).
    pub fn size(&self) -> (u32, u32) {
        (self.image.width(), self.image.height())
    }

    /// `(width, height)` of the file on disk, kept through every resize.
    pub fn original_size(&self) -> (u32, u32) {
        self.original_size
    }

    /// What a pixel holds.
    pub fn mode(&self) -> Mode {
        match self.image {
            DynamicImage::ImageLuma16(_) => Mode::I16,
            DynamicImage::ImageRgb8(_) => Mode::Rgb,
            DynamicImage::ImageRgb16(_) => Mode::Rgb16,
            _ => Mode::L,
        }
    }

    /// The decoded image, for everything the `image` crate can do with it.
    pub fn image(&self) -> &DynamicImage {
        &self.image
    }

    /// A copy resized to `(width, height)` with Pillow's default filter, [`Filter::Bicubic`].
    pub fn resize(&self, size: (u32, u32)) -> Result<Self> {
        self.resize_with(size, Filter::default())
    }

    /// A copy resized to `(width, height)` with the given filter.
    pub fn resize_with(&self, size: (u32, u32), filter: Filter) -> Result<Self> {
        Ok(Self {
            path: self.path.clone(),
            original_size: self.original_size,
            image: resize(&self.image, size, filter)?,
        })
    }

    /// A copy at half the width and height (rounded down, at least one pixel).
    pub fn halve(&self) -> Result<Self> {
        let (w, h) = self.size();
        self.resize(((w / 2).max(1), (h / 2).max(1)))
    }

    /// A mirror image, left and right swapped (`cv2.flip(img, 1)`, Keras's
    /// `horizontal_flip`).
    pub fn fliplr(&self) -> Self {
        self.with_image(self.image.fliph())
    }

    /// Upside down (`cv2.flip(img, 0)`, Keras's `vertical_flip`).
    pub fn flipud(&self) -> Self {
        self.with_image(self.image.flipv())
    }

    /// An 8-bit grayscale copy (16-bit values are scaled down, colour is weighted as Pillow's `convert("L")`).
    pub fn to_gray(&self) -> Self {
        self.with_image(DynamicImage::ImageLuma8(self.image.to_luma8()))
    }

    /// An 8-bit RGB copy; a gray X-ray gets three equal channels, as Keras's `color_mode="rgb"`.
    pub fn to_rgb(&self) -> Self {
        self.with_image(DynamicImage::ImageRgb8(self.image.to_rgb8()))
    }

    fn with_image(&self, image: DynamicImage) -> Self {
        Self {
            path: self.path.clone(),
            original_size: self.original_size,
            image,
        }
    }

    /// The pixels as a tensor in the given layout.
    ///
    /// `DType::U8` keeps 8-bit values as they are; `DType::F32` gives the raw values
    /// (0..=255, or 0..=65535 for 16-bit images), like `np.asarray(img, dtype=np.float32)`:
    /// rescaling to 0..1 is a separate step (chapter 3).
    pub fn to_tensor(&self, layout: Layout, dtype: DType, device: &Device) -> Result<Tensor> {
        let (w, h) = self.size();
        let (w, h, c) = (w as usize, h as usize, self.mode().channels());
        // 8-bit pixels go in as they are; anything else goes through f32, exact for every
        // 8- and 16-bit value.
        let hwc = match (&self.image, dtype) {
            (DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_), DType::U8) => {
                Tensor::from_slice(self.image.as_bytes(), (h, w, c), device)?
            }
            (_, DType::U8) => {
                return Err(Error::UnsupportedMode {
                    path: self.path.clone(),
                    mode: format!("{} as u8 (it would lose 8 bits)", self.mode()),
                });
            }
            _ => FloatImage::from_xray(self)
                .to_tensor(device)?
                .to_dtype(dtype)?,
        };
        Ok(match layout {
            Layout::Hwc => hwc,
            Layout::Chw => hwc.permute((2, 0, 1))?.contiguous()?,
        })
    }

    /// Writes the X-ray as PNG or JPEG, chosen by the file extension.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        crate::io::create_parent(path)?;
        self.image.save(path).map_err(|e| Error::Io {
            path: path.into(),
            source: std::io::Error::other(e),
        })
    }

    /// Shows the X-ray inline in a Jupyter notebook (the evcxr kernel calls this).
    pub fn evcxr_display(&self) {
        crate::display::show_png(&crate::display::encode_png(&self.image.to_rgb8()));
    }
}

impl std::fmt::Debug for XRay {
    /// Names the file, size and mode: printing millions of pixel values helps nobody.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XRay")
            .field("path", &self.path)
            .field("size", &self.size())
            .field("original_size", &self.original_size)
            .field("mode", &self.mode())
            .finish()
    }
}

/// What a file's header says, read without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

/// Checks a file as far as it can be checked without decoding its pixels: that it is
/// a JPEG or PNG, that its size is neither zero nor over the limit, and that the stream
/// is not cut short.
pub fn probe(path: impl AsRef<Path>, options: LoadOptions) -> Result<ImageInfo> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (width, height, format) = check_header(&bytes, path, options)?;
    Ok(ImageInfo {
        width,
        height,
        format,
    })
}

/// A file's bytes; a folder where a file was expected is named as such.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Err(Error::NotAnImage {
            path: path.into(),
            detail: "it is a folder; give an image file".into(),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
