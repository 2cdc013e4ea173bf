//! The raw layer: each source (environment, TOML file) read into a
//! [`RawConfig`] through the one list of settings, with the file's tables
//! (`[[issuers]]`, `[[routes]]`, `[claim_headers]`), and the problems of
//! names no setting has (unknown `JWTD_*` variables and file keys, each
//! with a "did you mean"). Flags are read by the binary, from the same list.
//!
//! Nothing here types a value: that is `validate`'s work.

use super::settings::{Kind, RawConfig, RawIssuer, SETTINGS, Scope, Setting, Value, split_list};

/// One `[[routes]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRoute {
    /// The path prefix the route covers.
    pub prefix: Option<String>,
    /// Scopes a token needs under it.
    pub scopes: Vec<String>,
    /// Claim names, each with the values one of which it must have.
    pub claims: Vec<(String, Vec<String>)>,
}

/// One `[[bindings]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawBinding {
    /// The claim holding the bound value.
    pub claim: Option<String>,
    /// What it must equal: `client_ip` or `sha256(header, ...)`.
    pub equals: Option<String>,
    /// Only tokens of this issuer.
    pub issuer: Option<String>,
    /// Only requests under this path prefix.
    pub prefix: Option<String>,
    /// `refuse` (default) or `allow`: a token without the claim.
    pub if_missing: Option<String>,
}

impl RawConfig {
    /// Reads `JWTD_<SETTING>` variables through `get` (the process
    /// environment in production, a map in tests). Lists are
    /// comma-separated, items trimmed, empty items dropped. Several issuers
    /// and routes need the structure of the config file: they are never
    /// read from the environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> RawConfig {
        RawConfig::read(|s| {
            get(s.env).map(|v| match s.kind {
                Kind::Text | Kind::Switch => Value::Text(v),
                Kind::List | Kind::Pairs => Value::List(split_list(&v)),
            })
        })
    }

    /// Parses a TOML file's text. Every problem (syntax, unknown keys, wrong
    /// types) is appended to `problems`; what could be read is returned.
    pub fn from_toml(text: &str, problems: &mut Vec<String>) -> RawConfig {
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("config file: {}", e.to_string().trim_end()));
                return RawConfig::default();
            }
        };
        let mut raw = RawConfig::read(|s| take(&mut table, "", s, problems));
        raw.issuers = table
            .remove("issuers")
            .and_then(|v| issuer_tables(v, problems));
        raw.routes = table
            .remove("routes")
            .and_then(|v| route_tables(v, problems));
        raw.bindings = table
            .remove("bindings")
            .and_then(|v| binding_tables(v, problems));
        for key in table.keys() {
            let known = SETTINGS
                .iter()
                .map(|s| s.key)
                .chain(["issuers", "routes", "bindings"]);
            problems.push(unknown_key("", key, known));
        }
        raw
    }
}

/// Removes setting `s` from `table` as its kind is written in the file.
/// `at` prefixes problems (`""`, or `"issuers[1]."`).
fn take(
    table: &mut toml::Table,
    at: &str,
    s: &Setting,
    problems: &mut Vec<String>,
) -> Option<Value> {
    match s.kind {
        Kind::Text | Kind::Switch => take_scalar(table, at, s.key, problems).map(Value::Text),
        Kind::List => take_list(table, at, s.key, problems).map(Value::List),
        Kind::Pairs => table
            .remove(s.key)
            .and_then(|v| pairs_table(at, s.key, v, problems))
            .map(Value::List),
    }
}

/// Removes `key` from `table` as a setting's text: a string, or an integer
/// or boolean written bare.
fn take_scalar(
    table: &mut toml::Table,
    at: &str,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match table.remove(key)? {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        other => {
            problems.push(format!(
                "config file: {at}{key}: expected a string or integer, found {}",
                other.type_str()
            ));
            None
        }
    }
}

/// Removes `key` from `table` as a list: an array of strings, or one string.
fn take_list(
    table: &mut toml::Table,
    at: &str,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<Vec<String>> {
    match table.remove(key)? {
        toml::Value::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            if strings.is_none() {
                problems.push(format!(
                    "config file: {at}{key}: expected an array of strings"
                ));
            }
            strings
        }
        toml::Value::String(s) => Some(vec![s]),
        other => {
            problems.push(format!(
                "config file: {at}{key}: expected an array of strings, found {}",
                other.type_str()
            ));
            None
        }
    }
}

/// Reads a table of name = "value" (`[claim_headers]`: header = claim) into
/// `name=value` items, the form the command line and environment use.
fn pairs_table(
    at: &str,
    key: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
) -> Option<Vec<String>> {
    let toml::Value::Table(table) = value else {
        problems.push(format!(
            "config file: {at}{key}: expected a table of header = \"claim\""
        ));
        return None;
    };
    let mut out = Vec::new();
    for (name, value) in table {
        match value {
            toml::Value::String(value) => out.push(format!("{name}={value}")),
            other => problems.push(format!(
                "config file: {at}{key}.{name}: expected a claim name, found {}",
                other.type_str()
            )),
        }
    }
    Some(out)
}

/// Reads `[[bindings]]`: `claim`, `equals`, `issuer`, `prefix`,
/// `if_missing`.
fn binding_tables(value: toml::Value, problems: &mut Vec<String>) -> Option<Vec<RawBinding>> {
    let toml::Value::Array(items) = value else {
        problems.push("config file: bindings: expected [[bindings]] tables".to_owned());
        return None;
    };
    let mut out = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let at = format!("bindings[{n}].");
        let toml::Value::Table(mut t) = item else {
            problems.push(format!("config file: bindings[{n}]: expected a table"));
            continue;
        };
        let mut take = |key| take_scalar(&mut t, &at, key, problems);
        let binding = RawBinding {
            claim: take("claim"),
            equals: take("equals"),
            issuer: take("issuer"),
            prefix: take("prefix"),
            if_missing: take("if_missing"),
        };
        for key in t.keys() {
            let known = ["claim", "equals", "issuer", "prefix", "if_missing"].into_iter();
            problems.push(unknown_key(&at, key, known));
        }
        out.push(binding);
    }
    Some(out)
}

/// Reads `[[routes]]`: `prefix`, `scopes`, and `claims` (a table of claim
/// name to allowed values).
fn route_tables(value: toml::Value, problems: &mut Vec<String>) -> Option<Vec<RawRoute>> {
    let toml::Value::Array(items) = value else {
        problems.push("config file: routes: expected [[routes]] tables".to_owned());
        return None;
    };
    let mut out = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let at = format!("routes[{n}].");
        let toml::Value::Table(mut t) = item else {
            problems.push(format!("config file: routes[{n}]: expected a table"));
            continue;
        };
        let mut route = RawRoute {
            prefix: take_scalar(&mut t, &at, "prefix", problems),
            scopes: take_list(&mut t, &at, "scopes", problems).unwrap_or_default(),
            claims: Vec::new(),
        };
        match t.remove("claims") {
            None => {}
            Some(toml::Value::Table(mut claims)) => {
                let names: Vec<String> = claims.keys().cloned().collect();
                for name in names {
                    let at = format!("{at}claims.");
                    if let Some(values) = take_list(&mut claims, &at, &name, problems) {
                        route.claims.push((name, values));
                    }
                }
            }
            Some(other) => problems.push(format!(
                "config file: {at}claims: expected a table of claim = [values], found {}",
                other.type_str()
            )),
        }
        for key in t.keys() {
            let known = ["prefix", "scopes", "claims"].into_iter();
            problems.push(unknown_key(&at, key, known));
        }
        out.push(route);
    }
    Some(out)
}

/// The settings an `[[issuers]]` table takes: its name, key source and
/// policy.
fn issuer_settings() -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().filter(|s| s.scope != Scope::Daemon)
}

/// Reads `[[issuers]]` (an array of tables) with the same rules as the top
/// level.
fn issuer_tables(value: toml::Value, problems: &mut Vec<String>) -> Option<Vec<RawIssuer>> {
    let toml::Value::Array(items) = value else {
        problems.push("config file: issuers: expected [[issuers]] tables".to_owned());
        return None;
    };
    let mut out = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let at = format!("issuers[{n}].");
        let toml::Value::Table(mut t) = item else {
            problems.push(format!("config file: issuers[{n}]: expected a table"));
            continue;
        };
        let raw = RawIssuer::read(|s| take(&mut t, &at, s, problems));
        for key in t.keys() {
            problems.push(unknown_key(&at, key, issuer_settings().map(|s| s.key)));
        }
        out.push(raw);
    }
    Some(out)
}

/// The problem for an unknown key `at``key` of the config file, with the
/// known key it was probably meant to be.
fn unknown_key<'a>(at: &str, key: &str, known: impl Iterator<Item = &'a str>) -> String {
    match closest(key, known) {
        Some(k) => format!("config file: {at}{key}: unknown setting; did you mean {k}?"),
        None => format!("config file: {at}{key}: unknown setting"),
    }
}

/// Every `JWTD_*` variable `jwtd serve` reads.
pub fn env_names() -> Vec<&'static str> {
    SETTINGS.iter().map(|s| s.env).collect()
}

/// One problem per `JWTD_*` variable among `names` that no setting reads:
/// a misspelt variable is otherwise silently ignored, and the setting it
/// meant keeps its default (`JWTD_AUDIENCE` would leave audiences
/// unchecked). Each names the variable and, when one is close, the one
/// that was probably meant.
pub fn unknown_env<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in names {
        let name = name.as_ref();
        if !name.starts_with("JWTD_") || SETTINGS.iter().any(|s| s.env == name) {
            continue;
        }
        // A setting's TOML key used as a variable (JWTD_REQUIRED_CLAIMS)
        // means its variable (JWTD_REQUIRE).
        let by_key = SETTINGS
            .iter()
            .find(|s| format!("JWTD_{}", s.key.to_uppercase()) == name)
            .map(|s| s.env);
        let hint = by_key.or_else(|| closest(name, env_names().into_iter()));
        problems.push(match hint {
            Some(h) => format!("{name}: not a jwtd setting; did you mean {h}?"),
            None => format!(
                "{name}: not a jwtd setting (docs/configuration.md lists the JWTD_* variables)"
            ),
        });
    }
    problems.sort();
    problems
}

/// The candidate closest to `word` by edit distance, if it is close enough
/// to be a typo (at most 2 edits, and fewer than a third of the word).
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(word.len() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes (setting names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
