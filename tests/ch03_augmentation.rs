//! Chapter 3: what each transform does, checked by properties on known patterns; the
//! generator's batches, labels and seeds; the generated data set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cxr::data::{ClassMode, FlowOptions, ImageDataGenerator, SynthOptions, write_dataset};
use cxr::imaging::{FillMode, FloatImage, IDENTITY, affine_transform, keras_transform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common;
use common::max_abs_diff;

/// A gray image whose value at (r, c) is `r * 100 + c`: every pixel says where it came from.
fn coordinates(height: usize, width: usize) -> FloatImage {
    let mut image = FloatImage::filled(height, width, 1, 0.0);
    for r in 0..height {
        for c in 0..width {
            image.data[r * width + c] = (r * 100 + c) as f32;
        }
    }
    image
}

#[test]
fn flips_move_pixels_exactly() {
    let image = coordinates(4, 6);
    assert_eq!(image.flip_horizontal().get(1, 0, 0), image.get(1, 5, 0));
    assert_eq!(image.flip_vertical().get(0, 2, 0), image.get(3, 2, 0));
    assert_eq!(image.flip_vertical().flip_vertical(), image);
}

#[test]
fn a_90_degree_rotation_is_a_pure_permutation() {
    // Keras's matrix in (row, column) coordinates: output (r, c) samples input (n-1-c, r).
    let n = 7;
    let image = coordinates(n, n);
    let matrix = keras_transform(90.0, 0.0, 0.0, 1.0, 1.0, n, n);
    let rotated = affine_transform(&image, &matrix, FillMode::Constant(-1.0));
    for r in 0..n {
        for c in 0..n {
            let expected = image.get(n - 1 - c, r, 0);
            assert!((rotated.get(r, c, 0) - expected).abs() < 1e-3, "({r}, {c})");
        }
    }
}

#[test]
fn a_width_shift_moves_content_by_the_fraction_of_the_width() {
    let image = coordinates(5, 20);
    // ty = 0.25 * 20 = 5 columns: output (r, c) shows input (r, c + 5).
    let matrix = keras_transform(0.0, 0.0, 0.25 * 20.0, 1.0, 1.0, 5, 20);
    let shifted = affine_transform(&image, &matrix, FillMode::Nearest);
    for r in 0..5 {
        for c in 0..15 {
            assert_eq!(shifted.get(r, c, 0), image.get(r, c + 5, 0));
        }
        for c in 15..20 {
            assert_eq!(
                shifted.get(r, c, 0),
                image.get(r, 19, 0),
                "nearest repeats the edge"
            );
        }
    }
}

#[test]
fn fill_modes_extend_the_image_as_named() {
    let image = coordinates(1, 4); // values 0 1 2 3
    let shift = |ty: f64, fill| {
        affine_transform(&image, &keras_transform(0.0, 0.0, ty, 1.0, 1.0, 1, 4), fill).data
    };
    assert_eq!(shift(2.0, FillMode::Constant(9.0)), [2.0, 3.0, 9.0, 9.0]);
    assert_eq!(shift(2.0, FillMode::Nearest), [2.0, 3.0, 3.0, 3.0]);
    assert_eq!(shift(2.0, FillMode::Reflect), [2.0, 3.0, 3.0, 2.0]);
    assert_eq!(shift(2.0, FillMode::Wrap), [2.0, 3.0, 0.0, 1.0]);
    assert_eq!(shift(-3.0, FillMode::Reflect), [2.0, 1.0, 0.0, 0.0]);
}

#[test]
fn rotation_keeps_the_mass_of_a_centred_object() {
    let n = 41;
    let mut image = FloatImage::filled(n, n, 1, 0.0);
    for r in 0..n {
        for c in 0..n {
            let d2 = (r as f32 - 20.0).powi(2) + (c as f32 - 20.0).powi(2);
            image.data[r * n + c] = 100.0 * (-d2 / 40.0).exp();
        }
    }
    let mass = |x: &FloatImage| x.data.iter().sum::<f32>();
    for theta in [7.0, 30.0, 45.0, 133.0] {
        let rotated = affine_transform(
            &image,
            &keras_transform(theta, 0.0, 0.0, 1.0, 1.0, n, n),
            FillMode::Constant(0.0),
        );
        let ratio = mass(&rotated) / mass(&image);
        assert!(
            (ratio - 1.0).abs() < 0.01,
            "{theta} degrees: mass ratio {ratio}"
        );
    }
    assert_eq!(
        affine_transform(&image, &IDENTITY, FillMode::Nearest),
        image
    );
}

#[test]
fn a_zoom_above_one_zooms_out_about_the_centre() {
    let image = coordinates(9, 9);
    let zoomed = affine_transform(
        &image,
        &keras_transform(0.0, 0.0, 0.0, 2.0, 2.0, 9, 9),
        FillMode::Constant(0.0),
    );
    assert_eq!(zoomed.get(4, 4, 0), image.get(4, 4, 0), "the centre stays");
    assert_eq!(
        zoomed.get(5, 6, 0),
        image.get(6, 8, 0),
        "one step out samples two steps out"
    );
}

#[test]
fn random_parameters_stay_in_their_ranges_and_flips_happen_half_the_time() {
    let generator = ImageDataGenerator::new()
        .rotation_range(20.0)
        .width_shift_range(0.1)
        .height_shift_range(0.2)
        .zoom_range(0.15)
        .horizontal_flip(true);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut flips = 0;
    for _ in 0..2000 {
        let t = generator.random_transform_params(100, 50, &mut rng);
        assert!(t.theta.abs() <= 20.0 && t.tx.abs() <= 20.0 && t.ty.abs() <= 5.0);
        assert!((0.85..=1.15).contains(&t.zx) && (0.85..=1.15).contains(&t.zy));
        assert!(!t.flip_vertical);
        flips += usize::from(t.flip_horizontal);
    }
    assert!((900..1100).contains(&flips), "{flips} flips in 2000");
}

fn lesson_three_folder(root: &Path) {
    // Lesson 3's layout: dataset/normal and dataset/opacity, lower case.
    for (class, files) in [
        (
            "normal",
            [
                "NORMAL/NORMAL2-IM-1427-0001.jpeg",
                "NORMAL/NORMAL2-IM-1430-0001.jpeg",
            ],
        ),
        (
            "opacity",
            [
                "PNEUMONIA/person1946_bacteria_4874.jpeg",
                "PNEUMONIA/person1947_bacteria_4876.jpeg",
            ],
        ),
    ] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for f in files {
            let from = Path::new("data/chest_xray/val").join(f);
            std::fs::copy(&from, root.join(class).join(from.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn flow_from_directory_numbers_classes_alphabetically_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    lesson_three_folder(dir.path());
    let generator = ImageDataGenerator::new()
        .rescale(1.0 / 255.0)
        .horizontal_flip(true)
        .rotation_range(10.0);
    let options = FlowOptions {
        target_size: (32, 48),
        batch_size: 3,
        seed: 5,
        ..Default::default()
    };
    let flow = generator.flow_from_directory(dir.path(), options).unwrap();
    let expected: BTreeMap<String, usize> =
        [("normal".to_string(), 0), ("opacity".to_string(), 1)].into();
    assert_eq!(flow.class_indices(), &expected);
    assert_eq!((flow.samples(), flow.len()), (4, 2));

    let batches: Vec<_> = flow.epoch(0).collect::<Result<_, _>>().unwrap();
    assert_eq!(batches[0].x.dims(), &[3, 32, 48, 3]);
    assert_eq!(
        batches[1].x.dims(),
        &[1, 32, 48, 3],
        "the last batch holds the rest"
    );
    let max = batches[0].x.max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max <= 1.0 && max > 0.3, "rescaled: {max}");
    let seen: BTreeSet<_> = batches.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(seen.len(), 4, "an epoch shows every image once");
    for batch in &batches {
        let labels = batch.y.to_vec1::<f32>().unwrap();
        for (path, label) in batch.paths.iter().zip(labels) {
            let folder = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(label, if folder == "opacity" { 1.0 } else { 0.0 });
        }
    }
    // The same seed gives the same batches, bit for bit; another epoch another order.
    let again = flow.batch(0, 0).unwrap();
    assert_eq!(again.paths, batches[0].paths);
    let diff = max_abs_diff(&again.x, &batches[0].x);
    assert_eq!(diff, 0.0);
    let orders: BTreeSet<Vec<usize>> = (0..6).map(|e| flow.order(e)).collect();
    assert!(
        orders.len() > 1,
        "shuffling changes the order between epochs"
    );

    let categorical = ImageDataGenerator::new()
        .flow_from_directory(
            dir.path(),
            FlowOptions {
                class_mode: ClassMode::Categorical,
                shuffle: false,
                batch_size: 4,
                target_size: (8, 8),
                ..Default::default()
            },
        )
        .unwrap();
    let batch = categorical.batch(0, 0).unwrap();
    assert_eq!(
        batch.y.to_vec2::<f32>().unwrap(),
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    );
    assert_eq!(batch.x_channels_first().unwrap().dims(), &[4, 3, 8, 8]);
}

#[test]
fn flow_from_directory_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("normal")).unwrap();
    let generator = ImageDataGenerator::new();
    assert!(matches!(
        generator.flow_from_directory(dir.path(), FlowOptions::default()),
        Err(cxr::Error::EmptyFolder { .. })
    ));
    lesson_three_folder(dir.path());
    let zero = FlowOptions {
        batch_size: 0,
        ..Default::default()
    };
    assert!(generator.flow_from_directory(dir.path(), zero).is_err());
    let flow = generator
        .flow_from_directory(dir.path(), FlowOptions::default())
        .unwrap();
    assert!(
        flow.batch(0, 5)
            .unwrap_err()
            .to_string()
            .contains("an epoch has 1 batches")
    );
    std::fs::write(dir.path().join("normal/broken.jpeg"), b"not a jpeg").unwrap();
    let flow = generator
        .flow_from_directory(
            dir.path(),
            FlowOptions {
                shuffle: false,
                ..Default::default()
            },
        )
        .unwrap();
    let err = flow.batch(0, 0).unwrap_err().to_string();
    assert!(err.contains("broken.jpeg"), "{err}");
}

#[test]
fn the_generated_set_is_repeatable_grouped_by_patient_and_kermany_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let options = SynthOptions {
        n: 300,
        size: 64,
        seed: 9,
        ..Default::default()
    };
    let summary = write_dataset(dir.path(), options).unwrap();
    assert_eq!(summary.files.len(), 300);
    let pneumonia: usize = summary
        .counts
        .iter()
        .filter(|(_, l, _)| *l == cxr::data::Label::Pneumonia)
        .map(|c| c.2)
        .sum();
    assert!(
        (190..260).contains(&pneumonia),
        "about 74% pneumonia: {pneumonia}"
    );
    let train: usize = summary
        .counts
        .iter()
        .filter(|(s, _, _)| s == "train")
        .map(|c| c.2)
        .sum();
    assert!((200..280).contains(&train), "about 80% in train: {train}");
    // Every file is a readable image of the asked size, with a Kermany-style patient id.
    let scan = cxr::data::scan_folder(dir.path(), cxr::data::ScanOptions::default()).unwrap();
    assert_eq!(scan.frame.height(), 300);
    let splits = scan.frame.column("split").unwrap().str().unwrap().clone();
    let patients = scan
        .frame
        .column("patient_id")
        .unwrap()
        .str()
        .unwrap()
        .clone();
    let labels = scan.frame.column("label").unwrap().str().unwrap().clone();
    let mut split_of = BTreeMap::new();
    for ((split, patient), label) in splits.iter().zip(patients.iter()).zip(labels.iter()) {
        let key = (
            label.unwrap().to_string(),
            patient
                .expect("every generated file names its patient")
                .to_string(),
        );
        let previous = split_of.insert(key.clone(), split.unwrap().to_string());
        assert!(
            previous.is_none_or(|p| p == split.unwrap()),
            "patient {key:?} in two splits"
        );
    }
    assert!(
        std::fs::read_to_string(dir.path().join("README.md"))
            .unwrap()
            .contains("not real X-rays")
    );
    // The same seed writes the same bytes.
    let again = tempfile::tempdir().unwrap();
    write_dataset(again.path(), options).unwrap();
    for file in summary.files.iter().take(20) {
        let twin = again.path().join(file.strip_prefix(dir.path()).unwrap());
        assert_eq!(std::fs::read(file).unwrap(), std::fs::read(twin).unwrap());
    }
}

#[test]
fn generated_data_is_made_once_remade_for_other_options_and_never_mixed_into_a_foreign_folder() {
    use cxr::data::ensure_generated;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let small = SynthOptions {
        n: 20,
        size: 32,
        ..Default::default()
    };
    let said = ensure_generated(&out, small).unwrap();
    assert!(said.contains("20 GENERATED images of 32 x 32"), "{said}");
    let jpegs = |dir: &std::path::Path| {
        cxr::data::labelled_files(&dir.join("train"))
            .map(|files| files.len())
            .unwrap_or(0)
    };
    let first = jpegs(&out);
    assert!(first > 0);
    // Reused as it is.
    ensure_generated(&out, small).unwrap();
    assert_eq!(jpegs(&out), first);
    // Other options: the folder is made anew, not added to.
    let larger = SynthOptions { n: 40, ..small };
    ensure_generated(&out, larger).unwrap();
    assert!(jpegs(&out) > first);
    // A folder of someone's own images is refused, and left as it was.
    let foreign = dir.path().join("mine");
    std::fs::create_dir_all(foreign.join("train")).unwrap();
    std::fs::write(foreign.join("notes.txt"), "my data").unwrap();
    let error = ensure_generated(&foreign, small).unwrap_err().to_string();
    assert!(error.contains("did not generate"), "{error}");
    assert!(foreign.join("notes.txt").is_file());
    assert!(!foreign.join("README.md").exists());
}

#[test]
fn runs_that_generate_the_same_folder_at_once_all_get_it_whole() {
    // Doctests and notebooks run side by side and ask for the same data set.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shared");
    let options = SynthOptions {
        n: 30,
        size: 32,
        ..Default::default()
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| cxr::data::ensure_generated(&out, options)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for result in results {
        result.unwrap();
    }
    let files = cxr::data::labelled_files(&out.join("train")).unwrap().len()
        + cxr::data::labelled_files(&out.join("val")).unwrap().len()
        + cxr::data::labelled_files(&out.join("test")).unwrap().len();
    assert_eq!(files, 30);
    // Nothing half-written is left beside it.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("shared")]);
}
