//! TFRecord files: TensorFlow's own file read back, the bundled X-rays written and read
//! bit for bit, every kind of damage reported with file and offset, and random and
//! mutated bytes that never make the reader panic.

use std::path::Path;

use cxr::Error;
use cxr::tfrecord::{
    Fault, ReadOptions, TfRecordReader, TfRecordWriter, encode_record, read_pairs,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn records_of(bytes: &[u8], options: ReadOptions) -> (Vec<Vec<u8>>, Option<Error>, u64) {
    let mut reader = TfRecordReader::new(bytes, "test.tfrec", options);
    let (mut good, mut error) = (Vec::new(), None);
    for item in reader.by_ref() {
        match item {
            Ok(record) => good.push(record),
            Err(e) => error = Some(e),
        }
    }
    (good, error, reader.skipped())
}

fn fault_of(error: Option<Error>) -> (u64, Fault) {
    match error {
        Some(Error::TfRecord { offset, fault, .. }) => (offset, fault),
        other => panic!("expected a TFRecord fault, got {other:?}"),
    }
}

fn sample() -> (Vec<Vec<u8>>, Vec<u8>) {
    let records: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![7; 300], b"third".to_vec()];
    let bytes = records.iter().flat_map(|r| encode_record(r)).collect();
    (records, bytes)
}

#[test]
fn reads_what_tensorflow_wrote() {
    let reader = TfRecordReader::open(
        "tests/fixtures/tensorflow/small.tfrec",
        ReadOptions::default(),
    )
    .unwrap();
    let records: Vec<Vec<u8>> = reader.map(Result::unwrap).collect();
    let mut big = Vec::new();
    for _ in 0..40 {
        big.extend(0..=255u8);
    }
    assert_eq!(
        records,
        vec![b"".to_vec(), b"a".to_vec(), b"hello world".to_vec(), big]
    );
    // And writes the same bytes TensorFlow wrote.
    let ours: Vec<u8> = records.iter().flat_map(|r| encode_record(r)).collect();
    assert_eq!(
        ours,
        std::fs::read("tests/fixtures/tensorflow/small.tfrec").unwrap()
    );
}

#[test]
fn bundled_xrays_round_trip_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (images, paths) = (
        dir.path().join("images.tfrec"),
        dir.path().join("paths.tfrec"),
    );
    let written = cxr::data::write_folder(Path::new("data/chest_xray/val"), dir.path()).unwrap();
    assert_eq!(written, 16);
    let mut seen = 0;
    for pair in read_pairs(&images, &paths, ReadOptions::default()).unwrap() {
        let (path, jpeg) = pair.unwrap();
        let relative = path.split("/val/").nth(1).unwrap();
        let original = std::fs::read(Path::new("data/chest_xray/val").join(relative)).unwrap();
        assert_eq!(jpeg, original, "{path}");
        seen += 1;
    }
    assert_eq!(seen, 16);
}

#[test]
fn a_truncated_file_delivers_what_came_before() {
    let (records, bytes) = sample();
    let first_two = encode_record(&records[0]).len() + encode_record(&records[1]).len();
    // Cut inside the third record's header, inside its data and inside its CRC.
    for cut in [first_two + 5, first_two + 14, bytes.len() - 2] {
        let (good, error, _) = records_of(&bytes[..cut], ReadOptions::default());
        assert_eq!(good, records[..2].to_vec(), "cut at {cut}");
        let (offset, fault) = fault_of(error);
        assert_eq!(offset, first_two as u64);
        assert!(matches!(fault, Fault::Truncated { .. }), "{fault:?}");
    }
}

#[test]
fn damaged_checksums_are_caught_and_can_be_skipped() {
    let (records, bytes) = sample();
    let second = encode_record(&records[0]).len();
    // A flipped bit in the second record's length, then in its data.
    for (at, expected) in [
        (second + 1, Fault::LengthCrc),
        (second + 20, Fault::DataCrc),
    ] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        let (good, error, _) = records_of(&damaged, ReadOptions::default());
        assert_eq!(good, records[..1].to_vec());
        assert_eq!(fault_of(error), (second as u64, expected.clone()));
        let message = Error::TfRecord {
            path: "x/images.tfrec".into(),
            offset: second as u64,
            fault: expected,
        }
        .to_string();
        assert!(message.contains("x/images.tfrec") && message.contains(&format!("byte {second}")));

        let skip = ReadOptions {
            skip_damaged: true,
            ..Default::default()
        };
        let (good, error, skipped) = records_of(&damaged, skip);
        assert!(error.is_none());
        assert_eq!(good, vec![records[0].clone(), records[2].clone()]);
        assert_eq!(skipped, 1);
    }
}

#[test]
fn empty_files_and_oversized_records_are_refused() {
    let (_, error, _) = records_of(&[], ReadOptions::default());
    assert_eq!(fault_of(error), (0, Fault::Empty));

    let (records, bytes) = sample();
    let small = ReadOptions {
        max_record_bytes: 100,
        skip_damaged: false,
    };
    let (good, error, _) = records_of(&bytes, small);
    assert_eq!(good, records[..1].to_vec());
    let (_, fault) = fault_of(error);
    assert_eq!(
        fault,
        Fault::TooLarge {
            length: 300,
            limit: 100
        }
    );
    let (good, _, skipped) = records_of(
        &bytes,
        ReadOptions {
            skip_damaged: true,
            ..small
        },
    );
    assert_eq!(good, vec![records[0].clone(), records[2].clone()]);
    assert_eq!(skipped, 1);
}

#[test]
fn a_huge_claimed_length_allocates_only_what_is_there() {
    // A valid header claiming 1 GiB, followed by 10 bytes: truncated, not 1 GiB allocated.
    let length = (1u64 << 30).to_le_bytes();
    let mut bytes = length.to_vec();
    bytes.extend(cxr::tfrecord::masked_crc32c(&length).to_le_bytes());
    bytes.extend([0u8; 10]);
    let options = ReadOptions {
        max_record_bytes: 1 << 31,
        skip_damaged: false,
    };
    let (_, error, _) = records_of(&bytes, options);
    assert!(matches!(fault_of(error).1, Fault::Truncated { .. }));
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let (_, sample) = sample();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    for round in 0..3000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let n = rng.random_range(0..200);
            (0..n).map(|_| rng.random()).collect()
        } else {
            let mut b = sample.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..3) {
                    0 => b[at] = rng.random(),
                    1 => b.truncate(at),
                    _ => b.insert(at, rng.random()),
                }
                if b.is_empty() {
                    break;
                }
            }
            b
        };
        for skip_damaged in [false, true] {
            let options = ReadOptions {
                max_record_bytes: 1 << 20,
                skip_damaged,
            };
            let reader = TfRecordReader::new(&bytes[..], "fuzz", options);
            let delivered: usize = reader
                .take(1000)
                .filter_map(Result::ok)
                .map(|r| r.len())
                .sum();
            assert!(delivered <= bytes.len());
        }
    }
}

#[test]
fn pairs_of_unequal_length_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (images, paths) = (
        dir.path().join("images.tfrec"),
        dir.path().join("paths.tfrec"),
    );
    let mut w = TfRecordWriter::create(&images).unwrap();
    w.write(b"jpeg one").unwrap();
    w.write(b"jpeg two").unwrap();
    w.finish().unwrap();
    let mut w = TfRecordWriter::create(&paths).unwrap();
    w.write(b"train/NORMAL/a.jpeg").unwrap();
    w.finish().unwrap();
    let results: Vec<_> = read_pairs(&images, &paths, ReadOptions::default())
        .unwrap()
        .collect();
    assert_eq!(results.len(), 2);
    let message = results[1].as_ref().unwrap_err().to_string();
    assert!(
        message.contains("images.tfrec has more records than"),
        "{message}"
    );
}

#[test]
fn an_unfinished_writer_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.tfrec");
    let mut w = TfRecordWriter::create(&path).unwrap();
    w.write(b"data").unwrap();
    drop(w);
    assert!(!path.exists());
}
