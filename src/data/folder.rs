//! A folder of class folders, as a polars table.

use std::path::{Path, PathBuf};

use polars_core::df;
use polars_core::prelude::*;
use polars_io::prelude::{CsvReadOptions, CsvWriter, SerReader, SerWriter};

use super::{Label, patient_id};
use crate::imaging::LoadOptions;
use crate::{Error, Result};

/// How to treat files that cannot be read while scanning.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Leave unreadable files out (and list them in [`Scan::skipped`]) instead of failing.
    pub skip_unreadable: bool,
    /// Size limit per image, as when opening one.
    pub load: LoadOptions,
}

/// The result of [`scan_folder`]: a table with one row per readable X-ray.
#[derive(Debug)]
pub struct Scan {
    /// Columns `path`, `file`, `split`, `label`, `patient_id`, `width`, `height`.
    pub frame: DataFrame,
    /// Files left out because they could not be read, each with its reason.
    pub skipped: Vec<Error>,
}

/// Lists every JPEG and PNG under `folder` (sorted, hidden files ignored), labelled by the
/// name of the folder it sits in.
///
/// `path` is the file as you would open it (`folder` joined with `file`), `file` is relative
/// to `folder`, `split` is `train`, `val` or `test` when the class folder sits in one, and
/// `width` and `height` are the decoded image's. Every image is decoded in full, on every
/// core, as training would decode it: a cut file, random bytes in the middle of a JPEG or
/// a failed PNG checksum is found by the scan, not half way through training (16 bundled
/// X-rays: 0.16 s on two cores; the full 5,856-image set about a minute). A file that
/// cannot be decoded, or whose class folder names no [`Label`], fails the scan unless
/// [`ScanOptions::skip_unreadable`] is set.
pub fn scan_folder(folder: impl AsRef<Path>, options: ScanOptions) -> Result<Scan> {
    let folder = folder.as_ref();
    let mut files = Vec::new();
    walk(folder, &mut files)?;
    files.sort();

    let (mut paths, mut rel, mut splits, mut labels, mut patients, mut widths, mut heights) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut skipped = Vec::new();
    let described = describe_all(&files, options.load);
    for (path, described) in files.into_iter().zip(described) {
        match described {
            Ok((label, width, height)) => {
                let file = path.strip_prefix(folder).unwrap_or(&path);
                paths.push(path.to_string_lossy().into_owned());
                rel.push(file.to_string_lossy().into_owned());
                splits.push(split_of(&path));
                labels.push(label.name());
                patients.push(patient_id(&path));
                widths.push(width);
                heights.push(height);
            }
            Err(err) => skipped.push(err),
        }
    }
    if !options.skip_unreadable && !skipped.is_empty() {
        let count = skipped.len();
        return Err(Error::UnreadableFiles {
            folder: folder.into(),
            count,
            first: Box::new(skipped.swap_remove(0)),
        });
    }
    if paths.is_empty() {
        return Err(Error::EmptyFolder {
            folder: folder.into(),
        });
    }
    let frame = df!(
        "path" => paths,
        "file" => rel,
        "split" => splits,
        "label" => labels,
        "patient_id" => patients,
        "width" => widths,
        "height" => heights,
    )?;
    Ok(Scan { frame, skipped })
}

/// Reads a CSV table such as `data/chest_xray/val.csv` (columns `file,label,patient_id`).
pub fn read_csv(path: impl AsRef<Path>) -> Result<DataFrame> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::io(path, std::io::ErrorKind::NotFound.into()));
    }
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.into()))
        .and_then(|reader| reader.finish())
        .map_err(|e| Error::Table {
            path: path.into(),
            detail: format!("not a readable CSV table: {e}"),
        })
}

/// Writes a table as CSV (atomically), e.g. the `file,label,patient_id` columns of a scan.
pub fn write_csv(frame: &mut DataFrame, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    crate::io::write_atomic(path, |file| {
        CsvWriter::new(file)
            .finish(frame)
            .map_err(|e| Error::Table {
                path: path.into(),
                detail: format!("cannot write CSV: {e}"),
            })
    })
}

fn describe(path: &Path, load: LoadOptions) -> Result<(Label, u32, u32)> {
    let folder_name = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let label = Label::from_folder_name(folder_name).ok_or_else(|| Error::UnknownLabel {
        path: path.into(),
        folder_name: folder_name.into(),
    })?;
    // The whole image is decoded, as training would decode it: damage in the middle of a
    // stream (random bytes, a failed PNG CRC) is found here, not only a cut end.
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let image = crate::imaging::decode(&bytes, path, load)?;
    Ok((label, image.width(), image.height()))
}

/// [`describe`] for every file, on every core, results in the files' order.
fn describe_all(files: &[PathBuf], load: LoadOptions) -> Vec<Result<(Label, u32, u32)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|f| describe(f, load)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn split_of(path: &Path) -> Option<String> {
    let split = path.parent()?.parent()?.file_name()?.to_str()?;
    matches!(split, "train" | "val" | "test").then(|| split.to_string())
}

/// Every JPEG and PNG under `dir`, hidden files and folders left out. Links to folders
/// are not followed (a link to a parent folder would list every image again and again);
/// links to files are.
pub(super) fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Err(match dir.exists() {
            true => Error::BadArgument(format!(
                "{}: a file, where a folder of class folders (NORMAL/, PNEUMONIA/) was expected",
                dir.display()
            )),
            false => Error::io(dir, std::io::ErrorKind::NotFound.into()),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, files)?;
        } else if (kind.is_file() || kind.is_symlink() && path.is_file()) && is_image_name(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Every JPEG and PNG under `dir` with the class its folder names, sorted by path; a
/// folder that names no class, or no image at all, is an error saying so.
pub fn labelled_files(dir: &Path) -> Result<Vec<(PathBuf, Label)>> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::EmptyFolder {
            folder: dir.to_path_buf(),
        });
    }
    files
        .into_iter()
        .map(|file| {
            let folder_name = file
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            match Label::from_folder_name(&folder_name) {
                Some(label) => Ok((file, label)),
                None => Err(Error::UnknownLabel {
                    path: file,
                    folder_name,
                }),
            }
        })
        .collect()
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}
