#![doc = include_str!("../chapters/ch03-augmentation.md")]

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::data::{DirectoryIterator, FlowOptions, ImageDataGenerator, synth_xray};
use crate::imaging::{FloatImage, XRay};
use crate::plot::{Figure, Panel, grid};

/// Maps 0..=255 to 0..=1.
pub const RESCALE_RATIO: f32 = 1.0 / 255.0;
/// The lesson's augmentation: mirror half of the training images.
pub const HORIZONTAL_FLIP: bool = true;
/// The lesson's image size, `(height, width)` as Keras writes it.
pub const TARGET_SIZE: (usize, usize) = (150, 150);
/// Images per batch.
pub const BATCH_SIZE: usize = 8;

/// The lesson's `generate_dataset()`: a training generator that rescales and flips, a test
/// generator that only rescales (test images are never augmented), each reading a
/// class-per-folder tree into binary-labelled batches.
pub fn generate_dataset(
    train_dir: impl AsRef<Path>,
    test_dir: impl AsRef<Path>,
    rescale_ratio: f32,
    horizontal_flip: bool,
) -> Result<(DirectoryIterator, DirectoryIterator)> {
    let train_datagen = ImageDataGenerator::new()
        .rescale(rescale_ratio)
        .horizontal_flip(horizontal_flip);
    let test_datagen = ImageDataGenerator::new().rescale(rescale_ratio);
    let options = FlowOptions {
        target_size: TARGET_SIZE,
        batch_size: BATCH_SIZE,
        ..Default::default()
    };
    let train = train_datagen.flow_from_directory(train_dir, options)?;
    let test = test_datagen.flow_from_directory(
        test_dir,
        FlowOptions {
            shuffle: false,
            ..options
        },
    )?;
    Ok((train, test))
}

/// An X-ray and `count` random versions of it made by `generator` (seeded), in a grid of
/// `columns`: what augmentation shows a model.
pub fn augmentation_grid(
    xray: &XRay,
    generator: &ImageDataGenerator,
    count: usize,
    seed: u64,
    columns: usize,
) -> Result<Figure> {
    let original = FloatImage::from_xray(xray);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let versions: Vec<XRay> = (0..count)
        .map(|i| {
            generator
                .random_transform(&original, &mut rng)
                .to_xray(&format!("version {}", i + 1))
        })
        .collect();
    let titles: Vec<String> = (1..=count).map(|i| format!("version {i}")).collect();
    let mut panels = vec![Panel::Image {
        title: "original",
        xray,
    }];
    panels.extend(
        versions
            .iter()
            .zip(&titles)
            .map(|(x, t)| Panel::Image { title: t, xray: x }),
    );
    grid(columns, &panels)
}

/// Real X-rays in the top row, generated ones (`synth_xray`, seeded) below: how close the
/// drawings come, and where they fall short.
pub fn real_and_generated(real: &[XRay], seed: u64) -> Result<Figure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = 180;
    let real: Vec<XRay> = real
        .iter()
        .map(|x| x.to_gray().resize((size, size)))
        .collect::<Result<_>>()?;
    let generated: Vec<XRay> = (0..real.len())
        .map(|i| {
            let pneumonia = i % 2 == 1;
            let name = if pneumonia {
                "generated PNEUMONIA"
            } else {
                "generated NORMAL"
            };
            XRay::from_image(
                name,
                image::DynamicImage::ImageLuma8(synth_xray(size, pneumonia, &mut rng)),
            )
        })
        .collect::<Result<_>>()?;
    let real_titles: Vec<String> = real
        .iter()
        .map(|x| format!("real {}", label_of(x.path())))
        .collect();
    let generated_titles: Vec<String> = generated
        .iter()
        .map(|x| x.path().display().to_string())
        .collect();
    let mut panels: Vec<Panel> = real
        .iter()
        .zip(&real_titles)
        .map(|(x, t)| Panel::Image { title: t, xray: x })
        .collect();
    panels.extend(
        generated
            .iter()
            .zip(&generated_titles)
            .map(|(x, t)| Panel::Image { title: t, xray: x }),
    );
    grid(real.len().max(1), &panels)
}

fn label_of(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The chapter's two figures, from the bundled X-rays in `data_dir`: one X-ray and seven
/// augmented versions, and two real X-rays above two generated ones.
pub fn lesson_figures(data_dir: &Path) -> Result<(Figure, Figure)> {
    let example =
        XRay::open(data_dir.join("PNEUMONIA/person1946_bacteria_4874.jpeg"))?.resize((300, 300))?;
    let generator = ImageDataGenerator::new()
        .horizontal_flip(true)
        .rotation_range(15.0)
        .width_shift_range(0.1)
        .height_shift_range(0.1)
        .zoom_range(0.1);
    let augmentation = augmentation_grid(&example, &generator, 7, 3, 4)?;
    let real: Vec<XRay> = [
        "NORMAL/NORMAL2-IM-1427-0001.jpeg",
        "PNEUMONIA/person1946_bacteria_4874.jpeg",
    ]
    .iter()
    .map(|f| XRay::open(data_dir.join(f)))
    .collect::<Result<_>>()?;
    Ok((augmentation, real_and_generated(&real, 7)?))
}

/// The whole lesson for `cxr lesson 3`: the generators on the bundled folder, one batch's
/// shapes, the augmentation grid and the real-versus-generated figure, written to `out`.
pub fn run(data_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let (train, test) = generate_dataset(data_dir, data_dir, RESCALE_RATIO, HORIZONTAL_FLIP)?;
    let batch = train.batch(0, 0)?;
    let (lo, hi) = (
        batch.x.min_all()?.to_scalar::<f32>()?,
        batch.x.max_all()?.to_scalar::<f32>()?,
    );
    let mut report = vec![
        format!(
            "Found {} images belonging to {} classes: {:?}",
            train.samples(),
            train.class_indices().len(),
            train.class_indices()
        ),
        format!(
            "train: {} batches of up to {BATCH_SIZE}; test: {} batches",
            train.len(),
            test.len()
        ),
        format!(
            "first batch: x {:?} with values {lo:.3}..{hi:.3}, y {:?}",
            batch.x.dims(),
            batch.y.to_vec1::<f32>()?
        ),
    ];
    let (augmentation, comparison) = lesson_figures(data_dir)?;
    let augmented = out.join("ch03-augmentation.png");
    augmentation.save(&augmented)?;
    let compared = out.join("ch03-real-and-generated.png");
    comparison.save(&compared)?;
    report.push(format!(
        "figures: {} and {}",
        augmented.display(),
        compared.display()
    ));
    Ok(report)
}
