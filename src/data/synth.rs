//! Generated chest radiographs, for training on any machine (introduced in chapter 3).
//!
//! The images are drawings, not X-rays: a body outline, two lung fields crossed by ribs,
//! the spine, the heart and the diaphragm, with exposure changes and noise. A
//! "pneumonia" image adds patchy bright consolidations inside the lungs, of varying
//! number, size and contrast; normal images get faint spots too, so the classes overlap
//! and a model can neither fail nor trivially win. Anything trained on them must say so.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::Label;
use crate::{Error, Result};

/// The share of pneumonia images in the Kermany training split: 3,875 of 5,216.
pub const KERMANY_PNEUMONIA_SHARE: f64 = 3875.0 / 5216.0;

/// The first line of a generated data set's README: how a folder is known as one that
/// may be replaced, never a folder of someone's own images.
const GENERATED_README_TITLE: &str = "# Generated chest radiographs: not real X-rays";

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthOptions {
    /// Images in all.
    pub n: usize,
    /// Width and height in pixels.
    pub size: u32,
    /// Seed: the same seed gives the same files.
    pub seed: u64,
    /// Share of pneumonia images.
    pub pneumonia_share: f64,
    /// Shares of patients in train, val and test.
    pub splits: [f64; 3],
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            n: 2000,
            size: 180,
            seed: 42,
            pneumonia_share: KERMANY_PNEUMONIA_SHARE,
            splits: [0.8, 0.1, 0.1],
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SynthSummary {
    /// `(split, label, count)` for every folder written.
    pub counts: Vec<(String, Label, usize)>,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// Draws one image of `size` x `size` pixels.
pub fn synth_xray(size: u32, pneumonia: bool, rng: &mut impl Rng) -> GrayImage {
    synth_xray_with_truth(size, pneumonia, rng).0
}

/// Draws one image, and beside it where its consolidations are: a mask, 255 where the
/// drawn opacities brighten the lung by more than [`CONSOLIDATION_LEVEL`] gray levels
/// (all 0 for a NORMAL image). What no real data set has, and what chapter 10 checks
/// its maps against.
pub fn synth_xray_with_truth(
    size: u32,
    pneumonia: bool,
    rng: &mut impl Rng,
) -> (GrayImage, GrayImage) {
    let anatomy = Anatomy::random(pneumonia, rng);
    let noise =
        Normal::new(0.0f32, rng.random_range(2.0..6.0)).unwrap_or_else(|_| unreachable_normal());
    let s = size as f32;
    let centre = |x: u32, y: u32| ((x as f32 + 0.5) / s, (y as f32 + 0.5) / s);
    let image = GrayImage::from_fn(size, size, |x, y| {
        let (u, v) = centre(x, y);
        let value = anatomy.value(u, v);
        Luma([(value + noise.sample(rng)).round().clamp(0.0, 255.0) as u8])
    });
    let mask = GrayImage::from_fn(size, size, |x, y| {
        let (u, v) = centre(x, y);
        Luma([if anatomy.consolidation(u, v) > CONSOLIDATION_LEVEL {
            255
        } else {
            0
        }])
    });
    (image, mask)
}

/// How many gray levels (before exposure changes) a consolidation must add to a pixel
/// for the pixel to count as inside it.
pub const CONSOLIDATION_LEVEL: f32 = 8.0;

/// The consolidation mask of a file of a generated data set, drawn again from its seed.
pub fn consolidation_mask(file: &SynthFile, size: u32) -> GrayImage {
    let mut rng = ChaCha8Rng::seed_from_u64(file.seed);
    synth_xray_with_truth(size, file.label == Label::Pneumonia, &mut rng).1
}

fn unreachable_normal() -> Normal<f32> {
    // A positive standard deviation always makes a valid distribution.
    Normal::new(0.0, 1.0).expect("the unit normal distribution is valid")
}

/// One file of a generated data set, before its pixels are drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthFile {
    /// `"train"`, `"val"` or `"test"`.
    pub split: &'static str,
    /// Its class.
    pub label: Label,
    /// Its patient (one or two images each), as [`super::patient_id`] reads it back.
    pub patient_id: String,
    /// The file name, in Kermany's pattern.
    pub name: String,
    /// The seed its pixels are drawn from.
    pub seed: u64,
}

impl SynthFile {
    /// Its path under the data set's folder: `<split>/<CLASS>/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(self.split)
            .join(self.label.name())
            .join(&self.name)
    }
}

/// The files [`write_dataset`] writes, in order, without drawing any pixels: which
/// patient, class and split each image gets.
pub fn synth_plan(options: &SynthOptions) -> Vec<SynthFile> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let splits = ["train", "val", "test"];
    let total: f64 = options.splits.iter().sum();
    let mut files = Vec::with_capacity(options.n);
    let (mut patient, mut image_number) = (0u32, 0u32);
    while files.len() < options.n {
        patient += 1;
        let label = if rng.random_bool(options.pneumonia_share.clamp(0.0, 1.0)) {
            Label::Pneumonia
        } else {
            Label::Normal
        };
        let draw = rng.random::<f64>() * total;
        let split = if draw < options.splits[0] {
            0
        } else if draw < options.splits[0] + options.splits[1] {
            1
        } else {
            2
        };
        let views = if rng.random_bool(0.2) { 2 } else { 1 };
        let kind = if rng.random_bool(0.35) {
            "virus"
        } else {
            "bacteria"
        };
        for view in 1..=views.min(options.n - files.len()) {
            image_number += 1;
            let (name, patient_id) = match label {
                Label::Normal => (
                    format!("SYNTH-IM-{patient:04}-{view:04}.jpeg"),
                    format!("{patient:04}"),
                ),
                Label::Pneumonia => (
                    format!("person{patient}_{kind}_{image_number}.jpeg"),
                    patient.to_string(),
                ),
            };
            files.push(SynthFile {
                split: splits[split],
                label,
                patient_id,
                name,
                seed: options.seed ^ (u64::from(image_number) << 20),
            });
        }
    }
    files
}

/// Writes `options.n` images into `out/<split>/<NORMAL|PNEUMONIA>/`, named like the
/// Kermany files, plus a `README.md` saying what they are. Patients (one or two images
/// each) never span two splits.
pub fn write_dataset(out: impl AsRef<Path>, options: SynthOptions) -> Result<SynthSummary> {
    let out = out.as_ref();
    if options.n == 0 || options.size < 16 {
        return Err(Error::BadArgument(format!(
            "synth needs at least 1 image of at least 16 pixels, got {} of {}",
            options.n, options.size
        )));
    }
    let mut summary = SynthSummary::default();
    let mut counts = std::collections::BTreeMap::<(usize, Label), usize>::new();
    let splits = ["train", "val", "test"];
    for file in synth_plan(&options) {
        let path = out.join(file.path());
        crate::io::create_parent(&path)?;
        let mut image_rng = ChaCha8Rng::seed_from_u64(file.seed);
        let image = synth_xray(options.size, file.label == Label::Pneumonia, &mut image_rng);
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
            .encode_image(&image)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        crate::io::write_bytes_atomic(&path, &bytes)?;
        summary.files.push(path);
        let split = splits.iter().position(|&s| s == file.split).unwrap_or(0);
        *counts.entry((split, file.label)).or_default() += 1;
    }
    summary.counts = counts
        .into_iter()
        .map(|((s, l), n)| (splits[s].to_string(), l, n))
        .collect();
    let readme = format!(
        "{GENERATED_README_TITLE}\n\nMade by `cxr synth` (seed {}, {} images of {} x {} pixels). \
         They are drawings of a chest, with patchy opacities added for PNEUMONIA. Anything trained on them must \
         say so, and no result on them is a result on real radiographs.\n",
        options.seed, options.n, options.size, options.size
    );
    crate::io::write_bytes_atomic(&out.join("README.md"), readme.as_bytes())?;
    Ok(summary)
}

/// The generated data set of `options` in `dir`: written the first time, reused after
/// (the README records what was written, and a folder made with other options is made
/// anew). Returns what to call the data in every report: GENERATED, with its size.
pub fn ensure_generated(dir: impl AsRef<Path>, options: SynthOptions) -> Result<String> {
    let dir = dir.as_ref();
    let readme = dir.join("README.md");
    let recorded = format!(
        "(seed {}, {} images of {} x {} pixels)",
        options.seed, options.n, options.size, options.size
    );
    let text = std::fs::read_to_string(&readme).unwrap_or_default();
    if !text.contains(&recorded) {
        let ours = text.starts_with(GENERATED_README_TITLE);
        if !ours && std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(Error::BadArgument(format!(
                "{} holds files that cxr did not generate: generated images go to a new or \
                 empty folder; delete it or choose another",
                dir.display()
            )));
        }
        // Written beside the folder and moved in whole, so that a run that stops half way
        // leaves no half data set, and two runs at once (doctests, notebooks) never see one.
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = dir
            .file_name()
            .map_or("generated".into(), |n| n.to_string_lossy());
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let partial = parent.join(format!(".{name}.partial-{}-{nonce}", std::process::id()));
        let written = write_dataset(&partial, options);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        if ours {
            // Ours, made with other options: replaced whole.
            let old = parent.join(format!(".{name}.old-{}-{nonce}", std::process::id()));
            if std::fs::rename(dir, &old).is_ok() {
                let _ = std::fs::remove_dir_all(&old);
            }
        } else if dir.is_dir() {
            // Empty (checked above); a rename onto it is refused on some systems.
            let _ = std::fs::remove_dir(dir);
        }
        if let Err(e) = std::fs::rename(&partial, dir) {
            let _ = std::fs::remove_dir_all(&partial);
            // Another run may have moved the same data set in first: then it is there.
            let now = std::fs::read_to_string(&readme).unwrap_or_default();
            if !now.contains(&recorded) {
                return Err(Error::io(dir, e));
            }
        }
    }
    Ok(format!(
        "{} GENERATED images of {} x {} in {} (drawings, not X-rays: no result here is a result on real radiographs)",
        options.n,
        options.size,
        options.size,
        dir.display()
    ))
}

/// A soft step from 1 inside to 0 outside, `edge` wide, for `d` = distance to the border
/// (negative inside).
fn soft(d: f32, edge: f32) -> f32 {
    (0.5 - d / edge).clamp(0.0, 1.0)
}

/// Signed distance-like measure for an ellipse: < 0 inside, 0 on it.
fn ellipse(u: f32, v: f32, cu: f32, cv: f32, ru: f32, rv: f32) -> f32 {
    (((u - cu) / ru).powi(2) + ((v - cv) / rv).powi(2)).sqrt() - 1.0
}

struct Blob {
    u: f32,
    v: f32,
    sigma: f32,
    amplitude: f32,
}

struct Anatomy {
    shift: (f32, f32),
    body: (f32, f32),
    lung_width: f32,
    lung_height: f32,
    heart: (f32, f32),
    dome: f32,
    rib_gap: f32,
    background: f32,
    tissue: f32,
    lung_dark: f32,
    gain: f32,
    gamma: f32,
    texture: [f32; 3],
    blobs: Vec<Blob>,
    /// The first `faint` blobs are faint spots; the rest make up consolidations.
    faint: usize,
}

impl Anatomy {
    fn random(pneumonia: bool, rng: &mut impl Rng) -> Self {
        let shift = (rng.random_range(-0.03..0.03), rng.random_range(-0.03..0.03));
        let lung_width = rng.random_range(0.11..0.15);
        let lung_height = rng.random_range(0.23..0.30);
        let spots = |rng: &mut dyn rand::RngCore,
                     count: usize,
                     amplitude: (f32, f32),
                     sigma: (f32, f32)|
         -> Vec<Blob> {
            (0..count)
                .map(|_| {
                    let side = if rng.random_bool(0.5) { 0.33 } else { 0.67 };
                    Blob {
                        u: side + rng.random_range(-0.07..0.07),
                        v: rng.random_range(0.32..0.62),
                        sigma: rng.random_range(sigma.0..sigma.1),
                        amplitude: rng.random_range(amplitude.0..amplitude.1),
                    }
                })
                .collect()
        };
        let faint = rng.random_range(0..4);
        let mut blobs = spots(rng, faint, (4.0, 18.0), (0.015, 0.04));
        if pneumonia {
            // A consolidation is several overlapping patches: irregular, not a round ball.
            for _ in 0..rng.random_range(1..=4) {
                let centre = spots(rng, 1, (18.0, 65.0), (0.03, 0.08)).remove(0);
                let parts = rng.random_range(2..=4);
                for _ in 0..parts {
                    blobs.push(Blob {
                        u: centre.u + rng.random_range(-0.04..0.04),
                        v: centre.v + rng.random_range(-0.04..0.04),
                        sigma: centre.sigma * rng.random_range(0.5..1.0),
                        amplitude: centre.amplitude * rng.random_range(0.5..1.0),
                    });
                }
            }
        }
        Self {
            shift,
            body: (rng.random_range(0.38..0.45), rng.random_range(0.5..0.6)),
            lung_width,
            lung_height,
            heart: (rng.random_range(0.09..0.13), rng.random_range(0.1..0.14)),
            dome: rng.random_range(0.66..0.74),
            rib_gap: rng.random_range(0.05..0.062),
            background: rng.random_range(5.0..25.0),
            tissue: rng.random_range(150.0..185.0),
            lung_dark: rng.random_range(70.0..110.0),
            gain: rng.random_range(0.85..1.15),
            gamma: rng.random_range(0.85..1.2),
            texture: [
                rng.random_range(0.0..6.3),
                rng.random_range(0.0..6.3),
                rng.random_range(0.0..6.3),
            ],
            blobs,
            faint,
        }
    }

    /// How much lung lies at `(u, v)` (after the shift): 1 inside, 0 outside, soft edges;
    /// the heart, the mediastinum and the diaphragm cut it.
    fn lung(&self, u: f32, v: f32) -> f32 {
        let dome = self.dome + 0.06 * ((u - 0.5) * 6.0).cos();
        let mut lung = 0.0f32;
        for cu in [0.33f32, 0.67] {
            let inside = soft(
                ellipse(u, v, cu, 0.45, self.lung_width, self.lung_height),
                0.05,
            );
            lung = lung.max(inside);
        }
        lung *= soft(v - dome, 0.03);
        let heart = soft(ellipse(u, v, 0.57, 0.62, self.heart.0, self.heart.1), 0.08);
        let mediastinum = soft((u - 0.5).abs() - 0.06, 0.04);
        lung * (1.0 - heart).min(1.0 - mediastinum)
    }

    /// The gray levels the consolidations (not the faint spots) add at `(u, v)`.
    fn consolidation(&self, u: f32, v: f32) -> f32 {
        let (u, v) = (u - self.shift.0, v - self.shift.1);
        let lung = self.lung(u, v);
        self.blobs[self.faint..]
            .iter()
            .map(|blob| {
                let d2 = (u - blob.u).powi(2) + (v - blob.v).powi(2);
                blob.amplitude * (-d2 / (2.0 * blob.sigma * blob.sigma)).exp() * lung
            })
            .sum()
    }

    fn value(&self, u: f32, v: f32) -> f32 {
        let (u, v) = (u - self.shift.0, v - self.shift.1);
        let r = ellipse(u, v, 0.5, 0.62, self.body.0, self.body.1);
        let body = soft(r, 0.04);
        // Thicker in the middle, so brighter: X-rays cross more tissue there.
        let thickness = (1.0 - (r + 1.0).clamp(0.0, 1.0).powi(2)).sqrt();
        let mut value =
            self.background + body * (self.tissue - self.background) * (0.55 + 0.45 * thickness);
        // Shoulders and clavicles.
        for side in [-1.0f32, 1.0] {
            let clavicle = (v - (0.2 + 0.06 * (u - 0.5).abs())).abs();
            if (u - 0.5) * side > 0.04 && (u - 0.5).abs() < 0.3 {
                value += 25.0 * soft(clavicle - 0.012, 0.01) * body;
            }
        }
        let lung = self.lung(u, v);
        // Vessel markings: a faint texture that fades towards the edges of the lungs.
        let texture = ((u * 41.0 + self.texture[0]).sin() * (v * 37.0 + self.texture[1]).sin()
            + (u * 23.0 - v * 29.0 + self.texture[2]).sin())
            * 0.08;
        value -= self.lung_dark * lung * (1.0 - texture);
        // Ribs: arcs across the lungs, brighter where they cross them.
        let arc = v - 0.3 * (u - 0.5).powi(2) - 0.1 * (u - 0.5).abs();
        let phase = (arc - 0.2) / self.rib_gap;
        if phase > 0.0 && phase < 9.0 {
            let stripe = (phase - phase.floor() - 0.5).abs();
            value += 28.0 * soft(stripe - 0.12, 0.1) * lung.max(0.3 * body);
        }
        // Spine.
        value += 35.0 * soft((u - 0.5).abs() - 0.035, 0.02) * body;
        // Spots and consolidations, only where there is lung.
        for blob in &self.blobs {
            let d2 = (u - blob.u).powi(2) + (v - blob.v).powi(2);
            value += blob.amplitude * (-d2 / (2.0 * blob.sigma * blob.sigma)).exp() * lung;
        }
        let normalised = (value * self.gain / 255.0).clamp(0.0, 1.0);
        255.0 * normalised.powf(self.gamma)
    }
}
