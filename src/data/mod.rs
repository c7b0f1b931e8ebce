//! X-ray collections on disk and in memory (introduced in chapter 1): class folders,
//! labels, patients, tables, splits, the tutorial's TFRecords, input pipelines, Keras's
//! image generators, generated data.
//!
//! The Kermany data set, and every data set in this course, keeps one folder per class:
//! `chest_xray/<split>/<CLASS>/<image>.jpeg`. The class is read from the folder name and
//! the patient from the file name, because images of one patient must never be split
//! between training and testing (chapter 5).
//!
//! One image's route to a model: a folder is listed once into `(path, Label)`
//! ([`labelled_files`]) or a TFRecord pair read into `(path, bytes)`; each image is
//! decoded through the guarded [`crate::imaging::decode`], resized and kept as bytes
//! ([`Sample`]); a batch of samples becomes the model's `(N, 3, H, W)` floats only when
//! it is made ([`to_batch`], [`batches`]).

mod folder;
mod generator;
mod iris;
mod label;
mod layout;
mod parts;
mod pipeline;
mod records;
mod samples;
mod split;
mod synth;

pub use folder::{Scan, ScanOptions, labelled_files, read_csv, scan_folder, write_csv};
pub use generator::{
    ClassMode, ColorMode, DirectoryIterator, FlowOptions, ImageBatch, ImageDataGenerator, Transform,
};
pub use iris::{IRIS_CLASSES, Table, load_iris, merge_data, split_iris};
pub use label::{Label, patient_id, patient_key};
pub use layout::{DataLayout, detect_layout};
pub use parts::{Parts, class_counts, load_parts, split_paths};
pub use pipeline::{Pipeline, Record, Stream};
pub use records::{count_classes, read_paths, write_folder, zip_tfrecords};
pub use samples::{Decoded, Sample, Source, batches, decode_all, resize_tf, to_batch};
pub use split::{Split, SplitOptions, train_val_test_split};
pub use synth::{
    CONSOLIDATION_LEVEL, KERMANY_PNEUMONIA_SHARE, SynthFile, SynthOptions, SynthSummary,
    consolidation_mask, ensure_generated, synth_plan, synth_xray, synth_xray_with_truth,
    write_dataset,
};

/// A batch as models train on it: images `(N, C, H, W)` and labels, `(N, 1)` (0/1,
/// binary), `(N,)` (class numbers) or `(N, k)` (one-hot).
pub type Batch = (candle_core::Tensor, candle_core::Tensor);
