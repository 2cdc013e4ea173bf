//! README.md's quick start, run as written, so what it shows cannot drift
//! from what jwtd prints: its first command starts the daemon, then the
//! example block mints a token with the dev key and asks the daemon about
//! it. Each `# ` line after a command in that block is the output it shows,
//! `...` standing for any text (times, ids).

use std::process::{Command, Stdio};

use crate::support::{Jwtd, jwtd_bin, repo_path};

/// The bodies of README.md's ```` ```sh ```` blocks, in order.
fn sh_blocks(readme: &str) -> Vec<&str> {
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(body, _)| body))
        .collect()
}

/// Whether `line` is `pattern`, where each `...` in it stands for any text.
fn shown_as(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("...");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[test]
fn output_patterns_match_as_the_readme_means_them() {
    assert!(shown_as("a...c", "abbbc"));
    assert!(shown_as("a...c", "ac"));
    assert!(shown_as(
        r#"{"iat":...,"jti":"..."}"#,
        r#"{"iat":1,"jti":"x"}"#
    ));
    assert!(shown_as("abc", "abc"));
    assert!(!shown_as("abc", "abcd"));
    assert!(!shown_as("a...c", "abcd"));
    assert!(!shown_as("a...b...c", "acb"));
    assert!(!shown_as("ab...bc", "abc"));
}

#[test]
fn the_quick_start_example_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let blocks = sh_blocks(&readme);
    // The daemon: the first block's `cargo run --release [-- ARGS]`, run as
    // the binary under test, in a runtime dir of its own (the default
    // socket is $XDG_RUNTIME_DIR/jwtd.sock).
    let run = blocks
        .first()
        .and_then(|b| {
            b.lines()
                .find_map(|l| l.trim().strip_prefix("cargo run --release"))
        })
        .expect("README's first sh block runs `cargo run --release`");
    let run = run.split('#').next().unwrap_or("");
    let args: Vec<&str> = run.split_whitespace().skip_while(|a| *a == "--").collect();
    assert_eq!(args.first(), Some(&"serve"), "{run}");
    // The default socket, $XDG_RUNTIME_DIR/jwtd.sock, in the daemon's temp
    // dir; returns once it listens.
    let daemon = Jwtd::builder()
        .no_jwks_file()
        .args(&args[1..])
        .default_socket()
        .current_dir(repo_path(""))
        .start();

    // The example: commands, and after each the output it shows.
    let example = blocks
        .iter()
        .find(|b| b.contains("$jwtd verify"))
        .expect("README has the sh block that runs `$jwtd verify`");
    assert_eq!(example.matches("target/release/jwtd").count(), 1);
    let script = example.replace("target/release/jwtd", jwtd_bin());
    let shown: Vec<&str> = example
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .collect();
    assert!(shown.len() >= 2, "the example shows no output: {example}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(repo_path(""))
        .env("XDG_RUNTIME_DIR", daemon.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let printed = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(
        printed.len(),
        shown.len(),
        "printed {printed:#?}, the README shows {shown:#?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (line, pattern) in printed.iter().zip(&shown) {
        assert!(
            shown_as(pattern, line),
            "jwtd printed\n  {line}\nwhere the README shows\n  {pattern}"
        );
    }
}
