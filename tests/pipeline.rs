//! The tf.data-like pipeline: order fixed by seeds whatever the worker count, each step
//! doing what its tf.data namesake does, memory bounded by buffers, caches that replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cxr::Error;
use cxr::data::{Pipeline, Record};

fn numbers(n: u32) -> Pipeline<u32> {
    Pipeline::from_vec((0..n).collect())
}

#[test]
fn map_keeps_order_with_any_number_of_workers() {
    let one = numbers(1000).map(1, |x| Ok(x * 3)).collect_vec().unwrap();
    for workers in [2, 3, 8] {
        let many = numbers(1000)
            .map(workers, |x| Ok(x * 3))
            .collect_vec()
            .unwrap();
        assert_eq!(many, one);
    }
    assert_eq!(one[999], 2997);
}

#[test]
fn shuffle_is_seeded_complete_and_new_each_epoch() {
    let shuffled = numbers(500).shuffle(100, 7);
    let first = shuffled.collect_vec().unwrap();
    let second = shuffled.collect_vec().unwrap();
    assert_ne!(first, (0..500).collect::<Vec<_>>());
    assert_ne!(first, second, "each epoch gets its own order");
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, (0..500).collect::<Vec<_>>());
    let again = numbers(500).shuffle(100, 7);
    assert_eq!(again.collect_vec().unwrap(), first);
    assert_eq!(again.collect_vec().unwrap(), second);
    // A buffer of 10 only moves elements locally: the first out is among the first 10.
    let local = numbers(500).shuffle(10, 1).collect_vec().unwrap();
    assert!(local[0] < 10);
}

#[test]
fn take_skip_batch_and_repeat() {
    let data = numbers(10);
    assert_eq!(data.clone().take(3).collect_vec().unwrap(), vec![0, 1, 2]);
    assert_eq!(data.clone().skip(8).collect_vec().unwrap(), vec![8, 9]);
    let batches = data.clone().batch(4, false).collect_vec().unwrap();
    assert_eq!(
        batches,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    assert_eq!(data.clone().batch(4, true).collect_vec().unwrap().len(), 2);
    assert_eq!(
        data.clone().repeat(Some(3)).collect_vec().unwrap().len(),
        30
    );
    let forever: Vec<u32> = data
        .repeat(None)
        .iter()
        .take(25)
        .map(Result::unwrap)
        .collect();
    assert_eq!(forever[24], 4);
}

#[test]
fn prefetch_gives_the_same_elements() {
    let plain = numbers(300).map(2, |x| Ok(x + 1)).collect_vec().unwrap();
    let ahead = numbers(300)
        .map(2, |x| Ok(x + 1))
        .prefetch(8)
        .collect_vec()
        .unwrap();
    assert_eq!(plain, ahead);
}

#[test]
fn errors_pass_through_in_place() {
    let data = numbers(6).map(2, |x| {
        if x == 3 {
            Err(Error::BadArgument("three".into()))
        } else {
            Ok(x)
        }
    });
    let items: Vec<_> = data.iter().collect();
    assert_eq!(items.len(), 6);
    assert!(items[3].is_err() && items[4].is_ok());
    assert!(data.collect_vec().is_err());
}

/// Counts how many elements are alive at once.
struct Tracked {
    live: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(live: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> Self {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        Tracked {
            live: Arc::clone(live),
            most: Arc::clone(most),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn memory_is_bounded_by_the_buffers_not_the_data() {
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (l, m) = (Arc::clone(&live), Arc::clone(&most));
    let source = Pipeline::from_fn(move || {
        let (l, m) = (Arc::clone(&l), Arc::clone(&m));
        Box::new((0..20_000).map(move |_| Ok(Tracked::new(&l, &m))))
    });
    let pipeline = source
        .map(2, Ok)
        .shuffle(64, 3)
        .batch(25, false)
        .prefetch(4);
    let mut batches = 0;
    for batch in pipeline.iter() {
        let batch = batch.unwrap();
        assert!(batch.iter().all(|t| t.most.load(Ordering::SeqCst) > 0));
        batches += 1;
    }
    assert_eq!(batches, 800);
    let peak = most.load(Ordering::SeqCst);
    // shuffle 64 + map chunk 8 + a batch being built 25 + prefetched 4 batches of 25 + one held.
    assert!(
        peak <= 64 + 8 + 25 * 6 + 10,
        "{peak} elements alive at once"
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn memory_cache_runs_upstream_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let cached = numbers(50)
        .map(2, move |x| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(x * 2)
        })
        .cache();
    let first = cached.collect_vec().unwrap();
    let second = cached.collect_vec().unwrap();
    assert_eq!(first, second);
    assert_eq!(calls.load(Ordering::SeqCst), 50);
}

#[derive(Debug, Clone, PartialEq)]
struct Pair(u32, f32);

impl Record for Pair {
    fn encode(&self) -> Vec<u8> {
        [self.0.to_le_bytes(), self.1.to_le_bytes()].concat()
    }
    fn decode(bytes: &[u8]) -> cxr::Result<Self> {
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        if bytes.len() != 8 {
            return Err(Error::BadArgument("a Pair is 8 bytes".into()));
        }
        Ok(Pair(
            u32::from_le_bytes(word(0)),
            f32::from_le_bytes(word(4)),
        ))
    }
}

#[test]
fn file_cache_is_written_once_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.tfrec");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let cached = numbers(40)
        .map(1, move |x| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(Pair(x, x as f32 / 2.0))
        })
        .cache_file(&path);
    // A pass stopped half way leaves no cache file behind.
    let half: Vec<_> = cached.iter().take(10).collect();
    assert_eq!(half.len(), 10);
    assert!(!path.exists());
    let first = cached.collect_vec().unwrap();
    assert!(path.exists());
    let seen = calls.load(Ordering::SeqCst);
    let second = cached.collect_vec().unwrap();
    assert_eq!(first, second);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        seen,
        "the second pass reads the file"
    );
}
