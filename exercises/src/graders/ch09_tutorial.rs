//! Grader for chapter 9: labels from paths, the split size, the class weights, then the
//! model's two blocks, judged by the model they build against Keras's counts.

use cxr::nn::Sequential;
use cxr::nn::layers::{Conv2D, Dense, Dropout, Flatten, MaxPool2D, Rescaling};

use crate::ch09_tutorial::{class_weights, conv_block, dense_block, get_label, train_size};

#[test]
fn instruction_1_label_from_the_path() {
    let cases = [
        (
            "gs://download.tensorflow.org/data/ChestXRay2017/train/PNEUMONIA/person1_bacteria_1.jpeg",
            1,
        ),
        (
            "gs://download.tensorflow.org/data/ChestXRay2017/train/NORMAL/IM-0115-0001.jpeg",
            0,
        ),
        (
            "data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg",
            1,
        ),
        ("PNEUMONIA/NORMAL/x.jpeg", 0),
        ("NORMAL/PNEUMONIA/x.jpeg", 1),
        ("x.jpeg", 0),
    ];
    for (path, label) in cases {
        let got = get_label(path);
        assert!(
            got == label,
            "get_label({path:?}) is {got}, but the class of a file is the folder just above \
             it. Hint: path.split('/') gives the parts; the file name is the last one, its \
             folder the one before (and a path without a folder is not PNEUMONIA)"
        );
    }
}

#[test]
fn instruction_2_split_size() {
    let whole = train_size(5232);
    assert!(
        whole == 4200,
        "train_size(5232) is {whole}: scaled to its own 5,232 images, the tutorial's split \
         must give back its own training size. Hint: total x 4200 / 5232"
    );
    for total in [16, 100, 1000, 5856] {
        let got = train_size(total);
        assert!(
            got == cxr::ch09_tutorial::train_size(total),
            "train_size({total}) is {got}. Hint: scale 4200 / 5232 to {total} in f64 and round \
             to the nearest image (.round(), not the truncating `as usize` alone)"
        );
    }
}

#[test]
fn instruction_3_class_weights() {
    let [w0, w1] = class_weights(1349, 3883);
    assert!(
        (w0 - 1.9391).abs() < 1e-3 && (w1 - 0.6737).abs() < 1e-3,
        "class_weights(1349, 3883) is [{w0:.4}, {w1:.4}], not the tutorial's weights. Hint: \
         each class's weight is (1 / its count) * total / 2, so the rarer class (NORMAL) \
         weighs more than 1 and the commoner less"
    );
    for (normal, pneumonia) in [(10, 30), (266, 711), (50, 50)] {
        let [w0, w1] = class_weights(normal, pneumonia);
        let [e0, e1] = cxr::ch09_tutorial::class_weights(normal, pneumonia);
        assert!(
            (w0 - e0).abs() < 1e-9 && (w1 - e1).abs() < 1e-9,
            "class_weights({normal}, {pneumonia}) is [{w0}, {w1}]. Hint: (1 / count) * \
             total / 2, with total = normal + pneumonia, in f64"
        );
        let (n0, n1) = (normal as f64 * w0, pneumonia as f64 * w1);
        assert!(
            (n0 - n1).abs() < 1e-9,
            "weighted, both classes should count the same"
        );
    }
}

/// The tutorial's `build_model()` at 180 x 180, around the learner's two blocks.
fn model_with_your_blocks() -> cxr::Result<Sequential> {
    let mut model = Sequential::new("xray_cnn", [3, 180, 180]);
    model.add("rescaling", Rescaling::new(1.0 / 255.0))?;
    model.add("conv1", Conv2D::new(16, 3).relu().padding_same())?;
    model.add("conv2", Conv2D::new(16, 3).relu().padding_same())?;
    model.add("pool", MaxPool2D::new())?;
    for (block, filters) in [(1, 32), (2, 64), (3, 128), (4, 256)] {
        conv_block(&mut model, block, filters)?;
        if block >= 3 {
            model.add(format!("block{block}_dropout"), Dropout::new(0.2))?;
        }
    }
    model.add("flatten", Flatten)?;
    for (block, units, rate) in [(1, 512, 0.7), (2, 128, 0.5), (3, 64, 0.3)] {
        dense_block(&mut model, block, units, rate)?;
    }
    model.add("output", Dense::new(1))?;
    Ok(model)
}

#[test]
fn instruction_4_conv_block_and_dense_block() {
    let model = match model_with_your_blocks() {
        Ok(model) => model,
        Err(e) => panic!(
            "the model with your blocks does not build: {e}. Hint: each layer takes the \
             shape the previous one gives; `padding_same()` keeps the height and width"
        ),
    };
    let yours = model.summary();
    let keras = cxr::nn::xray_cnn(Default::default()).unwrap().summary();
    let kinds = |s: &cxr::nn::Summary, prefix: &str| -> Vec<String> {
        s.rows
            .iter()
            .filter(|r| r.name.starts_with(prefix))
            .map(|r| r.kind.clone())
            .collect()
    };
    assert!(
        kinds(&yours, "block1_") == kinds(&keras, "block1_"),
        "your conv block's layers are {:?}. A conv block is SeparableConv2D, SeparableConv2D, BatchNormalization, MaxPool2D, in \
         that order: two convolutions find patterns, the batch normalisation rescales \
         their outputs, and pooling halves the image",
        kinds(&yours, "block1_")
    );
    assert!(
        kinds(&yours, "dense1") == kinds(&keras, "dense1"),
        "your dense block's layers are {:?}. A dense block is Dense, BatchNormalization, \
         Dropout: the dense layer computes, batch normalisation rescales, dropout silences \
         a share of the units in training",
        kinds(&yours, "dense1")
    );
    assert!(
        yours.non_trainable_params() == keras.non_trainable_params(),
        "non-trainable parameters: each batch normalisation keeps two running averages per \
         channel (mean and variance) that no gradient trains; one per block"
    );
    assert!(
        yours.total_params() == keras.total_params(),
        "parameters: your model's count differs from Keras's. A separable convolution has \
         9 x C_in depthwise weights, C_in x C_out pointwise ones and C_out biases; a \
         dense layer units x (inputs + 1); check the filters and units you pass on"
    );
    let names =
        |s: &cxr::nn::Summary| -> Vec<String> { s.rows.iter().map(|r| r.name.clone()).collect() };
    assert!(
        names(&yours) == names(&keras),
        "the layers' names: block{{block}}_sepconv1, _sepconv2, _bn, _pool and \
         dense{{block}}, dense{{block}}_bn, dense{{block}}_dropout, so that saved weights find \
         their layers"
    );
}
