//! Metrics and security events: what jwtd tells its operators. The contract
//! (every name, label and meaning) is `docs/metrics.md`; this module owns
//! the handles and the anomaly logic, and deliberately nothing about HTTP
//! (the admin listener is `server::admin`).
//!
//! # Shape
//!
//! - [`Metrics`] holds every handle, resolved once when it is built (each
//!   label combination pre-registered, as linkerd does), so a request costs
//!   a few relaxed atomic adds and one histogram sample. The handles bind to
//!   the recorder installed when they are built: `jwtd serve` installs the
//!   Prometheus recorder ([`install`]) before building the verifier; without
//!   it (tests, `--admin-addr` unset) every handle is a no-op.
//! - The verifier's pipeline reports each decided request once, with
//!   [`Metrics::record`] (plain cache hits in bulk, [`Metrics::record_hits`];
//!   a route's refusal, [`Metrics::record_forbidden`]). From the decision
//!   come the request counter, the latency histogram, the anomaly kinds and
//!   the security log events. The fronts record nothing themselves.
//! - The verifier reports what only it knows: cache hits and misses, the
//!   time of a full verification by algorithm, and the token's `iat` offset
//!   and lifetime ([`Metrics::verified`]).
//! - State that already lives elsewhere (cache size, key set health,
//!   revocation counters) is copied into gauges and counters when
//!   `/metrics` is rendered ([`Metrics::collect`], from a [`Snapshot`] the
//!   verifier takes) rather than mirrored on every change. This module
//!   knows nothing of the verifier: the arrows point from it to here.
//! - [`Detector`] turns anomaly counts into surge gauges (EWMA baseline per
//!   kind), ticked once a second by the admin listener's thread.
//!
//! # Security events
//!
//! Every anomaly is logged at `warn` under the `jwtd::security` target with
//! the token's fingerprint (12 hex digits of its SHA-256), its `kid` and
//! `iss` when readable (at most 64 characters each), never the token. Events are
//! rate-limited per kind ([`LOG_PER_SECOND`]), the rest counted into the
//! next event's `suppressed` field.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use crate::request::{Cause, Decision};
use crate::verify::{Algorithm, Anomalies, Reject, Verified};

pub use crate::request::Front;

/// Security log events per anomaly kind per second; the rest are counted.
pub const LOG_PER_SECOND: u32 = 10;

/// An expired token this long past `exp` counts as `expired_replay`.
pub const REPLAY_AFTER_SECS: i64 = 3600;

/// Latency buckets, seconds: microseconds to a second.
const LATENCY_BUCKETS: &[f64] = &[
    2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0,
];
/// `now - iat`, seconds: negative is a clock ahead of ours.
const IAT_OFFSET_BUCKETS: &[f64] = &[
    -300.0, -60.0, -30.0, -10.0, -1.0, 0.0, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
];
/// `exp - iat`, seconds: a minute to a month.
const LIFETIME_BUCKETS: &[f64] = &[
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 604800.0, 2592000.0,
];
/// Tokens per revocation batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the Prometheus recorder (histograms with jwtd's buckets) and
/// returns the handle that renders the exposition. Call it before building
/// anything that registers metrics.
///
/// # Errors
///
/// A recorder was already installed.
pub fn install() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    RECORDING.store(true, Ordering::Relaxed);
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("roundtrip_seconds".into()), LATENCY_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("jwtd_token_iat_offset_seconds".into()),
                IAT_OFFSET_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("jwtd_token_lifetime_seconds".into()),
                LIFETIME_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("jwtd_revocation_batch_size".into()),
                BATCH_BUCKETS,
            )
        })
        .map_err(|e| e.to_string())?;
    builder.install_recorder().map_err(|e| e.to_string())
}

/// Whether [`install`] ran: jwtd's own [`Latency`] histograms record only
/// then (the `metrics` handles are no-ops by themselves without a
/// recorder).
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `jwtd_request_duration_seconds`, kept by jwtd rather than by the
/// exporter: on the hot path the exporter's histogram costs an atomic
/// queue push per sample (about 10% of a native cache hit, measured with
/// `benches/metrics.sh`), while this is three relaxed adds per *batch*
/// (`record_many`: the native front records a read's hits at once).
/// Rendered by [`Metrics::render_latency`] in the Prometheus text format.
pub struct Latency {
    on: bool,
    /// Per bucket of [`LATENCY_BUCKETS`], plus `+Inf` (not cumulative).
    buckets: Vec<AtomicU64>,
    /// Sum of samples, nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            on: RECORDING.load(Ordering::Relaxed),
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, secs: f64) {
        self.record_many(secs, 1);
    }

    fn record_many(&self, secs: f64, n: u64) {
        if !self.on || n == 0 {
            return;
        }
        let i = LATENCY_BUCKETS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        let ns = (secs * 1e9) as u64;
        self.sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines for `labels`.
    fn render(&self, out: &mut String, labels: &str) {
        use std::fmt::Write;
        let name = "jwtd_request_duration_seconds";
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_owned()))
            .enumerate()
        {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        // The count is the +Inf bucket: read once, so they agree.
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Kinds of anomaly (`jwtd_anomalies_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `alg: none`.
    AlgNone,
    /// `alg` does not fit the key its `kid` names.
    AlgConfusion,
    /// No trusted key has the `kid`.
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// Header `jwk`.
    EmbeddedJwk,
    /// Header `jku`.
    Jku,
    /// Header `x5u`.
    X5u,
    /// Header `x5c`.
    X5c,
    /// A `crit` header.
    UnsupportedCrit,
    /// Not a JWS: structure, base64, header or payload.
    Malformed,
    /// Longer than `max_token_bytes`.
    Oversized,
    /// Expired more than [`REPLAY_AFTER_SECS`] ago.
    ExpiredReplay,
    /// `iat` in the future.
    IatFuture,
    /// A revoked token used.
    Revoked,
    /// An `iss` no configured issuer has.
    UnknownIssuer,
}

impl Kind {
    /// Every kind, in label order.
    pub const ALL: [Kind; 15] = [
        Kind::AlgNone,
        Kind::AlgConfusion,
        Kind::UnknownKid,
        Kind::BadSignature,
        Kind::EmbeddedJwk,
        Kind::Jku,
        Kind::X5u,
        Kind::X5c,
        Kind::UnsupportedCrit,
        Kind::Malformed,
        Kind::Oversized,
        Kind::ExpiredReplay,
        Kind::IatFuture,
        Kind::Revoked,
        Kind::UnknownIssuer,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AlgNone => "alg_none",
            Kind::AlgConfusion => "alg_confusion",
            Kind::UnknownKid => "unknown_kid",
            Kind::BadSignature => "bad_signature",
            Kind::EmbeddedJwk => "embedded_jwk",
            Kind::Jku => "jku",
            Kind::X5u => "x5u",
            Kind::X5c => "x5c",
            Kind::UnsupportedCrit => "unsupported_crit",
            Kind::Malformed => "malformed",
            Kind::Oversized => "oversized",
            Kind::ExpiredReplay => "expired_replay",
            Kind::IatFuture => "iat_future",
            Kind::Revoked => "revoked",
            Kind::UnknownIssuer => "unknown_issuer",
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The kind a reject reason is, if any (`expired` needs the token: see
    /// [`expired_long_ago`]).
    fn of_reject(reason: Reject) -> Option<Kind> {
        Some(match reason {
            Reject::AlgNone => Kind::AlgNone,
            Reject::KeyAlgorithmMismatch => Kind::AlgConfusion,
            Reject::UnknownKey => Kind::UnknownKid,
            Reject::BadSignature => Kind::BadSignature,
            Reject::Crit => Kind::UnsupportedCrit,
            Reject::Malformed
            | Reject::Base64
            | Reject::Header
            | Reject::Payload
            | Reject::Unencoded => Kind::Malformed,
            Reject::TooLarge => Kind::Oversized,
            Reject::IssuedInFuture => Kind::IatFuture,
            Reject::Revoked => Kind::Revoked,
            Reject::UnknownIssuer => Kind::UnknownIssuer,
            _ => return None,
        })
    }
}

/// Reasons a proxy front adds to the core's.
const MISSING_TOKEN: &str = "missing_token";

/// One front's request handles.
struct FrontHandles {
    valid: Counter,
    /// By `Reject::ALL` index.
    invalid: Vec<Counter>,
    missing_token: Counter,
    forbidden: Counter,
    no_keys: Counter,
    overloaded: Counter,
    revocation_unavailable: Counter,
    unknown_selector: Counter,
    hit: Latency,
    miss: Latency,
}

impl FrontHandles {
    fn new(front: Front) -> FrontHandles {
        let f = front.as_str();
        let req = |outcome: &'static str, reason: &'static str| metrics::counter!("jwtd_requests_total", "front" => f, "outcome" => outcome, "reason" => reason);
        FrontHandles {
            valid: req("valid", "none"),
            invalid: Reject::ALL
                .iter()
                .map(|r| req("invalid", r.as_str()))
                .collect(),
            missing_token: req("invalid", MISSING_TOKEN),
            forbidden: req("forbidden", "insufficient_scope"),
            no_keys: req("undecided", "no_keys"),
            overloaded: req("undecided", "overloaded"),
            revocation_unavailable: req("undecided", "revocation_unavailable"),
            unknown_selector: req("error", "unknown_selector"),
            hit: Latency::new(),
            miss: Latency::new(),
        }
    }
}

/// One issuer's state handles.
struct IssuerHandles {
    keys: Gauge,
    updated: Counter,
    unchanged: Counter,
    error: Counter,
    last_success: Gauge,
    age: Gauge,
    unknown_kid: Counter,
    suppressed: Counter,
}

/// Every handle; see the module doc.
pub struct Metrics {
    fronts: Vec<FrontHandles>,
    /// By `Algorithm::ALL` index.
    verify: Vec<Histogram>,
    cache_hits: Counter,
    cache_misses: Counter,
    iat_offset: Histogram,
    lifetime: Histogram,
    anomalies: Vec<Counter>,
    /// The same counts, readable (the detector's input).
    anomaly_counts: Vec<AtomicU64>,
    revoked: Counter,
    log_limit: Mutex<Vec<LogWindow>>,
    // Collected at render time.
    issuers: Vec<IssuerHandles>,
    ready: Gauge,
    cache_entries: Gauge,
    cache_evictions: Counter,
    revocation_up: Gauge,
    fail_open: Counter,
    fail_closed: Counter,
    /// The verification budget (`budget="all"`: one, shared by every
    /// front).
    verifying: Gauge,
    verifying_limit: Gauge,
    /// Open connections by front (counted by [`OpenConnection`] guards, not
    /// from the connection semaphores: the accept loops hold a slot while
    /// they wait for the next client).
    open: Vec<(std::sync::Arc<AtomicU64>, Gauge)>,
}

/// Keeps one connection counted in `jwtd_connections{front}` while alive.
#[derive(Debug)]
pub struct OpenConnection(std::sync::Arc<AtomicU64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default, Clone, Copy)]
struct LogWindow {
    second: u64,
    logged: u32,
    suppressed: u64,
}

impl Metrics {
    /// Registers every handle. `issuers` are the configured issuer names
    /// (`default` when an issuer has none), in configuration order.
    pub fn new(issuers: &[String]) -> Metrics {
        describe();
        metrics::gauge!("jwtd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let issuers = issuers
            .iter()
            .map(|name| {
                let refresh = |result: &'static str| {
                    metrics::counter!("jwtd_jwks_refreshes_total", "issuer" => name.clone(), "result" => result)
                };
                IssuerHandles {
                    keys: metrics::gauge!("jwtd_jwks_keys", "issuer" => name.clone()),
                    updated: refresh("updated"),
                    unchanged: refresh("unchanged"),
                    error: refresh("error"),
                    last_success: metrics::gauge!("jwtd_jwks_last_success_timestamp_seconds", "issuer" => name.clone()),
                    age: metrics::gauge!("jwtd_jwks_age_seconds", "issuer" => name.clone()),
                    unknown_kid: metrics::counter!("jwtd_jwks_unknown_kid_refreshes_total", "issuer" => name.clone()),
                    suppressed: metrics::counter!("jwtd_jwks_unknown_kid_suppressed_total", "issuer" => name.clone()),
                }
            })
            .collect();
        let decision =
            |d: &'static str| metrics::counter!("jwtd_revocation_decisions_total", "decision" => d);
        let anomalies = Kind::ALL
            .iter()
            .map(|k| metrics::counter!("jwtd_anomalies_total", "kind" => k.as_str()))
            .collect();
        for k in Kind::ALL {
            metrics::gauge!("jwtd_anomaly_surge", "kind" => k.as_str()).set(0.0);
        }
        Metrics {
            fronts: Front::ALL.iter().map(|f| FrontHandles::new(*f)).collect(),
            verify: Algorithm::ALL
                .iter()
                .map(|a| metrics::histogram!("jwtd_signature_verify_duration_seconds", "alg" => a.as_str()))
                .collect(),
            cache_hits: metrics::counter!("jwtd_cache_hits_total"),
            cache_misses: metrics::counter!("jwtd_cache_misses_total"),
            iat_offset: metrics::histogram!("jwtd_token_iat_offset_seconds"),
            lifetime: metrics::histogram!("jwtd_token_lifetime_seconds"),
            anomalies,
            anomaly_counts: Kind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            revoked: metrics::counter!("jwtd_revoked_total"),
            log_limit: Mutex::new(vec![LogWindow::default(); Kind::ALL.len()]),
            issuers,
            ready: metrics::gauge!("jwtd_ready"),
            cache_entries: metrics::gauge!("jwtd_cache_entries"),
            cache_evictions: metrics::counter!("jwtd_cache_evictions_total"),
            revocation_up: metrics::gauge!("jwtd_revocation_backend_up"),
            fail_open: decision("fail_open"),
            fail_closed: decision("fail_closed"),
            verifying: metrics::gauge!("jwtd_verifying", "budget" => "all"),
            verifying_limit: metrics::gauge!("jwtd_verifying_limit", "budget" => "all"),
            open: Front::ALL
                .iter()
                .map(|f| {
                    (
                        std::sync::Arc::new(AtomicU64::new(0)),
                        metrics::gauge!("jwtd_connections", "front" => f.as_str()),
                    )
                })
                .collect(),
        }
    }

    /// A connection of `front` opened; it counts until the guard drops.
    pub fn connection_opened(&self, front: Front) -> OpenConnection {
        let count = self.open[front as usize].0.clone();
        count.fetch_add(1, Ordering::Relaxed);
        OpenConnection(count)
    }

    /// `front`'s `max_connections` (`jwtd_connections_limit`).
    pub fn connection_limit(&self, front: Front, max: usize) {
        metrics::gauge!("jwtd_connections_limit", "front" => front.as_str()).set(max as f64);
    }

    fn front(&self, front: Front) -> &FrontHandles {
        &self.fronts[front as usize]
    }

    /// A cache lookup found nothing servable.
    pub fn cache_miss(&self) {
        self.cache_misses.increment(1);
    }

    /// A token verified: the time it took, and its times.
    pub fn verified(&self, result: &Verified, took: Duration, now: i64) {
        if let Some(h) = Algorithm::ALL
            .iter()
            .position(|a| *a == result.alg)
            .and_then(|i| self.verify.get(i))
        {
            h.record(took.as_secs_f64());
        }
        if let Some(iat) = result.claims.iat {
            self.iat_offset.record(now.saturating_sub(iat) as f64);
            if let Some(exp) = result.claims.exp {
                self.lifetime.record(exp.saturating_sub(iat) as f64);
            }
        }
    }

    /// A request answered with `outcome` (never `Pending`), which arrived
    /// at `started`.
    pub fn record(&self, front: Front, decision: &Decision, token: &[u8], started: Instant) {
        let f = self.front(front);
        let elapsed = started.elapsed().as_secs_f64();
        match decision {
            Decision::Valid { result, cached } => {
                f.valid.increment(1);
                if *cached {
                    self.cache_hits.increment(1);
                    f.hit.record(elapsed);
                } else {
                    f.miss.record(elapsed);
                }
                if result.anomalies != Anomalies::NONE {
                    self.header_anomalies(front, result.anomalies, None, token);
                }
            }
            Decision::Invalid(rejection) => {
                if let Some(c) = Reject::ALL
                    .iter()
                    .position(|r| *r == rejection.reason)
                    .and_then(|i| f.invalid.get(i))
                {
                    c.increment(1);
                }
                f.miss.record(elapsed);
                let reason = rejection.reason;
                if reason == Reject::Revoked {
                    self.revoked.increment(1);
                }
                let kind = match reason {
                    Reject::Expired => expired_long_ago(token).then_some(Kind::ExpiredReplay),
                    other => Kind::of_reject(other),
                };
                if let Some(kind) = kind {
                    self.anomaly(kind, front, reason.as_str(), token);
                }
                if rejection.anomalies != Anomalies::NONE {
                    self.header_anomalies(front, rejection.anomalies, Some(reason), token);
                }
            }
            // Answered without verifying: counted with the hits' latency.
            Decision::MissingToken => {
                f.missing_token.increment(1);
                f.hit.record(elapsed);
            }
            // Counted by `record_forbidden`, which knows whether it was a
            // cache hit; here only for completeness.
            Decision::Forbidden { .. } => {
                f.forbidden.increment(1);
                f.miss.record(elapsed);
            }
            Decision::Undecided(cause) => {
                match cause {
                    Cause::NoKeys => f.no_keys.increment(1),
                    Cause::Overloaded => f.overloaded.increment(1),
                    Cause::RevocationUnavailable => f.revocation_unavailable.increment(1),
                }
                f.miss.record(elapsed);
            }
            Decision::UnknownSelector => f.unknown_selector.increment(1),
        }
    }

    /// A valid token refused by a route policy (the valid result itself is
    /// not counted as `valid`).
    pub fn record_forbidden(&self, front: Front, cached: bool, started: Instant) {
        let f = self.front(front);
        f.forbidden.increment(1);
        if cached {
            self.cache_hits.increment(1);
            f.hit.record(started.elapsed().as_secs_f64());
        } else {
            f.miss.record(started.elapsed().as_secs_f64());
        }
    }

    /// `n` valid cache hits without anomalies, answered together (the
    /// native protocol counts a read's hits at once: one atomic add per
    /// metric instead of one per request, and one clock read).
    pub fn record_hits(&self, front: Front, n: u64, started: Instant) {
        if n == 0 {
            return;
        }
        let f = self.front(front);
        f.valid.increment(n);
        self.cache_hits.increment(n);
        f.hit.record_many(started.elapsed().as_secs_f64(), n);
    }

    fn header_anomalies(
        &self,
        front: Front,
        anomalies: Anomalies,
        reason: Option<Reject>,
        token: &[u8],
    ) {
        let reason = reason.map_or("valid", Reject::as_str);
        for (bit, kind) in [
            (Anomalies::EMBEDDED_JWK, Kind::EmbeddedJwk),
            (Anomalies::JKU, Kind::Jku),
            (Anomalies::X5U, Kind::X5u),
            (Anomalies::X5C, Kind::X5c),
        ] {
            if anomalies.contains(bit) {
                self.anomaly(kind, front, reason, token);
            }
        }
    }

    fn anomaly(&self, kind: Kind, front: Front, reason: &str, token: &[u8]) {
        let i = kind.index();
        self.anomalies[i].increment(1);
        self.anomaly_counts[i].fetch_add(1, Ordering::Relaxed);
        let Some(suppressed) = self.may_log(i) else {
            return;
        };
        let (kid, iss) = peek(token);
        tracing::warn!(
            target: "jwtd::security",
            kind = kind.as_str(),
            reason,
            front = front.as_str(),
            fingerprint = %fingerprint(token),
            kid = kid.as_deref().unwrap_or("-"),
            iss = iss.as_deref().unwrap_or("-"),
            suppressed,
            "suspicious token"
        );
    }

    /// Whether kind `i` may log now; with the count suppressed since its
    /// last event.
    fn may_log(&self, i: usize) -> Option<u64> {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut windows = self.log_limit.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get_mut(i)?;
        if w.second != second {
            w.second = second;
            w.logged = 0;
        }
        if w.logged >= LOG_PER_SECOND {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }

    /// The request latency histograms in the Prometheus text format (append
    /// to the exporter's rendering).
    pub fn render_latency(&self) -> String {
        let mut out = String::from(
            "# HELP jwtd_request_duration_seconds Time from a request's arrival to its decision, by front and cache (hit: answered without verifying)\n# TYPE jwtd_request_duration_seconds histogram\n",
        );
        for (front, f) in Front::ALL.iter().zip(&self.fronts) {
            for (cache, h) in [("hit", &f.hit), ("miss", &f.miss)] {
                h.render(
                    &mut out,
                    &format!("front=\"{}\",cache=\"{cache}\"", front.as_str()),
                );
            }
        }
        out
    }

    /// Anomalies counted so far, by `Kind::ALL` index (the detector's
    /// input).
    pub fn anomaly_counts(&self) -> Vec<u64> {
        self.anomaly_counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Copies the state kept elsewhere (a [`Snapshot`]) into its gauges and
    /// counters (call before rendering).
    pub fn collect(&self, snapshot: &Snapshot) {
        let now = crate::clock::unix_now();
        self.ready.set(if snapshot.ready { 1.0 } else { 0.0 });
        self.cache_entries.set(snapshot.cache_entries as f64);
        self.cache_evictions.absolute(snapshot.cache_evictions);
        for (h, issuer) in self.issuers.iter().zip(&snapshot.issuers) {
            h.keys.set(issuer.keys as f64);
            h.updated.absolute(issuer.updates);
            h.unchanged.absolute(issuer.unchanged);
            h.error.absolute(issuer.failures);
            match issuer.last_good {
                Some(t) => {
                    h.last_success.set(t as f64);
                    h.age.set(now.saturating_sub(t).max(0) as f64);
                }
                None => {
                    h.last_success.set(0.0);
                    h.age.set(f64::INFINITY);
                }
            }
            if let Some((requested, suppressed)) = issuer.unknown_kid {
                h.unknown_kid.absolute(requested);
                h.suppressed.absolute(suppressed);
            }
        }
        self.verifying.set(snapshot.verifying as f64);
        self.verifying_limit.set(snapshot.verifying_limit as f64);
        for (count, gauge) in &self.open {
            gauge.set(count.load(Ordering::Relaxed) as f64);
        }
        self.revocation_up
            .set(if snapshot.revocation_up { 1.0 } else { 0.0 });
        self.fail_open.absolute(snapshot.failed_open);
        self.fail_closed.absolute(snapshot.failed_closed);
        // A handful of reasons, looked up once per scrape: not worth a
        // resolved handle each.
        for (reason, n) in &snapshot.revocation_failures {
            metrics::counter!("jwtd_revocation_lookup_failures_total", "reason" => *reason)
                .absolute(*n);
        }
    }
}

/// The state [`Metrics::collect`] reports, read by its owner (the verifier:
/// `Verifier::snapshot`) when `/metrics` is rendered.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Ready to serve (and not draining).
    pub ready: bool,
    /// Results in the cache.
    pub cache_entries: usize,
    /// Results evicted from the cache so far.
    pub cache_evictions: u64,
    /// Each configured issuer's key source, in configuration order.
    pub issuers: Vec<IssuerSnapshot>,
    /// Misses in verification now.
    pub verifying: usize,
    /// `max_verifying`.
    pub verifying_limit: usize,
    /// The revocation store answered its last lookup.
    pub revocation_up: bool,
    /// Lookups that failed open so far.
    pub failed_open: u64,
    /// Lookups that failed closed so far.
    pub failed_closed: u64,
    /// Failed revocation lookups so far, by reason (`timeout`, `connect`,
    /// `breaker_open`, `redis`, `stopped`).
    pub revocation_failures: Vec<(&'static str, u64)>,
}

/// One issuer's key source, for [`Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct IssuerSnapshot {
    /// Keys in its current set.
    pub keys: usize,
    /// Sets published.
    pub updates: u64,
    /// Loads that found the set unchanged.
    pub unchanged: u64,
    /// Failed loads.
    pub failures: u64,
    /// Unix second of the last good load.
    pub last_good: Option<i64>,
    /// Unknown-kid refreshes requested and suppressed (remote sources).
    pub unknown_kid: Option<(u64, u64)>,
}

/// Every metric, its kind and its help text (`docs/metrics.md` in short).
const HELP: &[(&str, char, &str)] = &[
    (
        "jwtd_build_info",
        'g',
        "Always 1; the version label says which jwtd runs",
    ),
    (
        "jwtd_ready",
        'g',
        "1 when every issuer has a key set and the daemon is not draining",
    ),
    (
        "jwtd_requests_total",
        'c',
        "Verification requests answered, by front, outcome and reason",
    ),
    (
        "jwtd_request_duration_seconds",
        'h',
        "Time from a request's arrival to its decision, by front and cache (hit: answered without verifying)",
    ),
    (
        "jwtd_signature_verify_duration_seconds",
        'h',
        "Full verification of a token that verified (the signature dominates), by algorithm",
    ),
    (
        "jwtd_cache_hits_total",
        'c',
        "Results served from the cache",
    ),
    (
        "jwtd_cache_misses_total",
        'c',
        "Cache lookups that needed a verification",
    ),
    (
        "jwtd_cache_evictions_total",
        'c',
        "Cache entries pushed out by newer ones",
    ),
    ("jwtd_cache_entries", 'g', "Entries in the cache"),
    (
        "jwtd_jwks_keys",
        'g',
        "Usable keys in the issuer's current key set",
    ),
    (
        "jwtd_jwks_refreshes_total",
        'c',
        "Key set loads by result: updated, unchanged, error (last good set kept)",
    ),
    (
        "jwtd_jwks_last_success_timestamp_seconds",
        'g',
        "Unix time of the last good key set load (0: never)",
    ),
    (
        "jwtd_jwks_age_seconds",
        'g',
        "Seconds since the last good key set load (+Inf: never)",
    ),
    (
        "jwtd_jwks_unknown_kid_refreshes_total",
        'c',
        "Key set refreshes triggered by an unknown kid",
    ),
    (
        "jwtd_jwks_unknown_kid_suppressed_total",
        'c',
        "Unknown-kid refreshes not made because of the cooldown",
    ),
    (
        "jwtd_revocation_backend_up",
        'g',
        "1 while the revocation store answers",
    ),
    (
        "jwtd_revocation_batch_size",
        'h',
        "Tokens per revocation round trip",
    ),
    (
        "jwtd_revocation_roundtrip_seconds",
        'h',
        "Time of one revocation batch round trip",
    ),
    (
        "jwtd_revocation_lookup_failures_total",
        'c',
        "Revocation lookups that failed, by reason",
    ),
    (
        "jwtd_revocation_decisions_total",
        'c',
        "Verdicts made without the revocation store: fail_open, fail_closed",
    ),
    ("jwtd_revoked_total", 'c', "Tokens refused as revoked"),
    (
        "jwtd_token_iat_offset_seconds",
        'h',
        "now - iat at a token's first verification (negative: issuer clock ahead)",
    ),
    (
        "jwtd_token_lifetime_seconds",
        'h',
        "exp - iat of verified tokens",
    ),
    ("jwtd_connections", 'g', "Open connections, by front"),
    ("jwtd_connections_limit", 'g', "max_connections, by front"),
    (
        "jwtd_verifying",
        'g',
        "Cache misses in verification now, by budget (native, proxy)",
    ),
    ("jwtd_verifying_limit", 'g', "max_verifying, by budget"),
    (
        "jwtd_anomalies_total",
        'c',
        "Suspicious requests by kind (docs/metrics.md)",
    ),
    (
        "jwtd_anomaly_surge",
        'g',
        "1 while the kind's rate is well above its baseline",
    ),
];

/// Registers every metric's help text with the recorder.
fn describe() {
    // The request latency histogram is rendered by jwtd itself (Latency).
    for (name, kind, help) in HELP
        .iter()
        .filter(|(n, _, _)| *n != "jwtd_request_duration_seconds")
    {
        match kind {
            'c' => metrics::describe_counter!(*name, *help),
            'g' => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Whether `token`'s `exp` is more than [`REPLAY_AFTER_SECS`] ago (read
/// from the payload; only called for tokens already refused as expired).
fn expired_long_ago(token: &[u8]) -> bool {
    let exp = segment_json(token, 1).and_then(|v| v.get("exp").and_then(serde_json::Value::as_f64));
    exp.is_some_and(|exp| (crate::clock::unix_now() as f64) - exp > REPLAY_AFTER_SECS as f64)
}

/// The `n`th dot-separated segment of `token`, base64url-decoded and parsed
/// as JSON (a best effort for logs: `None` for anything odd).
fn segment_json(token: &[u8], n: usize) -> Option<serde_json::Value> {
    use base64::Engine;
    let segment = token.split(|b| *b == b'.').nth(n)?;
    if segment.len() > 16 * 1024 {
        return None;
    }
    let bytes = crate::verify::B64URL.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` and `iss` of a token, for logs: truncated to 64 characters,
/// with control, line-separator and bidi-override characters escaped
/// ([`crate::redact::text`]), in text and JSON logs alike.
fn peek(token: &[u8]) -> (Option<String>, Option<String>) {
    let text = |v: Option<serde_json::Value>, name: &str| {
        let v = v?;
        let s = v.get(name)?.as_str()?;
        Some(crate::redact::text(s, 64))
    };
    (
        text(segment_json(token, 0), "kid"),
        text(segment_json(token, 1), "iss"),
    )
}

/// The first 12 hex digits of the token's SHA-256.
pub fn fingerprint(token: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Surge detection over the anomaly counts: an EWMA of each kind's
/// per-second rate as its baseline, and the rate over the last
/// [`Detector::WINDOW`] seconds against it. Ticked once a second.
pub struct Detector {
    last: Vec<u64>,
    /// Per kind, the last `WINDOW` per-second rates (a ring).
    recent: Vec<[f64; Detector::WINDOW]>,
    at: usize,
    /// Ticks so far (the first `WINDOW` only learn).
    ticks: usize,
    baseline: Vec<f64>,
    surging: Vec<bool>,
    gauges: Vec<Gauge>,
}

impl Detector {
    /// Seconds the current rate is measured over.
    pub const WINDOW: usize = 10;
    /// Baseline time constant, seconds.
    pub const TAU: f64 = 300.0;
    /// A surge: the recent rate above this many times the baseline...
    pub const FACTOR: f64 = 10.0;
    /// ...and above this many events per second.
    pub const FLOOR: f64 = 1.0;

    /// A detector starting from `counts` (see [`Metrics::anomaly_counts`]).
    pub fn new(counts: Vec<u64>) -> Detector {
        let n = counts.len();
        Detector {
            last: counts,
            recent: vec![[0.0; Detector::WINDOW]; n],
            at: 0,
            ticks: 0,
            baseline: vec![0.0; n],
            surging: vec![false; n],
            gauges: Kind::ALL
                .iter()
                .map(|k| metrics::gauge!("jwtd_anomaly_surge", "kind" => k.as_str()))
                .collect(),
        }
    }

    /// `secs` seconds passed (about one: the admin thread's tick, which may
    /// run late); `counts` are the totals now. Returns the kinds whose surge
    /// state changed (and logs each change).
    ///
    /// The first [`Detector::WINDOW`] ticks only learn: then each baseline
    /// is seeded with the *median* per-second rate of that window, so a
    /// steady background at start-up is normal (not a surge that takes half
    /// an hour to fade), while a burst in those seconds (a few busy seconds
    /// among quiet ones) is not mistaken for it and surges at once.
    pub fn tick(&mut self, counts: &[u64], secs: f64) -> Vec<(Kind, bool)> {
        let secs = secs.max(0.001);
        let mut changes = Vec::new();
        self.ticks += 1;
        self.at = (self.at + 1) % Detector::WINDOW;
        let warming = self.ticks < Detector::WINDOW;
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let (Some(&now), Some(last)) = (counts.get(i), self.last.get_mut(i)) else {
                continue;
            };
            let per_second = now.saturating_sub(*last) as f64 / secs;
            *last = now;
            self.recent[i][self.at] = per_second;
            let rate = self.recent[i].iter().sum::<f64>() / Detector::WINDOW as f64;
            if warming {
                continue;
            }
            if self.ticks == Detector::WINDOW {
                let mut window = self.recent[i];
                window.sort_by(f64::total_cmp);
                self.baseline[i] = window[Detector::WINDOW / 2];
            }
            let baseline = self.baseline[i];
            // While a kind surges its baseline learns ten times slower: a
            // long attack stays visible for hours, yet a lasting new normal
            // is eventually accepted.
            let tau = if self.surging[i] {
                Detector::TAU * 10.0
            } else {
                Detector::TAU
            };
            self.baseline[i] = baseline + (per_second - baseline) * (1.0 - (-secs / tau).exp());
            let was = self.surging[i];
            let is = if was {
                rate >= (2.0 * baseline).max(Detector::FLOOR / 2.0)
            } else {
                rate > (Detector::FACTOR * baseline).max(Detector::FLOOR)
            };
            if is != was {
                self.surging[i] = is;
                if let Some(g) = self.gauges.get(i) {
                    g.set(if is { 1.0 } else { 0.0 });
                }
                if is {
                    tracing::warn!(target: "jwtd::security", kind = kind.as_str(), rate, baseline, "anomaly surge");
                } else {
                    tracing::info!(target: "jwtd::security", kind = kind.as_str(), rate, baseline, "anomaly surge over");
                }
                changes.push((*kind, is));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_metric_has_help_text_and_no_other() {
        let doc = include_str!("../docs/metrics.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `jwtd_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let described: std::collections::BTreeSet<&str> = HELP
            .iter()
            .map(|(n, _, _)| n.strip_prefix("jwtd_").unwrap_or(n))
            .collect();
        assert_eq!(documented, described);
    }

    #[test]
    fn latency_histograms_render_cumulative_buckets() {
        let h = Latency {
            on: true,
            ..Latency::new()
        };
        h.record(3e-6);
        h.record_many(1.5e-4, 3);
        h.record(5.0);
        let mut out = String::new();
        h.render(&mut out, "front=\"native\",cache=\"hit\"");
        let line = |le: &str| {
            let key = format!(
                "jwtd_request_duration_seconds_bucket{{front=\"native\",cache=\"hit\",le=\"{le}\"}} "
            );
            out.lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap_or_else(|| panic!("{le} in {out}"))
                .to_owned()
        };
        assert_eq!(line("0.000002"), "0");
        assert_eq!(line("0.000005"), "1");
        assert_eq!(line("0.0002"), "4");
        assert_eq!(line("1"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(out.contains("_count{front=\"native\",cache=\"hit\"} 5"));
        // 3 us + 450 us + 5 s
        assert!(out.contains("_sum{front=\"native\",cache=\"hit\"} 5.000453"));
        // Off (no recorder): nothing recorded.
        let off = Latency {
            on: false,
            ..Latency::new()
        };
        off.record(1.0);
        assert_eq!(off.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn every_kind_has_a_distinct_label() {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn a_burst_above_the_baseline_surges_and_then_subsides() {
        let kind = Kind::BadSignature.index();
        let mut counts = vec![0u64; Kind::ALL.len()];
        let mut d = Detector::new(counts.clone());
        // A steady background of 1 every other second: no surge.
        for s in 0..600 {
            counts[kind] += s % 2;
            assert!(d.tick(&counts, 1.0).is_empty(), "surge at second {s}");
        }
        // 50/s: a surge within the window, reported once.
        let mut changes = Vec::new();
        for _ in 0..20 {
            counts[kind] += 50;
            changes.extend(d.tick(&counts, 1.0));
        }
        assert_eq!(changes, [(Kind::BadSignature, true)]);
        // Back to the background: over once the window has passed.
        let mut changes = Vec::new();
        for s in 0..30 {
            counts[kind] += s % 2;
            changes.extend(d.tick(&counts, 1.0));
        }
        assert_eq!(changes, [(Kind::BadSignature, false)]);
    }

    #[test]
    fn a_steady_rate_at_start_up_is_normal_and_a_burst_at_start_up_is_not() {
        let kind = Kind::UnknownKid.index();
        // 5/s from the first second on: learned, never a surge.
        let mut counts = vec![0u64; Kind::ALL.len()];
        let mut d = Detector::new(counts.clone());
        for s in 0..300 {
            counts[kind] += 5;
            assert!(d.tick(&counts, 1.0).is_empty(), "surge at second {s}");
        }
        // 300 at once in the first second, then quiet: a surge when the
        // warm-up ends.
        let mut counts = vec![0u64; Kind::ALL.len()];
        let mut d = Detector::new(counts.clone());
        counts[kind] += 300;
        let mut changes = Vec::new();
        for _ in 0..Detector::WINDOW {
            changes.extend(d.tick(&counts, 1.0));
        }
        assert_eq!(changes, [(Kind::UnknownKid, true)]);
    }

    #[test]
    fn a_late_tick_is_not_read_as_a_faster_rate() {
        let kind = Kind::BadSignature.index();
        let mut counts = vec![0u64; Kind::ALL.len()];
        let mut d = Detector::new(counts.clone());
        for _ in 0..600 {
            counts[kind] += 2;
            assert!(d.tick(&counts, 1.0).is_empty());
        }
        // The admin thread stalled 30 s: 60 more events, still 2/s.
        counts[kind] += 60;
        assert!(d.tick(&counts, 30.0).is_empty());
    }

    #[test]
    fn a_few_events_on_a_quiet_kind_do_not_surge() {
        let mut counts = vec![0u64; Kind::ALL.len()];
        let mut d = Detector::new(counts.clone());
        for s in 0..60 {
            // 5 events in one second: 0.5/s over the window, under the floor.
            if s == 30 {
                counts[Kind::AlgNone.index()] += 5;
            }
            assert!(d.tick(&counts, 1.0).is_empty());
        }
    }

    #[test]
    fn security_logs_are_rate_limited_per_kind() {
        let m = Metrics::new(&[]);
        let logged = (0..25).filter(|_| m.may_log(0).is_some()).count();
        // Within one second, 10; a second boundary in between allows more.
        assert!((10..=20).contains(&logged), "{logged}");
        assert!(m.may_log(1).is_some(), "another kind has its own budget");
    }

    #[test]
    fn the_fingerprint_is_a_short_hash_and_peek_is_safe_on_garbage() {
        let fp = fingerprint(b"a.b.c");
        assert_eq!(fp.len(), 12);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(peek(b"garbage"), (None, None));
        assert_eq!(peek(b"..."), (None, None));
        // {"kid":"k\u0001\u2028"} . {"iss":"\u202ex"}
        use base64::Engine;
        let h = crate::verify::B64URL.encode(br#"{"kid":"k\u0001\u2028"}"#);
        let p = crate::verify::B64URL.encode(br#"{"iss":"\u202ex"}"#);
        let token = format!("{h}.{p}.sig");
        assert_eq!(
            peek(token.as_bytes()),
            (
                Some("k\\u{1}\\u{2028}".to_owned()),
                Some("\\u{202e}x".to_owned())
            )
        );
    }
}
