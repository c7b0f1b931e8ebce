//! Grader for chapter 9: labels from paths, then the split size.

use crate::ch09_tutorial::{get_label, train_size};

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
