//! Grader for chapter 3: one test per instruction of the lesson.

use crate::ch03_augmentation::{HORIZONTAL_FLIP, RESCALE_RATIO, flip_left_right, make_datasets};

#[test]
fn instruction_1_rescale_ratio() {
    assert!(
        (RESCALE_RATIO * 255.0 - 1.0).abs() < 1e-6,
        "RESCALE_RATIO is {RESCALE_RATIO}, so the brightest pixel, 255, becomes {}.\n\
         Hint: which number times 255 gives 1?",
        RESCALE_RATIO * 255.0
    );
}

#[test]
#[allow(clippy::assertions_on_constants)] // grading a constant is the point
fn instruction_2_horizontal_flip() {
    assert!(
        HORIZONTAL_FLIP,
        "HORIZONTAL_FLIP is off. Hint: the lesson turns the flip on with a boolean."
    );
}

#[test]
fn instruction_3_generate_dataset() {
    let (train, test) = make_datasets().unwrap_or_else(|e| panic!("make_datasets failed: {e}"));
    assert!(
        train.generator().horizontal_flip && !test.generator().horizontal_flip,
        "only the training images are flipped. Hint: pass HORIZONTAL_FLIP to generate_dataset."
    );
    assert_eq!(
        train.generator().rescale,
        Some(RESCALE_RATIO),
        "pass RESCALE_RATIO to generate_dataset"
    );
    assert_eq!(
        test.generator().rescale,
        Some(RESCALE_RATIO),
        "the test images are rescaled too"
    );
    assert_eq!(
        train.class_indices().get("PNEUMONIA"),
        Some(&1),
        "read the folders TRAIN_DIR and TEST_DIR"
    );
    assert_eq!((train.samples(), test.samples()), (16, 16));
    let batch = test.batch(0, 0).unwrap_or_else(|e| panic!("{e}"));
    let max = batch
        .x
        .max_all()
        .and_then(|m| m.to_scalar::<f32>())
        .unwrap_or(f32::NAN);
    assert!(
        max <= 1.0 && max > 0.5,
        "test images should run from 0 to 1, the largest value is {max}"
    );
}

#[test]
fn instruction_4_flip_by_hand() {
    grade_flip(flip_left_right);
}

/// Instruction 4's checks on any flip.
pub(crate) fn grade_flip(
    flip_left_right: impl Fn(&cxr::image::GrayImage) -> cxr::image::GrayImage
    + std::panic::RefUnwindSafe,
) {
    use cxr::prelude::XRay;

    let xray = XRay::open("../data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg")
        .and_then(|x| x.resize((97, 61)))
        .unwrap_or_else(|e| panic!("the bundled X-ray should open: {e}"));
    let image = xray.image().to_luma8();
    let flipped = std::panic::catch_unwind(|| flip_left_right(&image)).unwrap_or_else(|_| {
        panic!(
            "flip_left_right panicked on a 97 x 61 image. Hint: columns run 0..width, so the \
             mirror of column x is width - 1 - x (width - x is one past the edge)"
        )
    });
    assert!(
        flipped.dimensions() == image.dimensions(),
        "a flip keeps the size: the image is 97 x 61, yours is {:?}",
        flipped.dimensions()
    );
    let upside_down = xray.flipud().image().to_luma8();
    assert!(
        flipped != upside_down || image == upside_down,
        "your image is upside down: that is a vertical flip. Hint: a horizontal flip moves \
         pixels between columns (x) and keeps each in its row (y)"
    );
    let expected = xray.fliplr().image().to_luma8();
    let wrong = (0..61u32)
        .flat_map(|y| (0..97u32).map(move |x| (x, y)))
        .find(|&(x, y)| flipped.get_pixel(x, y) != expected.get_pixel(x, y));
    if let Some((x, y)) = wrong {
        panic!(
            "pixel (x {x}, y {y}) of your flip differs from cv2.flip(img, 1)'s. Hint: the pixel \
             at column x of a row lands at column width - 1 - x of the same row"
        );
    }
    assert!(
        flip_left_right(&flipped) == image,
        "flipping twice should give the image back"
    );
}
