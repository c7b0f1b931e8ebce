//! Chapter 3: rescale and flip the training images, and make the data sets
//! (reference solution).
//!
//! The lesson is in the book (`chapters/ch03-augmentation.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch03`; the grader is `src/graders/ch03_augmentation.rs`.

use cxr::ch03_augmentation::generate_dataset;
use cxr::data::DirectoryIterator;
use cxr::image::GrayImage;
use cxr::prelude::*;

/// The class-per-folder trees to read, relative to `exercises/`. The bundled data set is
/// small, so the lesson uses the same folder for training and testing.
pub const TRAIN_DIR: &str = "../data/chest_xray/val";
pub const TEST_DIR: &str = "../data/chest_xray/val";

// Instruction 1: 255 * (1 / 255) = 1.
pub const RESCALE_RATIO: f32 = 1.0 / 255.0;

// Instruction 2: on.
pub const HORIZONTAL_FLIP: bool = true;

// Instruction 3: generate_dataset makes both generators and both data sets.
pub fn make_datasets() -> Result<(DirectoryIterator, DirectoryIterator)> {
    generate_dataset(TRAIN_DIR, TEST_DIR, RESCALE_RATIO, HORIZONTAL_FLIP)
}

/// `horizontal_flip` by hand: the image mirrored left to right, as `cv2.flip(img, 1)`.
pub fn flip_left_right(image: &GrayImage) -> GrayImage {
    let (width, height) = image.dimensions();
    let mut flipped = GrayImage::new(width, height);
    // Instruction 4: column x goes to column width - 1 - x; rows stay where they are.
    for y in 0..height {
        for x in 0..width {
            flipped.put_pixel(width - 1 - x, y, *image.get_pixel(x, y));
        }
    }
    flipped
}
