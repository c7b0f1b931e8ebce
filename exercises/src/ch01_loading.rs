//! Chapter 1: load chest X-rays and resize them, then every X-ray a CSV lists.
//!
//! The lesson is in the book (`chapters/ch01-loading.md`). Check your work with
//! `cargo test --release -p cxr-exercises ch01`; the grader is `src/graders/ch01_loading.rs`.

use std::path::Path;

use cxr::prelude::*;

/// The list of X-rays (`file,label,patient_id`). Paths here are relative to the
/// `exercises/` folder, because that is where `cargo test --release -p cxr-exercises` runs.
pub const CSV_PATH: &str = "../data/chest_xray/val.csv";

// TODO (instruction 1): the folder that holds the images listed in CSV_PATH, as a relative
// path like CSV_PATH. Each `file` in the CSV, e.g. "NORMAL/NORMAL2-IM-1427-0001.jpeg", is
// relative to this folder.
pub const IMG_PATH: &str = "";

// TODO (instruction 2): the size, (width, height), that every X-ray is resized to: 150 x 150.
pub const IMG_SIZE: (u32, u32) = (0, 0);

/// Opens one file listed in the CSV and resizes it, as the lesson's
/// `Image.open(os.path.join(IMG_PATH, file)).resize(IMG_SIZE)`: returns the original and
/// the resized X-ray. Nothing to change here.
pub fn load_and_resize(file: &str) -> Result<(XRay, XRay)> {
    ch01_loading::load_xray(Path::new(IMG_PATH).join(file), IMG_SIZE)
}

/// Every X-ray the CSV lists, in the CSV's order, as `(label, resized X-ray)`.
pub fn load_all() -> Result<Vec<(String, XRay)>> {
    // TODO (instruction 3): read CSV_PATH with `read_csv(CSV_PATH)?`; take its "file"
    // and "label" columns (`table.column("file")?.str()?` gives the values, each an
    // `Option<&str>`); open and resize each file with `load_and_resize`, and keep its
    // label with the resized X-ray (the second of the pair).
    let mut loaded = Vec::new();
    let _ = &mut loaded;
    Ok(loaded)
}
