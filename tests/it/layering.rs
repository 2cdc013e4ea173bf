//! The module graph of `src/`, read from the source: dependencies point
//! inward and never in a circle (docs/architecture.md).
//!
//! A module's dependencies are the `crate::<module>` paths in its code
//! (`use` lines and inline paths alike), read per top-level module of the
//! library (`src/<module>.rs` or `src/<module>/`). Comments and test code
//! (`tests.rs` and `*_tests.rs` files, `#[cfg(test)] mod tests { .. }` blocks) do not count:
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

/// The code of a file without comments and without test code: each
/// `#[cfg(test)]` item (a `mod tests;` line, or an item whose braces are
/// counted to their close) is skipped wherever it sits. Braces inside
/// string literals would confuse the count; this codebase's source has
/// none on the lines of a test item's header or close.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            skip_item(&mut lines);
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Skips the item after a `#[cfg(test)]`: up to its first `;` outside
/// braces, or to the brace that closes its first `{`.
fn skip_item<'a>(lines: &mut impl Iterator<Item = &'a str>) {
    let mut depth = 0usize;
    let mut opened = false;
    for line in lines {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth = depth.saturating_sub(1),
                ';' if !opened => return,
                _ => {}
            }
        }
        if opened && depth == 0 {
            return;
        }
    }
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
        // Test modules live in `tests.rs` or `*_tests.rs` files, declared
        // `#[cfg(test)] mod ...;` (a test may use a sender's side, e.g.
        // `seal`, to make its input).
        if rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
        {
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

#[test]
fn test_code_anywhere_in_a_file_is_skipped_and_code_after_it_is_read() {
    let code = code_of(
        "use crate::verify;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nfn helper() {\n    \
         if true { crate::sign::x(); }\n}\n#[cfg(test)]\nuse crate::client;\n\
         fn after() { crate::cache::y(); }\n",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(found, ["cache", "verify"]);
}

/// The request-serving fronts reach verification only through the
/// verifier's pipeline: none names the revocation store, the cache, a key
/// source, the binding stage or the core's `verify` functions (a front
/// fills the request's `Context`; `bind` judges it). (The check stages themselves
/// are `pub(super)` in `src/verifier/check.rs`: the compiler keeps fronts
/// off them.) The admin listener is not a front: it probes the store for
/// `/readyz`.
#[test]
fn the_fronts_decide_nothing_themselves() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offences = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(&src)
            .expect("under src/server")
            .to_string_lossy()
            .into_owned();
        if name == "admin.rs" || name.ends_with("tests.rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("read"));
        for banned in [
            "crate::revocation",
            ".revocation()",
            "crate::cache",
            "crate::jwks",
            "crate::bind",
            "verify::dpop",
            "verify::verify",
            "check_cached",
            "check_uncached",
        ] {
            if code.contains(banned) {
                offences.push(format!("src/server/{name} uses {banned}"));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}
