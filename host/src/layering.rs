//! The module map holds: no module cycle, and nothing along the data path
//! (or below it) imports the modules above it. Read from the source, so a
//! new `use` that breaks the map fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules above the data path: they may use everything, nothing below
/// them may use them.
const ABOVE: &[&str] = &[
    "admin",
    "dlq",
    "preview",
    "run",
    "replay",
    "quickstart",
    "tail",
    "validate",
    "pipeline_test",
    "stats",
    "top",
];

/// The data path and what sits below it.
const DATA_PATH_AND_BELOW: &[&str] = &[
    "ingest", "kafka", "stage", "runtime", "sink", "config", "schema", "metrics", "auth", "tap",
    "api",
];

/// Top-level module → top-level modules its code names as `crate::X`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let first = relative.components().next().expect("a component");
            let top = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "main" || top == "lib" || top == "layering" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for piece in code.split("crate::").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        graph.entry(top.clone()).or_default().insert(name);
                    }
                }
            }
            graph.entry(top).or_default();
        }
    }
    graph
}

#[test]
fn nothing_on_the_data_path_imports_the_modules_above_it() {
    let graph = imports();
    let mut wrong = Vec::new();
    for module in DATA_PATH_AND_BELOW {
        for target in graph.get(*module).into_iter().flatten() {
            if ABOVE.contains(&target.as_str()) {
                wrong.push(format!("{module} → {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the module map: {wrong:?}"
    );
    assert!(
        !graph["runtime"].contains("sink"),
        "runtime must reach sinks through runtime::Capabilities"
    );
}

#[test]
fn there_is_no_module_cycle() {
    let graph = imports();
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "module cycle: {}",
            cycle.unwrap_or_default().join(" → ")
        );
    }
}
