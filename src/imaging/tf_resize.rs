//! `tf.image.resize(image, size)` as TensorFlow 2 computes it by default: bilinear, no
//! antialiasing, half-pixel centres, all in `f32` (chapter 9's `decode_img`).
//!
//! This is not Pillow's bilinear filter of chapter 1: when shrinking, TensorFlow still
//! blends only the two nearest source pixels in each direction, so it skips detail
//! where Pillow averages over it. Checked against TensorFlow 2.21 in
//! `tests/tf_resize_parity.rs`.

/// Where one output row or column reads from.
struct Tap {
    lower: usize,
    upper: usize,
    lerp: f32,
}

/// TensorFlow's `compute_interpolation_weights` with its half-pixel scaler.
fn taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let source = (i as f32 + 0.5) * scale - 0.5;
            let floor = source.floor();
            Tap {
                lower: (floor.max(0.0)) as usize,
                upper: (source.ceil() as usize).min(in_size - 1),
                lerp: source - floor,
            }
        })
        .collect()
}

/// Resizes an image of `height` x `width` pixels with `channels` interleaved values per
/// pixel (row-major, height-width-channel order, as TensorFlow keeps images) to
/// `(out_height, out_width)`, returning `f32` values in the same order. The pixels may be
/// bytes or floats (chapter 10 enlarges `f32` heat maps with it).
///
/// # Panics
/// If `pixels` does not hold `height * width * channels` values, or a size is 0.
pub fn resize_bilinear_tf<T: Copy + Into<f32>>(
    pixels: &[T],
    (height, width, channels): (usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Vec<f32> {
    assert_eq!(pixels.len(), height * width * channels, "pixel count");
    assert!(
        height > 0 && width > 0 && out_height > 0 && out_width > 0,
        "empty image"
    );
    let (ys, xs) = (taps(height, out_height), taps(width, out_width));
    let row = width * channels;
    let mut out = Vec::with_capacity(out_height * out_width * channels);
    for y in &ys {
        let (top, bottom) = (
            &pixels[y.lower * row..][..row],
            &pixels[y.upper * row..][..row],
        );
        for x in &xs {
            let (left, right) = (x.lower * channels, x.upper * channels);
            for c in 0..channels {
                let top_left: f32 = top[left + c].into();
                let top_right: f32 = top[right + c].into();
                let bottom_left: f32 = bottom[left + c].into();
                let bottom_right: f32 = bottom[right + c].into();
                let upper = top_left + (top_right - top_left) * x.lerp;
                let lower = bottom_left + (bottom_right - bottom_left) * x.lerp;
                out.push(upper + (lower - upper) * y.lerp);
            }
        }
    }
    out
}
