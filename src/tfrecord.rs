//! TFRecord files, read and written (chapter 9).
//!
//! A TFRecord file is a plain sequence of records, each framed as
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of the length | length bytes | u32 masked CRC-32C of the bytes
//! ```
//!
//! The tutorial's files hold raw bytes per record (one JPEG, or one path string), not
//! `tf.train.Example` protocol buffers, so the framing is all there is to read. The
//! CRC-32C (Castagnoli) comes from the `crc32c` crate, which uses the processor's CRC
//! instruction where there is one. (The `tfrecord` crate also reads Examples, and so
//! brings in protocol-buffer code generation that these files do not need.)
//!
//! The reader streams: it holds one record at a time, never allocates more than
//! [`ReadOptions::max_record_bytes`] for one, and reports every fault with the file and
//! the byte offset of the record. Records before a fault are delivered; with
//! [`ReadOptions::skip_damaged`] it skips damaged records, resynchronising on the next
//! valid header, and counts them.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The largest record the reader accepts unless told otherwise: 64 MiB, far above any
/// chest X-ray JPEG.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 64 << 20;

/// TensorFlow's masked CRC-32C: the CRC rotated right by 15 bits plus a constant, so
/// that a CRC stored inside checksummed data does not checksum to a fixed value.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frames one record.
pub fn encode_record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

pub use crate::error::Fault;

/// How to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Refuse records longer than this.
    pub max_record_bytes: u64,
    /// Skip damaged records (and count them) instead of stopping at the first.
    pub skip_damaged: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            skip_damaged: false,
        }
    }
}

/// A streaming reader of records: an iterator of `Result<Vec<u8>>`. After an error it
/// ends, unless [`ReadOptions::skip_damaged`] is set.
pub struct TfRecordReader<R> {
    inner: R,
    path: PathBuf,
    options: ReadOptions,
    /// Bytes read from `inner` but given back to be read again (resynchronisation).
    pushed_back: Vec<u8>,
    offset: u64,
    records: u64,
    skipped: u64,
    resyncing: bool,
    done: bool,
}

impl TfRecordReader<BufReader<File>> {
    /// Opens a TFRecord file.
    pub fn open(path: impl AsRef<Path>, options: ReadOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(TfRecordReader::new(BufReader::new(file), path, options))
    }
}

impl<R: Read> TfRecordReader<R> {
    /// Reads records from any byte source; `path` names it in errors.
    pub fn new(inner: R, path: impl Into<PathBuf>, options: ReadOptions) -> Self {
        TfRecordReader {
            inner,
            path: path.into(),
            options,
            pushed_back: Vec::new(),
            offset: 0,
            records: 0,
            skipped: 0,
            resyncing: false,
            done: false,
        }
    }

    /// Damaged records skipped so far (with [`ReadOptions::skip_damaged`]).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Good records delivered so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Fills `buf` as far as the source allows; returns how many bytes were read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let from_pushed = self.pushed_back.len().min(buf.len());
        buf[..from_pushed].copy_from_slice(&self.pushed_back[..from_pushed]);
        self.pushed_back.drain(..from_pushed);
        let mut filled = from_pushed;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(filled)
    }

    /// Reads `length` bytes into a vector that grows as the bytes arrive, so a damaged
    /// length never allocates more than the file holds.
    fn read_data(&mut self, length: u64) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let from_pushed = (self.pushed_back.len() as u64).min(length) as usize;
        data.extend(self.pushed_back.drain(..from_pushed));
        let rest = length - from_pushed as u64;
        (&mut self.inner)
            .take(rest)
            .read_to_end(&mut data)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(data)
    }

    /// One step: `Ok(Some(data))`, `Ok(None)` at a clean end, or what went wrong.
    fn next_record(&mut self) -> std::result::Result<Option<Vec<u8>>, Stop> {
        let start = self.offset;
        let mut header = [0u8; 12];
        let got = self.fill(&mut header).map_err(Stop::Io)?;
        if got == 0 {
            if start == 0 && self.records == 0 && self.skipped == 0 {
                return Err(Stop::fatal(start, Fault::Empty));
            }
            return Ok(None);
        }
        if got < 12 {
            self.offset += got as u64;
            let left = got as u64;
            return Err(Stop::fatal(start, Fault::Truncated { needed: 12, left }));
        }
        let (length_bytes, stored) = header.split_at(8);
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if masked_crc32c(length_bytes) != stored {
            // Give back all but the first byte: a valid header may start at the next one.
            self.pushed_back.splice(0..0, header[1..].iter().copied());
            self.offset += 1;
            return Err(Stop::Fault {
                offset: start,
                fault: Fault::LengthCrc,
                can_go_on: true,
            });
        }
        let mut length = [0u8; 8];
        length.copy_from_slice(length_bytes);
        let length = u64::from_le_bytes(length);
        self.offset += 12;
        if length > self.options.max_record_bytes {
            // Step over the oversized record without holding it.
            let wanted = length.saturating_add(4);
            let mut rest = std::mem::take(&mut self.pushed_back);
            let from_pushed = (rest.len() as u64).min(wanted) as usize;
            self.pushed_back = rest.split_off(from_pushed);
            let read = std::io::copy(
                &mut (&mut self.inner).take(wanted - from_pushed as u64),
                &mut std::io::sink(),
            )
            .map_err(|e| Stop::Io(Error::io(&self.path, e)))?;
            let skipped = from_pushed as u64 + read;
            self.offset += skipped;
            let limit = self.options.max_record_bytes;
            return Err(Stop::Fault {
                offset: start,
                fault: Fault::TooLarge { length, limit },
                can_go_on: skipped == wanted,
            });
        }
        let data = self.read_data(length).map_err(Stop::Io)?;
        let mut crc = [0u8; 4];
        let crc_got = if data.len() as u64 == length {
            self.fill(&mut crc).map_err(Stop::Io)?
        } else {
            0
        };
        self.offset += data.len() as u64 + crc_got as u64;
        if data.len() as u64 != length || crc_got < 4 {
            let needed = 16 + length;
            let left = 12 + data.len() as u64 + crc_got as u64;
            return Err(Stop::fatal(start, Fault::Truncated { needed, left }));
        }
        if masked_crc32c(&data) != u32::from_le_bytes(crc) {
            return Err(Stop::Fault {
                offset: start,
                fault: Fault::DataCrc,
                can_go_on: true,
            });
        }
        Ok(Some(data))
    }
}

/// Why [`TfRecordReader::next_record`] did not return a record.
enum Stop {
    Fault {
        offset: u64,
        fault: Fault,
        can_go_on: bool,
    },
    Io(Error),
}

impl Stop {
    fn fatal(offset: u64, fault: Fault) -> Self {
        Stop::Fault {
            offset,
            fault,
            can_go_on: false,
        }
    }
}

impl<R: Read> Iterator for TfRecordReader<R> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let (offset, fault, can_go_on) = match self.next_record() {
                Ok(Some(data)) => {
                    self.records += 1;
                    self.resyncing = false;
                    return Some(Ok(data));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(Stop::Io(error)) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Err(Stop::Fault {
                    offset,
                    fault,
                    can_go_on,
                }) => (offset, fault, can_go_on),
            };
            if !self.options.skip_damaged || fault == Fault::Empty {
                self.done = true;
                return Some(Err(Error::TfRecord {
                    path: self.path.clone(),
                    offset,
                    fault,
                }));
            }
            // A damaged header is searched past byte by byte: count the stretch once.
            if !(fault == Fault::LengthCrc && self.resyncing) {
                self.skipped += 1;
            }
            self.resyncing = fault == Fault::LengthCrc;
            if !can_go_on {
                self.done = true;
                return None;
            }
        }
    }
}

/// Writes records to a file that appears only when [`TfRecordWriter::finish`] succeeds
/// (written to a temporary file, then renamed), so a crash never leaves half a file; a
/// writer dropped unfinished removes its temporary file.
pub struct TfRecordWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    records: u64,
}

impl TfRecordWriter {
    /// Starts writing `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        crate::io::create_parent(&path)?;
        let tmp = crate::io::temp_path(&path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(TfRecordWriter {
            path,
            tmp,
            out: Some(BufWriter::new(file)),
            records: 0,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&encode_record(data))
                .map_err(|e| Error::io(&self.tmp, e))?;
            self.records += 1;
        }
        Ok(())
    }

    /// Flushes, syncs and renames the file into place; returns the number of records.
    pub fn finish(mut self) -> Result<u64> {
        let Some(out) = self.out.take() else {
            return Ok(self.records);
        };
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.records)
    }
}

impl Drop for TfRecordWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The tutorial's two files read side by side: `(path, JPEG bytes)` per record. A file
/// with more records than the other is an error naming both.
pub fn read_pairs(
    images: &Path,
    paths: &Path,
    options: ReadOptions,
) -> Result<impl Iterator<Item = Result<(String, Vec<u8>)>> + Send + use<>> {
    let (images, paths) = (images.to_path_buf(), paths.to_path_buf());
    let mut image_reader = TfRecordReader::open(&images, options)?;
    let mut path_reader = TfRecordReader::open(&paths, options)?;
    let mut index = 0u64;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let pair = match (image_reader.next(), path_reader.next()) {
            (None, None) => None,
            (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
            (Some(Ok(image)), Some(Ok(path))) => Some(
                String::from_utf8(path)
                    .map(|path| (path, image))
                    .map_err(|_| Error::BadArgument(format!(
                        "{}: record {index} is not a UTF-8 path; is this really the paths file?",
                        paths.display()
                    ))),
            ),
            (image, _) => {
                let (longer, shorter) = if image.is_some() {
                    (&images, &paths)
                } else {
                    (&paths, &images)
                };
                Some(Err(Error::BadArgument(format!(
                    "{} has more records than {} (which ends after {index}); the two files must be written together, write them again",
                    longer.display(),
                    shorter.display()
                ))))
            }
        };
        index += 1;
        if !matches!(pair, Some(Ok(_))) {
            done = true;
        }
        pair
    }))
}
