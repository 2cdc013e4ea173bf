//! The decision both proxy fronts share: where the token is, whether the
//! request may go on, and which claim headers go with it. [`super::http`]
//! (nginx `auth_request`, Envoy `ext_authz` HTTP mode) and [`super::grpc`]
//! (Envoy `ext_authz` gRPC mode) are thin adapters that turn a [`Decision`]
//! into their protocol's answer; neither decides anything itself, so the two
//! fronts cannot drift apart.
//!
//! # Shape
//!
//! - [`find_token`] takes the token header's value, the `Cookie` header
//!   values and the query string (each front knows where those live in its
//!   request) and applies [`AuthzConfig`]'s order: the token header, then
//!   the cookie, then (only if named) the query parameter.
//! - [`decide`] verifies through the same [`Verifier`] (cache, revocation)
//!   as the native protocol, then applies the [`Route`] policy for the
//!   original path, and returns a [`Decision`]:
//!   - `Allow` with one [`ClaimHeader`] value per mapping, `None` when the
//!     token lacks the claim. The fronts must make a `None` header *absent
//!     upstream*, or a client could forge it (`x-jwt-scope: admin`): gRPC
//!     lists it in `headers_to_remove`, HTTP in Envoy's
//!     `x-envoy-auth-headers-to-remove` (nginx never passes a header whose
//!     `proxy_set_header` value is empty);
//!   - `Deny` 401 (no token, or an invalid one) or 403 (a requirement of
//!     a route unmet: of every route that any reading of the path meets,
//!     see [`routes_met`]), with the RFC 6750 challenge;
//!   - `Undecided` (no keys yet, revocation store down under fail-closed,
//!     or every verification slot busy: `overloaded`):
//!     each front answers with what its proxy treats as an *error*, never
//!     as "allowed".
//! - The precise reason is in every `Deny`/`Undecided` for logs and the
//!   opt-in debug header; clients otherwise get generic text.
//!
//! # Claim values as header values
//!
//! A string claim is sent as is; an array of strings joined by single
//! spaces (OAuth's `scope` convention, and `aud` lists); numbers and
//! booleans as JSON text; objects as compact JSON. A claim name is looked up
//! as a top-level key first, then as a dotted path (`realm_access.roles`),
//! so URL-shaped names (`https://example.com/roles`) work too. `scope` falls
//! back to `scp` (Azure AD, Okta). A value that cannot be a header value
//! (control characters, non-ASCII) is treated as absent rather than
//! mangled; `forward_payload` carries everything, base64url.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::clock::unix_now;
use crate::metrics::Front;
use crate::verifier::{Outcome, Verifier};
use crate::verify::Verified;

/// A header for the upstream request, filled from a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// Lower-case header name (shared: every allowed request names it).
    pub header: Arc<str>,
    /// Claim name (top-level key, else a dotted path).
    pub claim: String,
}

/// A path prefix and what a token needs under it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// The paths it covers: this one and those below it, on segment
    /// boundaries (see [`covers`]).
    pub prefix: String,
    /// Every one of these must be among the token's scopes.
    pub scopes: Vec<String>,
    /// For each claim, the values it may have: the claim (or, for an
    /// array, one of its elements) must equal one of them.
    pub claims: Vec<(String, Vec<String>)>,
}

/// Settings shared by the HTTP and gRPC fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    /// Lower-case name of the header holding the token. For
    /// `authorization` the `Bearer` scheme is required; for any other
    /// header a `Bearer ` prefix is optional.
    pub token_header: String,
    /// Cookie holding the token when the header is absent.
    pub token_cookie: Option<String>,
    /// Query parameter holding the token (off unless named).
    pub token_query: Option<String>,
    /// Claim-to-header mappings for allowed requests.
    pub claim_headers: Vec<ClaimHeader>,
    /// Also send the base64url payload as `x-jwt-payload`.
    pub forward_payload: bool,
    /// Add the precise reason as `x-jwt-reason` (debugging only).
    pub debug_reason: bool,
    /// Have the proxy remove the token header before the request goes
    /// upstream (gRPC `headers_to_remove`; HTTP mode through Envoy's
    /// `x-envoy-auth-headers-to-remove`).
    pub strip_token: bool,
    /// Prefix to strip from request paths before route matching (Envoy's
    /// HTTP-mode `path_prefix`).
    pub path_prefix: String,
    /// Route policies, any order (for each reading of the path, the
    /// longest covering prefix applies; see [`routes_met`]).
    pub routes: Vec<Route>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig {
            token_header: "authorization".to_owned(),
            token_cookie: None,
            token_query: None,
            claim_headers: default_claim_headers(),
            forward_payload: false,
            debug_reason: false,
            strip_token: false,
            path_prefix: String::new(),
            routes: Vec::new(),
        }
    }
}

/// `x-jwt-sub`, `x-jwt-iss`, `x-jwt-aud`, `x-jwt-scope`.
pub fn default_claim_headers() -> Vec<ClaimHeader> {
    ["sub", "iss", "aud", "scope"]
        .into_iter()
        .map(|claim| ClaimHeader {
            header: Arc::from(format!("x-jwt-{claim}")),
            claim: claim.to_owned(),
        })
        .collect()
}

/// The header carrying the payload when `forward_payload` is set.
pub const PAYLOAD_HEADER: &str = "x-jwt-payload";

/// Denial statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// 401: no token, or not a valid one.
    Unauthorized,
    /// 403: valid, but the route asks for more.
    Forbidden,
}

/// What a front answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request go on, with these headers (name, value; `None`:
    /// make sure the upstream does not get this header at all).
    Allow {
        /// One entry per mapping, then the payload header if enabled.
        headers: Vec<(Arc<str>, Option<String>)>,
    },
    /// Refuse it.
    Deny {
        /// 401 or 403.
        status: Deny,
        /// The `WWW-Authenticate` value.
        challenge: String,
        /// The precise reason (logs, debug header).
        reason: &'static str,
    },
    /// Could not decide: the proxy must treat it as an error.
    Undecided {
        /// `no_keys`, `revocation_unavailable` or `overloaded`.
        reason: &'static str,
    },
}

/// The token, by the configured order: header, cookie, query parameter.
/// `cookies` are the values of every `Cookie` header; `query` is the query
/// string without `?`.
pub fn find_token<'a>(
    header: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
    query: Option<&'a str>,
    config: &AuthzConfig,
) -> Option<&'a str> {
    if let Some(value) = header {
        let value = value.trim();
        // Bytes, not chars: a header from Envoy may hold any UTF-8, and byte
        // 7 of it need not be a char boundary (`value.get(7..)` is safe once
        // the first seven bytes are the ASCII "bearer ").
        let bearer = value
            .as_bytes()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer "));
        let token = if bearer {
            value.get(7..).unwrap_or("").trim_start()
        } else if config.token_header == "authorization" {
            // Another scheme (Basic...): no bearer token here.
            return None;
        } else {
            value
        };
        return (!token.is_empty()).then_some(token);
    }
    if let Some(name) = &config.token_cookie {
        for header in cookies {
            for pair in header.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                    && !v.is_empty()
                {
                    return Some(v);
                }
            }
        }
    }
    if let Some(name) = &config.token_query {
        for pair in query?.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k == name
                && !v.is_empty()
            {
                return Some(v);
            }
        }
    }
    None
}

/// Verifies `token` and applies the route policy for `path` (the client's
/// original path; a query or fragment is ignored).
pub async fn decide(
    verifier: &Verifier,
    slots: &Semaphore,
    front: Front,
    token: Option<&str>,
    path: &str,
    config: &AuthzConfig,
) -> Decision {
    let started = std::time::Instant::now();
    let metrics = verifier.metrics();
    let Some(token) = token else {
        metrics.record_missing_token(front, started);
        // RFC 6750 3.1: no error code when no credentials were sent.
        return Decision::Deny {
            status: Deny::Unauthorized,
            challenge: "Bearer".to_owned(),
            reason: "missing_token",
        };
    };
    let token = token.as_bytes();
    let now = unix_now();
    // A miss holds a verification slot until it is decided (a pending
    // refresh or revocation lookup included); none free: overloaded.
    let mut _slot = None;
    let outcome = match verifier.check_cached(b"", token, now) {
        Ok(outcome) => outcome,
        Err(miss) => match slots.try_acquire() {
            Ok(permit) => {
                _slot = Some(permit);
                verifier.check_uncached(miss, b"", token, now)
            }
            Err(_) => {
                metrics.record_overloaded(front, started);
                return Decision::Undecided {
                    reason: "overloaded",
                };
            }
        },
    };
    let outcome = match outcome {
        Outcome::Pending(p) => p.finish(verifier, b"", token).await,
        other => other,
    };
    if let Outcome::Valid { result, cached } = &outcome {
        let decision = allow_or_forbid(result, path, config);
        if let Decision::Allow { .. } = decision {
            metrics.record(front, &outcome, token, started);
        } else {
            metrics.record_forbidden(front, *cached, started);
        }
        return decision;
    }
    metrics.record(front, &outcome, token, started);
    match outcome {
        Outcome::Invalid(rejection) => {
            tracing::debug!(reason = rejection.reason.as_str(), "token rejected");
            Decision::Deny {
                status: Deny::Unauthorized,
                challenge: "Bearer error=\"invalid_token\"".to_owned(),
                reason: rejection.reason.as_str(),
            }
        }
        Outcome::NoKeys => Decision::Undecided { reason: "no_keys" },
        // Valid was answered above, no selector is sent, and a pending check
        // has been finished: only RevocationUnavailable reaches here in
        // practice, and the rest fail safe.
        Outcome::RevocationUnavailable
        | Outcome::Valid { .. }
        | Outcome::UnknownSelector
        | Outcome::Pending(_) => Decision::Undecided {
            reason: "revocation_unavailable",
        },
    }
}

/// The payload's members the configuration can ask for (claim headers,
/// route claims, scopes), parsed into a `Value`: the rest of the payload is
/// only skimmed (borrowed raw JSON), which saves most of the parse on the
/// proxy fronts' hot path. A payload whose member names need unescaping is
/// parsed whole.
fn wanted_members(raw: &[u8], config: &AuthzConfig) -> Value {
    use serde_json::value::RawValue;
    use std::collections::HashMap;
    let Ok(members) = serde_json::from_slice::<HashMap<&str, &RawValue>>(raw) else {
        return serde_json::from_slice(raw).unwrap_or_default();
    };
    let asks = |claim: &str, key: &str| claim == key || claim.split('.').next() == Some(key);
    let wanted = |key: &str| {
        key == "scope"
            || key == "scp"
            || config.claim_headers.iter().any(|m| asks(&m.claim, key))
            || config
                .routes
                .iter()
                .any(|r| r.claims.iter().any(|(c, _)| asks(c, key)))
    };
    let map: serde_json::Map<String, Value> = members
        .into_iter()
        .filter(|(key, _)| wanted(key))
        .filter_map(|(key, raw)| Some((key.to_owned(), serde_json::from_str(raw.get()).ok()?)))
        .collect();
    Value::Object(map)
}

fn allow_or_forbid(result: &Verified, path: &str, config: &AuthzConfig) -> Decision {
    let payload = wanted_members(&result.claims.raw, config);
    let met = routes_met(&config.routes, path);
    let scopes = scopes(&payload);
    for route in met {
        let missing_scope = route.scopes.iter().find(|s| !scopes.contains(&s.as_str()));
        let failed_claim = route
            .claims
            .iter()
            .find(|(name, allowed)| !claim_matches(claim(&payload, name), allowed));
        if missing_scope.is_some() || failed_claim.is_some() {
            tracing::debug!(
                path = %path,
                route = %route.prefix,
                scope = missing_scope.map(String::as_str),
                claim = failed_claim.map(|(n, _)| n.as_str()),
                "token lacks what the route requires"
            );
            let mut challenge = "Bearer error=\"insufficient_scope\"".to_owned();
            if !route.scopes.is_empty() {
                challenge.push_str(&format!(", scope=\"{}\"", route.scopes.join(" ")));
            }
            return Decision::Deny {
                status: Deny::Forbidden,
                challenge,
                reason: "insufficient_scope",
            };
        }
    }
    let mut headers: Vec<(Arc<str>, Option<String>)> = config
        .claim_headers
        .iter()
        .map(|m| {
            let value = claim(&payload, &m.claim)
                .or_else(|| (m.claim == "scope").then(|| payload.get("scp")).flatten())
                .and_then(header_text)
                .filter(|v| is_header_value(v));
            (m.header.clone(), value)
        })
        .collect();
    if config.forward_payload {
        use base64::Engine;
        static NAME: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from(PAYLOAD_HEADER));
        headers.push((
            NAME.clone(),
            Some(crate::verify::B64URL.encode(&result.claims.raw)),
        ));
    }
    Decision::Allow { headers }
}

/// The routes a request path meets: for every reading of the path (see
/// [`path_readings`]), the longest route that covers it (see [`covers`]),
/// compared exactly and ignoring case. All of them apply (every one's
/// requirements must hold), so each extra reading can only add
/// requirements, never remove one.
///
/// Cost: nothing when there are no routes; otherwise this list, and the
/// normalized readings of a path that normalizing changes. The case-blind
/// comparison and the cut format suffix borrow the readings, so neither
/// allocates; a reading equal to an earlier one is skipped, and so is the
/// case-blind pass when folding case changes neither the reading nor any
/// prefix (the usual lower-case path).
pub fn routes_met<'r>(routes: &'r [Route], path: &str) -> Vec<&'r Route> {
    let mut met: Vec<&Route> = Vec::new();
    if routes.is_empty() {
        return met;
    }
    let prefixes_fold = routes.iter().any(|r| !is_folded(&r.prefix));
    let readings = path_readings(path);
    for (n, reading) in readings.iter().enumerate() {
        if readings[..n].contains(reading) {
            continue;
        }
        let cut = without_format_suffix(reading);
        for reading in std::iter::once(reading.as_ref()).chain(cut) {
            longest_routes(routes, reading, false, &mut met);
            if prefixes_fold || !is_folded(reading) {
                longest_routes(routes, reading, true, &mut met);
            }
        }
    }
    met
}

/// Whether folding case leaves `s` as it is (ASCII without upper-case
/// letters): compared with another such string, ignoring case is then the
/// same as comparing exactly.
fn is_folded(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase())
}

/// Adds to `met` (once each) the routes with the longest prefix among those
/// covering `path`: with `fold`, ties (`/Admin/` and `/admin/`) all apply
/// (compared exactly, distinct prefixes cannot tie).
fn longest_routes<'r>(routes: &'r [Route], path: &str, fold: bool, met: &mut Vec<&'r Route>) {
    let mut add = |route: &'r Route| {
        if !met.iter().any(|m| std::ptr::eq(*m, route)) {
            met.push(route);
        }
    };
    if !fold {
        if let Some(route) = routes
            .iter()
            .filter(|r| covers(&r.prefix, path, false))
            .max_by_key(|r| r.prefix.len())
        {
            add(route);
        }
        return;
    }
    let length = |r: &Route| r.prefix.chars().count();
    let Some(longest) = routes
        .iter()
        .filter(|r| covers(&r.prefix, path, true))
        .map(length)
        .max()
    else {
        return;
    };
    routes
        .iter()
        .filter(|r| length(r) == longest && covers(&r.prefix, path, true))
        .for_each(add);
}

/// Whether a route `prefix` covers `path`, on segment boundaries: the path
/// is the prefix, or goes on below it (`/api/admin/health` covers
/// `/api/admin/health` and `/api/admin/health/x`, not
/// `/api/admin/healthz`). A prefix ending in `/` covers everything
/// starting with it, and the path without that slash (`/api/admin/` covers
/// `/api/admin`, which many apps serve as the section's index). With `fold`,
/// letters compare ignoring case (see [`fold_case`]).
pub fn covers(prefix: &str, path: &str, fold: bool) -> bool {
    let rest = if fold {
        strip_prefix_folded(path, prefix)
    } else {
        path.strip_prefix(prefix)
    };
    match rest {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => prefix.strip_suffix('/').is_some_and(|bare| {
            if fold {
                strip_prefix_folded(path, bare) == Some("")
            } else {
                path == bare
            }
        }),
    }
}

/// What follows `prefix` in `path`, comparing the two ignoring case.
fn strip_prefix_folded<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    if path.is_ascii() && prefix.is_ascii() {
        let head = path.as_bytes().get(..prefix.len())?;
        return head
            .eq_ignore_ascii_case(prefix.as_bytes())
            .then(|| &path[prefix.len()..]);
    }
    let mut chars = path.chars();
    for p in prefix.chars() {
        if fold_case(chars.next()?) != fold_case(p) {
            return None;
        }
    }
    Some(chars.as_str())
}

/// `c` as an app that ignores case compares it: ASCII letters and every
/// character with a one-character lower case, lowered; and the characters
/// whose case mappings land on ASCII (`ſ` is `S` upper-cased, `ı` is `I`,
/// `İ` lowers to `i` and a dot, the Kelvin sign lowers to `k`) folded to
/// that ASCII letter, so `/admın` (dotless `ı`) is not a way around `/admin/` into
/// an app that compares with Java's `equalsIgnoreCase`.
fn fold_case(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    match c {
        '\u{17f}' => 's',
        '\u{130}' | '\u{131}' => 'i',
        _ => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

/// The reading with the last segment's format suffix cut
/// (`/api/admin/keys.json` -> `/api/admin/keys`), as frameworks with
/// format or suffix routing (Rails `(.:format)`, Spring's suffix patterns)
/// read it; `None` when the last segment has no `.` after its first
/// character.
fn without_format_suffix(reading: &str) -> Option<&str> {
    let start = reading.rfind('/').map_or(0, |i| i + 1);
    let dot = reading[start..].find('.').filter(|&i| i > 0)?;
    Some(&reading[..start + dot])
}

/// The readings of a request path that routes are matched against, since
/// the proxy and the app behind it may each read a path differently:
///
/// - as sent (the query and fragment cut off): what a proxy routing on the
///   raw path sees;
/// - normalized ([`normalize_path`]): percent-escapes decoded (repeatedly:
///   `%2561` is `a`), `\\` read as `/`, repeated slashes merged, `.`/`..`
///   resolved: what most frameworks see;
/// - normalized with `;` path parameters cut from each segment: what
///   servlet containers see (`/api/x/..;/admin` is `/api/admin`).
///
/// [`routes_met`] also reads each of these with the last segment's format
/// suffix cut (`keys.json` as `keys`), and compares each both exactly and
/// ignoring case (`/API/Admin` as `/api/admin`, for apps that route
/// case-insensitively).
///
/// Every route any reading meets applies (all their requirements must
/// hold), so a spelling can only require more, never less: not
/// `/api/%61dmin` or `/API/admin` past an `/api/admin/` route, nor
/// `/api/admin/../public` (raw: an admin path) past it under a looser
/// `/api/` one.
///
/// A path that normalizing cannot change (no `%`, `\\` or `;`, no empty,
/// `.` or `..` segment but a trailing slash) has the one reading, borrowed
/// thrice: the common case allocates nothing.
pub fn path_readings(path: &str) -> [Cow<'_, str>; 3] {
    let raw = path.split(['?', '#']).next().unwrap_or("");
    let raw = if raw.starts_with('/') {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(format!("/{raw}"))
    };
    if let Cow::Borrowed(normal) = raw
        && is_normal(normal)
    {
        return [raw.clone(), raw.clone(), raw];
    }
    [
        raw,
        Cow::Owned(normalize_path(path, false)),
        Cow::Owned(normalize_path(path, true)),
    ]
}

/// Whether [`normalize_path`] leaves `path` (starting with `/`, no query)
/// as it is, with or without cutting `;` parameters.
fn is_normal(path: &str) -> bool {
    if path.contains(['%', '\\', ';']) {
        return false;
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." {
            return false;
        }
    }
    true
}

/// `path` normalized (see [`path_readings`]); with `cut_params`, each
/// segment also loses what follows a `;`.
pub fn normalize_path(path: &str, cut_params: bool) -> String {
    let mut path = path.split(['?', '#']).next().unwrap_or("").to_owned();
    // Decode until stable (bounded): a double-encoded `%2561` is `a` to an
    // app that decodes twice.
    for _ in 0..3 {
        let decoded = percent_decode(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split(['/', '\\']) {
        let segment = if cut_params {
            segment.split(';').next().unwrap_or("")
        } else {
            segment
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    // A trailing slash (or a final `.`/`..`) names a directory: keep it, so
    // `/api/admin/` still meets the `/api/admin/` prefix.
    let last = path.rsplit(['/', '\\']).next().unwrap_or("");
    let last = if cut_params {
        last.split(';').next().unwrap_or("")
    } else {
        last
    };
    if out.is_empty() || last.is_empty() || last == "." || last == ".." {
        out.push('/');
    }
    out
}

/// Percent-escapes decoded (a malformed one stays as it is; bytes that are
/// not UTF-8 become U+FFFD).
fn percent_decode(path: &str) -> String {
    let raw = path.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A claim by top-level name, else by dotted path.
fn claim<'v>(payload: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = payload.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.').try_fold(payload, |v, part| v.get(part))
}

/// The token's scopes: `scope` (space-separated or an array), and `scp`.
fn scopes(payload: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match payload.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(list)) => out.extend(list.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Whether a claim value is one of `allowed` (for an array: contains one).
fn claim_matches(value: Option<&Value>, allowed: &[String]) -> bool {
    let is = |v: &Value| match v {
        Value::String(s) => allowed.iter().any(|a| a == s),
        Value::Number(_) | Value::Bool(_) => {
            let text = v.to_string();
            allowed.contains(&text)
        }
        _ => false,
    };
    match value {
        Some(Value::Array(items)) => items.iter().any(is),
        Some(v) => is(v),
        None => false,
    }
}

/// A claim rendered as header text (see the module doc).
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}

/// Visible ASCII, spaces and tabs, not empty, no leading or trailing blank
/// (what every proxy accepts unchanged).
fn is_header_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        && !v.starts_with([' ', '\t'])
        && !v.ends_with([' ', '\t'])
}

/// Whether `name` may be a claim header: a lower-case HTTP token that is not
/// one the proxies own (hop-by-hop, framing, routing, the credentials).
pub fn valid_claim_header(name: &str) -> Result<(), &'static str> {
    const RESERVED: &[&str] = &[
        "authorization",
        "cookie",
        "host",
        "connection",
        "content-length",
        "content-type",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "www-authenticate",
    ];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err("not a lower-case header name (a-z, 0-9, -, _)");
    }
    if RESERVED.contains(&name) || name.starts_with("x-envoy-") {
        return Err("reserved for the proxy or the credentials");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, scopes: &[&str]) -> Route {
        Route {
            prefix: prefix.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            claims: Vec::new(),
        }
    }

    /// The prefixes of the routes `path` meets, sorted.
    fn met<'r>(routes: &'r [Route], path: &str) -> Vec<&'r str> {
        let mut met: Vec<&str> = routes_met(routes, path)
            .iter()
            .map(|r| r.prefix.as_str())
            .collect();
        met.sort_unstable();
        met
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let routes = [
            route("/api/", &["read"]),
            route("/api/admin/", &["admin"]),
            route("/", &[]),
        ];
        assert_eq!(met(&routes, "/api/admin/users"), ["/api/admin/"]);
        assert_eq!(met(&routes, "/api/orders"), ["/api/"]);
        assert_eq!(met(&routes, "/health"), ["/"]);
        assert!(met(&routes[..2], "/health").is_empty());
        assert!(routes_met(&[], "/api/admin/").is_empty());
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        for (prefix, path, covered) in [
            ("/api/admin/health", "/api/admin/health", true),
            ("/api/admin/health", "/api/admin/health/", true),
            ("/api/admin/health", "/api/admin/health/deep/x", true),
            ("/api/admin/health", "/api/admin/healthz", false),
            ("/api/admin/health", "/api/admin/health-dump", false),
            ("/api/admin/health", "/api/admin/health.json", false),
            ("/api/admin/health", "/api/admin/health;x", false),
            ("/api/admin/health", "/api/admin/heal", false),
            ("/api/admin/health", "/api/admin", false),
            // A prefix ending in `/` covers the path without it too.
            ("/x/", "/x", true),
            ("/x/", "/x/", true),
            ("/x/", "/x/y", true),
            ("/x/", "/xy", false),
            ("/x/", "/", false),
            ("/", "/", true),
            ("/", "/anything", true),
        ] {
            assert_eq!(covers(prefix, path, false), covered, "{prefix} {path}");
            assert_eq!(covers(prefix, path, true), covered, "{prefix} {path}");
        }
        // Through the readings: a longer, looser route does not open a
        // neighbour that merely starts with its name.
        let routes = [
            route("/api/admin/", &["admin"]),
            route("/api/admin/health", &[]),
        ];
        assert_eq!(met(&routes, "/api/admin/health"), ["/api/admin/health"]);
        assert_eq!(
            met(&routes, "/api/admin/health/live"),
            ["/api/admin/health"]
        );
        assert_eq!(met(&routes, "/api/admin/healthz"), ["/api/admin/"]);
        assert_eq!(met(&routes, "/api/admin/health-dump"), ["/api/admin/"]);
        // The servlet reading cuts `;x`: both apply.
        assert_eq!(
            met(&routes, "/api/admin/health;x"),
            ["/api/admin/", "/api/admin/health"]
        );
    }

    #[test]
    fn letters_also_compare_ignoring_case_which_only_adds_routes() {
        for (prefix, path, exact, folded) in [
            ("/api/admin/", "/api/admin/x", true, true),
            ("/api/admin/", "/API/Admin/x", false, true),
            ("/api/admin/", "/API/ADMIN", false, true),
            ("/Api/Admin/", "/api/admin/x", false, true),
            ("/api/admin/", "/API/AdminX", false, false),
            ("/caf\u{e9}/", "/CAF\u{c9}/menu", false, true),
            // Case mappings that land on ASCII.
            ("/keys/", "/\u{212a}eys/", false, true),
            ("/admin/", "/adm\u{131}n/", false, true),
            ("/admin/", "/adm\u{130}n/", false, true),
            ("/secrets/", "/\u{17f}ecrets/", false, true),
            ("/api/admin/", "/api/adm/", false, false),
        ] {
            assert_eq!(covers(prefix, path, false), exact, "{prefix} {path}");
            assert_eq!(covers(prefix, path, true), folded, "{prefix} {path}");
        }
        let routes = [route("/api/", &["read"]), route("/api/admin/", &["admin"])];
        assert_eq!(met(&routes, "/API/Admin/users"), ["/api/admin/"]);
        assert_eq!(met(&routes, "/api/ADMIN/users"), ["/api/", "/api/admin/"]);
        assert_eq!(met(&routes, "/api/%41dmin/users"), ["/api/", "/api/admin/"]);
        assert_eq!(met(&routes, "/Api/public"), ["/api/"]);
        assert_eq!(met(&routes, "/api/adm\u{131}n/x"), ["/api/", "/api/admin/"]);
        assert_eq!(met(&routes, "/api/adm%C4%B1n/x"), ["/api/", "/api/admin/"]);
        // Routes differing only in case: a path meets both.
        let routes = [route("/admin/", &["a"]), route("/Admin/", &["b"])];
        assert_eq!(met(&routes, "/ADMIN/x"), ["/Admin/", "/admin/"]);
        assert_eq!(met(&routes, "/admin/x"), ["/Admin/", "/admin/"]);
    }

    #[test]
    fn a_format_suffix_cut_is_one_more_reading() {
        for (reading, cut) in [
            ("/api/admin/keys.json", Some("/api/admin/keys")),
            ("/api/admin/keys.tar.gz", Some("/api/admin/keys")),
            ("/v1.2/keys", None),
            ("/api/admin/.hidden", None),
            ("/api/admin/..", None),
            ("/api/admin/", None),
            ("/", None),
        ] {
            assert_eq!(without_format_suffix(reading), cut, "{reading}");
        }
        let routes = [
            route("/api/", &[]),
            route("/api/admin/keys", &["keys"]),
            route("/api/admin/health", &[]),
        ];
        // An app with format routing serves `keys.json` as `keys`.
        assert_eq!(
            met(&routes, "/api/admin/keys.json"),
            ["/api/", "/api/admin/keys"]
        );
        assert_eq!(
            met(&routes, "/api/admin/keys.JSON"),
            ["/api/", "/api/admin/keys"]
        );
        assert_eq!(met(&routes, "/api/admin/keysz"), ["/api/"]);
    }

    #[test]
    fn paths_are_normalized_so_no_spelling_slips_past_a_route() {
        for (raw, normal) in [
            ("/api/admin/users?x=1#f", "/api/admin/users"),
            ("/api//admin/users", "/api/admin/users"),
            ("/api/./admin/users", "/api/admin/users"),
            ("/api/x/../admin/users", "/api/admin/users"),
            ("/api/%61dmin/users", "/api/admin/users"),
            ("/api/%2561dmin/users", "/api/admin/users"),
            ("/api%2Fadmin%2fusers", "/api/admin/users"),
            ("/api\\admin\\users", "/api/admin/users"),
            ("/../../api/admin/", "/api/admin/"),
            ("/api/admin/.", "/api/admin/"),
            ("/api/admin/x/..", "/api/admin/"),
            ("", "/"),
            ("/", "/"),
            ("/%zz%4", "/%zz%4"),
            ("/API/Admin", "/API/Admin"),
        ] {
            assert_eq!(normalize_path(raw, false), normal, "{raw}");
        }
        // A path taken as normal is read once: normalizing leaves it as is.
        for (path, normal) in [
            ("/", true),
            ("/api", true),
            ("/api/", true),
            ("/api/admin/users", true),
            ("/a.b/c.d", true),
            ("/.well-known/x", true),
            ("/x/...", true),
            ("/API/Admin", true),
            ("//", false),
            ("/api//x", false),
            ("/api/./x", false),
            ("/api/x/..", false),
            ("/api/x/.", false),
            ("/api/%61", false),
            ("/a\\b", false),
            ("/a;b/c", false),
        ] {
            assert_eq!(is_normal(path), normal, "{path}");
            if normal {
                assert_eq!(normalize_path(path, false), path, "{path}");
                assert_eq!(normalize_path(path, true), path, "{path}");
                assert!(
                    path_readings(path)
                        .iter()
                        .all(|r| matches!(r, Cow::Borrowed(p) if *p == path)),
                    "{path}"
                );
            }
        }
        assert_eq!(normalize_path("/api/x/..;/admin/u", true), "/api/admin/u");
        assert_eq!(
            normalize_path("/api/admin;jsessionid=1/u", true),
            "/api/admin/u"
        );
    }

    #[test]
    fn a_path_taken_as_normal_never_normalizes_to_anything_else() {
        // Every path of up to 7 characters over an alphabet that makes
        // every kind of segment.
        let alphabet = ['/', 'a', '.', ';', '%', '2', 'f', '\\'];
        let mut paths = vec![String::from("/")];
        for _ in 0..6 {
            let longer: Vec<String> = paths
                .iter()
                .filter(|p| p.len() == paths.last().map_or(0, String::len))
                .flat_map(|p| alphabet.map(|c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
        }
        assert!(paths.len() > 200_000);
        for path in paths.iter().filter(|p| is_normal(p)) {
            assert_eq!(&normalize_path(path, false), path);
            assert_eq!(&normalize_path(path, true), path);
        }
    }

    #[test]
    fn every_reading_of_the_path_brings_its_route() {
        let routes = [route("/api/", &[]), route("/api/admin/", &["admin"])];
        let met = |path: &str| met(&routes, path);
        for sneaky in [
            "/api//admin/x",
            "/api/%61dmin/x",
            "/api/%2561dmin/x",
            "/api/./admin/",
            "/x/../api/admin/y",
            "/api/public/..;/admin/users",
            "/api/admin",
        ] {
            assert!(
                met(sneaky).contains(&"/api/admin/"),
                "{sneaky} slipped past"
            );
        }
        // Out of a protected prefix by `..`: raw, it is still an admin path.
        assert_eq!(met("/api/admin/../public/x"), ["/api/", "/api/admin/"]);
        assert_eq!(met("/api/public/x"), ["/api/"]);
    }

    #[test]
    fn the_token_comes_from_the_header_then_the_cookie_then_the_query() {
        let mut config = AuthzConfig {
            token_cookie: Some("jwt".into()),
            token_query: Some("access_token".into()),
            ..AuthzConfig::default()
        };
        let cookies = ["a=1; jwt=c.c.c", "b=2"];
        assert_eq!(
            find_token(
                Some("Bearer h.h.h"),
                cookies,
                Some("access_token=q"),
                &config
            ),
            Some("h.h.h")
        );
        assert_eq!(
            find_token(Some("bEaReR   h.h.h "), [], None, &config),
            Some("h.h.h")
        );
        // Another scheme in Authorization is no token, and does not fall
        // through to the cookie (the client chose its credentials).
        assert_eq!(
            find_token(Some("Basic dXNlcg=="), cookies, None, &config),
            None
        );
        assert_eq!(find_token(Some("Bearer "), cookies, None, &config), None);
        // Multi-byte characters around byte 7 (Envoy passes UTF-8 through).
        assert_eq!(find_token(Some("Beareré.b.c"), [], None, &config), None);
        assert_eq!(find_token(Some("ééééé"), [], None, &config), None);
        assert_eq!(find_token(None, cookies, None, &config), Some("c.c.c"));
        assert_eq!(
            find_token(None, ["jwt="], Some("x=1&access_token=q.q.q"), &config),
            Some("q.q.q")
        );
        config.token_query = None;
        assert_eq!(
            find_token(None, [], Some("access_token=q.q.q"), &config),
            None
        );
        // A custom header: the value is the token, `Bearer ` optional.
        config.token_header = "x-access-token".into();
        assert_eq!(find_token(Some("t.t.t"), [], None, &config), Some("t.t.t"));
        assert_eq!(
            find_token(Some("Bearer t.t.t"), [], None, &config),
            Some("t.t.t")
        );
        assert_eq!(
            find_token(Some("abcdefé.x"), [], None, &config),
            Some("abcdefé.x")
        );
    }

    #[test]
    fn claims_render_as_header_text_or_not_at_all() {
        let payload: Value = serde_json::json!({
            "sub": "alice",
            "aud": ["a", "b"],
            "n": 5,
            "flag": true,
            "obj": {"k": "v"},
            "realm_access": {"roles": ["admin", "ops"]},
            "https://example.com/tenant": "acme",
            "bad": "line\nbreak",
            "uni": "Jos\u{e9}",
        });
        let text = |name: &str| {
            claim(&payload, name)
                .and_then(header_text)
                .filter(|v| is_header_value(v))
        };
        assert_eq!(text("sub").as_deref(), Some("alice"));
        assert_eq!(text("aud").as_deref(), Some("a b"));
        assert_eq!(text("n").as_deref(), Some("5"));
        assert_eq!(text("flag").as_deref(), Some("true"));
        assert_eq!(text("obj").as_deref(), Some(r#"{"k":"v"}"#));
        assert_eq!(text("realm_access.roles").as_deref(), Some("admin ops"));
        assert_eq!(text("https://example.com/tenant").as_deref(), Some("acme"));
        assert_eq!(text("bad"), None);
        assert_eq!(text("uni"), None);
        assert_eq!(text("missing"), None);
    }

    #[test]
    fn only_the_wanted_members_are_parsed_and_escaped_names_still_work() {
        let config = AuthzConfig {
            routes: vec![Route {
                prefix: "/".into(),
                scopes: vec![],
                claims: vec![("realm_access.roles".into(), vec!["ops".into()])],
            }],
            ..AuthzConfig::default()
        };
        let raw = br#"{"sub":"a","jti":"j","exp":1,"realm_access":{"roles":["ops"]},"scp":["r"],"big":[1,2,3]}"#;
        let v = wanted_members(raw, &config);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["realm_access", "scp", "sub"]);
        // A member name with an escape cannot be borrowed: parsed whole.
        let v = wanted_members(br#"{"sub":"a"}"#, &config);
        assert_eq!(v["sub"], "a");
        assert_eq!(wanted_members(b"not json", &config), Value::Null);
    }

    #[test]
    fn route_claims_match_values_or_array_elements() {
        let payload: Value = serde_json::json!({
            "role": "ops", "groups": ["dev", "qa"], "level": 3, "admin": false,
        });
        let allowed = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(claim_matches(
            payload.get("role"),
            &allowed(&["admin", "ops"])
        ));
        assert!(!claim_matches(payload.get("role"), &allowed(&["admin"])));
        assert!(claim_matches(payload.get("groups"), &allowed(&["qa"])));
        assert!(!claim_matches(payload.get("groups"), &allowed(&["ops"])));
        assert!(claim_matches(payload.get("level"), &allowed(&["3"])));
        assert!(!claim_matches(payload.get("admin"), &allowed(&["true"])));
        assert!(!claim_matches(payload.get("missing"), &allowed(&["x"])));
    }

    #[tokio::test]
    async fn a_miss_without_a_free_verification_slot_is_overloaded_a_hit_is_not() {
        use crate::verifier::VerifierConfig;
        use crate::verify::{Algorithm, Policy};
        let key = crate::sign::SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(Some("k1".into()));
        let jwks = serde_json::json!({"keys": [key.public_jwk()]}).to_string();
        let verifier = Verifier::new(VerifierConfig::single(Policy::default(), 10, 600));
        verifier.set_keys(
            0,
            crate::verify::KeySet::from_jwks(jwks.as_bytes()).unwrap(),
        );
        let token = key
            .mint(
                &serde_json::json!({"sub": "a", "exp": unix_now() + 600}),
                &serde_json::Map::new(),
            )
            .unwrap();
        let config = AuthzConfig::default();
        let (none, one) = (Semaphore::new(0), Semaphore::new(1));
        let decide_with = |slots| decide(&verifier, slots, Front::Http, Some(&token), "/", &config);
        assert_eq!(
            decide_with(&none).await,
            Decision::Undecided {
                reason: "overloaded"
            }
        );
        assert!(matches!(decide_with(&one).await, Decision::Allow { .. }));
        assert_eq!(one.available_permits(), 1, "the slot is given back");
        // Now cached: answered without a slot.
        assert!(matches!(decide_with(&none).await, Decision::Allow { .. }));
    }

    #[test]
    fn claim_header_names_are_checked() {
        assert!(valid_claim_header("x-user-id").is_ok());
        assert!(valid_claim_header("X-User").is_err());
        assert!(valid_claim_header("x user").is_err());
        assert!(valid_claim_header("").is_err());
        assert!(valid_claim_header("authorization").is_err());
        assert!(valid_claim_header("x-envoy-original-path").is_err());
    }
}
