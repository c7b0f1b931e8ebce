//! Input-pipeline throughput (chapter 9): read the bundled X-rays from the tutorial's
//! TFRecords, decode each JPEG and resize it to 180 x 180 with `tf.image.resize`'s
//! semantics, on one worker and on every core: `cargo bench --bench pipeline`.
//! `benches/pipeline_python.py` does the same with OpenCV and Pillow; BENCHMARKS.md has
//! both side by side.

/// As the `cxr` binary does (see `cxr::alloc`).
#[global_allocator]
static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;

use std::path::Path;
use std::time::Instant;

use cxr::ch09_tutorial::{process_path, zip_tfrecords};

fn main() -> cxr::Result<()> {
    let dir = std::env::temp_dir().join(format!("cxr-pipeline-bench-{}", std::process::id()));
    let n = cxr::data::write_folder(Path::new("data/chest_xray/val"), &dir)?;
    let (images, paths) = (dir.join("images.tfrec"), dir.join("paths.tfrec"));
    let passes = 8;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{n} X-rays (1.4 megapixels on average), {passes} passes, TFRecord -> JPEG decode -> 180 x 180"
    );
    // WORKERS=1 runs only the one-worker pass (benches/compare.py pins it to one core).
    let counts: Vec<usize> = match std::env::var("WORKERS") {
        Ok(list) => list
            .split(',')
            .filter_map(|w| w.trim().parse().ok())
            .collect(),
        Err(_) => vec![1, cores],
    };
    for workers in counts {
        let ds = zip_tfrecords(&images, &paths)
            .map(workers, |(path, image)| process_path(image, path))
            .repeat(Some(passes));
        // One pass to warm the page cache and the allocator.
        zip_tfrecords(&images, &paths).collect_vec()?;
        let start = Instant::now();
        let mut count = 0;
        for example in ds.iter() {
            example?;
            count += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "cxr, {workers} worker(s): {count} images in {seconds:.2} s, {:.1} images/s",
            count as f64 / seconds
        );
        let key = if workers == 1 { "1" } else { "all" };
        println!("RESULT pipeline-{key}.cxr {:.3}", count as f64 / seconds);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
