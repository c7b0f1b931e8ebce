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

use cxr::nn::Sequential;
use cxr::nn::layers::{BatchNormalization, Dense, Dropout, MaxPool2D, SeparableConv2D};

/// The tutorial's `conv_block(filters)`, as block number `block` of `model`.
pub fn conv_block(model: &mut Sequential, block: usize, filters: usize) -> cxr::Result<()> {
    let sepconv = SeparableConv2D::new(filters, 3).relu().padding_same();
    model.add(format!("block{block}_sepconv1"), sepconv)?;
    model.add(format!("block{block}_sepconv2"), sepconv)?;
    model.add(format!("block{block}_bn"), BatchNormalization::new())?;
    model.add(format!("block{block}_pool"), MaxPool2D::new())?;
    Ok(())
}

/// The tutorial's `dense_block(units, dropout_rate)`, as dense block number `block`.
pub fn dense_block(
    model: &mut Sequential,
    block: usize,
    units: usize,
    dropout_rate: f32,
) -> cxr::Result<()> {
    model.add(format!("dense{block}"), Dense::new(units).relu())?;
    model.add(format!("dense{block}_bn"), BatchNormalization::new())?;
    model.add(format!("dense{block}_dropout"), Dropout::new(dropout_rate))?;
    Ok(())
}
