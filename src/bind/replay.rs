//! The in-memory DPoP replay cache: every proof's `(jkt, jti)` seen within
//! its window, so the same proof is accepted once per daemon. (With Redis,
//! the binding stage also claims it there, so a replay to another daemon
//! is caught: see `crate::revocation::Revocation::claim_once`.)
//!
//! Sharded maps from a 16-byte digest of `(jkt, jti)` to the Unix second
//! the entry may be forgotten (the proof's `iat` + window + leeway: after
//! that the proof is refused as stale anyway). A full shard first drops
//! its expired entries; if it is still full, the proof is not admitted
//! (answered undecided `overloaded`) rather than making room by forgetting
//! a proof that could still be replayed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const SHARDS: usize = 16;

/// What [`Replay::admit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// First time seen: recorded.
    Fresh,
    /// Seen before, within its window.
    Replayed,
    /// Not recorded: the cache, or this key's share of it, is full of live
    /// entries.
    Full,
}

/// One key's live proofs (16-byte digest of the `jti` -> Unix second it
/// may be forgotten), and when they were last swept.
#[derive(Default)]
struct KeyProofs {
    proofs: HashMap<[u8; 16], i64>,
    swept: i64,
}

/// One shard: every key whose thumbprint falls in it, and when the whole
/// shard was last swept.
#[derive(Default)]
struct Shard {
    keys: HashMap<[u8; 32], KeyProofs>,
    swept: i64,
}

/// The replay cache.
///
/// Sharded by the proof key's thumbprint, with a share per key: one key
/// may hold at most half of the capacity, so a client flooding proofs with
/// fresh `jti`s (it needs a bound token of its own to get this far) fills
/// its own share and is answered `overloaded`, while other clients' proofs
/// are still admitted. Expired entries are swept when room is needed, at
/// most once a second per key and per shard, so a flood against a full
/// share costs no sweep per request; [`Replay::has_room`] lets the caller
/// refuse such a flood before it pays for a proof's signature.
pub struct Replay {
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    capacity: usize,
    per_key: usize,
}

impl Replay {
    /// A cache of about `capacity` proofs.
    pub fn new(capacity: usize) -> Replay {
        let capacity = capacity.max(1);
        Replay {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            len: AtomicUsize::new(0),
            capacity,
            per_key: capacity.div_ceil(2),
        }
    }

    fn shard(&self, jkt: &[u8; 32]) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(jkt[0]) % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a new proof of key `jkt` could be admitted at `now` (its
    /// share and the cache not both full of live proofs, as far as the
    /// last sweeps know): a cheap test before the proof's signature.
    pub fn has_room(&self, jkt: &[u8; 32], now: i64) -> bool {
        let shard = self.shard(jkt);
        let full_share = shard
            .keys
            .get(jkt)
            .is_some_and(|k| k.proofs.len() >= self.per_key && k.swept >= now);
        let full_cache = self.len.load(Ordering::Relaxed) >= self.capacity && shard.swept >= now;
        !(full_share || full_cache)
    }

    /// Records the proof `jti` (a digest) of key `jkt` until `until` (Unix
    /// seconds) unless it is there and live at `now`.
    pub fn admit(&self, jkt: &[u8; 32], jti: [u8; 16], until: i64, now: i64) -> Admit {
        let mut shard = self.shard(jkt);
        let shard = &mut *shard;
        let key = shard.keys.entry(*jkt).or_default();
        if let Some(expires) = key.proofs.get_mut(&jti) {
            if *expires >= now {
                return Admit::Replayed;
            }
            // Expired: renewed in place.
            *expires = until;
            return Admit::Fresh;
        }
        if key.proofs.len() >= self.per_key {
            if key.swept >= now {
                return Admit::Full;
            }
            key.swept = now;
            let before = key.proofs.len();
            key.proofs.retain(|_, expires| *expires >= now);
            self.len
                .fetch_sub(before - key.proofs.len(), Ordering::Relaxed);
            if key.proofs.len() >= self.per_key {
                return Admit::Full;
            }
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity && shard.swept < now {
            shard.swept = now;
            let mut dropped = 0;
            shard.keys.retain(|_, key| {
                let before = key.proofs.len();
                key.proofs.retain(|_, expires| *expires >= now);
                dropped += before - key.proofs.len();
                !key.proofs.is_empty()
            });
            self.len.fetch_sub(dropped, Ordering::Relaxed);
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            return Admit::Full;
        }
        shard
            .keys
            .entry(*jkt)
            .or_default()
            .proofs
            .insert(jti, until);
        self.len.fetch_add(1, Ordering::Relaxed);
        Admit::Fresh
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache key of a proof's `jti`: 16 bytes of SHA-256(jkt || jti).
pub fn key(jkt: &[u8; 32], jti: &str) -> [u8; 16] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(jkt);
    ctx.update(jti.as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_admitted_once_within_its_window() {
        let replay = Replay::new(100);
        let (a, b) = ([1; 32], [2; 32]);
        let k = key(&a, "a");
        assert_eq!(replay.admit(&a, k, 160, 100), Admit::Fresh);
        assert_eq!(replay.admit(&a, k, 160, 150), Admit::Replayed);
        // Another key or another jti is another proof.
        assert_eq!(replay.admit(&b, key(&b, "a"), 160, 100), Admit::Fresh);
        assert_eq!(replay.admit(&a, key(&a, "b"), 160, 100), Admit::Fresh);
        // Past its window it is forgotten (and would be stale anyway).
        assert_eq!(replay.admit(&a, k, 300, 161), Admit::Fresh);
        assert_eq!(replay.len(), 3);
    }

    #[test]
    fn one_key_fills_only_its_share_and_a_full_cache_never_forgets_a_live_proof() {
        let replay = Replay::new(16); // eight per key
        let flood = [9u8; 32];
        for i in 0..8 {
            let k = key(&flood, &i.to_string());
            assert_eq!(replay.admit(&flood, k, 160, 100), Admit::Fresh, "{i}");
        }
        assert_eq!(
            replay.admit(&flood, key(&flood, "8"), 160, 100),
            Admit::Full
        );
        assert!(!replay.has_room(&flood, 100), "a full share is known full");
        // Others are still admitted, until the whole cache is full.
        for i in 0..8u8 {
            let other = [i + 20; 32];
            assert!(replay.has_room(&other, 100));
            assert_eq!(
                replay.admit(&other, key(&other, "x"), 160, 100),
                Admit::Fresh,
                "{i}"
            );
        }
        let late = [200u8; 32];
        assert_eq!(replay.admit(&late, key(&late, "x"), 160, 100), Admit::Full);
        // Once the proofs expire, room again (swept at most once a second).
        assert_eq!(replay.admit(&late, key(&late, "x"), 300, 161), Admit::Fresh);
        assert!(replay.has_room(&flood, 161));
        assert_eq!(
            replay.admit(&flood, key(&flood, "8"), 300, 161),
            Admit::Fresh
        );
    }
}
