#![doc = include_str!("../chapters/ch10-explain.md")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::GrayImage;

use crate::data::{
    Label, SynthFile, SynthOptions, batches, consolidation_mask, load_parts, synth_plan,
};
use crate::explain::{Heatmap, Occlusion, grad_cam, input, occlusion_map};
use crate::imaging::XRay;
use crate::metrics::{Proportion, calibration_curve, roc_curve, wilson_interval};
use crate::nn::{Sequential, load_model};
use crate::plot::{Figure, Panel, Series, grid, overlays};
use crate::run::CourseCnn;
use crate::train::Loss;
use crate::{Error, Result};

/// The sensitivity the screening tool must reach: miss at most one pneumonia in twenty.
pub const TARGET_SENSITIVITY: f64 = 0.95;

/// The layer whose maps Grad-CAM weighs: the second block's output, 8 x 8 cells on a
/// 64-pixel image. The last convolutional block (`block4_pool`) has 2 x 2 cells at this
/// size: too coarse to point at anything (the chapter measures both).
pub const GRAD_CAM_LAYER: &str = "block2_pool";

/// The occlusion the chapter uses: 8-pixel squares every 4 pixels, 225 forward passes
/// for a 64-pixel image.
pub fn lesson_occlusion() -> Occlusion {
    Occlusion::new(8, 4)
}

/// A trained model and the generated data it was trained and judged on.
pub struct Lesson {
    /// The tutorial's CNN, trained on generated images.
    pub model: Sequential,
    /// The data set's folder (train/, val/, test/).
    pub data: PathBuf,
    /// How the data set was generated: its plan says where every consolidation is.
    pub options: SynthOptions,
}

impl Lesson {
    /// The course's CNN and its data under `out` ([`CourseCnn::load`]): trained the first
    /// time, read back after.
    pub fn load(out: impl AsRef<Path>) -> Result<Lesson> {
        let cnn = CourseCnn::load(out)?;
        Ok(Lesson {
            model: load_model(cnn.model_path())?,
            data: cnn.data,
            options: cnn.options,
        })
    }

    /// The test part's PNEUMONIA files, as the generator planned them.
    pub fn test_pneumonia(&self) -> Vec<SynthFile> {
        synth_plan(&self.options)
            .into_iter()
            .filter(|f| f.split == "test" && f.label == Label::Pneumonia)
            .collect()
    }

    /// One generated file as the model sees it, with its consolidation mask.
    pub fn case(&self, file: &SynthFile) -> Result<Case> {
        let (xray, image) = input(self.data.join(file.path()), &self.model)?;
        Ok(Case {
            xray,
            image,
            mask: consolidation_mask(file, self.options.size),
        })
    }
}

/// One X-ray to explain: as drawn, as the model's input, and where its consolidations are.
pub struct Case {
    /// The image at the model's size.
    pub xray: XRay,
    /// `(3, S, S)`, the model's input.
    pub image: candle_core::Tensor,
    /// 255 inside a consolidation, 0 elsewhere.
    pub mask: GrayImage,
}

/// Does the map's peak fall inside the consolidation?
pub fn peak_inside(heatmap: &Heatmap, mask: &GrayImage) -> bool {
    let (row, column) = heatmap.peak();
    mask.get_pixel_checked(column as u32, row as u32)
        .is_some_and(|p| p[0] > 0)
}

/// How often each map's peak falls inside a drawn consolidation, over the test part's
/// PNEUMONIA images, against chance: the share of each image the consolidations cover.
#[derive(Debug, Clone, PartialEq)]
pub struct WhereMapsLook {
    /// PNEUMONIA test images with a consolidation to find.
    pub images: usize,
    /// `(layer, share of peaks inside)` for Grad-CAM at each layer asked for.
    pub grad_cam: Vec<(String, f64)>,
    /// Share of occlusion peaks inside.
    pub occlusion: f64,
    /// The mean share of an image inside a consolidation: where a random peak would fall.
    pub chance: f64,
}

/// Checks where the maps look on the first `max_images` PNEUMONIA images of the test
/// part: Grad-CAM at each of `layers`, and occlusion with `occlusion`.
pub fn where_maps_look(
    lesson: &Lesson,
    layers: &[&str],
    occlusion: Occlusion,
    max_images: usize,
) -> Result<WhereMapsLook> {
    let mut hits = vec![0usize; layers.len()];
    let (mut occlusion_hits, mut covered, mut images) = (0usize, 0.0, 0usize);
    for file in lesson.test_pneumonia() {
        if images == max_images {
            break;
        }
        let case = lesson.case(&file)?;
        let inside = case.mask.pixels().filter(|p| p[0] > 0).count();
        if inside == 0 {
            continue; // a consolidation too faint to draw a mask
        }
        images += 1;
        covered += inside as f64 / case.mask.len() as f64;
        for (hit, layer) in hits.iter_mut().zip(layers) {
            let cam = grad_cam(&lesson.model, &case.image, layer, 1)?;
            *hit += usize::from(peak_inside(&cam.heatmap, &case.mask));
        }
        let map = occlusion_map(&lesson.model, &case.image, 1, occlusion)?;
        occlusion_hits += usize::from(peak_inside(&map.heatmap, &case.mask));
    }
    let share = |n: usize| n as f64 / images.max(1) as f64;
    Ok(WhereMapsLook {
        images,
        grad_cam: layers
            .iter()
            .zip(&hits)
            .map(|(l, &h)| (l.to_string(), share(h)))
            .collect(),
        occlusion: share(occlusion_hits),
        chance: covered / images.max(1) as f64,
    })
}

/// Three test images, each as drawn, with Grad-CAM and with occlusion over it.
pub fn explain_figure(lesson: &Lesson, files: &[SynthFile]) -> Result<Figure> {
    let mut cases = Vec::new();
    for file in files {
        let case = lesson.case(file)?;
        let cam = grad_cam(&lesson.model, &case.image, GRAD_CAM_LAYER, 1)?.heatmap;
        let occluded = occlusion_map(&lesson.model, &case.image, 1, lesson_occlusion())?;
        let outlined = outline(&case.xray, &case.mask)?;
        cases.push((outlined, case.xray, cam, occluded.heatmap));
    }
    let mut panels = Vec::new();
    for (outlined, xray, cam, occluded) in &cases {
        panels.push(("drawn consolidation", outlined, None));
        panels.push(("Grad-CAM", xray, Some(cam)));
        panels.push(("occlusion", xray, Some(occluded)));
    }
    overlays(3, &panels, 0.6)
}

/// The X-ray with the mask's border drawn in green.
fn outline(xray: &XRay, mask: &GrayImage) -> Result<XRay> {
    let mut rgb = xray.to_rgb().image().to_rgb8();
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && mask
                .get_pixel_checked(x as u32, y as u32)
                .is_some_and(|p| p[0] > 0)
    };
    for (x, y, pixel) in rgb.enumerate_pixels_mut() {
        let (x, y) = (i64::from(x), i64::from(y));
        let border = inside(x, y)
            && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                .iter()
                .any(|(dx, dy)| !inside(x + dx, y + dy));
        if border {
            *pixel = image::Rgb([0, 220, 0]);
        }
    }
    XRay::from_image(xray.path(), image::DynamicImage::ImageRgb8(rgb))
}

/// The truths and PNEUMONIA probabilities of the model on the validation and test parts.
pub fn validation_and_test_scores(lesson: &Lesson) -> Result<[(Vec<bool>, Vec<f64>); 2]> {
    let size = lesson.options.size as usize;
    let parts = load_parts(&lesson.data, size, lesson.options.seed, false)?;
    let score = |samples| -> Result<(Vec<bool>, Vec<f64>)> {
        let data = batches(Arc::new(samples), 50, None);
        let (mut truths, mut scores) = (Vec::new(), Vec::new());
        for batch in data.iter() {
            let (x, y) = batch?;
            let p = crate::train::predict(&lesson.model, Loss::BinaryCrossentropy, &x)?;
            scores.extend(
                p.flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from),
            );
            truths.extend(
                y.flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(|t| t > 0.5),
            );
        }
        Ok((truths, scores))
    };
    Ok([score(parts.val)?, score(parts.test)?])
}

/// The highest threshold at which at least `target` of the positives score as high or
/// higher: the operating point for a sensitivity, read off the ROC curve.
pub fn pick_threshold(y_true: &[bool], scores: &[f64], target: f64) -> Result<f64> {
    let curve = roc_curve(y_true, scores, false)?;
    curve
        .threshold_for_sensitivity(target)
        .map(|p| p.threshold)
        .ok_or_else(|| {
            Error::BadArgument(format!(
                "no threshold reaches a sensitivity of {target}: is there a positive case?"
            ))
        })
}

/// Sensitivity and specificity at `threshold`, each with its 95% Wilson interval.
pub fn sensitivity_specificity(
    y_true: &[bool],
    scores: &[f64],
    threshold: f64,
) -> Result<(Proportion, Proportion)> {
    let called = |s: f64| s >= threshold;
    let found = y_true
        .iter()
        .zip(scores)
        .filter(|&(&t, &s)| t && called(s))
        .count();
    let cleared = y_true
        .iter()
        .zip(scores)
        .filter(|&(&t, &s)| !t && !called(s))
        .count();
    let positives = y_true.iter().filter(|&&t| t).count();
    Ok((
        wilson_interval(found, positives, 0.95)?,
        wilson_interval(cleared, y_true.len() - positives, 0.95)?,
    ))
}

/// The clinical operating point, chosen honestly and dishonestly.
#[derive(Debug, Clone, PartialEq)]
pub struct ClinicalPoint {
    /// The threshold chosen on the validation part.
    pub threshold: f64,
    /// Sensitivity on the test part at that threshold.
    pub sensitivity: Proportion,
    /// Specificity on the test part at that threshold.
    pub specificity: Proportion,
    /// The threshold chosen on the test part itself.
    pub test_threshold: f64,
    /// Sensitivity on the test part at the threshold chosen on it: the target met by
    /// construction, a promise no new patient is bound by.
    pub test_sensitivity: Proportion,
    /// Specificity at that threshold.
    pub test_specificity: Proportion,
}

/// Chooses the threshold for `target` sensitivity on the validation scores and reports
/// the test scores at it, beside the threshold chosen on the test scores themselves.
pub fn clinical_point(
    validation: &(Vec<bool>, Vec<f64>),
    test: &(Vec<bool>, Vec<f64>),
    target: f64,
) -> Result<ClinicalPoint> {
    let threshold = pick_threshold(&validation.0, &validation.1, target)?;
    let (sensitivity, specificity) = sensitivity_specificity(&test.0, &test.1, threshold)?;
    let test_threshold = pick_threshold(&test.0, &test.1, target)?;
    let (test_sensitivity, test_specificity) =
        sensitivity_specificity(&test.0, &test.1, test_threshold)?;
    Ok(ClinicalPoint {
        threshold,
        sensitivity,
        specificity,
        test_threshold,
        test_sensitivity,
        test_specificity,
    })
}

/// The reliability diagram of the test scores (10 bins): the share of PNEUMONIA in each
/// bin against the bin's mean score, the diagonal of a calibrated model, and the
/// expected calibration error in the title.
pub fn reliability_figure(test: &(Vec<bool>, Vec<f64>), title: &str) -> Result<Figure> {
    let curve = calibration_curve(&test.0, &test.1, 10)?;
    let caption = format!("{title}: ECE {:.3}", curve.expected_calibration_error());
    let series = [
        Series {
            label: "perfectly calibrated",
            color: "gray",
            x: &[0.0, 1.0],
            y: &[0.0, 1.0],
        },
        Series {
            label: "model",
            color: "tab:blue",
            x: &curve.prob_pred,
            y: &curve.prob_true,
        },
    ];
    grid(
        1,
        &[Panel::Curves {
            title: &caption,
            axes: ("mean predicted probability", "share PNEUMONIA"),
            series: &series,
            diagonal: false,
            marks: &[],
        }],
    )
}

/// A real X-ray of the bundled validation split with the chapter's maps over it, titled
/// with what the model was trained on.
pub fn real_xray_figure(lesson: &Lesson, path: impl AsRef<Path>) -> Result<Figure> {
    let (xray, image) = input(path, &lesson.model)?;
    let p = occlusion_map(&lesson.model, &image, 1, lesson_occlusion())?;
    let cam = grad_cam(&lesson.model, &image, GRAD_CAM_LAYER, 1)?.heatmap;
    let title = format!("real X-ray: P(PNEUMONIA) {:.2}", p.probability);
    overlays(
        3,
        &[
            (title.as_str(), &xray, None),
            ("Grad-CAM (GENERATED-trained)", &xray, Some(&cam)),
            ("occlusion (GENERATED-trained)", &xray, Some(&p.heatmap)),
        ],
        0.6,
    )
}

/// How many PNEUMONIA test images the chapter checks its maps on (each costs 225
/// forward passes of occlusion).
pub const CHECKED_IMAGES: usize = 40;

/// The bundled real X-ray the chapter explains.
pub const REAL_XRAY: &str = "data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg";

/// The lesson as `cxr lesson 10` runs it: the model (trained once), where its maps look,
/// the operating point, and the figures.
pub fn run(root: &Path, out: &Path) -> Result<Vec<String>> {
    let lesson = Lesson::load(out)?;
    let mut lines = vec![format!(
        "model: the tutorial's CNN trained on {} GENERATED images of {} x {} (not X-rays), in {}",
        lesson.options.n,
        lesson.options.size,
        lesson.options.size,
        lesson.data.display()
    )];
    let look = where_maps_look(
        &lesson,
        &["block1_pool", GRAD_CAM_LAYER, "block4_pool"],
        lesson_occlusion(),
        CHECKED_IMAGES,
    )?;
    lines.push(format!(
        "peaks inside the drawn consolidation, {} test images: {}, occlusion {:.2}; chance {:.2}",
        look.images,
        look.grad_cam
            .iter()
            .map(|(l, s)| format!("Grad-CAM at {l} {s:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        look.occlusion,
        look.chance
    ));
    let [validation, test] = validation_and_test_scores(&lesson)?;
    let point = clinical_point(&validation, &test, TARGET_SENSITIVITY)?;
    lines.push(format!(
        "threshold {:.3} chosen on validation for sensitivity {TARGET_SENSITIVITY}: on test, sensitivity {}, specificity {}",
        point.threshold, point.sensitivity, point.specificity
    ));
    lines.push(format!(
        "chosen on the test part itself (optimistic): threshold {:.3}, sensitivity {}, specificity {}",
        point.test_threshold, point.test_sensitivity, point.test_specificity
    ));
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let files: Vec<SynthFile> = lesson.test_pneumonia().into_iter().take(3).collect();
    let figures = [
        ("ch10-maps.png", explain_figure(&lesson, &files)?),
        (
            "ch10-real-xray.png",
            real_xray_figure(&lesson, root.join(REAL_XRAY))?,
        ),
        (
            "ch10-reliability.png",
            reliability_figure(&test, "test part, GENERATED images")?,
        ),
    ];
    for (name, figure) in figures {
        let path = out.join(name);
        figure.save(&path)?;
        lines.push(format!("figure: {}", path.display()));
    }
    Ok(lines)
}

/// Grad-CAM and occlusion maps of one X-ray file for a saved model, written as one
/// figure: what `cxr explain` does.
pub fn explain_file(model_path: &Path, image: &Path, out: &Path) -> Result<Vec<String>> {
    let model = load_model(model_path)?;
    // The chapter's layer when the model has it (the tutorial's CNN), else the last one
    // with feature maps.
    let layer = if model.layer_names().contains(&GRAD_CAM_LAYER) {
        GRAD_CAM_LAYER.to_string()
    } else {
        crate::explain::last_conv_layer(&model).ok_or_else(|| {
            Error::BadArgument(format!(
                "{} has no convolutional layer for Grad-CAM; occlusion alone would need one too",
                model_path.display()
            ))
        })?
    };
    let (xray, tensor) = input(image, &model)?;
    let size = model.input_shape().get(1).copied().unwrap_or(0);
    let occlusion = Occlusion::new((size / 8).max(1), (size / 16).max(1));
    let occluded = occlusion_map(&model, &tensor, 1, occlusion)?;
    let cam = grad_cam(&model, &tensor, &layer, 1)?;
    let title = format!("P(PNEUMONIA) {:.3}", occluded.probability);
    let figure = overlays(
        3,
        &[
            (title.as_str(), &xray, None),
            (&format!("Grad-CAM at {layer}"), &xray, Some(&cam.heatmap)),
            ("occlusion", &xray, Some(&occluded.heatmap)),
        ],
        0.6,
    )?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let stem = image
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned());
    let path = out.join(format!("{stem}-explained.png"));
    figure.save(&path)?;
    Ok(vec![
        format!(
            "{}: P(PNEUMONIA) {:.3}; Grad-CAM at {layer}, occlusion with {} forward passes",
            image.display(),
            occluded.probability,
            occluded.passes
        ),
        format!("figure: {}", path.display()),
    ])
}
