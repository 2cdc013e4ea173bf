//! The proxy fronts' settings: where the HTTP and gRPC fronts listen, and
//! their shared decision (`crate::server::authz`: where the token is, the
//! claim headers, the routes). The fronts themselves live in
//! `crate::server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::settings::{RawConfig, Setting, s};
use super::validate::Check;
use crate::bind::{self, BindConfig};
use crate::route::Route;
use crate::server::authz::{self, AuthzConfig, ClaimHeader};

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

/// Types the fronts' settings; `socket` is the native socket's path, which
/// no front may take.
pub(super) fn settings(c: &mut Check, raw: &RawConfig, socket: &Path) -> Fronts {
    let (http_socket, http_listen, grpc_socket, grpc_listen) = listeners(c, raw, socket);
    let token_header = token_header(c, raw);
    let forward_payload = c.flag(&s::forward_payload, raw.forward_payload.as_deref());
    let claim_headers = claim_headers(c, raw, &token_header, forward_payload);
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
            debug_reason: c.flag(&s::debug_reason, raw.debug_reason.as_deref()),
            strip_token: c.flag(&s::strip_token, raw.strip_token.as_deref()),
            path_prefix: raw.http_path_prefix.clone().unwrap_or_default(),
            dpop_to_bearer: c.flag(&s::dpop_to_bearer, raw.dpop_to_bearer.as_deref()),
            // Set once the issuers are known (`validate`).
            cnf_header: false,
            client_cert_header: raw
                .client_cert_header
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .and_then(|v| {
                    let parsed = authz::CertHeader::parse(v);
                    if parsed.is_none() {
                        c.problem(
                            &s::client_cert_header,
                            format_args!("{v:?}: expected client-cert, x-forwarded-client-cert or x-ssl-client-cert"),
                        );
                    }
                    parsed
                }),
        },
    }
}

/// The binding stage's daemon-wide settings: `[[bindings]]`,
/// `public_origin`, the replay cache's size.
pub(super) fn bindings(c: &mut Check, raw: &RawConfig) -> BindConfig {
    let mut rules = Vec::new();
    for (n, b) in raw.bindings.iter().flatten().enumerate() {
        let at = format!("bindings[{n}]");
        let claim = match b.claim.as_deref().map(str::trim) {
            Some(claim) if !claim.is_empty() => claim.to_owned(),
            _ => {
                c.problems.push(format!("{at}.claim: required"));
                continue;
            }
        };
        let source = match b.equals.as_deref().map(bind::Source::parse) {
            Some(Ok(source)) => source,
            Some(Err(e)) => {
                c.problems.push(format!("{at}.equals: {e}"));
                continue;
            }
            None => {
                c.problems.push(format!(
                    "{at}.equals: required: \"client_ip\" or \"sha256(header, ...)\""
                ));
                continue;
            }
        };
        if let Some(prefix) = &b.prefix
            && !prefix.starts_with('/')
        {
            c.problems.push(format!(
                "{at}.prefix: a path starting with \"/\" is required"
            ));
        }
        let if_missing = match b.if_missing.as_deref().map(str::trim) {
            None | Some("refuse") => bind::Missing::Refuse,
            Some("allow") => bind::Missing::Allow,
            Some(other) => {
                c.problems.push(format!(
                    "{at}.if_missing: {other:?}: expected refuse or allow"
                ));
                bind::Missing::Refuse
            }
        };
        rules.push(bind::Rule {
            claim,
            source,
            issuer: b.issuer.clone().filter(|i| !i.is_empty()),
            prefix: b.prefix.clone(),
            if_missing,
        });
    }
    let public_origin = raw
        .public_origin
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .and_then(|origin| {
            let bare = origin.trim_end_matches('/');
            // An origin: scheme and authority, nothing after.
            let ok = crate::verify::dpop::normalize_uri(bare).is_some()
                && bare
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#']));
            if ok {
                Some(bare.to_owned())
            } else {
                c.problem(
                    &s::public_origin,
                    format_args!(
                        "{origin:?}: expected scheme://host[:port], e.g. https://api.example.com"
                    ),
                );
                None
            }
        });
    let replay_entries = c.number(
        &s::dpop_replay_entries,
        raw.dpop_replay_entries.as_deref(),
        (1, 10_000_000),
    );
    BindConfig {
        rules,
        public_origin,
        replay_entries,
    }
}

type Listeners = (
    Option<PathBuf>,
    Option<SocketAddr>,
    Option<PathBuf>,
    Option<SocketAddr>,
);

/// The fronts' sockets and addresses, none shared with another listener.
fn listeners(c: &mut Check, raw: &RawConfig, socket: &Path) -> Listeners {
    let path = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(PathBuf::from);
    let (http_socket, grpc_socket) = (path(&raw.http_socket), path(&raw.grpc_socket));
    if http_socket.as_deref() == Some(socket) {
        c.problem(&s::http_socket, "the same path as socket");
    }
    if grpc_socket.as_deref() == Some(socket) {
        c.problem(&s::grpc_socket, "the same path as socket");
    }
    if grpc_socket.is_some() && grpc_socket == http_socket {
        c.problem(&s::grpc_socket, "the same path as http_socket");
    }
    let addr = |c: &mut Check, s: &Setting, v: &Option<String>| -> Option<SocketAddr> {
        let v = v.as_deref().filter(|s| !s.is_empty())?;
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                c.problem(
                    s,
                    format_args!("{v:?} is not an IP address and port (e.g. 127.0.0.1:8081)"),
                );
                None
            }
        }
    };
    let http_listen = addr(c, &s::http_listen, &raw.http_listen);
    let grpc_listen = addr(c, &s::grpc_listen, &raw.grpc_listen);
    if http_listen.is_some() && http_listen == grpc_listen {
        c.problem(&s::grpc_listen, "the same address as http_listen");
    }
    (http_socket, http_listen, grpc_socket, grpc_listen)
}

/// The header holding the token, lower-cased.
fn token_header(c: &mut Check, raw: &RawConfig) -> String {
    let header = raw
        .token_header
        .as_deref()
        .or(s::token_header.default)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if header == "cookie"
        || header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        c.problem(
            &s::token_header,
            format_args!("{header:?} is not a header name (use token_cookie for cookies)"),
        );
    }
    header
}

/// The claim headers: the `header=claim` items given, else the defaults.
fn claim_headers(
    c: &mut Check,
    raw: &RawConfig,
    token_header: &str,
    forward_payload: bool,
) -> Vec<ClaimHeader> {
    let Some(items) = &raw.claim_headers else {
        return authz::default_claim_headers();
    };
    let mut claim_headers = Vec::new();
    for item in items {
        let Some((header, claim)) = item.split_once('=') else {
            c.problem(
                &s::claim_headers,
                format_args!("{item:?} is not header=claim"),
            );
            continue;
        };
        let (header, claim) = (header.trim().to_ascii_lowercase(), claim.trim());
        if let Err(why) = authz::valid_claim_header(&header) {
            c.problem(&s::claim_headers, format_args!("{header:?}: {why}"));
        } else if claim.is_empty() {
            c.problem(
                &s::claim_headers,
                format_args!("{header:?}: no claim named"),
            );
        } else if header == token_header
            || (forward_payload && header == authz::PAYLOAD_HEADER)
            || claim_headers
                .iter()
                .any(|h: &ClaimHeader| *h.header == *header)
        {
            c.problem(
                &s::claim_headers,
                format_args!("{header:?} is set twice (or is the token or payload header)"),
            );
        } else {
            claim_headers.push(ClaimHeader {
                header: header.into(),
                claim: claim.to_owned(),
            });
        }
    }
    claim_headers
}

/// The `[[routes]]` tables: a stage of the verifier's pipeline, which
/// applies them to every request with a path (the proxy fronts).
pub(super) fn routes(c: &mut Check, raw: &RawConfig) -> Vec<Route> {
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
    routes
}
