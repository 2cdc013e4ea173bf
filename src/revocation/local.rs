//! Local answers: the last value Redis gave for each key, reused until it
//! expires, so most checks end without a lookup.
//!
//! Sharded like the result cache (16 `Mutex<LruCache>`s, chosen by a hash
//! of the key), bounded in entries, and forgetful on purpose: a pushed
//! revocation drops its key's answer, and a reconnected push channel drops
//! every one a missed announcement could have made stale.
//!
//! Also the token's [`Memo`], which rests on these answers. Both expire on
//! tokio's clock ([`tokio::time::Instant`]: the monotonic clock, except in
//! a test that paused it), so their timing is tested on paused time; the
//! two are compared with each other only (a memo lasts no longer than the
//! answers it rests on), never with a `std::time::Instant`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

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

    /// The answer for `key` if known and fresh (`None` inside: absent),
    /// with the instant it stops holding.
    pub fn get(&self, key: &str) -> Option<(Option<Box<[u8]>>, Instant)> {
        let mut shard = self.shard(key);
        let (value, until) = shard.get(key)?;
        if Instant::now() < *until {
            return Some((value.clone(), *until));
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

    /// Keeps only the answers `keep` accepts (key, value; `None`: absent).
    pub fn retain(&self, keep: impl Fn(&str, Option<&[u8]>) -> bool) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let dropped: Vec<String> = shard
                .iter()
                .filter(|(key, (value, _))| !keep(key, value.as_deref()))
                .map(|(key, _)| key.clone())
                .collect();
            for key in dropped {
                shard.pop(&key);
            }
        }
    }
}

/// A token's last "not revoked" decision, kept in its verified-result cache
/// entry, so a cache hit is decided by the same probe that found the entry:
/// no key strings to build, no second table to search. It holds while the
/// answers it rests on do, and only in the push epoch it was made in: any
/// pushed revocation, reconnect of the push channel, or revocation that
/// becomes known bumps the epoch and so retires every memo at once.
///
/// **Refresh ahead.** In the last fifth of a memo's life, the first probe
/// still answers "clear" but also claims the refresh ([`Probe::Refresh`]):
/// its caller looks the token up in the background while every other probe
/// goes on answering from the memo. A token in steady use thus never waits
/// for a lookup and costs one lookup per `cache_ttl`, not one per concurrent
/// request; staleness stays bounded by the memo's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    clear: Option<ClearUntil>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClearUntil {
    until: Instant,
    refresh_from: Instant,
    epoch: u64,
    refreshing: bool,
}

/// What a probe of a [`Memo`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing usable: decide the slow way.
    Miss,
    /// Clear.
    Clear,
    /// Clear, and this caller should refresh it in the background.
    Refresh,
}

impl Memo {
    /// Clear until `until`, as of push epoch `epoch`.
    pub fn clear_until(until: Instant, epoch: u64) -> Memo {
        let now = Instant::now();
        Memo {
            clear: Some(ClearUntil {
                until,
                refresh_from: now + until.saturating_duration_since(now).mul_f64(0.8),
                epoch,
                refreshing: false,
            }),
        }
    }

    /// What the memo says at `now` in push epoch `epoch` (claiming the
    /// refresh when it is due).
    pub fn probe(&mut self, epoch: u64, now: Instant) -> Probe {
        match &mut self.clear {
            Some(c) if c.epoch == epoch && now < c.until => {
                if now >= c.refresh_from && !c.refreshing {
                    c.refreshing = true;
                    Probe::Refresh
                } else {
                    Probe::Clear
                }
            }
            Some(_) => {
                self.clear = None;
                Probe::Miss
            }
            None => Probe::Miss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_holds_for_its_time_and_not_a_moment_longer() {
        let local = LocalAnswers::new(64);
        let keep = Duration::from_secs(1);
        local.insert("k".to_owned(), None, keep);
        let until = Instant::now() + keep;
        assert_eq!(local.get("k"), Some((None, until)));
        tokio::time::advance(keep - Duration::from_millis(1)).await;
        assert_eq!(local.get("k"), Some((None, until)), "still fresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(local.get("k"), None, "expired");
        // An expired answer is dropped, not merely hidden: a later insert
        // starts afresh.
        local.insert("k".to_owned(), Some(b"1".to_vec()), keep);
        assert!(local.get("k").is_some_and(|(v, _)| v.is_some()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_memo_made_now_claims_its_refresh_in_its_last_fifth_on_tokio_time() {
        let ttl = Duration::from_secs(1);
        let mut memo = Memo::clear_until(Instant::now() + ttl, 0);
        tokio::time::advance(Duration::from_millis(790)).await;
        assert_eq!(memo.probe(0, Instant::now()), Probe::Clear);
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(memo.probe(0, Instant::now()), Probe::Refresh);
        assert_eq!(memo.probe(0, Instant::now()), Probe::Clear);
        tokio::time::advance(Duration::from_millis(190)).await;
        assert_eq!(memo.probe(0, Instant::now()), Probe::Miss, "expired");
    }

    #[test]
    fn retain_keeps_what_it_is_told_to() {
        let local = LocalAnswers::new(64);
        let keep = Duration::from_secs(60);
        local.insert("revoked".to_owned(), Some(b"1".to_vec()), keep);
        local.insert("clear".to_owned(), None, keep);
        local.retain(|_, value| value.is_some());
        assert!(local.get("revoked").is_some_and(|(v, _)| v.is_some()));
        assert!(local.get("clear").is_none());
    }

    #[test]
    fn a_memo_holds_in_its_epoch_and_claims_one_refresh_near_its_end() {
        let start = Instant::now();
        let mut m = Memo::clear_until(start + Duration::from_secs(10), 7);
        assert_eq!(m.probe(7, start), Probe::Clear);
        assert_eq!(m.probe(8, start), Probe::Miss, "another epoch");
        assert_eq!(m.probe(7, start), Probe::Miss, "retired for good");

        let mut m = Memo::clear_until(start + Duration::from_secs(10), 7);
        let late = start + Duration::from_secs(9);
        assert_eq!(m.probe(7, late), Probe::Refresh);
        assert_eq!(m.probe(7, late), Probe::Clear, "one refresh only");
        assert_eq!(m.probe(7, start + Duration::from_secs(10)), Probe::Miss);
        assert_eq!(Memo::default().probe(0, start), Probe::Miss);
    }
}
