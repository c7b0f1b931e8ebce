//! Figures: drawn with plotters into memory, saved as PNG for the book, shown inline in
//! notebooks.
//!
//! The font travels with the crate (DejaVu Sans, see `fonts/DejaVuSans-LICENSE.txt`), so a
//! figure draws the same text on a machine that has no system fonts at all.

use std::path::Path;
use std::sync::Once;

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use plotters::coord::Shift;

use crate::imaging::{Filter, Histogram, XRay, resize};
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

/// One cell of a figure.
#[derive(Debug, Clone, Copy)]
pub enum Panel<'a> {
    /// An X-ray on axes in pixel coordinates, like Matplotlib's `imshow`; the title gets
    /// its size appended.
    Image {
        /// What the image is.
        title: &'a str,
        /// The image.
        xray: &'a XRay,
    },
    /// One or more one-axis histograms as lines over their value range, like
    /// `plt.plot(hist)`, each named in the legend.
    Histograms {
        /// What the histograms show.
        title: &'a str,
        /// `(legend label, histogram)` pairs.
        series: &'a [(&'a str, &'a Histogram)],
    },
    /// Named values as vertical bars, each labelled with its value.
    Bars {
        /// What the bars show.
        title: &'a str,
        /// What the values measure, for the y axis.
        unit: &'a str,
        /// `(label, value)` pairs, left to right.
        bars: &'a [(&'a str, f64)],
    },
}

const CELL_HEIGHT: u32 = 440;
const PLOT_HEIGHT: u32 = 360;
const LEFT: u32 = 60;
const RIGHT: u32 = 20;
const CHART_WIDTH: u32 = 480;

impl Panel<'_> {
    fn width(&self) -> u32 {
        match self {
            Panel::Image { xray, .. } => {
                let (w, h) = xray.size();
                LEFT + RIGHT + (f64::from(PLOT_HEIGHT) * f64::from(w) / f64::from(h)).round() as u32
            }
            Panel::Histograms { .. } => CHART_WIDTH + LEFT,
            Panel::Bars { bars, .. } => {
                (CHART_WIDTH + LEFT).max(LEFT + RIGHT + 90 * bars.len() as u32)
            }
        }
    }
}

/// Panels in a grid, `columns` to a row, each column as wide as its widest panel.
pub fn grid(columns: usize, panels: &[Panel]) -> Result<Figure> {
    register_font();
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let mut widths = vec![0u32; columns];
    for (i, panel) in panels.iter().enumerate() {
        widths[i % columns] = widths[i % columns].max(panel.width());
    }
    let (width, height) = (widths.iter().sum::<u32>().max(1), CELL_HEIGHT * rows as u32);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut images = Vec::new();
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (width, height)).into_drawing_area();
        for (i, panel) in panels.iter().enumerate() {
            let left: u32 = widths[..i % columns].iter().sum();
            let top = CELL_HEIGHT * (i / columns) as u32;
            let area = root
                .clone()
                .shrink((left, top), (panel.width(), CELL_HEIGHT));
            match panel {
                Panel::Image { title, xray } => {
                    images.push((*xray, draw_image_axes(&area, title, xray)?));
                }
                Panel::Histograms { title, series } => draw_histograms(&area, title, series)?,
                Panel::Bars { title, unit, bars } => draw_bars(&area, title, unit, bars)?,
            }
        }
        root.present().map_err(plot_error)?;
    }
    // plotters draws the axes; the pixels go straight into the plotting area.
    for (xray, (xs, ys)) in images {
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

/// X-rays next to each other at the same height, each titled with its caption and its
/// size: the figure of chapter 1's tips. A small image is shown enlarged, so its pixels
/// become visible blocks, which is what resizing throws away.
pub fn side_by_side(panels: &[(&str, &XRay)]) -> Result<Figure> {
    let panels: Vec<Panel> = panels
        .iter()
        .map(|&(title, xray)| Panel::Image { title, xray })
        .collect();
    grid(panels.len(), &panels)
}

/// One-axis histograms drawn as lines in one chart (chapter 2).
pub fn histograms(title: &str, series: &[(&str, &Histogram)]) -> Result<Figure> {
    grid(1, &[Panel::Histograms { title, series }])
}

type PixelRange = (std::ops::Range<i32>, std::ops::Range<i32>);

fn draw_image_axes<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    xray: &XRay,
) -> Result<PixelRange> {
    let (w, h) = xray.size();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title} ({w} x {h})"), ("sans-serif", 18))
        .margin_right(RIGHT)
        .x_label_area_size(30)
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
    Ok(chart.plotting_area().get_pixel_range())
}

fn draw_histograms<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(&str, &Histogram)],
) -> Result<()> {
    let (low, high) = series
        .iter()
        .map(|(_, h)| h.ranges()[0])
        .fold((f32::MAX, f32::MIN), |(lo, hi), (l, h)| {
            (lo.min(l), hi.max(h))
        });
    let top = series
        .iter()
        .flat_map(|(_, h)| h.counts().iter().copied())
        .fold(1.0f32, f32::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin_right(RIGHT)
        .x_label_area_size(40)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(low..high, 0f32..top * 1.05)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("gray level")
        .y_desc("pixels")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (label, hist)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f32, f32)> = hist
            .bin_starts()
            .into_iter()
            .zip(hist.counts().iter().copied())
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    unit: &str,
    bars: &[(&str, f64)],
) -> Result<()> {
    let top = bars.iter().map(|b| b.1).fold(1e-9, f64::max);
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin_right(RIGHT)
        .x_label_area_size(40)
        .y_label_area_size(LEFT + 10)
        .build_cartesian_2d(0f64..n as f64, 0f64..top * 1.15)
        .map_err(plot_error)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_desc(unit)
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|v| {
            let i = v.floor() as usize;
            if (v - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| short_number(*v))
        .draw()
        .map_err(plot_error)?;
    let color = Palette99::pick(4).to_rgba();
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)],
                color.filled(),
            )
        }))
        .map_err(plot_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                short_number(*v),
                (i as f64 + 0.2, v + top * 0.03),
                ("sans-serif", 13).into_font(),
            )
        }))
        .map_err(plot_error)?;
    Ok(())
}

/// 1234567 as "1.23M": bar labels must stay short.
fn short_number(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.2}M", v / 1e6),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
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
