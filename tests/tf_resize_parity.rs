//! `resize_bilinear_tf` against `tf.image.resize` (TensorFlow 2.21, fixtures made by
//! tests/fixtures/tensorflow/make_tf_fixtures.py): exact semantics on a patterned image,
//! and the tutorial's `decode_img` on two bundled X-rays.

use cxr::ch09_tutorial::decode_img;
use cxr::imaging::resize_bilinear_tf;

const DIR: &str = "tests/fixtures/tensorflow";

/// The script's `pattern(41, 57)`.
fn pattern() -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..41usize {
        for x in 0..57usize {
            for c in 0..3usize {
                out.push(((x * 37 + y * 11 + c * 71 + (x * y) % 13) % 256) as u8);
            }
        }
    }
    out
}

#[test]
fn bilinear_resize_matches_tensorflow() {
    let src = pattern();
    for (h, w) in [(20, 15), (60, 45), (82, 100), (41, 57), (7, 100)] {
        let bytes = std::fs::read(format!("{DIR}/resize_{h}x{w}.f32")).unwrap();
        let theirs: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let ours = resize_bilinear_tf(&src, (41, 57, 3), (h, w));
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{h}x{w}: max difference {worst}");
    }
}

#[test]
fn decode_img_matches_tensorflow_on_bundled_xrays() {
    for (file, stem) in [
        ("NORMAL/NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427-0001"),
        (
            "PNEUMONIA/person1946_bacteria_4874.jpeg",
            "person1946_bacteria_4874",
        ),
    ] {
        let bytes = std::fs::read(format!("data/chest_xray/val/{file}")).unwrap();
        let ours = decode_img(&bytes).unwrap();
        // decode_img resizes the one gray channel and repeats it; through RGB it must
        // come out the same to the bit.
        let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let (w, h) = rgb.dimensions();
        let through_rgb = resize_bilinear_tf(rgb.as_raw(), (h as usize, w as usize, 3), (180, 180));
        assert_eq!(ours, through_rgb, "{file}: gray path differs from RGB path");
        let theirs = image::open(format!("{DIR}/xray_{stem}.png"))
            .unwrap()
            .to_rgb8();
        let diffs: Vec<f32> = ours
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, &b)| (a.round().clamp(0.0, 255.0) - f32::from(b)).abs())
            .collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let worst = diffs.iter().copied().fold(0.0, f32::max);
        // The JPEG decoders (zune-jpeg here, libjpeg-turbo in TensorFlow) differ by a
        // level or two on some pixels; the resize itself is exact (test above).
        assert!(
            mean < 1.0 && worst <= 4.0,
            "{file}: mean {mean}, max {worst}"
        );
    }
}

#[test]
fn decode_img_keeps_colour_jpegs_in_rgb() {
    let image = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let expected = resize_bilinear_tf(decoded.as_raw(), (48, 64, 3), (180, 180));
    let ours = decode_img(&bytes).unwrap();
    assert_eq!(ours, expected);
    // The channels really differ, so this went through the colour path.
    assert!(ours.chunks(3).any(|rgb| rgb[0] != rgb[2]));
}
