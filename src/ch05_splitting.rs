#![doc = include_str!("../chapters/ch05-splitting.md")]

use std::path::Path;

use linfa::dataset::Records;

use crate::Result;
use crate::data::{Split, SplitOptions, SynthOptions, synth_plan, train_val_test_split};
use crate::plot::{Figure, Panel, grid};

pub use crate::data::{IRIS_CLASSES, Table, load_iris, merge_data};

/// The lesson's ratio of train, validation and test: 7 : 1.5 : 1.5.
pub const SPLIT_RATIO: [f64; 3] = [0.7, 0.15, 0.15];

/// The seed of every split in this chapter.
pub const SEED: u64 = 42;

/// How many samples of each class a data set holds.
pub fn class_counts(data: &Table, n_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; n_classes];
    for &label in data.targets() {
        counts[label] += 1;
    }
    counts
}

/// Iris split by `split_ratio`, stratified by class: the split and the three merged
/// parts, train, validation and test.
pub fn split_iris(split_ratio: [f64; 3]) -> Result<(Split, [Table; 3])> {
    crate::data::split_iris(split_ratio, SEED)
}

/// What a random split of X-rays does to patients, against a split by patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientLeak {
    /// Images in the table.
    pub images: usize,
    /// Distinct patients.
    pub patients: usize,
    /// Patients with more than one image.
    pub with_several_images: usize,
    /// Patients found in two parts after a random split.
    pub leaked_by_random_split: usize,
    /// The same after a split by patient (always 0).
    pub leaked_by_patient_split: usize,
    /// Sizes of train, val and test in the split by patient.
    pub patient_split_sizes: [usize; 3],
}

/// Splits the file table of a generated data set of `n` images (patients with one or two
/// images, as in Kermany's data) both ways and counts the patients that end up in two
/// parts. Only names are generated, no pixels.
pub fn patient_leak(n: usize, split_ratio: [f64; 3]) -> Result<PatientLeak> {
    let files = synth_plan(&SynthOptions {
        n,
        seed: SEED,
        ..SynthOptions::default()
    });
    let patients: Vec<String> = files
        .iter()
        .map(|f| format!("{}-{}", f.label.name(), f.patient_id))
        .collect();
    let labels: Vec<usize> = files.iter().map(|f| f.label.index()).collect();
    let mut images_per_patient = std::collections::HashMap::<&str, usize>::new();
    for p in &patients {
        *images_per_patient.entry(p).or_default() += 1;
    }
    let random = train_val_test_split(n, split_ratio, &SplitOptions::seeded(SEED))?;
    let by_patient = SplitOptions::seeded(SEED)
        .stratify(&labels)
        .groups(&patients);
    let grouped = train_val_test_split(n, split_ratio, &by_patient)?;
    Ok(PatientLeak {
        images: n,
        patients: images_per_patient.len(),
        with_several_images: images_per_patient.values().filter(|&&c| c > 1).count(),
        leaked_by_random_split: random.leaked_groups(&patients),
        leaked_by_patient_split: grouped.leaked_groups(&patients),
        patient_split_sizes: grouped.sizes(),
    })
}

/// The chapter's figure: iris's class counts in each part, and the patients a random
/// split leaks.
pub fn split_figure(parts: &[Table; 3], leak: &PatientLeak) -> Result<Figure> {
    let counts: Vec<Vec<usize>> = parts.iter().map(|p| class_counts(p, 3)).collect();
    let bars: Vec<Vec<(&str, f64)>> = counts
        .iter()
        .map(|c| {
            IRIS_CLASSES
                .iter()
                .zip(c)
                .map(|(n, &v)| (*n, v as f64))
                .collect()
        })
        .collect();
    let titles: Vec<String> = ["train", "validation", "test"]
        .iter()
        .zip(parts)
        .map(|(name, p)| format!("iris {name}: {} flowers", p.nsamples()))
        .collect();
    let leak_bars = [
        ("random split", leak.leaked_by_random_split as f64),
        ("by patient", leak.leaked_by_patient_split as f64),
    ];
    let leak_title = format!("patients in two parts ({} images)", leak.images);
    let mut panels: Vec<Panel> = titles
        .iter()
        .zip(&bars)
        .map(|(title, bars)| Panel::Bars {
            title,
            unit: "flowers",
            bars,
        })
        .collect();
    panels.push(Panel::Bars {
        title: &leak_title,
        unit: "patients",
        bars: &leak_bars,
    });
    grid(2, &panels)
}

/// Runs the lesson: splits iris 7 : 1.5 : 1.5, prints each part's shape and class
/// counts, counts the patients a random X-ray split leaks, and draws the figure.
pub fn run(out: &Path) -> Result<Vec<String>> {
    let (_, parts) = split_iris(SPLIT_RATIO)?;
    let mut report = vec![format!(
        "iris: {} flowers, 4 features, 3 classes",
        load_iris().nsamples()
    )];
    for (name, part) in ["train", "val", "test"].iter().zip(&parts) {
        report.push(format!(
            "{name:>5}: x {:?}, y {:?}, per class {:?}",
            part.records().shape(),
            part.targets().shape(),
            class_counts(part, 3)
        ));
    }
    let leak = patient_leak(2000, SPLIT_RATIO)?;
    report.push(format!(
        "generated X-ray table: {} images of {} patients ({} with two images); a random split puts {} patients in two parts, a split by patient {}",
        leak.images,
        leak.patients,
        leak.with_several_images,
        leak.leaked_by_random_split,
        leak.leaked_by_patient_split
    ));
    let figure = out.join("ch05-split.png");
    split_figure(&parts, &leak)?.save(&figure)?;
    report.push(format!("figure: {}", figure.display()));
    Ok(report)
}
