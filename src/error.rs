//! The one error type of the library.
//!
//! Every variant names the file (or folder) it is about and ends with what to do, so that
//! a learner who meets it knows the next step without reading the source.

use std::path::PathBuf;

/// Shorthand for `Result<T, cxr::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in cxr.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path}: no such file or folder (relative paths start from {cwd}); check the spelling and the folder you run from"
    )]
    NotFound { path: PathBuf, cwd: PathBuf },

    #[error("{path}: cannot read it: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not an image cxr can read ({detail}); cxr reads JPEG and PNG files")]
    NotAnImage { path: PathBuf, detail: String },

    #[error(
        "{path}: the image is damaged or truncated ({detail}); download it again or remove it from the folder"
    )]
    CorruptImage { path: PathBuf, detail: String },

    #[error("{path}: the image has no pixels ({width}x{height}); the file is damaged, replace it")]
    EmptyImage {
        path: PathBuf,
        width: u32,
        height: u32,
    },

    #[error(
        "{path}: {width}x{height} is {pixels} pixels, over the limit of {limit} that guards against decompression bombs; \
         if you trust the file, raise the limit with `LoadOptions::max_pixels`"
    )]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },

    #[error(
        "{path}: {mode} images are not supported here; convert it to 8-bit grayscale or RGB first"
    )]
    UnsupportedMode { path: PathBuf, mode: String },

    #[error("devices `{spec}`: {detail}; {fix}")]
    Device {
        spec: String,
        detail: String,
        fix: String,
    },

    #[error("{0}")]
    BadArgument(String),

    #[error("cannot resize to {width}x{height}: both sides must be at least 1 pixel")]
    BadSize { width: u32, height: u32 },

    #[error(
        "{folder}: {count} file(s) could not be read, the first: {first}; fix or remove them, or scan with `ScanOptions {{ skip_unreadable: true, .. }}`"
    )]
    UnreadableFiles {
        folder: PathBuf,
        count: usize,
        first: Box<Error>,
    },

    #[error(
        "{path}: the folder \"{folder_name}\" names no class cxr knows; put X-rays in NORMAL/ or PNEUMONIA/ (normal/ or opacity/ in lesson 3)"
    )]
    UnknownLabel { path: PathBuf, folder_name: String },

    #[error(
        "{folder}: no JPEG or PNG X-rays found; point to a folder laid out as <class>/<image>.jpeg, e.g. data/chest_xray/val"
    )]
    EmptyFolder { folder: PathBuf },

    #[error("{path}: {detail}")]
    Table { path: PathBuf, detail: String },

    #[error("resizing failed: {0}; this is a bug in cxr, please report it")]
    Resize(String),

    #[error(
        "{path}: these weights do not fit the model: {}; was the file saved from a model with the same configuration?",
        problems.join("; ")
    )]
    Weights {
        path: PathBuf,
        problems: Vec<String>,
    },

    #[error("{path}: not a model file: {detail}")]
    NotAModel { path: PathBuf, detail: String },

    #[error("{metric} is not defined here: {detail}; {fix}")]
    Metric {
        metric: &'static str,
        detail: String,
        fix: &'static str,
    },

    #[error("{path}: record at byte {offset}: {fault}")]
    TfRecord {
        path: PathBuf,
        offset: u64,
        fault: Fault,
    },

    #[error("{url}: {detail}; {fix}")]
    Download {
        url: String,
        detail: String,
        fix: String,
    },

    #[error("training stopped: {0}")]
    Training(String),

    #[error("drawing the figure failed: {0}")]
    Plot(String),

    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    #[error(transparent)]
    Frame(#[from] polars_core::error::PolarsError),
}

impl Error {
    /// Wraps an I/O error with the path it happened on, telling "missing" apart from the rest.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            let cwd = std::env::current_dir().unwrap_or_default();
            Error::NotFound { path, cwd }
        } else {
            Error::Io { path, source }
        }
    }
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The file ends inside a record.
    Truncated {
        /// Bytes the record needs from its start.
        needed: u64,
        /// Bytes left in the file.
        left: u64,
    },
    /// The length's checksum does not match: the header is damaged.
    LengthCrc,
    /// The data's checksum does not match: the record's bytes are damaged.
    DataCrc,
    /// The header says the record is longer than the limit.
    TooLarge {
        /// The length in the header.
        length: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The file holds no bytes at all.
    Empty,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Truncated { needed, left } => write!(
                f,
                "the file ends inside a record ({left} of {needed} bytes present); the file was cut short, download or write it again"
            ),
            Fault::LengthCrc => write!(
                f,
                "the record's length fails its CRC check; the file is damaged, download it again or read it with skip_damaged"
            ),
            Fault::DataCrc => write!(
                f,
                "the record's data fails its CRC check; the file is damaged, download it again or read it with skip_damaged"
            ),
            Fault::TooLarge { length, limit } => write!(
                f,
                "a record of {length} bytes is over the limit of {limit}; if the file is right, raise ReadOptions::max_record_bytes"
            ),
            Fault::Empty => write!(
                f,
                "the file is empty; it should hold at least one record, write or download it again"
            ),
        }
    }
}
