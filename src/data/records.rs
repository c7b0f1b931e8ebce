//! Class folders and the Keras tutorial's pair of TFRecord files, `images.tfrec` (one
//! JPEG per record) and `paths.tfrec` (the matching path): written from folders when
//! asked (`cxr tfrecord write`), read side by side (chapter 9).

use std::path::Path;

use super::folder::labelled_files;
use super::{Label, Pipeline};
use crate::tfrecord::{ReadOptions, TfRecordReader, TfRecordWriter, read_pairs};
use crate::{Error, Result};

/// Writes a class-per-folder tree (`DIR/NORMAL/*.jpeg`, `DIR/PNEUMONIA/*.jpeg`) as the
/// tutorial's pair of files, `OUT/images.tfrec` (the JPEG bytes, unchanged, after the
/// same checks as any image: a damaged file is refused, naming it) and
/// `OUT/paths.tfrec` (`DIR/CLASS/FILE` with forward slashes), in sorted path order.
/// Returns the number of records.
pub fn write_folder(dir: &Path, out: &Path) -> Result<u64> {
    let files = labelled_files(dir)?;
    let mut images = TfRecordWriter::create(out.join("images.tfrec"))?;
    let mut paths = TfRecordWriter::create(out.join("paths.tfrec"))?;
    for (file, _) in &files {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        crate::imaging::decode(&bytes, file, crate::imaging::LoadOptions::default())?;
        images.write(&bytes)?;
        let name = file.to_string_lossy().replace('\\', "/");
        paths.write(name.as_bytes())?;
    }
    let written = images.finish()?;
    paths.finish()?;
    Ok(written)
}

/// The tutorial's pair of files as one data set of `(path, JPEG bytes)`, as
/// `tf.data.Dataset.zip((images, paths))`, read afresh each epoch.
pub fn zip_tfrecords(
    images: impl AsRef<Path>,
    paths: impl AsRef<Path>,
) -> Pipeline<(String, Vec<u8>)> {
    let (images, paths) = (images.as_ref().to_path_buf(), paths.as_ref().to_path_buf());
    Pipeline::from_fn(
        move || match read_pairs(&images, &paths, ReadOptions::default()) {
            Ok(pairs) => Box::new(pairs),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    )
}

/// The paths of a `paths.tfrec` file, in order.
pub fn read_paths(paths_file: impl AsRef<Path>) -> Result<Vec<String>> {
    TfRecordReader::open(paths_file, ReadOptions::default())?
        .map(|r| r.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// The tutorial's `COUNT_NORMAL` and `COUNT_PNEUMONIA`, from the paths file alone.
pub fn count_classes(paths_file: impl AsRef<Path>) -> Result<[usize; 2]> {
    let mut counts = [0; 2];
    for path in read_paths(paths_file)? {
        counts[Label::from_path(&path).index()] += 1;
    }
    Ok(counts)
}
