//! The one way an image file's bytes become pixels in cxr: from a file, a TFRecord, the
//! generator or `cxr predict`, every image passes the same guards.
//!
//! - the format is named for what the bytes are (a GIF called `.jpeg` is a GIF), and only
//!   JPEG and PNG go on;
//! - the size from the header is checked before any pixel is decoded (no empty image, no
//!   decompression bomb);
//! - the stream must be complete: a JPEG ends with its end-of-image marker, a PNG with
//!   its `IEND` chunk (Rust decoders may otherwise fill a cut-off image with grey);
//! - JPEGs are decoded strictly: corrupt entropy-coded data is an error, as Pillow's
//!   "broken data stream" is, not an image with a smear in it; PNG chunks' checksums are
//!   checked.
//!
//! A damaged image is an error that names it; no reader guesses.

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};

use super::LoadOptions;
use crate::{Error, Result};

/// What the first bytes of a file say it is.
pub fn sniff(bytes: &[u8]) -> std::result::Result<ImageFormat, String> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    let what = if starts(b"GIF87a") || starts(b"GIF89a") {
        "a GIF image"
    } else if starts(b"BM") {
        "a BMP image"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "a TIFF image"
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "a WebP image"
    } else if bytes.len() > 132 && &bytes[128..132] == b"DICM" {
        "a DICOM file (export it as PNG or JPEG first)"
    } else if bytes.is_empty() {
        "an empty file"
    } else {
        "neither JPEG nor PNG (its first bytes say so)"
    };
    Err(what.to_string())
}

/// Whether the stream reaches its end: a JPEG's end-of-image marker, a PNG's `IEND`
/// chunk. Zero bytes after the end (some scanners pad) are tolerated.
pub fn ends_complete(tail: &[u8], format: ImageFormat) -> bool {
    let end = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let tail = &tail[..end];
    match format {
        ImageFormat::Jpeg => tail.ends_with(&[0xFF, 0xD9]),
        ImageFormat::Png => tail.ends_with(&[0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]),
        _ => true,
    }
}

/// The width, height and format a file's header claims, checked against the guards
/// that need no decoding (format, size, a complete stream).
pub fn check_header(
    bytes: &[u8],
    origin: &Path,
    options: LoadOptions,
) -> Result<(u32, u32, ImageFormat)> {
    let format = sniff(bytes).map_err(|what| Error::NotAnImage {
        path: origin.into(),
        detail: format!("it is {what}"),
    })?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| decode_error(origin, e))?;
    check_size(origin, width, height, options)?;
    if !ends_complete(&bytes[bytes.len().saturating_sub(4096)..], format) {
        return Err(Error::CorruptImage {
            path: origin.into(),
            detail: match format {
                ImageFormat::Png => "the PNG ends before its IEND chunk: the file is cut short",
                _ => "the JPEG ends before its end-of-image marker: the file is cut short",
            }
            .into(),
        });
    }
    Ok((width, height, format))
}

/// Refuses empty images and images over the pixel limit.
pub fn check_size(origin: &Path, width: u32, height: u32, options: LoadOptions) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Error::EmptyImage {
            path: origin.into(),
            width,
            height,
        });
    }
    if pixels > options.max_pixels {
        return Err(Error::TooLarge {
            path: origin.into(),
            width,
            height,
            pixels,
            limit: options.max_pixels,
        });
    }
    Ok(())
}

/// Decodes a JPEG or PNG file's bytes after every guard above; `origin` names it in
/// errors (a file's path, or `images.tfrec record 12`).
pub fn decode(bytes: &[u8], origin: &Path, options: LoadOptions) -> Result<DynamicImage> {
    let (_, _, format) = check_header(bytes, origin, options)?;
    match format {
        ImageFormat::Jpeg => decode_jpeg_strict(bytes, origin),
        _ => {
            image::load_from_memory_with_format(bytes, format).map_err(|e| decode_error(origin, e))
        }
    }
}

/// zune-jpeg in strict mode: a corrupt Huffman stream or a marker where data should be
/// is an error (the `image` crate decodes leniently and would hand back a smeared image).
fn decode_jpeg_strict(bytes: &[u8], origin: &Path) -> Result<DynamicImage> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;

    let corrupt = |e: &dyn std::fmt::Display| Error::CorruptImage {
        path: origin.into(),
        detail: format!("the JPEG data is broken ({e})"),
    };
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| corrupt(&e))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| corrupt(&"no frame header"))?;
    let gray = matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::Luma | ColorSpace::LumaA)
    );
    let out = if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(|e| corrupt(&e))?;
    let (w, h) = (width as u32, height as u32);
    let image = if gray {
        GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| corrupt(&"fewer pixels than the header promised"))
}

/// An `image` crate error as cxr's, naming the file.
pub(crate) fn decode_error(path: &Path, err: image::ImageError) -> Error {
    use image::ImageError as E;
    match err {
        E::Unsupported(e) => Error::NotAnImage {
            path: path.into(),
            detail: e.to_string(),
        },
        E::Limits(e) => Error::CorruptImage {
            path: path.into(),
            detail: format!("it asks for more memory than allowed: {e}"),
        },
        E::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Error::CorruptImage {
            path: path.into(),
            detail: "the file ends too early".into(),
        },
        E::IoError(e) => Error::io(path, e),
        other => Error::CorruptImage {
            path: path.into(),
            detail: other.to_string(),
        },
    }
}
