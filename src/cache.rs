//! The verified-result cache: a token verified once is answered from memory
//! until it expires.
//!
//! **Key.** SHA-256 over the policy selector and the token bytes (with the
//! selector length first, so no two (selector, token) pairs share an input).
//! A collision-resistant digest means no attacker-chosen token can be made to
//! answer for another; a 64-bit hash could be (research: B.4).
//!
//! **Lifetime.** An entry carries the instant the core itself would start
//! rejecting the token (`exp + leeway`), capped by a maximum TTL for tokens
//! without `exp`; it is never served at or after that instant and is dropped
//! when found expired.
//!
//! **Contention.** The cache is split into [`SHARDS`] independent
//! `Mutex<LruCache>`s chosen by the digest's first byte, so two cores rarely
//! meet on one lock; each critical section is a hash lookup and a list
//! relink (tens of nanoseconds).
//!
//! Only valid results are cached: caching rejects would let garbage evict
//! real entries, and rejects of well-formed garbage are cheap anyway except
//! for bad signatures, which a later issue may cache separately.
//!
//! Entries remember the key that verified them ([`Verified::key`], a content
//! fingerprint) and the issuer whose set held it; [`crate::verifier::Verifier`]
//! serves a hit only while that issuer's current key set still holds that key, so a key removed by a swap stops
//! vouching at once, without walking the cache.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest;
use lru::LruCache;

use crate::revocation::{Memo, Probe};
use crate::verify::{KeyFingerprint, Verified};

/// Number of shards (a power of two).
pub const SHARDS: usize = 16;

/// A cache key: SHA-256 of (selector, token).
pub type Key = [u8; 32];

/// A cached verification.
#[derive(Debug, Clone)]
struct Entry {
    /// Unix second from which this entry must not be served.
    expires_at: i64,
    /// The verified result, shared with in-flight replies.
    result: Arc<Verified>,
    /// Which issuer's key set vouches for it (an index into the verifier's
    /// issuers), so a hit checks that set without looking `iss` up.
    issuer: u32,
    /// The revocation checker's last "not revoked" decision for this token,
    /// probed under the same lock as the lookup (see `revocation::Probe`).
    memo: Memo,
    /// The decryption key that opened it, for a token that came in a JWE:
    /// served only while that key is loaded too.
    opened_by: Option<KeyFingerprint>,
}

/// A cache hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The verified result.
    pub result: Arc<Verified>,
    /// The issuer index it was cached with.
    pub issuer: usize,
    /// What the entry's revocation memo said.
    pub probe: Probe,
    /// The decryption key that opened it (a token that came in a JWE).
    pub opened_by: Option<KeyFingerprint>,
}

/// One independently locked part of the cache.
type Shard = Mutex<LruCache<Key, Entry>>;

/// The verified-result cache. Share it behind an `Arc`.
pub struct Cache {
    /// `None` when caching is disabled (capacity 0).
    shards: Option<Box<[Shard]>>,
    /// Entries pushed out by newer ones (capacity), for the metrics.
    evictions: std::sync::atomic::AtomicU64,
}

impl Cache {
    /// A cache of about `capacity` entries in total (0 disables caching).
    pub fn new(capacity: usize) -> Cache {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS));
        Cache {
            shards: per_shard.map(|n| (0..SHARDS).map(|_| Mutex::new(LruCache::new(n))).collect()),
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether caching is on (capacity above 0).
    pub fn is_enabled(&self) -> bool {
        self.shards.is_some()
    }

    /// The key for `token` under `selector`.
    pub fn key(selector: &[u8], token: &[u8]) -> Key {
        let mut ctx = digest::Context::new(&digest::SHA256);
        // Selectors are at most 255 bytes (one length byte in the protocol).
        ctx.update(&[u8::try_from(selector.len()).unwrap_or(u8::MAX)]);
        ctx.update(selector);
        ctx.update(token);
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn shard(&self, key: &Key) -> Option<MutexGuard<'_, LruCache<Key, Entry>>> {
        let shards = self.shards.as_ref()?;
        let shard = &shards[usize::from(key[0]) & (SHARDS - 1)];
        // A panic while holding the lock cannot leave an LruCache half
        // updated in a way that matters here; keep serving.
        Some(
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The cached result for `key`, if present and not expired at `now`,
    /// with what `probe` makes of its revocation memo (under the same lock).
    pub fn get(&self, key: &Key, now: i64, probe: impl FnOnce(&mut Memo) -> Probe) -> Option<Hit> {
        let mut shard = self.shard(key)?;
        let entry = shard.get_mut(key)?;
        if now < entry.expires_at {
            return Some(Hit {
                result: entry.result.clone(),
                issuer: entry.issuer as usize,
                probe: probe(&mut entry.memo),
                opened_by: entry.opened_by,
            });
        }
        shard.pop(key);
        None
    }

    /// Caches `result`, vouched for by issuer `issuer` (and, for a token
    /// that came in a JWE, by the decryption key `opened_by`), until
    /// `expires_at` (Unix seconds, exclusive).
    pub fn insert(
        &self,
        key: Key,
        result: Arc<Verified>,
        (issuer, opened_by): (usize, Option<KeyFingerprint>),
        expires_at: i64,
    ) {
        // Issuer indexes come from configuration (a handful); one that does
        // not fit is never cached rather than cached under another.
        let Ok(issuer) = u32::try_from(issuer) else {
            return;
        };
        if let Some(mut shard) = self.shard(&key) {
            let pushed_out = shard.push(
                key,
                Entry {
                    expires_at,
                    result,
                    issuer,
                    memo: Memo::default(),
                    opened_by,
                },
            );
            drop(shard);
            // `push` also returns the old value of the same key: not an
            // eviction.
            if pushed_out.is_some_and(|(old, _)| old != key) {
                self.evictions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Sets the revocation memo of `key`'s entry, if it is still cached
    /// (no promotion: this is bookkeeping, not use).
    pub fn set_memo(&self, key: &Key, memo: Memo) {
        if let Some(mut shard) = self.shard(key)
            && let Some(entry) = shard.peek_mut(key)
        {
            entry.memo = memo;
        }
    }

    /// Drops the entry for `key`, if any.
    pub fn remove(&self, key: &Key) {
        if let Some(mut shard) = self.shard(key) {
            shard.pop(key);
        }
    }

    /// Entries pushed out by newer ones so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Entries currently held (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.shards.as_ref().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
                .sum()
        })
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Algorithm, Anomalies, Claims};

    fn verified(kid: &str) -> Arc<Verified> {
        Arc::new(Verified {
            claims: Claims {
                iss: None,
                sub: Some("s".into()),
                jti: None,
                exp: Some(100),
                nbf: None,
                iat: None,
                cnf: None,
                raw: bytes::Bytes::from_static(b"{}"),
            },
            alg: Some(Algorithm::ES256),
            kid: Some(kid.into()),
            key: crate::verify::KeyFingerprint([7; 32]),
            anomalies: Anomalies::NONE,
        })
    }

    #[test]
    fn entry_is_served_until_expiry_and_never_after() {
        let cache = Cache::new(100);
        let k = Cache::key(b"", b"tok");
        cache.insert(k, verified("a"), (0, None), 130);
        assert!(cache.get(&k, 129, |_| Probe::Miss).is_some());
        assert!(
            cache.get(&k, 130, |_| Probe::Miss).is_none(),
            "served at expires_at"
        );
        assert!(
            cache.get(&k, 129, |_| Probe::Miss).is_none(),
            "expired entry was not dropped"
        );
    }

    #[test]
    fn selector_is_part_of_the_key() {
        assert_ne!(Cache::key(b"", b"tok"), Cache::key(b"api", b"tok"));
        // Length prefix: ("a", "bc") and ("ab", "c") differ.
        assert_ne!(Cache::key(b"a", b"bc"), Cache::key(b"ab", b"c"));
    }

    #[test]
    fn capacity_bounds_entries() {
        let cache = Cache::new(SHARDS * 2);
        for i in 0..1000u32 {
            cache.insert(
                Cache::key(b"", &i.to_be_bytes()),
                verified("a"),
                (0, None),
                i64::MAX,
            );
        }
        assert!(cache.len() <= SHARDS * 2, "{} entries", cache.len());
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = Cache::new(0);
        assert!(!cache.is_enabled());
        let k = Cache::key(b"", b"tok");
        cache.insert(k, verified("a"), (0, None), i64::MAX);
        assert!(cache.get(&k, 0, |_| Probe::Miss).is_none());
        assert!(cache.is_empty());
    }
}
