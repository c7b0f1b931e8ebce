//! Chapter 2's library beyond OpenCV parity: masks, 16-bit images, and arguments that
//! cannot work, which must say what to do instead.

use cxr::prelude::*;
use image::{DynamicImage, ImageBuffer, Luma};

fn gray16(values: &[u16], width: u32) -> XRay {
    let height = values.len() as u32 / width;
    let buf = ImageBuffer::from_fn(width, height, |x, y| {
        Luma([values[(y * width + x) as usize]])
    });
    XRay::from_image("gray16.png", DynamicImage::ImageLuma16(buf)).unwrap()
}

#[test]
fn masks_select_rectangles_and_the_lessons_quarter() {
    let mask = Mask::bottom_right_quarter((5, 3));
    assert_eq!(mask.count(), 3 * 2, "columns 2..5, rows 1..3");
    assert_eq!(
        Mask::rect((5, 3), 4..99, 0..1).count(),
        1,
        "ranges are clipped to the image"
    );
    let xray = gray16(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 5);
    let masked = bitwise_and(&xray, &xray, Some(&mask)).unwrap();
    let kept: Vec<f32> = masked
        .to_tensor(Layout::Hwc, DType::F32, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(
        kept,
        [
            0., 0., 0., 0., 0., 0., 0., 8., 9., 10., 0., 0., 13., 14., 15.
        ]
    );
}

#[test]
fn sixteen_bit_images_are_counted_on_their_own_scale() {
    let xray = gray16(&[0, 1000, 40000, 65535, 65535, 30000], 3);
    let hist = calc_hist(&[&xray], &[0], None, &[4], &[(0.0, 65536.0)]).unwrap();
    assert_eq!(hist.counts(), [2.0, 1.0, 1.0, 2.0]);
}

#[test]
fn impossible_arguments_say_what_is_wrong() {
    let xray = XRay::open("data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg").unwrap();
    let message = |result: Result<Histogram>| result.unwrap_err().to_string();
    let wrong_channel = message(calc_hist(&[&xray], &[2], None, &[256], &[(0.0, 256.0)]));
    assert!(
        wrong_channel.contains("channel 2") && wrong_channel.contains("grayscale"),
        "{wrong_channel}"
    );
    let mismatched = message(calc_hist(&[&xray], &[0], None, &[256, 2], &[(0.0, 256.0)]));
    assert!(
        mismatched.contains("one bin count and one range per channel"),
        "{mismatched}"
    );
    let empty = message(calc_hist(&[&xray], &[0], None, &[256], &[(10.0, 10.0)]));
    assert!(empty.contains("empty"), "{empty}");
    let small_mask = Mask::bottom_right_quarter((10, 10));
    let mask_size = message(calc_hist(
        &[&xray],
        &[0],
        Some(&small_mask),
        &[256],
        &[(0.0, 256.0)],
    ));
    assert!(mask_size.contains("Mask::rect((1776, 1416)"), "{mask_size}");
    let other = xray.resize((10, 10)).unwrap();
    let sizes = message(calc_hist(
        &[&xray, &other],
        &[0],
        None,
        &[256],
        &[(0.0, 256.0)],
    ));
    assert!(
        sizes.contains("one size") && sizes.contains("resize"),
        "{sizes}"
    );
    assert!(bitwise_and(&xray, &other, None).is_err());
}
