//! The layout is policy: `src/` is grouped by pipeline stage, and a file may use only modules of
//! its own or an earlier stage (`sys` and the shared pieces are below every stage), with no cycle
//! between files. This test reads every `crate::` path in `src/` and fails on a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rank of a module path's first segment: lower ranks may not use higher ones.
fn rank(first: &str) -> Option<u8> {
    Some(match first {
        "sys" => 0,
        "class" | "cmdline" | "config" | "envfile" | "logger" | "hex" => 1,
        "find" => 2,
        "fetch" => 3,
        "verify" => 4,
        "mount" => 5,
        "merge" => 6,
        _ => return None,
    })
}

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

/// The module a source file defines, as `crate::` segments (`src/verify/ddi/mod.rs` → verify::ddi).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// Every `crate::a::b` path in non-comment code, cut to the longest prefix that is a known module.
fn used_modules(text: &str, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let segs: Vec<String> = rest
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            let longest = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(m) = longest {
                used.insert(m);
            } else if let Some(first) = segs.first() {
                used.insert(vec![first.clone()]);
            }
        }
    }
    used
}

#[test]
fn stages_only_use_earlier_stages_and_files_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let me = module_of(&src, file);
        if me.is_empty() || me == ["main"] {
            continue;
        }
        let my_rank = rank(&me[0]).unwrap_or_else(|| panic!("{}: no stage", file.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for used in used_modules(&text, &modules) {
            let their = rank(&used[0])
                .unwrap_or_else(|| panic!("{}: crate::{} has no stage", file.display(), used[0]));
            if their > my_rank {
                violations.push(format!(
                    "{} uses later crate::{}",
                    me.join("::"),
                    used.join("::")
                ));
            }
            if used != me && !me.starts_with(&used) {
                graph.entry(me.clone()).or_default().insert(used);
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");

    // Depth-first search for a cycle between files.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "import cycle: {cycle:?}");
    }
}
