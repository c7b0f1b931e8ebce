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
    assert!(
        IMG_SIZE == (150, 150),
        "IMG_SIZE is {IMG_SIZE:?}, not the size instruction 2 asks for.\n\
         Hint: a size is (width, height) in pixels, and a square has the same two numbers."
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

#[test]
fn instruction_3_load_every_listed_xray() {
    let loaded = crate::ch01_loading::load_all()
        .unwrap_or_else(|e| panic!("load_all failed: {e}. Hint: IMG_PATH must be right first"));
    let files = listed_files();
    assert!(
        loaded.len() == files.len(),
        "load_all returned {} X-rays; CSV_PATH lists {}. Hint: one (label, X-ray) per row of the CSV",
        loaded.len(),
        files.len()
    );
    for ((label, xray), file) in loaded.iter().zip(&files) {
        let folder = file.split('/').next().unwrap_or_default();
        assert!(
            label == folder,
            "the X-ray in row {file} got the label {label:?}, but the CSV's label column says it \
             is in the {folder} class. Hint: take each row's label from the \"label\" column, \
             zipped with the \"file\" column so that rows stay together"
        );
        assert!(
            xray.size() == IMG_SIZE && xray.original_size() != IMG_SIZE,
            "{file} is {:?} in your list. Hint: load_and_resize returns (original, resized); keep the resized one",
            xray.size()
        );
        let expected = cxr::ch01_loading::load_xray(Path::new(IMG_PATH).join(file), IMG_SIZE)
            .unwrap_or_else(|e| panic!("{e}"))
            .1;
        assert!(
            xray.image().as_bytes() == expected.image().as_bytes(),
            "the X-ray listed as {file} is not the one in that file (is the list in the CSV's order?)"
        );
    }
}
