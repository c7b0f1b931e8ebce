//! `cxr grade`: runs the exercise graders with `cargo test` and turns libtest's output into
//! a score per chapter.
//!
//! Graders are ordinary tests named `graders::<chapter>::<instruction>`; when one fails,
//! its panic message is the hint shown to the learner. They run concurrently (libtest's
//! threads; no grader depends on another) and the report is put in course order after.
//! A hint never shows the expected value: `assert_eq!`'s `left:`/`right:` lines are
//! dropped, so that a platform showing `--json` output does not hand out answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// One instruction of a lesson, graded.
#[derive(Debug, Serialize)]
pub struct Instruction {
    pub name: String,
    pub passed: bool,
    /// The grader's message when it failed: what is wrong and what to try.
    pub hint: Option<String>,
}

/// The instructions of one chapter.
#[derive(Debug, Serialize)]
pub struct Chapter {
    pub chapter: String,
    pub passed: usize,
    pub total: usize,
    pub instructions: Vec<Instruction>,
}

/// Every chapter's score.
#[derive(Debug, Serialize)]
pub struct Report {
    pub solutions: bool,
    pub passed: usize,
    pub total: usize,
    pub chapters: Vec<Chapter>,
}

impl Report {
    /// The score table a learner reads.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let what = if self.solutions {
            "reference solutions"
        } else {
            "your exercises"
        };
        out.push_str(&format!("Grading {what}\n\n"));
        for chapter in &self.chapters {
            out.push_str(&format!(
                "{}  {}/{}\n",
                chapter.chapter, chapter.passed, chapter.total
            ));
            for ins in &chapter.instructions {
                let mark = if ins.passed { "ok  " } else { "TODO" };
                out.push_str(&format!("  [{mark}] {}\n", ins.name));
                if let Some(hint) = &ins.hint {
                    for line in hint.lines() {
                        out.push_str(&format!("         {line}\n"));
                    }
                }
            }
        }
        out.push_str(&format!(
            "\n{}/{} instructions done",
            self.passed, self.total
        ));
        if let Some(next) = self
            .chapters
            .iter()
            .find(|c| c.passed < c.total)
            .map(|c| &c.chapter)
        {
            out.push_str(&format!(
                "; next: edit exercises/src/{next}.rs, then `cargo test --release -p cxr-exercises {next}`"
            ));
        }
        out.push('\n');
        out
    }
}

/// The checkout that holds `dir`: the nearest folder at or above it with
/// `exercises/Cargo.toml`, so that a clone grades its own exercises.
pub fn find_root(dir: &Path) -> Result<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("exercises").join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "no exercises/ folder at or above {}: run `cxr grade` inside the course's repository, or pass --root",
                dir.display()
            )
        })
}

/// Cargo sets these for the program it runs (`cargo run`, `cargo xtask`); a cargo started
/// from that program must not inherit them: build scripts that read them (ring's, for
/// one) would see other values than in a plain `cargo` and rebuild, and everything above
/// them with it.
pub fn without_cargo_run_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs the graders of the workspace at `root` and collects the scores.
pub fn run(root: &Path, solutions: bool) -> Result<Report> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    without_cargo_run_env(&mut cmd);
    cmd.current_dir(root).args([
        "test",
        "--release",
        "--package",
        "cxr-exercises",
        "--lib",
        "--no-fail-fast",
    ]);
    if solutions {
        cmd.args(["--features", "solutions"]);
    }
    // No backtraces, only the hints.
    cmd.env("RUST_BACKTRACE", "0").args(["--", "--color=never"]);
    let output = cmd
        .output()
        .with_context(|| format!("could not run cargo in {}", root.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = parse(&stdout, solutions);
    if report.total == 0 {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the exercises did not build, so nothing could be graded; fix the first error below and run `cxr grade` again:\n{}",
            tail.join("\n")
        );
    }
    Ok(report)
}

/// Reads libtest's plain output: `test graders::<chapter>::<name> ... ok|FAILED` lines
/// and the `---- <test> stdout ----` sections that hold the panic messages.
pub fn parse(stdout: &str, solutions: bool) -> Report {
    let mut results: BTreeMap<String, Vec<Instruction>> = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test graders::") else {
            continue;
        };
        let Some((name, status)) = rest.split_once(" ... ") else {
            continue;
        };
        let Some((chapter, instruction)) = name.split_once("::") else {
            continue;
        };
        let passed = status.trim() == "ok";
        let hint = (!passed).then(|| panic_message(stdout, &format!("graders::{name}")));
        results
            .entry(chapter.to_string())
            .or_default()
            .push(Instruction {
                name: instruction.to_string(),
                passed,
                hint,
            });
    }
    let chapters: Vec<Chapter> = results
        .into_iter()
        .map(|(chapter, mut instructions)| {
            // Concurrent graders finish in any order; instruction names sort by number.
            instructions.sort_by(|a, b| a.name.cmp(&b.name));
            (chapter, instructions)
        })
        .map(|(chapter, instructions)| Chapter {
            passed: instructions.iter().filter(|i| i.passed).count(),
            total: instructions.len(),
            chapter,
            instructions,
        })
        .collect();
    Report {
        solutions,
        passed: chapters.iter().map(|c| c.passed).sum(),
        total: chapters.iter().map(|c| c.total).sum(),
        chapters,
    }
}

fn panic_message(stdout: &str, test: &str) -> String {
    let header = format!("---- {test} stdout ----");
    let Some(start) = stdout.find(&header) else {
        return "the grader failed without a message".into();
    };
    let section = &stdout[start + header.len()..];
    let lines: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.contains("panicked at"))
        .skip(1)
        .take_while(|l| !l.starts_with("note:") && !l.starts_with("---- ") && !l.is_empty())
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("left:") && !l.starts_with("right:")
        })
        .map(|l| {
            l.trim_start_matches("assertion `left == right` failed: ")
                .trim_start_matches("assertion `left != right` failed: ")
        })
        .collect();
    if lines.is_empty() {
        "the grader failed without a message".into()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "running 2 tests
test graders::ch01_loading::instruction_1_img_path ... FAILED
test graders::ch01_loading::instruction_2_img_size ... ok

failures:

---- graders::ch01_loading::instruction_1_img_path stdout ----

thread 'graders::ch01_loading::instruction_1_img_path' panicked at exercises/src/graders/ch01_loading.rs:9:5:
IMG_PATH = \"\" is not a folder.
Hint: look at CSV_PATH.
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    graders::ch01_loading::instruction_1_img_path

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
";

    #[test]
    fn reads_scores_and_hints_from_libtest_output() {
        let report = parse(SAMPLE, false);
        assert_eq!((report.passed, report.total), (1, 2));
        let ch = &report.chapters[0];
        assert_eq!(ch.chapter, "ch01_loading");
        assert!(!ch.instructions[0].passed);
        assert_eq!(
            ch.instructions[0].hint.as_deref(),
            Some("IMG_PATH = \"\" is not a folder.\nHint: look at CSV_PATH.")
        );
        assert!(ch.instructions[1].passed && ch.instructions[1].hint.is_none());
        assert!(
            report
                .table()
                .contains("next: edit exercises/src/ch01_loading.rs")
        );
    }

    #[test]
    fn hints_never_show_the_expected_value_and_order_is_kept() {
        let out = "test graders::ch02_x::instruction_2_b ... FAILED
test graders::ch02_x::instruction_1_a ... ok

---- graders::ch02_x::instruction_2_b stdout ----

thread 'graders::ch02_x::instruction_2_b' panicked at exercises/src/graders/ch02_x.rs:9:5:
assertion `left == right` failed: CHANNELS is []. Hint: one channel.
  left: []
 right: [0]
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
";
        let report = parse(out, false);
        let ins = &report.chapters[0].instructions;
        assert_eq!(ins[0].name, "instruction_1_a");
        assert_eq!(
            ins[1].hint.as_deref(),
            Some("CHANNELS is []. Hint: one channel.")
        );
    }
}
