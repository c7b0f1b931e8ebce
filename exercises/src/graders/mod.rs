//! One module per chapter; each test is one instruction of the lesson, and its failure
//! message says what is wrong and what to try.

pub(crate) mod ch01_loading;
pub(crate) mod ch02_histograms;
pub(crate) mod ch03_augmentation;
pub(crate) mod ch04_vgg;
pub(crate) mod ch05_splitting;
pub(crate) mod ch06_training;
pub(crate) mod ch07_confusion;
pub(crate) mod ch08_roc;
pub(crate) mod ch09_tutorial;
pub(crate) mod ch10_explain;
