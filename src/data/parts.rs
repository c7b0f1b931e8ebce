//! A data set's training, validation and test parts, decoded and ready to train on,
//! from either layout the full data set comes in (chapter 9): class folders are read as
//! they are, the tutorial's TFRecords record by record; nothing is copied on the way.

use std::path::Path;

use super::layout::{DataLayout, detect_layout};
use super::records::read_paths;
use super::samples::{Decoded, Sample, Source, decode_all};
use super::split::{SplitOptions, train_val_test_split};
use super::{Label, folder::labelled_files, patient_key};
use crate::tfrecord::{ReadOptions, read_pairs};
use crate::{Error, Result};

/// The three parts of a data set, decoded.
#[derive(Debug)]
pub struct Parts {
    /// What the model learns from.
    pub train: Vec<Sample>,
    /// What `fit` scores after every epoch.
    pub val: Vec<Sample>,
    /// What the trained model is judged on, once.
    pub test: Vec<Sample>,
    /// The validation part was set aside from the training files (the tutorial's data
    /// has no validation split): a tenth of the training patients.
    pub val_from_train: bool,
    /// Images left out as damaged (only when asked to skip them), each naming its file.
    pub skipped: Vec<Error>,
}

/// `[NORMAL, PNEUMONIA]` counts of some samples.
pub fn class_counts(samples: &[Sample]) -> [usize; 2] {
    let mut counts = [0; 2];
    samples.iter().for_each(|s| counts[s.label.index()] += 1);
    counts
}

/// The labelled sources of one split, or `None` when the data set has no such split.
fn sources(dir: &Path, split: &str) -> Result<Option<Vec<(String, Label, Source)>>> {
    let layout = match detect_layout(dir, split) {
        Ok(layout) => layout,
        Err(Error::BadArgument(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(match layout {
        DataLayout::TfRecords { images, paths } => {
            read_pairs(&images, &paths, ReadOptions::default())?
                .map(|pair| {
                    let (path, bytes) = pair?;
                    Ok((path.clone(), Label::from_path(&path), Source::Bytes(bytes)))
                })
                .collect::<Result<_>>()?
        }
        DataLayout::Folders(folder) => labelled_files(&folder)?
            .into_iter()
            .map(|(file, label)| {
                (
                    file.to_string_lossy().into_owned(),
                    label,
                    Source::File(file),
                )
            })
            .collect(),
    }))
}

/// Finds and decodes the parts of the data set under `dir` (train, val and test, as
/// [`detect_layout`] finds them), each image resized to `size` x `size`. Without a
/// validation split, a tenth of the training patients is set aside, by patient and
/// keeping the class shares, with `seed`. A damaged image is an error naming it, unless
/// `skip_damaged`: then it is left out and listed in [`Parts::skipped`].
pub fn load_parts(dir: &Path, size: usize, seed: u64, skip_damaged: bool) -> Result<Parts> {
    let train = sources(dir, "train")?.ok_or_else(|| {
        Error::BadArgument(format!(
            "{}: no training data found (train/images.tfrec or train/NORMAL, train/PNEUMONIA); fetch it with `cxr fetch`",
            dir.display()
        ))
    })?;
    let test = sources(dir, "test")?.ok_or_else(|| {
        Error::BadArgument(format!(
            "{}: no test data found (test/images.tfrec or test/NORMAL, test/PNEUMONIA)",
            dir.display()
        ))
    })?;
    let val = sources(dir, "val")?;
    let mut skipped = Vec::new();
    let mut decode = |sources| -> Result<Vec<Sample>> {
        let Decoded {
            samples,
            skipped: left_out,
        } = decode_all(sources, size, skip_damaged)?;
        skipped.extend(left_out);
        Ok(samples)
    };
    let (train, val, val_from_train) = match val {
        Some(val) => (decode(train)?, decode(val)?, false),
        None => {
            let all = decode(train)?;
            let (train, val) = set_aside_by_patient(all, seed)?;
            (train, val, true)
        }
    };
    let test = decode(test)?;
    Ok(Parts {
        train,
        val,
        test,
        val_from_train,
        skipped,
    })
}

/// A tenth of the patients of `samples` as a validation part, classes kept in
/// proportion.
fn set_aside_by_patient(samples: Vec<Sample>, seed: u64) -> Result<(Vec<Sample>, Vec<Sample>)> {
    let n = samples.len();
    let patients: Vec<String> = samples.iter().map(|s| patient_key(&s.path)).collect();
    let labels: Vec<usize> = samples.iter().map(|s| s.label.index()).collect();
    let options = SplitOptions::seeded(seed)
        .stratify(&labels)
        .groups(&patients);
    let n_train = n * 9 / 10;
    let split = train_val_test_split(n, [n_train as f64, (n - n_train) as f64, 0.0], &options)?;
    let mut slots: Vec<Option<Sample>> = samples.into_iter().map(Some).collect();
    let mut take =
        |rows: &[usize]| -> Vec<Sample> { rows.iter().filter_map(|&i| slots[i].take()).collect() };
    let train = take(&split.train);
    let val = take(&split.val);
    Ok((train, val))
}

/// The paths of a TFRecord split, for counting without decoding.
pub fn split_paths(dir: &Path, split: &str) -> Result<Vec<String>> {
    match detect_layout(dir, split)? {
        DataLayout::TfRecords { paths, .. } => read_paths(paths),
        DataLayout::Folders(folder) => Ok(labelled_files(&folder)?
            .into_iter()
            .map(|(f, _)| f.to_string_lossy().into_owned())
            .collect()),
    }
}
