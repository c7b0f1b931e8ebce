//! Labelled X-rays decoded once, resized, and kept as bytes: what training reads epoch
//! after epoch (chapter 9). Each image goes through the one guarded decode
//! ([`crate::imaging::decode`]) whether it comes from a file or a TFRecord.
//!
//! A gray X-ray is kept as one plane of bytes and becomes the model's three float
//! channels only when a batch is made: at the tutorial's 180 x 180 that is 32 KB an
//! image, about 170 MB for the full 5,232-image training set (three f32 planes would be
//! twelve times that, about 2 GB).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::DynamicImage;
use rayon::prelude::*;

use super::{Batch, Label, Pipeline, Record};
use crate::imaging::{LoadOptions, decode, resize_bilinear_tf};
use crate::{Error, Result};

/// One labelled X-ray, resized to a square, its pixels as bytes, height-width-channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where it came from (a file's path, or the path a TFRecord gives).
    pub path: String,
    /// Its class.
    pub label: Label,
    /// The side of the square, in pixels.
    pub size: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// `size * size * channels` bytes.
    pub pixels: Vec<u8>,
}

/// `tf.image.resize`'s bilinear result for the image's own channels, in 0..=255 as
/// `f32` (height-width-channel).
pub fn resize_tf(image: &DynamicImage, size: usize) -> (Vec<f32>, usize) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    // X-rays are grayscale: resizing their one channel is a third of the work, and
    // repeating it into R, G and B afterwards gives the same numbers.
    if let DynamicImage::ImageLuma8(gray) = image {
        return (
            resize_bilinear_tf(gray.as_raw(), (h, w, 1), (size, size)),
            1,
        );
    }
    let rgb = image.to_rgb8();
    (resize_bilinear_tf(rgb.as_raw(), (h, w, 3), (size, size)), 3)
}

impl Sample {
    /// Decodes an image file's bytes (guarded) and resizes them to `size` x `size` as
    /// `tf.image.resize` does, rounded to bytes (at most half a gray level from
    /// TensorFlow's floats).
    pub fn decode(bytes: &[u8], path: &str, label: Label, size: usize) -> Result<Sample> {
        if size == 0 {
            return Err(Error::BadSize {
                width: 0,
                height: 0,
            });
        }
        let image = decode(bytes, Path::new(path), LoadOptions::default())?;
        let (values, channels) = resize_tf(&image, size);
        Ok(Sample {
            path: path.to_string(),
            label,
            size,
            channels,
            pixels: values
                .into_iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect(),
        })
    }

    /// Reads and decodes a file.
    pub fn open(path: &Path, label: Label, size: usize) -> Result<Sample> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Sample::decode(&bytes, &path.to_string_lossy(), label, size)
    }

    /// The image as three `f32` channels, height-width-channel (the tutorial's
    /// `decode_img` output shape, `(size, size, 3)`).
    pub fn rgb_f32(&self) -> Vec<f32> {
        match self.channels {
            1 => self
                .pixels
                .iter()
                .flat_map(|&v| [f32::from(v); 3])
                .collect(),
            _ => self.pixels.iter().map(|&v| f32::from(v)).collect(),
        }
    }
}

impl Record for Sample {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.path.len() + self.pixels.len());
        out.push(self.label.index() as u8);
        out.push(self.channels as u8);
        out.extend((self.size as u32).to_le_bytes());
        out.extend((self.path.len() as u32).to_le_bytes());
        out.extend(self.path.as_bytes());
        out.extend(&self.pixels);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::BadArgument("a cached image is damaged; delete the cache file".into());
        let u32_at = |b: &[u8]| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize)
        };
        let (&label, rest) = bytes.split_first().ok_or_else(bad)?;
        let (&channels, rest) = rest.split_first().ok_or_else(bad)?;
        let size = u32_at(rest).ok_or_else(bad)?;
        let len = u32_at(&rest[4..]).ok_or_else(bad)?;
        let rest = &rest[8..];
        let (path, pixels) = rest.split_at_checked(len).ok_or_else(bad)?;
        let label = *Label::ALL.get(usize::from(label)).ok_or_else(bad)?;
        let channels = usize::from(channels);
        if pixels.len() != size * size * channels || !matches!(channels, 1 | 3) {
            return Err(bad());
        }
        Ok(Sample {
            path: String::from_utf8(path.to_vec()).map_err(|_| bad())?,
            label,
            size,
            channels,
            pixels: pixels.to_vec(),
        })
    }
}

/// Samples as a batch for a model: images `(N, 3, S, S)` in 0..=255 (channels first, a
/// gray plane repeated into three) and labels `(N, 1)` as 0.0 or 1.0.
pub fn to_batch<S: std::borrow::Borrow<Sample>>(samples: &[S], device: &Device) -> Result<Batch> {
    let samples: Vec<&Sample> = samples.iter().map(|s| s.borrow()).collect();
    let s = samples.first().map_or(0, |x| x.size);
    if samples.iter().any(|x| x.size != s) {
        return Err(Error::BadArgument(
            "a batch mixes images of different sizes; resize every image alike".into(),
        ));
    }
    let plane = s * s;
    let mut pixels: Vec<f32> = Vec::with_capacity(samples.len() * 3 * plane);
    for sample in &samples {
        for c in 0..3 {
            match sample.channels {
                1 => pixels.extend(sample.pixels.iter().map(|&v| f32::from(v))),
                _ => pixels.extend(
                    sample
                        .pixels
                        .iter()
                        .skip(c)
                        .step_by(3)
                        .map(|&v| f32::from(v)),
                ),
            }
        }
    }
    let images = Tensor::from_vec(pixels, (samples.len(), 3, s, s), device)?;
    let labels: Vec<f32> = samples.iter().map(|x| x.label.index() as f32).collect();
    let labels = Tensor::from_vec(labels, (samples.len(), 1), device)?;
    Ok((images, labels))
}

/// What [`decode_all`] decoded, and what it left out.
#[derive(Debug)]
pub struct Decoded {
    /// The images, in the order given.
    pub samples: Vec<Sample>,
    /// Images that could not be decoded, each error naming its file (only when asked to
    /// skip; otherwise the first one is the error).
    pub skipped: Vec<Error>,
}

/// Decodes `sources` (bytes or files, with labels) on every core, with a progress bar
/// on a terminal. A damaged image stops everything with an error naming it, unless
/// `skip_damaged`: then it is left out and listed.
pub fn decode_all(
    sources: Vec<(String, Label, Source)>,
    size: usize,
    skip_damaged: bool,
) -> Result<Decoded> {
    let bar = indicatif::ProgressBar::new(sources.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("decoding [{bar:25}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let results: Vec<Result<Sample>> = sources
        .into_par_iter()
        .map(|(path, label, source)| {
            let sample = match source {
                Source::Bytes(bytes) => Sample::decode(&bytes, &path, label, size),
                Source::File(file) => Sample::open(&file, label, size),
            };
            bar.inc(1);
            sample
        })
        .collect();
    bar.finish_and_clear();
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for result in results {
        match result {
            Ok(s) => samples.push(s),
            Err(e) if skip_damaged && is_damage(&e) => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(Decoded { samples, skipped })
}

/// Whether an error is about one image (left out when skipping), not the run.
fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::CorruptImage { .. }
            | Error::NotAnImage { .. }
            | Error::EmptyImage { .. }
            | Error::TooLarge { .. }
            | Error::UnsupportedMode { .. }
    )
}

/// Where an image's bytes are.
#[derive(Debug, Clone)]
pub enum Source {
    /// Already read (a TFRecord's record).
    Bytes(Vec<u8>),
    /// In a file.
    File(PathBuf),
}

/// Batches of `samples` for training or evaluation: shuffled anew each epoch when
/// `shuffle` gives a seed (a full shuffle), batched, turned into tensors when the
/// batch is made, prefetched.
pub fn batches(
    samples: Arc<Vec<Sample>>,
    batch_size: usize,
    shuffle: Option<u64>,
) -> Pipeline<Batch> {
    let all = samples.len();
    let indices = Pipeline::from_vec((0..all).collect::<Vec<usize>>());
    let indices = match shuffle {
        Some(seed) => indices.shuffle(all.max(1), seed),
        None => indices,
    };
    indices
        .batch(batch_size.max(1), false)
        .map(1, move |batch: Vec<usize>| {
            let chosen: Vec<&Sample> = batch.iter().map(|&i| &samples[i]).collect();
            to_batch(&chosen, &Device::Cpu)
        })
        .prefetch(2)
}
