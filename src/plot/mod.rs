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
use plotters::coord::types::RangedCoordf64;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
        crate::display::encode_png(&self.image)
    }

    /// Saves the figure as a PNG file (atomically), creating its folder.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_bytes_atomic(path.as_ref(), &self.to_png())
    }

    /// Shows the figure inline in a Jupyter notebook (the evcxr kernel calls this).
    pub fn evcxr_display(&self) {
        crate::display::show_png(&self.to_png());
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
    /// A matrix of counts as coloured cells, each with its count and its share of the
    /// row: a confusion matrix (rows true, columns predicted).
    Heatmap {
        /// What the matrix is.
        title: &'a str,
        /// Names of the rows and columns, in order.
        names: &'a [String],
        /// `counts[row][column]`.
        counts: &'a [Vec<u64>],
    },
    /// Curves through points on axes from 0 to 1, each named in the legend, optionally
    /// with the dashed diagonal of a coin toss and marked points: ROC curves.
    Curves {
        /// What the curves show.
        title: &'a str,
        /// `(x axis, y axis)` names.
        axes: (&'a str, &'a str),
        /// The curves.
        series: &'a [Series<'a>],
        /// Draw the chance diagonal from (0, 0) to (1, 1).
        diagonal: bool,
        /// `(label, (x, y))` points to mark with a dot and a label.
        marks: &'a [(&'a str, (f64, f64))],
    },
    /// Nothing: keeps a grid's columns in place.
    Blank,
    /// A vertical colour bar: which colour of [`jet`] stands for which value.
    ColorBar {
        /// What the colours measure.
        title: &'a str,
        /// The values at the bottom and the top.
        range: (f64, f64),
    },
    /// Curves on axes scaled to fit them: training histories.
    Lines {
        /// What the curves show.
        title: &'a str,
        /// `(x axis, y axis)` names.
        axes: (&'a str, &'a str),
        /// The curves.
        series: &'a [Series<'a>],
    },
}

/// One curve of [`Panel::Curves`].
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Its name in the legend.
    pub label: &'a str,
    /// Its colour: a name from [`named_color`] such as `"darkorange"`.
    pub color: &'a str,
    /// `x` values, in drawing order.
    pub x: &'a [f64],
    /// `y` values, as many as `x`.
    pub y: &'a [f64],
}

/// The colours a figure knows by name: Matplotlib's names for them, which lesson 8 uses.
pub fn named_color(name: &str) -> Option<RGBColor> {
    let rgb = match name {
        "aqua" | "cyan" => (0, 255, 255),
        "darkorange" => (255, 140, 0),
        "cornflowerblue" => (100, 149, 237),
        "navy" => (0, 0, 128),
        "deeppink" => (255, 20, 147),
        "green" => (0, 128, 0),
        "red" => (255, 0, 0),
        "blue" => (0, 0, 255),
        "black" => (0, 0, 0),
        "gray" | "grey" => (128, 128, 128),
        "purple" => (128, 0, 128),
        "teal" => (0, 128, 128),
        "crimson" => (220, 20, 60),
        "gold" => (255, 215, 0),
        "tab:blue" => (31, 119, 180),
        "tab:orange" => (255, 127, 14),
        "tab:green" => (44, 160, 44),
        "tab:red" => (214, 39, 40),
        "tab:gray" | "tab:grey" => (127, 127, 127),
        _ => return None,
    };
    Some(RGBColor(rgb.0, rgb.1, rgb.2))
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
            Panel::Heatmap { .. } => CHART_WIDTH + LEFT,
            Panel::Curves { .. } => PLOT_HEIGHT + LEFT + RIGHT + 40,
            Panel::Lines { .. } => CHART_WIDTH + LEFT,
            Panel::ColorBar { .. } => 150,
            Panel::Blank => 0,
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
                Panel::Heatmap {
                    title,
                    names,
                    counts,
                } => draw_heatmap(&area, title, names, counts)?,
                Panel::Curves {
                    title,
                    axes,
                    series,
                    diagonal,
                    marks,
                } => draw_curves(&area, title, *axes, series, *diagonal, marks)?,
                Panel::Lines {
                    title,
                    axes,
                    series,
                } => draw_lines(&area, title, *axes, series)?,
                Panel::ColorBar { title, range } => draw_color_bar(&area, title, *range)?,
                Panel::Blank => {}
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

/// One panel per quantity of a training history, training against validation over
/// the epochs (`history.history["loss"]` and `["val_loss"]`), `columns` panels a row.
pub fn history_figure(
    history: &crate::train::History,
    names: &[&str],
    columns: usize,
) -> Result<Figure> {
    let epochs: Vec<f64> = (1..=history.epochs.len()).map(|e| e as f64).collect();
    let values: Vec<[Vec<f64>; 2]> = names
        .iter()
        .map(|n| [history.series(n), history.series(&format!("val_{n}"))])
        .collect();
    let series: Vec<[Series; 2]> = values
        .iter()
        .map(|[train, val]| {
            [
                Series {
                    label: "train",
                    color: "tab:blue",
                    x: &epochs,
                    y: train,
                },
                Series {
                    label: "val",
                    color: "tab:orange",
                    x: &epochs,
                    y: val,
                },
            ]
        })
        .collect();
    let titles: Vec<String> = names.iter().map(|n| format!("Model {n}")).collect();
    let panels: Vec<Panel> = titles
        .iter()
        .zip(names)
        .zip(&series)
        .map(|((title, name), series)| Panel::Lines {
            title,
            axes: ("epochs", name),
            series,
        })
        .collect();
    grid(columns, &panels)
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

/// Matplotlib's "jet" colour map, which the Grad-CAM paper's figures use: dark blue for
/// 0, through cyan, yellow and red, to dark red for 1.
pub fn jet(t: f32) -> Rgb<u8> {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let channel =
        |centre: f32| (255.0 * (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0)).round() as u8;
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}

/// The X-ray with `heatmap` laid over it in [`jet`] colours, the map scaled so that its
/// largest value is 1 and its negative values 0. Each pixel's colour is blended in as
/// strongly as its value times `alpha`, so where the map is 0 the X-ray shows as it is.
pub fn overlay(xray: &XRay, heatmap: &crate::explain::Heatmap, alpha: f32) -> Result<XRay> {
    let (w, h) = xray.size();
    if heatmap.shape() != (h as usize, w as usize) {
        return Err(Error::BadArgument(format!(
            "a map of {:?} (rows, columns) cannot lie over an image of {w} x {h}: make the \
             map from the image as the model saw it (cxr::explain::input)",
            heatmap.shape()
        )));
    }
    let peak = heatmap.max();
    let gray = xray.to_gray();
    let gray = gray.image().as_luma8().cloned().unwrap_or_default();
    let blended = RgbImage::from_fn(w, h, |x, y| {
        let t = if peak > 0.0 {
            (heatmap.values[[y as usize, x as usize]] / peak).max(0.0)
        } else {
            0.0
        };
        let colour = jet(t);
        let a = alpha.clamp(0.0, 1.0) * t;
        let g = f32::from(gray.get_pixel(x, y)[0]);
        Rgb(colour
            .0
            .map(|c| ((1.0 - a) * g + a * f32::from(c)).round() as u8))
    });
    XRay::from_image(xray.path(), image::DynamicImage::ImageRgb8(blended))
}

/// X-rays with maps over them, `columns` to a row, each map scaled to its own peak, and a
/// colour bar at the end of each row. `(title, xray, map)`; a panel without a map shows
/// the X-ray alone.
pub fn overlays(
    columns: usize,
    panels: &[(&str, &XRay, Option<&crate::explain::Heatmap>)],
    alpha: f32,
) -> Result<Figure> {
    let shown: Vec<XRay> = panels
        .iter()
        .map(|(_, xray, map)| match map {
            Some(map) => overlay(xray, map, alpha),
            None => Ok((*xray).clone()),
        })
        .collect::<Result<_>>()?;
    let columns = columns.clamp(1, panels.len().max(1));
    let mut cells = Vec::new();
    for (i, ((title, _, _), xray)) in panels.iter().zip(&shown).enumerate() {
        cells.push(Panel::Image { title, xray });
        let row_ends = (i + 1) % columns == 0 || i + 1 == panels.len();
        if row_ends {
            // Pad a short last row so that every colour bar sits in the same column.
            for _ in (i % columns + 1)..columns {
                cells.push(Panel::Blank);
            }
            cells.push(Panel::ColorBar {
                title: "share of the map's peak",
                range: (0.0, 1.0),
            });
        }
    }
    grid(columns + 1, &cells)
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
        .margin_left(14)
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
        .margin_left(14)
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

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    names: &[String],
    counts: &[Vec<u64>],
) -> Result<()> {
    let n = counts.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin_right(RIGHT)
        .margin_left(10)
        .x_label_area_size(45)
        .y_label_area_size(LEFT + 40)
        .build_cartesian_2d(0f64..n as f64, n as f64..0f64)
        .map_err(plot_error)?;
    let label = |v: &f64| {
        let i = v.floor() as usize;
        if (v - i as f64 - 0.5).abs() < 0.01 {
            names.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(n * 2 + 1)
        .y_labels(n * 2 + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .draw()
        .map_err(plot_error)?;
    let most = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    for (i, row) in counts.iter().enumerate() {
        let row_total = row.iter().sum::<u64>().max(1) as f64;
        for (j, &count) in row.iter().enumerate() {
            // White for 0, deep blue for the largest count, as Matplotlib's "Blues".
            let t = count as f64 / most;
            let shade = |light: f64, dark: f64| (light + (dark - light) * t).round() as u8;
            let fill = RGBColor(shade(247.0, 8.0), shade(251.0, 48.0), shade(255.0, 107.0));
            let (x, y) = (j as f64, i as f64);
            chart
                .draw_series([Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())])
                .map_err(plot_error)?;
            let ink = if t > 0.5 { WHITE } else { BLACK };
            let text = format!("{count}\n{:.1}%", 100.0 * count as f64 / row_total);
            for (k, line) in text.lines().enumerate() {
                let style = ("sans-serif", if k == 0 { 24 } else { 15 })
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series([Text::new(
                        line.to_string(),
                        (x + 0.5, y + 0.42 + 0.2 * k as f64),
                        style,
                    )])
                    .map_err(plot_error)?;
            }
        }
    }
    Ok(())
}

fn draw_color_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    (low, high): (f64, f64),
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 13))
        .margin_top(20)
        .margin_bottom(40)
        .margin_left(40)
        .margin_right(70)
        .build_cartesian_2d(0f64..1f64, low..high)
        .map_err(plot_error)?;
    // The values beside the bar, drawn as text: a chart's own axis would need a mesh.
    for i in 0..=5 {
        let v = low + (high - low) * f64::from(i) / 5.0;
        let (x, y) = chart.backend_coord(&(1.0, v));
        let (left, top) = area.get_base_pixel();
        let (x, y) = (x - left, y - top);
        let style = ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(format!("{v:.1}"), (x + 6, y), style))
            .map_err(plot_error)?;
    }
    let steps = 100;
    let span = high - low;
    chart
        .draw_series((0..steps).map(|i| {
            let t = i as f64 / steps as f64;
            let Rgb([r, g, b]) = jet(t as f32);
            Rectangle::new(
                [
                    (0.0, low + span * t),
                    (1.0, low + span * (t + 1.0 / steps as f64)),
                ],
                RGBColor(r, g, b).filled(),
            )
        }))
        .map_err(plot_error)?;
    Ok(())
}

fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    (x_name, y_name): (&str, &str),
    series: &[Series],
    diagonal: bool,
    marks: &[(&str, (f64, f64))],
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin_right(RIGHT)
        .margin_left(14)
        .x_label_area_size(40)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(0f64..1.0, 0f64..1.02)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_desc(x_name)
        .y_desc(y_name)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(plot_error)?;
    if diagonal {
        let style = BLACK.mix(0.6).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 5, style))
            .map_err(plot_error)?
            .label("chance (AUC = 0.50)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    draw_series_lines(&mut chart, series, false)?;
    // A marked point is named in the legend, where its label cannot cover a curve.
    for (text, (x, y)) in marks {
        chart
            .draw_series([Circle::new((*x, *y), 5, BLACK.filled())])
            .map_err(plot_error)?
            .label(text.to_string())
            .legend(|(x, y)| Circle::new((x + 10, y), 4, BLACK.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// Draws each series as a line named in the legend (dots on its points with `dots`),
/// in its named colour or else the palette's; non-finite values are left out.
fn draw_series_lines<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    series: &[Series],
    dots: bool,
) -> Result<()> {
    for (i, curve) in series.iter().enumerate() {
        let color = named_color(curve.color).unwrap_or_else(|| {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        });
        let points: Vec<(f64, f64)> = curve
            .x
            .iter()
            .copied()
            .zip(curve.y.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(curve.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if dots {
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    (x_name, y_name): (&str, &str),
    series: &[Series],
) -> Result<()> {
    let finite = |v: &&f64| v.is_finite();
    let xs = series.iter().flat_map(|s| s.x.iter()).filter(finite);
    let ys = series.iter().flat_map(|s| s.y.iter()).filter(finite);
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (x0, x1) = if x0 < x1 {
        (x0, x1)
    } else {
        (x0.min(0.0), x0.max(0.0) + 1.0)
    };
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let (y0, y1) = if y0 <= y1 {
        (y0 - pad, y1 + pad)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin_right(RIGHT)
        // The upright axis title is drawn reaching left of its area: a margin keeps it whole.
        .margin_left(14)
        .x_label_area_size(40)
        .y_label_area_size(LEFT + 5)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_desc(x_name)
        .y_desc(y_name)
        // Epochs are whole numbers: label only the ticks that fall on one.
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(plot_error)?;
    draw_series_lines(&mut chart, series, true)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(emptiest_corner(series, (x0, x1), (y0, y1)))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// Where the legend covers the least of the curves, as matplotlib's `loc="best"`: the
/// corner (a quarter of the width, a fifth of the height) that the fewest points of the
/// lines, sampled between the data points too, fall in.
fn emptiest_corner(
    series: &[Series],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let (w, h) = (x1 - x0, y1 - y0);
    let mut points = Vec::new();
    for curve in series {
        let xy: Vec<(f64, f64)> = curve
            .x
            .iter()
            .zip(curve.y)
            .map(|(&x, &y)| (x, y))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        for pair in xy.windows(2) {
            let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
            points.extend((0..20).map(|k| {
                let t = f64::from(k) / 20.0;
                (ax + t * (bx - ax), ay + t * (by - ay))
            }));
        }
        points.extend(xy.last());
    }
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let covered = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|&&(x, y)| {
                let fx = (x - x0) / w;
                let fy = (y - y0) / h;
                (if right { fx >= 0.72 } else { fx <= 0.28 })
                    && (if upper { fy >= 0.78 } else { fy <= 0.22 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| covered(right, upper))
        .map_or(SeriesLabelPosition::UpperRight, |(position, _, _)| position)
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
