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

/// Removes the temporary files that [`temp_path`] names in `dir` and that a process no
/// longer running left behind (a run killed while it wrote), so a resumed run's folder
/// holds what it claims and nothing else. Returns the files removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid != std::process::id() && !process_running(pid) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// The process that wrote a temporary file named by [`temp_path`]: `.NAME.PID-N.tmp`.
fn temp_owner(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, owner) = stem.rsplit_once('.')?;
    let (pid, n) = owner.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether `pid` names a running process; where that cannot be told (no `/proc`), no.
fn process_running(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_files_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let kept = [
            "model.safetensors",
            ".hidden",
            ".notes.txt.tmp",
            "a.1-2.tmp",
        ];
        for name in kept {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let mine = temp_path(&dir.path().join("model.safetensors"));
        std::fs::write(&mine, b"x").unwrap();
        // No process has this number (Linux's pid_max is at most 2^22).
        let dead = dir.path().join(".model.safetensors.999999999-0.tmp");
        std::fs::write(&dead, b"x").unwrap();
        let removed = remove_stale_temps(dir.path()).unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists() && mine.exists());
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
        assert_eq!(temp_owner(".x.safetensors.12-3.tmp"), Some(12));
        assert_eq!(temp_owner(".x.12-y.tmp"), None);
    }
}
