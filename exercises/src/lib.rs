//! The course's exercises, one file per chapter, in course order.
//!
//! Edit the `TODO`s in `src/chNN_*.rs`; grade with `cargo test --release -p cxr-exercises chNN` or see
//! every chapter's score with `cargo run --release -- grade`. The graders live in `src/graders/` and
//! the reference solutions in `solutions/` (built with `--features solutions`): peek only
//! when stuck.

#[cfg_attr(feature = "solutions", path = "../solutions/ch01_loading.rs")]
pub mod ch01_loading;

#[cfg_attr(feature = "solutions", path = "../solutions/ch02_histograms.rs")]
pub mod ch02_histograms;

#[cfg_attr(feature = "solutions", path = "../solutions/ch03_augmentation.rs")]
pub mod ch03_augmentation;

#[cfg_attr(feature = "solutions", path = "../solutions/ch04_vgg.rs")]
pub mod ch04_vgg;

#[cfg_attr(feature = "solutions", path = "../solutions/ch05_splitting.rs")]
pub mod ch05_splitting;

#[cfg_attr(feature = "solutions", path = "../solutions/ch06_training.rs")]
pub mod ch06_training;

#[cfg_attr(feature = "solutions", path = "../solutions/ch07_confusion.rs")]
pub mod ch07_confusion;

#[cfg_attr(feature = "solutions", path = "../solutions/ch08_roc.rs")]
pub mod ch08_roc;

#[cfg_attr(feature = "solutions", path = "../solutions/ch09_tutorial.rs")]
pub mod ch09_tutorial;

#[cfg_attr(feature = "solutions", path = "../solutions/ch10_explain.rs")]
pub mod ch10_explain;

#[cfg(test)]
mod graders;

#[cfg(test)]
mod hint_checks;
