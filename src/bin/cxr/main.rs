//! `cxr`: the course's command line. With no arguments it runs the main job on the
//! bundled data; `cxr --help` lists the rest.

mod grade;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cxr::data::{ScanOptions, scan_folder, write_csv};

/// Chest X-ray pneumonia classification: the course's lessons, data tools and grader.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one chapter's lesson on the bundled data and write its figures.
    Lesson {
        /// Chapter number (1 = loading and resizing, 2 = histograms, 3 = augmentation, 4 = VGG,
        /// 5 = splits, 6 = training VGG19, 7 = confusion matrix, 8 = ROC and AUC, 9 = the
        /// tutorial, 10 = explaining a prediction and choosing a threshold).
        chapter: u32,
        /// Folder for figures and tables.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Chapter 9: the data set, as the tutorial's TFRecords or as class folders
        /// (default: the bundled X-rays).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Chapters 7 and 8: judge these predictions (a CSV with columns label,p_NORMAL,
        /// p_PNEUMONIA) instead of the baseline trained on generated images.
        #[arg(long)]
        predictions: Option<PathBuf>,
    },
    /// List the X-rays of a class-per-folder tree as a table.
    Scan {
        /// The folder, e.g. data/chest_xray/val.
        folder: PathBuf,
        /// Also write the table (file, label, patient_id) to this CSV file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Leave unreadable files out and list them, instead of stopping.
        #[arg(long)]
        skip_unreadable: bool,
    },
    /// Generate chest-radiograph-like images (not real X-rays) in the Kermany folder layout.
    Synth {
        /// Where to write train/, val/ and test/.
        #[arg(long)]
        out: PathBuf,
        /// How many images.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Width and height in pixels.
        #[arg(long, default_value_t = 180)]
        size: u32,
        /// Seed: the same seed gives the same images.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of pneumonia images (default: the Kermany training split's, 0.743).
        #[arg(long, default_value_t = cxr::data::KERMANY_PNEUMONIA_SHARE)]
        pneumonia_share: f64,
    },
    /// Download the full data set (the Keras tutorial's TFRecords, about 1.2 GB):
    /// resumable, verified, moved into place only when whole.
    Fetch {
        /// Where to put it.
        #[arg(long, default_value = "data/ChestXRay2017")]
        to: PathBuf,
        /// `tfrecord` keeps the tutorial's files; `kaggle-layout` also unpacks them into
        /// chest_xray/{train,test}/{NORMAL,PNEUMONIA}/ folders.
        #[arg(long, value_enum, default_value_t = Source::Tfrecord)]
        source: Source,
        /// The server folder holding train/ and test/ (a mirror, or a local server).
        #[arg(long, default_value = cxr::fetch::TUTORIAL_BASE_URL)]
        url: String,
        /// Forget the SHA-256 sums recorded in SHA256SUMS for these files and record them
        /// afresh (when a wrong one was recorded; every record's CRC is still checked).
        #[arg(long)]
        forget_checksums: bool,
    },
    /// Train the tutorial's CNN (chapter 9): on --data in either layout, or on generated
    /// images; writes the model, the history, test predictions and figures to --out.
    Train {
        /// The data set: the tutorial's TFRecords or train/val/test class folders.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where the outputs go.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// The tutorial's full settings (180 x 180, up to 100 epochs) instead of the quick run.
        #[arg(long)]
        full: bool,
        /// At most this many epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Image side in pixels.
        #[arg(long)]
        image_size: Option<usize>,
        /// Steps per epoch (the data repeats).
        #[arg(long)]
        steps_per_epoch: Option<usize>,
        /// Initial learning rate (the schedule decays it as the tutorial's does).
        #[arg(long)]
        learning_rate: Option<f64>,
        /// Without --data: how many images to generate.
        #[arg(long)]
        generated_images: Option<usize>,
        /// Where to train: cpu, cpu:N (N replicas), cuda (every GPU), cuda:0,1, metal or
        /// auto. Each replica gets a batch of 25 images per step.
        #[arg(long, default_value = "cpu")]
        devices: String,
        /// With several processes (one per machine, --features nccl): this one's number,
        /// 0 to world size - 1. Give each process its own --out.
        #[arg(long, requires_all = ["world_size", "nccl_id"])]
        rank: Option<usize>,
        /// How many processes train together.
        #[arg(long)]
        world_size: Option<usize>,
        /// A new file in a folder every process sees: rank 0 writes NCCL's id there.
        #[arg(long)]
        nccl_id: Option<PathBuf>,
        /// Continue an interrupted run from its training state (the run folder's
        /// train_state.safetensors): same settings, same seed, same result.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Leave damaged images out (and count them) instead of stopping at the first.
        #[arg(long)]
        skip_damaged: bool,
    },
    /// The devices cxr can train on; with --check, one training step on each strategy
    /// compared with the CPU, and the speed of further steps.
    Devices {
        /// Strategies to check, as --devices takes them (cpu:2, cuda:0, cuda).
        #[arg(long)]
        check: Vec<String>,
        /// Average gradients with NCCL (CUDA, --features nccl), even on one GPU.
        #[arg(long)]
        nccl: bool,
        /// Image side for the check.
        #[arg(long, default_value_t = 180)]
        image_size: usize,
        /// Images per replica per step.
        #[arg(long, default_value_t = 25)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
    /// Classify X-rays with a model saved by `cxr train`.
    Predict {
        /// JPEG or PNG files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// The saved model (the file holds its architecture and image size).
        #[arg(long, default_value = "out/latest/xray_model.safetensors")]
        model: PathBuf,
    },
    /// Show what a saved model looked at in an X-ray: Grad-CAM and occlusion maps over it.
    Explain {
        /// A JPEG or PNG file.
        image: PathBuf,
        /// The saved model (the file holds its architecture and image size).
        #[arg(long, default_value = "out/latest/xray_model.safetensors")]
        model: PathBuf,
        /// Folder for the figure.
        #[arg(long, default_value = "out/explain")]
        out: PathBuf,
    },
    /// Write or check TFRecord files in the layout of the Keras tutorial.
    Tfrecord {
        #[command(subcommand)]
        action: TfrecordAction,
    },
    /// Grade the exercises in exercises/src and print a score per chapter.
    Grade {
        /// Print the scores as JSON, for a learning platform.
        #[arg(long)]
        json: bool,
        /// Grade the reference solutions instead of your work.
        #[arg(long)]
        solutions: bool,
        /// The repository root (where Cargo.toml and exercises/ are); by default the one
        /// that holds the current folder.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    /// The tutorial's images.tfrec and paths.tfrec, train and test.
    Tfrecord,
    /// The same, unpacked into class folders as the Kaggle release lays them out.
    KaggleLayout,
}

#[derive(Subcommand)]
enum TfrecordAction {
    /// Turn a class-per-folder tree (DIR/NORMAL, DIR/PNEUMONIA) into OUT/images.tfrec and
    /// OUT/paths.tfrec, as the tutorial reads them.
    Write {
        /// The folder with NORMAL/ and PNEUMONIA/ inside, e.g. data/chest_xray/val.
        dir: PathBuf,
        /// Where to write the two files.
        out: PathBuf,
    },
    /// Read a TFRecord file through, checking every checksum, and count its records.
    Check {
        /// The file.
        file: PathBuf,
        /// Skip damaged records and count them, instead of stopping at the first.
        #[arg(long)]
        skip_damaged: bool,
    },
}

/// The chapters `cxr lesson` can run so far.
const LESSONS: &[(u32, &str)] = &[
    (1, "loading and resizing X-rays"),
    (2, "gray-level histograms with a mask"),
    (3, "augmentation and generated X-rays"),
    (4, "VGG16 and VGG19"),
    (5, "train, validation and test splits"),
    (6, "training VGG19 on X-rays (20 steps x 4 epochs)"),
    (7, "confusion matrix, precision, recall and F1"),
    (8, "ROC curves and AUC"),
    (
        9,
        "the tutorial's input pipeline: TFRecords, decoding, splits, batches",
    ),
    (
        10,
        "what the model looked at (Grad-CAM, occlusion) and a clinical threshold",
    ),
];

/// mimalloc, which keeps freed memory for the next step (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        None => {
            println!(
                "cxr: running the main job, the Keras tutorial's CNN trained on generated chest images (see `cxr --help` for more)"
            );
            return train(
                None,
                &PathBuf::from("out"),
                &cxr::run::TrainConfig::quick(),
                true,
            );
        }
        Some(Command::Train {
            data,
            out,
            full,
            epochs,
            image_size,
            steps_per_epoch,
            learning_rate,
            generated_images,
            devices,
            rank,
            world_size,
            nccl_id,
            resume,
            skip_damaged,
        }) => {
            let mut cfg = if full {
                cxr::run::TrainConfig::tutorial()
            } else {
                cxr::run::TrainConfig::quick()
            };
            cfg.skip_damaged = skip_damaged;
            cfg.epochs = epochs.unwrap_or(cfg.epochs);
            cfg.image_size = image_size.unwrap_or(cfg.image_size);
            cfg.steps_per_epoch = steps_per_epoch.or(cfg.steps_per_epoch);
            cfg.resume = resume;
            cfg.devices = devices;
            if let (Some(rank), Some(world), Some(id)) = (rank, world_size, nccl_id) {
                cfg.group = Some(cxr::distribute::ProcessGroup::new(rank, world, id)?);
            }
            if let Some(lr) = learning_rate {
                cfg.learning_rate.initial = lr;
            }
            cfg.generated_images = generated_images.unwrap_or(cfg.generated_images);
            return train(data.as_deref(), &out, &cfg, false);
        }
        Some(Command::Devices {
            check,
            nccl,
            image_size,
            batch,
            steps,
        }) => {
            println!("detected: {}", cxr::distribute::Strategy::detect());
            println!(
                "built with: cuda {}, nccl {}, metal {}",
                cfg!(feature = "cuda"),
                cfg!(feature = "nccl"),
                cfg!(feature = "metal")
            );
            for spec in check {
                let mut strategy = cxr::distribute::Strategy::parse(&spec)?;
                if nccl {
                    strategy = strategy.with_all_reduce(cxr::distribute::AllReduce::Nccl)?;
                }
                let c = cxr::distribute::check_strategy(&strategy, image_size, batch, steps)?;
                println!(
                    "{spec}: {}; global batch {}; after one step the weights differ from the CPU's by at most {:.2e}; {:.1} images/s",
                    c.strategy, c.global_batch, c.max_weight_difference, c.images_per_second
                );
            }
        }
        Some(Command::Predict { images, model }) => {
            // Every image is checked to be there before the model is read.
            for image in &images {
                if !image.is_file() {
                    let cwd = std::env::current_dir().unwrap_or_default();
                    let path = image.clone();
                    return Err(cxr::Error::NotFound { path, cwd }.into());
                }
            }
            let cnn = cxr::nn::load_model(&model)?;
            let size = cnn.input_shape().get(1).copied().unwrap_or(0);
            for image in images {
                let bytes = std::fs::read(&image)
                    .with_context(|| format!("cannot read {}", image.display()))?;
                let label = cxr::data::Label::from_path(&image.to_string_lossy());
                let sample =
                    cxr::data::Sample::decode(&bytes, &image.to_string_lossy(), label, size)?;
                let (x, _) = cxr::data::to_batch(&[sample], &cxr::candle_core::Device::Cpu)?;
                let p = cxr::train::predict(&cnn, cxr::train::Loss::BinaryCrossentropy, &x)?
                    .flatten_all()?
                    .to_vec1::<f32>()?[0];
                println!("{}: {}", image.display(), cxr::run::describe_prediction(p));
            }
        }
        Some(Command::Explain { image, model, out }) => {
            for line in cxr::ch10_explain::explain_file(&model, &image, &out)? {
                println!("{line}");
            }
        }
        Some(Command::Fetch {
            to,
            source,
            url,
            forget_checksums,
        }) => {
            let options = cxr::fetch::FetchOptions {
                base_url: url,
                forget_checksums,
                ..Default::default()
            };
            for f in cxr::fetch::fetch_tutorial(&to, &options)? {
                let how = if f.already_there {
                    "already there, verified".to_string()
                } else if f.resumed_from > 0 {
                    format!("downloaded, resumed from byte {}", f.resumed_from)
                } else {
                    "downloaded and verified".to_string()
                };
                println!("{} ({} bytes): {how}", f.path.display(), f.bytes);
            }
            if source == Source::KaggleLayout {
                for split in ["train", "test"] {
                    let n = cxr::fetch::unpack_to_folders(
                        &to.join(split).join("images.tfrec"),
                        &to.join(split).join("paths.tfrec"),
                        &to.join("chest_xray").join(split),
                    )?;
                    println!(
                        "{n} images unpacked into {}",
                        to.join("chest_xray").join(split).display()
                    );
                }
            }
        }
        Some(Command::Tfrecord { action }) => match action {
            TfrecordAction::Write { dir, out } => {
                let written = cxr::data::write_folder(&dir, &out)?;
                println!(
                    "{written} records written to {} and {}",
                    out.join("images.tfrec").display(),
                    out.join("paths.tfrec").display()
                );
            }
            TfrecordAction::Check { file, skip_damaged } => {
                let options = cxr::tfrecord::ReadOptions {
                    skip_damaged,
                    ..Default::default()
                };
                let mut reader = cxr::tfrecord::TfRecordReader::open(&file, options)?;
                let mut bytes = 0u64;
                for record in reader.by_ref() {
                    bytes += record?.len() as u64;
                }
                println!(
                    "{}: {} good records ({bytes} bytes of data), {} damaged skipped",
                    file.display(),
                    reader.records(),
                    reader.skipped()
                );
            }
        },
        Some(Command::Lesson {
            chapter,
            out,
            data,
            predictions,
        }) => lesson(chapter, &out, data.as_deref(), predictions.as_deref())?,
        Some(Command::Scan {
            folder,
            csv,
            skip_unreadable,
        }) => {
            let options = ScanOptions {
                skip_unreadable,
                ..Default::default()
            };
            let scan = scan_folder(&folder, options)?;
            println!("{}", scan.frame);
            for err in &scan.skipped {
                eprintln!("skipped: {err}");
            }
            if let Some(csv) = csv {
                let mut table = scan.frame.select(["file", "label", "patient_id"])?;
                write_csv(&mut table, &csv)?;
                println!("wrote {}", csv.display());
            }
        }
        Some(Command::Synth {
            out,
            n,
            size,
            seed,
            pneumonia_share,
        }) => {
            let options = cxr::data::SynthOptions {
                n,
                size,
                seed,
                pneumonia_share,
                ..Default::default()
            };
            let start = std::time::Instant::now();
            let summary = cxr::data::write_dataset(&out, options)?;
            for (split, label, count) in &summary.counts {
                println!("{split}/{label}: {count}");
            }
            println!(
                "wrote {} generated images (not real X-rays) to {} in {:.1} s",
                summary.files.len(),
                out.display(),
                start.elapsed().as_secs_f64()
            );
        }
        Some(Command::Grade {
            json,
            solutions,
            root,
        }) => {
            let root = match root {
                Some(root) => root,
                None => grade::find_root(&std::env::current_dir()?)?,
            };
            if !json {
                println!("grading {}", root.join("exercises").display());
            }
            let report = grade::run(&root, solutions)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            if report.passed < report.total {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Trains with Ctrl-C wired to stop after the current step; a run stopped before its
/// end exits with 130 (as an interrupted program does), naming what it kept. The main
/// job (`main_job`) also leaves its model as the course's CNN, which the chapters and
/// their tests would otherwise train again.
fn train(
    data: Option<&std::path::Path>,
    out: &std::path::Path,
    cfg: &cxr::run::TrainConfig,
    main_job: bool,
) -> Result<ExitCode> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    // A second handler cannot be installed; training still works without one.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nstopping after this step (the best checkpoint is kept)");
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let report = cxr::run::train_tutorial(data, out, cfg, Some(stop))?;
    for line in &report.lines {
        println!("{line}");
    }
    if main_job {
        // The run itself is done and kept either way: a failed copy only costs a retrain.
        match cxr::run::CourseCnn::adopt(out, &report) {
            Ok(Some(folder)) => println!(
                "kept as the course's CNN in {} (chapters 7, 8 and 10 use it)",
                folder.display()
            ),
            Ok(None) => {}
            Err(e) => {
                eprintln!("warning: not kept as the course's CNN ({e}); the chapters will train it")
            }
        }
    }
    Ok(if report.completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(130)
    })
}

fn lesson(
    chapter: u32,
    out: &std::path::Path,
    data: Option<&std::path::Path>,
    predictions: Option<&std::path::Path>,
) -> Result<()> {
    // The bundled data sits beside the crate, wherever the command is run from.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let report = match chapter {
        1 => {
            use cxr::ch01_loading::{CSV_PATH, IMG_PATH, run};
            run(&root.join(IMG_PATH), &root.join(CSV_PATH), out)
        }
        2 => cxr::ch02_histograms::run(&root.join(cxr::ch02_histograms::EXAMPLE), out),
        3 => cxr::ch03_augmentation::run(&root.join(cxr::ch01_loading::IMG_PATH), out),
        4 => cxr::ch04_vgg::run(out),
        5 => cxr::ch05_splitting::run(out),
        6 => cxr::ch06_training::run(data, out),
        7 => cxr::ch07_confusion::run(predictions, out),
        8 => cxr::ch08_roc::run(predictions, out),
        9 => {
            let bundled = root.join(cxr::ch01_loading::IMG_PATH);
            cxr::ch09_tutorial::run(data.unwrap_or(&bundled), out).and_then(|mut report| {
                // The replica benchmark's figure, from the numbers kept with the book.
                let table = root.join(cxr::ch09_tutorial::SCALING_CSV);
                if table.is_file() {
                    let figure = out.join("ch09-scaling.png");
                    cxr::ch09_tutorial::scaling_figure(&table)?.save(&figure)?;
                    report.push(format!("figure: {}", figure.display()));
                }
                Ok(report)
            })
        }
        10 => cxr::ch10_explain::run(&root, out),
        other => {
            let known: Vec<String> = LESSONS
                .iter()
                .map(|(n, what)| format!("{n} ({what})"))
                .collect();
            bail!(
                "there is no lesson {other} yet; available: {}",
                known.join(", ")
            );
        }
    }
    .with_context(|| format!("chapter {chapter} did not finish"))?;
    for line in report {
        println!("{line}");
    }
    println!("outputs are in {}/", out.display());
    Ok(())
}
