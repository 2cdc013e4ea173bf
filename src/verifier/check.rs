//! The stages on one token, below the pipeline ([`super::pipeline`]):
//! the cache lookup, verification of a miss (the pure core, with the
//! issuer chosen by `Call`), and the revocation check of every valid
//! result. Each may end in a wait ([`Pending`]): a refresh of the key set
//! for an unknown kid, or a revocation lookup.
//!
//! Everything here is `pub(super)`: only the pipeline (and the verifier's
//! tests) can call a stage, so no front can hand-build the check flow
//! again; the compiler keeps it so.

use std::cell::Cell;
use std::sync::Arc;

use super::Verifier;
use super::issuer::{Call, Opened};
use crate::cache::{Cache, Key};
use crate::jwks::refresh::Wait;
use crate::revocation::{Local, Probe, Standing};
use crate::verify::jwe::{self, DecryptionKeys, JweError};
use crate::verify::{self, Reject, Rejection, Verified};
use arc_swap::ArcSwap;

/// What the daemon answers for one token.
#[derive(Debug)]
pub(super) enum Outcome {
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
    /// Valid, but the DPoP replay cache is full of live proofs: cannot
    /// decide (`overloaded`).
    Busy,
    /// The answer needs a wait (a key refresh, a revocation lookup): await
    /// [`Pending::finish`] for it.
    Pending(Pending),
}

impl Verifier {
    /// A valid result, through the revocation check. `id` is its cache
    /// key, where its revocation memo lives; `probe` what that memo said.
    pub(super) fn valid(
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

    /// Answers from the cache when it can: `Ok` for a hit or an unknown
    /// selector, `Err(Miss)` when the token must be verified (pass the miss
    /// to [`Verifier::check_uncached`], which reuses its cache key).
    pub(super) fn check_cached(
        &self,
        selector: &[u8],
        token: &[u8],
        now: i64,
    ) -> Result<Outcome, Miss> {
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
    /// key that verified it, and, for a token that came in a JWE, whether
    /// the decryption key that opened it is still loaded (for claims
    /// alone, that is all).
    fn still_trusted(&self, hit: &crate::cache::Hit) -> bool {
        if hit.opened_by.is_some_and(|key| !self.still_sealed(key)) {
            return false;
        }
        if hit.result.alg.is_none() {
            return hit.opened_by.is_some();
        }
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
    pub(super) fn check_uncached(
        &self,
        miss: Miss,
        selector: &[u8],
        token: &[u8],
        now: i64,
    ) -> Outcome {
        self.verify_miss(miss, selector, token, now, true)
    }

    pub(super) fn verify_miss(
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
        let started = std::time::Instant::now();
        // A JWE (five segments) with decryption keys: the inner token of a
        // nested JWT is verified as any token is, claims alone (where
        // allowed) as a signed token's claims are; the cache key stays the
        // JWE's own (computed from the bytes the client sent).
        let opened = match self.decrypt(token) {
            Ok(opened) => opened,
            Err(reason) => return Outcome::Invalid(Rejection::from(reason)),
        };
        let call = Call {
            inner: &self.inner,
            selector,
            chosen: Cell::new(None),
            no_keys: Cell::new(false),
            kidless: Cell::new(false),
            opened: opened.as_ref().map(|o| Opened {
                set: o.set,
                sealed: !o.content.nested,
            }),
        };
        let verdict = match &opened {
            None => verify::verify_with(token, &call, now),
            Some(o) if o.content.nested => verify::verify_with(&o.content.plaintext, &call, now),
            Some(o) => verify::verify_sealed_with(
                &o.content.plaintext,
                verify::Sealed {
                    typ: o.content.typ.as_deref(),
                    kid: o.content.kid.as_deref(),
                    key: o.content.key,
                },
                &call,
                now,
            ),
        };
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
                    let opened_by = opened.as_ref().map(|o| o.content.key);
                    self.inner
                        .cache
                        .insert(key, result.clone(), (n, opened_by), expires_at);
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
}

impl Verifier {
    /// Claims a DPoP proof in the shared store: first there, valid; already
    /// there, a replay. A store that cannot be asked follows
    /// `revocation_fail` (the claims live in the revocation store): closed,
    /// undecided; open, valid (counted as a failed lookup).
    async fn claim(
        &self,
        result: Arc<Verified>,
        cached: bool,
        claim: crate::bind::Claim,
    ) -> Outcome {
        let revocation = &self.inner.revocation;
        let key = revocation.replay_key(&claim.jkt, &claim.jti);
        let ttl = std::time::Duration::from_secs(claim.ttl);
        match revocation.claim_once(key, ttl).await {
            Ok(true) => Outcome::Valid { result, cached },
            Ok(false) => {
                tracing::debug!("DPoP proof replayed (seen by another daemon)");
                Outcome::Invalid(Rejection {
                    reason: Reject::DpopReplay,
                    anomalies: result.anomalies,
                })
            }
            Err(error) => {
                tracing::warn!(reason = error.as_str(), %error, "DPoP replay claim failed");
                if revocation.config().fail_open {
                    Outcome::Valid { result, cached }
                } else {
                    Outcome::RevocationUnavailable
                }
            }
        }
    }
}

impl Verifier {
    /// The content of a JWE, when `token` is one and keys are configured
    /// (`Ok(None)`: not a JWE, or no keys, and the core answers `jwe`).
    /// Claims alone are refused `jwe` here when public-key key management
    /// brought them (anyone with the public key could have made them); the
    /// issuer's own settings are checked when the issuer is chosen
    /// ([`Call`]).
    fn decrypt(&self, token: &[u8]) -> Result<Option<OpenedJwe>, Reject> {
        if self.inner.jwe.is_empty() || memchr::memchr_iter(b'.', token).count() != 4 {
            return Ok(None);
        }
        if token.len() > self.inner.limits.max_token_bytes {
            return Err(Reject::TooLarge);
        }
        let guards: Vec<_> = self.inner.jwe.iter().map(ArcSwap::load).collect();
        let sets: Vec<&DecryptionKeys> = guards.iter().map(|g| &***g).collect();
        match jwe::decrypt_in(token, &sets) {
            Ok((set, content)) => {
                // On a miss only (a decryption costs far more than the
                // lookup of a labelled counter).
                metrics::counter!(
                    "jwtd_jwe_decrypted_total",
                    "alg" => content.alg.as_str(),
                    "enc" => content.enc.as_str()
                )
                .increment(1);
                if !content.nested && content.alg.is_public() {
                    tracing::debug!(
                        alg = content.alg.as_str(),
                        enc = content.enc.as_str(),
                        "JWE of claims alone with public-key key management refused"
                    );
                    return Err(Reject::Jwe);
                }
                Ok(Some(OpenedJwe { set, content }))
            }
            Err(JweError::Decrypt) => Err(Reject::JweDecrypt),
            Err(problem) => {
                tracing::debug!(%problem, "JWE refused");
                Err(Reject::Jwe)
            }
        }
    }

    /// Whether a decryption key set still holds the key that decrypted a
    /// claims-only result.
    fn still_sealed(&self, key: verify::KeyFingerprint) -> bool {
        self.inner.jwe.iter().any(|set| set.load().contains(key))
    }
}

/// A decrypted JWE, and which key set opened it.
struct OpenedJwe {
    set: usize,
    content: jwe::Decrypted,
}

/// A valid result's outcome once its revocation status is decided.
fn decided(result: Arc<Verified>, cached: bool, standing: Standing) -> Outcome {
    match standing {
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
pub(super) struct Miss {
    key: Option<Key>,
}

/// An answer that needs a wait: see [`Outcome::Pending`].
#[derive(Debug)]
pub(super) struct Pending {
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
    /// A valid, bound token, while its DPoP proof is claimed in the shared
    /// store (the binding stage has passed it otherwise).
    Claim {
        result: Arc<Verified>,
        cached: bool,
        claim: crate::bind::Claim,
    },
}

impl Pending {
    /// The reject this becomes if a refresh does not help (`None` for a
    /// revocation lookup).
    pub(super) fn rejection(&self) -> Option<Rejection> {
        match &self.kind {
            PendingKind::Refresh { rejection, .. } => Some(*rejection),
            PendingKind::Revocation { .. } | PendingKind::Claim { .. } => None,
        }
    }

    /// A DPoP proof claim: its outcome has been through the binding stage
    /// already.
    pub(super) fn is_claim(&self) -> bool {
        matches!(self.kind, PendingKind::Claim { .. })
    }

    /// A claim of `claim` for a valid `result` the binding stage passed.
    pub(super) fn claim(result: Arc<Verified>, cached: bool, claim: crate::bind::Claim) -> Pending {
        Pending {
            kind: PendingKind::Claim {
                result,
                cached,
                claim,
            },
        }
    }

    /// Waits, then answers. A refresh is waited for at most the issuer's
    /// `unknown_kid_wait`, and the token is then verified once more (never
    /// starting another refresh); a revocation lookup at most the batch
    /// deadline.
    pub(super) async fn finish(
        self,
        verifier: &Verifier,
        selector: &[u8],
        token: &[u8],
    ) -> Outcome {
        let (result, cached, now, id) = match self.kind {
            PendingKind::Revocation {
                result,
                cached,
                now,
                id,
            } => (result, cached, now, id),
            PendingKind::Claim {
                result,
                cached,
                claim,
            } => return verifier.claim(result, cached, claim).await,
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
