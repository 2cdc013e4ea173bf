//! The in-memory revocation store: what jwtd uses without Redis. One
//! process's list, written through the native REVOKE op (`jwtd revoke
//! --socket`); answers are exact and immediate, so checks never wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A key's value and expiry (Unix second, exclusive; `None`: never).
type Entry = (Vec<u8>, Option<i64>);

/// Revoked keys with their value and expiry.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
    /// Whether anything was ever revoked: until then a check takes no lock.
    used: AtomicBool,
}

impl MemoryStore {
    /// Whether nothing was ever revoked here.
    pub fn is_empty(&self) -> bool {
        !self.used.load(Ordering::Relaxed)
    }

    /// The value of `key` at `now`, if present and not expired.
    pub fn get(&self, key: &str, now: i64) -> Option<Vec<u8>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((_, Some(exp))) if now >= *exp => {
                map.remove(key);
                None
            }
            Some((value, _)) => Some(value.clone()),
            None => None,
        }
    }

    /// Sets `key` to `value` until `expires_at` (`None`: forever). Expired
    /// entries are swept whenever the map doubles, so it stays bounded by
    /// what is live.
    pub fn insert(&self, key: String, value: Vec<u8>, expires_at: Option<i64>, now: i64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, (value, expires_at));
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, (_, exp)| exp.is_none_or(|exp| now < exp));
        }
        self.used.store(true, Ordering::Relaxed);
    }
}
