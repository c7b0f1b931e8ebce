//! Where a data set's images are: the two ways the full data set comes (chapter 9).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A split of a data set on disk, in one of the two layouts the full data set comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLayout {
    /// The Keras tutorial's pair of files.
    TfRecords {
        /// One JPEG per record.
        images: PathBuf,
        /// The matching path per record.
        paths: PathBuf,
    },
    /// A class-per-folder tree: `NORMAL/` and `PNEUMONIA/` inside.
    Folders(PathBuf),
}

/// Finds the `split` (`"train"`, `"val"` or `"test"`) of the data set under `dir`. Tried
/// in order: `dir/split/{images,paths}.tfrec`, `dir/{images,paths}.tfrec`,
/// `dir/split/CLASS/`, `dir/chest_xray/split/CLASS/`, and `dir/CLASS/` itself.
pub fn detect_layout(dir: &Path, split: &str) -> Result<DataLayout> {
    if !dir.is_dir() {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
            cwd: std::env::current_dir().unwrap_or_default(),
        });
    }
    for folder in [dir.join(split), dir.to_path_buf()] {
        let (images, paths) = (folder.join("images.tfrec"), folder.join("paths.tfrec"));
        if images.is_file() && paths.is_file() {
            return Ok(DataLayout::TfRecords { images, paths });
        }
    }
    let has_classes = |d: &Path| d.join("NORMAL").is_dir() || d.join("PNEUMONIA").is_dir();
    for folder in [
        dir.join(split),
        dir.join("chest_xray").join(split),
        dir.to_path_buf(),
    ] {
        if has_classes(&folder) {
            return Ok(DataLayout::Folders(folder));
        }
    }
    Err(Error::BadArgument(format!(
        "{}: found neither the tutorial's {split}/images.tfrec and {split}/paths.tfrec nor \
         {split}/NORMAL and {split}/PNEUMONIA folders; fetch the data with `cxr fetch --to {}` \
         or point --data to a folder laid out like that",
        dir.display(),
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_layouts_and_says_what_it_looked_for() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        assert!(
            detect_layout(dir, "train")
                .unwrap_err()
                .to_string()
                .contains("cxr fetch")
        );
        std::fs::create_dir_all(dir.join("chest_xray/train/NORMAL")).unwrap();
        assert_eq!(
            detect_layout(dir, "train").unwrap(),
            DataLayout::Folders(dir.join("chest_xray/train"))
        );
        std::fs::create_dir_all(dir.join("train")).unwrap();
        std::fs::write(dir.join("train/images.tfrec"), b"").unwrap();
        std::fs::write(dir.join("train/paths.tfrec"), b"").unwrap();
        assert!(matches!(
            detect_layout(dir, "train").unwrap(),
            DataLayout::TfRecords { .. }
        ));
    }
}
