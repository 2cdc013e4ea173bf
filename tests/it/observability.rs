//! The monitoring files shipped in `deploy/` against the metrics contract,
//! `docs/metrics.md`: `promtool` checks the Prometheus rules and runs their
//! unit tests, and every metric name the rules, their tests and the Grafana
//! dashboard use must be one the contract documents (or a recording rule the
//! rules file defines).
//!
//! promtool comes from Debian's `prometheus` package (`apt-get install
//! prometheus`; `scripts/test` installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::repo_path;

const CONTRACT: &str = "docs/metrics.md";
const RULES: &str = "deploy/prometheus/jwtd-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/jwtd-rules.test.yaml";
const DASHBOARD: &str = "deploy/grafana/jwtd-dashboard.json";

/// Histogram series suffixes: `NAME_bucket` and friends belong to `NAME`.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs `promtool ARGS` in the repository root; it must succeed.
fn promtool(args: &[&str]) -> Output {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(repo_path(""))
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool not found: install it with `apt-get install prometheus` \
             (Debian's package ships promtool), or run scripts/test, which installs it"
        ),
        Err(e) => panic!("run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The names a check accepts: the contract's metrics (name to type) and the
/// rules file's recording rules.
struct Known {
    documented: BTreeMap<String, String>,
    recorded: BTreeSet<String>,
}

impl Known {
    fn load() -> Known {
        let documented = documented_metrics(&read(CONTRACT));
        assert!(
            documented.len() >= 20,
            "expected the contract's metric table in {CONTRACT}, found {documented:?}"
        );
        let recorded = recording_rules(&read(RULES));
        Known {
            documented,
            recorded,
        }
    }

    fn knows(&self, name: &str) -> bool {
        if self.documented.contains_key(name) || self.recorded.contains(name) {
            return true;
        }
        HISTOGRAM_SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|base| self.documented.get(base))
                .is_some_and(|kind| kind == "histogram")
        })
    }

    /// The names in `text` (see [`metric_names`]) that are neither documented
    /// nor recorded.
    fn unknown_in(&self, text: &str) -> Vec<String> {
        metric_names(text)
            .into_iter()
            .filter(|name| !self.knows(name))
            .collect()
    }
}

/// The contract's metrics: the rows `| \`jwtd_...\` | type | labels | meaning |`
/// of docs/metrics.md's tables, as name to type.
fn documented_metrics(markdown: &str) -> BTreeMap<String, String> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| `jwtd_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let kind = cells.get(2).copied().unwrap_or_default().to_owned();
            (name, kind)
        })
        .collect()
}

/// The names of the recording rules (`- record: NAME`) in a rules file.
fn recording_rules(yaml: &str) -> BTreeSet<String> {
    yaml.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("- ").unwrap_or(line);
            line.strip_prefix("record:")
        })
        .map(|name| name.trim().trim_matches(['"', '\'']).to_owned())
        .collect()
}

/// The names of the alerts (`- alert: NAME`) in a rules file.
fn alert_names(yaml: &str) -> BTreeSet<String> {
    yaml.lines()
        .filter_map(|line| line.trim_start().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Whether `b` can be part of a metric name (so a name cannot start after it).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Every jwtd metric or recording rule name in `text`: the matches of
/// `jwtd_[a-z0-9_]+` and `jwtd:[a-z0-9_:]+` that start a word. `jwtd::...`
/// is the daemon's log target (`jwtd::security`), not a metric, and is
/// skipped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("jwtd") {
        let start = from + at;
        let sep = start + "jwtd".len();
        from = sep;
        if start > 0 && is_name_byte(bytes[start - 1]) {
            continue;
        }
        let colons = match (bytes.get(sep), bytes.get(sep + 1)) {
            (Some(b'_'), _) => false,
            (Some(b':'), Some(b':')) => continue,
            (Some(b':'), _) => true,
            _ => continue,
        };
        let end = bytes[sep + 1..]
            .iter()
            .position(|&b| {
                !(b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || (colons && b == b':'))
            })
            .map_or(bytes.len(), |n| sep + 1 + n);
        if end > sep + 1 {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// Every PromQL query of the dashboard: the panels' target `expr`s and the
/// template variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(expr.to_owned());
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(definition) = var["definition"].as_str() {
            queries.push(definition.to_owned());
        }
        if let Some(query) = var["query"]["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    queries
}

/// The dashboard's panels, rows included, and those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("dashboard panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

fn load_dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

#[test]
fn promtool_check_rules_passes() {
    let out = promtool(&["check", "rules", &repo_path(RULES).to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS"),
        "promtool check rules said: {text}"
    );
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let out = promtool(&["test", "rules", &repo_path(RULE_TESTS).to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "promtool test rules said: {text}");
}

/// Each alert has a unit test where it fires and one where it stays quiet
/// (`exp_alerts: []`).
#[test]
fn every_alert_has_positive_and_negative_unit_tests() {
    let alerts = alert_names(&read(RULES));
    for expected in [
        "JwtdAttackTokens",
        "JwtdForgedSignaturesSurge",
        "JwtdAnomalySurge",
        "JwtdKeySetStale",
        "JwtdKeyRefreshFailing",
        "JwtdNotReady",
        "JwtdDown",
        "JwtdRevocationBackendDown",
        "JwtdFailingOpen",
        "JwtdHighLatency",
        "JwtdOverloaded",
        "JwtdHighRejectRate",
    ] {
        assert!(alerts.contains(expected), "{RULES} lacks alert {expected}");
    }

    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in read(RULE_TESTS).lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("- ").unwrap_or(line);
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts after an alertname");
            if rest.trim() == "[]" {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for alert in &alerts {
        assert!(
            fires.contains(alert),
            "{RULE_TESTS} never shows {alert} firing"
        );
        assert!(
            quiet.contains(alert),
            "{RULE_TESTS} never shows {alert} quiet (exp_alerts: [])"
        );
    }
}

#[test]
fn rules_and_their_tests_use_only_documented_metrics() {
    let known = Known::load();
    assert!(
        known.recorded.len() >= 5,
        "expected recording rules in {RULES}, found {:?}",
        known.recorded
    );
    for name in &known.recorded {
        assert!(
            name.starts_with("jwtd:"),
            "recording rule {name} does not follow the jwtd:... convention"
        );
    }
    for file in [RULES, RULE_TESTS] {
        let text = read(file);
        let used = metric_names(&text);
        assert!(used.len() >= 10, "found few names in {file}: {used:?}");
        let unknown = known.unknown_in(&text);
        assert!(
            unknown.is_empty(),
            "{file} uses metrics {CONTRACT} does not document: {unknown:?}"
        );
    }
}

#[test]
fn dashboard_uses_only_documented_metrics_and_the_datasource_variable() {
    let known = Known::load();
    let dashboard = load_dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion: {}",
        dashboard["schemaVersion"]
    );

    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(
        var("instance")["query"]["query"],
        "label_values(jwtd_build_info, instance)"
    );

    let all = panels(&dashboard);
    let rows: Vec<&str> = all
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for row in [
        "Overview",
        "Security",
        "Keys",
        "Revocation",
        "Tokens",
        "Crypto",
    ] {
        assert!(rows.contains(&row), "no {row} row in {rows:?}");
    }

    let graphs: Vec<&Value> = all.iter().copied().filter(|p| p["type"] != "row").collect();
    assert!(
        graphs.len() >= 15,
        "only {} panels besides rows",
        graphs.len()
    );
    let mut ids = BTreeSet::new();
    for panel in &all {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
    }
    for panel in &graphs {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title:?} does not use the datasource variable"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            if !target["datasource"].is_null() {
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "a query of {title:?} does not use the datasource variable"
                );
            }
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !metric_names(expr).is_empty(),
                "a query of {title:?} reads no jwtd metric: {expr:?}"
            );
            assert!(
                expr.contains(r#"instance=~"$instance""#),
                "a query of {title:?} ignores the instance variable: {expr:?}"
            );
        }
    }

    let queries = dashboard_queries(&dashboard);
    let mut used = BTreeSet::new();
    for query in &queries {
        used.extend(metric_names(query));
        let unknown = known.unknown_in(query);
        assert!(
            unknown.is_empty(),
            "{DASHBOARD} queries metrics {CONTRACT} does not document: {unknown:?} in {query:?}"
        );
    }
    assert!(
        used.len() >= 15,
        "the dashboard reads few metrics: {used:?}"
    );
}

/// The name check can fail: a made-up metric, an undefined recording rule and
/// a histogram suffix on a counter are all reported; real names, histogram
/// series and the `jwtd::security` log target are not.
#[test]
fn name_check_reports_undocumented_names() {
    let known = Known::load();
    let text = r#"
        sum(rate(jwtd_not_a_metric_total[5m])) / sum(rate(jwtd_requests_total[5m]))
        + jwtd:not_recorded:rate5m + jwtd:requests:rate5m
        + rate(jwtd_requests_total_bucket[5m])
        + histogram_quantile(0.99, rate(jwtd_request_duration_seconds_bucket[5m]))
        + rate(jwtd_signature_verify_duration_seconds_count[5m])
        + up{job=~".*jwtd.*"} + xjwtd_ignored
        # see the jwtd::security warnings
    "#;
    assert_eq!(
        metric_names(text),
        [
            "jwtd:not_recorded:rate5m",
            "jwtd:requests:rate5m",
            "jwtd_not_a_metric_total",
            "jwtd_request_duration_seconds_bucket",
            "jwtd_requests_total",
            "jwtd_requests_total_bucket",
            "jwtd_signature_verify_duration_seconds_count",
        ]
        .map(str::to_owned)
        .into(),
    );
    assert_eq!(
        known.unknown_in(text),
        [
            "jwtd:not_recorded:rate5m",
            "jwtd_not_a_metric_total",
            "jwtd_requests_total_bucket",
        ]
    );
}
