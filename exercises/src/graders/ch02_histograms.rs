//! Grader for chapter 2: one test per instruction of the lesson.

use cxr::imaging::{Mask, calc_hist};
use cxr::prelude::*;

use crate::ch02_histograms::{CHANNELS, RANGES, bottom_right, count_gray_levels, histograms};

fn xray() -> XRay {
    XRay::open("../data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg")
        .unwrap_or_else(|e| panic!("the bundled X-ray should open: {e}"))
}

#[test]
fn instruction_1_channels() {
    assert!(
        CHANNELS == [0],
        "CHANNELS is {CHANNELS:?}. Hint: CHANNELS lists the channels to count; a grayscale \
         image has a single channel, and channels are numbered from 0 as Rust's indices are."
    );
}

#[test]
fn instruction_2_ranges() {
    assert!(
        RANGES.0 == 0.0 && RANGES.1 > 255.0 && RANGES.1 <= 256.0,
        "RANGES is {RANGES:?}, which does not count every gray level 0..=255.\n\
         Hint: the upper end is left out of the range, so (0.0, 255.0) would miss the brightest pixels."
    );
    let xray = xray();
    let (width, height) = xray.size();
    let full = calc_hist(&[&xray], &[0], None, &[256], &[RANGES]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        full.total(),
        (width * height) as f32,
        "every pixel must be counted once"
    );
}

#[test]
fn instruction_3_bottom_right_quarter() {
    for (w, h) in [(968, 592), (1001, 777), (2, 2), (1, 1)] {
        let (x, y) = bottom_right(w, h);
        assert!(
            (x.clone(), y.clone()) == (w / 2..w, h / 2..h),
            "bottom_right({w}, {h}) gave x_range {x:?}, y_range {y:?}.\n\
             Hint: the right half of the width starts at width / 2 and ends at width; the bottom half of the height likewise."
        );
    }
    let xray = xray();
    let (width, height) = xray.size();
    let mask = Mask::bottom_right_quarter((width, height));
    let expected = calc_hist(&[&xray], &[0], Some(&mask), &[256], &[(0.0, 256.0)])
        .unwrap_or_else(|e| panic!("{e}"));
    if CHANNELS == [0] && RANGES == (0.0, 256.0) {
        let (_, quarter) = histograms(&xray).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            quarter, expected,
            "the quarter's histogram differs from the lesson's"
        );
    }
}

#[test]
fn instruction_4_count_the_histogram_by_hand() {
    let xray = xray();
    let (width, height) = xray.size();
    let rects = [
        (0..width, 0..height, "the whole X-ray"),
        (
            width / 2..width,
            height / 2..height,
            "the bottom-right quarter",
        ),
        (
            10..width / 3,
            height / 4..height - 5,
            "a tall rectangle on the left",
        ),
    ];
    for (x_range, y_range, what) in rects {
        let counted =
            std::panic::catch_unwind(|| count_gray_levels(&xray, x_range.clone(), y_range.clone()))
                .unwrap_or_else(|_| {
                    panic!(
                        "count_gray_levels panicked on {what} of a {width} x {height} X-ray. Hint: \
                 get_pixel takes (x, y): the column first, then the row"
                    )
                });
        let mask = Mask::rect((width, height), x_range.clone(), y_range.clone());
        let expected = calc_hist(&[&xray], &[0], Some(&mask), &[256], &[(0.0, 256.0)])
            .unwrap_or_else(|e| panic!("{e}"));
        let pixels = x_range.len() * y_range.len();
        let total: u64 = counted.iter().map(|&c| u64::from(c)).sum();
        assert!(
            total == pixels as u64,
            "your counts for {what} add up to {total}, but it has {pixels} pixels. Hint: each \
             pixel in the rectangle adds exactly one to the bin of its gray level"
        );
        let differ = counted
            .iter()
            .zip(expected.counts())
            .position(|(&ours, &theirs)| ours as f32 != theirs);
        if let Some(level) = differ {
            panic!(
                "for {what}, your count of gray level {level} differs from calc_hist's (OpenCV's), \
                 though the total is right. Hint: the bin is the pixel's value itself, \
                 counts[value as usize]"
            );
        }
    }
}
