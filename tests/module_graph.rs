//! The library's module graph has no cycles: between its top-level modules, and between
//! the files of each module folder; no chapter uses another chapter, and no shared
//! module uses a chapter. `lib.rs` lists the modules top down, each using only modules
//! below it.
//!
//! Edges are read from the code (comments and `#[cfg(test)]` parts left out): `crate::m`
//! anywhere, `use crate::{a, b}`, and inside a folder `super::file` or `super::Item`
//! (resolved to the file that defines `Item`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifiers_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        // `xcrate::` is not `crate::`.
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// `src/train/trainer.rs` is in top-level module `train`, file `trainer`.
fn module_of(src: &Path, file: &Path) -> (String, Option<String>) {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [single] => (single.clone(), None),
        [module, file] => (module.clone(), Some(file.clone())),
        [module, file, ..] => (module.clone(), Some(file.clone())),
        [] => unreachable!(),
    }
}

/// A cycle in `graph`, if there is one, as the list of its nodes.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut found = stack[start..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn defined_items(code: &str) -> Vec<String> {
    let mut items = Vec::new();
    for kind in [
        "struct ", "enum ", "fn ", "trait ", "type ", "const ", "static ", "mod ",
    ] {
        for (i, _) in code.match_indices(kind) {
            let line_start = code[..i].rfind('\n').map_or(0, |p| p + 1);
            if !code[line_start..i].trim_start().starts_with("pub") {
                continue;
            }
            let name: String = code[i + kind.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            items.push(name);
        }
    }
    items
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    let src = Path::new("src");
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let top: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with("src/bin"))
        .map(|f| module_of(src, f).0)
        .filter(|m| m != "lib")
        .collect();
    let mut modules = Graph::new();
    let mut folders: BTreeMap<String, Graph> = BTreeMap::new();
    let mut items: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !f.starts_with("src/bin")) {
        let (module, inner) = module_of(src, file);
        if let Some(inner) = inner
            && inner != "mod"
        {
            for item in defined_items(&code(file)) {
                items
                    .entry(module.clone())
                    .or_default()
                    .insert(item, inner.clone());
            }
        }
    }
    for file in files.iter().filter(|f| !f.starts_with("src/bin")) {
        let (module, inner) = module_of(src, file);
        if module == "lib" {
            continue;
        }
        let code = code(file);
        let entry = modules.entry(module.clone()).or_default();
        for used in identifiers_after(&code, "crate::") {
            if top.contains(&used) && used != module {
                entry.insert(used);
            }
        }
        let Some(inner) = inner.filter(|i| i != "mod") else {
            continue;
        };
        let siblings = items.get(&module).cloned().unwrap_or_default();
        let graph = folders.entry(module.clone()).or_default();
        let node = graph.entry(inner.clone()).or_default();
        let mut used = identifiers_after(&code, "super::");
        used.extend(identifiers_after(&code, &format!("crate::{module}::")));
        for name in used {
            let target = if siblings.values().any(|f| *f == name) {
                Some(name.clone())
            } else {
                siblings.get(&name).cloned()
            };
            if let Some(target) = target
                && target != inner
            {
                node.insert(target);
            }
        }
    }
    if let Some(c) = cycle(&modules) {
        panic!("modules use each other: {}", c.join(" -> "));
    }
    for (module, graph) in &folders {
        if let Some(c) = cycle(graph) {
            panic!("in {module}/, files use each other: {}", c.join(" -> "));
        }
    }
    let chapters: Vec<&String> = modules.keys().filter(|m| m.starts_with("ch")).collect();
    for (module, uses) in &modules {
        if let Some(used) = uses.iter().find(|u| u.starts_with("ch")) {
            panic!("{module} uses the chapter {used}: chapters stand on shared modules only");
        }
    }
    assert!(chapters.len() >= 9, "{chapters:?}");
    // lib.rs lists the shared modules top down: each uses only modules listed after it.
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let order: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .filter(|m| !m.starts_with("ch"))
        .collect();
    for (i, module) in order.iter().enumerate() {
        for used in modules.get(module).into_iter().flatten() {
            let at = order.iter().position(|m| m == used);
            assert!(
                at.is_some_and(|at| at > i),
                "lib.rs lists {module} above {used}, which it uses; move {used} below it"
            );
        }
    }
}
