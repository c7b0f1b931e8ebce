//! # cxr: chest X-ray pneumonia classification, a course and a library
//!
//! Each `chNN_*` module is one chapter of the course: its documentation is the chapter
//! (the same markdown the book renders, its code blocks compiled and run as tests), and
//! its items are what the lesson builds. The chapters rest on shared modules that any
//! program can use on the full data set:
//!
//! - [`run`]: a training run of the tutorial's CNN, from data to predictions, its
//!   outputs kept together (the main job);
//! - [`baseline`]: a logistic regression on histograms, the model to beat (chapters 7, 8);
//! - [`plot`]: figures saved as PNG and shown inline in notebooks;
//! - [`explain`]: what the model looked at: occlusion and Grad-CAM maps (chapter 10);
//! - [`distribute`]: training on several devices (the TPU strategy's counterpart);
//! - [`train`]: `compile` and `fit`: losses, optimisers, schedules, metrics, callbacks;
//! - [`fetch`]: the full data set, downloaded resumably and verified;
//! - [`nn`]: Keras's layers, `Sequential` models (VGG, the tutorial's CNN), summaries,
//!   weights, the CPU kernels;
//! - [`metrics`]: confusion matrices, precision and recall, ROC and precision-recall
//!   curves, their areas;
//! - [`data`]: class folders, labels, patients, tables, splits, pipelines, generators;
//! - [`tfrecord`]: TFRecord files, read with every checksum checked, and written;
//! - [`imaging`]: the one guarded decode, X-rays, resizing, histograms, warps;
//! - [`display`]: pictures and text shown in notebooks;
//! - [`io`]: files written atomically;
//! - [`error`]: the one error type, whose messages name the file and the fix;
//! - [`alloc`]: the allocator the binary and benchmarks use.
//!
//! ```
//! use cxr::prelude::*;
//!
//! let xray = XRay::open("data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg")?;
//! let small = xray.resize((150, 150))?;
//! assert_eq!(small.size(), (150, 150));
//! # Ok::<(), cxr::Error>(())
//! ```

// The chapters, in course order: each uses the shared modules below and never another
// chapter.
pub mod ch01_loading;
pub mod ch02_histograms;
pub mod ch03_augmentation;
pub mod ch04_vgg;
pub mod ch05_splitting;
pub mod ch06_training;
pub mod ch07_confusion;
pub mod ch08_roc;
pub mod ch09_tutorial;
pub mod ch10_explain;

// The shared modules, top down: each uses only modules listed below it
// (`tests/module_graph.rs` checks that no two modules use each other).
pub mod run;
pub mod baseline;
pub mod plot;
pub mod explain;
pub mod distribute;
pub mod train;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod nn;
pub mod metrics;
pub mod data;
pub mod tfrecord;
pub mod imaging;
pub mod display;
pub mod io;
pub mod error;
#[cfg(feature = "cli")]
pub mod alloc;

pub use error::{Error, Result};

/// The book's page on the Rust a learner needs: no module of its own, but its code blocks
/// are run by `cargo test` like every chapter's.
#[cfg(doctest)]
#[doc = include_str!("../chapters/rust-you-need.md")]
pub struct RustYouNeed;

/// The repository this library was built from: where the bundled data are and the book's
/// paths start. A notebook moves there in its first cells (`set_current_dir(cxr::ROOT)`),
/// which works however often it runs.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The crates whose types cxr's API hands out, re-exported so that a notebook or a program
/// can use them at the versions cxr was built with.
pub use {candle_core, candle_nn, image, linfa, ndarray, polars_core, polars_io};

/// The names most chapters use, in one import: `use cxr::prelude::*;`.
pub mod prelude {
    pub use crate::ch01_loading;
    pub use crate::ch02_histograms;
    pub use crate::ch03_augmentation;
    pub use crate::ch04_vgg;
    pub use crate::ch05_splitting;
    pub use crate::ch06_training;
    pub use crate::ch07_confusion;
    pub use crate::ch08_roc;
    pub use crate::ch09_tutorial;
    pub use crate::ch10_explain;
    pub use crate::data::{Label, Scan, ScanOptions, read_csv, scan_folder};
    pub use crate::imaging::{
        Filter, Histogram, Layout, LoadOptions, Mask, Mode, XRay, bitwise_and, calc_hist,
    };
    pub use crate::plot::Figure;
    pub use crate::{Error, Result};
    pub use candle_core::{DType, Device, Tensor};
    pub use polars_core::prelude::DataFrame;
}
