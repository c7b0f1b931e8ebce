//! Grader for chapter 4: the two blocks of the instruction, then the whole model.

use crate::ch04_vgg::{BLOCKS, build_vgg16};

#[test]
fn instruction_1_third_block() {
    assert_eq!(
        BLOCKS[2],
        (3, 256),
        "the third block is {:?}. Hint: in the table, block 3 is three conv3 layers with 256 filters each.",
        BLOCKS[2]
    );
}

#[test]
fn instruction_1_fourth_block() {
    assert_eq!(
        BLOCKS[3],
        (3, 512),
        "the fourth block is {:?}. Hint: block 4 doubles block 3's filters and keeps three layers.",
        BLOCKS[3]
    );
}

#[test]
fn instruction_1_the_whole_model_is_vgg16() {
    let model = build_vgg16().unwrap_or_else(|e| panic!("the model cannot be built: {e}"));
    let summary = model.summary();
    let convs = summary.rows.iter().filter(|r| r.kind == "Conv2D").count();
    assert_eq!(
        convs, 13,
        "VGG16 has 13 convolutions (and 3 dense layers), this model has {convs}"
    );
    assert_eq!(
        summary.total_params(),
        138_357_544,
        "VGG16 has 138,357,544 parameters, this model has {}",
        summary.total_params()
    );
}
