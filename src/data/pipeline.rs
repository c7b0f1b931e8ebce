//! Input pipelines in the spirit of `tf.data` (chapter 9): a [`Pipeline`] is a recipe
//! that yields a fresh stream of elements each time it is iterated (each epoch), built
//! from small steps: `map` on worker threads, `shuffle` through a seeded buffer,
//! `take`/`skip`, `cache`, `batch`, `prefetch` on a background thread, `repeat`.
//!
//! Every step holds at most its buffer, never the data set (except `cache`, whose point
//! is to hold it, in memory or in a file), and the order of elements is fixed by the
//! seeds alone, however many workers run.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::tfrecord::{ReadOptions, TfRecordReader, TfRecordWriter};
use crate::{Error, Result};

/// A stream of elements, each one or an error.
pub type Stream<T> = Box<dyn Iterator<Item = Result<T>> + Send>;

type Make<T> = Arc<dyn Fn() -> Stream<T> + Send + Sync>;

/// A recipe for a stream of elements of type `T`; cheap to clone.
pub struct Pipeline<T> {
    make: Make<T>,
}

impl<T> Clone for Pipeline<T> {
    fn clone(&self) -> Self {
        Pipeline {
            make: Arc::clone(&self.make),
        }
    }
}

/// Elements that [`Pipeline::cache_file`] can write to and read from disk.
pub trait Record: Sized {
    /// The element as bytes.
    fn encode(&self) -> Vec<u8>;
    /// The element back from [`Record::encode`]'s bytes.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

impl<T: Send + 'static> Pipeline<T> {
    /// A pipeline whose every iteration calls `make` for a new stream.
    pub fn from_fn(make: impl Fn() -> Stream<T> + Send + Sync + 'static) -> Self {
        Pipeline {
            make: Arc::new(make),
        }
    }

    /// The elements of a vector, in order.
    pub fn from_vec(items: Vec<T>) -> Self
    where
        T: Clone + Sync,
    {
        let items = Arc::new(items);
        Pipeline::from_fn(move || {
            let items = Arc::clone(&items);
            Box::new((0..items.len()).map(move |i| Ok(items[i].clone())))
        })
    }

    /// A new stream: one epoch.
    pub fn iter(&self) -> Stream<T> {
        (self.make)()
    }

    /// Applies `f` to every element on `workers` threads (`num_parallel_calls`),
    /// keeping the order. Elements are taken `4 * workers` at a time, so memory stays
    /// bounded by that.
    pub fn map<U: Send + 'static>(
        self,
        workers: usize,
        f: impl Fn(T) -> Result<U> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        let f = Arc::new(f);
        let workers = workers.max(1);
        Pipeline::from_fn(move || {
            let mut upstream = self.iter();
            let f = Arc::clone(&f);
            let mut ready: VecDeque<Result<U>> = VecDeque::new();
            Box::new(std::iter::from_fn(move || {
                if ready.is_empty() {
                    let chunk: Vec<Result<T>> = upstream.by_ref().take(4 * workers).collect();
                    ready = map_chunk(chunk, workers, f.as_ref()).into();
                }
                ready.pop_front()
            }))
        })
    }

    /// Shuffles through a buffer of `buffer` elements, as `tf.data`'s `shuffle`: each
    /// element out is drawn at random from the buffer, which refills from upstream. A
    /// buffer as large as the data set shuffles it fully; a small one only locally.
    /// Each epoch gets its own order, and the same seed gives the same orders.
    pub fn shuffle(self, buffer: usize, seed: u64) -> Self {
        let epoch = Arc::new(AtomicU64::new(0));
        Pipeline::from_fn(move || {
            let e = epoch.fetch_add(1, Ordering::Relaxed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ e.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut upstream = self.iter();
            let mut held: Vec<Result<T>> = Vec::with_capacity(buffer.max(1));
            Box::new(std::iter::from_fn(move || {
                while held.len() < buffer.max(1) {
                    match upstream.next() {
                        Some(item) => held.push(item),
                        None => break,
                    }
                }
                if held.is_empty() {
                    return None;
                }
                let i = rng.random_range(0..held.len());
                Some(held.swap_remove(i))
            }))
        })
    }

    /// The first `n` elements.
    pub fn take(self, n: usize) -> Self {
        Pipeline::from_fn(move || Box::new(self.iter().take(n)))
    }

    /// All but the first `n` elements.
    pub fn skip(self, n: usize) -> Self {
        Pipeline::from_fn(move || Box::new(self.iter().skip(n)))
    }

    /// Repeats the data `count` times (`None`: forever), each pass a new epoch upstream.
    pub fn repeat(self, count: Option<usize>) -> Self {
        Pipeline::from_fn(move || {
            let this = self.clone();
            let passes: Box<dyn Iterator<Item = usize> + Send> = match count {
                Some(n) => Box::new(0..n),
                None => Box::new(0..),
            };
            Box::new(passes.flat_map(move |_| this.iter()))
        })
    }

    /// Groups elements into vectors of `size` (the last one shorter unless
    /// `drop_remainder`).
    pub fn batch(self, size: usize, drop_remainder: bool) -> Pipeline<Vec<T>> {
        let size = size.max(1);
        Pipeline::from_fn(move || {
            let mut upstream = self.iter();
            Box::new(std::iter::from_fn(move || {
                let mut batch = Vec::with_capacity(size);
                for item in upstream.by_ref() {
                    match item {
                        Ok(x) => batch.push(x),
                        Err(e) => return Some(Err(e)),
                    }
                    if batch.len() == size {
                        return Some(Ok(batch));
                    }
                }
                (!batch.is_empty() && !drop_remainder).then_some(Ok(batch))
            }))
        })
    }

    /// Computes up to `buffer` elements ahead on a background thread, so that the
    /// consumer (a training step) and the producer (decoding) overlap.
    pub fn prefetch(self, buffer: usize) -> Self {
        Pipeline::from_fn(move || {
            let (send, receive) = std::sync::mpsc::sync_channel(buffer.max(1));
            let upstream = self.iter();
            std::thread::spawn(move || {
                for item in upstream {
                    if send.send(item).is_err() {
                        break; // the consumer stopped listening
                    }
                }
            });
            Box::new(receive.into_iter())
        })
    }

    /// Keeps the elements of the first complete pass in memory and replays them on
    /// later passes (`tf.data`'s `cache()`); for data that fits in memory.
    pub fn cache(self) -> Self
    where
        T: Clone + Sync,
    {
        let stored: Arc<Mutex<Option<Arc<Vec<T>>>>> = Arc::new(Mutex::new(None));
        Pipeline::from_fn(move || {
            let done = stored.lock().ok().and_then(|s| s.clone());
            if let Some(items) = done {
                return Box::new((0..items.len()).map(move |i| Ok(items[i].clone())));
            }
            let stored = Arc::clone(&stored);
            let mut upstream = self.iter();
            let mut filling = Some(Vec::new());
            Box::new(std::iter::from_fn(move || match upstream.next() {
                Some(Ok(x)) => {
                    if let Some(f) = filling.as_mut() {
                        f.push(x.clone());
                    }
                    Some(Ok(x))
                }
                Some(Err(e)) => {
                    filling = None; // an incomplete pass is not cached
                    Some(Err(e))
                }
                None => {
                    if let (Some(items), Ok(mut slot)) = (filling.take(), stored.lock()) {
                        *slot = Some(Arc::new(items));
                    }
                    None
                }
            }))
        })
    }

    /// Like [`Pipeline::cache`], but into a TFRecord file at `path` (`cache(filename)`),
    /// for data larger than memory. The file is complete or absent: it is written under
    /// a temporary name and renamed at the end of the first full pass; an existing file
    /// is read instead of running upstream at all.
    pub fn cache_file(self, path: impl AsRef<Path>) -> Self
    where
        T: Record,
    {
        let path: PathBuf = path.as_ref().to_path_buf();
        Pipeline::from_fn(move || {
            if path.is_file() {
                return match TfRecordReader::open(&path, ReadOptions::default()) {
                    Ok(reader) => Box::new(reader.map(|r| r.and_then(|b| T::decode(&b)))),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            }
            let mut writer = TfRecordWriter::create(&path).ok();
            let mut upstream = self.iter();
            Box::new(std::iter::from_fn(move || match upstream.next() {
                Some(Ok(x)) => {
                    if let Some(w) = writer.as_mut()
                        && w.write(&x.encode()).is_err()
                    {
                        writer = None;
                    }
                    Some(Ok(x))
                }
                Some(Err(e)) => {
                    writer = None; // dropped unfinished: no file
                    Some(Err(e))
                }
                None => {
                    if let Some(w) = writer.take()
                        && let Err(e) = w.finish()
                    {
                        return Some(Err(e));
                    }
                    None
                }
            }))
        })
    }

    /// Every element of one pass, or the first error.
    pub fn collect_vec(&self) -> Result<Vec<T>> {
        self.iter().collect()
    }
}

/// Maps a chunk on up to `workers` scoped threads, results in input order.
fn map_chunk<T: Send, U: Send>(
    chunk: Vec<Result<T>>,
    workers: usize,
    f: &(impl Fn(T) -> Result<U> + Sync),
) -> Vec<Result<U>> {
    if workers == 1 || chunk.len() <= 1 {
        return chunk.into_iter().map(|item| item.and_then(f)).collect();
    }
    let per = chunk.len().div_ceil(workers);
    let mut parts: Vec<Vec<Result<T>>> = Vec::new();
    let mut items = chunk.into_iter();
    loop {
        let part: Vec<Result<T>> = items.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(|item| item.and_then(f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(Error::BadArgument(
                        "a pipeline worker panicked; this is a bug in the mapped function".into(),
                    ))]
                })
            })
            .collect()
    })
}
