//! Chapter 1's resize against Pillow's, on Pillow's own output.
//!
//! Fixtures: `tests/fixtures/pillow/`, made by `tests/fixtures/make_pillow_resize.py`
//! (its manifest records the Pillow version). Sources that both sides read losslessly
//! (PNG) isolate the filters; the 16 bundled JPEGs add each side's own JPEG decoder.

use std::path::Path;

use cxr::prelude::*;
use serde_json::Value;

const FIXTURES: &str = "tests/fixtures/pillow";

/// Largest and mean absolute difference between two images of one size, over all channels.
fn difference(ours: &XRay, pillow: &XRay) -> (u8, f64) {
    assert_eq!(ours.size(), pillow.size());
    assert_eq!(ours.mode(), pillow.mode());
    let (a, b) = (ours.image().as_bytes(), pillow.image().as_bytes());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len() as f64)
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_filter_matches_pillow_on_identical_pixels() {
    let manifest = manifest();
    let cases = manifest["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 36);
    for case in cases {
        let source =
            XRay::open(Path::new(FIXTURES).join(case["source"].as_str().unwrap())).unwrap();
        let expected =
            XRay::open(Path::new(FIXTURES).join(case["expected"].as_str().unwrap())).unwrap();
        let filter: Filter = case["filter"].as_str().unwrap().parse().unwrap();
        let size = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let ours = source.resize_with(size, filter).unwrap();
        let (max, mean) = difference(&ours, &expected);
        println!(
            "{} {:?} {size:?}: max {max}, mean {mean:.4}",
            case["source"], filter
        );
        // Nearest picks pixels, so it must agree exactly. The convolutions round their
        // fixed-point sums a little differently: measured at most 2 levels (upsampling
        // noise with bicubic and Lanczos), a mean under 0.04 levels.
        let (max_allowed, mean_allowed) = if filter == Filter::Nearest {
            (0, 0.0)
        } else {
            (2, 0.05)
        };
        assert!(
            max <= max_allowed && mean <= mean_allowed,
            "{case}: max {max} > {max_allowed} or mean {mean} > {mean_allowed}"
        );
    }
}

#[test]
fn the_lessons_open_and_resize_matches_pillow_on_every_bundled_xray() {
    let manifest = manifest();
    let xrays = manifest["xrays"].as_array().unwrap();
    assert_eq!(xrays.len(), 16);
    for entry in xrays {
        let xray = XRay::open(entry["path"].as_str().unwrap()).unwrap();
        assert_eq!(xray.mode().to_string(), entry["mode"].as_str().unwrap());
        assert_eq!(
            xray.size(),
            (
                entry["width"].as_u64().unwrap() as u32,
                entry["height"].as_u64().unwrap() as u32
            )
        );
        let ours = xray.resize((150, 150)).unwrap();
        let expected =
            XRay::open(Path::new(FIXTURES).join(entry["expected"].as_str().unwrap())).unwrap();
        let (max, mean) = difference(&ours, &expected);
        println!("{}: max {max}, mean {mean:.4}", entry["path"]);
        // The JPEG decoders (zune-jpeg here, libjpeg-turbo in Pillow) may differ on single
        // pixels; averaged over the filter's footprint that vanishes: measured at most one
        // level on a few pixels, a mean under 0.01.
        assert!(
            max <= 1 && mean <= 0.01,
            "{}: max {max}, mean {mean}",
            entry["path"]
        );
    }
}
