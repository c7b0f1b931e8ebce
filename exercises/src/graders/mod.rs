//! One module per chapter; each test is one instruction of the lesson, and its failure
//! message says what is wrong and what to try.

mod ch01_loading;
mod ch02_histograms;
mod ch03_augmentation;
mod ch04_vgg;
mod ch05_splitting;
mod ch06_training;
mod ch07_confusion;
mod ch08_roc;
mod ch09_tutorial;
mod ch10_explain;
