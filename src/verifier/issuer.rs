//! The issuer registry: one [`Issuer`] per configured issuer (its policy,
//! the policies of its request selectors, its current key set behind
//! `ArcSwap`, its refresh gate and source health), the [`IssuerKeys`] sink
//! key sources publish through, and the [`Trust`] of one verification
//! (`Call`), which picks the issuer for a token's `iss`.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{Inner, Verifier};
use crate::jwks::refresh::RefreshGate;
use crate::jwks::source::KeySink;
use crate::verify::{KeySet, Policy, Reject, Trust};

/// How one issuer's key source is doing, for logs, readiness and metrics.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix second of the last good set (fetched, confirmed unchanged, or
    /// loaded); 0 before the first.
    pub(super) last_good: AtomicI64,
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
    pub(super) keys: ArcSwapOption<KeySet>,
    pub(super) default: Policy,
    /// One entry per known selector: the policy requiring exactly that
    /// audience, or `None` when this issuer does not accept it.
    pub(super) by_selector: HashMap<Box<[u8]>, Option<Policy>>,
    pub(super) gate: Option<RefreshGate>,
    pub(super) max_stale: Option<Duration>,
    pub(super) health: Health,
    pub(super) jwe: super::IssuerJwe,
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

    pub(super) fn ready(&self, now: i64) -> bool {
        let Some(last_good) = self.health.last_good() else {
            return false;
        };
        self.max_stale.is_none_or(|max| {
            let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            now.saturating_sub(last_good) <= max
        })
    }
}

/// One issuer's [`KeySink`]: key sources publish through it without knowing
/// the verifier.
#[derive(Clone)]
pub struct IssuerKeys {
    pub(super) verifier: Verifier,
    pub(super) issuer: usize,
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

/// The [`Trust`] of one verification: picks the issuer, records which.
pub(super) struct Call<'v> {
    pub(super) inner: &'v Inner,
    pub(super) selector: &'v [u8],
    pub(super) chosen: Cell<Option<usize>>,
    pub(super) no_keys: Cell<bool>,
    /// A kid-less token was refused for matching too many keys.
    pub(super) kidless: Cell<bool>,
    /// The token came in a JWE: which issuers it may be for.
    pub(super) opened: Option<Opened>,
}

/// What a token's JWE envelope says about the issuer its content may be
/// for (checked in [`Call::select`], before any signature work).
#[derive(Debug, Clone, Copy)]
pub(super) struct Opened {
    /// The decryption key set that opened it.
    pub(super) set: usize,
    /// Claims alone (no inner signature).
    pub(super) sealed: bool,
}

/// A loaded key set, kept alive for one verification.
pub(super) struct Loaded(arc_swap::Guard<Option<Arc<KeySet>>>);

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
        if let Some(opened) = self.opened {
            match issuer.jwe.keys {
                // This issuer takes no JWE.
                None => return Err(Reject::Jwe),
                // Opened with keys that are not this issuer's: to it, the
                // envelope is one none of its keys decrypts.
                Some(set) if set != opened.set => return Err(Reject::JweDecrypt),
                Some(_) => {}
            }
            if opened.sealed && !issuer.jwe.unsigned_claims {
                return Err(Reject::Jwe);
            }
        }
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
        // Claims alone need no signing key: the decryption key vouched.
        if keys.is_none() && !self.opened.is_some_and(|o| o.sealed) {
            self.no_keys.set(true);
            return Err(Reject::UnknownKey);
        }
        Ok((Loaded(keys), policy))
    }
}
