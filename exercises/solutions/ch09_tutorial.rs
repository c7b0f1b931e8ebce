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

/// The tutorial's class weights `[weight of NORMAL, weight of PNEUMONIA]`.
pub fn class_weights(normal: usize, pneumonia: usize) -> [f64; 2] {
    let total = (normal + pneumonia) as f64;
    [
        (1.0 / normal as f64) * total / 2.0,
        (1.0 / pneumonia as f64) * total / 2.0,
    ]
}
