//! Figures: drawn with plotters into memory, saved as PNG for the book, shown inline in
//! notebooks.
//!
//! The font travels with the crate (DejaVu Sans, see `fonts/DejaVuSans-LICENSE.txt`), so a
//! figure draws the same text on a machine that has no system fonts at all.

use std::path::Path;
use std::sync::Once;

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::imaging::{Filter, XRay, resize};
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// A finished figure: an RGB picture that can be saved or displayed.
#[derive(Debug, Clone)]
pub struct Figure {
    image: RgbImage,
}

impl Figure {
    /// `(width, height)` in pixels.
    pub fn size(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    /// The picture itself.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// The figure as PNG bytes.
    pub fn to_png(&self) -> Vec<u8> {
        encode_png(&self.image)
    }

    /// Saves the figure as a PNG file (atomically), creating its folder.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_bytes_atomic(path.as_ref(), &self.to_png())
    }

    /// Shows the figure inline in a Jupyter notebook (the evcxr kernel calls this).
    pub fn evcxr_display(&self) {
        evcxr_show_png(&self.to_png());
    }
}

/// X-rays next to each other, each titled with its caption and its size in pixels, on
/// axes in pixel coordinates like Matplotlib's `imshow`: the figure of chapter 1's tips.
///
/// Every panel is drawn at the same height, so a small image is shown enlarged: its
/// pixels become visible blocks, which is what resizing throws away.
pub fn side_by_side(panels: &[(&str, &XRay)]) -> Result<Figure> {
    const AREA_HEIGHT: u32 = 360;
    const LEFT: u32 = 60;
    const RIGHT: u32 = 20;
    const TOP: u32 = 40;
    const BOTTOM: u32 = 40;
    register_font();
    let widths: Vec<u32> = panels
        .iter()
        .map(|(_, x)| {
            let (w, h) = x.size();
            LEFT + RIGHT + (f64::from(AREA_HEIGHT) * f64::from(w) / f64::from(h)).round() as u32
        })
        .collect();
    let (width, height) = (
        widths.iter().sum::<u32>().max(1),
        AREA_HEIGHT + TOP + BOTTOM,
    );
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut areas = Vec::with_capacity(panels.len());
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (width, height)).into_drawing_area();
        let mut left = 0;
        for ((title, xray), panel_width) in panels.iter().zip(&widths) {
            let panel = root.clone().shrink((left, 0), (*panel_width, height));
            left += panel_width;
            let (w, h) = xray.size();
            let mut chart = ChartBuilder::on(&panel)
                .caption(format!("{title} ({w} x {h})"), ("sans-serif", 18))
                .margin_right(RIGHT)
                .x_label_area_size(BOTTOM - 10)
                .y_label_area_size(LEFT - 10)
                .build_cartesian_2d(0f64..f64::from(w), f64::from(h)..0f64)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(plot_error)?;
            areas.push(chart.plotting_area().get_pixel_range());
        }
        root.present().map_err(plot_error)?;
    }
    for ((_, xray), (xs, ys)) in panels.iter().zip(areas) {
        let (w, h) = (
            (xs.end - xs.start).max(1) as u32,
            (ys.end - ys.start).max(1) as u32,
        );
        let filter = if w >= xray.size().0 {
            Filter::Nearest
        } else {
            Filter::Box
        };
        let shown = resize(xray.to_rgb().image(), (w, h), filter)?.to_rgb8();
        image::imageops::replace(
            &mut canvas,
            &shown,
            i64::from(xs.start),
            i64::from(ys.start),
        );
    }
    Ok(Figure { image: canvas })
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are the crate's own and known to parse; a failure would only lose text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(err: impl std::fmt::Display) -> Error {
    Error::Plot(err.to_string())
}

pub(crate) fn encode_png(image: &RgbImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory RGB buffer into a Vec cannot fail.
    let _ = image.write_to(&mut bytes, image::ImageFormat::Png);
    bytes.into_inner()
}

/// Prints an image in the form the evcxr Jupyter kernel turns into an inline picture.
pub(crate) fn evcxr_show_png(png: &[u8]) {
    use base64::Engine;
    println!(
        "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
}
