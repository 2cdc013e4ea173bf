//! Local answers: the last value Redis gave for each key, reused until it
//! expires, so most checks end without a lookup.
//!
//! Sharded like the result cache (16 `Mutex<LruCache>`s, chosen by a hash
//! of the key), bounded in entries, and forgetful on purpose: a pushed
//! revocation drops its key's answer, and a reconnected push channel drops
//! them all.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

const SHARDS: usize = 16;

/// A key's last answer: its value (`None`: absent) and until when it holds.
type Answer = (Option<Box<[u8]>>, Instant);

/// Local answers, by Redis key.
pub struct LocalAnswers {
    shards: Box<[Mutex<LruCache<String, Answer>>]>,
    hasher: RandomState,
}

impl LocalAnswers {
    /// Room for about `capacity` keys (at least one per shard).
    pub fn new(capacity: usize) -> LocalAnswers {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        LocalAnswers {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, LruCache<String, Answer>> {
        let n = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // No code under this lock can panic; a poisoned shard still holds
        // consistent entries.
        self.shards[n].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer for `key` if known and fresh: `Some(None)` = absent.
    pub fn get(&self, key: &str) -> Option<Option<Box<[u8]>>> {
        let mut shard = self.shard(key);
        let (value, until) = shard.get(key)?;
        if Instant::now() < *until {
            return Some(value.clone());
        }
        shard.pop(key);
        None
    }

    /// Remembers `value` for `key` during `keep`.
    pub fn insert(&self, key: String, value: Option<Vec<u8>>, keep: Duration) {
        let until = Instant::now() + keep;
        self.shard(&key)
            .put(key, (value.map(Vec::into_boxed_slice), until));
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) {
        self.shard(key).pop(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}
