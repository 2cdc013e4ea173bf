//! Issuers: each one's name, key source (files loaded now, so a bad one is
//! reported with every other problem) and token policy, from the top level
//! (one issuer) or from `[[issuers]]` tables, which inherit the top-level
//! policy settings they leave unset. The key sources themselves live in
//! `crate::jwks::source`, the policy's meaning in `crate::verify`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::settings::{RawConfig, RawIssuer, s};
use super::validate::Check;
use crate::bind::{DpopMode, IssuerBinding};
use crate::jwks::source::{Endpoint, url_problem};
use crate::verifier::{IssuerConfig, IssuerJwe};
use crate::verify::dpop::ProofPolicy;
use crate::verify::jwe::DecryptionKeys;
use crate::verify::{self, AlgSet, Algorithm, Family, KeySet, Policy};

/// The development key set compiled into the binary, served only with an
/// explicit `--dev` (`JWTD_DEV=1`, `dev = true`): its private key is
/// published in `deploy/dev/`, so anyone could mint tokens it accepts.
pub const DEV_JWKS: &str = include_str!("../../deploy/dev/jwks.json");

/// The one issuer accepted with `--dev` (`deploy/dev/README.md`): a token
/// minted for the dev set with any other `iss` is refused, so a dev daemon
/// never vouches for tokens that look like a real issuer's.
pub const DEV_ISSUER: &str = "https://jwtd.dev.invalid";

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

impl IssuerSource {
    /// A source that could not be configured: a problem was recorded, and
    /// the configuration will not be used.
    fn failed() -> IssuerSource {
        IssuerSource {
            source: KeySource::EmbeddedDev,
            keys: None,
        }
    }
}

/// What remote issuers do about unknown kids and staleness (the daemon's
/// settings, applied to each remote issuer).
pub(super) struct KeyRefresh {
    /// Cooldown between unknown-kid refreshes, and how long a request
    /// waits for one.
    pub(super) unknown_kid: (Duration, Duration),
    /// Not ready when a remote set is older than this.
    pub(super) max_stale: Option<Duration>,
}

/// Types every issuer: its key source and its verifier settings, in the
/// same order.
#[allow(clippy::type_complexity)]
pub(super) fn settings(
    c: &mut Check,
    raw: &RawConfig,
    max_token_bytes: usize,
    refresh: &KeyRefresh,
) -> (
    Vec<IssuerSource>,
    Vec<IssuerConfig>,
    Vec<(PathBuf, Arc<DecryptionKeys>)>,
) {
    let issuer_tables = issuer_list(c, raw);
    // With [[issuers]] tables, even one, every table must name its issuer
    // and its key source: nothing falls back to the development keys.
    let tables = raw.issuers.as_ref().is_some_and(|t| !t.is_empty());
    let dev = c.flag(&s::dev, raw.dev.as_deref());
    if dev && tables {
        c.problem(
            &s::dev,
            "the embedded development key set cannot be combined with [[issuers]] tables",
        );
    }
    let mut sources = Vec::new();
    let mut issuers = Vec::new();
    let mut names = HashSet::new();
    let mut jwe_files = JweFiles::default();
    for (prefix, table) in &issuer_tables {
        let (source, issuer) = key_source(c, prefix, table, tables, dev);
        let policy = policy(c, prefix, table, issuer, max_token_bytes);
        let binding = binding(c, prefix, table, policy.leeway);
        let jwe = jwe_files.issuer(c, prefix, table);
        if let Some(iss) = &policy.issuer
            && !names.insert(iss.clone())
        {
            c.problems
                .push(format!("{prefix}issuer: {iss:?} is configured twice"));
        }
        let remote = matches!(source.source, KeySource::Remote(_));
        issuers.push(IssuerConfig {
            policy,
            unknown_kid: remote.then_some(refresh.unknown_kid),
            max_stale: refresh.max_stale.filter(|_| remote),
            binding,
            jwe,
        });
        sources.push(source);
    }
    (sources, issuers, jwe_files.files)
}

/// The JWE decryption key files (`jwe_keys`), each read and validated
/// whole once however many issuers name it (a bad one is a configuration
/// problem, exit 64); an issuer refers to its file by index.
#[derive(Default)]
struct JweFiles {
    files: Vec<(PathBuf, Arc<DecryptionKeys>)>,
    /// Files already reported bad (reported once).
    failed: HashSet<PathBuf>,
}

impl JweFiles {
    /// One issuer's JWE settings (`jwe_keys`, `jwe_unsigned_claims`); an
    /// empty `jwe_keys` is none (an `[[issuers]]` table opting out of the
    /// top-level file).
    fn issuer(&mut self, c: &mut Check, prefix: &str, t: &RawIssuer) -> IssuerJwe {
        c.at = prefix.to_owned();
        let unsigned_claims = c.flag(&s::jwe_unsigned_claims, t.jwe_unsigned_claims.as_deref());
        let named = t
            .jwe_keys
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let keys = named.and_then(|path| self.file(c, PathBuf::from(path)));
        if unsigned_claims && named.is_none() {
            c.problem(
                &s::jwe_unsigned_claims,
                "needs jwe_keys (claims alone are accepted only inside a JWE)",
            );
        }
        c.at.clear();
        IssuerJwe {
            keys,
            unsigned_claims,
        }
    }

    fn file(&mut self, c: &mut Check, path: PathBuf) -> Option<usize> {
        if let Some(n) = self.files.iter().position(|(p, _)| *p == path) {
            return Some(n);
        }
        if self.failed.contains(&path) {
            return None;
        }
        let loaded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                DecryptionKeys::from_file_contents(&bytes).map_err(|e| e.to_string())
            });
        match loaded {
            Ok(keys) => {
                self.files.push((path, Arc::new(keys)));
                Some(self.files.len() - 1)
            }
            Err(e) => {
                c.problem(&s::jwe_keys, format_args!("{}: {e}", path.display()));
                self.failed.insert(path);
                None
            }
        }
    }
}

/// The issuers to configure, each with the prefix its problems carry: the
/// `[[issuers]]` tables (policy settings they leave unset inherit the
/// top-level ones), or the top level itself as the one issuer.
fn issuer_list(c: &mut Check, raw: &RawConfig) -> Vec<(String, RawIssuer)> {
    let top = raw.top_issuer();
    let Some(tables) = &raw.issuers else {
        return vec![(String::new(), top)];
    };
    if tables.is_empty() {
        c.problems
            .push("issuers: the list is empty (remove it for one issuer)".to_owned());
        return vec![(String::new(), top)];
    }
    for name in top.sources_given() {
        c.problems.push(format!(
            "{name}: set at the top level, but [[issuers]] are configured: set it in each [[issuers]] table"
        ));
    }
    tables
        .iter()
        .enumerate()
        .map(|(n, t)| (format!("issuers[{n}]."), t.clone().inheriting(&top)))
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
        c.problem(
            &s::dev,
            "the embedded development key set cannot be combined with jwks_file, jwks_url or discovery",
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
            IssuerSource::failed()
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
        IssuerSource::failed()
    } else if dev {
        // Only the dev issuer: the published key must not vouch for tokens
        // that claim to come from anywhere else.
        match &issuer {
            Some(iss) if iss != DEV_ISSUER => c.problem(
                &s::issuer,
                format_args!(
                    "{iss:?} with dev: the development key set serves only {DEV_ISSUER:?}"
                ),
            ),
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
        IssuerSource::failed()
    };
    if table && issuer.is_none() {
        c.problems.push(format!(
            "{prefix}issuer: required in every [[issuers]] table (the token's iss picks one)"
        ));
    }
    (source, issuer)
}

/// One issuer's policy. Its problems start with `prefix` (`issuers[1].`).
fn policy(
    c: &mut Check,
    prefix: &str,
    t: &RawIssuer,
    issuer: Option<String>,
    max_token_bytes: usize,
) -> Policy {
    c.at = prefix.to_owned();
    let mut algorithms = AlgSet::EMPTY;
    for name in t.algorithms.iter().flatten() {
        match name.trim().parse::<Algorithm>() {
            Ok(a) => algorithms.insert(a),
            Err(e) => c.problem(&s::algorithms, e),
        }
    }
    let leeway = c.whole_seconds(&s::leeway, t.leeway.as_deref());
    let max_lifetime = t
        .max_lifetime
        .as_deref()
        .map(|v| c.whole_seconds(&s::max_lifetime, Some(v)).as_secs());
    let required = required_claims(t.required_claims.as_deref()).unwrap_or_else(|e| {
        c.problem(&s::required_claims, e);
        vec!["exp".into()]
    });
    let max_kidless_keys = c.number(
        &s::max_kidless_keys,
        t.max_kidless_keys.as_deref(),
        (0, verify::MAX_KIDLESS_KEYS),
    );
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
        required,
        max_lifetime,
        typ: t.typ.as_deref().map(Box::from),
        max_token_bytes,
        max_kidless_keys,
        ..Policy::default()
    };
    // `max_token_bytes` was checked by the caller with the bounds the
    // policy has (a test holds them equal), so the policy's own problems
    // never repeat it: each is reported once.
    for problem in policy.problems() {
        c.problems.push(format!("{prefix}{problem}"));
    }
    if policy.audiences.iter().any(|a| a.len() > 255) {
        c.problem(
            &s::audiences,
            "an audience longer than 255 bytes cannot be a selector",
        );
    }
    c.at.clear();
    policy
}

/// One issuer's DPoP settings (`dpop`, `dpop_algorithms`,
/// `dpop_max_age`); proofs share the issuer's leeway.
fn binding(c: &mut Check, prefix: &str, t: &RawIssuer, leeway: u64) -> IssuerBinding {
    c.at = prefix.to_owned();
    let dpop = match t.dpop.as_deref() {
        None => DpopMode::Off,
        Some(v) => DpopMode::parse(v).unwrap_or_else(|| {
            c.problem(
                &s::dpop,
                format_args!("{v:?}: expected off, allowed or required"),
            );
            DpopMode::Off
        }),
    };
    let mut algorithms = AlgSet::EMPTY;
    for name in t.dpop_algorithms.iter().flatten() {
        match name.trim().parse::<Algorithm>() {
            Ok(a) if a.family() == Family::Hmac => c.problem(
                &s::dpop_algorithms,
                format_args!("{a}: a DPoP proof is signed with a public key; HMAC never"),
            ),
            Ok(a) => algorithms.insert(a),
            Err(e) => c.problem(&s::dpop_algorithms, e),
        }
    }
    if t.dpop_algorithms.is_some() && algorithms.is_empty() {
        c.problem(&s::dpop_algorithms, "the allow-list is empty");
    }
    let max_age = c.whole_seconds(&s::dpop_max_age, t.dpop_max_age.as_deref());
    if !(1..=600).contains(&max_age.as_secs()) {
        c.problem(&s::dpop_max_age, "must be 1s to 10m");
    }
    c.at.clear();
    IssuerBinding {
        dpop,
        proof: ProofPolicy::new(
            if t.dpop_algorithms.is_none() {
                AlgSet::all()
            } else {
                algorithms
            },
            max_age.as_secs(),
            leeway,
        ),
    }
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
