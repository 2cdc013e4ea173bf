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

const SHARDS: usize = 16;

/// What [`Replay::admit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// First time seen: recorded.
    Fresh,
    /// Seen before, within its window.
    Replayed,
    /// Not recorded: the cache is full of live entries.
    Full,
}

/// One shard: proof key -> Unix second it may be forgotten.
type Shard = Mutex<HashMap<[u8; 16], i64>>;

/// The replay cache.
pub struct Replay {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl Replay {
    /// A cache of about `capacity` proofs.
    pub fn new(capacity: usize) -> Replay {
        Replay {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records `key` until `until` (Unix seconds) unless it is there and
    /// live at `now`.
    pub fn admit(&self, key: [u8; 16], until: i64, now: i64) -> Admit {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&expires) = map.get(&key)
            && expires >= now
        {
            return Admit::Replayed;
        }
        if map.len() >= self.per_shard {
            map.retain(|_, expires| *expires >= now);
            if map.len() >= self.per_shard {
                return Admit::Full;
            }
        }
        map.insert(key, until);
        Admit::Fresh
    }

    /// Entries held (live or not yet dropped).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache key of a proof: 16 bytes of SHA-256(jkt || jti).
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
        let k = key(&[1; 32], "a");
        assert_eq!(replay.admit(k, 160, 100), Admit::Fresh);
        assert_eq!(replay.admit(k, 160, 150), Admit::Replayed);
        // Another key or another jti is another proof.
        assert_eq!(replay.admit(key(&[2; 32], "a"), 160, 100), Admit::Fresh);
        assert_eq!(replay.admit(key(&[1; 32], "b"), 160, 100), Admit::Fresh);
        // Past its window it is forgotten (and would be stale anyway).
        assert_eq!(replay.admit(k, 300, 161), Admit::Fresh);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_and_never_live_ones() {
        let replay = Replay::new(SHARDS); // one entry per shard
        // Find two keys of the same shard.
        let mut same = (0u32..)
            .map(|i| key(&[0; 32], &i.to_string()))
            .filter(|k| usize::from(k[0]) % SHARDS == 0);
        let (a, b) = (same.next().unwrap(), same.next().unwrap());
        assert_eq!(replay.admit(a, 160, 100), Admit::Fresh);
        assert_eq!(replay.admit(b, 160, 100), Admit::Full);
        assert_eq!(replay.admit(a, 160, 120), Admit::Replayed);
        assert_eq!(replay.admit(b, 300, 161), Admit::Fresh);
        assert_eq!(replay.len(), 1);
    }
}
