//! Chapter 9, reference solution.

/// 1 for an X-ray in a `PNEUMONIA` folder, 0 otherwise.
pub fn get_label(file_path: &str) -> u8 {
    let parts: Vec<&str> = file_path.split('/').collect();
    if parts.len() >= 2 && parts[parts.len() - 2] == "PNEUMONIA" {
        1
    } else {
        0
    }
}

/// How many of `total` images go to training in the tutorial's split, scaled.
pub fn train_size(total: usize) -> usize {
    (total as f64 * 4200.0 / 5232.0).round() as usize
}
