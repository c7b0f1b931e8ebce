//! Chapters to notebooks, and the check of an executed notebook.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Info-string words that keep a block out of the notebook: rustdoc does not run these
/// blocks either (or runs them expecting failure).
const NOT_RUN: &[&str] = &["ignore", "no_run", "compile_fail", "should_panic", "text"];

enum Cell {
    Markdown(String),
    Code(String),
}

pub fn generate_all(root: &Path, check: bool) -> Result<()> {
    let mut stale = Vec::new();
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root.join("chapters"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_chapter(p))
        .collect();
    chapters.sort();
    if chapters.is_empty() {
        bail!("no chapters/chNN-*.md files found under {}", root.display());
    }
    for chapter in &chapters {
        let name = chapter
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let target = root.join("notebooks").join(format!("{}.ipynb", &name[2..]));
        let markdown = std::fs::read_to_string(chapter)
            .with_context(|| format!("reading {}", chapter.display()))?;
        let rel = chapter.strip_prefix(root).unwrap_or(chapter);
        let notebook = render(&markdown, &rel.to_string_lossy());
        let current = std::fs::read_to_string(&target).unwrap_or_default();
        if current == notebook {
            continue;
        }
        if check {
            stale.push(target);
        } else {
            std::fs::create_dir_all(root.join("notebooks"))?;
            std::fs::write(&target, notebook)?;
            println!("wrote {}", target.display());
        }
    }
    if !stale.is_empty() {
        let list: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "notebooks differ from their chapters: {}; run `cargo xtask notebooks` and commit the result",
            list.join(", ")
        );
    }
    println!("{} notebook(s) match their chapters", chapters.len());
    Ok(())
}

fn is_chapter(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.len() > 5
        && name.starts_with("ch")
        && name[2..4].bytes().all(|b| b.is_ascii_digit())
        && name.ends_with(".md")
}

/// The notebook for one chapter, as the exact text written to disk.
fn render(markdown: &str, source_name: &str) -> String {
    let mut cells = vec![
        Cell::Markdown(format!(
            "*Generated from `{source_name}` by `cargo xtask notebooks`: edit the chapter, not this notebook. \
             It runs on the evcxr Rust kernel; the first cells build the `cxr` library (a few minutes the first time) \
             and move to the repository root, where the book's paths start.*"
        )),
        Cell::Code(":dep cxr = { path = \"..\", default-features = false }".into()),
        Cell::Code("std::env::set_current_dir(cxr::ROOT)?;".into()),
    ];
    cells.extend(split(markdown));
    let cells: Vec<Value> = cells
        .into_iter()
        .map(|cell| match cell {
            Cell::Markdown(text) => json!({
                "cell_type": "markdown",
                "metadata": {},
                "source": lines(&jupyter_markdown(&text)),
            }),
            Cell::Code(code) => json!({
                "cell_type": "code",
                "execution_count": null,
                "metadata": {},
                "outputs": [],
                "source": lines(&code),
            }),
        })
        .collect();
    let notebook = json!({
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
            "language_info": {
                "codemirror_mode": "rust",
                "file_extension": ".rs",
                "mimetype": "text/rust",
                "name": "Rust",
                "pygment_lexer": "rust",
                "version": ""
            }
        },
        "nbformat": 4,
        "nbformat_minor": 4
    });
    let mut text = serde_json::to_string_pretty(&notebook).expect("a JSON value always serialises");
    text.push('\n');
    text
}

/// Jupyter stores a cell's source as lines, each but the last ending in a newline.
fn lines(text: &str) -> Vec<String> {
    let parts: Vec<&str> = text.split('\n').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i < last {
                format!("{l}\n")
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Splits a chapter into prose and code cells.
fn split(markdown: &str) -> Vec<Cell> {
    let mut cells = Vec::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut block: Option<(bool, Vec<&str>)> = None;
    let flush_prose = |prose: &mut Vec<&str>, cells: &mut Vec<Cell>| {
        let text = prose.join("\n").trim().to_string();
        if !text.is_empty() {
            cells.push(Cell::Markdown(text));
        }
        prose.clear();
    };
    for line in markdown.lines() {
        match &mut block {
            None if line.starts_with("```") => {
                let info = line.trim_start_matches('`').trim();
                let words: Vec<&str> = info.split([',', ' ']).filter(|w| !w.is_empty()).collect();
                let runs =
                    words.first() == Some(&"rust") && !words.iter().any(|w| NOT_RUN.contains(w));
                if runs {
                    flush_prose(&mut prose, &mut cells);
                } else {
                    prose.push(line);
                }
                block = Some((runs, Vec::new()));
            }
            None => prose.push(line),
            Some((runs, body)) if line.starts_with("```") => {
                if *runs {
                    cells.push(Cell::Code(code_cell(body)));
                } else {
                    prose.push(line);
                }
                block = None;
            }
            Some((runs, body)) => {
                if *runs {
                    body.push(line);
                } else {
                    prose.push(line);
                }
            }
        }
    }
    flush_prose(&mut prose, &mut cells);
    cells
}

/// The book's Markdown as Jupyter reads it: figures from the chapters' folder, and
/// mdBook's MathJax delimiters (`\\(`, `\\[`) as the `$` and `$$` that Jupyter renders
/// (inline without the inner spaces, which Markdown's `$` rule does not allow).
fn jupyter_markdown(text: &str) -> String {
    text.replace("](figures/", "](../chapters/figures/")
        .replace("\\\\( ", "$")
        .replace(" \\\\)", "$")
        .replace("\\\\(", "$")
        .replace("\\\\)", "$")
        .replace("\\\\[", "$$")
        .replace("\\\\]", "$$")
}

/// A doctest body as a notebook cell: hidden lines are shown (the notebook must run them),
/// the `Ok::<…>(())` ending that only rustdoc needs is dropped (evcxr handles `?` itself),
/// and a hidden `// show NAME` hint becomes the cell's last expression, so it is displayed.
/// Hidden lines between `# // from above {` and `# // }` repeat, for rustdoc, what an
/// earlier block defined; a notebook has it already, so they are left out.
fn code_cell(body: &[&str]) -> String {
    let mut out = Vec::new();
    let mut show = None;
    let mut repeated = false;
    for line in body {
        let trimmed = line.trim_start();
        if trimmed == "# // from above {" || trimmed == "# // }" {
            repeated = trimmed.ends_with('{');
            continue;
        }
        if repeated {
            continue;
        }
        let visible = if trimmed == "#" {
            String::new()
        } else if let Some(hidden) = trimmed.strip_prefix("# ") {
            hidden.to_string()
        } else if let Some(literal) = trimmed.strip_prefix("##") {
            format!("#{literal}")
        } else {
            line.to_string()
        };
        if visible.starts_with("Ok::<") || visible.starts_with("fn main") {
            continue;
        }
        if let Some(name) = visible.trim().strip_prefix("// show ") {
            show = Some(name.trim().to_string());
            continue;
        }
        out.push(visible);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    if let Some(name) = show {
        out.push(name);
    }
    out.join("\n")
}

/// Prints every problem of an executed notebook; true when there is none.
pub fn check_executed(path: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let notebook: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let cells = notebook["cells"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut code_cells = 0;
    for (index, cell) in cells.iter().enumerate() {
        if cell["cell_type"] != "code" {
            continue;
        }
        code_cells += 1;
        let source = source_text(&cell["source"]);
        if cell["execution_count"].is_null() {
            problems.push(format!("cell {index} never ran:\n{source}"));
        }
        for output in cell["outputs"].as_array().into_iter().flatten() {
            let kind = output["output_type"].as_str().unwrap_or_default();
            if kind == "error" {
                let message = format!("{}: {}", output["ename"], output["evalue"]);
                problems.push(format!(
                    "cell {index} raised an error:\n{source}\n--> {message}"
                ));
            } else if kind == "stream" && output["name"] == "stderr" {
                let message = source_text(&output["text"]);
                problems.push(format!(
                    "cell {index} wrote to stderr (a panic or an Err):\n{source}\n--> {message}"
                ));
            }
        }
        let figures = cell["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["data"].get("image/png").is_some())
            .count();
        if figures > 1 {
            problems.push(format!(
                "cell {index} shows {figures} figures; one cell, one figure:\n{source}"
            ));
        }
    }
    if code_cells == 0 {
        problems.push("the notebook has no code cells".into());
    }
    for problem in &problems {
        eprintln!("{}: {problem}\n", path.display());
    }
    if problems.is_empty() {
        println!("{}: {code_cells} code cells ran cleanly", path.display());
    }
    Ok(problems.is_empty())
}

fn source_text(value: &Value) -> String {
    match value {
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_lines_run_and_the_doctest_ending_goes() {
        let body = [
            "# use cxr::prelude::*;",
            "let x = 1;",
            "# // show x",
            "# Ok::<(), cxr::Error>(())",
        ];
        assert_eq!(code_cell(&body), "use cxr::prelude::*;\nlet x = 1;\nx");
    }

    #[test]
    fn formulas_become_jupyter_maths() {
        assert_eq!(
            jupyter_markdown("\\\\( \\sigma(z) \\\\) and \\\\[ y \\\\]"),
            "$\\sigma(z)$ and $$ y $$"
        );
    }

    #[test]
    fn what_an_earlier_block_defined_is_not_repeated() {
        let body = [
            "# // from above {",
            "# fn build() -> u32 { 1 }",
            "# // }",
            "let model = build();",
        ];
        assert_eq!(code_cell(&body), "let model = build();");
    }

    #[test]
    fn only_runnable_rust_blocks_become_code() {
        let md = "# Title\n\n```rust\nlet a = 1;\n```\n\n```text\nout\n```\n\n```rust,no_run\nslow();\n```\n";
        let cells = split(md);
        let kinds: Vec<&str> = cells
            .iter()
            .map(|c| match c {
                Cell::Markdown(_) => "md",
                Cell::Code(_) => "code",
            })
            .collect();
        assert_eq!(kinds, ["md", "code", "md"]);
        let Cell::Markdown(rest) = &cells[2] else {
            unreachable!()
        };
        assert!(rest.contains("```text") && rest.contains("slow();"));
    }
}
