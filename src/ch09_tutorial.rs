#![doc = include_str!("../chapters/ch09-tutorial.md")]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::data::{Label, Pipeline, Sample, Split, SplitOptions, train_val_test_split};
use crate::imaging::{LoadOptions, XRay, decode};
use crate::plot::{Figure, Panel, Series, grid};
use crate::{Error, Result};

pub use crate::data::{count_classes, patient_key as patient_of, zip_tfrecords};
pub use crate::run::{CLASS_NAMES, class_weights, describe_prediction};

/// The tutorial's image size, `[height, width]`.
pub const IMAGE_SIZE: [usize; 2] = [180, 180];

/// Images per batch on one device (the tutorial multiplies it by the replicas).
pub const BATCH_SIZE: usize = 25;

/// The tutorial's shuffle buffer: larger than its 5,232 training images, so a full
/// shuffle.
pub const SHUFFLE_BUFFER: usize = 10_000;

/// The seed of this chapter's shuffles.
pub const SEED: u64 = 9;

/// The tutorial keeps 4,200 of its 5,232 training images for training, the rest for
/// validation.
pub const TUTORIAL_TRAIN: (usize, usize) = (4200, 5232);

/// Decoding workers: the machine's cores (`num_parallel_calls=AUTOTUNE`).
pub fn autotune() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// 1 (PNEUMONIA) when the folder above the file is `PNEUMONIA`, else 0: the tutorial's
/// `get_label`, reading the second-to-last part of the path.
pub fn get_label(file_path: &str) -> u8 {
    Label::from_path(file_path).index() as u8
}

/// The training size the tutorial's split gives for `total` images: 4,200 of 5,232,
/// scaled and rounded.
pub fn train_size(total: usize) -> usize {
    let (take, of) = TUTORIAL_TRAIN;
    (total as f64 * take as f64 / of as f64).round() as usize
}

/// The tutorial's `decode_img`: JPEG to 3 channels (a grayscale X-ray is repeated into
/// R, G and B), resized to 180 x 180 with `tf.image.resize`'s bilinear semantics.
/// Values stay in 0-255 as `f32`, height-width-channel order, exactly TensorFlow's. A
/// damaged JPEG is an error, as in TensorFlow.
pub fn decode_img(img: &[u8]) -> Result<Vec<f32>> {
    let image = decode(img, Path::new("<record>"), LoadOptions::default())?;
    let (values, channels) = crate::data::resize_tf(&image, IMAGE_SIZE[0]);
    Ok(match channels {
        1 => values.into_iter().flat_map(|v| [v; 3]).collect(),
        _ => values,
    })
}

/// The tutorial's `process_path`: label from the path, pixels from the JPEG, resized
/// to 180 x 180 and kept as bytes (see [`Sample`]).
pub fn process_path(image: Vec<u8>, path: String) -> Result<Sample> {
    process_path_sized(image, path, IMAGE_SIZE[0])
}

/// [`process_path`] to `size` x `size` pixels.
pub fn process_path_sized(image: Vec<u8>, path: String, size: usize) -> Result<Sample> {
    let label = Label::from_path(&path);
    Sample::decode(&image, &path, label, size)
}

/// Where [`prepare_for_training`] keeps decoded images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cache {
    /// Decode again every epoch.
    None,
    /// Keep them in memory (`ds.cache()`).
    Memory,
    /// Keep them in a file (`ds.cache(filename)`), for data larger than memory.
    File(PathBuf),
}

/// The tutorial's `prepare_for_training`: cache, batch, prefetch.
pub fn prepare_for_training(ds: Pipeline<Sample>, cache: Cache) -> Pipeline<Vec<Sample>> {
    let ds = match cache {
        Cache::None => ds,
        Cache::Memory => ds.cache(),
        Cache::File(path) => ds.cache_file(path),
    };
    ds.batch(BATCH_SIZE, false).prefetch(2)
}

/// A batch as tensors for a model: images `(N, 3, S, S)` (channels first, as cxr's
/// models take them) in 0-255, labels `(N, 1)` as 0.0 or 1.0.
pub fn batch_tensors(batch: &[Sample], device: &Device) -> Result<(Tensor, Tensor)> {
    crate::data::to_batch(batch, device)
}

/// The tutorial's `show_batch`: up to 25 images of a batch in a 5 x 5 grid, each titled
/// NORMAL or PNEUMONIA.
pub fn show_batch(batch: &[Sample]) -> Result<Figure> {
    let xrays: Vec<XRay> = batch
        .iter()
        .take(25)
        .map(|e| {
            let side = e.size as u32;
            let image = match e.channels {
                1 => {
                    GrayImage::from_raw(side, side, e.pixels.clone()).map(DynamicImage::ImageLuma8)
                }
                _ => RgbImage::from_raw(side, side, e.pixels.clone()).map(DynamicImage::ImageRgb8),
            }
            .ok_or_else(|| {
                Error::BadArgument(format!("{}: not a {side} x {side} image", e.path))
            })?;
            XRay::from_image(&e.path, image)
        })
        .collect::<Result<_>>()?;
    let panels: Vec<Panel> = batch
        .iter()
        .zip(&xrays)
        .map(|(e, xray)| Panel::Image {
            title: CLASS_NAMES[e.label.index()],
            xray,
        })
        .collect();
    grid(5, &panels)
}

/// The tutorial's split, `ds.shuffle(10000)` then `take(n_train)` / `skip(n_train)`,
/// on the positions `0..paths.len()`: which records land in training and which in
/// validation, and how many patients end up in both.
pub fn random_split(paths: &[String], n_train: usize, seed: u64) -> Result<(Split, usize)> {
    let order = Pipeline::from_vec((0..paths.len()).collect())
        .shuffle(SHUFFLE_BUFFER, seed)
        .collect_vec()?;
    let n_train = n_train.min(order.len());
    let split = Split {
        train: order[..n_train].to_vec(),
        val: order[n_train..].to_vec(),
        test: Vec::new(),
    };
    let patients: Vec<String> = paths.iter().map(|p| patient_of(p)).collect();
    let leaked = split.leaked_groups(&patients);
    Ok((split, leaked))
}

/// The split the tutorial should have made: about the same sizes, but every patient's
/// images in one part, and each class's share kept.
pub fn patient_split(paths: &[String], n_train: usize, seed: u64) -> Result<Split> {
    let patients: Vec<String> = paths.iter().map(|p| patient_of(p)).collect();
    let labels: Vec<usize> = paths.iter().map(|p| usize::from(get_label(p))).collect();
    let n = paths.len();
    let options = SplitOptions::seeded(seed)
        .stratify(&labels)
        .groups(&patients);
    train_val_test_split(
        n,
        [n_train as f64, (n - n_train.min(n)) as f64, 0.0],
        &options,
    )
}

/// Runs the chapter's first part on `data` in either layout (see
/// [`crate::data::detect_layout`]; the bundled X-rays by default, written as the
/// tutorial's TFRecords first), counts the classes, runs the
/// pipeline, measures the patient leak of the tutorial's random split on a file table
/// shaped like the tutorial's, and draws a batch.
pub fn run(data: &Path, out: &Path) -> Result<Vec<String>> {
    let (images, paths, origin) = match crate::data::detect_layout(data, "train")? {
        crate::data::DataLayout::TfRecords { images, paths } => {
            let origin = format!("the TFRecords {}", images.display());
            (images, paths, origin)
        }
        crate::data::DataLayout::Folders(folder) => {
            let records = out.join("ch09").join("tfrecords");
            let written = crate::data::write_folder(&folder, &records)?;
            let origin = format!(
                "{written} X-rays from {} written as TFRecords to {}",
                folder.display(),
                records.display()
            );
            (
                records.join("images.tfrec"),
                records.join("paths.tfrec"),
                origin,
            )
        }
    };
    let [normal, pneumonia] = count_classes(&paths)?;
    let started = std::time::Instant::now();
    let ds = zip_tfrecords(&images, &paths)
        .map(autotune(), |(path, image)| process_path(image, path))
        .shuffle(SHUFFLE_BUFFER, SEED);
    let train_ds = prepare_for_training(ds, Cache::Memory);
    let batches = train_ds.collect_vec()?;
    let decoded: usize = batches.iter().map(Vec::len).sum();
    let seconds = started.elapsed().as_secs_f64();

    let files = crate::data::synth_plan(&crate::data::SynthOptions {
        n: TUTORIAL_TRAIN.1,
        ..Default::default()
    });
    let table: Vec<String> = files
        .iter()
        .map(|f| f.path().to_string_lossy().replace('\\', "/"))
        .collect();
    let n_train = train_size(table.len());
    let (_, leaked) = random_split(&table, n_train, SEED)?;
    let by_patient = patient_split(&table, n_train, SEED)?;
    let patients: Vec<String> = table.iter().map(|p| patient_of(p)).collect();

    let figure = out.join("ch09-batch.png");
    if let Some(first) = batches.first() {
        show_batch(first)?.save(&figure)?;
    }
    Ok(vec![
        format!("data: {origin}"),
        format!("Normal images count: {normal}; Pneumonia images count: {pneumonia}"),
        format!(
            "decoded and resized {decoded} images to 180 x 180 on {} workers in {seconds:.2} s ({:.0} images/s)",
            autotune(),
            decoded as f64 / seconds.max(1e-9)
        ),
        format!(
            "the tutorial's random take({n_train})/skip on a {}-image table puts {leaked} patients in both parts; \
             a split by patient puts {} (train {}, val {})",
            table.len(),
            by_patient.leaked_groups(&patients),
            by_patient.train.len(),
            by_patient.val.len()
        ),
        format!("figure: {}", figure.display()),
    ])
}

// ---------------------------------------------------------------------------------------
// Part 2: training the tutorial's CNN.

/// The tutorial's four plots: precision, recall, accuracy and loss per epoch, training
/// against validation.
pub fn history_figure(history: &crate::train::History) -> Result<Figure> {
    crate::plot::history_figure(history, &crate::run::HISTORY_PANELS, 2)
}

/// Where the replica benchmark's numbers are kept (`cargo bench --bench replicas`,
/// columns `replicas,images_per_second`), and the figure drawn from them.
pub const SCALING_CSV: &str = "chapters/figures/ch09-scaling.csv";

/// Training throughput against the number of replicas, from the benchmark's table.
pub fn scaling_figure(csv: impl AsRef<Path>) -> Result<Figure> {
    let table = crate::data::read_csv(csv.as_ref())?;
    let column = |name: &str| -> Result<Vec<f64>> {
        let values = table
            .column(name)
            .and_then(|c| c.cast(&polars_core::prelude::DataType::Float64))
            .and_then(|c| c.f64().map(|v| v.into_no_null_iter().collect()))
            .map_err(|e| Error::Table {
                path: csv.as_ref().into(),
                detail: format!("no numeric column {name}: {e}"),
            })?;
        Ok(values)
    };
    let (replicas, speed) = (column("replicas")?, column("images_per_second")?);
    let ideal: Vec<f64> = replicas
        .iter()
        .map(|r| speed.first().copied().unwrap_or(0.0) * r)
        .collect();
    let series = [
        Series {
            label: "measured",
            color: "tab:blue",
            x: &replicas,
            y: &speed,
        },
        Series {
            label: "linear scaling",
            color: "tab:gray",
            x: &replicas,
            y: &ideal,
        },
    ];
    grid(
        1,
        &[Panel::Lines {
            title: "CPU replicas on 2 cores (25 images per replica)",
            axes: ("replicas", "images/s"),
            series: &series,
        }],
    )
}
