//! The maps of `cxr::explain` pinned by what they must show: on a model that reads only
//! the top-right quadrant, both maps sit in that quadrant (a map with swapped axes would
//! sit bottom left), occluding what the model ignores changes nothing, Grad-CAM's
//! channel weights equal finite differences, its map is rectified, and every map
//! repeats itself.

use candle_core::{DType, Device, Module, Tensor};
use cxr::explain::{Occlusion, grad_cam, last_conv_layer, occlusion_map};
use cxr::nn::Sequential;
use cxr::nn::layers::{Conv2D, Custom, Dense, Flatten, MaxPool2D};

const SIZE: usize = 16;
const HALF: usize = SIZE / 2;

/// Multiplies the image by a fixed mask: 1 in the top-right quadrant, 0 elsewhere.
struct TopRight(Tensor);

impl Module for TopRight {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.broadcast_mul(&self.0)
    }
}

/// A model that sees only the top-right quadrant: mask, a 1 x 1 convolution with
/// positive weights (the layer Grad-CAM reads), flatten, one logit with positive weights.
fn quadrant_model() -> Sequential {
    let mut model = Sequential::new("quadrant", [3, SIZE, SIZE]).seed(1);
    model
        .add(
            "mask",
            Custom::new("Mask", |input: &[usize], _vb| {
                let mask = Tensor::from_vec(
                    (0..SIZE * SIZE)
                        .map(|i| f32::from(u8::from(i / SIZE < HALF && i % SIZE >= HALF)))
                        .collect::<Vec<f32>>(),
                    (1, 1, SIZE, SIZE),
                    &Device::Cpu,
                )?;
                Ok((TopRight(mask), input.to_vec()))
            }),
        )
        .unwrap();
    model.add("conv", Conv2D::new(2, 1).relu()).unwrap();
    model.add("flatten", Flatten).unwrap();
    model.add("output", Dense::new(1)).unwrap();
    let weights = model.weights().data().lock().unwrap();
    for (name, var) in weights.iter() {
        let value = if name.ends_with("bias") {
            var.zeros_like().unwrap()
        } else {
            (var.ones_like().unwrap() * 0.01).unwrap()
        };
        var.set(&value).unwrap();
    }
    drop(weights);
    model
}

/// A bright square in every quadrant, on a dark background.
fn four_spots() -> Tensor {
    let mut pixels = vec![20f32; 3 * SIZE * SIZE];
    for c in 0..3 {
        for (top, left) in [(2, 2), (2, 10), (10, 2), (10, 10)] {
            for row in top..top + 4 {
                for column in left..left + 4 {
                    pixels[(c * SIZE + row) * SIZE + column] = 230.0;
                }
            }
        }
    }
    Tensor::from_vec(pixels, (3, SIZE, SIZE), &Device::Cpu).unwrap()
}

fn in_top_right((row, column): (usize, usize)) -> bool {
    row < HALF && column >= HALF
}

#[test]
fn occlusion_finds_the_quadrant_the_model_reads_and_nothing_elsewhere() {
    let model = quadrant_model();
    let options = Occlusion::new(4, 2).fill(0.0);
    let map = occlusion_map(&model, &four_spots(), 1, options).unwrap();
    assert_eq!(map.passes, 7 * 7);
    assert_eq!(map.passes, options.passes(SIZE, SIZE));
    assert!(in_top_right(map.heatmap.peak()), "{:?}", map.heatmap.peak());
    assert!(map.heatmap.max() > 0.0);
    // A pixel none of whose squares reached into the quadrant: hiding it changed nothing.
    for ((row, column), &value) in map.heatmap.values.indexed_iter() {
        if row >= HALF + 4 || column < HALF - 4 {
            assert_eq!(
                value, 0.0,
                "pixel ({row}, {column}) is outside what the model reads"
            );
        }
    }
    // For NORMAL the same squares raise the probability: the drops turn negative.
    let normal = occlusion_map(&model, &four_spots(), 0, options).unwrap();
    assert!(normal.heatmap.min() < 0.0);
    assert!((normal.probability + map.probability - 1.0).abs() < 1e-6);
}

#[test]
fn grad_cam_sits_in_the_quadrant_is_rectified_and_repeats_itself() {
    let model = quadrant_model();
    let cam = grad_cam(&model, &four_spots(), "conv", 1).unwrap();
    assert_eq!(cam.heatmap.shape(), (SIZE, SIZE));
    assert!(in_top_right(cam.heatmap.peak()), "{:?}", cam.heatmap.peak());
    assert!(cam.heatmap.share_in(0..HALF, HALF..SIZE) > 0.99);
    assert!(cam.heatmap.min() >= 0.0);
    assert!(cam.channel_weights.iter().all(|&w| w > 0.0));
    // For NORMAL every channel argues against: the rectified map is zero everywhere
    // (without the ReLU it would be the PNEUMONIA map turned negative).
    let normal = grad_cam(&model, &four_spots(), "conv", 0).unwrap();
    assert!(normal.channel_weights.iter().all(|&w| w < 0.0));
    assert!(normal.heatmap.values.iter().all(|&v| v == 0.0));
    assert_eq!(grad_cam(&model, &four_spots(), "conv", 1).unwrap(), cam);
    assert!((cam.logit + normal.logit).abs() < 1e-6);
}

/// A tiny seeded network with a pooling layer after the convolution, random weights.
fn tiny_model() -> Sequential {
    let mut model = Sequential::new("tiny", [3, SIZE, SIZE]).seed(7);
    model
        .add("conv", Conv2D::new(4, 3).relu().padding_same())
        .unwrap();
    model.add("pool", MaxPool2D::new()).unwrap();
    model.add("flatten", Flatten).unwrap();
    model.add("hidden", Dense::new(8).relu()).unwrap();
    model.add("output", Dense::new(3)).unwrap();
    model
}

fn seeded_image(seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f32> = (0..3 * SIZE * SIZE)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    Tensor::from_vec(pixels, (3, SIZE, SIZE), &Device::Cpu).unwrap()
}

#[test]
fn grad_cam_channel_weights_equal_finite_differences() {
    let model = tiny_model();
    let image = seeded_image(3);
    let class = 2;
    let cam = grad_cam(&model, &image, "pool", class).unwrap();
    let activations = model
        .forward_until(&image.unsqueeze(0).unwrap(), "pool")
        .unwrap();
    let (_, channels, h, w) = activations.dims4().unwrap();
    let logit = |a: &Tensor| -> f64 {
        let out = model.forward_from(a, "pool").unwrap();
        out.to_dtype(DType::F64)
            .unwrap()
            .get(0)
            .unwrap()
            .get(class)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let eps = 1e-2;
    for k in 0..channels {
        // Moving all of map k by eps moves the logit by eps times the sum of its
        // gradients: the channel weight is that sum over the map's h * w cells.
        let bump = Tensor::from_vec(
            (0..channels * h * w)
                .map(|i| if i / (h * w) == k { eps as f32 } else { 0.0 })
                .collect::<Vec<f32>>(),
            (1, channels, h, w),
            &Device::Cpu,
        )
        .unwrap();
        let up = logit(&(&activations + &bump).unwrap());
        let down = logit(&(&activations - &bump).unwrap());
        let estimate = (up - down) / (2.0 * eps) / (h * w) as f64;
        let weight = f64::from(cam.channel_weights[k]);
        assert!(
            (estimate - weight).abs() < 1e-3 * (1.0 + weight.abs()),
            "channel {k}: gradient mean {weight}, finite difference {estimate}"
        );
    }
    // The coarse map is the rectified weighted sum of the maps.
    let maps = activations.get(0).unwrap().to_vec3::<f32>().unwrap();
    for ((row, column), &value) in cam.coarse.indexed_iter() {
        let sum: f32 = (0..channels)
            .map(|k| cam.channel_weights[k] * maps[k][row][column])
            .sum();
        assert!((value - sum.max(0.0)).abs() < 1e-5);
    }
    assert_eq!(last_conv_layer(&model).as_deref(), Some("pool"));
}

#[test]
fn the_tutorial_cnn_and_vgg_get_maps_as_large_as_their_images() {
    use cxr::nn::{VggConfig, XrayCnnConfig, vgg, xray_cnn};
    let cnn = xray_cnn(XrayCnnConfig {
        image_size: (32, 32),
        ..Default::default()
    })
    .unwrap();
    let vgg16 = vgg(VggConfig {
        input_size: (32, 32),
        classes: 2,
        width_divisor: 16,
        ..VggConfig::vgg16()
    })
    .unwrap();
    for (model, class) in [(&cnn, 1), (&vgg16, 0)] {
        let layer = last_conv_layer(model).unwrap();
        let image = (seeded_image(5)
            .narrow(1, 0, 16)
            .unwrap()
            .repeat((1, 2, 2))
            .unwrap()
            * 255.0)
            .unwrap();
        let cam = grad_cam(model, &image, &layer, class).unwrap();
        assert_eq!(cam.heatmap.shape(), (32, 32), "{}", model.name());
        assert!(
            cam.heatmap
                .values
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0)
        );
        let occlusion = occlusion_map(model, &image, class, Occlusion::new(8, 8)).unwrap();
        assert_eq!(occlusion.passes, 16);
        assert!((0.0..=1.0).contains(&occlusion.probability));
    }
    // The probability occlusion starts from is the one `predict` gives.
    let image = (seeded_image(5)
        .narrow(1, 0, 16)
        .unwrap()
        .repeat((1, 2, 2))
        .unwrap()
        * 255.0)
        .unwrap();
    let batch = image.unsqueeze(0).unwrap();
    let predicted = cxr::train::predict(&cnn, cxr::train::Loss::BinaryCrossentropy, &batch)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    let occlusion = occlusion_map(&cnn, &image, 1, Occlusion::new(8, 8)).unwrap();
    assert!((predicted - occlusion.probability).abs() < 1e-5);
    // Wrong sizes and layers are refused with what to do.
    let wrong = Tensor::zeros((3, 20, 20), DType::F32, &Device::Cpu).unwrap();
    let error = grad_cam(&cnn, &wrong, "conv1", 1).unwrap_err().to_string();
    assert!(error.contains("resize"), "{error}");
    let image = Tensor::zeros((3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let error = grad_cam(&cnn, &image, "flatten", 1)
        .unwrap_err()
        .to_string();
    assert!(error.contains("convolution"), "{error}");
    let error = grad_cam(&cnn, &image, "no_such_layer", 1)
        .unwrap_err()
        .to_string();
    assert!(error.contains("block4_pool"), "{error}");
    let error = occlusion_map(&cnn, &image, 2, Occlusion::new(8, 8))
        .unwrap_err()
        .to_string();
    assert!(error.contains("class 2"), "{error}");
}

#[test]
fn generated_consolidation_masks_mark_where_the_opacities_were_drawn() {
    use cxr::data::{Label, SynthOptions, consolidation_mask, synth_plan, synth_xray_with_truth};
    use rand::SeedableRng;
    let options = SynthOptions {
        n: 60,
        size: 64,
        ..Default::default()
    };
    let (mut marked, mut brighter) = (0, 0);
    for file in synth_plan(&options) {
        let mask = consolidation_mask(&file, 64);
        let inside: Vec<u32> = mask.pixels().map(|p| u32::from(p[0] > 0)).collect();
        let count: u32 = inside.iter().sum();
        if file.label == Label::Normal {
            assert_eq!(
                count, 0,
                "{}: a NORMAL image has no consolidation",
                file.name
            );
            continue;
        }
        // The mask belongs to the very image written to disk.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(file.seed);
        let (image, again) = synth_xray_with_truth(64, true, &mut rng);
        assert_eq!(again, mask);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(file.seed);
        assert_eq!(cxr::data::synth_xray(64, true, &mut rng), image);
        if count == 0 {
            continue;
        }
        marked += 1;
        // Consolidations are opacities: brighter than the rest of the image's lungs is
        // not guaranteed pixel by pixel, but brighter than the image's mean on the whole.
        let mean = |keep: u32| {
            let values: Vec<f64> = image
                .pixels()
                .zip(&inside)
                .filter(|&(_, &m)| m == keep)
                .map(|(p, _)| f64::from(p[0]))
                .collect();
            values.iter().sum::<f64>() / values.len() as f64
        };
        brighter += usize::from(mean(1) > mean(0));
    }
    assert!(marked >= 30, "{marked} PNEUMONIA images with a mask");
    assert!(
        brighter * 10 >= marked * 9,
        "{brighter} of {marked} masks brighter"
    );
}

#[test]
fn an_overlay_leaves_the_xray_where_the_map_is_zero_and_refuses_a_map_of_another_size() {
    use cxr::explain::Heatmap;
    use cxr::plot::{jet, overlay};
    let xray = cxr::imaging::XRay::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg"
    ))
    .unwrap()
    .resize((32, 32))
    .unwrap();
    let mut values = ndarray::Array2::<f32>::zeros((32, 32));
    values[[3, 20]] = 2.0;
    values[[10, 10]] = -1.0;
    let shown = overlay(&xray, &Heatmap { values }, 1.0).unwrap();
    let gray = xray.to_gray().image().to_luma8();
    let rgb = shown.image().to_rgb8();
    // Row 3, column 20 is the peak: drawn in jet's top colour (x is the column).
    assert_eq!(*rgb.get_pixel(20, 3), jet(1.0));
    for (x, y, pixel) in rgb.enumerate_pixels() {
        if (x, y) != (20, 3) {
            let g = gray.get_pixel(x, y)[0];
            assert_eq!(
                pixel.0,
                [g, g, g],
                "({x}, {y}) changed where the map is 0 or negative"
            );
        }
    }
    let wrong = Heatmap {
        values: ndarray::Array2::zeros((16, 32)),
    };
    let error = overlay(&xray, &wrong, 0.5).unwrap_err().to_string();
    assert!(error.contains("cannot lie over"), "{error}");
    assert_eq!(jet(0.0).0, [0, 0, 128]);
    assert_eq!(jet(1.0).0, [128, 0, 0]);
}

#[test]
fn a_model_that_answers_nan_gets_no_map() {
    // Damaged weights: a map of NaN would still draw as a picture; it is refused.
    let model = quadrant_model();
    for (_, var) in model.weights().data().lock().unwrap().iter() {
        var.set(&(var.ones_like().unwrap() * f64::NAN).unwrap())
            .unwrap();
    }
    let image = four_spots();
    for error in [
        occlusion_map(&model, &image, 1, Occlusion::new(4, 4)).unwrap_err(),
        grad_cam(&model, &image, "conv", 1).unwrap_err(),
    ] {
        assert!(error.to_string().contains("not a number"), "{error}");
    }
    // Settings that cannot cover an image cost nothing, and never panic.
    assert_eq!(Occlusion::new(4, 0).passes(SIZE, SIZE), 169);
    assert_eq!(Occlusion::new(40, 4).passes(SIZE, SIZE), 1);
}
