//! Resuming: a run stopped after an epoch, or in the middle of one, and resumed from its
//! training state ends with the weights, optimiser state and history of the run that was
//! never stopped. Dropout is seeded, so the same seed gives the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr::data::Pipeline;
use cxr::nn::Sequential;
use cxr::nn::layers::{BatchNormalization, Dense, Dropout, Flatten, Rescaling};
use cxr::train::{
    Adam, Batch, CsvLogger, EarlyStopping, ExponentialDecay, Fit, History, Loss, ModelCheckpoint,
    TUTORIAL_METRICS, Trainer,
};

use crate::common;

/// Dense, batch norm, dropout, dense: every kind of state a run carries. Weights drawn
/// from `init_seed` (so that a resumed run visibly starts from other weights before the
/// state is loaded).
fn small(init_seed: u64) -> Sequential {
    let mut model = Sequential::new("small", [3, 4, 4]);
    model.add("rescaling", Rescaling::new(1.0 / 255.0)).unwrap();
    model.add("flatten", Flatten).unwrap();
    model.add("hidden", Dense::new(8).relu()).unwrap();
    model.add("bn", BatchNormalization::new()).unwrap();
    model.add("dropout", Dropout::new(0.3).seed(7)).unwrap();
    model.add("out", Dense::new(1)).unwrap();
    let varmap = model.weights().clone();
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(init_seed);
    // In name order: a HashMap's order differs from one map to the next.
    let mut vars: Vec<_> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        if name.contains("bn.") || name.ends_with("rng_step") {
            continue;
        }
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-0.3..0.3))
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    model
}

/// 150 images of 3 x 4 x 4, bright ones PNEUMONIA, shuffled anew each epoch, batches of
/// 16. With `interrupt`, Ctrl-C is "pressed" when that many batches have been made.
fn data_with(interrupt: Option<(usize, Arc<AtomicBool>)>) -> Pipeline<Batch> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let examples: Vec<(Vec<f32>, f32)> = (0..150)
        .map(|_| {
            let bright = rng.random_bool(0.6);
            let base = if bright { 150.0 } else { 100.0 };
            let pixels = (0..48)
                .map(|_| base + rng.random_range(-50.0f32..50.0))
                .collect();
            (pixels, f32::from(u8::from(bright)))
        })
        .collect();
    let made = std::sync::atomic::AtomicUsize::new(0);
    Pipeline::from_vec(examples)
        .shuffle(64, 11)
        .batch(16, false)
        .map(1, move |rows| {
            if let Some((at, flag)) = &interrupt
                && made.fetch_add(1, Ordering::Relaxed) + 1 == *at
            {
                flag.store(true, Ordering::Relaxed);
            }
            let n = rows.len();
            let pixels: Vec<f32> = rows.iter().flat_map(|(p, _)| p.clone()).collect();
            let labels: Vec<f32> = rows.iter().map(|(_, l)| *l).collect();
            Ok((
                Tensor::from_vec(pixels, (n, 3, 4, 4), &Device::Cpu)?,
                Tensor::from_vec(labels, (n, 1), &Device::Cpu)?,
            ))
        })
}

fn data() -> Pipeline<Batch> {
    data_with(None)
}

fn validation() -> Pipeline<Batch> {
    data().take(3)
}

struct Run {
    history: History,
    weights: Vec<(String, Vec<f32>)>,
    iterations: u64,
    csv: String,
}

/// Trains `epochs` epochs in `dir`, resuming from `dir/state.safetensors` when `resume`;
/// with `interrupt_at`, Ctrl-C is "pressed" at that training batch of this call.
fn run(
    dir: &std::path::Path,
    epochs: usize,
    steps: Option<usize>,
    resume: bool,
    interrupt_at: Option<usize>,
) -> Run {
    let model = small(if resume { 99 } else { 1 });
    let stop = Arc::new(AtomicBool::new(false));
    let optimizer = Adam::new(ExponentialDecay::new(0.05, 10, 0.5));
    let mut trainer = Trainer::compile(
        model,
        optimizer,
        Loss::BinaryCrossentropy,
        &TUTORIAL_METRICS,
    )
    .unwrap();
    let train = data_with(interrupt_at.map(|at| (at, stop.clone())));
    let state = dir.join("state.safetensors");
    let val = validation();
    let mut fit = Fit::epochs(epochs)
        .validation(&val)
        .class_weight([1.5, 0.75])
        .quiet()
        .stop_when(stop.clone())
        .save_state(&state)
        .callback(ModelCheckpoint::best(dir.join("best.safetensors")))
        .callback(
            EarlyStopping::on("val_loss")
                .patience(50)
                .restore_best_weights(),
        )
        .callback(CsvLogger::new(dir.join("history.csv")));
    if let Some(steps) = steps {
        fit = fit.steps_per_epoch(steps);
    }
    if resume {
        fit = fit.resume_from(&state);
    }
    let history = trainer.fit(&train, fit).unwrap();
    Run {
        history,
        weights: common::weight_values(trainer.model().weights()),
        iterations: trainer.optimizer().iterations(),
        csv: std::fs::read_to_string(dir.join("history.csv")).unwrap_or_default(),
    }
}

fn assert_same_run(resumed: &Run, straight: &Run) {
    assert_eq!(resumed.iterations, straight.iterations);
    assert_eq!(resumed.history, straight.history);
    for ((name, a), (_, b)) in resumed.weights.iter().zip(&straight.weights) {
        assert_eq!(a, b, "{name} differs");
    }
    assert_eq!(resumed.csv, straight.csv);
}

#[test]
fn a_run_resumed_after_an_epoch_equals_the_run_never_stopped() {
    let straight = run(tempfile::tempdir().unwrap().path(), 4, None, false, None);
    assert_eq!(straight.history.epochs.len(), 4);
    assert_eq!(straight.iterations, 40);

    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 2, None, false, None);
    assert_eq!(first.iterations, 20);
    let resumed = run(dir.path(), 4, None, true, None);
    assert_same_run(&resumed, &straight);
    // Dropout drew a new mask at every step, and resumed at the right position (the
    // weights above are the best epoch's, restored by EarlyStopping; the state holds the
    // last epoch's).
    let state =
        candle_core::safetensors::load(dir.path().join("state.safetensors"), &Device::Cpu).unwrap();
    let step = state["model.dropout.rng_step"].to_vec1::<f32>().unwrap();
    assert_eq!(step, vec![40.0]);
}

#[test]
fn a_run_interrupted_in_mid_epoch_resumes_from_the_last_finished_epoch() {
    let straight = run(tempfile::tempdir().unwrap().path(), 3, Some(7), false, None);
    let dir = tempfile::tempdir().unwrap();
    // Ctrl-C at the 4th step of the second epoch: the state holds epoch 1.
    let stopped = run(dir.path(), 3, Some(7), false, Some(11));
    assert!(stopped.history.interrupted);
    assert_eq!(stopped.history.epochs.len(), 1);
    let resumed = run(dir.path(), 3, Some(7), true, None);
    assert_same_run(&resumed, &straight);
}

#[test]
fn a_damaged_or_foreign_state_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.safetensors"), b"not a state").unwrap();
    let model = small(1);
    let mut trainer =
        Trainer::compile(model, Adam::new(0.01), Loss::BinaryCrossentropy, &[]).unwrap();
    let resume = |file: &str| Fit::epochs(1).quiet().resume_from(dir.path().join(file));
    let error = trainer
        .fit(&data(), resume("state.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("state.safetensors"), "{error}");
    assert!(error.contains("cxr train"), "{error}");

    // A model saved by ModelCheckpoint is not a training state.
    trainer
        .model()
        .save(dir.path().join("weights.safetensors"))
        .unwrap();
    let error = trainer
        .fit(&data(), resume("weights.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("no cxr training-state header"), "{error}");
}

#[test]
fn seeded_dropout_repeats_itself_and_drops_the_rate() {
    let make = |seed| {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        (
            cxr::nn::modules::dropout(0.25, seed, vb.pp("d")).unwrap(),
            varmap,
        )
    };
    let x = Tensor::ones((40, 100), DType::F32, &Device::Cpu).unwrap();
    let masks = |d: &cxr::nn::modules::Dropout| -> Vec<Vec<f32>> {
        (0..3)
            .map(|_| {
                d.forward_t(&x, true)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect()
    };
    let (a, _) = make(3);
    let (b, _) = make(3);
    let (c, _) = make(4);
    let (ma, mb, mc) = (masks(&a), masks(&b), masks(&c));
    assert_eq!(ma, mb, "same seed, same masks");
    assert_ne!(ma[0], mc[0], "another seed, other masks");
    assert_ne!(ma[0], ma[1], "each call draws a new mask");
    let dropped = ma[0].iter().filter(|&&v| v == 0.0).count() as f64 / 4000.0;
    assert!((dropped - 0.25).abs() < 0.03, "{dropped}");
    assert!(
        ma[0]
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
    );
    assert_eq!(a.calls().unwrap(), 3);
    // Inference passes values through and does not advance the stream.
    let same = a.forward_t(&x, false).unwrap();
    assert_eq!(same.sum_all().unwrap().to_scalar::<f32>().unwrap(), 4000.0);
    assert_eq!(a.calls().unwrap(), 3);
}

#[test]
fn the_same_seed_builds_the_same_model_and_trains_it_the_same_way() {
    use cxr::nn::{XrayCnnConfig, xray_cnn};
    let build = |seed: u64| {
        let cfg = XrayCnnConfig {
            image_size: (32, 32),
            seed,
            ..Default::default()
        };
        let model = xray_cnn(cfg).unwrap();
        let varmap = model.weights().clone();
        (model, varmap)
    };
    let values = common::weight_values;
    let ((a, wa), (_, wb), (_, wc)) = (build(3), build(3), build(4));
    assert_eq!(values(&wa), values(&wb));
    assert_ne!(values(&wa), values(&wc));
    // Keras's Glorot-uniform limits hold: conv1 is 3 x 3 from 3 to 16 channels.
    let conv1 = &values(&wa)
        .into_iter()
        .find(|(n, _)| n == "conv1.weight")
        .unwrap()
        .1;
    let limit = (6.0f32 / (27.0 + 144.0)).sqrt();
    assert!(conv1.iter().all(|v| v.abs() <= limit));
    assert!(conv1.iter().any(|v| v.abs() > limit * 0.9));
    // Two training runs from the same seed end equal.
    let x = Tensor::rand(0f32, 255f32, (4, 3, 32, 32), &Device::Cpu)
        .unwrap()
        .round()
        .unwrap();
    let y = Tensor::new(&[[0f32], [1.0], [1.0], [0.0]], &Device::Cpu).unwrap();
    let data = Pipeline::from_vec(vec![(x, y)]);
    let train = |model: Sequential| {
        let mut trainer =
            Trainer::compile(model, Adam::new(0.01), Loss::BinaryCrossentropy, &[]).unwrap();
        let history = trainer
            .fit(&data, Fit::epochs(1).steps_per_epoch(3).quiet())
            .unwrap();
        (history, values(trainer.model().weights()))
    };
    let (b, _) = build(3);
    assert_eq!(train(a), train(b));
}
