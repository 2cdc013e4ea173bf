//! Revocation: is this (valid) token on the blacklist?
//!
//! Stateless tokens cannot be recalled, so jwtd checks every valid token,
//! cache hits included, against a revocation store shared by the fleet
//! (Redis), at a cost kept to microseconds by three mechanisms: batched
//! lookups, a local answer cache, and pushed invalidations.
//!
//! # Data model (documented for operators in `docs/revocation.md`)
//!
//! Keys are scoped by issuer, so two issuers' `jti`s never collide, and carry
//! the issuer in a Redis Cluster hash tag, so every key of one issuer lives
//! in one slot and a batch is one `MGET` per issuer even on a cluster:
//!
//! - `<prefix>{<tag>}:jti:<jti>`: present (any value) = that token is
//!   revoked. Written with `SET ... EXAT <exp>`, so it expires with the token.
//! - `<prefix>{<tag>}:sub:<sub>`: a Unix time `T`; every token of that
//!   subject with `iat <= T` (or without `iat`) is revoked.
//!
//! `<prefix>` defaults to `jwtd:`; `<tag>` is the first 16 hex digits of the
//! SHA-256 of the token's `iss` (`-` when it has none). Revocations are
//! announced on the channel `<prefix>revocations` with the key as message.
//!
//! # The path of one check ([`Revocation::check_local`], then [`Revocation::check`])
//!
//! 1. A token without `jti` and `sub` is clear: there is nothing to look up.
//! 2. **Memo**: a cached token's last "not revoked" decision, in force
//!    while the answers it rests on are and no revocation became known
//!    since (see [`Memo`]).
//! 3. **Known revocations** ([`known`]): revocations this daemon carried
//!    out, received (pushed), or found by a lookup. They decide "revoked"
//!    on their own, until the token's `exp` + 300 s, whatever Redis answers
//!    later or whether it answers at all: a Redis that lost its data says
//!    "absent", and that never takes a known revocation back.
//! 4. **Local answers** (`local.rs`): each key's last answer is kept, a
//!    revoked `jti` until the token's `exp`, anything else for `cache_ttl`
//!    (1 s). Most checks end here, inline, without a task switch.
//! 5. **Batched lookup** ([`batch`]): the missing keys join the batcher's
//!    queue; it sends what it holds as one `MGET` per issuer when the batch
//!    is full or the window (250 µs) ends, with duplicate keys asked once.
//!    One multiplexed connection (or the cluster client) carries every
//!    batch, made again after a failed one. A revocation found becomes
//!    known (3).
//! 6. **Push**: a subscriber on the channel drops a key's local answer the
//!    moment `jwtd revoke` announces it, so a revocation takes effect within
//!    milliseconds, not `cache_ttl`, and reads the key back to make it known
//!    (3). When the subscription drops and comes back, every local answer
//!    but a revoked `jti` is dropped (announcements may have been missed);
//!    known revocations stay.
//!
//! Every revocation that becomes known bumps the push epoch, which retires
//! every memo: a memo in force was made after the last one became known,
//! by a decision that consulted them.
//!
//! # When Redis is slow or down
//!
//! Each batch has a deadline (`timeout`); a failed or late batch answers
//! every request in it with a [`StoreError`] (why: a timeout, a refused
//! connection, an error reply, the open circuit), counted by reason
//! ([`Stats::failed_lookups`]). The check then decides
//! [`Standing::Unavailable`], which the verifier turns into "could not
//! decide" (UNDECIDED `revocation_unavailable`) unless revocation fails
//! open, in which case the token counts as clear; a known revocation is
//! "revoked" in both modes. After [`batch::BREAKER_FAILURES`] failed batches
//! in a row the circuit opens: lookups fail at once, without adding the
//! timeout to every request, and one probe batch is let through every
//! [`batch::BREAKER_PROBE`], so checking resumes within a fraction of a
//! second of Redis returning.
//!
//! Every connection to Redis (batches, reads of pushed keys, writes, the
//! push subscription, `jwtd revoke --redis`) is made the same way, by
//! `remote::Target`.
//!
//! # Claims (DPoP replay protection)
//!
//! The store also answers "was this key ever claimed within its time to
//! live?" for the whole fleet ([`Revocation::claim_once`]): a DPoP proof's
//! `(jkt, jti)` is claimed under [`Revocation::replay_key`],
//! `<prefix>dpop:<hex SHA-256(jkt || jti)>`, with `SET <key> 1 NX PX <ttl>`,
//! so exactly one daemon's claim is first. Claims ride in the lookups'
//! batches (same round trips, deadline, breaker and [`StoreError`]s; see
//! [`batch`]); nothing of them is cached locally. Without Redis every
//! claim is first: the binding stage's own replay cache is the whole
//! store.
//!
//! # Clocks
//!
//! Memos and local answers expire on tokio's clock
//! ([`tokio::time::Instant`]), so tests decide their expiry with paused
//! time; outside a paused test it is the monotonic clock. Known revocations
//! expire on the wall clock in Unix seconds (the `now` of a check), as the
//! tokens' `exp` they follow does.
//!
//! Without Redis, the known revocations are the whole store: every check
//! is answered inline; they are written through the native REVOKE op
//! ([`Revocation::revoke`], `jwtd revoke --socket`), and subject cut-offs
//! never expire there.

pub mod batch;
pub mod known;
mod local;
mod push;
mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::verify::Verified;
use batch::Batcher;
use known::{Fact, Inserted, Known};
use local::LocalAnswers;
pub use local::{Memo, Probe};
pub use remote::StoreError;
use remote::Target;

/// Revocation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// Key prefix (and channel prefix).
    pub prefix: String,
    /// Treat an unreachable store as "not revoked" (default: as "could not
    /// decide").
    pub fail_open: bool,
    /// How long the batcher waits for more lookups after the first.
    pub window: Duration,
    /// Most tokens in one batch.
    pub batch_max: usize,
    /// Deadline of one batch's round trip.
    pub timeout: Duration,
    /// How long a "not revoked" answer is reused.
    pub cache_ttl: Duration,
    /// Local answers kept, at most.
    pub cache_entries: usize,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            prefix: "jwtd:".to_owned(),
            fail_open: false,
            window: Duration::from_micros(250),
            batch_max: 256,
            timeout: Duration::from_millis(100),
            cache_ttl: Duration::from_secs(1),
            cache_entries: 100_000,
        }
    }
}

/// A valid token's standing against the revocation list: what a check
/// decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not revoked (or the store was unreachable and revocation fails open).
    Clear,
    /// Revoked.
    Revoked,
    /// The store could not be asked and revocation fails closed.
    Unavailable,
}

/// Counters, for the exit log line, benchmarks and the metrics exported on
/// `/metrics` (`crate::metrics` copies them when it renders).
#[derive(Debug, Default)]
pub struct Stats {
    /// Checks that waited for a batch.
    pub looked_up: AtomicU64,
    /// Batches sent.
    pub batches: AtomicU64,
    /// Keys asked, over all batches (after deduplication).
    pub keys: AtomicU64,
    /// Largest batch, in keys (lookup keys after deduplication, and
    /// claims).
    pub max_batch: AtomicU64,
    /// Batches that failed or timed out.
    pub failed_batches: AtomicU64,
    /// Requests (lookups and claims) refused at once by the open circuit.
    pub short_circuited: AtomicU64,
    /// Claims ([`Revocation::claim_once`]) sent, over all batches.
    pub claims: AtomicU64,
    /// Claims that found their key already there (replays).
    pub replays: AtomicU64,
    /// Tokens let through because the store was unavailable (fail open).
    pub failed_open: AtomicU64,
    /// Tokens answered "could not decide" (fail closed).
    pub failed_closed: AtomicU64,
    /// Pushed revocations received.
    pub pushed: AtomicU64,
    /// The last round trip to the store failed (false before any).
    pub down: std::sync::atomic::AtomicBool,
    /// Lookups and claims that got no answer, by reason (indexed like
    /// [`StoreError::REASONS`]).
    failed_lookups: [AtomicU64; StoreError::REASONS.len()],
}

impl Stats {
    /// Whether the store answered the last round trip (true for the
    /// in-memory store, and before any round trip).
    pub fn backend_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// Lookups (and claims, [`Revocation::claim_once`]) that got no
    /// answer, by reason ([`StoreError::as_str`]), every reason listed (in
    /// [`StoreError::REASONS`] order).
    pub fn failed_lookups(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        StoreError::REASONS
            .iter()
            .zip(&self.failed_lookups)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
    }

    fn lookup_failed(&self, why: &StoreError) {
        self.failed_lookups[why.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Where answers come from.
enum Store {
    /// No store but the known revocations.
    Memory,
    Remote(Batcher),
}

struct Inner {
    config: RevocationConfig,
    store: Store,
    /// The last answer Redis gave for each key (remote store only).
    local: LocalAnswers,
    /// Revocations known here, whatever the store says.
    known: Known,
    /// Bumped by every pushed revocation, reconnect and newly known
    /// revocation: retires every
    /// [`Memo`], and keeps a lookup that raced a push from caching its
    /// answers.
    epoch: AtomicU64,
    stats: Arc<Stats>,
}

/// What [`Revocation::check_local`] could decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Decided; a "not revoked" decision comes with a memo for the token's
    /// cache entry.
    Decided(Standing, Option<Memo>),
    /// Not revoked (its memo says so), and due for a refresh: answer now,
    /// and run [`Revocation::refresh`] in the background.
    Refresh,
    /// Unknown locally: [`Revocation::check`] asks the store.
    Lookup,
}

/// The revocation checker shared by every front. Cheap to clone.
#[derive(Clone)]
pub struct Revocation {
    inner: Arc<Inner>,
}

/// The keys one token is checked under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    /// `<prefix>{<tag>}:jti:<jti>`, if the token has a `jti`.
    pub jti: Option<String>,
    /// `<prefix>{<tag>}:sub:<sub>`, if the token has a `sub`.
    pub sub: Option<String>,
}

/// The key of a revoked `jti` of issuer `iss`.
pub fn jti_key(prefix: &str, iss: Option<&str>, jti: &str) -> String {
    format!("{prefix}{{{}}}:jti:{jti}", issuer_tag(iss))
}

/// The key of a revoked subject of issuer `iss`.
pub fn sub_key(prefix: &str, iss: Option<&str>, sub: &str) -> String {
    format!("{prefix}{{{}}}:sub:{sub}", issuer_tag(iss))
}

/// Whether `key` is a jti key (`...}:jti:...` right after the hash tag).
fn is_jti_key(key: &str) -> bool {
    key.find('}')
        .is_some_and(|close| key[close + 1..].starts_with(":jti:"))
}

/// Whether `key` is a subject key (`...}:sub:...` right after the hash tag).
fn is_sub_key(key: &str) -> bool {
    key.find('}')
        .is_some_and(|close| key[close + 1..].starts_with(":sub:"))
}

/// The channel revocations are announced on.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}revocations")
}

/// The hash tag of an issuer: 16 hex digits of SHA-256(iss), or `-`.
///
/// Every check builds keys, almost always for the same issuer or two: the
/// last tag is remembered per thread, so the digest runs once per issuer
/// change, not per request.
fn issuer_tag(iss: Option<&str>) -> String {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(Box<str>, String)>> = const { RefCell::new(None) };
    }
    let Some(iss) = iss else {
        return "-".to_owned();
    };
    LAST.with_borrow_mut(|last| {
        if let Some((seen, tag)) = last
            && **seen == *iss
        {
            return tag.clone();
        }
        let d = digest::digest(&digest::SHA256, iss.as_bytes());
        let tag: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        *last = Some((Box::from(iss), tag.clone()));
        tag
    })
}

/// The largest leeway any verifier may apply past `exp`: a revoked jti is
/// kept that long after its `exp`, or the token would pass again.
const MAX_LEEWAY: i64 = crate::verify::MAX_LEEWAY_SECS as i64;

/// How long a token without `exp` is taken to stay acceptable from `now`
/// (such a token never expires; its revocation is kept a day at a time).
const NO_EXP_KEEP: i64 = 86_400;

/// The Unix second until which a token with this `exp` could still be
/// accepted by some verifier (`exp` + the largest leeway), so until which
/// a revocation of it must hold; a day from `now` for a token without
/// `exp`. A revoked jti's key expires then, in Redis and here alike.
fn passes_until(exp: Option<i64>, now: i64) -> i64 {
    exp.map_or(now.saturating_add(NO_EXP_KEEP), |exp| {
        exp.saturating_add(MAX_LEEWAY)
    })
}

/// A revocation as it is stored: the key, what it makes known, and when
/// the key expires. One computation for the daemon's own record of a
/// revocation and for what it writes to Redis (or what `jwtd revoke
/// --redis` writes), so the two can never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `<prefix>{<tag>}:jti:<jti>` or `<prefix>{<tag>}:sub:<sub>`.
    pub(crate) key: String,
    /// What the key says.
    pub(crate) fact: Fact,
    /// Unix second the key expires (`EXAT`); `None`: never (subjects).
    pub(crate) expires_at: Option<i64>,
}

impl Entry {
    /// The value written: `1` for a jti, the cut-off time for a subject.
    pub(crate) fn value(&self) -> String {
        match self.fact {
            Fact::Jti => "1".to_owned(),
            Fact::Subject(before) => before.to_string(),
        }
    }
}

impl Revoke {
    /// How this revocation, for tokens of issuer `iss`, is stored under
    /// key prefix `prefix`: a jti until the last second any verifier could
    /// accept the token, a subject's cut-off for good.
    pub(crate) fn entry(&self, prefix: &str, iss: Option<&str>) -> Entry {
        match self {
            Revoke::Jti { jti, exp } => Entry {
                key: jti_key(prefix, iss, jti),
                fact: Fact::Jti,
                expires_at: Some(passes_until(Some(*exp), 0)),
            },
            Revoke::Subject { sub, before } => Entry {
                key: sub_key(prefix, iss, sub),
                fact: Fact::Subject(*before),
                expires_at: None,
            },
        }
    }
}

/// Whether a subject revocation time `before` covers a token issued at `iat`
/// (a token without `iat` is covered: it cannot prove it is newer).
fn subject_revokes(before: i64, iat: Option<i64>) -> bool {
    iat.is_none_or(|iat| iat <= before)
}

/// Reads a subject key's value; garbage counts as "every token" (fail safe).
fn parse_before(value: &[u8]) -> i64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(i64::MAX)
}

impl Revocation {
    /// A checker without Redis: the known revocations are the whole store
    /// (subject cut-offs never expire there).
    pub fn memory(config: RevocationConfig) -> Revocation {
        Revocation::with_store(config, Store::Memory, Arc::default())
    }

    /// A checker on Redis: `urls` holds one `redis://` URL, or several
    /// cluster nodes. Connections are made in the background (a Redis down
    /// at start is retried like one that goes down later).
    ///
    /// The batcher, its round trips, the Redis connections (revocations
    /// written through the daemon included) and the push subscriber run on
    /// a runtime of their own, on one dedicated thread:
    /// on the daemon's workers, a burst of signature checks would keep the
    /// connection from reading replies Redis sent in microseconds, batches
    /// would miss their deadline and the breaker would open on a healthy
    /// Redis (seen in tests on 2 busy cores).
    ///
    /// # Errors
    ///
    /// If a URL is malformed, or the thread cannot be started. The message
    /// may quote a URL: show it through [`scrub`].
    pub fn redis(
        config: RevocationConfig,
        urls: &[String],
    ) -> Result<Revocation, redis::RedisError> {
        let target = Arc::new(Target::parse(urls)?);
        let stats = Arc::new(Stats::default());
        let io = io_runtime().map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Io, "revocation thread", e.to_string()))
        })?;
        let batcher = Batcher::spawn(&io, target.clone(), &config, stats.clone());
        let revocation = Revocation::with_store(config, Store::Remote(batcher), stats);
        io.spawn(push::subscribe(target, revocation.clone()));
        Ok(revocation)
    }

    fn with_store(config: RevocationConfig, store: Store, stats: Arc<Stats>) -> Revocation {
        let alone = matches!(store, Store::Memory);
        Revocation {
            inner: Arc::new(Inner {
                local: LocalAnswers::new(config.cache_entries),
                known: Known::new(known::DEFAULT_CAPACITY, alone),
                epoch: AtomicU64::new(0),
                store,
                config,
                stats,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RevocationConfig {
        &self.inner.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The revocations known here.
    pub fn known(&self) -> &Known {
        &self.inner.known
    }

    /// The keys `token` is checked under.
    pub fn keys(&self, token: &Verified) -> TokenKeys {
        let prefix = &self.inner.config.prefix;
        let iss = token.claims.iss.as_deref();
        TokenKeys {
            jti: token.claims.jti.as_deref().map(|j| jti_key(prefix, iss, j)),
            sub: token.claims.sub.as_deref().map(|s| sub_key(prefix, iss, s)),
        }
    }

    /// The probe for a cached token's [`Memo`], run by the cache under its
    /// shard lock.
    pub fn memo_probe(&self) -> impl FnOnce(&mut Memo) -> Probe + use<> {
        let epoch = match self.inner.store {
            Store::Remote(_) => Some(self.inner.epoch.load(Ordering::Acquire)),
            // Without Redis every answer is exact and at once: no memo.
            Store::Memory => None,
        };
        move |memo| match epoch {
            Some(epoch) => memo.probe(epoch, Instant::now()),
            None => Probe::Miss,
        }
    }

    /// Decides from what is known locally: the token's memo (`probe`,
    /// [`Probe::Miss`] for a token not in the cache), the known
    /// revocations, and the local answers of a remote store.
    pub fn check_local(&self, token: &Verified, now: i64, probe: Probe) -> Local {
        let claims = &token.claims;
        if claims.jti.is_none() && claims.sub.is_none() {
            return Local::Decided(Standing::Clear, None);
        }
        match &self.inner.store {
            // Nothing revoked (the usual case): no key to build.
            Store::Memory if self.inner.known.is_empty() => Local::Decided(Standing::Clear, None),
            Store::Memory => {
                let revoked = self.known_revokes(&self.keys(token), token, now);
                Local::Decided(decide(revoked, None, token), None)
            }
            // A memo in force was made after the last revocation became
            // known (each one retires every memo): it stands.
            Store::Remote(_) => match probe {
                Probe::Clear => Local::Decided(Standing::Clear, None),
                Probe::Refresh => Local::Refresh,
                Probe::Miss => {
                    // The epoch before the known revocations: one learnt
                    // after this read retires the memo made below.
                    let epoch = self.inner.epoch.load(Ordering::Acquire);
                    let keys = self.keys(token);
                    if self.known_revokes(&keys, token, now) {
                        return Local::Decided(Standing::Revoked, None);
                    }
                    self.decide_from_answers(token, &keys, epoch)
                        .unwrap_or(Local::Lookup)
                }
            },
        }
    }

    /// Whether a known revocation covers `token`. A subject cut-off that
    /// does is kept at least as long as the token could pass.
    fn known_revokes(&self, keys: &TokenKeys, token: &Verified, now: i64) -> bool {
        let known = &self.inner.known;
        if known.is_empty() {
            return false;
        }
        if keys
            .jti
            .as_deref()
            .is_some_and(|k| known.get(k, now).is_some())
        {
            return true;
        }
        let Some(sub) = keys.sub.as_deref() else {
            return false;
        };
        match known.get(sub, now) {
            Some(Fact::Subject(before)) if subject_revokes(before, token.claims.iat) => {
                known.prolong(sub, passes_until(token.claims.exp, now));
                true
            }
            _ => false,
        }
    }

    /// Records a revocation as known; one that is new (or wider) retires
    /// every memo.
    fn remember(&self, key: &str, fact: Fact, expires_at: i64, now: i64) {
        if self.inner.known.insert(key, fact, expires_at, now) == Inserted::New {
            self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records `fact`, learnt at `now`, as known for as long as it must
    /// hold: a jti until its key expires (`key_expires_at`; a day from now
    /// for a key without expiry, as for a token without `exp`), a subject's
    /// cut-off as [`Known::subject_expiry`] says. Every revocation this
    /// daemon learns (carried out, pushed, or found by a lookup) is
    /// recorded here.
    fn learnt(&self, key: &str, fact: Fact, key_expires_at: Option<i64>, now: i64) {
        let until = match fact {
            Fact::Jti => key_expires_at.unwrap_or_else(|| passes_until(None, now)),
            Fact::Subject(before) => self.inner.known.subject_expiry(before, now),
        };
        self.remember(key, fact, until, now);
    }

    /// Decides from the keys' local answers, if both are known. `epoch`:
    /// read before the known revocations were consulted.
    fn decide_from_answers(&self, token: &Verified, keys: &TokenKeys, epoch: u64) -> Option<Local> {
        let local = &self.inner.local;
        let far = Instant::now() + Duration::from_secs(86_400);
        let (jti, jti_until) = match keys.jti.as_deref() {
            Some(k) => {
                let (value, until) = local.get(k)?;
                (value.is_some(), until)
            }
            None => (false, far),
        };
        let (sub, sub_until) = match keys.sub.as_deref() {
            Some(k) => local.get(k)?,
            None => (None, far),
        };
        let decision = decide(jti, sub.as_deref().map(parse_before), token);
        let memo = (decision == Standing::Clear)
            .then(|| Memo::clear_until(jti_until.min(sub_until), epoch));
        Some(Local::Decided(decision, memo))
    }

    /// Decides, asking the store if needed (batched with concurrent checks).
    /// A "not revoked" decision comes with a memo for the token's cache
    /// entry.
    pub async fn check(&self, token: &Verified, now: i64) -> (Standing, Option<Memo>) {
        match self.check_local(token, now, Probe::Miss) {
            Local::Decided(decision, memo) => (decision, memo),
            Local::Refresh | Local::Lookup => self.look_up(token, now).await,
        }
    }

    /// A background refresh of a token whose memo is about to expire: its
    /// local answers are dropped and asked again. Returns the memo to store
    /// (`Memo::default()` if the token is no longer clear).
    pub async fn refresh(&self, token: &Verified, now: i64) -> Memo {
        let keys = self.keys(token);
        for key in keys.jti.iter().chain(keys.sub.iter()) {
            self.inner.local.remove(key);
        }
        self.look_up(token, now).await.1.unwrap_or_default()
    }

    /// Asks the store (batched) and records the answers.
    async fn look_up(&self, token: &Verified, now: i64) -> (Standing, Option<Memo>) {
        let Store::Remote(batcher) = &self.inner.store else {
            return (Standing::Clear, None);
        };
        self.inner.stats.looked_up.fetch_add(1, Ordering::Relaxed);
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let keys = self.keys(token);
        if self.known_revokes(&keys, token, now) {
            return (Standing::Revoked, None);
        }
        let asked: Vec<String> = keys.jti.iter().chain(keys.sub.iter()).cloned().collect();
        let answers = match batcher
            .lookup(asked.clone(), self.inner.config.timeout)
            .await
        {
            Ok(answers) => answers,
            Err(why) => {
                self.inner.stats.lookup_failed(&why);
                // Known meanwhile (a REVOKE, a push): revoked, store or not.
                if self.known_revokes(&keys, token, now) {
                    return (Standing::Revoked, None);
                }
                return (self.unavailable(), None);
            }
        };
        let mut jti_revoked = false;
        let mut before = None;
        let passes = passes_until(token.claims.exp, now);
        let mut until = Instant::now() + self.inner.config.cache_ttl;
        for (key, value) in asked.iter().zip(answers) {
            let is_jti = keys.jti.as_ref() == Some(key);
            // A revoked jti never comes back: keep it as long as the token
            // could be accepted (exp + the largest leeway), bounded for
            // tokens without exp; everything else for cache_ttl.
            let keep = if is_jti && value.is_some() {
                let secs = passes.saturating_sub(now).clamp(1, NO_EXP_KEEP);
                Duration::from_secs(u64::try_from(secs).unwrap_or(1))
            } else {
                self.inner.config.cache_ttl
            };
            // A revocation found is known from now on: a Redis that loses
            // it later (FLUSHALL, a restart without persistence) cannot
            // take it back.
            if is_jti && value.is_some() {
                jti_revoked = true;
                self.learnt(key, Fact::Jti, Some(passes), now);
            } else if !is_jti && let Some(value) = value.as_deref() {
                let t = parse_before(value);
                before = Some(t);
                self.learnt(key, Fact::Subject(t), None, now);
                if subject_revokes(t, token.claims.iat) {
                    // Kept as long as this token could pass.
                    self.inner.known.prolong(key, passes);
                }
            }
            until = until.min(Instant::now() + keep);
            self.inner.local.insert(key.clone(), value, keep);
        }
        // A revocation pushed or learnt while we asked may postdate these
        // answers: they serve this request, but are not kept. `forget` and
        // `remember` bump the epoch before the lookups that follow read
        // it, so checking after inserting leaves no gap for a stale answer
        // to survive.
        let keep_answers = self.inner.epoch.load(Ordering::Acquire) == epoch;
        if !keep_answers {
            for key in &asked {
                self.inner.local.remove(key);
            }
        }
        let mut decision = decide(jti_revoked, before, token);
        if decision == Standing::Clear && self.known_revokes(&keys, token, now) {
            decision = Standing::Revoked;
        }
        let memo =
            (decision == Standing::Clear && keep_answers).then(|| Memo::clear_until(until, epoch));
        (decision, memo)
    }

    fn unavailable(&self) -> Standing {
        if self.inner.config.fail_open {
            self.inner.stats.failed_open.fetch_add(1, Ordering::Relaxed);
            Standing::Clear
        } else {
            self.inner
                .stats
                .failed_closed
                .fetch_add(1, Ordering::Relaxed);
            Standing::Unavailable
        }
    }

    /// Carries out a revocation asked through the daemon (the native REVOKE
    /// op): known here at once, then, with Redis, written there and
    /// announced, as `jwtd revoke --redis` does, on a connection kept for
    /// such writes (made on the first, and again after a failed one).
    /// Returns the key written.
    ///
    /// A revocation Redis could not take is still enforced by this daemon
    /// (it is known), but reported as failed: the fleet does not have it.
    ///
    /// # Errors
    ///
    /// [`RevokeError::MatchesNothing`] for a revocation no token can match
    /// (checked first: then nothing is recorded), [`RevokeError::Store`]
    /// (with the [`StoreError`]) when Redis cannot be written within 5 s.
    pub async fn revoke(
        &self,
        iss: Option<&str>,
        what: &Revoke,
        now: i64,
    ) -> Result<String, RevokeError> {
        if let Some(why) = matches_nothing(what, now) {
            return Err(RevokeError::MatchesNothing(why));
        }
        let prefix = &self.inner.config.prefix;
        let entry = what.entry(prefix, iss);
        self.learnt(&entry.key, entry.fact, entry.expires_at, now);
        if let Store::Remote(batcher) = &self.inner.store {
            batcher
                .write(&entry, &channel(prefix))
                .await
                .map_err(RevokeError::Store)?;
            // Ours at once, whatever the announcement does.
            self.drop_answer(&entry.key);
        }
        Ok(entry.key)
    }

    /// A pushed revocation: forget the local answer for `key`, and every
    /// per-token decision (any of them may rest on it). The key is then
    /// read back ([`Revocation::learn`]) to make it known.
    pub(crate) fn forget(&self, key: &str) {
        self.inner.stats.pushed.fetch_add(1, Ordering::Relaxed);
        self.drop_answer(key);
    }

    /// Reads a pushed key back from Redis and records it as known: a jti
    /// until the key's own expiry (`exp` + 300 s as `jwtd revoke` writes
    /// it), a subject's cut-off as [`Known::subject_expiry`] says. A key
    /// already gone, or not a revocation key, teaches nothing.
    pub(crate) async fn learn(&self, key: &str) {
        let Store::Remote(batcher) = &self.inner.store else {
            return;
        };
        let jti = is_jti_key(key);
        if !jti && !is_sub_key(key) {
            return;
        }
        match batcher.read(key, LEARN_TIMEOUT).await {
            Ok(Some((value, ttl))) => {
                let now = unix_now();
                let fact = if jti {
                    Fact::Jti
                } else {
                    Fact::Subject(parse_before(&value))
                };
                // A jti key without expiry (written by hand) is kept as
                // for a token without exp.
                self.learnt(key, fact, ttl.map(|ttl| now.saturating_add(ttl)), now);
            }
            Ok(None) => {}
            Err(why) => tracing::debug!(
                reason = why.as_str(),
                error = %why,
                "could not read a pushed revocation back"
            ),
        }
    }

    /// Drops `key`'s answer and retires every memo (the epoch first: see
    /// the end of `look_up`).
    fn drop_answer(&self, key: &str) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.local.remove(key);
    }

    /// The push connection (re)started: a missed announcement may have
    /// made any answer stale but a revoked jti (which is never taken back;
    /// a subject's time may have moved later), so only those are kept.
    /// Known revocations are not touched.
    pub(crate) fn forget_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner
            .local
            .retain(|key, value| value.is_some() && is_jti_key(key));
    }
}

/// How long a pushed key may take to read back.
const LEARN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why [`Revocation::revoke`] did not revoke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The revocation could match no token (why).
    #[error("nothing to revoke: {0}")]
    MatchesNothing(String),
    /// Redis could not be written (the revocation is enforced by this
    /// daemon all the same).
    #[error("the revocation store could not be written: {0}")]
    Store(#[source] StoreError),
}

/// Why `what` can match no token at `now`, if it cannot: an empty `jti` or
/// subject, or a token that expired beyond every verifier's leeway
/// (`exp` + 300 s).
pub fn matches_nothing(what: &Revoke, now: i64) -> Option<String> {
    match what {
        Revoke::Jti { jti, .. } if jti.is_empty() => Some("the jti is empty".to_owned()),
        Revoke::Jti { exp, .. } if exp.saturating_add(MAX_LEEWAY) <= now => Some(format!(
            "the token expired at {exp}, more than {MAX_LEEWAY} s ago: no verifier accepts it any more"
        )),
        Revoke::Subject { sub, .. } if sub.is_empty() => Some("the subject is empty".to_owned()),
        _ => None,
    }
}

/// `text` (an error message) without the credentials of `urls`: each URL
/// is replaced by its redacted form ([`crate::redact::url`]), and any
/// password it carries by `***`, wherever it appears.
pub fn scrub(text: &str, urls: &[String]) -> String {
    let mut out = text.to_owned();
    for url in urls {
        if url.is_empty() {
            continue;
        }
        out = out.replace(url.as_str(), &crate::redact::url(url));
        if let Some(secret) = userinfo_secret(url) {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// The password (or lone user name) in a URL's userinfo, if any, at least
/// 3 characters long (shorter ones would blank out unrelated text).
fn userinfo_secret(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let secret = userinfo.split_once(':').map_or(userinfo, |(_, pw)| pw);
    (secret.len() >= 3).then_some(secret)
}

/// What `jwtd revoke` revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// One token, by `jti`; the key expires with the token (`exp`).
    Jti {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp` (Unix seconds).
        exp: i64,
    },
    /// Every token of a subject issued at or before `before`.
    Subject {
        /// The subject.
        sub: String,
        /// Unix seconds.
        before: i64,
    },
}

/// Writes a revocation to Redis (`urls`: one server, or cluster nodes) and
/// announces it on the push channel, on a connection of its own made for
/// the purpose (this is `jwtd revoke --redis`: one write per process).
/// Returns the key written and how many subscribers (sidecars) received the
/// announcement (on a cluster, those of the node that took the PUBLISH). A
/// `jti` of a token already expired at `now` is written with no effect (the
/// key expires at once). `timeout` bounds the whole write, connecting
/// included.
///
/// # Errors
///
/// If Redis cannot be reached in time or refuses a command; a malformed URL
/// is a [`StoreError::Connect`]. The error names no credential.
pub async fn revoke(
    urls: &[String],
    prefix: &str,
    iss: Option<&str>,
    what: &Revoke,
    timeout: Duration,
) -> Result<(String, i64), StoreError> {
    let target = Target::parse(urls)
        .map_err(|e| StoreError::Connect(scrub(&format!("invalid URL: {e}"), urls).into()))?;
    let entry = what.entry(prefix, iss);
    let work = async {
        let mut conn = target.connect(timeout).await?;
        conn.write(&entry, &channel(prefix)).await
    };
    let receivers = tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(StoreError::Timeout(timeout)))?;
    Ok((entry.key, receivers))
}

/// A single-threaded runtime on its own thread, for everything that talks
/// to Redis; it lives as long as the process.
fn io_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("jwtd-revocation".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// DPoP replay claims, shared by the fleet through Redis.
impl Revocation {
    /// Marks `key` as seen for `ttl` in the shared store, unless it already
    /// is: `Ok(true)` when this call was first (`SET key 1 NX PX ttl`
    /// answered `OK`), `Ok(false)` when it was already there (a replay),
    /// `Err` when the store could not be asked within `timeout` (then the
    /// claim may or may not have landed). The `ttl` is at least 1 ms (a
    /// fraction of a millisecond is rounded up). Batched with concurrent
    /// lookups and claims ([`batch`]). With the in-memory store (no Redis):
    /// always `Ok(true)` (the caller keeps its own in-memory replay
    /// cache).
    ///
    /// # Errors
    ///
    /// Why the store gave no answer, as for a lookup (counted in
    /// [`Stats::failed_lookups`]).
    pub async fn claim_once(&self, key: String, ttl: Duration) -> Result<bool, StoreError> {
        let Store::Remote(batcher) = &self.inner.store else {
            return Ok(true);
        };
        let claimed = batcher.claim(key, ttl, self.inner.config.timeout).await;
        if let Err(why) = &claimed {
            self.inner.stats.lookup_failed(why);
        }
        claimed
    }

    /// The key a DPoP proof's `(jkt, jti)` is claimed under:
    /// `<prefix>dpop:` and the lowercase hex of SHA-256(`jkt` (32 bytes)
    /// || `jti`'s bytes). The key has no hash tag: on a cluster each claim
    /// lands on its own slot.
    pub fn replay_key(&self, jkt: &[u8; 32], jti: &str) -> String {
        use std::fmt::Write as _;
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(jkt);
        ctx.update(jti.as_bytes());
        let digest = ctx.finish();
        let prefix = &self.inner.config.prefix;
        let mut key = String::with_capacity(prefix.len() + 5 + 64);
        key.push_str(prefix);
        key.push_str("dpop:");
        for b in digest.as_ref() {
            let _ = write!(key, "{b:02x}");
        }
        key
    }

    /// Whether claims go to a shared store (Redis) at all: `false` for the
    /// in-memory store, whose [`Revocation::claim_once`] always answers
    /// "first".
    pub fn shares_claims(&self) -> bool {
        matches!(self.inner.store, Store::Remote(_))
    }
}

/// Readiness (`ready_requires_revocation`): whether the store answers.
impl Revocation {
    /// Whether lookups go to a remote store (Redis).
    pub fn is_remote(&self) -> bool {
        matches!(self.inner.store, Store::Remote(_))
    }

    /// One lookup through the batcher, of a key nothing writes, so that the
    /// breaker and [`Stats::backend_up`] follow the store while no token
    /// needs a lookup (the admin listener calls it every second). Returns
    /// whether the store answered; the in-memory store always does.
    pub async fn probe(&self) -> bool {
        match &self.inner.store {
            Store::Memory => true,
            Store::Remote(batcher) => {
                let key = format!("{}{{-}}:probe", self.inner.config.prefix);
                batcher
                    .lookup(vec![key], self.inner.config.timeout)
                    .await
                    .is_ok()
            }
        }
    }
}

fn decide(jti_revoked: bool, before: Option<i64>, token: &Verified) -> Standing {
    let subject = before.is_some_and(|t| subject_revokes(t, token.claims.iat));
    if jti_revoked || subject {
        Standing::Revoked
    } else {
        Standing::Clear
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod claim_tests;
