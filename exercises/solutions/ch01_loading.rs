//! Chapter 1: load chest X-rays and resize them (reference solution).
//!
//! The lesson is in the book (`chapters/ch01-loading.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch01`; the grader is `src/graders/ch01_loading.rs`.

use std::path::Path;

use cxr::prelude::*;

/// The list of X-rays (`file,label,patient_id`). Paths here are relative to the
/// `exercises/` folder, because that is where `cargo test --release -p cxr-exercises` runs.
pub const CSV_PATH: &str = "../data/chest_xray/val.csv";

// Instruction 1: the folder next to the CSV file, named like it without ".csv".
pub const IMG_PATH: &str = "../data/chest_xray/val";

// Instruction 2: the lesson asks for 150 x 150.
pub const IMG_SIZE: (u32, u32) = (150, 150);

/// Opens one file listed in the CSV and resizes it, as the lesson's
/// `Image.open(os.path.join(IMG_PATH, file)).resize(IMG_SIZE)`: returns the original and
/// the resized X-ray. Nothing to change here.
pub fn load_and_resize(file: &str) -> Result<(XRay, XRay)> {
    ch01_loading::load_xray(Path::new(IMG_PATH).join(file), IMG_SIZE)
}

/// Every X-ray the CSV lists, in the CSV's order, as `(label, resized X-ray)`.
pub fn load_all() -> Result<Vec<(String, XRay)>> {
    // Instruction 3: the two columns side by side, one X-ray per row.
    let table = read_csv(CSV_PATH)?;
    let files = table.column("file")?.str()?;
    let labels = table.column("label")?.str()?;
    let mut loaded = Vec::new();
    for (file, label) in files.iter().zip(labels.iter()) {
        let (Some(file), Some(label)) = (file, label) else {
            let why = format!("{CSV_PATH} has a row without a file or a label: fill it in");
            return Err(Error::BadArgument(why));
        };
        let (_original, resized) = load_and_resize(file)?;
        loaded.push((label.to_string(), resized));
    }
    Ok(loaded)
}
