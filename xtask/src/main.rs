//! Repository chores, run as `cargo xtask <task>`:
//!
//! - `notebooks [--check]`: turn every `chapters/chNN-*.md` into `notebooks/NN-*.ipynb`
//!   (prose into markdown cells, each `rust` block into a code cell); `--check` fails if
//!   a committed notebook differs from what the chapter makes.
//! - `check-executed NOTEBOOK...`: fail if an executed notebook has a cell that did not
//!   run, an error, or anything on stderr (evcxr reports panics and `Err`s from `?` there
//!   while `jupyter execute` still exits 0).
//! - `check-exercises`: prove that every grader fails on the untouched exercises and
//!   passes on the reference solutions.

mod exercises;
mod notebook;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the repository root")
        .to_path_buf();
    match args.first().map(String::as_str) {
        Some("notebooks") => notebook::generate_all(&root, args.iter().any(|a| a == "--check")),
        Some("check-executed") if args.len() > 1 => {
            let mut failed = false;
            for path in &args[1..] {
                failed |= !notebook::check_executed(std::path::Path::new(path))?;
            }
            if failed {
                bail!("an executed notebook has failing cells (see above)");
            }
            Ok(())
        }
        Some("check-exercises") => exercises::check(&root),
        _ => bail!(
            "usage: cargo xtask notebooks [--check] | check-executed NOTEBOOK... | check-exercises"
        ),
    }
}
