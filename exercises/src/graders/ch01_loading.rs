//! Grader for chapter 1: one test per instruction of the lesson.

use std::path::Path;

use cxr::prelude::*;

use crate::ch01_loading::{CSV_PATH, IMG_PATH, IMG_SIZE, load_and_resize};

/// The files the CSV lists, relative to the image folder.
fn listed_files() -> Vec<String> {
    let table = read_csv(CSV_PATH).unwrap_or_else(|e| panic!("CSV_PATH must stay as it was: {e}"));
    let column = table.column("file").and_then(|c| c.str().cloned());
    let files = column.unwrap_or_else(|e| panic!("{CSV_PATH} has no `file` column: {e}"));
    files.iter().flatten().map(str::to_owned).collect()
}

#[test]
fn instruction_1_img_path() {
    assert!(
        Path::new(IMG_PATH).is_dir(),
        "IMG_PATH = {IMG_PATH:?} is not a folder, seen from exercises/ where the grader runs.\n\
         Hint: CSV_PATH is {CSV_PATH:?}; the images sit in the folder beside that file, named like it without \".csv\"."
    );
    for file in listed_files() {
        let loaded = load_and_resize(&file);
        assert!(
            !matches!(loaded, Err(Error::NotFound { .. })),
            "IMG_PATH = {IMG_PATH:?} is a folder, but {file} (listed in CSV_PATH) is not in it.\n\
             Hint: the CSV's paths start with the class folder (NORMAL/ or PNEUMONIA/): IMG_PATH is the folder above those."
        );
    }
}

#[test]
fn instruction_2_img_size() {
    assert_eq!(
        IMG_SIZE,
        (150, 150),
        "IMG_SIZE is {IMG_SIZE:?}; the lesson asks for 150 x 150, written (width, height)."
    );
    // The size must also be what the loading code produces, whatever IMG_PATH says.
    let xray = XRay::open("../data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg")
        .unwrap_or_else(|e| panic!("the bundled X-ray should open: {e}"));
    let resized = xray.resize(IMG_SIZE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resized.size(),
        (150, 150),
        "resizing with IMG_SIZE gave {:?}",
        resized.size()
    );
    assert_eq!(
        resized.original_size(),
        (1776, 1416),
        "the original size is kept for comparison"
    );
}
