//! The gRPC front: `envoy.service.auth.v3.Authorization/Check`, what Envoy's
//! `ext_authz` filter calls in gRPC mode (and Istio's `envoyExtAuthzGrpc`
//! provider). It maps [`authz::decide`]'s [`Decision`] to a
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
//! Connections are bounded by `max_connections` (a count of the front's
//! own), concurrent streams per connection by `max_in_flight`, and a request
//! message by [`MAX_CHECK_BYTES`] (a check carries every client header;
//! Envoy's own header limit is 60 KiB by default, and jwtd never asks for
//! the body). Idle HTTP/2 connections are kept: Envoy holds one per worker
//! and reuses it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tokio_stream::wrappers::ReceiverStream;

use super::authz::{self, AuthzConfig, Decision, Deny};
use super::listen::{self, Limits, Listener};
use crate::metrics::Front;
use crate::verifier::Verifier;

/// Largest `CheckRequest` accepted.
pub const MAX_CHECK_BYTES: usize = 1024 * 1024;

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
    let (accepted, accepting) =
        listen::accept_all(listeners, limits.max_connections, &verifier, Front::Grpc);
    let incoming =
        tokio_stream::StreamExt::map(ReceiverStream::new(accepted), Ok::<_, std::io::Error>);
    let service = AuthorizationServer::new(Check {
        verifier,
        config: Arc::new(config),
        slots: limits.verify_slots.clone(),
    })
    .max_decoding_message_size(MAX_CHECK_BYTES);
    let (grace_tx, grace_rx) = tokio::sync::oneshot::channel();
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams)
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
    /// See [`Limits::verify_slots`].
    slots: Arc<tokio::sync::Semaphore>,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let request = request.into_inner();
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
        let header = |name: &str| -> Vec<&str> {
            if !http.headers.is_empty() {
                return http
                    .headers
                    .get(name)
                    .map(String::as_str)
                    .into_iter()
                    .collect();
            }
            // `encode_raw_headers`: a list, values possibly in raw_value.
            http.header_map
                .iter()
                .flat_map(|m| m.headers.iter())
                .filter(|h| h.key.eq_ignore_ascii_case(name))
                .filter_map(|h| {
                    if h.raw_value.is_empty() {
                        Some(h.value.as_str())
                    } else {
                        std::str::from_utf8(&h.raw_value).ok()
                    }
                })
                .collect()
        };
        let token_header = header(&config.token_header);
        let (path, query) = match http.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (http.path.as_str(), None),
        };
        let query = query.or((!http.query.is_empty()).then_some(http.query.as_str()));
        let token = authz::find_token(
            token_header.first().copied(),
            header("cookie"),
            query,
            config,
        );
        let decision = authz::decide(
            &self.verifier,
            &self.slots,
            Front::Grpc,
            token,
            path,
            config,
        )
        .await;
        Ok(tonic::Response::new(response(decision, config)?))
    }
}

/// The `CheckResponse` for a decision, or the RPC error for `Undecided`.
fn response(decision: Decision, config: &AuthzConfig) -> Result<CheckResponse, tonic::Status> {
    match decision {
        Decision::Allow { headers } => {
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
        Decision::Deny {
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
                headers.push(header_option("x-jwt-reason", reason.to_owned()));
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
        Decision::Undecided { reason } => {
            tracing::debug!(reason, "could not decide a gRPC check");
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
