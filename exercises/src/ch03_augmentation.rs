//! Chapter 3: rescale and flip the training images, and make the data sets.
//!
//! The lesson is in the book (`chapters/ch03-augmentation.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch03`; the grader is `src/graders/ch03_augmentation.rs`.

use cxr::data::DirectoryIterator;
use cxr::image::GrayImage;
use cxr::prelude::*;

/// The class-per-folder trees to read, relative to `exercises/`. The bundled data set is
/// small, so the lesson uses the same folder for training and testing.
pub const TRAIN_DIR: &str = "../data/chest_xray/val";
pub const TEST_DIR: &str = "../data/chest_xray/val";

// TODO (instruction 1): the factor that turns pixel values 0..=255 into 0..=1.
pub const RESCALE_RATIO: f32 = 0.0;

// TODO (instruction 2): mirror training images at random.
pub const HORIZONTAL_FLIP: bool = false;

// TODO (instruction 3): make the training and test data with
// `cxr::ch03_augmentation::generate_dataset` (read it in src/ch03_augmentation.rs at the
// repository root), using TRAIN_DIR, TEST_DIR, RESCALE_RATIO and HORIZONTAL_FLIP.
pub fn make_datasets() -> Result<(DirectoryIterator, DirectoryIterator)> {
    todo!("call generate_dataset with the two folders and the two settings")
}

/// `horizontal_flip` by hand: the image mirrored left to right, as `cv2.flip(img, 1)`.
pub fn flip_left_right(image: &GrayImage) -> GrayImage {
    let (width, height) = image.dimensions();
    let mut flipped = GrayImage::new(width, height);
    // TODO (instruction 4): for every pixel (x, y), copy `image.get_pixel(x, y)` to the
    // mirrored column of the same row in `flipped` (`flipped.put_pixel(column, y, pixel)`).
    // Columns run from 0 to width - 1: which column mirrors column x?
    let _ = (image, &mut flipped);
    flipped
}
