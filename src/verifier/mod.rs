//! [`Verifier`]: the one shared handle every front (native socket, HTTP,
//! gRPC) sends its requests to, and the one pipeline each request takes.
//!
//! # The pipeline
//!
//! A front translates its wire request into a [`Request`](crate::request::Request) (token,
//! selector, [`crate::request::Context`]) and calls [`Verifier::begin`];
//! what comes back is a [`Step`]:
//!
//! ```text
//! begin: token? -> selector -> cache --hit--> revocation (local) -> bind -> route -> Decision
//!                                 |     \--hit with a DPoP proof--> budget slot? --> Step::Verify(Ticket)
//!                                 \--miss--> budget slot? --none--> Undecided(overloaded)
//!                                                \--> Step::Verify(Ticket)
//! Ticket::verify:  core (crate::verify) -> cache insert -> revocation -> bind -> route -> Next (Done or Wait)
//!                  (a cached DPoP request: bind, the proof's signature check, -> route)
//! Step::Wait(Waiting), Waiting::finish: a key refresh (unknown kid), a
//!                  revocation lookup or a DPoP claim in Redis, awaited -> ... -> route -> Decision
//! ```
//!
//! The split is what lets a front put each part where it is cheapest: the
//! native front answers `Done` inline, verifies a read's tickets as
//! batches spread over the cores, and parks waits on one task per read;
//! the proxy fronts simply `decide` (all three steps in one future). Every
//! stage lives here, so a new check that needs the request (a
//! proof-of-possession header, a client certificate, a client IP) is one
//! more stage in `pipeline.rs` reading the `Context`, not a change to three
//! fronts. Metrics are recorded here too, once per decision (plain cache
//! hits through a [`Tally`], so a read of many hits costs one update).
//!
//! # Rooms
//!
//! - `issuer`: the issuer registry (`Issuer`, `Health`, the `KeySink` key
//!   sources publish through, the `Trust` that picks the issuer by `iss`).
//! - `check`: the stages on one token: cache, verification, revocation,
//!   and the waits (`Pending`).
//! - `pipeline`: the entry point and the [`Decision`](crate::request::Decision) (route policy,
//!   metrics, the verification [`Budget`]).
//!
//! **Issuers.** With one issuer nothing is chosen: its policy applies (and
//! checks `iss` only if configured). With several, the core reads the
//! token's `iss` before any signature work and this module maps it to one
//! issuer; an `iss` that names none is [`Reject::UnknownIssuer`](crate::verify::Reject::UnknownIssuer)
//! (see [`crate::verify::Trust`]).
//!
//! **Selectors** name one configured audience (of any issuer). For an
//! issuer with audiences, a selector outside them refuses the token
//! ([`Reject::Audience`](crate::verify::Reject::Audience)); for an issuer without, it narrows the check to
//! that audience.
//!
//! **Revocation.** Every valid answer, cache hits included, goes through the
//! revocation check: [`crate::revocation::Revocation::check_local`] inline,
//! else a pending lookup; a memo about to expire is refreshed in the
//! background (a spawned lookup). Revoked is [`Reject::Revoked`](crate::verify::Reject::Revoked); a store
//! that could not be asked (revocation failing closed) is undecided
//! `revocation_unavailable`. REVOKE requests go through
//! [`Verifier::revoke`].
//!
//! **I/O.** The verifier itself reads no socket; it does spawn revocation
//! lookups and background memo refreshes onto the runtime, and it waits
//! on key refreshes that key sources (`crate::jwks::source`) run.
//!
//! **Readiness.** [`Verifier::ready`]: every issuer has a key set, and none
//! whose source can go stale has gone without a good fetch for longer than
//! its `max_stale`.

mod check;
mod issuer;
mod pipeline;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::bind::{BindConfig, Binder, IssuerBinding};
use crate::cache::Cache;
use crate::jwks::refresh::RefreshGate;
use crate::metrics::Metrics;
use crate::revocation::{Revocation, RevocationConfig, Revoke, RevokeError};
use crate::route::Route;
use crate::verify::jwe::DecryptionKeys;
use crate::verify::{self, KeySet, Policy};

pub use issuer::{Health, Issuer, IssuerKeys};
pub use pipeline::{Budget, Next, Step, Tally, Ticket, Waiting};

/// Why [`Verifier::revoke`] did not revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The token's issuer is not one this daemon serves: it would match
    /// nothing.
    UnknownIssuer,
    /// It could match no token (a `jti` of a token long expired, a subject
    /// window in the future).
    MatchesNothing,
    /// The revocation store could not be written (it is still enforced by
    /// this daemon until the token expires).
    Store,
}

/// Settings of one issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Its policy. Its audiences are also request selectors.
    pub policy: Policy,
    /// Unknown-kid refreshes `(cooldown, wait)`, for sources that can be
    /// refreshed on demand (remote ones); `None` for files.
    pub unknown_kid: Option<(Duration, Duration)>,
    /// Not ready once the last good set is older than this (remote sources
    /// only; `None`: never).
    pub max_stale: Option<Duration>,
    /// Its DPoP mode and proof policy (see [`crate::bind`]).
    pub binding: IssuerBinding,
    /// Which decryption keys its JWEs may be opened with, and whether
    /// claims alone are accepted.
    pub jwe: IssuerJwe,
}

/// One issuer's JWE settings (`docs/design/jwe.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssuerJwe {
    /// Index into [`VerifierConfig::jwe`] of its decryption keys (the
    /// top-level `jwe_keys`, inherited, or its own); `None`: a JWE whose
    /// inner token is this issuer's is refused `jwe`. A JWE opened by
    /// another issuer's keys is `jwe_decrypt` for this one: no issuer's
    /// tokens ride in an envelope meant for another.
    pub keys: Option<usize>,
    /// `jwe_unsigned_claims`: claims alone (no inner signature) are
    /// accepted in a JWE with symmetric key management (`A*KW`, `dir`).
    pub unsigned_claims: bool,
}

/// Settings of a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The issuers, in configuration order. With several, each policy names
    /// its issuer.
    pub issuers: Vec<IssuerConfig>,
    /// Cache capacity in entries (0 disables the cache).
    pub cache_entries: usize,
    /// Longest time a result is cached, for tokens without (or with a far)
    /// `exp`, in seconds.
    pub cache_max_ttl: u64,
    /// Cache misses in verification at once, over every front; beyond it a
    /// request is answered undecided `overloaded` (see [`Budget`]).
    pub max_verifying: usize,
    /// Route policies, for requests whose context has a path (the proxy
    /// fronts): see [`crate::route`].
    pub routes: Vec<Route>,
    /// The binding stage's daemon-wide settings (see [`crate::bind`]).
    pub bind: BindConfig,
    /// The decryption key sets (one per `jwe_keys` file); each issuer
    /// names its own by index ([`IssuerJwe::keys`]). Empty: every JWE is
    /// refused `jwe`. A nested JWT's inner token is verified as any token
    /// is.
    pub jwe: Vec<Arc<DecryptionKeys>>,
}

impl VerifierConfig {
    /// One issuer with `policy` and a file (never stale) source.
    pub fn single(policy: Policy, cache_entries: usize, cache_max_ttl: u64) -> VerifierConfig {
        VerifierConfig {
            issuers: vec![IssuerConfig {
                policy,
                unknown_kid: None,
                max_stale: None,
                binding: IssuerBinding::default(),
                jwe: IssuerJwe::default(),
            }],
            cache_entries,
            cache_max_ttl,
            max_verifying: DEFAULT_MAX_VERIFYING,
            routes: Vec::new(),
            bind: BindConfig::default(),
            jwe: Vec::new(),
        }
    }
}

/// [`VerifierConfig::max_verifying`] when not configured (as the daemon's
/// `max_verifying` default).
pub const DEFAULT_MAX_VERIFYING: usize = 4096;

struct Inner {
    issuers: Box<[Issuer]>,
    /// Issuer index by `iss`, when there are several.
    by_iss: HashMap<Box<str>, usize>,
    /// What applies before the issuer is known (see [`Trust::limits`]).
    limits: Policy,
    /// Every configured audience.
    selectors: HashSet<Box<[u8]>>,
    /// Verified results.
    cache: Cache,
    /// See [`VerifierConfig::cache_max_ttl`].
    cache_max_ttl: i64,
    /// The revocation check of every valid answer.
    revocation: Revocation,
    /// Metric handles (no-ops unless a recorder was installed first).
    metrics: Metrics,
    /// The verification budget every front shares.
    budget: Budget,
    /// Route policies (requests with a path).
    routes: Vec<Route>,
    /// The binding stage.
    bind: Binder,
    /// JWE decryption key sets (one per `jwe_keys` file), each swapped
    /// whole.
    jwe: Box<[ArcSwap<DecryptionKeys>]>,
}

/// The shared verification handle. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl Verifier {
    /// A verifier with no key sets yet (publish them with
    /// [`Verifier::set_keys`]), checking revocation against an (empty)
    /// in-memory store.
    pub fn new(config: VerifierConfig) -> Verifier {
        Verifier::with_revocation(config, Revocation::memory(RevocationConfig::default()))
    }

    /// As [`Verifier::new`], with `revocation` checking every valid token.
    pub fn with_revocation(config: VerifierConfig, revocation: Revocation) -> Verifier {
        let selectors: HashSet<Box<[u8]>> = config
            .issuers
            .iter()
            .flat_map(|i| i.policy.audiences.iter())
            .map(|aud| Box::from(aud.as_bytes()))
            .collect();
        let mut limits = Policy {
            algorithms: verify::AlgSet::EMPTY,
            max_token_bytes: 0,
            max_json_depth: 0,
            ..Policy::default()
        };
        for i in &config.issuers {
            for alg in i.policy.algorithms.iter() {
                limits.algorithms.insert(alg);
            }
            limits.max_token_bytes = limits.max_token_bytes.max(i.policy.max_token_bytes);
            limits.max_json_depth = limits.max_json_depth.max(i.policy.max_json_depth);
        }
        let bindings = config.issuers.iter().map(|i| i.binding).collect();
        let issuers: Box<[Issuer]> = config
            .issuers
            .into_iter()
            .map(|i| {
                let by_selector = selectors
                    .iter()
                    .map(|sel| {
                        let aud = String::from_utf8_lossy(sel);
                        let accepts = i.policy.audiences.is_empty()
                            || i.policy.audiences.iter().any(|a| a.as_bytes() == &**sel);
                        let policy = accepts.then(|| Policy {
                            audiences: vec![Box::from(&*aud)],
                            ..i.policy.clone()
                        });
                        (sel.clone(), policy)
                    })
                    .collect();
                Issuer {
                    keys: ArcSwapOption::empty(),
                    gate: i.unknown_kid.map(|(cooldown, wait)| {
                        let name = i.policy.issuer.as_deref().unwrap_or("default");
                        RefreshGate::new(name, cooldown, wait)
                    }),
                    default: i.policy,
                    by_selector,
                    max_stale: i.max_stale,
                    health: Health::default(),
                    jwe: i.jwe,
                }
            })
            .collect();
        let by_iss = if issuers.len() > 1 {
            issuers
                .iter()
                .enumerate()
                .filter_map(|(n, i)| Some((i.default.issuer.clone()?, n)))
                .collect()
        } else {
            HashMap::new()
        };
        let names: Vec<String> = issuers
            .iter()
            .map(|i| i.default.issuer.as_deref().unwrap_or("default").to_owned())
            .collect();
        Verifier {
            inner: Arc::new(Inner {
                issuers,
                by_iss,
                limits,
                selectors,
                cache: Cache::new(config.cache_entries),
                cache_max_ttl: i64::try_from(config.cache_max_ttl).unwrap_or(i64::MAX),
                revocation,
                metrics: Metrics::new(&names),
                budget: Budget::new(config.max_verifying),
                routes: config.routes,
                bind: Binder::new(bindings, config.bind),
                jwe: config.jwe.into_iter().map(ArcSwap::new).collect(),
            }),
        }
    }

    /// Replaces decryption key set `set` (an index into
    /// [`VerifierConfig::jwe`]; a set that was not configured is ignored).
    /// Cached results of JWEs record the decryption key that opened them
    /// and are served only while it is loaded in some set, so a removed
    /// key stops vouching at the swap, and the rest of the cache stays.
    pub fn set_jwe_keys(&self, set: usize, keys: Arc<DecryptionKeys>) {
        if let Some(slot) = self.inner.jwe.get(set) {
            slot.store(keys);
        }
    }

    /// The metric handles.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The revocation checker.
    pub fn revocation(&self) -> &Revocation {
        &self.inner.revocation
    }

    /// Whether a token with `iss` (`None`: without `iss`) could be accepted
    /// here, so a revocation for it could match something: one issuer that
    /// checks no `iss` serves every one; otherwise `iss` must be one that
    /// is configured.
    pub fn serves_issuer(&self, iss: Option<&str>) -> bool {
        self.inner.issuers.iter().any(|i| match &i.default.issuer {
            None => self.inner.issuers.len() == 1,
            Some(configured) => iss == Some(&**configured),
        })
    }

    /// Carries out a revocation (a REVOKE request, from any front): the
    /// key written. A revocation that could match nothing here (an issuer
    /// this daemon does not serve, a token long expired) is refused, never
    /// reported done. Logged here, with the outcome; never the token.
    pub async fn revoke(&self, iss: Option<&str>, what: &Revoke) -> Result<String, Refused> {
        let now = crate::clock::unix_now();
        if !self.serves_issuer(iss) {
            tracing::info!(
                iss = iss.unwrap_or("(none)"),
                "revocation refused: issuer not served"
            );
            return Err(Refused::UnknownIssuer);
        }
        match self.inner.revocation.revoke(iss, what, now).await {
            Ok(key) => {
                tracing::info!(%key, "revoked");
                Ok(key)
            }
            Err(RevokeError::MatchesNothing(why)) => {
                tracing::info!(%why, "revocation refused");
                Err(Refused::MatchesNothing)
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation failed (enforced here only)");
                Err(Refused::Store)
            }
        }
    }

    /// Publishes a new key set for issuer `issuer` (an index into the
    /// configured issuers; out-of-range indexes are ignored). The set must be
    /// complete and validated: this is the one store readers see.
    pub fn set_keys(&self, issuer: usize, keys: KeySet) {
        if let Some(i) = self.inner.issuers.get(issuer) {
            // The same keys again (a file reloaded unchanged, a refetch
            // without ETag) count as confirmed, not updated.
            let same = i.keys.load().as_deref().is_some_and(|current| {
                current.keys().len() == keys.keys().len()
                    && keys
                        .keys()
                        .iter()
                        .all(|k| current.contains(k.fingerprint()))
            });
            i.keys.store(Some(Arc::new(keys)));
            if same {
                i.health.unchanged.fetch_add(1, Ordering::Relaxed);
            } else {
                i.health.updates.fetch_add(1, Ordering::Relaxed);
            }
            self.confirm_keys(issuer);
        }
    }

    /// Records that issuer `issuer`'s current set was confirmed unchanged
    /// (a "not modified" fetch, or a reload of the same file).
    pub fn confirm_keys(&self, issuer: usize) {
        if let Some(i) = self.inner.issuers.get(issuer) {
            i.health
                .last_good
                .store(crate::clock::unix_now().max(1), Ordering::Relaxed);
        }
    }

    /// Records a failed fetch or reload of issuer `issuer`'s source (the
    /// last good set stays).
    pub fn record_failure(&self, issuer: usize) {
        if let Some(i) = self.inner.issuers.get(issuer) {
            i.health.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Issuer `issuer`'s end of the key-source interface: what its file
    /// watcher or fetcher publishes through.
    pub fn key_sink(&self, issuer: usize) -> IssuerKeys {
        IssuerKeys {
            verifier: self.clone(),
            issuer,
        }
    }

    /// The configured issuers, in configuration order.
    pub fn issuers(&self) -> &[Issuer] {
        &self.inner.issuers
    }

    /// Whether every issuer has a key set and none is staler than its
    /// `max_stale`.
    pub fn ready(&self) -> bool {
        let now = crate::clock::unix_now();
        self.inner.issuers.iter().all(|i| i.ready(now))
    }

    /// What the metrics report of the verifier's state, read now
    /// (`draining`: the daemon is shutting down, so not ready).
    pub fn snapshot(&self, draining: bool) -> crate::metrics::Snapshot {
        let stats = self.inner.revocation.stats();
        crate::metrics::Snapshot {
            ready: self.ready() && !draining,
            cache_entries: self.inner.cache.len(),
            cache_evictions: self.inner.cache.evictions(),
            issuers: self
                .inner
                .issuers
                .iter()
                .map(|i| crate::metrics::IssuerSnapshot {
                    keys: i.keys().map_or(0, |k| k.keys().len()),
                    updates: i.health.updates.load(Ordering::Relaxed),
                    unchanged: i.health.unchanged.load(Ordering::Relaxed),
                    failures: i.health.failures.load(Ordering::Relaxed),
                    last_good: i.health.last_good(),
                    unknown_kid: i.gate.as_ref().map(|g| (g.requested(), g.suppressed())),
                })
                .collect(),
            verifying: self.inner.budget.in_use(),
            verifying_limit: self.inner.budget.capacity(),
            revocation_up: stats.backend_up(),
            failed_open: stats.failed_open.load(Ordering::Relaxed),
            failed_closed: stats.failed_closed.load(Ordering::Relaxed),
            revocation_failures: stats.failed_lookups().collect(),
            dpop_replay_entries: self.inner.bind.replay_entries(),
            dpop_shared_claims: stats.claims.load(Ordering::Relaxed),
            dpop_shared_replays: stats.replays.load(Ordering::Relaxed),
        }
    }

    /// The verified-result cache.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }
}

#[cfg(test)]
mod tests;
