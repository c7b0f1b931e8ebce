#![doc = include_str!("../chapters/ch09-tutorial.md")]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};

use crate::data::{Pipeline, Record, Split, SplitOptions, patient_id, train_val_test_split};
use crate::imaging::{XRay, resize_bilinear_tf};
use crate::plot::{Figure, Panel, grid};
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
    let decoded = image::load_from_memory(img).map_err(|e| Error::CorruptImage {
        path: PathBuf::from("<record>"),
        detail: e.to_string(),
    })?;
    let rgb = decoded.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(resize_bilinear_tf(
        rgb.as_raw(),
        (h as usize, w as usize, 3),
        (IMAGE_SIZE[0], IMAGE_SIZE[1]),
    ))
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
    let pixels = decode_img(&image).map_err(|e| match e {
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

/// A batch as tensors for a model: images `(N, 3, 180, 180)` (channels first, as cxr's
/// models take them) in 0-255, labels `(N, 1)` as 0.0 or 1.0.
pub fn batch_tensors(batch: &[Example], device: &Device) -> Result<(Tensor, Tensor)> {
    let [h, w] = IMAGE_SIZE;
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
    let [h, w] = IMAGE_SIZE;
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
