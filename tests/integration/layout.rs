//! The host's module graph runs one way, down the call path (`host/src/lib.rs`, "Layout"): no
//! module imports one that imports it back, however indirectly, and the client uses only the
//! wire and what a function looks like, none of the host's serving side.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules the client may import.
const CLIENT_MAY_USE: [&str; 3] = ["wire", "signature", "value"];

/// Each top-level module of the host's library and the top-level modules its files name
/// through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = xtask::project_root().join("host").join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("host/src reads").map(|e| e.expect("entry").path()));
            continue;
        }
        let Some(module) = top_module(&src, &path) else { continue };
        let text = std::fs::read_to_string(&path).expect("source reads");
        let uses = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String =
                text[i + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// The top-level module a source file belongs to (none for the crate roots).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    if file.extension().is_none_or(|e| e != "rs") {
        return None;
    }
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// A cycle through `from`, if any, as the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == from {
                return Some([path.clone(), vec![from.to_owned()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn the_module_graph_runs_one_way() {
    let graph = module_graph();
    for (module, uses) in &graph {
        println!("{module} -> {}", uses.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(graph.contains_key("session") && graph.contains_key("client"), "the graph was read: {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
    let client_uses: Vec<&String> = graph["client"].iter().filter(|m| !CLIENT_MAY_USE.contains(&m.as_str())).collect();
    assert!(client_uses.is_empty(), "the client imports {client_uses:?}, beyond {CLIENT_MAY_USE:?}");
}
