//! Grader for chapter 9: labels from paths, the split size, then the class weights.

use crate::ch09_tutorial::{class_weights, get_label, train_size};

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
        assert_eq!(
            get_label(path),
            label,
            "get_label({path:?}) should be {label}: the class is the folder just above the file"
        );
    }
    assert_eq!(
        cxr::ch09_tutorial::get_label("a/PNEUMONIA/b.jpeg"),
        get_label("a/PNEUMONIA/b.jpeg")
    );
}

#[test]
fn instruction_2_split_size() {
    assert_eq!(
        train_size(5232),
        4200,
        "the tutorial trains on 4,200 of its 5,232 images"
    );
    for total in [16, 100, 1000, 5856] {
        assert_eq!(
            train_size(total),
            cxr::ch09_tutorial::train_size(total),
            "train_size({total}): scale 4200 / 5232 and round to the nearest image"
        );
    }
}

#[test]
fn instruction_3_class_weights() {
    let [w0, w1] = class_weights(1349, 3883);
    assert!(
        (w0 - 1.9391).abs() < 1e-3 && (w1 - 0.6737).abs() < 1e-3,
        "class_weights(1349, 3883) is [{w0:.4}, {w1:.4}]; the tutorial prints 1.94 and 0.67. \
         Hint: (1 / count) * total / 2 for each class"
    );
    for (normal, pneumonia) in [(10, 30), (266, 711), (50, 50)] {
        let [w0, w1] = class_weights(normal, pneumonia);
        let [e0, e1] = cxr::ch09_tutorial::class_weights(normal, pneumonia);
        assert!(
            (w0 - e0).abs() < 1e-9 && (w1 - e1).abs() < 1e-9,
            "class_weights({normal}, {pneumonia}) is [{w0}, {w1}], expected [{e0}, {e1}]"
        );
        let (n0, n1) = (normal as f64 * w0, pneumonia as f64 * w1);
        assert!(
            (n0 - n1).abs() < 1e-9,
            "weighted, both classes should count the same"
        );
    }
}
