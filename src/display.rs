//! Showing things in a notebook: the evcxr kernel turns what a cell prints between
//! `EVCXR_BEGIN_CONTENT <mime>` and `EVCXR_END_CONTENT` into an output of that type.
//! Images and figures use it; nothing here knows what they are.

use image::RgbImage;

/// An RGB image as PNG bytes.
pub fn encode_png(image: &RgbImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory RGB buffer into a Vec cannot fail.
    let _ = image.write_to(&mut bytes, image::ImageFormat::Png);
    bytes.into_inner()
}

/// Shows PNG bytes as an inline picture.
pub fn show_png(png: &[u8]) {
    use base64::Engine;
    println!(
        "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
}

/// Shows text as plain text, kept as it is (a table, a summary).
pub fn show_text(text: &str) {
    println!("EVCXR_BEGIN_CONTENT text/plain\n{text}\nEVCXR_END_CONTENT");
}
