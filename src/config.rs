//! `jwtd serve` configuration: every setting, its default, its sources, and
//! validation that reports every problem at once.
//!
//! Two stages, as in ripgrep: [`RawConfig`] holds each setting as text, as
//! close to its source as possible; [`Config::from_raw`] types and checks all
//! of them and returns either a [`Config`] or the full list of problems (the
//! binary prints one per line and exits 64).
//!
//! Sources, highest precedence first: command-line flags, `JWTD_*`
//! environment variables, the TOML file given by `--config`, defaults.
//!
//! # Settings
//!
//! `docs/configuration.md` lists every setting with its flag, environment
//! variable, TOML key and default; keep it in step with [`RawConfig`] (the
//! `deploy/jwtd.toml` test fails when a key is unknown here).
//!
//! Durations read as `30`, `30s`, `500ms`, `100us`, `5m`, `1h`, `1d`. Lists in TOML are
//! arrays; on the command line and in the environment, comma-separated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jwks::source::{Endpoint, RemoteSettings, url_problem};
use crate::revocation::RevocationConfig;
use crate::server::authz::{self, AuthzConfig, ClaimHeader, Route};
use crate::verifier::{IssuerConfig, VerifierConfig};
use crate::verify::KeySet;
use crate::verify::{self, AlgSet, Algorithm, Policy};

/// The development key set compiled into the binary, served only with an
/// explicit `--dev` (`JWTD_DEV=1`, `dev = true`): its private key is
/// published in `deploy/dev/`, so anyone could mint tokens it accepts.
pub const DEV_JWKS: &str = include_str!("../deploy/dev/jwks.json");

/// The one issuer accepted with `--dev` (`deploy/dev/README.md`): a token
/// minted for the dev set with any other `iss` is refused, so a dev daemon
/// never vouches for tokens that look like a real issuer's.
pub const DEV_ISSUER: &str = "https://jwtd.dev.invalid";

/// Longest refresh period, cooldown or fetch timeout accepted.
const MAX_REFRESH: Duration = Duration::from_secs(30 * 86_400);

/// Exit status for a bad configuration (EX_CONFIG would be 78; jwtd follows
/// linkerd and sysexits' EX_USAGE, 64, as the brief asks).
pub const EXIT_CONFIG: u8 = 64;

/// Every setting as text, `None` when not given. Lists are already split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// See the settings table.
    pub socket: Option<String>,
    /// Octal, e.g. `0660`.
    pub socket_mode: Option<String>,
    /// Path of a JWK set or PEM file.
    pub jwks_file: Option<String>,
    /// JWK set URL.
    pub jwks_url: Option<String>,
    /// Issuer URL for OIDC discovery.
    pub discovery: Option<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Accepted audiences.
    pub audiences: Option<Vec<String>>,
    /// Allowed algorithms.
    pub algorithms: Option<Vec<String>>,
    /// Duration.
    pub leeway: Option<String>,
    /// Claim names.
    pub required_claims: Option<Vec<String>>,
    /// Required header typ.
    pub typ: Option<String>,
    /// Duration.
    pub max_lifetime: Option<String>,
    /// Integer.
    pub max_token_bytes: Option<String>,
    /// Integer.
    pub cache_entries: Option<String>,
    /// Duration.
    pub cache_max_ttl: Option<String>,
    /// Integer.
    pub max_connections: Option<String>,
    /// Integer.
    pub max_in_flight: Option<String>,
    /// Integer.
    pub max_frame_bytes: Option<String>,
    /// Integer.
    pub max_verifying: Option<String>,
    /// Duration.
    pub idle_timeout: Option<String>,
    /// Duration.
    pub write_timeout: Option<String>,
    /// Duration.
    pub shutdown_grace: Option<String>,
    /// Integer.
    pub threads: Option<String>,
    /// Tracing filter.
    pub log: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Admin listener address.
    pub admin_addr: Option<String>,
    /// Duration.
    pub refresh_interval: Option<String>,
    /// Duration.
    pub refresh_min: Option<String>,
    /// Duration.
    pub refresh_max: Option<String>,
    /// Duration.
    pub fetch_timeout: Option<String>,
    /// Integer.
    pub max_jwks_bytes: Option<String>,
    /// Duration.
    pub unknown_kid_cooldown: Option<String>,
    /// Duration.
    pub unknown_kid_wait: Option<String>,
    /// Duration.
    pub max_stale: Option<String>,
    /// Redis URLs (one server, or cluster nodes).
    pub redis: Option<Vec<String>>,
    /// `closed` or `open`.
    pub revocation_fail: Option<String>,
    /// Key prefix.
    pub revocation_prefix: Option<String>,
    /// Duration.
    pub revocation_window: Option<String>,
    /// Integer.
    pub revocation_batch: Option<String>,
    /// Duration.
    pub revocation_timeout: Option<String>,
    /// Duration.
    pub revocation_cache_ttl: Option<String>,
    /// HTTP front socket path.
    pub http_socket: Option<String>,
    /// HTTP front TCP address.
    pub http_listen: Option<String>,
    /// gRPC front socket path.
    pub grpc_socket: Option<String>,
    /// gRPC front TCP address.
    pub grpc_listen: Option<String>,
    /// Header holding the token.
    pub token_header: Option<String>,
    /// Cookie holding the token.
    pub token_cookie: Option<String>,
    /// Query parameter holding the token.
    pub token_query: Option<String>,
    /// `true`/`false`.
    pub forward_payload: Option<String>,
    /// `true`/`false`.
    pub debug_reason: Option<String>,
    /// `true`/`false`.
    pub strip_token: Option<String>,
    /// Path prefix stripped before route matching.
    pub http_path_prefix: Option<String>,
    /// `header=claim` mappings (a `[claim_headers]` table in the file).
    pub claim_headers: Option<Vec<String>>,
    /// `[[issuers]]` tables (config file only).
    pub issuers: Option<Vec<RawIssuer>>,
    /// `[[routes]]` tables (config file only).
    pub routes: Option<Vec<RawRoute>>,
    /// Serve the embedded development key set (`true`/`false`).
    pub dev: Option<String>,
    /// Integer.
    pub max_kidless_keys: Option<String>,
    /// Integer.
    pub grpc_max_message_bytes: Option<String>,
    /// Integer.
    pub grpc_max_streams: Option<String>,
    /// Integer.
    pub grpc_max_buffered_bytes: Option<String>,
    /// Duration.
    pub grpc_body_timeout: Option<String>,
    /// Integer.
    pub max_header_bytes: Option<String>,
    /// Duration.
    pub header_timeout: Option<String>,
    /// Integer.
    pub admin_max_connections: Option<String>,
    /// Group name or numeric gid.
    pub socket_group: Option<String>,
    /// `true`/`false`.
    pub ready_requires_revocation: Option<String>,
}

/// One `[[routes]]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRoute {
    /// Path prefix.
    pub prefix: Option<String>,
    /// Required scopes.
    pub scopes: Vec<String>,
    /// Claim name and its allowed values.
    pub claims: Vec<(String, Vec<String>)>,
}

/// One `[[issuers]]` table: its own key source and policy; unset policy
/// settings fall back to the top-level ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawIssuer {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Key file.
    pub jwks_file: Option<String>,
    /// JWK set URL.
    pub jwks_url: Option<String>,
    /// Issuer URL for discovery.
    pub discovery: Option<String>,
    /// Accepted audiences.
    pub audiences: Option<Vec<String>>,
    /// Allowed algorithms.
    pub algorithms: Option<Vec<String>>,
    /// Duration.
    pub leeway: Option<String>,
    /// Claim names.
    pub required_claims: Option<Vec<String>>,
    /// Required header typ.
    pub typ: Option<String>,
    /// Duration.
    pub max_lifetime: Option<String>,
    /// Integer.
    pub max_kidless_keys: Option<String>,
}

macro_rules! fields {
    ($m:ident) => {
        $m!(
            socket, socket_mode, jwks_file, jwks_url, discovery, issuer, leeway, typ, max_lifetime,
            max_token_bytes, cache_entries, cache_max_ttl, max_connections, max_in_flight,
            max_frame_bytes, max_verifying, idle_timeout, write_timeout, shutdown_grace, threads, log,
            log_format, admin_addr,
            refresh_interval, refresh_min, refresh_max, fetch_timeout, max_jwks_bytes,
            unknown_kid_cooldown, unknown_kid_wait, max_stale, revocation_fail, revocation_prefix,
            revocation_window, revocation_batch, revocation_timeout, revocation_cache_ttl,
            http_socket, http_listen, grpc_socket, grpc_listen, token_header, token_cookie,
            token_query, forward_payload, debug_reason, strip_token, http_path_prefix, dev,
            max_kidless_keys, grpc_max_message_bytes, grpc_max_streams, grpc_max_buffered_bytes, grpc_body_timeout,
            max_header_bytes, header_timeout, admin_max_connections, socket_group,
            ready_requires_revocation;
            audiences, algorithms, required_claims, redis, claim_headers
        )
    };
}

impl RawConfig {
    /// The names of the settings this source gives.
    pub fn given(&self) -> Vec<&'static str> {
        macro_rules! given {
            ($($s:ident),*; $($l:ident),*) => {{
                let mut names = Vec::new();
                $(if self.$s.is_some() { names.push(stringify!($s)); })*
                $(if self.$l.is_some() { names.push(stringify!($l)); })*
                if self.issuers.is_some() { names.push("issuers"); }
                if self.routes.is_some() { names.push("routes"); }
                names
            }};
        }
        fields!(given)
    }

    /// Fills every unset setting from `lower` (a lower-precedence source).
    pub fn or(self, lower: RawConfig) -> RawConfig {
        macro_rules! merge {
            ($($s:ident),*; $($l:ident),*) => {
                RawConfig {
                    $($s: self.$s.or(lower.$s),)*
                    $($l: self.$l.or(lower.$l),)*
                    issuers: self.issuers.or(lower.issuers),
                    routes: self.routes.or(lower.routes),
                }
            };
        }
        fields!(merge)
    }

    /// Reads `JWTD_<SETTING>` variables through `get` (the process
    /// environment in production, a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> RawConfig {
        let split = |v: String| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        macro_rules! env {
            ($($s:ident),*; $($l:ident),*) => {
                RawConfig {
                    $($s: get(&format!("JWTD_{}", stringify!($s).to_uppercase())),)*
                    $($l: get(&env_name(stringify!($l))).map(split),)*
                    // Several issuers and routes need the structure of the
                    // config file.
                    issuers: None,
                    routes: None,
                }
            };
        }
        fields!(env)
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
        macro_rules! scalars {
            ($($s:ident),*; $($l:ident),*) => {{
                let mut raw = RawConfig::default();
                $(raw.$s = take_scalar(&mut table, "", stringify!($s), problems);)*
                raw
            }};
        }
        let mut raw = fields!(scalars);
        raw.audiences = take_list(&mut table, "", "audiences", problems);
        raw.algorithms = take_list(&mut table, "", "algorithms", problems);
        raw.required_claims = take_list(&mut table, "", "required_claims", problems);
        raw.redis = take_list(&mut table, "", "redis", problems);
        raw.claim_headers = table
            .remove("claim_headers")
            .and_then(|v| claim_header_table(v, problems));
        raw.issuers = table
            .remove("issuers")
            .and_then(|v| issuer_tables(v, problems));
        raw.routes = table
            .remove("routes")
            .and_then(|v| route_tables(v, problems));
        for key in table.keys() {
            let known = setting_names().into_iter().chain(["issuers", "routes"]);
            problems.push(unknown_key("", key, known));
        }
        raw
    }
}

/// Removes `key` from `table` as a setting's text: a string, or an integer
/// written bare. `at` prefixes problems (`""`, or `"issuers[1]."`).
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

/// Reads `[claim_headers]` (header name = claim name) into `header=claim`
/// items, the form the command line and environment use.
fn claim_header_table(value: toml::Value, problems: &mut Vec<String>) -> Option<Vec<String>> {
    let toml::Value::Table(table) = value else {
        problems
            .push("config file: claim_headers: expected a table of header = \"claim\"".to_owned());
        return None;
    };
    let mut out = Vec::new();
    for (header, claim) in table {
        match claim {
            toml::Value::String(claim) => out.push(format!("{header}={claim}")),
            other => problems.push(format!(
                "config file: claim_headers.{header}: expected a claim name, found {}",
                other.type_str()
            )),
        }
    }
    Some(out)
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
        let t = &mut t;
        let raw = RawIssuer {
            issuer: take_scalar(t, &at, "issuer", problems),
            jwks_file: take_scalar(t, &at, "jwks_file", problems),
            jwks_url: take_scalar(t, &at, "jwks_url", problems),
            discovery: take_scalar(t, &at, "discovery", problems),
            leeway: take_scalar(t, &at, "leeway", problems),
            typ: take_scalar(t, &at, "typ", problems),
            max_lifetime: take_scalar(t, &at, "max_lifetime", problems),
            audiences: take_list(t, &at, "audiences", problems),
            algorithms: take_list(t, &at, "algorithms", problems),
            required_claims: take_list(t, &at, "required_claims", problems),
            max_kidless_keys: take_scalar(t, &at, "max_kidless_keys", problems),
        };
        for key in t.keys() {
            problems.push(unknown_key(&at, key, ISSUER_KEYS.iter().copied()));
        }
        out.push(raw);
    }
    Some(out)
}

/// The keys of an `[[issuers]]` table.
const ISSUER_KEYS: [&str; 11] = [
    "issuer",
    "jwks_file",
    "jwks_url",
    "discovery",
    "leeway",
    "typ",
    "max_lifetime",
    "audiences",
    "algorithms",
    "required_claims",
    "max_kidless_keys",
];

/// The problem for an unknown key `at``key` of the config file, with the
/// known key it was probably meant to be.
fn unknown_key<'a>(at: &str, key: &str, known: impl Iterator<Item = &'a str>) -> String {
    match closest(key, known) {
        Some(k) => format!("config file: {at}{key}: unknown setting; did you mean {k}?"),
        None => format!("config file: {at}{key}: unknown setting"),
    }
}

/// Environment variable names (after `JWTD_`) of list settings: the
/// setting's name upper-cased, except `required_claims`, whose flag and
/// variable are `--require` / `JWTD_REQUIRE`.
fn env_list_name(field: &str) -> String {
    match field {
        "required_claims" => "REQUIRE".to_owned(),
        other => other.to_uppercase(),
    }
}

/// The command-line flag of a setting (list settings read one item per
/// flag, hence the singular names).
fn flag_name(setting: &str) -> String {
    match setting {
        "audiences" => "--audience".to_owned(),
        "required_claims" => "--require".to_owned(),
        "claim_headers" => "--claim-header".to_owned(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The environment variable of a setting.
fn env_name(setting: &str) -> String {
    macro_rules! is_list {
        ($($s:ident),*; $($l:ident),*) => { [$(stringify!($l)),*].contains(&setting) };
    }
    if fields!(is_list) {
        format!("JWTD_{}", env_list_name(setting))
    } else {
        format!("JWTD_{}", setting.to_uppercase())
    }
}

/// Every setting's name (the TOML key), scalars and lists.
fn setting_names() -> Vec<&'static str> {
    macro_rules! names {
        ($($s:ident),*; $($l:ident),*) => { vec![$(stringify!($s),)* $(stringify!($l),)*] };
    }
    fields!(names)
}

/// Every `JWTD_*` variable `jwtd serve` reads.
pub fn env_names() -> Vec<String> {
    setting_names().into_iter().map(env_name).collect()
}

/// One problem per `JWTD_*` variable among `names` that no setting reads:
/// a misspelt variable is otherwise silently ignored, and the setting it
/// meant keeps its default (`JWTD_AUDIENCE` would leave audiences
/// unchecked). Each names the variable and, when one is close, the one
/// that was probably meant.
pub fn unknown_env<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<String> {
    let known = env_names();
    let mut problems = Vec::new();
    for name in names {
        let name = name.as_ref();
        if !name.starts_with("JWTD_") || known.iter().any(|k| k == name) {
            continue;
        }
        // A list setting's TOML name used as a variable
        // (JWTD_REQUIRED_CLAIMS) means its variable (JWTD_REQUIRE).
        let by_setting = setting_names()
            .into_iter()
            .find(|s| format!("JWTD_{}", s.to_uppercase()) == name)
            .map(env_name);
        let hint = by_setting
            .or_else(|| closest(name, known.iter().map(String::as_str)).map(str::to_owned));
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

/// Where a setting's value came from, so that a problem names what the user
/// has to change: the flag, the variable, or the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag(String),
    /// An environment variable.
    Env(String),
    /// A line of the config file (`None` where the parser gave no position).
    File(String, Option<usize>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => f.write_str(var),
            Origin::File(path, Some(line)) => write!(f, "{path}:{line}"),
            Origin::File(path, None) => f.write_str(path),
        }
    }
}

/// The origin of every setting that was given, keyed by the name problems
/// start with (`leeway`, `issuers[0].leeway`, `routes[1].prefix`).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    given: std::collections::HashMap<String, Origin>,
    /// The config file's name, for problems of the file as a whole.
    file: Option<String>,
}

impl Origins {
    /// Records where each setting given in `flags`, `env` and the file
    /// (`file`: its path, text and parsed settings) came from; the highest
    /// precedence source wins, as in [`RawConfig::or`].
    pub fn new(
        flags: &RawConfig,
        env: &RawConfig,
        file: Option<(&str, &str, &RawConfig)>,
    ) -> Origins {
        let mut given = std::collections::HashMap::new();
        if let Some((path, text, raw)) = file {
            let lines = toml_lines(text);
            for name in raw.given() {
                given.insert(
                    name.to_owned(),
                    Origin::File(path.to_owned(), lines.get(name).copied()),
                );
            }
            // Keys inside tables (`issuers[0].leeway`), by their line.
            for (key, line) in lines {
                given
                    .entry(key)
                    .or_insert_with(|| Origin::File(path.to_owned(), Some(line)));
            }
        }
        for name in env.given() {
            given.insert(name.to_owned(), Origin::Env(env_name(name)));
        }
        for name in flags.given() {
            given.insert(name.to_owned(), Origin::Flag(flag_name(name)));
        }
        Origins {
            given,
            file: file.map(|(path, _, _)| path.to_owned()),
        }
    }

    /// Where the setting `name` came from, if it was given.
    pub fn of(&self, name: &str) -> Option<&Origin> {
        self.given.get(name)
    }

    /// `problem` prefixed with the origin of the setting it starts with
    /// (`JWTD_LEEWAY: leeway: ...`, `jwtd.toml:3: leeway: ...`); problems of
    /// the file itself (`config file: ...`) name the file and, where known,
    /// the line. Problems about no single given setting are returned as
    /// they are.
    pub fn locate(&self, problem: &str) -> String {
        if let Some(rest) = problem.strip_prefix("config file: ") {
            let file = self.file.as_deref().unwrap_or("config file");
            let key = rest.split(": ").next().unwrap_or_default();
            return match self.given.get(key) {
                Some(Origin::File(_, Some(line))) => format!("{file}:{line}: {rest}"),
                _ => format!("{file}: {rest}"),
            };
        }
        let Some((key, _)) = problem.split_once(": ") else {
            return problem.to_owned();
        };
        // A table's setting that the table leaves unset was inherited from
        // the top level: that is where to change it.
        let inherited = key
            .split_once("].")
            .map(|(_, setting)| setting)
            .unwrap_or(key);
        match self.given.get(key).or_else(|| self.given.get(inherited)) {
            Some(origin) => format!("{origin}: {problem}"),
            None => problem.to_owned(),
        }
    }
}

/// The line of every key of a TOML document, by the name problems use:
/// `leeway`, `issuers[0]` (the table's header), `issuers[0].leeway`,
/// `routes[1].claims.role`, `claim_headers.x-user`. Empty when the text
/// does not parse (the parse error carries its own position).
fn toml_lines(text: &str) -> std::collections::HashMap<String, usize> {
    use toml::de::{DeTable, DeValue};
    fn line(text: &str, offset: usize) -> usize {
        text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
    fn walk(
        text: &str,
        prefix: &str,
        table: &DeTable<'_>,
        out: &mut std::collections::HashMap<String, usize>,
    ) {
        for (key, value) in table {
            let name = format!("{prefix}{}", key.get_ref());
            out.insert(name.clone(), line(text, key.span().start));
            match value.get_ref() {
                DeValue::Table(inner) => walk(text, &format!("{name}."), inner, out),
                DeValue::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        if let DeValue::Table(inner) = item.get_ref() {
                            let at = format!("{name}[{n}]");
                            out.insert(at.clone(), line(text, item.span().start));
                            walk(text, &format!("{at}."), inner, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = std::collections::HashMap::new();
    if let Ok(doc) = DeTable::parse(text) {
        walk(text, "", doc.get_ref(), &mut out);
    }
    out
}

/// Where one issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWK set or PEM file, watched for changes.
    File(PathBuf),
    /// A JWKS URL or OIDC discovery, fetched in the background.
    Remote(Endpoint),
    /// The embedded development set ([`DEV_JWKS`]).
    EmbeddedDev,
}

/// One issuer's key source, with its set when it was loaded during
/// validation (files and the dev set: a bad one is a config problem).
#[derive(Debug, Clone)]
pub struct IssuerSource {
    /// Where the keys come from.
    pub source: KeySource,
    /// The set loaded at start (`None` for remote sources).
    pub keys: Option<KeySet>,
}

/// A validated `jwtd serve` configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket path.
    pub socket: PathBuf,
    /// Socket file permissions.
    pub socket_mode: u32,
    /// One key source per issuer, in the order of `verifier.issuers`.
    pub sources: Vec<IssuerSource>,
    /// Fetch settings of remote sources.
    pub remote: RemoteSettings,
    /// Redis URLs for revocation (empty: the in-memory store).
    pub redis: Vec<String>,
    /// Revocation settings.
    pub revocation: RevocationConfig,
    /// The proxy fronts: where they listen, and their shared settings.
    pub fronts: Fronts,
    /// Verification, policy and cache settings.
    pub verifier: VerifierConfig,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Maximum unanswered requests per connection.
    pub max_in_flight: usize,
    /// Maximum frame size in bytes.
    pub max_frame_bytes: usize,
    /// Maximum cache misses queued or in verification.
    pub max_verifying: usize,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// Stalled reply writes close the connection after this long.
    pub write_timeout: Duration,
    /// How long SIGTERM waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Tokio worker threads (0 = one per core).
    pub threads: usize,
    /// Tracing filter.
    pub log: String,
    /// Log lines as JSON objects (else text).
    pub log_json: bool,
    /// The admin listener (`/metrics`, `/livez`, `/readyz`); none: no
    /// admin listener and no metrics.
    pub admin_addr: Option<SocketAddr>,
    /// Bounds of the listeners (proxy fronts, admin) and socket ownership.
    pub listen: ListenLimits,
}

/// Resource bounds of the proxy fronts and the admin listener, and the
/// group of the Unix sockets (`src/server/listen.rs` explains each value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenLimits {
    /// gRPC: largest `CheckRequest` message.
    pub grpc_max_message_bytes: usize,
    /// gRPC: concurrent streams per connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub grpc_max_streams: u32,
    /// gRPC: request bytes received and not yet decided, over the front.
    pub grpc_max_buffered_bytes: usize,
    /// gRPC: a request message that has not fully arrived after this long
    /// is refused.
    pub grpc_body_timeout: Duration,
    /// HTTP front: largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// HTTP front: a request head must arrive within this long of its
    /// first byte.
    pub header_timeout: Duration,
    /// Admin listener: connections open at once; beyond, closed at once.
    pub admin_max_connections: usize,
    /// Group (gid) given to every Unix socket jwtd creates; none: the
    /// process's group.
    pub socket_group: Option<u32>,
    /// `/readyz` fails while the revocation store (Redis) cannot be reached.
    pub ready_requires_revocation: bool,
}

/// The default socket path: `$XDG_RUNTIME_DIR/jwtd.sock`, else
/// `/tmp/jwtd.sock`.
pub fn default_socket() -> String {
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(dir) if !dir.is_empty() => format!("{dir}/jwtd.sock"),
        _ => "/tmp/jwtd.sock".to_owned(),
    }
}

/// Parses a duration: `90`, `90s`, `500ms`, `15m`, `1h`, `7d`; a bare number
/// is seconds.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number with an optional unit (us, ms, s, m, h, d)"
        )
    })?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too large"))
    };
    match unit {
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(format!(
            "invalid duration {s:?}: unknown unit {unit:?} (use us, ms, s, m, h or d)"
        )),
    }
}

/// Collects problems while typing settings.
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn duration(&mut self, name: &str, v: Option<&str>, default: &str) -> Duration {
        parse_duration(v.unwrap_or(default)).unwrap_or_else(|e| {
            self.problems.push(format!("{name}: {e}"));
            Duration::ZERO
        })
    }

    /// A boolean: `true` or `false`, also `1` or `0` (as `JWTD_DEV=1`);
    /// default false.
    fn flag(&mut self, name: &str, v: Option<&str>) -> bool {
        match v.map(str::trim) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                self.problems
                    .push(format!("{name}: {other:?} is neither true nor false"));
                false
            }
        }
    }

    /// A timeout of at least one second (shorter ones close healthy
    /// connections between two requests).
    fn at_least_1s(&mut self, name: &str, v: Option<&str>, default: &str) -> Duration {
        let d = self.duration(name, v, default);
        if d < Duration::from_secs(1) {
            self.problems
                .push(format!("{name}: {d:?} is below the minimum of 1s"));
        }
        d
    }

    /// A duration that must be whole seconds (NumericDates are seconds;
    /// `500ms` would silently become 0).
    fn whole_seconds(&mut self, name: &str, v: Option<&str>, default: &str) -> Duration {
        let d = self.duration(name, v, default);
        if d.subsec_nanos() != 0 {
            self.problems
                .push(format!("{name}: {d:?} is not a whole number of seconds"));
        }
        d
    }

    fn number(
        &mut self,
        name: &str,
        v: Option<&str>,
        default: usize,
        range: (usize, usize),
    ) -> usize {
        let Some(text) = v else { return default };
        match text.trim().parse::<usize>() {
            Ok(n) if (range.0..=range.1).contains(&n) => n,
            Ok(n) => {
                self.problems.push(format!(
                    "{name}: {n} is outside {} ..= {}",
                    range.0, range.1
                ));
                default
            }
            Err(_) => {
                self.problems
                    .push(format!("{name}: {text:?} is not a whole number"));
                default
            }
        }
    }
}

impl Config {
    /// Types and validates every setting, loading the key set.
    ///
    /// # Errors
    ///
    /// Every problem found, one message each.
    pub fn from_raw(raw: RawConfig) -> Result<Config, Vec<String>> {
        let mut c = Check {
            problems: Vec::new(),
        };

        let socket = PathBuf::from(raw.socket.clone().unwrap_or_else(default_socket));
        if socket.as_os_str().is_empty() {
            c.problems.push("socket: empty path".to_owned());
        }
        let socket_mode =
            match u32::from_str_radix(raw.socket_mode.as_deref().unwrap_or("0660").trim(), 8) {
                Ok(m) if m <= 0o777 => m,
                _ => {
                    c.problems.push(format!(
                        "socket_mode: {:?} is not an octal permission such as 0660",
                        raw.socket_mode.as_deref().unwrap_or_default()
                    ));
                    0o660
                }
            };

        let max_token_bytes = c.number(
            "max_token_bytes",
            raw.max_token_bytes.as_deref(),
            verify::DEFAULT_MAX_TOKEN_BYTES,
            (64, 1024 * 1024),
        );
        // Refresh settings: at least 1 s, at most 30 days (a longer one
        // would be a typo, and must not overflow a timer).
        let refresh = |c: &mut Check, name: &str, v: Option<&str>, default: &str| {
            let d = c.at_least_1s(name, v, default);
            if d > MAX_REFRESH {
                c.problems
                    .push(format!("{name}: {d:?} is above the maximum of 30 days"));
            }
            d.min(MAX_REFRESH)
        };
        let refresh_interval = refresh(
            &mut c,
            "refresh_interval",
            raw.refresh_interval.as_deref(),
            "5m",
        );
        let refresh_min = refresh(&mut c, "refresh_min", raw.refresh_min.as_deref(), "1m");
        let refresh_max = refresh(&mut c, "refresh_max", raw.refresh_max.as_deref(), "1d");
        let fetch_timeout = refresh(&mut c, "fetch_timeout", raw.fetch_timeout.as_deref(), "5s");
        if refresh_min > refresh_max {
            c.problems.push(format!(
                "refresh_min ({refresh_min:?}) is above refresh_max ({refresh_max:?})"
            ));
        }
        let max_stale = Some(c.whole_seconds("max_stale", raw.max_stale.as_deref(), "0"))
            .filter(|d| !d.is_zero());
        if let Some(stale) = max_stale
            && stale < refresh_min * 2
        {
            c.problems.push(format!(
                "max_stale: {stale:?} is below twice refresh_min ({refresh_min:?}): a healthy issuer could not be refreshed in time"
            ));
        }
        let remote = RemoteSettings {
            refresh_interval,
            refresh_min,
            refresh_max,
            fetch_timeout,
            max_bytes: c.number(
                "max_jwks_bytes",
                raw.max_jwks_bytes.as_deref(),
                256 * 1024,
                (1024, 64 * 1024 * 1024),
            ),
            max_stale,
        };
        let cooldown = refresh(
            &mut c,
            "unknown_kid_cooldown",
            raw.unknown_kid_cooldown.as_deref(),
            "30s",
        );
        let wait = c.duration("unknown_kid_wait", raw.unknown_kid_wait.as_deref(), "1s");
        if wait > Duration::from_secs(60) {
            c.problems.push(format!(
                "unknown_kid_wait: {wait:?} is above the maximum of 60s"
            ));
        }

        let revocation = revocation(&mut c, &raw);
        let fronts = fronts(&mut c, &raw, &socket);
        let redis: Vec<String> = raw.redis.clone().unwrap_or_default();
        for url in &redis {
            if let Err(e) = redis::Client::open(url.as_str()) {
                c.problems.push(format!("redis: {url:?}: {e}"));
            }
        }

        let issuer_tables = issuer_list(&mut c, &raw);
        // With [[issuers]] tables, even one, every table must name its issuer
        // and its key source: nothing falls back to the development keys.
        let tables = raw.issuers.as_ref().is_some_and(|t| !t.is_empty());
        let dev = c.flag("dev", raw.dev.as_deref());
        if dev && tables {
            c.problems.push(
                "dev: the embedded development key set cannot be combined with [[issuers]] tables"
                    .to_owned(),
            );
        }
        let mut sources = Vec::new();
        let mut issuers = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (prefix, table) in &issuer_tables {
            let (source, issuer) = key_source(&mut c, prefix, table, tables, dev);
            let policy = policy(&mut c, prefix, table, issuer, max_token_bytes);
            if let Some(iss) = &policy.issuer
                && !names.insert(iss.clone())
            {
                c.problems
                    .push(format!("{prefix}issuer: {iss:?} is configured twice"));
            }
            let remote = matches!(source.source, KeySource::Remote(_));
            issuers.push(IssuerConfig {
                policy,
                unknown_kid: remote.then_some((cooldown, wait)),
                max_stale: max_stale.filter(|_| remote),
            });
            sources.push(source);
        }

        // The LRU preallocates its table: bound what one setting can reserve.
        let cache_entries = c.number(
            "cache_entries",
            raw.cache_entries.as_deref(),
            100_000,
            (0, 10_000_000),
        );
        let cache_max_ttl = c.whole_seconds("cache_max_ttl", raw.cache_max_ttl.as_deref(), "10m");
        if cache_max_ttl.is_zero() {
            c.problems.push(
                "cache_max_ttl: must be at least 1s (use cache_entries = 0 to disable the cache)"
                    .to_owned(),
            );
        }
        let max_connections = c.number(
            "max_connections",
            raw.max_connections.as_deref(),
            1024,
            (1, 1_000_000),
        );
        let max_in_flight = c.number(
            "max_in_flight",
            raw.max_in_flight.as_deref(),
            1024,
            (1, 1_000_000),
        );
        let max_frame_bytes = c.number(
            "max_frame_bytes",
            raw.max_frame_bytes.as_deref(),
            crate::protocol::DEFAULT_MAX_FRAME,
            (1024, 16 * 1024 * 1024),
        );
        if max_frame_bytes < max_token_bytes + 256 + crate::protocol::HEADER_LEN {
            c.problems.push(format!(
                "max_frame_bytes: {max_frame_bytes} cannot carry a token of max_token_bytes ({max_token_bytes}) with a selector"
            ));
        }
        let max_verifying = c.number(
            "max_verifying",
            raw.max_verifying.as_deref(),
            4096,
            (1, 1_000_000),
        );
        let idle_timeout = c.at_least_1s("idle_timeout", raw.idle_timeout.as_deref(), "5m");
        let write_timeout = c.at_least_1s("write_timeout", raw.write_timeout.as_deref(), "30s");
        let shutdown_grace = c.duration("shutdown_grace", raw.shutdown_grace.as_deref(), "10s");
        let threads = c.number("threads", raw.threads.as_deref(), 0, (0, 1024));
        let log = raw.log.clone().unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_filter_check(&log) {
            c.problems.push(format!("log: {e}"));
        }
        let log_json = match raw.log_format.as_deref().map(str::trim) {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                c.problems
                    .push(format!("log_format: {other:?} is neither text nor json"));
                false
            }
        };
        let admin_addr = match raw.admin_addr.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => match v.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    c.problems.push(format!(
                        "admin_addr: {v:?} is not an IP address and port (e.g. 0.0.0.0:9090)"
                    ));
                    None
                }
            },
        };

        let listen = listen_limits(&mut c, &raw, max_token_bytes);

        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        // Routes are a stage of the verifier's pipeline.
        let routes = fronts.authz.routes.clone();
        Ok(Config {
            socket,
            socket_mode,
            sources,
            remote,
            redis,
            revocation,
            fronts,
            verifier: VerifierConfig {
                issuers,
                cache_entries,
                cache_max_ttl: cache_max_ttl.as_secs(),
                max_verifying,
                routes,
            },
            max_connections,
            max_in_flight,
            max_frame_bytes,
            max_verifying,
            idle_timeout,
            write_timeout,
            shutdown_grace,
            threads,
            log,
            log_json,
            admin_addr,
            listen,
        })
    }
}

/// The listeners' bounds (see [`ListenLimits`]).
fn listen_limits(c: &mut Check, raw: &RawConfig, max_token_bytes: usize) -> ListenLimits {
    let grpc_max_message_bytes = c.number(
        "grpc_max_message_bytes",
        raw.grpc_max_message_bytes.as_deref(),
        64 * 1024,
        (4096, 16 * 1024 * 1024),
    );
    if grpc_max_message_bytes < max_token_bytes + 1024 {
        c.problems.push(format!(
            "grpc_max_message_bytes: {grpc_max_message_bytes} cannot carry a token of max_token_bytes ({max_token_bytes}) with its headers"
        ));
    }
    let grpc_max_buffered_bytes = c.number(
        "grpc_max_buffered_bytes",
        raw.grpc_max_buffered_bytes.as_deref(),
        16 * 1024 * 1024,
        (64 * 1024, 1024 * 1024 * 1024),
    );
    if grpc_max_buffered_bytes < grpc_max_message_bytes {
        c.problems.push(format!(
            "grpc_max_buffered_bytes: {grpc_max_buffered_bytes} is below grpc_max_message_bytes ({grpc_max_message_bytes})"
        ));
    }
    let timeout = |c: &mut Check, name: &str, v: Option<&str>, default: &str| {
        let d = c.at_least_1s(name, v, default);
        if d > Duration::from_secs(300) {
            c.problems
                .push(format!("{name}: {d:?} is above the maximum of 5m"));
        }
        d
    };
    let socket_group = match raw.socket_group.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(g) => match crate::server::group_id(g) {
            Ok(gid) => Some(gid),
            Err(e) => {
                c.problems.push(format!("socket_group: {e}"));
                None
            }
        },
    };
    ListenLimits {
        grpc_max_message_bytes,
        grpc_max_streams: u32::try_from(c.number(
            "grpc_max_streams",
            raw.grpc_max_streams.as_deref(),
            100,
            (1, 10_000),
        ))
        .unwrap_or(100),
        grpc_max_buffered_bytes,
        grpc_body_timeout: timeout(
            c,
            "grpc_body_timeout",
            raw.grpc_body_timeout.as_deref(),
            "10s",
        ),
        max_header_bytes: c.number(
            "max_header_bytes",
            raw.max_header_bytes.as_deref(),
            32 * 1024,
            (8192, 1024 * 1024),
        ),
        header_timeout: timeout(c, "header_timeout", raw.header_timeout.as_deref(), "10s"),
        admin_max_connections: c.number(
            "admin_max_connections",
            raw.admin_max_connections.as_deref(),
            64,
            (1, 10_000),
        ),
        socket_group,
        ready_requires_revocation: c.flag(
            "ready_requires_revocation",
            raw.ready_requires_revocation.as_deref(),
        ),
    }
}

/// Where the proxy fronts listen, and how they decide.
#[derive(Debug, Clone, Default)]
pub struct Fronts {
    /// HTTP front Unix socket.
    pub http_socket: Option<PathBuf>,
    /// HTTP front TCP address.
    pub http_listen: Option<SocketAddr>,
    /// gRPC front Unix socket.
    pub grpc_socket: Option<PathBuf>,
    /// gRPC front TCP address.
    pub grpc_listen: Option<SocketAddr>,
    /// Token lookup, claim headers, route policies.
    pub authz: AuthzConfig,
}

/// The fronts' settings.
fn fronts(c: &mut Check, raw: &RawConfig, socket: &Path) -> Fronts {
    let path = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(PathBuf::from);
    let (http_socket, grpc_socket) = (path(&raw.http_socket), path(&raw.grpc_socket));
    if http_socket.as_deref() == Some(socket) {
        c.problems
            .push("http_socket: the same path as socket".to_owned());
    }
    if grpc_socket.as_deref() == Some(socket) {
        c.problems
            .push("grpc_socket: the same path as socket".to_owned());
    }
    if grpc_socket.is_some() && grpc_socket == http_socket {
        c.problems
            .push("grpc_socket: the same path as http_socket".to_owned());
    }
    let mut addr = |name: &str, v: &Option<String>| -> Option<SocketAddr> {
        let v = v.as_deref().filter(|s| !s.is_empty())?;
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                c.problems.push(format!(
                    "{name}: {v:?} is not an IP address and port (e.g. 127.0.0.1:8081)"
                ));
                None
            }
        }
    };
    let http_listen = addr("http_listen", &raw.http_listen);
    let grpc_listen = addr("grpc_listen", &raw.grpc_listen);
    if http_listen.is_some() && http_listen == grpc_listen {
        c.problems
            .push("grpc_listen: the same address as http_listen".to_owned());
    }

    let token_header = raw
        .token_header
        .as_deref()
        .map_or("authorization", str::trim)
        .to_ascii_lowercase();
    if token_header == "cookie"
        || token_header.is_empty()
        || !token_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        c.problems.push(format!(
            "token_header: {token_header:?} is not a header name (use token_cookie for cookies)"
        ));
    }
    let forward_payload = c.flag("forward_payload", raw.forward_payload.as_deref());
    let mut claim_headers = Vec::new();
    match &raw.claim_headers {
        None => claim_headers = authz::default_claim_headers(),
        Some(items) => {
            for item in items {
                let Some((header, claim)) = item.split_once('=') else {
                    c.problems
                        .push(format!("claim_headers: {item:?} is not header=claim"));
                    continue;
                };
                let (header, claim) = (header.trim().to_ascii_lowercase(), claim.trim());
                if let Err(why) = authz::valid_claim_header(&header) {
                    c.problems.push(format!("claim_headers: {header:?}: {why}"));
                } else if claim.is_empty() {
                    c.problems
                        .push(format!("claim_headers: {header:?}: no claim named"));
                } else if header == token_header
                    || (forward_payload && header == authz::PAYLOAD_HEADER)
                    || claim_headers
                        .iter()
                        .any(|h: &ClaimHeader| *h.header == *header)
                {
                    c.problems.push(format!(
                        "claim_headers: {header:?} is set twice (or is the token or payload header)"
                    ));
                } else {
                    claim_headers.push(ClaimHeader {
                        header: header.into(),
                        claim: claim.to_owned(),
                    });
                }
            }
        }
    }
    let mut routes = Vec::new();
    for (n, r) in raw.routes.iter().flatten().enumerate() {
        let prefix = match &r.prefix {
            Some(p) if p.starts_with('/') => p.clone(),
            _ => {
                c.problems.push(format!(
                    "routes[{n}].prefix: a path starting with \"/\" is required"
                ));
                continue;
            }
        };
        if routes.iter().any(|x: &Route| x.prefix == prefix) {
            c.problems
                .push(format!("routes[{n}].prefix: {prefix:?} is listed twice"));
        }
        if r.scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            c.problems.push(format!(
                "routes[{n}].scopes: a scope is empty or has spaces"
            ));
        }
        for (claim, values) in &r.claims {
            if values.is_empty() {
                c.problems.push(format!(
                    "routes[{n}].claims.{claim}: list at least one allowed value"
                ));
            }
        }
        routes.push(Route {
            prefix,
            scopes: r.scopes.clone(),
            claims: r.claims.clone(),
        });
    }
    let name = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Fronts {
        http_socket,
        http_listen,
        grpc_socket,
        grpc_listen,
        authz: AuthzConfig {
            token_header,
            token_cookie: name(&raw.token_cookie),
            token_query: name(&raw.token_query),
            claim_headers,
            forward_payload,
            debug_reason: c.flag("debug_reason", raw.debug_reason.as_deref()),
            strip_token: c.flag("strip_token", raw.strip_token.as_deref()),
            path_prefix: raw.http_path_prefix.clone().unwrap_or_default(),
            routes,
        },
    }
}

/// Revocation settings.
fn revocation(c: &mut Check, raw: &RawConfig) -> RevocationConfig {
    let defaults = RevocationConfig::default();
    let fail_open = match raw.revocation_fail.as_deref().map(str::trim) {
        None | Some("closed") => false,
        Some("open") => true,
        Some(other) => {
            c.problems.push(format!(
                "revocation_fail: {other:?} is neither \"closed\" nor \"open\""
            ));
            false
        }
    };
    let prefix = raw
        .revocation_prefix
        .clone()
        .unwrap_or_else(|| defaults.prefix.clone());
    if prefix.contains(['{', '}']) {
        c.problems.push(format!(
            "revocation_prefix: {prefix:?} must not contain braces (jwtd adds the cluster hash tag)"
        ));
    }
    let window = c.duration(
        "revocation_window",
        raw.revocation_window.as_deref(),
        "250us",
    );
    if window > Duration::from_millis(10) {
        c.problems.push(format!(
            "revocation_window: {window:?} is above the maximum of 10ms (every lookup would wait that long)"
        ));
    }
    let timeout = c.duration(
        "revocation_timeout",
        raw.revocation_timeout.as_deref(),
        "100ms",
    );
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        c.problems.push(format!(
            "revocation_timeout: {timeout:?} is outside 1ms ..= 10s"
        ));
    }
    let cache_ttl = c.duration(
        "revocation_cache_ttl",
        raw.revocation_cache_ttl.as_deref(),
        "1s",
    );
    if cache_ttl > Duration::from_secs(3600) {
        c.problems.push(format!(
            "revocation_cache_ttl: {cache_ttl:?} is above the maximum of 1h"
        ));
    }
    RevocationConfig {
        prefix,
        fail_open,
        window,
        batch_max: c.number(
            "revocation_batch",
            raw.revocation_batch.as_deref(),
            defaults.batch_max,
            (1, 100_000),
        ),
        timeout,
        cache_ttl,
        cache_entries: defaults.cache_entries,
    }
}

/// The issuers to configure, each with the prefix its problems carry: the
/// `[[issuers]]` tables (policy settings they leave unset inherit the
/// top-level ones), or the top level itself as the one issuer.
fn issuer_list(c: &mut Check, raw: &RawConfig) -> Vec<(String, RawIssuer)> {
    let top = RawIssuer {
        issuer: raw.issuer.clone(),
        jwks_file: raw.jwks_file.clone(),
        jwks_url: raw.jwks_url.clone(),
        discovery: raw.discovery.clone(),
        audiences: raw.audiences.clone(),
        algorithms: raw.algorithms.clone(),
        leeway: raw.leeway.clone(),
        required_claims: raw.required_claims.clone(),
        typ: raw.typ.clone(),
        max_lifetime: raw.max_lifetime.clone(),
        max_kidless_keys: raw.max_kidless_keys.clone(),
    };
    let Some(tables) = &raw.issuers else {
        return vec![(String::new(), top)];
    };
    if tables.is_empty() {
        c.problems
            .push("issuers: the list is empty (remove it for one issuer)".to_owned());
        return vec![(String::new(), top)];
    }
    for (name, set) in [
        ("issuer", top.issuer.is_some()),
        ("jwks_file", top.jwks_file.is_some()),
        ("jwks_url", top.jwks_url.is_some()),
        ("discovery", top.discovery.is_some()),
    ] {
        if set {
            c.problems.push(format!(
                "{name}: set at the top level, but [[issuers]] are configured: set it in each [[issuers]] table"
            ));
        }
    }
    tables
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let table = RawIssuer {
                audiences: t.audiences.clone().or_else(|| top.audiences.clone()),
                algorithms: t.algorithms.clone().or_else(|| top.algorithms.clone()),
                leeway: t.leeway.clone().or_else(|| top.leeway.clone()),
                required_claims: t
                    .required_claims
                    .clone()
                    .or_else(|| top.required_claims.clone()),
                typ: t.typ.clone().or_else(|| top.typ.clone()),
                max_lifetime: t.max_lifetime.clone().or_else(|| top.max_lifetime.clone()),
                max_kidless_keys: t
                    .max_kidless_keys
                    .clone()
                    .or_else(|| top.max_kidless_keys.clone()),
                ..t.clone()
            };
            (format!("issuers[{n}]."), table)
        })
        .collect()
}

/// One issuer's key source (loading files now, so a bad one is reported
/// with everything else), and its issuer string (configured, or given by
/// discovery).
fn key_source(
    c: &mut Check,
    prefix: &str,
    t: &RawIssuer,
    table: bool,
    dev: bool,
) -> (IssuerSource, Option<String>) {
    let given = [&t.jwks_file, &t.jwks_url, &t.discovery]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if given > 1 {
        c.problems.push(format!(
            "{prefix}jwks_file, jwks_url, discovery: set exactly one key source, not {given}"
        ));
    }
    if dev && given > 0 && !table {
        c.problems.push(
            "dev: the embedded development key set cannot be combined with jwks_file, jwks_url or discovery"
                .to_owned(),
        );
    }
    let mut issuer = t.issuer.clone();
    let remote = |c: &mut Check, name: &str, endpoint: Result<Endpoint, String>| match endpoint {
        Ok(e) => {
            if let Some(problem) = url_problem(e.url()) {
                c.problems.push(format!("{prefix}{name}: {problem}"));
            }
            IssuerSource {
                source: KeySource::Remote(e),
                keys: None,
            }
        }
        Err(e) => {
            c.problems.push(format!("{prefix}{name}: {e}"));
            IssuerSource {
                source: KeySource::EmbeddedDev,
                keys: None,
            }
        }
    };
    let source = if let Some(path) = &t.jwks_file {
        let keys = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| KeySet::from_file_contents(&bytes).map_err(|e| e.to_string()));
        IssuerSource {
            source: KeySource::File(PathBuf::from(path)),
            keys: keys
                .map_err(|e| c.problems.push(format!("{prefix}jwks_file: {path}: {e}")))
                .ok(),
        }
    } else if let Some(url) = &t.jwks_url {
        let endpoint = reqwest::Url::parse(url)
            .map(Endpoint::Jwks)
            .map_err(|e| format!("{:?} is not a URL: {e}", crate::redact::url(url)));
        remote(c, "jwks_url", endpoint)
    } else if let Some(url) = &t.discovery {
        // The discovery URL is the issuer identifier (OIDC Discovery 4.3).
        match &issuer {
            Some(iss) if iss != url => c.problems.push(format!(
                "{prefix}issuer: {iss:?} differs from discovery {url:?}, which is the issuer identifier"
            )),
            _ => issuer = Some(url.clone()),
        }
        remote(c, "discovery", Endpoint::discovery(url))
    } else if table {
        c.problems.push(format!(
            "{prefix}: no key source: set jwks_file, jwks_url or discovery"
        ));
        IssuerSource {
            source: KeySource::EmbeddedDev,
            keys: None,
        }
    } else if dev {
        // Only the dev issuer: the published key must not vouch for tokens
        // that claim to come from anywhere else.
        match &issuer {
            Some(iss) if iss != DEV_ISSUER => c.problems.push(format!(
                "issuer: {iss:?} with dev: the development key set serves only {DEV_ISSUER:?}"
            )),
            _ => issuer = Some(DEV_ISSUER.to_owned()),
        }
        IssuerSource {
            source: KeySource::EmbeddedDev,
            keys: KeySet::from_jwks(DEV_JWKS.as_bytes())
                .map_err(|e| c.problems.push(format!("embedded dev key set: {e}")))
                .ok(),
        }
    } else {
        c.problems.push(
            "no key source: set jwks_file, jwks_url or discovery (or [[issuers]] tables in the config file); \
             for the published development key set, and never in production, pass --dev (JWTD_DEV=1, dev = true)"
                .to_owned(),
        );
        IssuerSource {
            source: KeySource::EmbeddedDev,
            keys: None,
        }
    };
    if table && issuer.is_none() {
        c.problems.push(format!(
            "{prefix}issuer: required in every [[issuers]] table (the token's iss picks one)"
        ));
    }
    (source, issuer)
}

/// One issuer's policy.
fn policy(
    c: &mut Check,
    prefix: &str,
    t: &RawIssuer,
    issuer: Option<String>,
    max_token_bytes: usize,
) -> Policy {
    let mut algorithms = AlgSet::EMPTY;
    for name in t.algorithms.iter().flatten() {
        match name.trim().parse::<Algorithm>() {
            Ok(a) => algorithms.insert(a),
            Err(e) => c.problems.push(format!("{prefix}algorithms: {e}")),
        }
    }
    let leeway = c.whole_seconds(&format!("{prefix}leeway"), t.leeway.as_deref(), "30s");
    let max_lifetime = t.max_lifetime.as_deref().map(|v| {
        c.whole_seconds(&format!("{prefix}max_lifetime"), Some(v), "0")
            .as_secs()
    });
    let policy = Policy {
        algorithms: if t.algorithms.is_none() {
            AlgSet::all()
        } else {
            algorithms
        },
        issuer: issuer.as_deref().map(Box::from),
        audiences: t
            .audiences
            .iter()
            .flatten()
            .map(|a| Box::from(a.as_str()))
            .collect(),
        leeway: leeway.as_secs(),
        required: required_claims(t.required_claims.as_deref()).unwrap_or_else(|e| {
            c.problems.push(format!("{prefix}required_claims: {e}"));
            vec!["exp".into()]
        }),
        max_lifetime,
        typ: t.typ.as_deref().map(Box::from),
        max_token_bytes,
        max_kidless_keys: c.number(
            &format!("{prefix}max_kidless_keys"),
            t.max_kidless_keys.as_deref(),
            verify::DEFAULT_MAX_KIDLESS_KEYS,
            (0, verify::MAX_KIDLESS_KEYS),
        ),
        ..Policy::default()
    };
    // Range problems of max_token_bytes are reported once, by the caller.
    c.problems.extend(
        policy
            .problems()
            .into_iter()
            .filter(|p| !p.starts_with("max token size"))
            .map(|p| format!("{prefix}{p}")),
    );
    if policy.audiences.iter().any(|a| a.len() > 255) {
        c.problems.push(format!(
            "{prefix}audiences: an audience longer than 255 bytes cannot be a selector"
        ));
    }
    policy
}

/// The claims a token must carry, from the `required_claims` list
/// (`--require`): `exp` and every claim listed. The list adds to `exp`; it
/// never silently drops it (a token without `exp` would be valid forever,
/// and cached up to `cache_max_ttl`). Accepting tokens without `exp` needs
/// the explicit item `-exp`. Empty items are ignored.
///
/// # Errors
///
/// A `-claim` item other than `-exp` (only `exp` is required by default, so
/// nothing else can be removed), or a list that both requires and removes
/// `exp`.
///
/// ```
/// use jwtd::config::required_claims;
/// assert_eq!(required_claims(None).unwrap(), vec![Box::from("exp")]);
/// assert_eq!(required_claims(Some(&["sub".into()])).unwrap(), vec![Box::from("exp"), Box::from("sub")]);
/// assert_eq!(required_claims(Some(&["sub".into(), "-exp".into()])).unwrap(), vec![Box::from("sub")]);
/// ```
pub fn required_claims(list: Option<&[String]>) -> Result<Vec<Box<str>>, String> {
    let items: Vec<&str> = list
        .unwrap_or_default()
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    let without_exp = items.contains(&"-exp");
    if let Some(other) = items.iter().find(|c| c.starts_with('-') && **c != "-exp") {
        return Err(format!(
            "{other:?}: only exp is required by default, so only -exp can remove a claim"
        ));
    }
    if without_exp && items.contains(&"exp") {
        return Err("lists both exp and -exp".to_owned());
    }
    let mut required: Vec<Box<str>> = Vec::new();
    if !without_exp {
        required.push("exp".into());
    }
    for claim in items.into_iter().filter(|c| !c.starts_with('-')) {
        if !required.iter().any(|r| **r == *claim) {
            required.push(claim.into());
        }
    }
    Ok(required)
}

/// Validates a tracing filter without the subscriber crate (the library
/// does not depend on it): directives are `target=level` or `level`.
fn tracing_filter_check(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit('=').next().unwrap_or(directive);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not a log filter (e.g. info, or jwtd=debug)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
