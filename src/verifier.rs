//! [`Verifier`]: the one shared handle every front (native socket, and later
//! HTTP and gRPC) calls to answer "is this token valid?".
//!
//! It joins the pure core ([`crate::verify`]) with the state around it: the
//! current key set (behind `ArcSwap`, so a new set is published whole with
//! one store and readers never wait), the policies (the default one and one
//! per configured audience, selected by name), and the result cache. It does
//! no I/O and knows nothing of sockets or frames. Cloning it clones an `Arc`.
//!
//! The check is split in two so a front can answer cache hits inline and
//! move only the expensive part (signature verification) elsewhere:
//! [`Verifier::check_cached`] then, on a miss, [`Verifier::check_uncached`].

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::cache::Cache;
use crate::jwks::KeySet;
use crate::verify::{self, Policy, Rejection, Verified};

/// What the daemon answers for one token.
#[derive(Debug, Clone)]
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
    /// No key set loaded: cannot decide.
    NoKeys,
    /// The selector names no configured audience.
    UnknownSelector,
}

/// Settings of a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The default policy. Its audiences are also the valid selectors.
    pub policy: Policy,
    /// Cache capacity in entries (0 disables the cache).
    pub cache_entries: usize,
    /// Longest time a result is cached, for tokens without (or with a far)
    /// `exp`, in seconds.
    pub cache_max_ttl: u64,
}

struct Inner {
    /// The current trusted keys; `None` until the first set is loaded.
    keys: ArcSwapOption<KeySet>,
    /// The default policy (empty selector).
    default: Policy,
    /// One policy per configured audience, requiring exactly that audience.
    by_selector: HashMap<Box<[u8]>, Policy>,
    /// Verified results.
    cache: Cache,
    /// See [`VerifierConfig::cache_max_ttl`].
    cache_max_ttl: i64,
}

/// The shared verification handle. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl Verifier {
    /// A verifier with `keys` loaded (or none yet).
    pub fn new(config: VerifierConfig, keys: Option<KeySet>) -> Verifier {
        let by_selector = config
            .policy
            .audiences
            .iter()
            .map(|aud| {
                let policy = Policy {
                    audiences: vec![aud.clone()],
                    ..config.policy.clone()
                };
                (Box::from(aud.as_bytes()), policy)
            })
            .collect();
        Verifier {
            inner: Arc::new(Inner {
                keys: ArcSwapOption::from(keys.map(Arc::new)),
                default: config.policy,
                by_selector,
                cache: Cache::new(config.cache_entries),
                cache_max_ttl: i64::try_from(config.cache_max_ttl).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Publishes a new key set. The set must be complete and validated: this
    /// is the one store readers see.
    pub fn set_keys(&self, keys: KeySet) {
        self.inner.keys.store(Some(Arc::new(keys)));
    }

    /// Whether a key set is loaded.
    pub fn has_keys(&self) -> bool {
        self.inner.keys.load().is_some()
    }

    /// The verified-result cache.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    fn policy(&self, selector: &[u8]) -> Option<&Policy> {
        if selector.is_empty() {
            Some(&self.inner.default)
        } else {
            self.inner.by_selector.get(selector)
        }
    }

    /// Answers from the cache when it can: `Ok` for a hit or an unknown
    /// selector, `Err(Miss)` when the token must be verified (pass the miss
    /// to [`Verifier::check_uncached`], which reuses its cache key).
    pub fn check_cached(&self, selector: &[u8], token: &[u8], now: i64) -> Result<Outcome, Miss> {
        if self.policy(selector).is_none() {
            return Ok(Outcome::UnknownSelector);
        }
        if !self.inner.cache.is_enabled() {
            return Err(Miss { key: None });
        }
        let key = Cache::key(selector, token);
        match self.inner.cache.get(&key, now) {
            // Served only while the key that verified it is still trusted:
            // a key removed by a swap stops vouching at once, and a result
            // cached by a verification that raced the swap is refused too.
            Some(result) if self.still_trusted(&result) => Ok(Outcome::Valid {
                result,
                cached: true,
            }),
            Some(_) => {
                // Its key left the set: drop it rather than keep promoting
                // an entry that will never be served.
                self.inner.cache.remove(&key);
                Err(Miss { key: Some(key) })
            }
            None => Err(Miss { key: Some(key) }),
        }
    }

    fn still_trusted(&self, result: &Verified) -> bool {
        self.inner
            .keys
            .load()
            .as_deref()
            .is_some_and(|keys| keys.contains(result.key))
    }

    /// Verifies `token` (no cache lookup) and caches a valid result.
    pub fn check_uncached(&self, miss: Miss, selector: &[u8], token: &[u8], now: i64) -> Outcome {
        let Some(policy) = self.policy(selector) else {
            return Outcome::UnknownSelector;
        };
        let keys = self.inner.keys.load();
        let Some(keys) = keys.as_deref() else {
            return Outcome::NoKeys;
        };
        match verify::verify(token, keys, policy, now) {
            Ok(verified) => {
                let result = Arc::new(verified);
                let leeway = i64::try_from(policy.leeway).unwrap_or(0);
                let cap = now.saturating_add(self.inner.cache_max_ttl);
                let expires_at = result
                    .claims
                    .exp
                    .map_or(cap, |exp| exp.saturating_add(leeway).min(cap));
                if let Some(key) = miss.key {
                    self.inner.cache.insert(key, result.clone(), expires_at);
                }
                Outcome::Valid {
                    result,
                    cached: false,
                }
            }
            Err(rejection) => Outcome::Invalid(rejection),
        }
    }

    /// Both steps: the cache, then verification.
    pub fn check(&self, selector: &[u8], token: &[u8], now: i64) -> Outcome {
        self.check_cached(selector, token, now)
            .unwrap_or_else(|miss| self.check_uncached(miss, selector, token, now))
    }
}

/// A cache miss: the token must be verified. Carries the cache key so the
/// token is hashed once per request (none when the cache is disabled).
#[derive(Debug)]
pub struct Miss {
    key: Option<crate::cache::Key>,
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
        let config = VerifierConfig {
            policy,
            cache_entries: 1000,
            cache_max_ttl: 600,
        };
        (key, Verifier::new(config, Some(keys)))
    }

    fn mint(key: &SigningKey, claims: serde_json::Value) -> Vec<u8> {
        key.mint(&claims, &Default::default()).unwrap().into_bytes()
    }

    #[test]
    fn second_check_is_a_cache_hit_until_exp_plus_leeway() {
        let (key, v) = setup(&[]);
        let token = mint(&key, json!({"exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 900),
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 901),
            Outcome::Valid { cached: true, .. }
        ));
        // Leeway 30: the core accepts until 1029, the cache serves until then.
        assert!(matches!(
            v.check(b"", &token, 1029),
            Outcome::Valid { cached: true, .. }
        ));
        assert!(v.check_cached(b"", &token, 1030).is_err());
        assert!(matches!(
            v.check(b"", &token, 1030),
            Outcome::Invalid(Rejection {
                reason: Reject::Expired,
                ..
            })
        ));
    }

    #[test]
    fn tokens_without_exp_are_cached_for_at_most_the_max_ttl() {
        let (key, v) = setup(&[]);
        let v = Verifier::new(
            VerifierConfig {
                policy: Policy {
                    required: vec![],
                    ..Policy::default()
                },
                cache_entries: 10,
                cache_max_ttl: 600,
            },
            v.inner.keys.load_full().map(|k| (*k).clone()),
        );
        let token = mint(&key, json!({"sub": "x"}));
        assert!(matches!(
            v.check(b"", &token, 0),
            Outcome::Valid { cached: false, .. }
        ));
        assert!(v.check_cached(b"", &token, 599).is_ok());
        assert!(v.check_cached(b"", &token, 600).is_err());
    }

    #[test]
    fn cached_results_stop_at_the_swap_that_removes_their_key() {
        let (old_key, v) = setup(&[]);
        let token = mint(&old_key, json!({"exp": 1000}));
        assert!(matches!(
            v.check(b"", &token, 0),
            Outcome::Valid { cached: false, .. }
        ));
        assert!(matches!(
            v.check(b"", &token, 1),
            Outcome::Valid { cached: true, .. }
        ));

        // Same key reloaded (a periodic refresh): still a hit.
        let same = KeySet::from_jwks(
            json!({"keys": [old_key.public_jwk()]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        v.set_keys(same);
        assert!(matches!(
            v.check(b"", &token, 2),
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
        v.set_keys(rotated);
        assert!(v.check_cached(b"", &token, 3).is_err());
        assert!(v.cache().is_empty(), "the refused entry was kept");
        assert!(matches!(
            v.check(b"", &token, 3),
            Outcome::Invalid(Rejection {
                reason: Reject::UnknownKey,
                ..
            })
        ));
    }

    #[test]
    fn invalid_results_are_not_cached() {
        let (key, v) = setup(&[]);
        let token = mint(&key, json!({"exp": 10}));
        assert!(matches!(v.check(b"", &token, 100), Outcome::Invalid(_)));
        assert!(v.check_cached(b"", &token, 0).is_err());
        assert!(v.cache().is_empty());
    }

    #[test]
    fn selectors_pick_one_configured_audience() {
        let (key, v) = setup(&["a", "b"]);
        let token = mint(&key, json!({"exp": 1000, "aud": "b"}));
        assert!(matches!(v.check(b"", &token, 0), Outcome::Valid { .. }));
        assert!(matches!(v.check(b"b", &token, 0), Outcome::Valid { .. }));
        assert!(matches!(
            v.check(b"a", &token, 0),
            Outcome::Invalid(Rejection {
                reason: Reject::Audience,
                ..
            })
        ));
        assert!(matches!(v.check(b"c", &token, 0), Outcome::UnknownSelector));
    }

    #[test]
    fn no_keys_means_undecided_until_a_set_is_published() {
        let (key, loaded) = setup(&[]);
        let v = Verifier::new(
            VerifierConfig {
                policy: Policy::default(),
                cache_entries: 10,
                cache_max_ttl: 600,
            },
            None,
        );
        let token = mint(&key, json!({"exp": 1000}));
        assert!(matches!(v.check(b"", &token, 0), Outcome::NoKeys));
        v.set_keys((*loaded.inner.keys.load_full().unwrap()).clone());
        assert!(matches!(v.check(b"", &token, 0), Outcome::Valid { .. }));
    }
}
