//! Grader for chapter 4: the two blocks of the instruction, then the whole model.

use crate::ch04_vgg::{BLOCKS, build_vgg16};

#[test]
fn instruction_1_third_block() {
    assert!(
        BLOCKS[2] == (3, 256),
        "the third block is {:?}. Hint: count the conv3 rows of block 3 in the lesson's table, \
         and read their number of filters (the number after conv3).",
        BLOCKS[2]
    );
}

#[test]
fn instruction_1_fourth_block() {
    assert!(
        BLOCKS[3] == (3, 512),
        "the fourth block is {:?}. Hint: as for block 3, count block 4's conv3 rows in the \
         table; each block up to the fourth doubles the filters of the one before.",
        BLOCKS[3]
    );
}

#[test]
fn instruction_1_the_whole_model_is_vgg16() {
    let model = build_vgg16().unwrap_or_else(|e| panic!("the model cannot be built: {e}"));
    let summary = model.summary();
    let convs = summary.rows.iter().filter(|r| r.kind == "Conv2D").count();
    assert!(
        convs == 13,
        "this model has {convs} convolutions; the 16 of VGG16 are its convolutions and its 3 \
         dense layers"
    );
    assert!(
        summary.total_params() == 138_357_544,
        "this model has {} parameters, not Keras's VGG16's (see the chapter's summary)",
        summary.total_params()
    );
}

#[test]
fn instruction_2_a_block_with_the_layer_api() {
    use cxr::nn::{Sequential, VggConfig, vgg};

    use crate::ch04_vgg::add_block;

    // VGG16's true layout, so that this instruction is graded on its own.
    let layout = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)];
    let mut model = Sequential::new("vgg16", [3, 224, 224]);
    for (b, &(convs, filters)) in layout.iter().enumerate() {
        add_block(&mut model, b + 1, convs, filters).unwrap_or_else(|e| {
            panic!(
                "add_block(model, {}, {convs}, {filters}) failed: {e}",
                b + 1
            )
        });
    }
    let ours = model.summary();
    let reference = vgg(VggConfig {
        include_top: false,
        ..VggConfig::vgg16()
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .summary();
    assert!(
        !ours.rows.is_empty(),
        "add_block added no layers. Hint: model.add(format!(\"block{{block}}_conv{{i}}\"), \
         Conv2D::new(filters, 3).relu().padding_same())?"
    );
    for (i, want) in reference.rows.iter().enumerate() {
        let Some(got) = ours.rows.get(i) else {
            panic!(
                "your model stops after {} layers; layer {} should be {} ({}). Hint: each block \
                 is `convs` convolutions and then one pool",
                ours.rows.len(),
                i + 1,
                want.name,
                want.kind
            );
        };
        assert!(
            got.kind == want.kind,
            "layer {} is a {}, Keras's VGG16 has a {} there ({}). Hint: each block is `convs` \
             convolutions and then one pool",
            i + 1,
            got.kind,
            want.kind,
            want.name
        );
        assert!(
            got.output_shape == want.output_shape,
            "{} gives maps of {:?} (channels, height, width), Keras's gives {:?}. Hint: with \
             padding \"same\" a 3 x 3 convolution keeps the height and width; only the pool halves them",
            got.name,
            got.output_shape,
            want.output_shape
        );
        assert!(
            got.name == want.name,
            "layer {} is named {:?}; the weights' names follow Keras: {:?}",
            i + 1,
            got.name,
            want.name
        );
    }
    assert!(
        ours.rows.len() == reference.rows.len(),
        "your model has {} layers after VGG16's last pool",
        ours.rows.len() - reference.rows.len()
    );
    // Keras 3.15's VGG16(include_top=False) (tests/fixtures/keras/models.json).
    assert!(
        ours.total_params() == 14_714_688,
        "the blocks hold {} parameters, Keras's hold 14,714,688. Hint: a 3 x 3 convolution \
         from c to f channels has (3 * 3 * c + 1) * f; do all of yours have ReLU and a bias?",
        ours.total_params()
    );
}
