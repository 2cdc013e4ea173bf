//! [`Verifier`]: the one shared handle every front (native socket, and later
//! HTTP and gRPC) calls to answer "is this token valid?".
//!
//! It joins the pure core ([`crate::verify`]) with the state around it: one
//! [`Issuer`] per configured issuer (its policy, the policies of its request
//! selectors, and its current key set behind `ArcSwap`, so a new set is
//! published whole with one store and readers never wait), and the result
//! cache. It does no I/O and knows nothing of sockets, frames or HTTP: key
//! sources (`jwks::source`) publish sets with [`Verifier::set_keys`].
//!
//! **Issuers.** With one issuer nothing is chosen: its policy applies (and
//! checks `iss` only if configured). With several, the core reads the
//! token's `iss` before any signature work and this module maps it to one
//! issuer; an `iss` that names none is [`Reject::UnknownIssuer`]
//! (see [`crate::verify::Trust`]).
//!
//! **Selectors** name one configured audience (of any issuer). For an
//! issuer with audiences, a selector outside them refuses the token
//! ([`Reject::Audience`]); for an issuer without, it narrows the check to
//! that audience.
//!
//! The check is split in two so a front can answer cache hits inline and
//! move only the expensive part (signature verification) elsewhere:
//! [`Verifier::check_cached`] then, on a miss, [`Verifier::check_uncached`].
//! Either may answer [`Outcome::Pending`]: the answer needs a wait, which
//! the front awaits off its hot path with [`Pending::finish`]. Two things
//! wait: a token naming a key its issuer's set lacks, while a refresh of
//! that set runs (`jwks::refresh`; it is then verified once more), and a
//! valid token whose revocation status is not known locally (a batched
//! lookup, `revocation`).
//!
//! **Revocation.** Every valid answer, cache hits included, goes through the
//! revocation check: [`crate::revocation::Revocation::check_local`] inline,
//! else a pending lookup. Revoked is [`Reject::Revoked`]; a store that could
//! not be asked (revocation failing closed) is
//! [`Outcome::RevocationUnavailable`].
//!
//! **Readiness.** [`Verifier::ready`]: every issuer has a key set, and none
//! whose source can go stale has gone without a good fetch for longer than
//! its `max_stale`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::cache::{Cache, Key};
use crate::jwks::refresh::{RefreshGate, Wait};
use crate::jwks::source::KeySink;
use crate::metrics::Metrics;
use crate::revocation::{Local, Probe, Revocation, RevocationConfig, Standing};
use crate::verify::KeySet;
use crate::verify::{self, Policy, Reject, Rejection, Trust, Verified};

/// What the daemon answers for one token.
#[derive(Debug)]
pub enum Outcome {
    /// Valid; `cached` says whether the cache answered.
    Valid {
        /// The verified result (shared with the cache).
        result: Arc<Verified>,
        /// Answered from the cache.
        cached: bool,
    },
    /// Invalid.
    Invalid(Rejection),
    /// The token's issuer has no key set yet: cannot decide.
    NoKeys,
    /// The selector names no configured audience.
    UnknownSelector,
    /// Valid, but the revocation store could not be asked in time, and
    /// revocation fails closed: cannot decide.
    RevocationUnavailable,
    /// The answer needs a wait (a key refresh, a revocation lookup): await
    /// [`Pending::finish`] for it.
    Pending(Pending),
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
}

impl VerifierConfig {
    /// One issuer with `policy` and a file (never stale) source.
    pub fn single(policy: Policy, cache_entries: usize, cache_max_ttl: u64) -> VerifierConfig {
        VerifierConfig {
            issuers: vec![IssuerConfig {
                policy,
                unknown_kid: None,
                max_stale: None,
            }],
            cache_entries,
            cache_max_ttl,
        }
    }
}

/// How one issuer's key source is doing, for logs, readiness and metrics.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix second of the last good set (fetched, confirmed unchanged, or
    /// loaded); 0 before the first.
    last_good: AtomicI64,
    /// Sets published.
    pub updates: AtomicU64,
    /// Fetches answered "not modified".
    pub unchanged: AtomicU64,
    /// Fetches or reloads that failed (the last good set was kept).
    pub failures: AtomicU64,
}

impl Health {
    /// Unix second of the last good set, if any.
    pub fn last_good(&self) -> Option<i64> {
        Some(self.last_good.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

/// One configured issuer: policy, selector policies, keys, refresh gate.
pub struct Issuer {
    keys: ArcSwapOption<KeySet>,
    default: Policy,
    /// One entry per known selector: the policy requiring exactly that
    /// audience, or `None` when this issuer does not accept it.
    by_selector: HashMap<Box<[u8]>, Option<Policy>>,
    gate: Option<RefreshGate>,
    max_stale: Option<Duration>,
    health: Health,
}

impl Issuer {
    /// The unknown-kid refresh gate (remote sources only).
    pub fn gate(&self) -> Option<&RefreshGate> {
        self.gate.as_ref()
    }

    /// How its source is doing.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The current key set, if any.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    fn ready(&self, now: i64) -> bool {
        let Some(last_good) = self.health.last_good() else {
            return false;
        };
        self.max_stale.is_none_or(|max| {
            let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            now.saturating_sub(last_good) <= max
        })
    }
}

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
}

/// One issuer's [`KeySink`]: key sources publish through it without knowing
/// the verifier.
#[derive(Clone)]
pub struct IssuerKeys {
    verifier: Verifier,
    issuer: usize,
}

impl KeySink for IssuerKeys {
    fn set(&self, keys: KeySet) {
        self.verifier.set_keys(self.issuer, keys);
    }

    fn confirm(&self) {
        self.verifier.confirm_keys(self.issuer);
    }

    fn fail(&self) {
        self.verifier.record_failure(self.issuer);
    }

    fn last_good(&self) -> Option<i64> {
        self.verifier
            .inner
            .issuers
            .get(self.issuer)?
            .health
            .last_good()
    }

    fn gate(&self) -> Option<&RefreshGate> {
        self.verifier.inner.issuers.get(self.issuer)?.gate.as_ref()
    }
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
            }),
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

    /// A valid result, through the revocation check. `id` is its cache
    /// key, where its revocation memo lives; `probe` what that memo said.
    fn valid(
        &self,
        result: Arc<Verified>,
        cached: bool,
        now: i64,
        id: Option<Key>,
        probe: Probe,
    ) -> Outcome {
        match self.inner.revocation.check_local(&result, now, probe) {
            Local::Decided(decision, memo) => {
                if let (Some(memo), Some(id)) = (memo, &id) {
                    self.inner.cache.set_memo(id, memo);
                }
                decided(result, cached, decision)
            }
            Local::Refresh => {
                if let (Some(id), Ok(runtime)) = (id, tokio::runtime::Handle::try_current()) {
                    let (verifier, token) = (self.clone(), result.clone());
                    runtime.spawn(async move {
                        let memo = verifier.inner.revocation.refresh(&token, now).await;
                        verifier.inner.cache.set_memo(&id, memo);
                    });
                }
                Outcome::Valid { result, cached }
            }
            Local::Lookup => Outcome::Pending(Pending {
                kind: PendingKind::Revocation {
                    result,
                    cached,
                    now,
                    id,
                },
            }),
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

    /// The verified-result cache.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// Answers from the cache when it can: `Ok` for a hit or an unknown
    /// selector, `Err(Miss)` when the token must be verified (pass the miss
    /// to [`Verifier::check_uncached`], which reuses its cache key).
    pub fn check_cached(&self, selector: &[u8], token: &[u8], now: i64) -> Result<Outcome, Miss> {
        if !selector.is_empty() && !self.inner.selectors.contains(selector) {
            return Ok(Outcome::UnknownSelector);
        }
        if !self.inner.cache.is_enabled() {
            self.inner.metrics.cache_miss();
            return Err(Miss { key: None });
        }
        let key = Cache::key(selector, token);
        match self
            .inner
            .cache
            .get(&key, now, self.inner.revocation.memo_probe())
        {
            // Served only while the key that verified it is still trusted:
            // a key removed by a swap stops vouching at once, and a result
            // cached by a verification that raced the swap is refused too.
            // Hits are counted by the fronts with their answer (batched per
            // read on the native protocol); misses here.
            Some(hit) if self.still_trusted(&hit) => {
                Ok(self.valid(hit.result, true, now, Some(key), hit.probe))
            }
            Some(_) => {
                // Its key left the set: drop it rather than keep promoting
                // an entry that will never be served.
                self.inner.cache.remove(&key);
                self.inner.metrics.cache_miss();
                Err(Miss { key: Some(key) })
            }
            None => {
                self.inner.metrics.cache_miss();
                Err(Miss { key: Some(key) })
            }
        }
    }

    /// Whether the issuer that vouched for a cached result still holds the
    /// key that verified it.
    fn still_trusted(&self, hit: &crate::cache::Hit) -> bool {
        self.inner.issuers.get(hit.issuer).is_some_and(|issuer| {
            issuer
                .keys
                .load()
                .as_deref()
                .is_some_and(|keys| keys.contains(hit.result.key))
        })
    }

    /// Verifies `token` (no cache lookup) and caches a valid result. May
    /// answer [`Outcome::Pending`] (see the module doc).
    pub fn check_uncached(&self, miss: Miss, selector: &[u8], token: &[u8], now: i64) -> Outcome {
        self.verify_miss(miss, selector, token, now, true)
    }

    fn verify_miss(
        &self,
        miss: Miss,
        selector: &[u8],
        token: &[u8],
        now: i64,
        may_refresh: bool,
    ) -> Outcome {
        if !selector.is_empty() && !self.inner.selectors.contains(selector) {
            return Outcome::UnknownSelector;
        }
        let call = Call {
            inner: &self.inner,
            selector,
            chosen: Cell::new(None),
            no_keys: Cell::new(false),
            kidless: Cell::new(false),
        };
        let started = std::time::Instant::now();
        let verdict = verify::verify_with(token, &call, now);
        let issuer = call.chosen.get().and_then(|n| self.inner.issuers.get(n));
        match verdict {
            Ok(verified) => {
                self.inner
                    .metrics
                    .verified(&verified, started.elapsed(), now);
                let result = Arc::new(verified);
                let leeway = issuer.map_or(0, |i| i64::try_from(i.default.leeway).unwrap_or(0));
                let cap = now.saturating_add(self.inner.cache_max_ttl);
                let expires_at = result
                    .claims
                    .exp
                    .map_or(cap, |exp| exp.saturating_add(leeway).min(cap));
                if let (Some(key), Some(n)) = (miss.key, call.chosen.get()) {
                    self.inner.cache.insert(key, result.clone(), n, expires_at);
                }
                self.valid(result, false, now, miss.key, Probe::Miss)
            }
            Err(_) if call.no_keys.get() => Outcome::NoKeys,
            Err(rejection) => {
                // A kid-less token refused for the number of keys it could
                // match names no missing key: a refresh would not help.
                if may_refresh
                    && rejection.reason == Reject::UnknownKey
                    && !call.kidless.get()
                    && let Some(wait) = issuer.and_then(|i| i.gate.as_ref()?.unknown_kid())
                {
                    return Outcome::Pending(Pending {
                        kind: PendingKind::Refresh {
                            miss,
                            wait,
                            rejection,
                        },
                    });
                }
                Outcome::Invalid(rejection)
            }
        }
    }

    /// Both steps, waiting for whatever is pending: the cache, then
    /// verification.
    pub async fn check(&self, selector: &[u8], token: &[u8], now: i64) -> Outcome {
        let outcome = self
            .check_cached(selector, token, now)
            .unwrap_or_else(|miss| self.check_uncached(miss, selector, token, now));
        match outcome {
            Outcome::Pending(p) => p.finish(self, selector, token).await,
            other => other,
        }
    }
}

/// A valid result's outcome once its revocation status is decided.
fn decided(result: Arc<Verified>, cached: bool, decision: Standing) -> Outcome {
    match decision {
        Standing::Clear => Outcome::Valid { result, cached },
        Standing::Revoked => Outcome::Invalid(Rejection {
            reason: Reject::Revoked,
            anomalies: result.anomalies,
        }),
        Standing::Unavailable => Outcome::RevocationUnavailable,
    }
}

/// A cache miss: the token must be verified. Carries the cache key so the
/// token is hashed once per request (none when the cache is disabled).
#[derive(Debug)]
pub struct Miss {
    key: Option<Key>,
}

/// An answer that needs a wait: see [`Outcome::Pending`].
#[derive(Debug)]
pub struct Pending {
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    /// An unknown key, while its issuer's set is refreshed.
    Refresh {
        miss: Miss,
        wait: Wait,
        rejection: Rejection,
    },
    /// A valid token, while its revocation status is looked up.
    Revocation {
        result: Arc<Verified>,
        cached: bool,
        now: i64,
        id: Option<Key>,
    },
}

impl Pending {
    /// The reject this becomes if a refresh does not help (`None` for a
    /// revocation lookup).
    pub fn rejection(&self) -> Option<Rejection> {
        match &self.kind {
            PendingKind::Refresh { rejection, .. } => Some(*rejection),
            PendingKind::Revocation { .. } => None,
        }
    }

    /// Waits, then answers. A refresh is waited for at most the issuer's
    /// `unknown_kid_wait`, and the token is then verified once more (never
    /// starting another refresh); a revocation lookup at most the batch
    /// deadline.
    pub async fn finish(self, verifier: &Verifier, selector: &[u8], token: &[u8]) -> Outcome {
        let (result, cached, now, id) = match self.kind {
            PendingKind::Revocation {
                result,
                cached,
                now,
                id,
            } => (result, cached, now, id),
            PendingKind::Refresh { miss, wait, .. } => {
                wait.done().await;
                let now = crate::clock::unix_now();
                match verifier.verify_miss(miss, selector, token, now, false) {
                    Outcome::Pending(Pending {
                        kind:
                            PendingKind::Revocation {
                                result,
                                cached,
                                now,
                                id,
                            },
                    }) => (result, cached, now, id),
                    other => return other,
                }
            }
        };
        let (decision, memo) = verifier.inner.revocation.check(&result, now).await;
        if let (Some(memo), Some(id)) = (memo, &id) {
            verifier.inner.cache.set_memo(id, memo);
        }
        decided(result, cached, decision)
    }
}

/// The [`Trust`] of one verification: picks the issuer, records which.
struct Call<'v> {
    inner: &'v Inner,
    selector: &'v [u8],
    chosen: Cell<Option<usize>>,
    no_keys: Cell<bool>,
    /// A kid-less token was refused for matching too many keys.
    kidless: Cell<bool>,
}

/// A loaded key set, kept alive for one verification.
struct Loaded(arc_swap::Guard<Option<Arc<KeySet>>>);

impl std::ops::Deref for Loaded {
    type Target = KeySet;

    fn deref(&self) -> &KeySet {
        // `Call::select` hands out only loaded sets; the empty fallback
        // keeps this total without a panic path.
        static EMPTY: LazyLock<KeySet> = LazyLock::new(KeySet::default);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl Trust for Call<'_> {
    type Keys<'a>
        = Loaded
    where
        Self: 'a;

    fn limits(&self) -> &Policy {
        &self.inner.limits
    }

    fn by_issuer(&self) -> bool {
        self.inner.issuers.len() > 1
    }

    fn kidless_refused(&self) {
        self.kidless.set(true);
    }

    fn select(&self, iss: Option<&str>) -> Result<(Loaded, &Policy), Reject> {
        let n = if self.inner.issuers.len() == 1 {
            0
        } else {
            *iss.and_then(|iss| self.inner.by_iss.get(iss))
                .ok_or(Reject::UnknownIssuer)?
        };
        let issuer = self.inner.issuers.get(n).ok_or(Reject::UnknownIssuer)?;
        self.chosen.set(Some(n));
        let policy = if self.selector.is_empty() {
            &issuer.default
        } else {
            issuer
                .by_selector
                .get(self.selector)
                .and_then(Option::as_ref)
                .ok_or(Reject::Audience)?
        };
        let keys = issuer.keys.load();
        if keys.is_none() {
            self.no_keys.set(true);
            return Err(Reject::UnknownKey);
        }
        Ok((Loaded(keys), policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningKey;
    use crate::verify::{Algorithm, Reject};
    use serde_json::json;

    fn setup(audiences: &[&str]) -> (SigningKey, Verifier) {
        let key = SigningKey::generate(Algorithm::HS256)
            .unwrap()
            .with_kid(Some("k".into()));
        let keys =
            KeySet::from_jwks(json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).unwrap();
        let policy = Policy {
            audiences: audiences.iter().map(|a| Box::from(*a)).collect(),
            ..Policy::default()
        };
        let v = Verifier::new(VerifierConfig::single(policy, 1000, 600));
        v.set_keys(0, keys);
        (key, v)
    }

    fn mint(key: &SigningKey, claims: serde_json::Value) -> Vec<u8> {
        key.mint(&claims, &Default::default()).unwrap().into_bytes()
    }

    #[tokio::test]
    async fn second_check_is_a_cache_hit_until_exp_plus_leeway() {
        let (key, v) = setup(&[]);
        let token = mint(&key, json!({"exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 900).await,
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 901).await,
            Outcome::Valid { cached: true, .. }
        ));
        // Leeway 30: the core accepts until 1029, the cache serves until then.
        assert!(matches!(
            v.check(b"", &token, 1029).await,
            Outcome::Valid { cached: true, .. }
        ));
        assert!(v.check_cached(b"", &token, 1030).is_err());
        assert!(matches!(
            v.check(b"", &token, 1030).await,
            Outcome::Invalid(Rejection {
                reason: Reject::Expired,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn tokens_without_exp_are_cached_for_at_most_the_max_ttl() {
        let (key, v) = setup(&[]);
        let keys = v.issuers()[0].keys().unwrap();
        let v = Verifier::new(VerifierConfig::single(
            Policy {
                required: vec![],
                ..Policy::default()
            },
            10,
            600,
        ));
        v.set_keys(0, (*keys).clone());
        let token = mint(&key, json!({"sub": "x"}));
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { cached: false, .. }
        ));
        assert!(v.check_cached(b"", &token, 599).is_ok());
        assert!(v.check_cached(b"", &token, 600).is_err());
    }

    #[tokio::test]
    async fn cached_results_stop_at_the_swap_that_removes_their_key() {
        let (old_key, v) = setup(&[]);
        let token = mint(&old_key, json!({"exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 1).await,
            Outcome::Valid { cached: true, .. }
        ));

        // Same key reloaded (a periodic refresh): still a hit.
        let same = KeySet::from_jwks(
            json!({"keys": [old_key.public_jwk()]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        v.set_keys(0, same);
        assert!(matches!(
            v.check(b"", &token, 2).await,
            Outcome::Valid { cached: true, .. }
        ));

        // Rotated away: the cached result is no longer served.
        let new_key = SigningKey::generate(Algorithm::HS256)
            .unwrap()
            .with_kid(Some("k2".into()));
        let rotated = KeySet::from_jwks(
            json!({"keys": [new_key.public_jwk()]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        v.set_keys(0, rotated);
        assert!(v.check_cached(b"", &token, 3).is_err());
        assert!(v.cache().is_empty(), "the refused entry was kept");
        assert!(matches!(
            v.check(b"", &token, 3).await,
            Outcome::Invalid(Rejection {
                reason: Reject::UnknownKey,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn invalid_results_are_not_cached() {
        let (key, v) = setup(&[]);
        let token = mint(&key, json!({"exp": 10}));
        assert!(matches!(
            v.check(b"", &token, 100).await,
            Outcome::Invalid(_)
        ));
        assert!(v.check_cached(b"", &token, 0).is_err());
        assert!(v.cache().is_empty());
    }

    #[tokio::test]
    async fn selectors_pick_one_configured_audience() {
        let (key, v) = setup(&["a", "b"]);
        let token = mint(&key, json!({"exp": 1000, "aud": "b"}));
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { .. }
        ));
        assert!(matches!(
            v.check(b"b", &token, 0).await,
            Outcome::Valid { .. }
        ));
        assert!(matches!(
            v.check(b"a", &token, 0).await,
            Outcome::Invalid(Rejection {
                reason: Reject::Audience,
                ..
            })
        ));
        assert!(matches!(
            v.check(b"c", &token, 0).await,
            Outcome::UnknownSelector
        ));
    }

    #[tokio::test]
    async fn no_keys_means_undecided_until_a_set_is_published() {
        let (key, loaded) = setup(&[]);
        let v = Verifier::new(VerifierConfig::single(Policy::default(), 10, 600));
        assert!(!v.ready());
        let token = mint(&key, json!({"exp": 1000}));
        assert!(matches!(v.check(b"", &token, 0).await, Outcome::NoKeys));
        v.set_keys(0, (*loaded.issuers()[0].keys().unwrap()).clone());
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { .. }
        ));
        assert!(v.ready());
    }

    fn es256(kid: &str) -> SigningKey {
        SigningKey::generate(Algorithm::ES256)
            .unwrap()
            .with_kid(Some(kid.into()))
    }

    fn set_of(keys: &[&SigningKey]) -> KeySet {
        let jwks: Vec<_> = keys.iter().map(|k| k.public_jwk()).collect();
        KeySet::from_jwks(json!({"keys": jwks}).to_string().as_bytes()).unwrap()
    }

    fn issuer(iss: &str, aud: &[&str], refresh: bool) -> IssuerConfig {
        IssuerConfig {
            policy: Policy {
                issuer: Some(iss.into()),
                audiences: aud.iter().map(|a| Box::from(*a)).collect(),
                ..Policy::default()
            },
            unknown_kid: refresh.then_some((Duration::from_secs(30), Duration::from_secs(1))),
            max_stale: None,
        }
    }

    fn reason(outcome: Outcome) -> Reject {
        match outcome {
            Outcome::Invalid(r) => r.reason,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_tokens_iss_picks_the_issuer_and_its_keys_only() {
        let (a, b) = (es256("a"), es256("b"));
        let v = Verifier::new(VerifierConfig {
            issuers: vec![
                issuer("https://a", &["api-a"], false),
                issuer("https://b", &["api-b"], false),
            ],
            cache_entries: 100,
            cache_max_ttl: 600,
        });
        assert!(!v.ready());
        v.set_keys(0, set_of(&[&a]));
        // B has no set yet: its tokens are undecided, A's are judged.
        let b_token = mint(&b, json!({"iss": "https://b", "aud": "api-b", "exp": 1000}));
        assert!(matches!(v.check(b"", &b_token, 0).await, Outcome::NoKeys));
        assert!(!v.ready());
        v.set_keys(1, set_of(&[&b]));
        assert!(v.ready());

        let a_token = mint(&a, json!({"iss": "https://a", "aud": "api-a", "exp": 1000}));
        assert!(matches!(
            v.check(b"", &a_token, 0).await,
            Outcome::Valid { .. }
        ));
        assert!(matches!(
            v.check(b"", &b_token, 0).await,
            Outcome::Valid { .. }
        ));
        // A's key, B's name: only B's keys are tried.
        let forged = mint(&a, json!({"iss": "https://b", "aud": "api-b", "exp": 1000}));
        assert_eq!(reason(v.check(b"", &forged, 0).await), Reject::UnknownKey);
        let stranger = mint(&a, json!({"iss": "https://c", "exp": 1000}));
        assert_eq!(
            reason(v.check(b"", &stranger, 0).await),
            Reject::UnknownIssuer
        );
        let anonymous = mint(&a, json!({"exp": 1000}));
        assert_eq!(
            reason(v.check(b"", &anonymous, 0).await),
            Reject::UnknownIssuer
        );
        let typed = mint(&a, json!({"iss": 7, "exp": 1000}));
        assert_eq!(reason(v.check(b"", &typed, 0).await), Reject::ClaimType);
        // Selectors: any configured audience; refused by the other issuer.
        assert!(matches!(
            v.check(b"api-a", &a_token, 0).await,
            Outcome::Valid { .. }
        ));
        assert_eq!(
            reason(v.check(b"api-b", &a_token, 0).await),
            Reject::Audience
        );
        assert!(matches!(
            v.check(b"api-c", &a_token, 0).await,
            Outcome::UnknownSelector
        ));
        let wrong_aud = mint(&a, json!({"iss": "https://a", "aud": "api-b", "exp": 1000}));
        assert_eq!(reason(v.check(b"", &wrong_aud, 0).await), Reject::Audience);
    }

    #[tokio::test]
    async fn a_cached_result_stops_when_its_own_issuer_drops_the_key() {
        let shared = es256("shared");
        let v = Verifier::new(VerifierConfig {
            issuers: vec![
                issuer("https://a", &[], false),
                issuer("https://b", &[], false),
            ],
            cache_entries: 100,
            cache_max_ttl: 600,
        });
        // The same key trusted by both issuers.
        v.set_keys(0, set_of(&[&shared]));
        v.set_keys(1, set_of(&[&shared]));
        let token = mint(&shared, json!({"iss": "https://a", "exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 1).await,
            Outcome::Valid { cached: true, .. }
        ));
        // A drops it; B still has it, which must not keep A's token alive.
        v.set_keys(0, set_of(&[&es256("other")]));
        assert!(v.check_cached(b"", &token, 2).is_err());
        assert_eq!(reason(v.check(b"", &token, 2).await), Reject::UnknownKey);
    }

    #[tokio::test]
    async fn an_unknown_kid_waits_for_the_refresh_and_is_verified_again() {
        let (old, new) = (es256("old"), es256("new"));
        let v = Verifier::new(VerifierConfig {
            issuers: vec![issuer("https://a", &[], true)],
            cache_entries: 100,
            cache_max_ttl: 600,
        });
        v.set_keys(0, set_of(&[&old]));
        let now = crate::clock::unix_now();
        let token = mint(&new, json!({"iss": "https://a", "exp": now + 3600}));
        let miss = v.check_cached(b"", &token, now).unwrap_err();
        let Outcome::Pending(refreshing) = v.check_uncached(miss, b"", &token, now) else {
            panic!("expected a refresh")
        };
        assert_eq!(refreshing.rejection().unwrap().reason, Reject::UnknownKey);
        // What the fetch task does: publish, then release the waiters.
        let fetcher = v.clone();
        tokio::spawn(async move {
            let gate = fetcher.issuers()[0].gate().unwrap();
            gate.started();
            fetcher.set_keys(0, set_of(&[&old, &new]));
            gate.finished();
        });
        let outcome = refreshing.finish(&v, b"", &token).await;
        assert!(
            matches!(outcome, Outcome::Valid { cached: false, .. }),
            "{outcome:?}"
        );
        // A second unknown kid within the cooldown is refused at once.
        let stranger = mint(&es256("x"), json!({"iss": "https://a", "exp": now + 3600}));
        let miss = v.check_cached(b"", &stranger, now).unwrap_err();
        assert_eq!(
            reason(v.check_uncached(miss, b"", &stranger, now)),
            Reject::UnknownKey
        );
        assert_eq!(v.issuers()[0].gate().unwrap().suppressed(), 1);
    }

    #[tokio::test]
    async fn a_kidless_token_matching_too_many_keys_asks_for_no_refresh() {
        let keys: Vec<SigningKey> = (0..10).map(|n| es256(&format!("k{n}"))).collect();
        let v = Verifier::new(VerifierConfig {
            issuers: vec![issuer("https://a", &[], true)],
            cache_entries: 100,
            cache_max_ttl: 600,
        });
        v.set_keys(0, set_of(&keys.iter().collect::<Vec<_>>()));
        let now = crate::clock::unix_now();
        let payload = json!({"iss": "https://a", "exp": now + 3600}).to_string();
        let token = keys[9]
            .sign_parts(br#"{"alg":"ES256"}"#, payload.as_bytes())
            .unwrap()
            .into_bytes();
        let miss = v.check_cached(b"", &token, now).unwrap_err();
        // Answered at once (not Pending on a refresh), and nothing asked.
        assert_eq!(
            reason(v.check_uncached(miss, b"", &token, now)),
            Reject::UnknownKey
        );
        let gate = v.issuers()[0].gate().unwrap();
        assert_eq!((gate.requested(), gate.suppressed()), (0, 0));
        // An unknown kid still asks for one.
        let stranger = mint(&es256("x"), json!({"iss": "https://a", "exp": now + 3600}));
        let miss = v.check_cached(b"", &stranger, now).unwrap_err();
        assert!(matches!(
            v.check_uncached(miss, b"", &stranger, now),
            Outcome::Pending(_)
        ));
        assert_eq!(gate.requested(), 1);
    }

    #[tokio::test]
    async fn revoked_tokens_are_refused_cached_or_not() {
        let (key, v) = setup(&[]);
        let token = mint(&key, json!({"sub": "alice", "jti": "t1", "exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 0).await,
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 1).await,
            Outcome::Valid { cached: true, .. }
        ));
        let revoked = crate::revocation::jti_key("jwtd:", None, "t1");
        v.revocation()
            .revoke_local(&revoked, b"1".to_vec(), Some(1000), 1);
        // The cached result is still there, but the answer is a reject.
        assert_eq!(reason(v.check(b"", &token, 2).await), Reject::Revoked);
        assert!(!v.cache().is_empty());
        // Uncached tokens of the same subject issued before a subject
        // revocation are refused too.
        let old = mint(&key, json!({"sub": "alice", "iat": 5, "exp": 1000}));
        let new = mint(&key, json!({"sub": "alice", "iat": 20, "exp": 1000}));
        let subject = crate::revocation::sub_key("jwtd:", None, "alice");
        v.revocation()
            .revoke_local(&subject, b"10".to_vec(), None, 2);
        assert_eq!(reason(v.check(b"", &old, 30).await), Reject::Revoked);
        assert!(matches!(
            v.check(b"", &new, 30).await,
            Outcome::Valid { .. }
        ));
    }
}
