#![doc = include_str!("../chapters/ch09-tutorial.md")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};

use crate::data::{Pipeline, Record, Split, SplitOptions, patient_id, train_val_test_split};
use crate::imaging::{XRay, resize_bilinear_tf};
use crate::plot::{Figure, Panel, Series, grid};
use crate::tfrecord::{ReadOptions, TfRecordReader, read_pairs};
use crate::{Error, Result};

/// The tutorial's image size, `[height, width]`.
pub const IMAGE_SIZE: [usize; 2] = [180, 180];

/// Images per batch on one device (the tutorial multiplies it by the replicas).
pub const BATCH_SIZE: usize = 25;

/// Class 0 and class 1.
pub const CLASS_NAMES: [&str; 2] = ["NORMAL", "PNEUMONIA"];

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
    let parts: Vec<&str> = file_path.split('/').collect();
    let class = parts.len().checked_sub(2).map(|i| parts[i]);
    u8::from(class == Some("PNEUMONIA"))
}

/// The training size the tutorial's split gives for `total` images: 4,200 of 5,232,
/// scaled and rounded.
pub fn train_size(total: usize) -> usize {
    let (take, of) = TUTORIAL_TRAIN;
    (total as f64 * take as f64 / of as f64).round() as usize
}

/// The tutorial's `decode_img`: JPEG to 3 channels (a grayscale X-ray is repeated into
/// R, G and B), resized to 180 x 180 with `tf.image.resize`'s bilinear semantics.
/// Values stay in 0-255 as `f32`, height-width-channel order.
pub fn decode_img(img: &[u8]) -> Result<Vec<f32>> {
    decode_img_sized(img, IMAGE_SIZE[0])
}

/// [`decode_img`] to `size` x `size` pixels.
pub fn decode_img_sized(img: &[u8], size: usize) -> Result<Vec<f32>> {
    let decoded = image::load_from_memory(img).map_err(|e| Error::CorruptImage {
        path: PathBuf::from("<record>"),
        detail: e.to_string(),
    })?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    // X-rays are grayscale JPEGs, and decoding to RGB repeats each value three times:
    // resizing the one channel and repeating the result gives the same numbers at a
    // third of the work (and skips `to_rgb8`, which took longer than the decode).
    if let image::DynamicImage::ImageLuma8(gray) = &decoded {
        let small = resize_bilinear_tf(gray.as_raw(), (h, w, 1), (size, size));
        return Ok(small.into_iter().flat_map(|v| [v; 3]).collect());
    }
    let rgb = decoded.into_rgb8();
    Ok(resize_bilinear_tf(rgb.as_raw(), (h, w, 3), (size, size)))
}

/// One decoded, labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// 180 x 180 x 3 values in 0-255, height-width-channel order.
    pub image: Vec<f32>,
    /// 0 NORMAL, 1 PNEUMONIA.
    pub label: u8,
    /// Where it came from.
    pub path: String,
}

/// The tutorial's `process_path`: label from the path, pixels from the JPEG.
pub fn process_path(image: Vec<u8>, path: String) -> Result<Example> {
    process_path_sized(image, path, IMAGE_SIZE[0])
}

/// [`process_path`] to `size` x `size` pixels.
pub fn process_path_sized(image: Vec<u8>, path: String, size: usize) -> Result<Example> {
    let pixels = decode_img_sized(&image, size).map_err(|e| match e {
        Error::CorruptImage { detail, .. } => Error::CorruptImage {
            path: PathBuf::from(&path),
            detail,
        },
        other => other,
    })?;
    Ok(Example {
        image: pixels,
        label: get_label(&path),
        path,
    })
}

impl Record for Example {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.path.len() + 4 * self.image.len());
        out.push(self.label);
        out.extend((self.path.len() as u32).to_le_bytes());
        out.extend(self.path.as_bytes());
        for v in &self.image {
            out.extend(v.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad =
            || Error::BadArgument("a cached example is damaged; delete the cache file".into());
        let (&label, rest) = bytes.split_first().ok_or_else(bad)?;
        let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (path, pixels) = rest.split_at_checked(len).ok_or_else(bad)?;
        if pixels.len() % 4 != 0 {
            return Err(bad());
        }
        Ok(Example {
            label,
            path: String::from_utf8(path.to_vec()).map_err(|_| bad())?,
            image: pixels
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
    }
}

/// The tutorial's pair of files as one data set of `(path, JPEG bytes)`, as
/// `tf.data.Dataset.zip((images, paths))`, read afresh each epoch.
pub fn zip_tfrecords(
    images: impl AsRef<Path>,
    paths: impl AsRef<Path>,
) -> Pipeline<(String, Vec<u8>)> {
    let (images, paths) = (images.as_ref().to_path_buf(), paths.as_ref().to_path_buf());
    Pipeline::from_fn(
        move || match read_pairs(&images, &paths, ReadOptions::default()) {
            Ok(pairs) => Box::new(pairs),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    )
}

/// The tutorial's `COUNT_NORMAL` and `COUNT_PNEUMONIA`, from the paths file alone.
pub fn count_classes(paths_file: impl AsRef<Path>) -> Result<[usize; 2]> {
    let mut counts = [0; 2];
    for path in TfRecordReader::open(paths_file, ReadOptions::default())? {
        counts[usize::from(get_label(&String::from_utf8_lossy(&path?)))] += 1;
    }
    Ok(counts)
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
pub fn prepare_for_training(ds: Pipeline<Example>, cache: Cache) -> Pipeline<Vec<Example>> {
    let ds = match cache {
        Cache::None => ds,
        Cache::Memory => ds.cache(),
        Cache::File(path) => ds.cache_file(path),
    };
    ds.batch(BATCH_SIZE, false).prefetch(2)
}

/// The side of a square example's image.
fn side(example: &Example) -> usize {
    ((example.image.len() / 3) as f64).sqrt().round() as usize
}

/// A batch as tensors for a model: images `(N, 3, S, S)` (channels first, as cxr's
/// models take them) in 0-255, labels `(N, 1)` as 0.0 or 1.0.
pub fn batch_tensors(batch: &[Example], device: &Device) -> Result<(Tensor, Tensor)> {
    let s = batch.first().map_or(IMAGE_SIZE[0], side);
    let (h, w) = (s, s);
    let mut pixels: Vec<f32> = Vec::with_capacity(batch.len() * 3 * h * w);
    for example in batch {
        for c in 0..3 {
            pixels.extend(example.image.iter().skip(c).step_by(3));
        }
    }
    let images = Tensor::from_vec(pixels, (batch.len(), 3, h, w), device)?;
    let labels: Vec<f32> = batch.iter().map(|e| f32::from(e.label)).collect();
    let labels = Tensor::from_vec(labels, (batch.len(), 1), device)?;
    Ok((images, labels))
}

/// The tutorial's `show_batch`: up to 25 images of a batch in a 5 x 5 grid, each titled
/// NORMAL or PNEUMONIA.
pub fn show_batch(batch: &[Example]) -> Result<Figure> {
    let s = batch.first().map_or(IMAGE_SIZE[0], side);
    let (h, w) = (s, s);
    let xrays: Vec<XRay> = batch
        .iter()
        .take(25)
        .map(|e| {
            let bytes: Vec<u8> = e
                .image
                .iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect();
            let rgb = RgbImage::from_raw(w as u32, h as u32, bytes).ok_or_else(|| {
                Error::BadArgument(format!("{}: not a {h} x {w} x 3 image", e.path))
            })?;
            XRay::from_image(&e.path, DynamicImage::ImageRgb8(rgb))
        })
        .collect::<Result<_>>()?;
    let panels: Vec<Panel> = batch
        .iter()
        .zip(&xrays)
        .map(|(e, xray)| Panel::Image {
            title: CLASS_NAMES[usize::from(e.label.min(1))],
            xray,
        })
        .collect();
    grid(5, &panels)
}

/// The patient of a path, with its class so that ids of the two classes never collide
/// (Kermany numbers NORMAL and PNEUMONIA patients separately); the file name when the
/// name has no patient.
pub fn patient_of(path: &str) -> String {
    let file = Path::new(path);
    let id = patient_id(file).unwrap_or_else(|| path.to_string());
    format!("{}-{id}", CLASS_NAMES[usize::from(get_label(path))])
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
            let written = crate::tfrecord::write_folder(&folder, &records)?;
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

/// The tutorial's class weights, `(1 / count) * total / 2` per class: each class then
/// weighs as much in the loss as the other, however rare it is.
pub fn class_weights(normal: usize, pneumonia: usize) -> [f64; 2] {
    let total = (normal + pneumonia) as f64;
    [
        total / (2.0 * normal.max(1) as f64),
        total / (2.0 * pneumonia.max(1) as f64),
    ]
}

/// How the tutorial trains, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Images are resized to `image_size` x `image_size` (the tutorial: 180).
    pub image_size: usize,
    /// Images per step.
    pub batch_size: usize,
    /// At most this many epochs (the tutorial: 100, with early stopping).
    pub epochs: usize,
    /// Steps per epoch, the data repeating; `None`: one pass.
    pub steps_per_epoch: Option<usize>,
    /// Epochs without a better validation loss before stopping (the tutorial: 10).
    pub patience: usize,
    /// The learning-rate schedule (the tutorial: ExponentialDecay(0.015, 100000, 0.96,
    /// staircase)).
    pub learning_rate: crate::train::ExponentialDecay,
    /// Seed of the shuffles and of the generated data.
    pub seed: u64,
    /// How many images to generate when no data folder is given.
    pub generated_images: usize,
    /// Batch normalisation (Keras's: running statistics keep 99% per step).
    pub batch_norm: crate::nn::BatchNormConfig,
    /// Progress bars and per-epoch lines.
    pub progress: bool,
    /// Continue the run saved in this training state (`out/train_state.safetensors`).
    pub resume: Option<std::path::PathBuf>,
    /// Where to train (`--devices`): `cpu`, `cpu:N`, `cuda`, `cuda:0,1`, `metal` or
    /// `auto`; see [`crate::distribute::Strategy::parse`].
    pub devices: String,
    /// With several processes training together (one per machine): this one's rank,
    /// the world size and the file that carries NCCL's id; see
    /// [`crate::distribute::ProcessGroup`].
    pub group: Option<crate::distribute::ProcessGroup>,
}

impl TrainConfig {
    /// The tutorial's settings.
    pub fn tutorial() -> Self {
        TrainConfig {
            image_size: IMAGE_SIZE[0],
            batch_size: BATCH_SIZE,
            epochs: 100,
            steps_per_epoch: None,
            patience: 10,
            learning_rate: crate::train::ExponentialDecay::new(0.015, 100_000, 0.96, true),
            seed: SEED,
            generated_images: 2000,
            batch_norm: crate::nn::BatchNormConfig::keras(),
            progress: true,
            resume: None,
            devices: "cpu".into(),
            group: None,
        }
    }

    /// A run of a few minutes on two cores: 2,000 generated images of 64 x 64, 8 epochs
    /// of about 65 steps. Two settings differ from the tutorial's, for these short runs:
    /// the learning rate starts at 0.003 (at the tutorial's 0.015 this model did not
    /// learn at all in 4 such epochs; at 0.001 it needed three times as many), and batch
    /// normalisation's running statistics follow the batches faster (momentum 0.9
    /// instead of 0.99; with 0.99 they are still far from the data after the first
    /// epoch, and validation, which uses them, looks broken).
    pub fn quick() -> Self {
        TrainConfig {
            image_size: 64,
            epochs: 8,
            generated_images: 2000,
            learning_rate: crate::train::ExponentialDecay::new(0.003, 100_000, 0.96, true),
            batch_norm: crate::nn::BatchNormConfig {
                momentum: 0.9,
                ..crate::nn::BatchNormConfig::keras()
            },
            ..TrainConfig::tutorial()
        }
    }
}

/// The three parts of the data, ready to train on.
pub struct Parts {
    /// Training examples.
    pub train: Pipeline<Example>,
    /// Validation examples.
    pub val: Pipeline<Example>,
    /// Test examples.
    pub test: Pipeline<Example>,
    /// `[NORMAL, PNEUMONIA]` in the training part.
    pub train_counts: [usize; 2],
    /// Where the data came from, said with every result.
    pub origin: String,
}

/// One split of `dir` as the tutorial's TFRecords (written from class folders if need
/// be), with its paths.
fn split_records(
    dir: &Path,
    split: &str,
    work: &Path,
) -> Result<Option<(PathBuf, PathBuf, Vec<String>)>> {
    let (images, paths) = match crate::data::detect_layout(dir, split) {
        Ok(crate::data::DataLayout::TfRecords { images, paths }) => (images, paths),
        Ok(crate::data::DataLayout::Folders(folder)) => {
            let records = work.join(split);
            crate::tfrecord::write_folder(&folder, &records)?;
            (records.join("images.tfrec"), records.join("paths.tfrec"))
        }
        Err(_) => return Ok(None),
    };
    let names = TfRecordReader::open(&paths, ReadOptions::default())?
        .map(|r| r.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((images, paths, names)))
}

/// The records of a pair of files whose positions are in `keep`, decoded.
fn decoded(
    images: &Path,
    paths: &Path,
    keep: Option<Vec<usize>>,
    size: usize,
) -> Pipeline<Example> {
    let keep = keep.map(|k| Arc::new(k.into_iter().collect::<std::collections::HashSet<_>>()));
    let pairs = zip_tfrecords(images, paths);
    let selected = Pipeline::from_fn(move || {
        let keep = keep.clone();
        Box::new(
            pairs
                .iter()
                .enumerate()
                .filter(move |(i, _)| keep.as_ref().is_none_or(|k| k.contains(i)))
                .map(|(_, pair)| pair),
        )
    });
    selected.map(autotune(), move |(path, image)| {
        process_path_sized(image, path, size)
    })
}

/// Finds or makes the data: `data` in either layout, or a generated data set under
/// `out/generated` (made once, reused). Without a validation split (the tutorial's
/// files have train and test only), a tenth of the training patients is set aside, by
/// patient.
pub fn load_parts(data: Option<&Path>, out: &Path, cfg: &TrainConfig) -> Result<Parts> {
    let (dir, origin) = match data {
        Some(dir) => (dir.to_path_buf(), format!("{}", dir.display())),
        None => {
            let dir = out.join(format!("generated-{}", cfg.image_size));
            if !dir.join("README.md").is_file() {
                crate::data::write_dataset(
                    &dir,
                    crate::data::SynthOptions {
                        n: cfg.generated_images,
                        size: cfg.image_size as u32,
                        seed: cfg.seed,
                        ..Default::default()
                    },
                )?;
            }
            let origin = format!(
                "{} GENERATED images of {} x {} in {} (drawings, not X-rays: no result here is a result on real radiographs)",
                cfg.generated_images,
                cfg.image_size,
                cfg.image_size,
                dir.display()
            );
            (dir, origin)
        }
    };
    let work = out.join("tfrecords");
    let Some((train_images, train_paths, train_names)) = split_records(&dir, "train", &work)?
    else {
        return Err(Error::BadArgument(format!(
            "{}: no training data found (train/images.tfrec or train/NORMAL, train/PNEUMONIA); fetch it with `cxr fetch`",
            dir.display()
        )));
    };
    let size = cfg.image_size;
    let (train, val, train_counts) = match split_records(&dir, "val", &work)? {
        Some((images, paths, _)) => {
            let mut counts = [0; 2];
            train_names
                .iter()
                .for_each(|p| counts[usize::from(get_label(p))] += 1);
            (
                decoded(&train_images, &train_paths, None, size),
                decoded(&images, &paths, None, size),
                counts,
            )
        }
        None => {
            let n_train = train_names.len() * 9 / 10;
            let split = patient_split(&train_names, n_train, cfg.seed)?;
            let mut counts = [0; 2];
            split
                .train
                .iter()
                .for_each(|&i| counts[usize::from(get_label(&train_names[i]))] += 1);
            (
                decoded(&train_images, &train_paths, Some(split.train), size),
                decoded(&train_images, &train_paths, Some(split.val), size),
                counts,
            )
        }
    };
    let test = match split_records(&dir, "test", &work)? {
        Some((images, paths, _)) => decoded(&images, &paths, None, size),
        None => {
            return Err(Error::BadArgument(format!(
                "{}: no test data found (test/images.tfrec or test/NORMAL, test/PNEUMONIA)",
                dir.display()
            )));
        }
    };
    Ok(Parts {
        train,
        val,
        test,
        train_counts,
        origin,
    })
}

/// Examples to tensors in batches: cached decoded images, shuffled anew each epoch,
/// batched, prefetched.
pub fn to_batches(
    ds: Pipeline<Example>,
    batch_size: usize,
    shuffle: Option<u64>,
) -> Pipeline<crate::train::Batch> {
    let ds = ds.cache();
    let ds = match shuffle {
        Some(seed) => ds.shuffle(SHUFFLE_BUFFER, seed),
        None => ds,
    };
    ds.batch(batch_size, false)
        .map(1, |batch| batch_tensors(&batch, &Device::Cpu))
        .prefetch(2)
}

/// The tutorial's four plots: precision, recall, accuracy and loss per epoch, training
/// against validation.
pub fn history_figure(history: &crate::train::History) -> Result<Figure> {
    crate::plot::history_figure(
        history,
        &["precision", "recall", "binary_accuracy", "loss"],
        2,
    )
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
            .and_then(|c| c.cast(&polars::prelude::DataType::Float64))
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

/// "This image is 87.65 percent PNEUMONIA", as the tutorial prints a prediction.
pub fn describe_prediction(p_pneumonia: f32) -> String {
    let p = f64::from(p_pneumonia);
    format!(
        "This image is {:.2} percent NORMAL and {:.2} percent PNEUMONIA",
        100.0 * (1.0 - p),
        100.0 * p
    )
}

/// The tutorial from data to prediction: data (given or generated), class weights and
/// initial bias from the counts, the CNN, ExponentialDecay and Adam, binary
/// cross-entropy, fit with validation, checkpoint and early stopping, the history
/// figure, evaluation on the test part, and one prediction. Writes the model, the
/// history, the test predictions and the figures under `out/`; returns a report.
pub fn train_tutorial(
    data: Option<&Path>,
    out: &Path,
    cfg: &TrainConfig,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Vec<String>> {
    use crate::train::{CsvLogger, EarlyStopping, FitOptions, ModelCheckpoint, tutorial_metrics};

    let parts = load_parts(data, out, cfg)?;
    let [normal, pneumonia] = parts.train_counts;
    let weights = class_weights(normal, pneumonia);
    let bias = crate::nn::initial_bias(normal, pneumonia);
    let mut report = vec![
        format!("data: {}", parts.origin),
        format!("training images: {normal} NORMAL, {pneumonia} PNEUMONIA"),
        format!(
            "class weights: {:.2} for NORMAL, {:.2} for PNEUMONIA; initial output bias {bias:.4}",
            weights[0], weights[1]
        ),
    ];
    // The tutorial's strategy: every replica gets `batch_size` images per step.
    let strategy = crate::distribute::Strategy::parse(&cfg.devices)?;
    let processes = cfg.group.as_ref().map_or(1, |g| g.world_size);
    let global_batch = strategy.global_batch_size(cfg.batch_size) * processes;
    report.push(format!(
        "strategy: {strategy}; number of replicas: {}, global batch {global_batch}{}",
        strategy.num_replicas_in_sync() * processes,
        match &cfg.group {
            Some(g) => format!("; process {} of {}", g.rank, g.world_size),
            None => String::new(),
        }
    ));
    let mirrored = strategy.replicate(candle_core::DType::F32, cfg.seed, |vb, replica| {
        crate::nn::xray_cnn(
            crate::nn::XrayCnnConfig {
                image_size: (cfg.image_size, cfg.image_size),
                output_bias: Some(bias),
                batch_norm: cfg.batch_norm,
                seed: cfg.seed + replica as u64,
            },
            vb,
        )
    })?;
    let adam = |w: &candle_nn::VarMap| crate::train::Adam::new(w, Arc::new(cfg.learning_rate));
    let trainer = match &cfg.group {
        Some(group) => mirrored.trainer_in_group(group, adam)?,
        None => mirrored.trainer(adam)?,
    };
    let mut trainer = trainer.with_metrics(tutorial_metrics());
    let train = to_batches(parts.train, global_batch, Some(cfg.seed));
    let val = to_batches(parts.val, global_batch, None);
    let test = to_batches(parts.test, global_batch, None);
    let model_path = out.join("xray_model.safetensors");
    let mut checkpoint = ModelCheckpoint::new(&model_path, true);
    let mut early = EarlyStopping::new("val_loss", cfg.patience, true);
    let mut logger = CsvLogger::new(out.join("history.csv"));
    let options = FitOptions {
        epochs: cfg.epochs,
        steps_per_epoch: cfg.steps_per_epoch,
        class_weight: Some(weights.to_vec()),
        progress: cfg.progress,
        stop,
        save_state: Some(out.join("train_state.safetensors")),
        resume_from: cfg.resume.clone(),
    };
    let started = std::time::Instant::now();
    let history = trainer.fit(
        &train,
        Some(&val),
        &options,
        &mut [&mut checkpoint, &mut early, &mut logger],
    )?;
    let seconds = started.elapsed().as_secs_f64();
    crate::io::write_bytes_atomic(
        &out.join("xray_model.json"),
        format!("{{\"image_size\": {}}}\n", cfg.image_size).as_bytes(),
    )?;
    let figure = out.join("ch09-history.png");
    history_figure(&history)?.save(&figure)?;
    report.push(format!(
        "trained {} epoch(s) in {seconds:.0} s{}; best val_loss at epoch {}",
        history.epochs.len(),
        if history.interrupted {
            " (stopped by Ctrl-C)"
        } else {
            ""
        },
        early.best_epoch().map_or(0, |e| e + 1)
    ));

    // Evaluate on the test part, and keep the predictions for chapters 7 and 8.
    let logs = trainer.evaluate(&test)?;
    report.push(format!("test: {}", crate::train::format_logs(&logs)));
    let mut y_true = Vec::new();
    let mut p = Vec::new();
    for batch in test.iter() {
        let (x, y) = batch?;
        p.extend(trainer.predict(&x)?);
        y_true.extend(
            y.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|v| v as usize),
        );
    }
    let pneumonia_share =
        y_true.iter().filter(|&&y| y == 1).count() as f64 / y_true.len().max(1) as f64;
    report.push(format!(
        "always answering the larger class would score accuracy {:.4} on this test part",
        pneumonia_share.max(1.0 - pneumonia_share)
    ));
    let y_score = ndarray::Array2::from_shape_fn((p.len(), 2), |(i, j)| {
        let q = f64::from(p[i]);
        if j == 1 { q } else { 1.0 - q }
    });
    let predictions = crate::baseline::Predictions {
        y_true,
        y_score,
        classes: CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
        source: format!("the tutorial's CNN trained on {}", parts.origin),
    };
    let predictions_path = out.join("test_predictions.csv");
    predictions.write_csv(&predictions_path)?;
    if let Some(&first) = p.first() {
        report.push(format!("first test image: {}", describe_prediction(first)));
    }
    report.push(format!(
        "wrote {}, {}, {} and {}",
        model_path.display(),
        out.join("history.csv").display(),
        predictions_path.display(),
        figure.display()
    ));
    Ok(report)
}
