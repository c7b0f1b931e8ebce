#![doc = include_str!("../chapters/ch01-loading.md")]

use std::path::Path;

use crate::Result;
use crate::data::{ScanOptions, read_csv, scan_folder};
use crate::imaging::XRay;
use crate::plot::side_by_side;

/// The lesson's image folder, relative to the repository root.
pub const IMG_PATH: &str = "data/chest_xray/val";
/// The lesson's list of images (`file,label,patient_id`; `file` is relative to [`IMG_PATH`]).
pub const CSV_PATH: &str = "data/chest_xray/val.csv";
/// The X-ray the chapter looks at closely, relative to [`IMG_PATH`].
pub const EXAMPLE_FILE: &str = "PNEUMONIA/person1946_bacteria_4874.jpeg";
/// The lesson's target size, `(width, height)`.
pub const IMG_SIZE: (u32, u32) = (150, 150);

/// Opens an X-ray and resizes it to `size` with the default filter: the lesson's
/// `Image.open(path).resize(IMG_SIZE)`. Returns the original and the resized image.
pub fn load_xray(path: impl AsRef<Path>, size: (u32, u32)) -> Result<(XRay, XRay)> {
    let original = XRay::open(path)?;
    let resized = original.resize(size)?;
    Ok((original, resized))
}

/// The chapter's figure: an X-ray next to its copy resized to [`IMG_SIZE`].
pub fn resize_figure(path: impl AsRef<Path>) -> Result<crate::plot::Figure> {
    let (original, resized) = load_xray(path, IMG_SIZE)?;
    side_by_side(&[("original", &original), ("resized", &resized)])
}

/// The whole lesson on a folder: every X-ray listed in the CSV is opened and resized,
/// [`EXAMPLE_FILE`] is drawn next to its resized copy into `out/ch01-resize.png`, the
/// folder is scanned into a table, and the lines printed along the way are returned.
pub fn run(img_path: &Path, csv_path: &Path, out: &Path) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let table = read_csv(csv_path)?;
    let files: Vec<String> = table
        .column("file")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    report.push(format!(
        "{} X-rays listed in {}",
        files.len(),
        csv_path.display()
    ));
    for file in &files {
        let (original, resized) = load_xray(img_path.join(file), IMG_SIZE)?;
        report.push(format!(
            "{file}: {:?} -> {:?}",
            original.size(),
            resized.size()
        ));
    }
    let figure = out.join("ch01-resize.png");
    resize_figure(img_path.join(EXAMPLE_FILE))?.save(&figure)?;
    report.push(format!("figure: {}", figure.display()));
    let scan = scan_folder(img_path, ScanOptions::default())?;
    report.push(format!(
        "{}",
        scan.frame
            .select(["file", "label", "patient_id", "width", "height"])?
    ));
    Ok(report)
}
