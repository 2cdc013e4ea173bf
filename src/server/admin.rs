//! The admin listener: `/metrics`, `/livez`, `/readyz` on a TCP address
//! (Prometheus and the kubelet cannot reach a Unix socket). Contract in
//! `docs/metrics.md`.
//!
//! It runs on a thread and a single-threaded runtime of its own, so it
//! answers while every data-plane worker is busy verifying; the same thread
//! ticks the anomaly [`Detector`] every second and runs the exporter's
//! upkeep (without it, histogram samples pile up until a render).
//!
//! Liveness is not "this thread answers": the data-plane runtime bumps a
//! heartbeat every second ([`Admin::heartbeat`]), and `/livez` fails when it
//! has not moved for [`STALL`], so a wedged runtime gets the pod restarted.
//!
//! Readiness is: keys loaded (and fresh, with `max_stale`), not draining,
//! and, with `ready_requires_revocation` and Redis configured, the
//! revocation store answering: this thread probes it every second
//! ([`Revocation::probe`](crate::revocation::Revocation::probe)), and
//! `/readyz` answers 503 `revocation_unavailable` while the probe or the
//! last lookup failed (the breaker open, the connection down).
//!
//! # Limits
//!
//! The admin port is reachable from the pod network, so it must never
//! starve the data plane: at most `admin_max_connections` (64) connections
//! at once, further ones are accepted and closed at once (so they neither
//! wait in the backlog nor hold a descriptor); a request head is at most
//! [`MAX_HEAD_BYTES`] (431 beyond) and must arrive within [`HEAD_TIMEOUT`],
//! which also closes idle keep-alive connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;

use super::listen::{self, Listener, WhenFull};
use crate::metrics::Detector;
use crate::verifier::Verifier;

/// `/livez` fails once the data plane's heartbeat is this old.
pub const STALL: Duration = Duration::from_secs(10);
/// Largest request head on the admin listener (hyper's minimum buffer):
/// probes and scrapes send a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8192;
/// A request head (and an idle keep-alive connection) gets this long.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminSettings {
    /// Connections open at once (`admin_max_connections`).
    pub max_connections: usize,
    /// `/readyz` requires the revocation store (`ready_requires_revocation`).
    pub ready_requires_revocation: bool,
}

impl Default for AdminSettings {
    fn default() -> AdminSettings {
        AdminSettings {
            max_connections: 64,
            ready_requires_revocation: false,
        }
    }
}

/// State shared with the data plane.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Shared>,
}

struct Shared {
    verifier: Verifier,
    /// `None`: metrics off (no recorder installed); `/metrics` answers 404.
    handle: Option<PrometheusHandle>,
    draining: AtomicBool,
    /// Milliseconds since `epoch` at the last heartbeat.
    beat: AtomicU64,
    epoch: Instant,
    settings: AdminSettings,
    /// The last revocation probe answered (only probed when required).
    revocation_ok: AtomicBool,
}

impl Admin {
    /// The admin state for `verifier`, rendering with `handle`, with the
    /// default [`AdminSettings`].
    pub fn new(verifier: Verifier, handle: Option<PrometheusHandle>) -> Admin {
        Admin::with_settings(verifier, handle, AdminSettings::default())
    }

    /// The admin state for `verifier`, rendering with `handle`.
    pub fn with_settings(
        verifier: Verifier,
        handle: Option<PrometheusHandle>,
        settings: AdminSettings,
    ) -> Admin {
        Admin {
            inner: Arc::new(Shared {
                verifier,
                handle,
                draining: AtomicBool::new(false),
                beat: AtomicU64::new(0),
                epoch: Instant::now(),
                settings,
                revocation_ok: AtomicBool::new(false),
            }),
        }
    }

    /// Whether readiness waits on the revocation store: required, and the
    /// store is remote (the in-memory store is always there).
    fn probes_revocation(&self) -> bool {
        self.inner.settings.ready_requires_revocation
            && self.inner.verifier.revocation().is_remote()
    }

    /// The daemon started draining: not ready any more.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Called every second from the data-plane runtime.
    pub fn heartbeat(&self) {
        let ms = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.beat.store(ms, Ordering::Relaxed);
    }

    fn stalled(&self) -> bool {
        let now = self.inner.epoch.elapsed();
        let beat = Duration::from_millis(self.inner.beat.load(Ordering::Relaxed));
        now.saturating_sub(beat) > STALL
    }

    /// Why the daemon is not ready, if it is not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.inner.draining.load(Ordering::Relaxed) {
            Some("draining")
        } else if !self.inner.verifier.ready() {
            let no_keys = self
                .inner
                .verifier
                .issuers()
                .iter()
                .any(|i| i.health().last_good().is_none());
            Some(if no_keys { "no_keys" } else { "stale_keys" })
        } else if self.probes_revocation()
            && !(self.inner.revocation_ok.load(Ordering::Relaxed)
                && self.inner.verifier.revocation().stats().backend_up())
        {
            Some("revocation_unavailable")
        } else {
            None
        }
    }

    /// Binds `addr` and serves on a thread of its own until `stop` is
    /// dropped or sent. Returns the bound address (`addr` may name port 0).
    ///
    /// # Errors
    ///
    /// The bind error.
    pub fn spawn(
        &self,
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let bound = std_listener.local_addr()?;
        let admin = self.clone();
        let thread = std::thread::Builder::new()
            .name("jwtd-admin".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "admin listener: no runtime");
                        return;
                    }
                };
                runtime.block_on(admin.serve(std_listener, stop));
            })?;
        Ok((bound, thread))
    }

    async fn serve(
        self,
        std_listener: std::net::TcpListener,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin listener");
                return;
            }
        };
        // The fronts' accept loop, refusing rather than queueing when full:
        // a scraper or prober must never wait behind a flood.
        let (mut accepted, _accepting) = listen::accept_all(
            vec![Listener::Tcp(listener)],
            self.inner.settings.max_connections,
            WhenFull::Refuse,
            None,
        );
        let mut detector = Detector::new(self.inner.verifier.metrics().anomaly_counts());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut last_tick = Instant::now();
        let probing = Arc::new(AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    let now = Instant::now();
                    let secs = now.duration_since(last_tick).as_secs_f64();
                    last_tick = now;
                    detector.tick(&self.inner.verifier.metrics().anomaly_counts(), secs);
                    ticks += 1;
                    if ticks.is_multiple_of(5) && let Some(h) = &self.inner.handle {
                        h.run_upkeep();
                    }
                    // One probe at a time; a slow store never stacks them.
                    if self.probes_revocation() && !probing.swap(true, Ordering::Relaxed) {
                        let (admin, probing) = (self.clone(), probing.clone());
                        tokio::spawn(async move {
                            let ok = admin.inner.verifier.revocation().probe().await;
                            admin.inner.revocation_ok.store(ok, Ordering::Relaxed);
                            probing.store(false, Ordering::Relaxed);
                        });
                    }
                }
                stream = accepted.recv() => {
                    let Some(stream) = stream else { break };
                    let admin = self.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let admin = admin.clone();
                            async move { Ok::<_, Infallible>(admin.answer(&req)) }
                        });
                        // The stream holds its connection slot until dropped.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_TIMEOUT)
                            .max_buf_size(MAX_HEAD_BYTES)
                            .max_header_size(MAX_HEAD_BYTES)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match req.uri().path() {
            "/metrics" => match &self.inner.handle {
                Some(handle) => {
                    let metrics = self.inner.verifier.metrics();
                    // jwtd_ready follows /readyz, whatever the reason.
                    metrics.collect(&self.inner.verifier.snapshot(self.not_ready().is_some()));
                    let mut body = handle.render();
                    body.push_str(&metrics.render_latency());
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                None => text(StatusCode::NOT_FOUND, "metrics are off\n".into()),
            },
            "/livez" => {
                if self.stalled() {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "stalled: the data plane stopped its heartbeat\n".into(),
                    )
                } else {
                    text(StatusCode::OK, "ok\n".into())
                }
            }
            "/readyz" => match self.not_ready() {
                None => text(StatusCode::OK, "ready\n".into()),
                Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::VerifierConfig;
    use crate::verify::Policy;

    fn verifier() -> Verifier {
        Verifier::new(VerifierConfig::single(Policy::default(), 10, 60))
    }

    #[test]
    fn readiness_needs_keys_and_ends_with_draining() {
        let v = verifier();
        let admin = Admin::new(v.clone(), None);
        assert_eq!(admin.not_ready(), Some("no_keys"));
        let keys = crate::verify::KeySet::from_jwks(crate::config::DEV_JWKS.as_bytes()).unwrap();
        v.set_keys(0, keys);
        assert_eq!(admin.not_ready(), None);
        admin.set_draining();
        assert_eq!(admin.not_ready(), Some("draining"));
    }

    #[test]
    fn liveness_fails_when_the_heartbeat_stops() {
        let admin = Admin::new(verifier(), None);
        admin.heartbeat();
        assert!(!admin.stalled());
        // A heartbeat STALL ago or more: stalled.
        admin.inner.beat.store(0, Ordering::Relaxed);
        let stalled = Admin {
            inner: Arc::new(Shared {
                verifier: admin.inner.verifier.clone(),
                handle: None,
                draining: AtomicBool::new(false),
                beat: AtomicU64::new(0),
                epoch: Instant::now() - STALL - Duration::from_secs(1),
                settings: AdminSettings::default(),
                revocation_ok: AtomicBool::new(false),
            }),
        };
        assert!(stalled.stalled());
    }
}
