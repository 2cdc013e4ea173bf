//! The HTTP/1.1 front: what nginx `auth_request` and Envoy `ext_authz`
//! (HTTP mode) call. It maps [`authz::decide`]'s [`Decision`](crate::request::Decision) to HTTP; the
//! decision itself (token lookup order, claim headers, route policies) is
//! shared with the gRPC front and documented in [`authz`].
//!
//! # The contract
//!
//! - **Any method, any path** (Envoy sends the client's method and
//!   `path_prefix` + the original path; nginx sends `GET` to its
//!   `proxy_pass` URI). No body is read. HTTP/1.0 one-shot and HTTP/1.1
//!   keep-alive (hyper).
//! - **Valid: 200**, with the claim headers for the proxy to pass upstream
//!   (nginx `auth_request_set $x $upstream_http_x_jwt_sub`, Envoy
//!   `allowed_upstream_headers`). Claims the token lacks, and the token
//!   header when `strip_token` is set, are listed in
//!   `x-envoy-auth-headers-to-remove`, which Envoy applies to the upstream
//!   request (so a client cannot forge `x-jwt-scope`); nginx ignores it and
//!   never passes a header whose `proxy_set_header` value is empty.
//! - **401** (missing or invalid token) and **403** (route policy unmet)
//!   with the RFC 6750 `WWW-Authenticate` challenge and a generic body.
//! - **Could not decide: 503** (no keys yet, revocation store down and
//!   failing closed, or `overloaded`: every verification slot busy). Both proxies treat it as an error and never
//!   as "allowed": nginx answers the client 500, Envoy its `status_on_error`
//!   (403 by default; only `failure_mode_allow: true` would let it pass).
//! - `x-jwt-reason` carries the precise reason only with `debug_reason`.
//! - The route path (and the query, for `token_query`) is nginx's
//!   `X-Original-URI` header when present and no `path_prefix` is set, else
//!   the request's own without `path_prefix` (Envoy HTTP mode: a client
//!   cannot pick its route with a forged header).
//!
//! Verification runs on the connection's task (an ES256 check is ~70 us);
//! hyper spreads connections over the runtime's workers.
//!
//! # Limits
//!
//! - A request head larger than `max_header_bytes` (default 32 KiB) is
//!   answered **431** and the connection closed: hyper never buffers more
//!   (its own default, ~400 KiB, let 1,024 slow clients hold ~400 MiB).
//!   32 KiB is what nginx itself accepts by default
//!   (`large_client_header_buffers 4 8k`), and Envoy's HTTP `ext_authz`
//!   forwards only its `allowed_headers`.
//! - A request head must be complete within `header_timeout` (default 10 s)
//!   of its first byte ([`HeaderDeadline`]), else the connection is closed;
//!   that deadline is separate from `idle_timeout`, which closes a
//!   keep-alive connection that sends nothing (hyper's header timer, which
//!   starts when the connection becomes idle).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{COOKIE, HOST, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::authz::{self, Answer, AuthzConfig, CertHeader, Deny};
use super::listen::{self, Limits, Listener};
use crate::request::{self, ClientCert, Front, Reason, TokenScheme};
use crate::verifier::Verifier;

// The request context's headers, named once: a lookup by a prebuilt name
// hashes it and probes, where a lookup by `&str` first parses and checks
// the name (benches/compare.sh, cached mode: the five by `&str` cost the
// cached HTTP check about 5% of its CPU).
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Serves HTTP on `listener` until `shutdown` resolves to a grace period;
/// then stops accepting, lets every connection finish its request in
/// flight (keep-alive connections close after it), and abandons what is
/// left when the grace ends.
pub async fn run(
    listeners: Vec<Listener>,
    limits: Limits,
    verifier: Verifier,
    config: AuthzConfig,
    shutdown: impl Future<Output = Duration>,
) {
    // Header names built once: every allowed request sends them.
    let names: Arc<Names> = Arc::new(Names {
        claims: config
            .claim_headers
            .iter()
            .map(|h| &*h.header)
            .chain([authz::PAYLOAD_HEADER])
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect(),
        token: HeaderName::from_bytes(config.token_header.as_bytes()).ok(),
    });
    let config = Arc::new(config);
    let (mut accepted, accepting) = listen::accept_all(
        listeners,
        limits.max_connections,
        listen::WhenFull::Wait,
        Some((&verifier, Front::Http)),
    );
    let mut connections = listen::Connections::new();
    tokio::pin!(shutdown);
    let grace = loop {
        tokio::select! {
            grace = &mut shutdown => break grace,
            stream = accepted.recv() => {
                let Some(stream) = stream else { continue };
                let (verifier, config, mut drain) = (verifier.clone(), config.clone(), connections.draining());
                let idle_timeout = limits.idle_timeout;
                let names = names.clone();
                let (stream, head_parsed) = HeaderDeadline::new(stream, limits.header_timeout);
                let max_header_bytes = limits.max_header_bytes;
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        head_parsed.store(true, Ordering::Relaxed);
                        let (verifier, config, names) =
                            (verifier.clone(), config.clone(), names.clone());
                        async move {
                            Ok::<_, Infallible>(answer(req, &verifier, &config, &names).await)
                        }
                    });
                    // hyper's header timer starts when the connection waits
                    // for a request, so it is the keep-alive idle timeout;
                    // the short deadline of a head that has started is
                    // HeaderDeadline's. max_buf_size bounds what one read may buffer and max_header_size the parsed head (431
                    // beyond); no body is ever read.
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(idle_timeout)
                        .max_buf_size(max_header_bytes)
                        .max_header_size(max_header_bytes)
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
        }
    };
    drop(accepting);
    // A connection accepted as shutdown came sits in the channel: close it
    // now rather than at the end of the grace.
    drop(accepted);
    let abandoned = connections.drain(grace).await;
    if abandoned > 0 {
        tracing::warn!(
            connections = abandoned,
            "grace period over: closed busy HTTP connections"
        );
    }
}

/// Header names of the claim headers (in `claim_headers` order, then the
/// payload header) and of the token header, built once.
struct Names {
    claims: Vec<HeaderName>,
    token: Option<HeaderName>,
}

/// The request's headers, as the pipeline's stages read them.
struct Headers<'a>(&'a hyper::HeaderMap);

impl request::Headers for Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }
}

/// The answer to one check request.
async fn answer(
    req: Request<Incoming>,
    verifier: &Verifier,
    config: &AuthzConfig,
    names: &Names,
) -> Response<Full<Bytes>> {
    let arrived = std::time::Instant::now();
    let headers = req.headers();
    let path = original_uri(&req, config);
    let token = authz::find_token(
        headers
            .get(config.token_header.as_str())
            .and_then(|v| v.to_str().ok()),
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        // The client's query (behind nginx: in X-Original-URI).
        path.split_once('?').map(|(_, q)| q),
        config,
    );
    // Routes see the path alone (Context::path): the query may hold the
    // token, and a stage's log line must never carry it.
    let route_path = path.split(['?', '#']).next().unwrap_or_default();
    let header_view = Headers(headers);
    let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (token, token_scheme) = match token {
        Some((token, scheme)) => (Some(token.as_bytes()), scheme),
        None => (None, TokenScheme::Bearer),
    };
    let request = request::Request {
        token,
        selector: b"",
        context: request::Context {
            // nginx's auth_request subrequest is a GET: the client's method
            // comes in X-Original-Method (deploy/nginx.conf); Envoy sends
            // the client's own.
            method: header(&X_ORIGINAL_METHOD)
                .filter(|_| config.path_prefix.is_empty())
                .or(Some(req.method().as_str())),
            scheme: header(&X_FORWARDED_PROTO),
            // Behind Envoy the check request is the client's own: its
            // X-Forwarded-Host is the client's to forge (a DPoP proof made
            // for another host would pass), so only Host counts there.
            authority: header(&X_FORWARDED_HOST)
                .filter(|_| config.path_prefix.is_empty())
                .or_else(|| header(&HOST)),
            path: Some(route_path),
            headers: Some(&header_view),
            // The proxy's view of the client: nginx's X-Real-IP
            // (deploy/nginx.conf sets it from $remote_addr).
            // Behind Envoy (`path_prefix` set) X-Real-IP is the client's
            // own header, never trusted, like X-Original-*.
            client: header(&X_REAL_IP)
                .filter(|_| config.path_prefix.is_empty())
                .and_then(|ip| ip.trim().parse().ok()),
            token_scheme,
            dpop_proof: authz::find_proof(
                headers
                    .get_all(DPOP)
                    .iter()
                    .map(|v| v.to_str().unwrap_or_default()),
            ),
            // Only from a header the operator named as set by a trusted
            // proxy (`client_cert_header`): anyone else could send one.
            client_cert: config.client_cert_header.and_then(|h| {
                let value = headers.get(h.name())?.to_str().ok()?;
                Some(match h {
                    CertHeader::ClientCert => ClientCert::Rfc9440(value),
                    CertHeader::Xfcc => ClientCert::Xfcc(value),
                    CertHeader::NginxPem => ClientCert::UrlEncodedPem(value),
                })
            }),
            ..request::Context::new(Front::Http, arrived, crate::clock::unix_now())
        },
    };
    match authz::decide(verifier, &request, config).await {
        Answer::Allow { headers } => {
            let mut response = text(StatusCode::OK, "");
            let out = response.headers_mut();
            let mut remove = Vec::new();
            for (i, (name, value)) in headers.iter().enumerate() {
                let name = match names.claims.get(i).filter(|n| n.as_str() == &**name) {
                    Some(known) => Ok(known.clone()),
                    None => HeaderName::from_bytes(name.as_bytes()),
                };
                match (name, value.as_deref().map(HeaderValue::from_str)) {
                    (Ok(name), Some(Ok(value))) => {
                        out.insert(name, value);
                    }
                    (Ok(name), _) => remove.push(name),
                    (Err(_), _) => {} // Names are checked at configuration.
                }
            }
            if config.strip_token
                && let Some(name) = &names.token
            {
                remove.push(name.clone());
            }
            if !remove.is_empty() {
                let list: Vec<&str> = remove.iter().map(HeaderName::as_str).collect();
                if let Ok(value) = HeaderValue::from_str(&list.join(",")) {
                    out.insert("x-envoy-auth-headers-to-remove", value);
                }
            }
            response
        }
        Answer::Deny {
            status,
            challenge,
            reason,
        } => {
            let (status, body) = match status {
                Deny::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized\n"),
                Deny::Forbidden => (StatusCode::FORBIDDEN, "forbidden\n"),
            };
            let mut response = text(status, body);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            debug_reason(&mut response, config, reason);
            response
        }
        Answer::Undecided { reason } => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "could not decide\n");
            debug_reason(&mut response, config, reason);
            response
        }
    }
}

fn debug_reason(response: &mut Response<Full<Bytes>>, config: &AuthzConfig, reason: Reason) {
    if config.debug_reason {
        response
            .headers_mut()
            .insert("x-jwt-reason", HeaderValue::from_static(reason.as_str()));
    }
}

/// The URI (path and query) the client asked the proxy for: nginx's
/// `X-Original-URI` header, else the request's own, without
/// `http_path_prefix`. With a prefix set (Envoy HTTP mode, which sends
/// `path_prefix` + the client's path) the header is ignored: a client could
/// send one through a wide `allowed_headers` and pick its own route.
fn original_uri(req: &Request<Incoming>, config: &AuthzConfig) -> String {
    let header = req
        .headers()
        .get(&X_ORIGINAL_URI)
        .and_then(|v| v.to_str().ok())
        .filter(|_| config.path_prefix.is_empty());
    let uri = match header {
        Some(original) => original.to_owned(),
        None => {
            let path = req.uri().path();
            let path = path
                .strip_prefix(config.path_prefix.as_str())
                .filter(|_| !config.path_prefix.is_empty())
                .unwrap_or(path);
            match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            }
        }
    };
    if uri.starts_with('/') {
        uri
    } else {
        format!("/{uri}")
    }
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

/// A connection whose request heads must be complete within a deadline of
/// their first byte. The deadline is armed when bytes arrive while no head
/// is pending, and cleared when hyper has parsed a head (its service sets
/// the shared flag); a read past it fails with `TimedOut`, which ends the
/// connection. A connection that sends nothing is hyper's idle timer's.
pub struct HeaderDeadline<S> {
    io: S,
    timeout: Duration,
    /// Armed while a head is arriving.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set by the service when hyper has parsed a head.
    parsed: Arc<AtomicBool>,
}

impl<S> HeaderDeadline<S> {
    /// Wraps `io`; the flag is for the service to set on each request.
    pub fn new(io: S, timeout: Duration) -> (HeaderDeadline<S>, Arc<AtomicBool>) {
        let parsed = Arc::new(AtomicBool::new(false));
        let io = HeaderDeadline {
            io,
            timeout,
            deadline: None,
            parsed: parsed.clone(),
        };
        (io, parsed)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.parsed.swap(false, Ordering::Relaxed) {
            this.deadline = None;
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            tracing::debug!("HTTP front: request head not complete in time; closing");
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before && this.deadline.is_none() {
            let mut deadline = Box::pin(tokio::time::sleep(this.timeout));
            // Registers the waker: the deadline fires while hyper waits.
            let _ = deadline.as_mut().poll(cx);
            this.deadline = Some(deadline);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
