//! The gRPC front: `envoy.service.auth.v3.Authorization/Check`, what Envoy's
//! `ext_authz` filter calls in gRPC mode (and Istio's `envoyExtAuthzGrpc`
//! provider). It maps [`authz::decide`]'s [`Decision`](crate::request::Decision) to a
//! `CheckResponse`; the decision is shared with the HTTP front and
//! documented in [`authz`]. Types come from `envoy-types` (pre-generated
//! protos, no protoc), served with tonic over HTTP/2.
//!
//! # The contract
//!
//! - **Request**: the client's headers from `attributes.request.http`
//!   (`headers`, or `header_map` when Envoy sets `encode_raw_headers`),
//!   lower-case names as Envoy sends them; the path (with its query) from
//!   `attributes.request.http.path`. Cookies and the optional query token
//!   come from those too. A request without `attributes.request.http` is
//!   not a check: `INVALID_ARGUMENT`.
//! - **Allowed**: status `OK` and an `OkHttpResponse` whose `headers` set
//!   each claim header (overwriting whatever the client sent) and whose
//!   `headers_to_remove` names every claim header the token has no value
//!   for, plus the token header when `strip_token` is set.
//! - **Denied**: status `UNAUTHENTICATED` (401) or `PERMISSION_DENIED`
//!   (403) with a `DeniedHttpResponse` carrying that HTTP status, the RFC
//!   6750 `WWW-Authenticate` challenge and a generic body; `x-jwt-reason`
//!   only with `debug_reason`.
//! - **Could not decide**: the RPC fails with `UNAVAILABLE`. Envoy counts
//!   it as an error and answers `status_on_error` (403 by default); only
//!   `failure_mode_allow: true` would let the request through.
//!
//! # Limits
//!
//! What a client can make the front hold is bounded (each value's reason is
//! at [`run`]):
//!
//! - connections: `max_connections` (a count of the front's own);
//! - streams: `grpc_max_streams` per connection (HTTP/2
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`; further streams are refused by the
//!   protocol and Envoy opens another connection);
//! - one message: `grpc_max_message_bytes` (64 KiB). A check carries the
//!   client's headers, usually a few KB; a message announcing more is
//!   refused (`OUT_OF_RANGE`, tonic's code for it) on its 5-byte length prefix, before any
//!   of it is buffered;
//! - all messages: `grpc_max_buffered_bytes` (16 MiB) of request bytes
//!   received and not yet decided, over the whole front (`Budgeted`);
//!   a stream that would pass it is refused (`RESOURCE_EXHAUSTED`) and its
//!   bytes freed;
//! - time: a message not complete `grpc_body_timeout` (10 s) after its
//!   stream opened is refused (`DEADLINE_EXCEEDED`), freeing its bytes.
//!
//! Idle HTTP/2 connections are kept (Envoy holds one per worker and reuses
//! it), but pinged: a peer that does not answer is dropped with its slot.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tokio_stream::wrappers::ReceiverStream;

use super::authz::{self, Answer, AuthzConfig, Deny};
use super::listen::{self, Limits, Listener};
use crate::request::{self, ClientCert, Front, TokenScheme};
use crate::verifier::Verifier;
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::service::auth::v3::attribute_context;

/// HTTP/2 keepalive: an idle connection is pinged this often...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and closed when the ping is not answered within this long.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest header block (HPACK-decoded) of a stream: a check's HTTP/2
/// headers are gRPC's own and a few of Envoy's; the client's headers travel
/// in the message, which has its own limit.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Connection-level receive window: room for many small checks in flight
/// at once on Envoy's one connection per worker, while a connection whose
/// streams are not being read cannot hold more than this.
const CONNECTION_WINDOW: u32 = 256 * 1024;

/// Serves gRPC on `listeners` until `shutdown` resolves to a grace period;
/// then stops accepting, finishes the checks in flight (HTTP/2 GOAWAY), and
/// abandons what is left when the grace ends.
pub async fn run(
    listeners: Vec<Listener>,
    limits: Limits,
    verifier: Verifier,
    config: AuthzConfig,
    shutdown: impl Future<Output = Duration>,
) {
    let (accepted, accepting) = listen::accept_all(
        listeners,
        limits.max_connections,
        listen::WhenFull::Wait,
        Some((&verifier, Front::Grpc)),
    );
    let incoming =
        tokio_stream::StreamExt::map(ReceiverStream::new(accepted), Ok::<_, std::io::Error>);
    // tonic checks the announced length against this before buffering.
    let service = AuthorizationServer::new(Check {
        verifier,
        config: Arc::new(config),
    })
    .max_decoding_message_size(limits.max_message_bytes);
    let service = Budgeted {
        inner: service,
        budget: Arc::new(Semaphore::new(limits.max_buffered_bytes)),
        timeout: limits.body_timeout,
    };
    // The stream window lets a whole maximum message (and its 5-byte
    // prefix) arrive without waiting for a WINDOW_UPDATE, and no more.
    let stream_window = u32::try_from(limits.max_message_bytes + 5)
        .unwrap_or(u32::MAX)
        .max(65_535);
    let (grace_tx, grace_rx) = tokio::sync::oneshot::channel();
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(CONNECTION_WINDOW.max(stream_window))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let grace = shutdown.await;
            drop(accepting);
            let _ = grace_tx.send(grace);
        });
    tokio::pin!(server);
    let grace = tokio::select! {
        result = &mut server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "gRPC front stopped");
            }
            return;
        }
        Ok(grace) = grace_rx => grace,
    };
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("grace period over: closed busy gRPC connections");
    }
}

struct Check {
    verifier: Verifier,
    config: Arc<AuthzConfig>,
}

/// The original request's headers in a `CheckRequest`: the `headers` map,
/// or with Envoy's `encode_raw_headers` the `header_map` list (values
/// possibly in `raw_value`).
struct Headers<'a>(&'a envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest);

impl Headers<'_> {
    fn all<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        let map = self.0.headers.get(name).map(String::as_str);
        let list = self
            .0
            .header_map
            .iter()
            .flat_map(|m| m.headers.iter())
            .filter(move |_| self.0.headers.is_empty())
            .filter(move |h| h.key.eq_ignore_ascii_case(name))
            .filter_map(|h| {
                if h.raw_value.is_empty() {
                    Some(h.value.as_str())
                } else {
                    std::str::from_utf8(&h.raw_value).ok()
                }
            });
        map.into_iter().chain(list)
    }
}

impl request::Headers for Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if let Some(value) = self.0.headers.get(name) {
            return Some(value);
        }
        if !self.0.headers.is_empty() {
            return None;
        }
        let found = self
            .0
            .header_map
            .iter()
            .flat_map(|m| m.headers.iter())
            .find(|h| h.key.eq_ignore_ascii_case(name))?;
        if found.raw_value.is_empty() {
            Some(found.value.as_str())
        } else {
            std::str::from_utf8(&found.raw_value).ok()
        }
    }
}

/// A field Envoy leaves empty when it has nothing to say.
fn text(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The client's IP address as Envoy saw it (`attributes.source`).
fn client_ip(source: Option<&attribute_context::Peer>) -> Option<std::net::IpAddr> {
    match source?.address.as_ref()?.address.as_ref()? {
        address::Address::SocketAddress(socket) => socket.address.parse().ok(),
        _ => None,
    }
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let arrived = std::time::Instant::now();
        let request = request.into_inner();
        let source = request.attributes.as_ref().and_then(|a| a.source.as_ref());
        let Some(http) = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return Err(tonic::Status::invalid_argument(
                "a check needs attributes.request.http",
            ));
        };
        let config = &*self.config;
        let headers = Headers(http);
        let token_header = headers.all(&config.token_header).next();
        let (path, query) = match http.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (http.path.as_str(), None),
        };
        let query = query.or((!http.query.is_empty()).then_some(http.query.as_str()));
        let (token, token_scheme) =
            match authz::find_token(token_header, headers.all("cookie"), query, config) {
                Some((token, scheme)) => (Some(token.as_bytes()), scheme),
                None => (None, TokenScheme::Bearer),
            };
        let request = request::Request {
            token,
            selector: b"",
            context: request::Context {
                method: text(&http.method),
                scheme: text(&http.scheme),
                authority: text(&http.host),
                path: Some(path),
                headers: Some(&headers),
                client: client_ip(source),
                // URL-encoded PEM, when Envoy terminated mTLS.
                client_cert: source
                    .and_then(|p| text(&p.certificate))
                    .map(ClientCert::UrlEncodedPem),
                token_scheme,
                dpop_proof: authz::find_proof(headers.all("dpop")),
                ..request::Context::new(Front::Grpc, arrived, crate::clock::unix_now())
            },
        };
        let answer = authz::decide(&self.verifier, &request, config).await;
        Ok(tonic::Response::new(response(answer, config)?))
    }
}

/// The `CheckResponse` for a decision, or the RPC error for `Undecided`.
fn response(answer: Answer, config: &AuthzConfig) -> Result<CheckResponse, tonic::Status> {
    match answer {
        Answer::Allow { headers } => {
            let mut ok = OkHttpResponse::default();
            for (name, value) in headers {
                match value {
                    Some(value) => ok.headers.push(header_option(&name, value)),
                    None => ok.headers_to_remove.push(name.to_string()),
                }
            }
            if config.strip_token {
                ok.headers_to_remove.push(config.token_header.clone());
            }
            Ok(CheckResponse {
                status: Some(rpc::Status {
                    code: tonic::Code::Ok as i32,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(ok)),
                ..Default::default()
            })
        }
        Answer::Deny {
            status,
            challenge,
            reason,
        } => {
            let (code, http, body) = match status {
                Deny::Unauthorized => (tonic::Code::Unauthenticated, 401, "unauthorized\n"),
                Deny::Forbidden => (tonic::Code::PermissionDenied, 403, "forbidden\n"),
            };
            let mut headers = vec![header_option("www-authenticate", challenge)];
            if config.debug_reason {
                headers.push(header_option("x-jwt-reason", reason.as_str().to_owned()));
            }
            Ok(CheckResponse {
                status: Some(rpc::Status {
                    code: code as i32,
                    // Envoy only logs it; the client sees the body.
                    message: body.trim_end().to_owned(),
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: http }),
                    headers,
                    body: body.to_owned(),
                })),
                ..Default::default()
            })
        }
        Answer::Undecided { reason } => {
            tracing::debug!(reason = reason.as_str(), "could not decide a gRPC check");
            let message = if config.debug_reason {
                format!("could not decide: {reason}")
            } else {
                "could not decide".to_owned()
            };
            Err(tonic::Status::unavailable(message))
        }
    }
}

/// A header that replaces any of the same name the client sent.
fn header_option(name: &str, value: String) -> HeaderValueOption {
    #[allow(deprecated)] // `append` is deprecated; `append_action` rules.
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// The Check service behind the front-wide request budget: each stream's
/// body counts its bytes against `budget` (held until the stream's body is
/// dropped, once its message is decoded) and must end within `timeout`.
#[derive(Clone)]
struct Budgeted {
    inner: AuthorizationServer<Check>,
    /// One permit per request byte held, `grpc_max_buffered_bytes` in all.
    budget: Arc<Semaphore>,
    /// `grpc_body_timeout`.
    timeout: Duration,
}

impl tonic::server::NamedService for Budgeted {
    const NAME: &'static str = <AuthorizationServer<Check> as tonic::server::NamedService>::NAME;
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Budgeted {
    type Response = <AuthorizationServer<Check> as tower_service::Service<
        http::Request<tonic::body::Body>,
    >>::Response;
    type Error = Infallible;
    type Future = <AuthorizationServer<Check> as tower_service::Service<
        http::Request<tonic::body::Body>,
    >>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (budget, timeout) = (self.budget.clone(), self.timeout);
        let request = request.map(|body| {
            tonic::body::Body::new(BudgetedBody {
                inner: body,
                budget,
                held: None,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                ended: false,
            })
        });
        self.inner.call(request)
    }
}

/// A request body that holds budget permits for its bytes and fails when it
/// does not end in time. Dropping it returns the permits.
struct BudgetedBody {
    inner: tonic::body::Body,
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The body ended: the deadline no longer applies.
    ended: bool,
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    match this.budget.clone().try_acquire_many_owned(n) {
                        Ok(permit) => match &mut this.held {
                            Some(held) => held.merge(permit),
                            None => this.held = Some(permit),
                        },
                        Err(_) => {
                            tracing::warn!(
                                "gRPC front: request bytes over grpc_max_buffered_bytes; refusing a check"
                            );
                            return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(
                                "jwtd is holding too many request bytes (grpc_max_buffered_bytes)",
                            ))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => {
                if !this.ended && this.deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!("gRPC front: request message not complete in time");
                    return Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(
                        "the request message did not arrive within grpc_body_timeout",
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
