//! Route policies: what a valid token needs, by the path of the request
//! it comes with. A stage of the verifier's pipeline
//! ([`crate::verifier`]): it applies to requests whose context has a path
//! (the proxy fronts), after the token is found valid and not revoked.
//!
//! A [`Route`] is a path prefix with the scopes and claim values a token
//! needs below it. [`check`] finds every route the request's path meets
//! (see [`routes_met`]: each reading of the path, the longest covering
//! prefix) and requires all of them; the first unmet one refuses the
//! request (403) with the scopes it asks for.
//!
//! Only the payload members routes can ask about (`scope`, `scp`, the route
//! claims) are parsed ([`members`]); the rest is skimmed as raw JSON.

use std::borrow::Cow;

use serde_json::Value;

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

/// Applies `routes` to a valid token's payload (`raw`, JSON) for a request
/// to `path`: `Ok` when every route the path meets is satisfied, else the
/// scopes the first unmet route asks for (space-separated; empty when it
/// asked for claims only), for the RFC 6750 challenge.
pub fn check(routes: &[Route], raw: &[u8], path: &str) -> Result<(), String> {
    let met = routes_met(routes, path);
    if met.is_empty() {
        return Ok(());
    }
    let payload = members(raw, |key| {
        key == "scope"
            || key == "scp"
            || routes
                .iter()
                .any(|r| r.claims.iter().any(|(c, _)| asks(c, key)))
    });
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
            return Err(route.scopes.join(" "));
        }
    }
    Ok(())
}

/// Whether a claim name (top-level, or a dotted path) asks for the
/// top-level member `key`.
pub fn asks(claim: &str, key: &str) -> bool {
    claim == key || claim.split('.').next() == Some(key)
}

/// The payload's top-level members `wanted` names, parsed into a `Value`
/// object: the rest is only skimmed (borrowed raw JSON), which saves most
/// of the parse on the proxy fronts' hot path. A payload whose member names
/// need unescaping is parsed whole; one that is not a JSON object gives
/// `Null`.
pub fn members(raw: &[u8], wanted: impl Fn(&str) -> bool) -> Value {
    use serde_json::value::RawValue;
    use std::collections::HashMap;
    let Ok(found) = serde_json::from_slice::<HashMap<&str, &RawValue>>(raw) else {
        return serde_json::from_slice(raw).unwrap_or_default();
    };
    let map: serde_json::Map<String, Value> = found
        .into_iter()
        .filter(|(key, _)| wanted(key))
        .filter_map(|(key, raw)| Some((key.to_owned(), serde_json::from_str(raw.get()).ok()?)))
        .collect();
    Value::Object(map)
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

/// Whether any reading of `path` (as [`routes_met`] reads it: raw,
/// normalized, without `;` parameters, each with its format suffix cut,
/// compared ignoring case) is covered by `prefix`: for rules that, like
/// routes, must apply to every spelling of a protected path (the binding
/// stage's `[[bindings]]` prefixes).
pub fn any_reading_covers(prefix: &str, path: &str) -> bool {
    path_readings(path).iter().any(|reading| {
        std::iter::once(reading.as_ref())
            .chain(without_format_suffix(reading))
            .any(|r| covers(prefix, r, true))
    })
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
/// letters compare ignoring case (see `fold_case`).
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
pub fn claim<'v>(payload: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = payload.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.').try_fold(payload, |v, part| v.get(part))
}

/// The token's scopes: `scope` (space-separated or an array), and `scp`.
pub fn scopes(payload: &Value) -> Vec<&str> {
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
pub fn claim_matches(value: Option<&Value>, allowed: &[String]) -> bool {
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

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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

    #[test]
    fn check_requires_every_route_met_and_names_the_scopes_of_the_refusal() {
        let routes = vec![
            route("/api/", &["read"]),
            Route {
                prefix: "/api/admin/".into(),
                scopes: vec!["admin".into(), "write".into()],
                claims: vec![("realm_access.roles".into(), vec!["ops".into()])],
            },
        ];
        let reader = br#"{"scope":"read","sub":"a"}"#;
        assert_eq!(check(&routes, reader, "/api/x"), Ok(()));
        assert_eq!(check(&routes, reader, "/public"), Ok(()));
        assert_eq!(
            check(&routes, reader, "/api/admin/users"),
            Err("admin write".to_owned())
        );
        let admin = br#"{"scp":["admin","write"],"realm_access":{"roles":["ops"]}}"#;
        assert_eq!(check(&routes, admin, "/api/admin/users"), Ok(()));
        let not_ops = br#"{"scp":["admin","write"],"realm_access":{"roles":["dev"]}}"#;
        assert!(check(&routes, not_ops, "/api/admin/users").is_err());
        // Another reading of the path brings the stricter route.
        assert!(check(&routes, reader, "/api/x/../admin/users").is_err());
        assert!(check(&routes, b"not json", "/api/x").is_err());
    }
}
