//! Data-parallel scaling of the tutorial CNN's training steps over replicas, as
//! `cargo bench --bench replicas`. Each replica keeps 25 images per step, so the global
//! batch grows with the replicas (the tutorial's `BATCH_SIZE = 25 *
//! strategy.num_replicas_in_sync`); the number is images per second over the whole step
//! (shards, forward and backward on every replica at once, the all-reduce, Adam).
//!
//! `DEVICES="cpu;cpu:2;cpu:4"` (the default) names the strategies, as `--devices` does;
//! on a GPU machine built with `--features cuda`: `DEVICES="cuda:0;cuda:0,1"`.
//! `IMAGE` (180), `PER_REPLICA` (25) and `STEPS` (3) change the sizes; `CSV=FILE` also
//! writes the table (`replicas,images_per_second`), as `chapters/figures/ch09-scaling.csv`
//! holds it for the book's figure.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use cxr::distribute::{Strategy, check_strategy};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> cxr::Result<()> {
    let image = env("IMAGE", 180);
    let per_replica = env("PER_REPLICA", 25);
    let steps = env("STEPS", 3);
    let specs = std::env::var("DEVICES").unwrap_or_else(|_| "cpu;cpu:2;cpu:4".into());
    println!(
        "tutorial CNN, {image} x {image}, {per_replica} images per replica per step, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rows = String::from("devices,replicas,images_per_second\n");
    for spec in specs.split(';') {
        // The same steps `cxr devices --check` times (after its one step against the CPU).
        let strategy = Strategy::parse(spec)?;
        let check = check_strategy(&strategy, image, per_replica, steps)?;
        let per_step = check.global_batch as f64 / check.images_per_second;
        println!(
            "{spec:<12} {} replica(s), global batch {:>4}: {per_step:.2} s per step, {:.1} images/s",
            strategy.num_replicas_in_sync(),
            check.global_batch,
            check.images_per_second
        );
        rows.push_str(&format!(
            "{spec},{},{:.2}\n",
            strategy.num_replicas_in_sync(),
            check.images_per_second
        ));
    }
    if let Ok(path) = std::env::var("CSV") {
        cxr::io::write_bytes_atomic(std::path::Path::new(&path), rows.as_bytes())?;
    }
    Ok(())
}
