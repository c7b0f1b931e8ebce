//! Grader for chapter 2: one test per instruction of the lesson.

use cxr::imaging::{Mask, calc_hist};
use cxr::prelude::*;

use crate::ch02_histograms::{CHANNELS, RANGES, bottom_right, histograms};

fn xray() -> XRay {
    XRay::open("../data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg")
        .unwrap_or_else(|e| panic!("the bundled X-ray should open: {e}"))
}

#[test]
fn instruction_1_channels() {
    assert_eq!(
        CHANNELS,
        &[0],
        "CHANNELS is {CHANNELS:?}. Hint: a grayscale image has a single channel; channels are numbered from 0."
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
        assert_eq!(
            (x.clone(), y.clone()),
            (w / 2..w, h / 2..h),
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
