//! Downloading the full data set: the Keras tutorial's public TFRecord files (train and
//! test, `images.tfrec` and `paths.tfrec`), over HTTPS, resumable, verified, and moved
//! into place only when whole.
//!
//! Each file is downloaded to `NAME.part`; an interrupted transfer leaves the part, and
//! the next run asks the server for the rest (an HTTP `Range` request). A finished file
//! is verified before it is renamed into place: every record's checksums are read
//! through (a damaged TFRecord fails here even on the first download), and its SHA-256
//! is compared with the one recorded in `SHA256SUMS` beside it, which the first complete
//! download writes. A file that fails is deleted, since no resume can mend it; a file
//! already in place is verified the same way before it counts as there, and never
//! deleted. A wrong recorded sum is forgotten with `cxr fetch --forget-checksums`.
//!
//! Every transfer finishes: the connection and the response's headers each have
//! [`FetchOptions::answer_timeout`], and the body may fall silent (no byte arriving) for
//! at most [`FetchOptions::silence_timeout`]; a slow but steady download is never cut.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::tfrecord::{ReadOptions, TfRecordReader};
use crate::{Error, Result};

/// Where the tutorial's files live (`gs://download.tensorflow.org/data/ChestXRay2017`
/// over HTTPS).
pub const TUTORIAL_BASE_URL: &str =
    "https://storage.googleapis.com/download.tensorflow.org/data/ChestXRay2017";

/// The tutorial's four files, relative to [`TUTORIAL_BASE_URL`] and to the target folder.
pub const TUTORIAL_FILES: [&str; 4] = [
    "train/images.tfrec",
    "train/paths.tfrec",
    "test/images.tfrec",
    "test/paths.tfrec",
];

/// The name of the checksum list written beside the files.
pub const CHECKSUMS: &str = "SHA256SUMS";

/// How to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The server folder holding `train/` and `test/`.
    pub base_url: String,
    /// Show a progress bar per file (on a terminal).
    pub progress: bool,
    /// How long to wait for a connection, and then for the response's headers.
    pub answer_timeout: Duration,
    /// How long the body may stay silent (no byte arriving) before the transfer is given
    /// up: a slow but steady download is never cut, a stalled one always is.
    pub silence_timeout: Duration,
    /// Drop the checksums recorded in `SHA256SUMS` for the files fetched and record them
    /// afresh: the way out when a wrong one was recorded (`cxr fetch --forget-checksums`).
    pub forget_checksums: bool,
}

impl FetchOptions {
    /// The tutorial's files from `base_url`, without a progress bar.
    pub fn from(base_url: impl Into<String>) -> Self {
        FetchOptions {
            base_url: base_url.into(),
            progress: false,
            ..Self::default()
        }
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            base_url: TUTORIAL_BASE_URL.to_string(),
            progress: true,
            answer_timeout: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(60),
            forget_checksums: false,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where it is now.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Bytes that were already there from an interrupted run.
    pub resumed_from: u64,
    /// It was there and verified already; nothing was downloaded.
    pub already_there: bool,
    /// Its SHA-256, as hex.
    pub sha256: String,
}

fn download_error(url: &str, detail: impl std::fmt::Display, fix: &str) -> Error {
    Error::Download {
        url: url.to_string(),
        detail: detail.to_string(),
        fix: fix.to_string(),
    }
}

/// Downloads `url` to `dest`, resuming from `dest.part` if an earlier run was cut off.
/// Returns the bytes the part held before. The part is left in place when the transfer
/// breaks off or stalls, so that the next call continues it.
pub fn download(url: &str, dest: &Path, options: &FetchOptions) -> Result<u64> {
    let progress = options.progress;
    crate::io::create_parent(dest)?;
    let part = part_path(dest);
    let resumed_from = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.answer_timeout))
        .timeout_send_request(Some(options.answer_timeout))
        .timeout_recv_response(Some(options.answer_timeout))
        .build()
        .into();
    let mut request = agent.get(url);
    if resumed_from > 0 {
        request = request.header("Range", format!("bytes={resumed_from}-"));
    }
    let no_network = "check the network connection (these files need internet access), or copy the files by hand into the target folder";
    let response = request.call().map_err(|e| {
        let detail = match e {
            ureq::Error::Timeout(_) => format!(
                "no answer within {} s ({e})",
                options.answer_timeout.as_secs_f64()
            ),
            e => e.to_string(),
        };
        download_error(url, detail, no_network)
    })?;
    let status = response.status().as_u16();
    let length: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (append, start) = match status {
        206 => (true, resumed_from),
        200 => (false, 0),
        416 => {
            // The part already holds everything the server has.
            return Ok(resumed_from);
        }
        other => {
            return Err(download_error(
                url,
                format!("the server answered HTTP {other}"),
                "check the address (--url), or try again later",
            ));
        }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let bar = progress_bar(progress, length.map(|l| l + start), dest);
    bar.set_position(start);
    let chunks = read_in_background(response.into_body().into_reader());
    let mut received = 0u64;
    loop {
        let broke_off = |what: &str, why: String| {
            download_error(
                url,
                format!(
                    "the transfer {what} after {} bytes ({why})",
                    start + received
                ),
                "run the same command again: it continues where it stopped",
            )
        };
        let chunk = match chunks.recv_timeout(options.silence_timeout) {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                file.flush().map_err(|e| Error::io(&part, e))?;
                bar.abandon();
                return Err(broke_off("broke off", e.to_string()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                file.flush().map_err(|e| Error::io(&part, e))?;
                bar.abandon();
                let silent = options.silence_timeout.as_secs_f64();
                return Err(broke_off("stalled", format!("no byte for {silent} s")));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        file.write_all(&chunk).map_err(|e| Error::io(&part, e))?;
        received += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all().map_err(|e| Error::io(&part, e))?;
    bar.finish_and_clear();
    if let Some(expected) = length
        && received != expected
    {
        return Err(download_error(
            url,
            format!("received {received} of {expected} bytes"),
            "run the same command again: it continues where it stopped",
        ));
    }
    Ok(if append { resumed_from } else { 0 })
}

/// The body's bytes as they arrive, read on a thread of their own so that the caller can
/// wait with a timeout: silence is measured between chunks, not over the whole transfer.
/// The channel closes at the end of the body; a stalled reader is left to its
/// connection's fate when the caller gives up.
fn read_in_background(
    mut body: impl Read + Send + 'static,
) -> std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let chunk = match body.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => Ok(buffer[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).is_err() || failed {
                return;
            }
        }
    });
    rx
}

fn progress_bar(show: bool, total: Option<u64>, dest: &Path) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(dest.display().to_string());
    bar
}

fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!("{name}.part"))
}

/// The SHA-256 of a file, as hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Reads every record of a TFRecord file, checking both checksums of each.
fn verify_tfrecord(path: &Path) -> Result<u64> {
    let mut reader = TfRecordReader::open(path, ReadOptions::default())?;
    for record in reader.by_ref() {
        record?;
    }
    Ok(reader.records())
}

/// `SHA256SUMS` as `(name, hex)` pairs, in the format `sha256sum` writes.
fn read_checksums(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join(CHECKSUMS))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (hex, name) = line.split_once("  ")?;
            Some((name.trim().to_string(), hex.trim().to_string()))
        })
        .collect()
}

fn write_checksums(dir: &Path, sums: &[(String, String)]) -> Result<()> {
    let text: String = sums
        .iter()
        .map(|(name, hex)| format!("{hex}  {name}\n"))
        .collect();
    crate::io::write_bytes_atomic(&dir.join(CHECKSUMS), text.as_bytes())
}

/// Fetches the tutorial's four files into `to` (`to/train/images.tfrec`, ...), skipping
/// those already there and verified.
pub fn fetch_tutorial(to: &Path, options: &FetchOptions) -> Result<Vec<Fetched>> {
    let mut out = Vec::new();
    for name in TUTORIAL_FILES {
        let url = format!("{}/{name}", options.base_url.trim_end_matches('/'));
        out.push(fetch_file(&url, to, name, options)?);
    }
    Ok(out)
}

/// Fetches one file to `dir/name` and verifies it (see the module documentation). A file
/// already in place is verified as a download is (every record's checksums, then the
/// recorded SHA-256) before it counts as there.
pub fn fetch_file(url: &str, dir: &Path, name: &str, options: &FetchOptions) -> Result<Fetched> {
    let dest = dir.join(name);
    let mut sums = read_checksums(dir);
    if options.forget_checksums {
        sums.retain(|(n, _)| n != name);
    }
    let recorded = sums.iter().find(|(n, _)| n == name).map(|(_, h)| h.clone());
    if dest.is_file()
        && name.ends_with(".tfrec")
        && let Err(e) = verify_tfrecord(&dest)
    {
        return Err(Error::Download {
            url: url.to_string(),
            detail: format!("{} is already there but damaged: {e}", dest.display()),
            fix: "delete it and run the same command again to fetch it afresh".into(),
        });
    }
    if dest.is_file() {
        let sha256 = sha256_file(&dest)?;
        if recorded.as_deref().is_none_or(|r| r == sha256) {
            let bytes = std::fs::metadata(&dest)
                .map_err(|e| Error::io(&dest, e))?
                .len();
            if recorded.is_none() {
                sums.push((name.to_string(), sha256.clone()));
                write_checksums(dir, &sums)?;
            }
            return Ok(Fetched {
                path: dest,
                bytes,
                resumed_from: 0,
                already_there: true,
                sha256,
            });
        }
    }
    let resumed_from = download(url, &dest, options)?;
    let part = part_path(&dest);
    let rejected = |detail: String| {
        let _ = std::fs::remove_file(&part);
        download_error(
            url,
            detail,
            "the damaged download was deleted; run the same command again to fetch it afresh",
        )
    };
    if name.ends_with(".tfrec")
        && let Err(e) = verify_tfrecord(&part)
    {
        return Err(rejected(format!("the file is damaged: {e}")));
    }
    let sha256 = sha256_file(&part)?;
    match &recorded {
        Some(r) if *r != sha256 => {
            return Err(rejected(format!(
                "its SHA-256 {sha256} differs from the {r} recorded in {}; if that record \
                 is the wrong one (the file passed every record's checksum), \
                 `cxr fetch --forget-checksums` records the new file's instead",
                dir.join(CHECKSUMS).display()
            )));
        }
        Some(_) => {}
        None => {
            sums.push((name.to_string(), sha256.clone()));
            write_checksums(dir, &sums)?;
        }
    }
    std::fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
    let bytes = std::fs::metadata(&dest)
        .map_err(|e| Error::io(&dest, e))?
        .len();
    Ok(Fetched {
        path: dest,
        bytes,
        resumed_from,
        already_there: false,
        sha256,
    })
}

/// Unpacks a pair of tutorial TFRecord files into the class-per-folder layout of the
/// Kaggle/Mendeley release: `out/CLASS/FILE` from each record's path. Returns how many
/// images were written.
pub fn unpack_to_folders(images: &Path, paths: &Path, out: &Path) -> Result<usize> {
    let mut written = 0;
    for pair in crate::tfrecord::read_pairs(images, paths, ReadOptions::default())? {
        let (path, jpeg) = pair?;
        let mut parts = path.rsplit('/');
        let (file, class) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if file.is_empty() || crate::data::Label::from_folder_name(class).is_none() {
            return Err(Error::BadArgument(format!(
                "{}: record {written} has path {path:?}, which names no NORMAL or PNEUMONIA folder; is this a paths file of the tutorial?",
                paths.display()
            )));
        }
        crate::io::write_bytes_atomic(&out.join(class).join(file), &jpeg)?;
        written += 1;
    }
    Ok(written)
}
