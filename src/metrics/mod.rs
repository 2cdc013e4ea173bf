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
//!
//! # Files
//!
//! - `mod.rs`: [`Metrics`] and its recording API, [`Snapshot`] and
//!   [`Metrics::collect`], the help text of every metric and [`install`].
//! - `handles.rs`: the resolved handles (per front: each outcome and
//!   reason of `jwtd_requests_total`; per issuer: its key set's metrics)
//!   and the [`OpenConnection`] guard.
//! - `latency.rs`: jwtd's own request latency histogram ([`Latency`], fixed
//!   buckets) and [`Metrics::render_latency`].
//! - `security.rs`: the anomaly [`Kind`]s and the rate-limited security log
//!   events (token [`fingerprint`], `kid` and `iss`).
//! - `detector.rs`: the surge [`Detector`].
//! - `tests.rs`: the unit tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use crate::request::{Cause, Decision};
use crate::verify::{Algorithm, Anomalies, Reject, Verified};

mod detector;
mod handles;
mod latency;
mod security;

pub use crate::request::Front;
pub use detector::Detector;
pub use handles::OpenConnection;
pub use latency::Latency;
pub use security::{Kind, LOG_PER_SECOND, REPLAY_AFTER_SECS, fingerprint};

use handles::{FrontHandles, IssuerHandles};
use latency::LATENCY_BUCKETS;
use security::LogLimit;

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
    latency::RECORDING.store(true, Ordering::Relaxed);
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
    log_limit: LogLimit,
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

impl Metrics {
    /// Registers every handle. `issuers` are the configured issuer names
    /// (`default` when an issuer has none), in configuration order.
    pub fn new(issuers: &[String]) -> Metrics {
        describe();
        metrics::gauge!("jwtd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let issuers = issuers
            .iter()
            .map(|name| IssuerHandles::new(name))
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
            log_limit: LogLimit::new(),
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
            .position(|a| Some(*a) == result.alg)
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
                    Reject::Expired => {
                        security::expired_long_ago(token).then_some(Kind::ExpiredReplay)
                    }
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
        let Some(suppressed) = self.log_limit.may_log(i) else {
            return;
        };
        security::log_suspicious(kind, front, reason, token, suppressed);
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
        metrics::gauge!("jwtd_dpop_replay_entries").set(snapshot.dpop_replay_entries as f64);
        metrics::counter!("jwtd_dpop_shared_claims_total", "result" => "first").absolute(
            snapshot.dpop_shared_claims
                - snapshot
                    .dpop_shared_replays
                    .min(snapshot.dpop_shared_claims),
        );
        metrics::counter!("jwtd_dpop_shared_claims_total", "result" => "replay")
            .absolute(snapshot.dpop_shared_replays);
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
    /// DPoP proofs in the in-memory replay cache.
    pub dpop_replay_entries: usize,
    /// DPoP proofs claimed in Redis so far.
    pub dpop_shared_claims: u64,
    /// Of those, claims that found the proof already there (replays
    /// caught across daemons).
    pub dpop_shared_replays: u64,
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
        "Tokens looked up and DPoP proofs claimed per revocation round trip",
    ),
    (
        "jwtd_jwe_decrypted_total",
        'c',
        "JWEs decrypted (cache misses), by alg and enc",
    ),
    (
        "jwtd_dpop_replay_entries",
        'g',
        "DPoP proofs remembered against replay in memory",
    ),
    (
        "jwtd_dpop_shared_claims_total",
        'c',
        "DPoP proofs claimed in Redis: first, or replay (seen by another daemon)",
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

#[cfg(test)]
mod tests;
