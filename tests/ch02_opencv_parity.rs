//! Chapter 2's `calc_hist` and `bitwise_and` against OpenCV's.
//!
//! Fixture: `tests/fixtures/opencv/hist.json` and the PNGs beside it, made by
//! `tests/fixtures/make_opencv_hist.py` (it records the OpenCV version).

use std::path::Path;

use cxr::prelude::*;
use serde_json::Value;

const FIXTURES: &str = "tests/fixtures/opencv";

fn fixture() -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("hist.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn counts(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn counts_equal_opencvs_on_identical_pixels() {
    let fixture = fixture();
    let cases = fixture["synthetic"].as_array().unwrap();
    assert_eq!(cases.len(), 16);
    for case in cases {
        let open =
            |name: &Value| XRay::open(Path::new(FIXTURES).join(name.as_str().unwrap())).unwrap();
        let images: Vec<XRay> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(open)
            .collect();
        let refs: Vec<&XRay> = images.iter().collect();
        let mask = (!case["mask"].is_null())
            .then(|| Mask::from_image(open(&case["mask"]).image().to_luma8()));
        let as_usizes = |v: &Value| -> Vec<usize> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        let ranges: Vec<(f32, f32)> = case["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_f64().unwrap() as f32, r[1].as_f64().unwrap() as f32))
            .collect();
        let hist = calc_hist(
            &refs,
            &as_usizes(&case["channels"]),
            mask.as_ref(),
            &as_usizes(&case["sizes"]),
            &ranges,
        )
        .unwrap();
        let shape = as_usizes(&case["shape"]);
        // OpenCV returns a 1-D histogram as a column (n, 1).
        let shape: Vec<usize> = if shape.len() == 2 && shape[1] == 1 && hist.shape().len() == 1 {
            vec![shape[0]]
        } else {
            shape
        };
        assert_eq!(hist.shape(), shape.as_slice(), "{case}");
        assert_eq!(
            hist.counts(),
            counts(&case["counts"]).as_slice(),
            "{}",
            case["ranges"]
        );
    }
}

#[test]
fn the_lessons_histograms_of_every_bundled_xray_match_opencv_within_decoder_noise() {
    let fixture = fixture();
    for entry in fixture["xrays"].as_array().unwrap() {
        let xray = XRay::open(entry["path"].as_str().unwrap()).unwrap();
        let result = ch02_histograms::masked_histograms(&xray).unwrap();
        for (ours, key) in [(&result.full, "full"), (&result.region, "quarter")] {
            let theirs = counts(&entry[key]);
            assert_eq!(
                ours.total(),
                theirs.iter().sum::<f32>(),
                "{} {key}: pixel count",
                entry["path"]
            );
            // The two JPEG decoders (zune-jpeg here, libjpeg-turbo in OpenCV) round a few
            // pixels differently, which moves them to a neighbouring bin: measured under
            // 0.5% of the pixels; an off-by-one in the bins would move far more.
            let moved: f32 = ours
                .counts()
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / 2.0;
            let share = moved / ours.total();
            assert!(
                share < 0.005,
                "{} {key}: {:.3}% of pixels in other bins",
                entry["path"],
                share * 100.0
            );
        }
        let masked_sum: u64 = result
            .masked
            .image()
            .as_bytes()
            .iter()
            .map(|&v| u64::from(v))
            .sum();
        let theirs = entry["masked_sum"].as_u64().unwrap();
        assert!(
            masked_sum.abs_diff(theirs) * 1000 < theirs,
            "{}: bitwise_and sum {masked_sum} vs {theirs}",
            entry["path"]
        );
    }
}
