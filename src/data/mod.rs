//! X-ray collections on disk: class folders, labels, patients, tables (introduced in chapter 1).
//!
//! The Kermany data set, and every data set in this course, keeps one folder per class:
//! `chest_xray/<split>/<CLASS>/<image>.jpeg`. The class is read from the folder name and
//! the patient from the file name, because images of one patient must never be split
//! between training and testing (chapter 5).

mod folder;
mod generator;
mod label;
mod layout;
mod pipeline;
mod split;
mod synth;

pub(crate) use folder::walk;
pub use folder::{Scan, ScanOptions, read_csv, scan_folder, write_csv};
pub use generator::{
    Batch, ClassMode, ColorMode, DirectoryIterator, FlowOptions, ImageDataGenerator, Transform,
};
pub use label::{Label, patient_id};
pub use layout::{DataLayout, detect_layout};
pub use pipeline::{Pipeline, Record, Stream};
pub use split::{Split, SplitOptions, train_val_test_split};
pub use synth::{
    KERMANY_PNEUMONIA_SHARE, SynthFile, SynthOptions, SynthSummary, synth_plan, synth_xray,
    write_dataset,
};
