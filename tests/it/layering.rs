//! The module graph of `src/`, read from the source: dependencies point
//! inward and never in a circle (docs/architecture.md).
//!
//! A module's dependencies are the `crate::<module>` paths in its code
//! (`use` lines and inline paths alike), read per top-level module of the
//! library (`src/<module>.rs` or `src/<module>/`). Comments and test code
//! (`tests.rs` files, `#[cfg(test)] mod tests { .. }` blocks) do not count:
//! a test may use anything. `src/cli/` and `src/main.rs` are the binary and
//! see the library only through `jwtd::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Test modules sit at the end of their files (STYLE.md).
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// `crate::a::b` and `crate::{a, b::c}` -> the first segments.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // Nested braces are not used in this codebase's imports; the
            // first segment of each item is all the graph needs.
            for item in group[..end].split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    found.insert(first);
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !first.is_empty() {
                found.insert(first);
            }
        }
    }
    found
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" || module == "cli" {
            continue;
        }
        if rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let deps = graph.entry(module.clone()).or_default();
        for dep in crate_paths(&code_of(&text)) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
    graph
}

/// A cycle through `start`, if any, as the modules on it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then(|| {
        path.push(start.to_string());
        path
    })
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph();
    assert!(
        graph.contains_key("verify") && graph.contains_key("server"),
        "read src/: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "module cycles in src/:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_core_imports_nothing_else_of_the_crate() {
    let graph = graph();
    let deps = &graph["verify"];
    assert!(
        deps.is_empty(),
        "src/verify/ imports {deps:?}; the core must stay a leaf"
    );
}

#[test]
fn the_reader_sees_imports_in_every_form() {
    let code = code_of(
        "use crate::verify::{self, Policy};\nuse crate::{clock, cache::Cache};\n\
         // crate::comment\nfn f() { crate::metrics::x(); }\n#[cfg(test)]\nmod tests { use crate::sign; }\n",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(found, ["cache", "clock", "metrics", "verify"]);
}
