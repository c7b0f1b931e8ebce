//! Data parallelism over CPU replicas: the same weights as one device on the whole batch,
//! replicas that never drift, replicas that really run at once, and `--devices` parsing
//! with errors that say what to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, ModuleT, Tensor};
use candle_nn::VarMap;
use cxr::data::Pipeline;
use cxr::distribute::{Strategy, max_divergence};
use cxr::nn::Sequential;
use cxr::nn::layers::{
    BatchNormalization, Conv2D, Custom, Dense, Dropout, Flatten, MaxPool2D, Rescaling,
};
use cxr::train::{Adam, Batch, ExponentialDecay, Fit, Loss, TUTORIAL_METRICS, Trainer};

use crate::common;

/// A convolution, ReLU, 2 x 2 max-pool and a dense layer: no dropout, no batch norm, so
/// that replicas and one device compute the same thing.
fn conv_net(device: &Device) -> cxr::Result<Sequential> {
    let mut model = Sequential::new("conv_net", [3, 8, 8]).on(device);
    add_conv_net(&mut model)?;
    Ok(model)
}

fn add_conv_net(model: &mut Sequential) -> cxr::Result<()> {
    model.add("rescaling", Rescaling::new(1.0 / 255.0))?;
    model.add("conv", Conv2D::new(4, 3).relu().padding_same())?;
    model.add("pool", MaxPool2D::new())?;
    model.add("flatten", Flatten)?;
    model.add("dense", Dense::new(1))?;
    Ok(())
}

/// 60 images of 3 x 8 x 8 in batches of `batch`: bright ones are PNEUMONIA.
fn data(batch: usize) -> Pipeline<Batch> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut batches = Vec::new();
    for start in (0..60).step_by(batch) {
        let n = batch.min(60 - start);
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let bright = rng.random_bool(0.5);
            let base = if bright { 150.0 } else { 100.0 };
            pixels.extend((0..192).map(|_| base + rng.random_range(-60.0f32..60.0)));
            labels.push(f32::from(u8::from(bright)));
        }
        batches.push((
            Tensor::from_vec(pixels, (n, 3, 8, 8), &Device::Cpu).unwrap(),
            Tensor::from_vec(labels, (n, 1), &Device::Cpu).unwrap(),
        ));
    }
    Pipeline::from_vec(batches)
}

fn compile(model: impl Into<cxr::train::Replicas>) -> Trainer {
    Trainer::compile(
        model,
        Adam::new(ExponentialDecay::new(0.02, 5, 0.9)),
        Loss::BinaryCrossentropy,
        &TUTORIAL_METRICS,
    )
    .unwrap()
}

fn options<'a>(epochs: usize) -> Fit<'a> {
    Fit::epochs(epochs).class_weight([1.4, 0.8]).quiet()
}

#[test]
fn replicas_give_the_weights_of_one_device_on_the_whole_batch() {
    let one = Strategy::cpu_replicas(1)
        .unwrap()
        .replicate(|device, _| conv_net(device))
        .unwrap();
    let start = common::weight_values(one.primary().weights());
    let mut single = compile(one);
    let single_history = single.fit(&data(10), options(3)).unwrap();
    let expected = common::weight_values(single.model().weights());

    for n in [2, 3, 4] {
        let strategy = Strategy::cpu_replicas(n).unwrap();
        let mirrored = strategy.replicate(|device, _| conv_net(device)).unwrap();
        // Starts from the single run's initial weights (the same seed drew them).
        assert_eq!(common::weight_values(mirrored.primary().weights()), start);
        let mut trainer = compile(mirrored);
        assert_eq!(trainer.num_replicas(), n);
        // Batches of 10 over 3 or 4 replicas: shards of 4, 3, 3 or 3, 3, 2, 2.
        let history = trainer.fit(&data(10), options(3)).unwrap();
        for ((name, got), (_, want)) in common::weight_values(trainer.model().weights())
            .iter()
            .zip(&expected)
        {
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 2e-5, "{n} replicas: {name} off by {worst}");
        }
        for (a, b) in history
            .series("loss")
            .iter()
            .zip(single_history.series("loss"))
        {
            assert!((a - b).abs() < 1e-5, "{n} replicas: loss {a} against {b}");
        }
        assert_eq!(
            history.series("binary_accuracy"),
            single_history.series("binary_accuracy")
        );
        assert_eq!(max_divergence(trainer.replicas()).unwrap(), 0.0);
    }
}

/// Batch norm (per-replica statistics) and dropout (per-replica masks): the replicas see
/// different things, yet apply the same averaged update.
#[test]
fn replicas_never_drift_apart() {
    let mirrored = Strategy::cpu_replicas(3)
        .unwrap()
        .replicate(|device, replica| {
            let mut model = Sequential::new("with_state", [3, 8, 8]).on(device);
            model.add("rescaling", Rescaling::new(1.0 / 255.0))?;
            model.add("flatten", Flatten)?;
            model.add("dense", Dense::new(16).relu())?;
            model.add("bn", BatchNormalization::new())?;
            model.add("dropout", Dropout::new(0.3).seed(40 + replica as u64))?;
            model.add("out", Dense::new(1))?;
            Ok(model)
        })
        .unwrap();
    assert_eq!(mirrored.max_divergence().unwrap(), 0.0, "they start equal");
    let mut trainer = compile(mirrored);
    trainer.fit(&data(12), options(4)).unwrap();
    assert_eq!(trainer.optimizer().iterations(), 20);
    // Trained weights equal to the bit; batch norm's running statistics are each
    // replica's own, as in Keras (the primary's are the ones saved).
    let trained = |w: &VarMap| -> Vec<(String, Vec<f32>)> {
        common::weight_values(w)
            .into_iter()
            .filter(|(n, _)| !n.contains("running") && !n.contains("rng_step"))
            .collect()
    };
    let first = trained(trainer.replicas()[0].weights());
    for model in &trainer.replicas()[1..] {
        assert_eq!(trained(model.weights()), first);
    }
    let moved = first
        .iter()
        .find(|(n, _)| n == "dense.weight")
        .unwrap()
        .1
        .iter()
        .any(|&v| v != 0.0);
    assert!(moved);
}

/// Counts how many replicas are inside `forward_t` at once: each waits (up to 10 s)
/// until all `expected` have arrived, which only happens if they run concurrently.
struct Rendezvous {
    inside: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    expected: usize,
}

impl ModuleT for Rendezvous {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if train {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            for _ in 0..1000 {
                if self.most.load(Ordering::SeqCst) >= self.expected {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(xs.clone())
    }
}

#[test]
fn replicas_run_at_the_same_time() {
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mirrored = Strategy::cpu_replicas(3)
        .unwrap()
        .replicate(|device, _| {
            let mut model = Sequential::new("rendezvous", [3, 8, 8]).on(device);
            let (inside, most) = (inside.clone(), most.clone());
            let meet = Custom::new("Rendezvous", move |shape: &[usize], _| {
                let module = Rendezvous {
                    inside,
                    most,
                    expected: 3,
                };
                Ok((module, shape.to_vec()))
            });
            model.add("rendezvous", meet)?;
            add_conv_net(&mut model)?;
            Ok(model)
        })
        .unwrap();
    let mut trainer = compile(mirrored);
    trainer.fit(&data(30).take(1), options(1)).unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

#[test]
fn a_batch_smaller_than_the_replica_count_still_trains() {
    let mirrored = Strategy::cpu_replicas(4)
        .unwrap()
        .replicate(|device, _| conv_net(device))
        .unwrap();
    let mut trainer = compile(mirrored);
    // 60 images in batches of 2: two replicas idle at every step.
    let history = trainer.fit(&data(2), options(1)).unwrap();
    assert!(history.series("loss")[0].is_finite());
    assert_eq!(max_divergence(trainer.replicas()).unwrap(), 0.0);
}

#[test]
fn devices_are_parsed_and_bad_ones_explained() {
    let s = Strategy::parse("cpu").unwrap();
    assert_eq!(s.num_replicas_in_sync(), 1);
    assert_eq!(s.to_string(), "one device: the CPU");
    let s: Strategy = "cpu:4".parse().unwrap();
    assert_eq!(s.num_replicas_in_sync(), 4);
    // The tutorial's BATCH_SIZE = 25 * strategy.num_replicas_in_sync.
    assert_eq!(s.global_batch_size(25), 100);
    assert!(s.to_string().contains("4 CPU replicas"), "{s}");
    assert!(Strategy::parse("auto").unwrap().num_replicas_in_sync() >= 1);
    assert_eq!(cxr::train::shard_sizes(10, 4), vec![3, 3, 2, 2]);
    assert_eq!(cxr::train::shard_sizes(2, 4), vec![1, 1, 0, 0]);

    let error = |spec: &str| Strategy::parse(spec).unwrap_err().to_string();
    assert!(
        error("tpu").contains("use cpu, cpu:N, cuda"),
        "{}",
        error("tpu")
    );
    assert!(error("cpu:two").contains("`two` is not a number"));
    assert!(error("cpu:0").contains("at least one"));
    if !candle_core::utils::cuda_is_available() {
        let e = error("cuda:0");
        assert!(
            e.contains("--features cuda") && e.contains("--devices cpu"),
            "{e}"
        );
        assert!(error("cuda").contains("no cuda device found"));
    }
    assert!(error("cuda:0,0").contains("named twice"));
}

#[test]
fn processes_share_the_nccl_id_through_a_file() {
    use cxr::distribute::{ID_BYTES, ProcessGroup};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nccl.id");
    // Ranks 1 to 3 start first and wait; rank 0 writes the id; all read the same bytes.
    let waiting: Vec<_> = (1..4)
        .map(|rank| {
            let file = file.clone();
            std::thread::spawn(move || {
                ProcessGroup::new(rank, 4, &file)
                    .unwrap()
                    .share_id(|| panic!("only rank 0 makes the id"))
                    .unwrap()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let made = ProcessGroup::new(0, 4, &file)
        .unwrap()
        .share_id(|| Ok([7u8; ID_BYTES]))
        .unwrap();
    for handle in waiting {
        assert_eq!(handle.join().unwrap(), made);
    }
    // A file left by an earlier run is refused by rank 0, with what to do.
    let error = ProcessGroup::new(0, 2, &file)
        .unwrap()
        .share_id(|| Ok([1u8; ID_BYTES]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("already there") && error.contains("delete it"),
        "{error}"
    );
    // A rank that waits in vain says which file and what to check.
    let mut late = ProcessGroup::new(1, 2, dir.path().join("never.id")).unwrap();
    late.timeout = std::time::Duration::from_millis(200);
    let error = late.share_id(|| unreachable!()).unwrap_err().to_string();
    assert!(
        error.contains("never.id") && error.contains("start rank 0"),
        "{error}"
    );
    // A truncated file is not an id.
    std::fs::write(dir.path().join("short.id"), [1u8; 10]).unwrap();
    let error = ProcessGroup::new(1, 2, dir.path().join("short.id"))
        .unwrap()
        .share_id(|| unreachable!())
        .unwrap_err()
        .to_string();
    assert!(error.contains("10 bytes"), "{error}");
    let error = ProcessGroup::new(2, 2, &file).unwrap_err().to_string();
    assert!(error.contains("below the world size"), "{error}");
}

#[test]
fn each_process_takes_its_shards_and_cpu_replicas_cannot_join_a_group() {
    use cxr::distribute::ProcessGroup;
    let group = ProcessGroup::new(2, 4, "unused.id").unwrap();
    assert_eq!(group.shards(1), 2..3);
    assert_eq!(group.shards(2), 4..6);
    // A global batch of 10 over 4 processes: shards 3, 3, 2, 2; rank 2 trains on 6..8.
    let sizes = cxr::train::shard_sizes(10, 4);
    let start: usize = sizes[..2].iter().sum();
    assert_eq!((start, sizes[2]), (6, 2));
    let mirrored = || {
        Strategy::cpu()
            .replicate(|device, _| conv_net(device))
            .unwrap()
    };
    let error = mirrored().in_group(&group).err().unwrap().to_string();
    assert!(error.contains("--features nccl"), "{error}");
    // A group of one is an ordinary run.
    let alone = ProcessGroup::new(0, 1, "unused.id").unwrap();
    assert!(mirrored().in_group(&alone).is_ok());
}
