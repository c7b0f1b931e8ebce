//! Every integration test of the library, compiled into one test binary.
//!
//! Each file beside this one holds one part (a chapter's library, a parity check against
//! the library a lesson used, the command line run as a process); they are modules of
//! this one crate rather than crates of their own, because each test crate links the
//! whole library and its dependencies again: 26 test crates took the last 111 s of a
//! fresh release build on 2 cores, this one takes 42 s (BENCHMARKS.md). Run one part with its module's
//! name, e.g. `cargo test --release --test integration campaign -- --nocapture`.

mod common;

mod baseline;
mod book_figures;
mod campaign;
mod ch01_loading;
mod ch01_pillow_parity;
mod ch02_histograms;
mod ch02_opencv_parity;
mod ch03_augmentation;
mod cli_process;
mod distribute;
mod explain;
mod fetch;
mod metrics_linfa;
mod metrics_sklearn_parity;
mod module_graph;
mod nn_gradients;
mod nn_inference;
mod nn_keras_parity;
mod nn_kernels;
mod nn_pytorch_parity;
mod nn_transfer;
mod pipeline;
mod tf_resize_parity;
mod tfrecord;
mod train_fit;
mod train_keras_parity;
mod train_resume;
