//! Proof that the graders grade: every one fails on the untouched exercises and passes on
//! the reference solutions.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub fn check(root: &Path) -> Result<()> {
    let starter = grade(root, false)?;
    let solved = grade(root, true)?;
    let names = |report: &Value, passed: Option<bool>| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for chapter in report["chapters"].as_array().into_iter().flatten() {
            for ins in chapter["instructions"].as_array().into_iter().flatten() {
                if passed.is_none_or(|p| ins["passed"] == p) {
                    out.insert(format!(
                        "{}::{}",
                        chapter["chapter"].as_str().unwrap_or("?"),
                        ins["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        out
    };
    let all = names(&solved, None);
    let mut problems = Vec::new();
    if all.is_empty() {
        problems.push("no graders ran".to_string());
    }
    if names(&starter, None) != all {
        problems.push("the starter and the solutions are graded by different instructions".into());
    }
    for name in names(&starter, Some(true)) {
        problems.push(format!(
            "{name} passes on the untouched exercise: the grader does not grade"
        ));
    }
    for name in names(&solved, Some(false)) {
        problems.push(format!("{name} fails on the reference solution"));
    }
    let shown = starter.to_string();
    for (chapter, answer) in ANSWERS {
        if shown.contains(answer) {
            problems.push(format!(
                "{chapter}: a hint on the untouched exercise shows the answer {answer:?}"
            ));
        }
    }
    for name in &all {
        println!("{name}: fails untouched, passes solved");
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    println!("{} graders checked both ways", all.len());
    hint_checks(root)
}

/// Plausible wrong answers run through their graders (`exercises/src/hint_checks.rs`):
/// each must fail with a hint that names the mistake.
fn hint_checks(root: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    without_cargo_run_env(&mut cmd);
    let status = cmd
        .current_dir(root)
        .args([
            "test",
            "--release",
            "-p",
            "cxr-exercises",
            "--lib",
            "hint_checks",
        ])
        .status()
        .context("running the hint checks")?;
    if !status.success() {
        bail!("a wrong answer passed its grader or got a hint that does not name the mistake");
    }
    Ok(())
}

/// Answers, as a grader would print them, that a hint must never show: `cxr grade --json`
/// goes to platforms that show it to learners.
const ANSWERS: &[(&str, &str)] = &[
    ("ch01", "(150, 150)"),
    ("ch02", "(0.0, 256.0)"),
    ("ch02", "484..968"),
    ("ch04", "(3, 256)"),
    ("ch04", "(3, 512)"),
    ("ch05", "[0.7, 0.15, 0.15]"),
    ("ch05", "[104, 23, 23]"),
    ("ch05", "104, 23 and 23"),
    ("ch06", "(224, 224, 3)"),
    ("ch06", "(224, 224)"),
    ("ch07", "(266, 24, 63, 25)"),
    ("ch07", "0.806"),
    ("ch07", "0.849"),
    ("ch07", "0.838"),
    ("ch08", "0.7192"),
    ("ch09", "1.94"),
    ("ch09", "0.67"),
    ("ch10", "2/3"),
    ("ch10", "is 0.4"),
];

fn grade(root: &Path, solutions: bool) -> Result<Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    without_cargo_run_env(&mut cmd);
    cmd.current_dir(root).args([
        "run",
        "--release",
        "--quiet",
        "--bin",
        "cxr",
        "--",
        "grade",
        "--json",
    ]);
    if solutions {
        cmd.arg("--solutions");
    }
    let output = cmd.output().context("running `cxr grade`")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).with_context(|| {
        format!(
            "`cxr grade{}` printed no report:\n{}",
            if solutions { " --solutions" } else { "" },
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Cargo sets these for the program it runs (`cargo run`, `cargo xtask`); a cargo started
/// from that program must not inherit them: build scripts that read them (ring's, for
/// one) would see other values than in a plain `cargo` and rebuild, and everything above
/// them with it.
fn without_cargo_run_env(cmd: &mut Command) -> &mut Command {
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
