//! What did the model look at? Occlusion sensitivity and Grad-CAM maps (chapter 10).
//!
//! Both answer "which pixels drove this prediction?" in different ways:
//!
//! - **occlusion** hides one patch of the image at a time and measures how much the
//!   predicted class's probability drops: slow (one forward pass per patch position) but
//!   it asks the model itself, whatever its layers;
//! - **Grad-CAM** (Selvaraju et al., 2017) takes one forward and one backward pass: the
//!   gradient of the class's logit with respect to a convolutional layer's feature maps,
//!   averaged over each map, weighs the maps; their weighted sum, negative parts cut
//!   off, is enlarged to the image. Coarse (the layer's resolution) but cheap.
//!
//! Models are cxr's: they end in logits, one for a binary model (the logit of class 1,
//! PNEUMONIA) or one per class.

use candle_core::{D, DType, Device, ModuleT, Tensor, Var};
use ndarray::Array2;

use crate::data::{Label, Sample, to_batch};
use crate::imaging::{XRay, resize_bilinear_tf};
use crate::nn::Sequential;
use crate::{Error, Result};

/// A map over an image's pixels, `values[[row, column]]`, as large as the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// One value per pixel, rows top to bottom.
    pub values: Array2<f32>,
}

impl Heatmap {
    /// `(rows, columns)`.
    pub fn shape(&self) -> (usize, usize) {
        self.values.dim()
    }

    /// `(row, column)` of the largest value (the first, reading row by row, if tied).
    pub fn peak(&self) -> (usize, usize) {
        let columns = self.values.ncols().max(1);
        let (index, _) =
            self.values
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                });
        (index / columns, index % columns)
    }

    /// The largest value.
    pub fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// The smallest value.
    pub fn min(&self) -> f32 {
        self.values.iter().copied().fold(f32::INFINITY, f32::min)
    }

    /// The sum of the values inside the rectangle `rows` x `columns`, as a share of the
    /// sum of all positive values: how much of the map falls in a region.
    pub fn share_in(&self, rows: std::ops::Range<usize>, columns: std::ops::Range<usize>) -> f32 {
        let positive = |v: &f32| v.max(0.0);
        let total: f32 = self.values.iter().map(positive).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let inside: f32 = self
            .values
            .indexed_iter()
            .filter(|((r, c), _)| rows.contains(r) && columns.contains(c))
            .map(|(_, v)| positive(v))
            .sum();
        inside / total
    }
}

/// How to occlude: a `patch` x `patch` square moved `stride` pixels at a time, filled
/// with `fill` (by default the image's mean, so that the patch adds no edge of its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occlusion {
    /// Side of the square, pixels.
    pub patch: usize,
    /// Step between positions, pixels.
    pub stride: usize,
    /// The value put in the square's pixels (in the model's input scale, 0..=255);
    /// `None`: the image's mean.
    pub fill: Option<f32>,
    /// Occluded copies per forward pass.
    pub batch_size: usize,
}

impl Occlusion {
    /// A `patch`-pixel square moved by `stride`.
    pub fn new(patch: usize, stride: usize) -> Self {
        Self {
            patch,
            stride,
            fill: None,
            batch_size: 32,
        }
    }

    /// Fills the square with `value` instead of the image's mean.
    pub fn fill(mut self, value: f32) -> Self {
        self.fill = Some(value);
        self
    }

    /// The top (or left) edges of the squares along a side of `len` pixels: every
    /// `stride`, and one more flush with the far edge so that every pixel is covered.
    fn starts(&self, len: usize) -> Vec<usize> {
        let last = len.saturating_sub(self.patch);
        let mut starts: Vec<usize> = (0..=last).step_by(self.stride.max(1)).collect();
        if starts.last() != Some(&last) {
            starts.push(last);
        }
        starts
    }

    /// How many forward passes a map of an `height` x `width` image costs.
    pub fn passes(&self, height: usize, width: usize) -> usize {
        self.starts(height).len() * self.starts(width).len()
    }
}

/// An occlusion map and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionMap {
    /// For each pixel, the mean drop of the class's probability over the squares that
    /// covered it: positive where hiding the pixel lowers the model's belief.
    pub heatmap: Heatmap,
    /// The class's probability on the whole image.
    pub probability: f32,
    /// Forward passes of occluded images.
    pub passes: usize,
}

/// The image as the model's one-image batch `(1, C, H, W)`, from `(C, H, W)` or
/// `(1, C, H, W)`.
fn one_image(model: &Sequential, image: &Tensor) -> Result<Tensor> {
    let x = match image.rank() {
        3 => image.unsqueeze(0)?,
        4 if image.dim(0)? == 1 => image.clone(),
        _ => {
            return Err(Error::BadArgument(format!(
                "explain one image at a time, shaped (channels, height, width); got {:?}",
                image.dims()
            )));
        }
    };
    let expected = model.input_shape();
    if x.dims()[1..] != *expected {
        return Err(Error::BadArgument(format!(
            "the model {} takes images of {:?} (channels, height, width), this one is {:?}: \
             resize it to the model's size (cxr::explain::input does)",
            model.name(),
            expected,
            &x.dims()[1..]
        )));
    }
    Ok(x.to_dtype(DType::F32)?.to_device(model.device())?)
}

/// The probability of `class` for each row of logits `(N, k)`: the sigmoid for a
/// one-logit model (class 1 is its positive class), the softmax otherwise.
fn class_probability(logits: &Tensor, class: usize) -> Result<Vec<f32>> {
    let k = logits.dim(D::Minus1)?;
    let logits = logits.to_dtype(DType::F32)?;
    let p = if k == 1 {
        let positive = candle_nn::ops::sigmoid(&logits)?.flatten_all()?;
        match class {
            1 => positive,
            0 => (1.0 - positive)?,
            _ => return Err(no_class(class, 2)),
        }
    } else if class < k {
        candle_nn::ops::softmax(&logits, D::Minus1)?
            .narrow(1, class, 1)?
            .flatten_all()?
    } else {
        return Err(no_class(class, k));
    };
    let p: Vec<f32> = p.to_vec1()?;
    if p.iter().any(|v| !v.is_finite()) {
        return Err(not_finite());
    }
    Ok(p)
}

/// A map of a model that answers NaN would look like a map; it is refused instead.
fn not_finite() -> Error {
    Error::BadArgument(
        "the model's output is not a number (NaN or infinite) for this image: its weights \
         are damaged or it diverged in training; no map is made. Load a checkpoint that \
         predicts normally"
            .into(),
    )
}

fn no_class(class: usize, classes: usize) -> Error {
    Error::BadArgument(format!(
        "class {class} does not exist: the model tells {classes} classes apart, numbered 0 to {}",
        classes - 1
    ))
}

/// Occlusion sensitivity of `model`'s probability for `class` on `image` (`(C, H, W)`,
/// the model's input scale): each square position is one forward pass, run
/// `options.batch_size` at a time (Zeiler and Fergus, 2014; the Kermany paper's maps).
pub fn occlusion_map(
    model: &Sequential,
    image: &Tensor,
    class: usize,
    options: Occlusion,
) -> Result<OcclusionMap> {
    let x = one_image(model, image)?;
    let (_, channels, height, width) = x.dims4()?;
    if options.patch == 0 || options.stride == 0 || options.patch > height.min(width) {
        return Err(Error::BadArgument(format!(
            "an occlusion square must be 1 to {} pixels and move at least 1 pixel; got a \
             patch of {} and a stride of {}",
            height.min(width),
            options.patch,
            options.stride
        )));
    }
    let probability = class_probability(&ModuleT::forward_t(model, &x, false)?, class)?[0];
    let pixels: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let fill = options
        .fill
        .unwrap_or_else(|| pixels.iter().sum::<f32>() / pixels.len() as f32);
    let positions: Vec<(usize, usize)> = options
        .starts(height)
        .into_iter()
        .flat_map(|top| {
            options
                .starts(width)
                .into_iter()
                .map(move |left| (top, left))
        })
        .collect();
    let mut drops = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(options.batch_size.max(1)) {
        let mut batch = Vec::with_capacity(chunk.len() * pixels.len());
        for &(top, left) in chunk {
            let start = batch.len();
            batch.extend_from_slice(&pixels);
            for c in 0..channels {
                for row in top..top + options.patch {
                    let offset = start + (c * height + row) * width + left;
                    batch[offset..offset + options.patch].fill(fill);
                }
            }
        }
        let occluded = Tensor::from_vec(batch, (chunk.len(), channels, height, width), x.device())?;
        let p = class_probability(&ModuleT::forward_t(model, &occluded, false)?, class)?;
        drops.extend(p.into_iter().map(|p| probability - p));
    }
    let mut sum = Array2::<f32>::zeros((height, width));
    let mut count = Array2::<f32>::zeros((height, width));
    for (&(top, left), drop) in positions.iter().zip(drops) {
        let window = ndarray::s![top..top + options.patch, left..left + options.patch];
        sum.slice_mut(window).mapv_inplace(|v| v + drop);
        count.slice_mut(window).mapv_inplace(|v| v + 1.0);
    }
    Ok(OcclusionMap {
        heatmap: Heatmap {
            values: sum / count,
        },
        probability,
        passes: positions.len(),
    })
}

/// A Grad-CAM map and what it was made of.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCam {
    /// The map enlarged to the image (bilinear, as `tf.image.resize`), in the layer's
    /// units: 0 where no feature map argued for the class.
    pub heatmap: Heatmap,
    /// The map at the layer's own resolution, before enlarging.
    pub coarse: Array2<f32>,
    /// One weight per feature map: the mean gradient of the class's logit over it.
    pub channel_weights: Vec<f32>,
    /// The class's logit (for a one-logit model and class 0, minus the logit).
    pub logit: f32,
}

/// Grad-CAM of `class` at the layer named `layer` (a convolution's or pooling's output,
/// `(C, h, w)`): one forward pass to the layer, one from it to the logits, one backward.
pub fn grad_cam(model: &Sequential, image: &Tensor, layer: &str, class: usize) -> Result<GradCam> {
    let x = one_image(model, image)?;
    let (_, _, height, width) = x.dims4()?;
    let activations = model.forward_until(&x, layer)?.detach();
    if activations.rank() != 4 {
        return Err(Error::BadArgument(format!(
            "Grad-CAM needs feature maps (channels, height, width); layer `{layer}` gives {:?}: \
             choose a convolution or pooling layer, usually the last one before flatten",
            &activations.dims()[1..]
        )));
    }
    let activations = Var::from_tensor(&activations)?;
    let logits = model.forward_from(activations.as_tensor(), layer)?;
    let k = logits.dim(D::Minus1)?;
    let logit = match (k, class) {
        (1, 1) => logits.flatten_all()?.get(0)?,
        (1, 0) => logits.flatten_all()?.get(0)?.neg()?,
        (1, _) => return Err(no_class(class, 2)),
        (_, c) if c < k => logits.get(0)?.get(c)?,
        _ => return Err(no_class(class, k)),
    };
    if !logit.to_scalar::<f32>()?.is_finite() {
        return Err(not_finite());
    }
    let gradients = logit.backward()?;
    let maps = activations.as_tensor().get(0)?;
    let gradient = match gradients.get(activations.as_tensor()) {
        Some(g) => g.get(0)?,
        // The logit does not depend on the layer at all: every weight is zero.
        None => maps.zeros_like()?,
    };
    let weights = gradient.mean((1, 2))?;
    let (channels, h, w) = maps.dims3()?;
    let cam = weights
        .reshape((channels, 1, 1))?
        .broadcast_mul(&maps)?
        .sum(0)?
        .relu()?;
    let coarse_values: Vec<f32> = cam.flatten_all()?.to_vec1()?;
    let enlarged = resize_bilinear_tf(&coarse_values, (h, w, 1), (height, width));
    let shape_error = |e: ndarray::ShapeError| Error::BadArgument(e.to_string());
    Ok(GradCam {
        heatmap: Heatmap {
            values: Array2::from_shape_vec((height, width), enlarged).map_err(shape_error)?,
        },
        coarse: Array2::from_shape_vec((h, w), coarse_values).map_err(shape_error)?,
        channel_weights: weights.to_vec1()?,
        logit: logit.to_scalar()?,
    })
}

/// The last layer of `model` whose output is a stack of feature maps: Grad-CAM's usual
/// choice, where the features are the most abstract and still have a place.
pub fn last_conv_layer(model: &Sequential) -> Option<String> {
    let summary = model.summary();
    summary
        .rows
        .iter()
        .rev()
        .find(|row| row.output_shape.len() == 3 && row.output_shape[1] > 1)
        .map(|row| row.name.clone())
}

/// An X-ray file as `model` sees it: decoded (guarded), resized to the model's size as
/// training resized it, and returned both as the image to draw and as `(3, S, S)`.
pub fn input(path: impl AsRef<std::path::Path>, model: &Sequential) -> Result<(XRay, Tensor)> {
    let path = path.as_ref();
    let size = model.input_shape().get(1).copied().unwrap_or(0);
    let sample = Sample::open(path, Label::from_path(&path.to_string_lossy()), size)?;
    let (batch, _) = to_batch(&[&sample], &Device::Cpu)?;
    let gray = image::GrayImage::from_fn(size as u32, size as u32, |x, y| {
        let i = (y as usize * size + x as usize) * sample.channels;
        image::Luma([sample.pixels[i]])
    });
    let xray = XRay::from_image(path, image::DynamicImage::ImageLuma8(gray))?;
    Ok((xray, batch.get(0)?.to_device(model.device())?))
}
