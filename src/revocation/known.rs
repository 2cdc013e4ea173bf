//! Known revocations: what this daemon knows to be revoked, whatever the
//! store says later.
//!
//! An entry is a revoked `jti` key, or a subject key with its cut-off time
//! `T` (every token of that subject with `iat <= T`, or without `iat`, is
//! revoked). Entries come from revocations this daemon carried out (the
//! native REVOKE op, `jwtd revoke --socket`), from announcements pushed by
//! other sidecars (read back from Redis), and from lookups that found a
//! revocation. They decide "revoked" on their own, before any memo, local
//! answer or lookup: a Redis that lost its data (FLUSHALL, a restart without
//! persistence) answers "absent", and that answer never takes a revocation
//! back; a Redis that is down changes nothing either, in either fail mode.
//! Nothing removes an entry but its expiry or the cap.
//!
//! **Expiry.** A `jti` entry expires at the token's `exp` + 300 s (the
//! largest leeway a verifier may apply), after which no verifier accepts the
//! token anyway. A subject entry is kept by the store's rule ([`Known::new`]):
//! forever without Redis (it is the only record), and with Redis for
//! [`SUBJECT_KEEP`] after the later of `T` and the moment it was learnt,
//! prolonged to `exp` + 300 s of every token it refuses (a token being
//! replayed keeps its subject's entry alive as long as it could pass).
//!
//! **Cap.** At most `capacity` entries. When an entry would go beyond it,
//! the expired entries are dropped first; if the table is still full, the
//! entry that expires soonest goes (it protects for the shortest time; a
//! subject entry without Redis never expires, so it goes last). Every such
//! eviction is counted ([`Known::evicted`]) and the first is logged: with
//! Redis, an evicted revocation is still enforced through lookups. Measured:
//! 276 bytes per entry with 65-byte keys, about 18 MB for a full table.
//!
//! Nothing is looked up here until something was revoked ([`Known::is_empty`]
//! is one relaxed load), and a check that finds nothing costs one hash
//! lookup per key under a shared (read) lock; only inserts, which sweep the
//! expired entries, and prolonging a subject take the write lock. Cached
//! tokens whose memo is in force skip this table altogether.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How long a subject cut-off learnt with Redis is kept locally (from the
/// later of its time and the moment it was learnt), unless a token it
/// refuses keeps it longer.
pub const SUBJECT_KEEP: i64 = 86_400;

/// Most entries (276 bytes each with 65-byte keys, measured: about 18 MB
/// when full; `docs/revocation.md`).
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What is known of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// A revoked `jti`.
    Jti,
    /// A subject's cut-off: tokens with `iat <= T` (or no `iat`) are revoked.
    Subject(i64),
}

#[derive(Debug)]
struct Entry {
    fact: Fact,
    /// Unix second from which the entry no longer holds.
    expires_at: i64,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<Arc<str>, Entry>,
    /// Every entry by expiry, for the sweep and the eviction.
    by_expiry: BTreeSet<(i64, Arc<str>)>,
}

impl Table {
    fn remove(&mut self, key: &str) {
        if let Some((key, entry)) = self.map.remove_entry(key) {
            self.by_expiry.remove(&(entry.expires_at, key));
        }
    }

    fn set_expiry(&mut self, key: &Arc<str>, expires_at: i64) {
        if let Some(entry) = self.map.get_mut(key)
            && entry.expires_at != expires_at
        {
            self.by_expiry.remove(&(entry.expires_at, key.clone()));
            entry.expires_at = expires_at;
            self.by_expiry.insert((expires_at, key.clone()));
        }
    }
}

/// Revocations known locally. See the module doc.
#[derive(Debug)]
pub struct Known {
    table: RwLock<Table>,
    capacity: usize,
    /// Subject entries never expire (no Redis behind this table).
    subjects_forever: bool,
    /// Whether anything was ever known: until then a check takes no lock.
    used: AtomicBool,
    evicted: AtomicU64,
}

/// What [`Known::insert`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new fact, or a wider one (a later subject cut-off).
    New,
    /// Known already (its expiry may have been prolonged).
    Same,
    /// Already expired at `now`: not kept.
    Expired,
}

impl Known {
    /// Room for `capacity` entries (at least one). `subjects_forever`: the
    /// table is the only record (no Redis), so subject cut-offs never expire.
    pub fn new(capacity: usize, subjects_forever: bool) -> Known {
        Known {
            table: RwLock::new(Table::default()),
            capacity: capacity.max(1),
            subjects_forever,
            used: AtomicBool::new(false),
            evicted: AtomicU64::new(0),
        }
    }

    // No code under this lock can panic; a poisoned table is still
    // consistent.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing was ever known here.
    pub fn is_empty(&self) -> bool {
        !self.used.load(Ordering::Relaxed)
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Entries dropped by the cap while still in force.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// When a subject cut-off `before`, learnt at `now`, stops being kept
    /// (unless a token prolongs it).
    pub fn subject_expiry(&self, before: i64, now: i64) -> i64 {
        if self.subjects_forever {
            i64::MAX
        } else {
            before.max(now).saturating_add(SUBJECT_KEEP)
        }
    }

    /// What is known of `key` at `now`. Checks share the table (a read
    /// lock); expired entries are swept by the inserts.
    pub fn get(&self, key: &str, now: i64) -> Option<Fact> {
        if self.is_empty() {
            return None;
        }
        let table = self.read();
        let entry = table.map.get(key)?;
        (now < entry.expires_at).then_some(entry.fact)
    }

    /// Prolongs `key`'s entry to at least `until` (a token it refused could
    /// pass until then).
    pub fn prolong(&self, key: &str, until: i64) {
        if self
            .read()
            .map
            .get(key)
            .is_none_or(|entry| entry.expires_at >= until)
        {
            return;
        }
        let mut table = self.write();
        if let Some((key, entry)) = table.map.get_key_value(key)
            && entry.expires_at < until
        {
            let key = key.clone();
            table.set_expiry(&key, until);
        }
    }

    /// Records `fact` for `key` until `expires_at` (Unix second, exclusive).
    /// A fact already known is never narrowed: a subject keeps the later of
    /// its cut-offs, every entry the later of its expiries.
    pub fn insert(&self, key: &str, fact: Fact, expires_at: i64, now: i64) -> Inserted {
        if expires_at <= now {
            return Inserted::Expired;
        }
        let mut table = self.write();
        // Sweep what expired (the oldest first; a few at a time on
        // average, as many as were inserted).
        while let Some((at, old)) = table.by_expiry.first().cloned()
            && at <= now
        {
            table.remove(&old);
        }
        if let Some((shared, entry)) = table.map.get_key_value(key) {
            let shared = shared.clone();
            let wider = match (entry.fact, fact) {
                (Fact::Subject(old), Fact::Subject(new)) if new > old => Some(fact),
                (Fact::Jti, Fact::Jti) | (Fact::Subject(_), Fact::Subject(_)) => None,
                // The same key cannot hold both (the kind is in the key);
                // a mismatch means a hand-written key: keep what revokes
                // more, which for one key is the newer fact.
                _ => Some(fact),
            };
            let expires_at = expires_at.max(entry.expires_at);
            if let Some(fact) = wider
                && let Some(entry) = table.map.get_mut(&shared)
            {
                entry.fact = fact;
            }
            table.set_expiry(&shared, expires_at);
            return if wider.is_some() {
                Inserted::New
            } else {
                Inserted::Same
            };
        }
        if table.map.len() >= self.capacity {
            self.make_room(&mut table);
        }
        let key: Arc<str> = Arc::from(key);
        table.by_expiry.insert((expires_at, key.clone()));
        table.map.insert(key, Entry { fact, expires_at });
        self.used.store(true, Ordering::Relaxed);
        Inserted::New
    }

    /// Drops the entry expiring soonest (the expired ones are gone
    /// already: [`Known::insert`] sweeps them first).
    fn make_room(&self, table: &mut Table) {
        if let Some((_, key)) = table.by_expiry.first().cloned() {
            table.remove(&key);
            if self.evicted.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    capacity = self.capacity,
                    "known revocations full: dropping the one that expires soonest \
                     (with Redis it is still enforced through lookups)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_hold_until_their_expiry_and_are_never_narrowed() {
        let k = Known::new(16, false);
        assert!(k.is_empty());
        assert_eq!(k.get("j", 0), None);
        assert_eq!(k.insert("j", Fact::Jti, 100, 0), Inserted::New);
        assert_eq!(k.get("j", 99), Some(Fact::Jti));
        assert_eq!(k.get("j", 100), None, "expired");
        assert_eq!(k.insert("t", Fact::Jti, 200, 100), Inserted::New);
        assert_eq!(k.len(), 1, "an expired entry is swept by an insert");

        assert_eq!(k.insert("s", Fact::Subject(50), 1000, 0), Inserted::New);
        assert_eq!(k.insert("s", Fact::Subject(40), 500, 0), Inserted::Same);
        assert_eq!(k.get("s", 999), Some(Fact::Subject(50)), "never earlier");
        assert_eq!(k.insert("s", Fact::Subject(60), 10, 0), Inserted::New);
        assert_eq!(k.get("s", 999), Some(Fact::Subject(60)), "later cut-off");
        k.prolong("s", 2000);
        assert_eq!(k.get("s", 1999), Some(Fact::Subject(60)));
        assert_eq!(k.insert("x", Fact::Jti, 5, 5), Inserted::Expired);
        assert_eq!(k.get("x", 0), None);
    }

    #[test]
    fn when_full_the_expired_go_first_then_the_soonest_to_expire() {
        let k = Known::new(3, false);
        k.insert("a", Fact::Jti, 10, 0);
        k.insert("b", Fact::Jti, 300, 0);
        k.insert("c", Fact::Jti, 200, 0);
        // At 20, "a" has expired: it makes the room.
        k.insert("d", Fact::Jti, 400, 20);
        assert_eq!(k.evicted(), 0);
        assert_eq!(k.len(), 3);
        // Nothing expired: "c" (200) is the soonest.
        k.insert("e", Fact::Jti, 500, 20);
        assert_eq!(k.evicted(), 1);
        assert_eq!(k.get("c", 20), None);
        for key in ["b", "d", "e"] {
            assert_eq!(k.get(key, 20), Some(Fact::Jti), "{key}");
        }
    }

    #[test]
    fn subject_cut_offs_expire_only_with_redis_behind() {
        let with_redis = Known::new(4, false);
        assert_eq!(with_redis.subject_expiry(100, 50), 100 + SUBJECT_KEEP);
        assert_eq!(with_redis.subject_expiry(10, 50), 50 + SUBJECT_KEEP);
        let alone = Known::new(4, true);
        assert_eq!(alone.subject_expiry(100, 50), i64::MAX);
    }
}
