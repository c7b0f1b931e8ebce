//! Keras's `ImageDataGenerator` and `flow_from_directory` (introduced in chapter 3).
//!
//! A generator describes random changes (flips, rotations, shifts, zooms) and a rescale;
//! `flow_from_directory` reads a class-per-folder tree and yields batches of changed
//! images as tensors. Each image gets its own random stream, derived from the seed, the
//! epoch and its position, so a run is the same for a seed however it is batched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Pipeline;
use crate::imaging::{FillMode, Filter, FloatImage, XRay, affine_transform, keras_transform};
use crate::{Error, Result};

/// Random augmentation and rescaling, with Keras's names and meanings.
///
/// ```
/// use cxr::data::ImageDataGenerator;
/// let train = ImageDataGenerator::new().rescale(1.0 / 255.0).horizontal_flip(true).rotation_range(10.0);
/// let test = ImageDataGenerator::new().rescale(1.0 / 255.0);
/// # let _ = (train, test);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImageDataGenerator {
    /// Multiplies every value after the random changes (Keras's `rescale`; `None` leaves them).
    pub rescale: Option<f32>,
    /// Rotations drawn uniformly from `-range..range` degrees.
    pub rotation_range: f32,
    /// Shifts left or right by up to this fraction of the width (or pixels, if 1 or more).
    pub width_shift_range: f32,
    /// Shifts up or down by up to this fraction of the height (or pixels, if 1 or more).
    pub height_shift_range: f32,
    /// Zoom factors drawn from `low..high` for rows and columns separately; above 1 zooms out.
    pub zoom_range: (f32, f32),
    /// Mirrors left and right with probability 1/2.
    pub horizontal_flip: bool,
    /// Mirrors top and bottom with probability 1/2.
    pub vertical_flip: bool,
    /// What fills the pixels that a rotation, shift or zoom uncovers.
    pub fill_mode: FillMode,
}

/// The changes drawn for one image, Keras's `get_random_transform` dictionary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Rotation in degrees.
    pub theta: f64,
    /// Shift in rows.
    pub tx: f64,
    /// Shift in columns.
    pub ty: f64,
    /// Zoom of rows.
    pub zx: f64,
    /// Zoom of columns.
    pub zy: f64,
    /// Mirror left and right.
    pub flip_horizontal: bool,
    /// Mirror top and bottom.
    pub flip_vertical: bool,
}

impl ImageDataGenerator {
    /// A generator that changes nothing: `ImageDataGenerator()`.
    pub fn new() -> Self {
        Self {
            zoom_range: (1.0, 1.0),
            ..Default::default()
        }
    }

    /// `rescale=factor`, e.g. `1.0 / 255.0`.
    pub fn rescale(mut self, factor: f32) -> Self {
        self.rescale = Some(factor);
        self
    }

    /// `rotation_range=degrees`.
    pub fn rotation_range(mut self, degrees: f32) -> Self {
        self.rotation_range = degrees;
        self
    }

    /// `width_shift_range=fraction`.
    pub fn width_shift_range(mut self, fraction: f32) -> Self {
        self.width_shift_range = fraction;
        self
    }

    /// `height_shift_range=fraction`.
    pub fn height_shift_range(mut self, fraction: f32) -> Self {
        self.height_shift_range = fraction;
        self
    }

    /// `zoom_range=z`: factors from `1 - z` to `1 + z`.
    pub fn zoom_range(mut self, z: f32) -> Self {
        self.zoom_range = (1.0 - z, 1.0 + z);
        self
    }

    /// `horizontal_flip=on`.
    pub fn horizontal_flip(mut self, on: bool) -> Self {
        self.horizontal_flip = on;
        self
    }

    /// `vertical_flip=on`.
    pub fn vertical_flip(mut self, on: bool) -> Self {
        self.vertical_flip = on;
        self
    }

    /// `fill_mode=mode`.
    pub fn fill_mode(mut self, mode: FillMode) -> Self {
        self.fill_mode = mode;
        self
    }

    /// Draws the changes for one `height` x `width` image, in Keras's order.
    pub fn random_transform_params(
        &self,
        height: usize,
        width: usize,
        rng: &mut impl Rng,
    ) -> Transform {
        let mut uniform = |range: f32| -> f64 {
            if range > 0.0 {
                rng.random_range(-f64::from(range)..f64::from(range))
            } else {
                0.0
            }
        };
        let theta = uniform(self.rotation_range);
        let to_pixels = |shift: f64, range: f32, size: usize| {
            if range < 1.0 {
                shift * size as f64
            } else {
                shift
            }
        };
        let tx = to_pixels(
            uniform(self.height_shift_range),
            self.height_shift_range,
            height,
        );
        let ty = to_pixels(
            uniform(self.width_shift_range),
            self.width_shift_range,
            width,
        );
        let (low, high) = (f64::from(self.zoom_range.0), f64::from(self.zoom_range.1));
        let (zx, zy) = if low == 1.0 && high == 1.0 {
            (1.0, 1.0)
        } else {
            (rng.random_range(low..=high), rng.random_range(low..=high))
        };
        let flip_horizontal = self.horizontal_flip && rng.random::<f64>() < 0.5;
        let flip_vertical = self.vertical_flip && rng.random::<f64>() < 0.5;
        Transform {
            theta,
            tx,
            ty,
            zx,
            zy,
            flip_horizontal,
            flip_vertical,
        }
    }

    /// Applies drawn changes: the affine warp first, then the flips, as Keras does.
    pub fn apply_transform(&self, image: &FloatImage, t: &Transform) -> FloatImage {
        let warped = if t.theta == 0.0 && t.tx == 0.0 && t.ty == 0.0 && t.zx == 1.0 && t.zy == 1.0 {
            image.clone()
        } else {
            let matrix =
                keras_transform(t.theta, t.tx, t.ty, t.zx, t.zy, image.height, image.width);
            affine_transform(image, &matrix, self.fill_mode)
        };
        let flipped = if t.flip_horizontal {
            warped.flip_horizontal()
        } else {
            warped
        };
        if t.flip_vertical {
            flipped.flip_vertical()
        } else {
            flipped
        }
    }

    /// Draws and applies random changes to one image.
    pub fn random_transform(&self, image: &FloatImage, rng: &mut impl Rng) -> FloatImage {
        let t = self.random_transform_params(image.height, image.width, rng);
        self.apply_transform(image, &t)
    }

    /// Applies the rescale (Keras's `standardize`).
    pub fn standardize(&self, image: &mut FloatImage) {
        if let Some(factor) = self.rescale {
            image.scale(factor);
        }
    }

    /// Reads a class-per-folder tree, like Keras's `flow_from_directory`: every
    /// sub-folder of `directory` is a class, numbered in alphabetical order.
    pub fn flow_from_directory(
        &self,
        directory: impl AsRef<Path>,
        options: FlowOptions,
    ) -> Result<DirectoryIterator> {
        DirectoryIterator::new(*self, directory.as_ref(), options)
    }
}

/// How labels are given, Keras's `class_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassMode {
    /// One `f32` per image, 0 or 1: for two classes and a sigmoid output.
    #[default]
    Binary,
    /// One-hot rows: for a softmax output over any number of classes.
    Categorical,
    /// The class index as `f32`.
    Sparse,
}

/// Colour channels of the batches, Keras's `color_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// Three channels (a gray X-ray is repeated), Keras's default.
    #[default]
    Rgb,
    /// One channel.
    Grayscale,
}

/// The arguments of `flow_from_directory`, with Keras's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowOptions {
    /// `(height, width)` every image is resized to. Keras's order, not Pillow's!
    pub target_size: (usize, usize),
    /// Images per batch.
    pub batch_size: usize,
    /// How labels are given.
    pub class_mode: ClassMode,
    /// Channels of the images.
    pub color_mode: ColorMode,
    /// Visit the images in a new random order each epoch.
    pub shuffle: bool,
    /// Seed for the order and the random changes.
    pub seed: u64,
    /// Filter used to reach `target_size`; Keras's `load_img` uses nearest neighbour.
    pub interpolation: Filter,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            target_size: (256, 256),
            batch_size: 32,
            class_mode: ClassMode::Binary,
            color_mode: ColorMode::Rgb,
            shuffle: true,
            seed: 0,
            interpolation: Filter::Nearest,
        }
    }
}

/// One batch as Keras's iterator gives it: images `(batch, height, width, channels)`,
/// labels, and the files they came from.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// The images, `f32`, channels last as in Keras.
    pub x: Tensor,
    /// The labels as [`ClassMode`] says.
    pub y: Tensor,
    /// The files the images came from.
    pub paths: Vec<PathBuf>,
}

impl ImageBatch {
    /// The images as `(batch, channels, height, width)`, the order candle's convolutions take.
    pub fn x_channels_first(&self) -> Result<Tensor> {
        Ok(self.x.permute((0, 3, 1, 2))?.contiguous()?)
    }
}

/// The images of a class-per-folder tree, served in batches (Keras's `DirectoryIterator`).
#[derive(Debug, Clone)]
pub struct DirectoryIterator {
    generator: ImageDataGenerator,
    options: FlowOptions,
    class_indices: BTreeMap<String, usize>,
    files: Vec<(PathBuf, usize)>,
}

impl DirectoryIterator {
    fn new(generator: ImageDataGenerator, directory: &Path, options: FlowOptions) -> Result<Self> {
        if options.batch_size == 0 || options.target_size.0 == 0 || options.target_size.1 == 0 {
            return Err(Error::BadArgument(format!(
                "flow_from_directory needs a batch size and a target size of at least 1, got {} and {:?}",
                options.batch_size, options.target_size
            )));
        }
        let mut classes: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(directory).map_err(|e| Error::io(directory, e))? {
            let entry = entry.map_err(|e| Error::io(directory, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                classes.push((name, entry.path()));
            }
        }
        classes.sort();
        let class_indices: BTreeMap<String, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let mut files = Vec::new();
        for (index, (_, folder)) in classes.iter().enumerate() {
            let mut found = Vec::new();
            super::folder::walk(folder, &mut found)?;
            found.sort();
            files.extend(found.into_iter().map(|p| (p, index)));
        }
        if files.is_empty() {
            return Err(Error::EmptyFolder {
                folder: directory.into(),
            });
        }
        Ok(Self {
            generator,
            options,
            class_indices,
            files,
        })
    }

    /// Class name to index, alphabetical: `{"NORMAL": 0, "PNEUMONIA": 1}`.
    pub fn class_indices(&self) -> &BTreeMap<String, usize> {
        &self.class_indices
    }

    /// Every image and its class index, in folder order.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }

    /// How many images there are.
    pub fn samples(&self) -> usize {
        self.files.len()
    }

    /// Batches per epoch (the last one may be smaller), Keras's `len(iterator)`.
    pub fn len(&self) -> usize {
        self.files.len().div_ceil(self.options.batch_size)
    }

    /// Never true: an empty folder is refused when the iterator is made.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The generator whose changes it applies.
    pub fn generator(&self) -> &ImageDataGenerator {
        &self.generator
    }

    /// The options it was made with.
    pub fn options(&self) -> &FlowOptions {
        &self.options
    }

    /// The order in which epoch `epoch` visits the images.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        if self.options.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.options.seed,
                epoch,
                u64::MAX,
            )));
        }
        order
    }

    /// Batch `index` of epoch `epoch`: loaded, resized, changed at random, rescaled.
    pub fn batch(&self, epoch: u64, index: usize) -> Result<ImageBatch> {
        let order = self.order(epoch);
        let size = self.options.batch_size;
        let chosen = order
            .get(index * size..((index + 1) * size).min(order.len()))
            .unwrap_or(&[]);
        if chosen.is_empty() {
            return Err(Error::BadArgument(format!(
                "batch {index} does not exist: an epoch has {} batches",
                self.len()
            )));
        }
        let (height, width) = self.options.target_size;
        let mut images = Vec::with_capacity(chosen.len() * height * width * 3);
        let mut labels = Vec::with_capacity(chosen.len());
        let mut paths = Vec::with_capacity(chosen.len());
        for &position in chosen {
            let (path, class) = &self.files[position];
            let image = self.load(path)?;
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.options.seed, epoch, position as u64));
            let mut changed = self.generator.random_transform(&image, &mut rng);
            self.generator.standardize(&mut changed);
            images.extend_from_slice(&changed.data);
            labels.push(*class);
            paths.push(path.clone());
        }
        let channels = match self.options.color_mode {
            ColorMode::Rgb => 3,
            ColorMode::Grayscale => 1,
        };
        let x = Tensor::from_vec(
            images,
            (chosen.len(), height, width, channels),
            &Device::Cpu,
        )?;
        let y = self.labels(&labels)?;
        Ok(ImageBatch { x, y, paths })
    }

    /// The batches as a [`Pipeline`] that `fit` takes, as Keras's `fit` takes the iterator:
    /// images channels first `(N, C, H, W)`, labels as `class_mode` says. Each pass is
    /// the next epoch (a new order and new random changes); batches are made on a
    /// background thread while the model trains on the previous one.
    pub fn pipeline(&self) -> Pipeline<super::Batch> {
        let this = self.clone();
        let epochs = Arc::new(AtomicU64::new(0));
        Pipeline::from_fn(move || {
            let epoch = epochs.fetch_add(1, Ordering::Relaxed);
            let it = this.clone();
            Box::new((0..it.len()).map(move |i| {
                let batch = it.batch(epoch, i)?;
                Ok((batch.x_channels_first()?, batch.y))
            }))
        })
        .prefetch(2)
    }

    /// Every batch of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Result<ImageBatch>> + '_ {
        (0..self.len()).map(move |i| self.batch(epoch, i))
    }

    fn load(&self, path: &Path) -> Result<FloatImage> {
        let xray = XRay::open(path)?;
        let xray = match self.options.color_mode {
            ColorMode::Rgb => xray.to_rgb(),
            ColorMode::Grayscale => xray.to_gray(),
        };
        let (height, width) = self.options.target_size;
        let resized =
            xray.resize_with((width as u32, height as u32), self.options.interpolation)?;
        Ok(FloatImage::from_xray(&resized))
    }

    fn labels(&self, classes: &[usize]) -> Result<Tensor> {
        let n = classes.len();
        Ok(match self.options.class_mode {
            ClassMode::Binary | ClassMode::Sparse => {
                Tensor::from_iter(classes.iter().map(|&c| c as f32), &Device::Cpu)?
            }
            ClassMode::Categorical => {
                let k = self.class_indices.len();
                let mut one_hot = vec![0f32; n * k];
                for (row, &c) in classes.iter().enumerate() {
                    one_hot[row * k + c] = 1.0;
                }
                Tensor::from_vec(one_hot, (n, k), &Device::Cpu)?
            }
        }
        .to_dtype(DType::F32)?)
    }
}

/// One 64-bit seed from three numbers (SplitMix64 steps), so that neighbouring epochs
/// and positions get unrelated random streams.
fn mix(seed: u64, epoch: u64, position: u64) -> u64 {
    let step = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    step(step(step(seed) ^ epoch) ^ position)
}
