//! The HTTP/1.1 front: what nginx `auth_request` and Envoy `ext_authz`
//! (HTTP mode) call. A thin adapter over the same [`Verifier`] (and so the
//! same cache and revocation check) as the native protocol.
//!
//! # The contract
//!
//! - **Any method, any path** (Envoy sends the client's method and
//!   `path_prefix` + the original path; nginx sends `GET` to its
//!   `proxy_pass` URI). No body is read. HTTP/1.0 one-shot and HTTP/1.1
//!   keep-alive (hyper).
//! - **The token** comes from `Authorization: Bearer <token>` (scheme
//!   case-insensitive), else from a cookie if `http_token_cookie` names one,
//!   else from a query parameter only if `http_token_query` names one
//!   (tokens in URLs end up in logs: off by default).
//! - **Valid: 200**, with claim headers for the proxy to pass upstream
//!   (nginx `auth_request_set $x $upstream_http_x_jwt_sub`, Envoy
//!   `allowed_upstream_headers`): `x-jwt-sub`, `x-jwt-iss`, `x-jwt-aud`
//!   (first audience), `x-jwt-scope` (`scope`, or `scp` joined by spaces),
//!   and with `http_forward_payload` the payload itself, base64url, in
//!   `x-jwt-payload`. A claim whose text cannot be a header value (control
//!   characters, non-ASCII) is left out rather than mangled.
//! - **Invalid: 401** with `WWW-Authenticate: Bearer error="invalid_token"`
//!   and a generic body; **no token: 401** with a bare `Bearer` challenge
//!   (RFC 6750 3.1: no error code when no credentials were sent). The
//!   precise reason goes to the log (debug) and, only with
//!   `http_debug_reason`, to an `x-jwt-reason` header.
//! - **Route policies**: the longest `[[routes]]` prefix matching the
//!   original path (nginx's `X-Original-URI` header when present, else the
//!   request path without `http_path_prefix`) may require scopes; a valid
//!   token without them is **403** `error="insufficient_scope"`.
//! - **Could not decide** (no keys yet, revocation store unavailable and
//!   failing closed): **503**. Both proxies treat it as an error and never as
//!   "allowed": nginx answers the client 500, Envoy its `status_on_error`
//!   (403 by default).
//!
//! Verification runs on the connection's task (an ES256 check is ~70 us);
//! hyper spreads connections over the runtime's workers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::unix_now;
use crate::verifier::{Outcome, Verifier};
use crate::verify::Verified;

/// A path prefix and the scopes a token needs under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Matched against the start of the original path.
    pub prefix: String,
    /// Every one of these must be among the token's scopes.
    pub scopes: Vec<String>,
}

/// Settings of the HTTP front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpConfig {
    /// Cookie holding the token when there is no `Authorization` header.
    pub token_cookie: Option<String>,
    /// Query parameter holding the token (off unless named).
    pub token_query: Option<String>,
    /// Add the base64url payload as `x-jwt-payload`.
    pub forward_payload: bool,
    /// Add the precise reject reason as `x-jwt-reason` (debugging only).
    pub debug_reason: bool,
    /// Prefix to strip from request paths (Envoy's `path_prefix`).
    pub path_prefix: String,
    /// Route policies, any order (the longest matching prefix applies).
    pub routes: Vec<Route>,
}

/// Serves HTTP on `listener` until `shutdown` resolves to a grace period;
/// then stops accepting, lets every connection finish its request in
/// flight (keep-alive connections close after it), and abandons what is
/// left when the grace ends.
pub async fn run(
    listener: UnixListener,
    verifier: Verifier,
    config: HttpConfig,
    shutdown: impl Future<Output = Duration>,
) {
    let config = Arc::new(config);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let grace = loop {
        tokio::select! {
            grace = &mut shutdown => break grace,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (verifier, config, mut drain) = (verifier.clone(), config.clone(), drain_rx.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (verifier, config) = (verifier.clone(), config.clone());
                        async move { Ok::<_, Infallible>(answer(req, &verifier, &config).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = drain.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    drop(listener);
    let _ = drain_tx.send(true);
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// The answer to one check request.
async fn answer(
    req: Request<Incoming>,
    verifier: &Verifier,
    config: &HttpConfig,
) -> Response<Full<Bytes>> {
    let Some(token) = token(&req, config) else {
        return challenge(StatusCode::UNAUTHORIZED, "Bearer", None);
    };
    let now = unix_now();
    let outcome = match verifier.check_cached(b"", &token, now) {
        Ok(outcome) => outcome,
        Err(miss) => verifier.check_uncached(miss, b"", &token, now),
    };
    let outcome = match outcome {
        Outcome::Pending(p) => p.finish(verifier, b"", &token).await,
        other => other,
    };
    match outcome {
        Outcome::Valid { result, .. } => {
            let claims = Claims::read(&result);
            let path = original_path(&req, config);
            if let Some(route) = route_for(&config.routes, &path)
                && let Some(missing) = route.scopes.iter().find(|s| !claims.scopes.contains(s))
            {
                tracing::debug!(%path, scope = %missing, "token lacks a required scope");
                let scope = route.scopes.join(" ");
                let value = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
                return challenge(
                    StatusCode::FORBIDDEN,
                    &value,
                    config.debug_reason.then_some("insufficient_scope"),
                );
            }
            allowed(&result, &claims, config)
        }
        Outcome::Invalid(rejection) => {
            tracing::debug!(reason = rejection.reason.as_str(), "token rejected");
            challenge(
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"invalid_token\"",
                config.debug_reason.then_some(rejection.reason.as_str()),
            )
        }
        Outcome::NoKeys
        | Outcome::RevocationUnavailable
        | Outcome::UnknownSelector
        | Outcome::Pending(_) => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "could not decide\n");
            if config.debug_reason {
                let why = match outcome {
                    Outcome::NoKeys => "no_keys",
                    _ => "revocation_unavailable",
                };
                response
                    .headers_mut()
                    .insert("x-jwt-reason", HeaderValue::from_static(why));
            }
            response
        }
    }
}

/// The token: bearer header, else cookie, else (if enabled) query.
fn token(req: &Request<Incoming>, config: &HttpConfig) -> Option<Vec<u8>> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value.as_bytes();
        let (scheme, rest) = value.split_at(value.len().min(7));
        if scheme.eq_ignore_ascii_case(b"bearer ") {
            let token = rest.trim_ascii();
            return (!token.is_empty()).then(|| token.to_vec());
        }
        // Another scheme (Basic...): no bearer token here.
        return None;
    }
    if let Some(name) = &config.token_cookie {
        for header in req.headers().get_all(COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k == name
                    && !v.is_empty()
                {
                    return Some(v.as_bytes().to_vec());
                }
            }
        }
    }
    if let Some(name) = &config.token_query {
        let query = req.uri().query()?;
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k == name
                && !v.is_empty()
            {
                return Some(v.as_bytes().to_vec());
            }
        }
    }
    None
}

/// The path the client asked the proxy for, without the query.
fn original_path(req: &Request<Incoming>, config: &HttpConfig) -> String {
    let uri = match req
        .headers()
        .get("x-original-uri")
        .and_then(|v| v.to_str().ok())
    {
        Some(original) => original.to_owned(),
        None => {
            let path = req.uri().path();
            path.strip_prefix(config.path_prefix.as_str())
                .filter(|_| !config.path_prefix.is_empty())
                .map_or_else(|| path.to_owned(), str::to_owned)
        }
    };
    let path = uri.split(['?', '#']).next().unwrap_or("").to_owned();
    if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
}

/// The longest route whose prefix starts `path`.
fn route_for<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    routes
        .iter()
        .filter(|r| path.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.len())
}

/// What the headers and route checks need from the claims.
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    aud: Option<String>,
    scopes: Vec<String>,
}

impl Claims {
    fn read(result: &Verified) -> Claims {
        let value: serde_json::Value =
            serde_json::from_slice(&result.claims.raw).unwrap_or_default();
        let text = |name: &str| {
            value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let aud = match value.get("aud") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => {
                list.first().and_then(|v| v.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        let mut scopes: Vec<String> = Vec::new();
        for name in ["scope", "scp"] {
            match value.get(name) {
                Some(serde_json::Value::String(s)) => {
                    scopes.extend(s.split_whitespace().map(str::to_owned))
                }
                Some(serde_json::Value::Array(list)) => {
                    scopes.extend(list.iter().filter_map(|v| v.as_str()).map(str::to_owned));
                }
                _ => {}
            }
        }
        Claims {
            sub: text("sub"),
            iss: text("iss"),
            aud,
            scopes,
        }
    }
}

/// 200, with the claim headers.
fn allowed(result: &Verified, claims: &Claims, config: &HttpConfig) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::OK, "");
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: Option<String>| {
        if let Some(value) = value
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-jwt-sub", claims.sub.clone());
    put("x-jwt-iss", claims.iss.clone());
    put("x-jwt-aud", claims.aud.clone());
    put(
        "x-jwt-scope",
        (!claims.scopes.is_empty()).then(|| claims.scopes.join(" ")),
    );
    if config.forward_payload {
        use base64::Engine;
        put(
            "x-jwt-payload",
            Some(crate::jwks::B64URL.encode(&result.claims.raw)),
        );
    }
    response
}

/// A denial with its `WWW-Authenticate` challenge.
fn challenge(
    status: StatusCode,
    www_authenticate: &str,
    reason: Option<&str>,
) -> Response<Full<Bytes>> {
    let body = if status == StatusCode::FORBIDDEN {
        "forbidden\n"
    } else {
        "unauthorized\n"
    };
    let mut response = text(status, body);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(www_authenticate) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    if let Some(reason) = reason.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(HeaderName::from_static("x-jwt-reason"), reason);
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, scopes: &[&str]) -> Route {
        Route {
            prefix: prefix.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let routes = [
            route("/api/", &["read"]),
            route("/api/admin/", &["admin"]),
            route("/", &[]),
        ];
        assert_eq!(
            route_for(&routes, "/api/admin/users").unwrap().scopes,
            ["admin"]
        );
        assert_eq!(route_for(&routes, "/api/orders").unwrap().scopes, ["read"]);
        assert!(route_for(&routes, "/health").unwrap().scopes.is_empty());
        assert!(route_for(&routes[..2], "/health").is_none());
    }
}
