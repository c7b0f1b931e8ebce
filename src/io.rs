//! Writing files so that a crash never leaves a half-written one behind.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Creates the folder a file will go into.
pub fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
        _ => Ok(()),
    }
}

/// Writes `path` through a temporary file in the same folder and a rename, so readers
/// see either the old file or the whole new one, never a torn one.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    replace_atomic(path, |tmp| {
        let mut file = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        write(&mut file)?;
        file.flush().map_err(|e| Error::io(tmp, e))?;
        file.sync_all().map_err(|e| Error::io(tmp, e))
    })
}

/// Lets `write` create a temporary file beside `path` (for writers that want a path),
/// then renames it over `path`; on failure the temporary file is removed and `path` is
/// left as it was.
pub fn replace_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    create_parent(path)?;
    let tmp = temp_path(path);
    let result =
        write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A hidden temporary name beside `path`, unique per process and per call, so two
/// threads writing one file never share a temporary file.
pub fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Writes bytes atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Points `out/latest` at `run` (a folder inside `out`), replacing the old pointer in one
/// step: a link on Unix (renamed over the old one), a `latest.txt` naming the folder
/// elsewhere. Readers see the old run or the new one, never half of each.
pub fn point_latest(out: &Path, run: &Path) -> Result<()> {
    let target = run.strip_prefix(out).unwrap_or(run).to_path_buf();
    #[cfg(unix)]
    {
        let latest = out.join("latest");
        let tmp = temp_path(&latest);
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &latest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: latest.clone(),
                source: std::io::Error::new(
                    e.kind(),
                    format!("cannot point it at {} ({e}); if it is a folder of an older cxr, move it away", target.display()),
                ),
            }
        })
    }
    #[cfg(not(unix))]
    {
        write_bytes_atomic(&out.join("latest.txt"), target.to_string_lossy().as_bytes())
    }
}
