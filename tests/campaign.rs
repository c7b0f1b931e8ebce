//! The robustness campaign: damaged images, damaged TFRecords, bad prediction tables and
//! bad settings, each run through every reader that meets it. A case is *handled* when it
//! ends in an error that names the file (or the setting), or, where the caller asked to
//! skip damage, when the damage is skipped and counted. *Silent* (a result from damaged
//! input), *unclear* (an error that does not say which file) and *panic* all fail the
//! test. `cargo test --release --test integration campaign -- --nocapture` prints the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use cxr::baseline::Predictions;
use cxr::data::{Label, Sample, ScanOptions, scan_folder, write_folder};
use cxr::prelude::*;
use cxr::tfrecord::{ReadOptions, TfRecordReader, TfRecordWriter};

const JPEG: &str = "data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg";
const GOOD: &str = "data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Handled,
    Unclear,
    Silent,
    Panic,
}

#[derive(Default)]
struct Campaign {
    /// kind -> outcomes
    results: BTreeMap<&'static str, Vec<(String, Outcome, String)>>,
}

impl Campaign {
    /// Runs one case: `Ok(true)` means damage was skipped and counted, `Ok(false)` that a
    /// result came back as if nothing were wrong; an error must contain `must_name`.
    fn case(
        &mut self,
        kind: &'static str,
        name: impl Into<String>,
        must_name: &str,
        run: impl FnOnce() -> cxr::Result<bool>,
    ) {
        let name = name.into();
        let (outcome, said) = match catch_unwind(AssertUnwindSafe(run)) {
            Err(_) => (Outcome::Panic, "panicked".to_string()),
            Ok(Ok(true)) => (Outcome::Handled, "skipped and counted".to_string()),
            Ok(Ok(false)) => (Outcome::Silent, "a result from damaged input".to_string()),
            Ok(Err(e)) => {
                let said = e.to_string();
                if said.contains(must_name) {
                    (Outcome::Handled, said)
                } else {
                    (Outcome::Unclear, said)
                }
            }
        };
        self.results
            .entry(kind)
            .or_default()
            .push((name, outcome, said));
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "| kind | tried | handled | unclear | silent | panic |\n|---|---:|---:|---:|---:|---:|\n",
        );
        let mut total = [0usize; 5];
        for (kind, cases) in &self.results {
            let count = |o| cases.iter().filter(|c| c.1 == o).count();
            let row = [
                cases.len(),
                count(Outcome::Handled),
                count(Outcome::Unclear),
                count(Outcome::Silent),
                count(Outcome::Panic),
            ];
            for (t, r) in total.iter_mut().zip(row) {
                *t += r;
            }
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} | {} | {} |",
                row[0], row[1], row[2], row[3], row[4]
            );
        }
        let _ = writeln!(
            out,
            "| **all** | {} | {} | {} | {} | {} |",
            total[0], total[1], total[2], total[3], total[4]
        );
        out
    }

    fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .flat_map(|(kind, cases)| {
                cases
                    .iter()
                    .filter(|c| c.1 != Outcome::Handled)
                    .map(move |c| format!("{kind} / {}: {:?}: {}", c.0, c.1, c.2))
            })
            .collect()
    }
}

/// PNG's CRC-32, for hand-made chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A PNG header that claims `width` x `height` pixels and holds none.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// Seeded bytes (no `rand` needed for a fixed pattern).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

/// Every damaged image of the campaign: (case, file name, bytes).
fn damaged_images() -> Vec<(String, &'static str, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jpeg = std::fs::read(root.join(JPEG)).unwrap();
    let xray = XRay::open(root.join(JPEG))
        .unwrap()
        .resize((300, 240))
        .unwrap();
    let mut png = Vec::new();
    xray.image()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut cases = Vec::new();
    for percent in [1, 10, 25, 50, 75, 90, 99] {
        let cut = jpeg.len() * percent / 100;
        cases.push((
            format!("JPEG cut at {percent}%"),
            "cut.jpeg",
            jpeg[..cut].to_vec(),
        ));
        let cut = png.len() * percent / 100;
        cases.push((
            format!("PNG cut at {percent}%"),
            "cut.png",
            png[..cut].to_vec(),
        ));
    }
    for (i, at) in [0.2, 0.5, 0.8].into_iter().enumerate() {
        let mut bytes = jpeg.clone();
        let start = (bytes.len() as f64 * at) as usize;
        bytes[start..start + 2000].copy_from_slice(&noise(2000, i as u64 + 1));
        cases.push((
            format!("JPEG with 2,000 random bytes at {:.0}%", at * 100.0),
            "noisy.jpeg",
            bytes,
        ));
    }
    let mut no_eoi = jpeg.clone();
    no_eoi.truncate(no_eoi.len() - 2);
    cases.push(("JPEG without its end marker".into(), "no-eoi.jpeg", no_eoi));
    let mut bad_crc = png.clone();
    let idat = bad_crc.windows(4).position(|w| w == b"IDAT").unwrap();
    bad_crc[idat + 10] ^= 0xFF;
    cases.push((
        "PNG with a damaged IDAT byte (CRC fails)".into(),
        "crc.png",
        bad_crc,
    ));
    let iend = png.len() - 12;
    cases.push((
        "PNG without IEND".into(),
        "no-iend.png",
        png[..iend].to_vec(),
    ));
    cases.push(("empty file".into(), "empty.jpeg", Vec::new()));
    cases.push(("one byte".into(), "one.jpeg", vec![0xFF]));
    cases.push((
        "JPEG header only".into(),
        "header.jpeg",
        jpeg[..100].to_vec(),
    ));
    cases.push((
        "GIF named .jpeg".into(),
        "gif.jpeg",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
    ));
    cases.push((
        "text named .jpeg".into(),
        "text.jpeg",
        b"not an image\n".to_vec(),
    ));
    cases.push((
        "BMP named .png".into(),
        "bmp.png",
        b"BM\x00\x00\x00\x00".to_vec(),
    ));
    cases.push((
        "PNG claiming 100,000 x 100,000 pixels".into(),
        "bomb.png",
        png_claiming(100_000, 100_000),
    ));
    cases.push((
        "PNG claiming 0 x 0 pixels".into(),
        "zero.png",
        png_claiming(0, 0),
    ));
    cases.push((
        "random bytes named .png".into(),
        "noise.png",
        noise(5000, 9),
    ));
    cases
}

fn images(campaign: &mut Campaign, dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (i, (case, file, bytes)) in damaged_images().into_iter().enumerate() {
        let folder = dir.join(format!("image-{i}"));
        let path = folder.join("PNEUMONIA").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::create_dir_all(folder.join("NORMAL")).unwrap();
        std::fs::copy(root.join(GOOD), folder.join("NORMAL").join("good.jpeg")).unwrap();
        std::fs::write(&path, &bytes).unwrap();

        campaign.case("image: XRay::open", &case, file, || {
            XRay::open(&path).map(|_| false)
        });
        campaign.case(
            "image: training/predict decode (Sample)",
            &case,
            file,
            || Sample::open(&path, Label::Pneumonia, 64).map(|_| false),
        );
        campaign.case("image: scan_folder", &case, file, || {
            scan_folder(&folder, ScanOptions::default()).map(|_| false)
        });
        campaign.case("image: scan_folder, skipping", &case, file, || {
            let options = ScanOptions {
                skip_unreadable: true,
                ..Default::default()
            };
            scan_folder(&folder, options).map(|scan| scan.skipped.len() == 1)
        });
        let out = dir.join(format!("records-{i}"));
        std::fs::create_dir_all(&out).unwrap();
        campaign.case("image: write TFRecords", &case, file, || {
            write_folder(&folder, &out).map(|_| false)
        });
    }
}

fn records(campaign: &mut Campaign, dir: &Path) {
    let good = dir.join("good.tfrec");
    let mut writer = TfRecordWriter::create(&good).unwrap();
    for i in 0..5u8 {
        writer.write(&vec![i; 100 + usize::from(i)]).unwrap();
    }
    writer.finish().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    // A record: length (8), its CRC (4), data, the data's CRC (4).
    let second = 8 + 4 + 100 + 4;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, at) in [
        ("in a length", second + 3),
        ("in a length's CRC", second + 9),
        ("in the data", second + 12 + 50),
        ("in the data's CRC", second + 12 + 101 + 1),
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x5A;
        cases.push((format!("one byte flipped {what}"), b));
    }
    for cut in [
        second + 4,
        second + 10,
        second + 60,
        second + 12 + 101 + 2,
        bytes.len() - 1,
    ] {
        cases.push((format!("cut at byte {cut}"), bytes[..cut].to_vec()));
    }
    let mut garbage = bytes.clone();
    garbage.extend_from_slice(b"trailing garbage");
    cases.push(("garbage after the last record".into(), garbage));
    let mut huge = bytes.clone();
    huge[second..second + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("a length of 1 TiB".into(), huge));
    for (i, (case, damaged)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("damaged-{i}.tfrec"));
        std::fs::write(&path, &damaged).unwrap();
        campaign.case("TFRecord: read", &case, "damaged-", || {
            let reader = TfRecordReader::open(&path, ReadOptions::default())?;
            reader.collect::<cxr::Result<Vec<_>>>().map(|_| false)
        });
        campaign.case("TFRecord: read, skipping", &case, "damaged-", || {
            let options = ReadOptions {
                skip_damaged: true,
                ..Default::default()
            };
            let mut reader = TfRecordReader::open(&path, options)?;
            reader.by_ref().collect::<cxr::Result<Vec<_>>>()?;
            Ok(reader.skipped() > 0)
        });
    }
}

fn prediction_tables(campaign: &mut Campaign, dir: &Path) {
    let header = "label,p_NORMAL,p_PNEUMONIA\n";
    let cases = [
        ("a row 1,abc,xyz", format!("{header}0,0.9,0.1\n1,abc,xyz\n")),
        ("a missing column", "label,p_NORMAL\n0,0.9\n".to_string()),
        ("a label 2", format!("{header}2,0.5,0.5\n")),
        ("a negative label", format!("{header}-1,0.5,0.5\n")),
        ("a NaN probability", format!("{header}1,NaN,0.5\n")),
        ("a probability above 1", format!("{header}1,0.2,1.8\n")),
        ("a negative probability", format!("{header}1,-0.2,1.2\n")),
        (
            "probabilities adding up to 0.5",
            format!("{header}1,0.25,0.25\n"),
        ),
        ("no rows", header.to_string()),
        ("an empty file", String::new()),
        ("a short row", format!("{header}1,0.5\n")),
    ];
    for (i, (case, text)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("predictions-{i}.csv"));
        std::fs::write(&path, text).unwrap();
        campaign.case("predictions CSV", case, "predictions-", || {
            Predictions::read_csv(&path).map(|_| false)
        });
    }
}

fn command_line(campaign: &mut Campaign, dir: &Path) {
    let cases: &[(&str, &[&str], &str)] = &[
        ("--epochs 0", &["train", "--epochs", "0"], "epochs"),
        (
            "--learning-rate -0.1",
            &["train", "--learning-rate=-0.1"],
            "learning",
        ),
        (
            "--learning-rate NaN",
            &["train", "--learning-rate", "NaN"],
            "learning",
        ),
        (
            "--learning-rate 0",
            &["train", "--learning-rate", "0"],
            "learning",
        ),
        ("--image-size 8", &["train", "--image-size", "8"], "image"),
        ("--batch 0", &["train", "--batch", "0"], "batch"),
        (
            "--generated-images 3",
            &["train", "--generated-images", "3"],
            "images",
        ),
        (
            "--data on a missing folder",
            &["train", "--data", "no-such-folder"],
            "no-such-folder",
        ),
        (
            "predict with no trained model",
            &["predict", "xray.jpeg"],
            "xray_model.safetensors",
        ),
        (
            "predict with a text file as the model",
            &["predict", "xray.jpeg", "--model", "file.txt"],
            "not a model file",
        ),
        (
            "predict a missing image",
            &["predict", "no-such.jpeg", "--model", "file.txt"],
            "no-such.jpeg",
        ),
        (
            "scan a file, not a folder",
            &["scan", "file.txt"],
            "file.txt",
        ),
        ("lesson 12", &["lesson", "12"], "12"),
    ];
    std::fs::write(dir.join("file.txt"), "a file").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join(GOOD), dir.join("xray.jpeg")).unwrap();
    for (case, args, must_name) in cases {
        campaign.case("command line", *case, must_name, || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxr"))
                .args(*args)
                .args(if args[0] == "train" {
                    &["--out", "out"][..]
                } else {
                    &[][..]
                })
                .current_dir(dir)
                .output()
                .expect("cxr runs");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                return Ok(false);
            }
            // A refusal that still left a run behind is no refusal.
            if dir.join("out").join("latest").exists() {
                return Ok(false);
            }
            Err(Error::BadArgument(said))
        });
    }
}

#[test]
fn every_bad_input_is_refused_or_counted_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let mut campaign = Campaign::default();
    images(&mut campaign, dir.path());
    records(&mut campaign, dir.path());
    prediction_tables(&mut campaign, dir.path());
    command_line(&mut campaign, dir.path());
    println!("{}", campaign.table());
    let failures = campaign.failures();
    let tried: usize = campaign.results.values().map(Vec::len).sum();
    assert!(
        tried >= 100,
        "the campaign tries {tried} cases, fewer than 100"
    );
    assert!(
        failures.is_empty(),
        "{} of {tried} cases not handled:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        campaign.table()
    );
}
