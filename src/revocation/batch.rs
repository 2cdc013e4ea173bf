//! The batcher: turns the lookups and claims of concurrent checks into few
//! Redis round trips.
//!
//! One task owns the queue. When a request arrives it keeps taking whatever
//! else is queued until the batch holds `batch_max` tokens' keys (a lookup
//! weighs its keys, a claim one) or the window (default 250 µs, measured
//! from the first request) ends, pausing in between so that other tasks can
//! enqueue. It then deduplicates the lookups' keys (the subject key of a
//! busy user is asked once per batch, however many of its tokens are in
//! flight), groups them by issuer hash tag, one `MGET` per group, and sends
//! them with the batch's claims on the shared multiplexed connection, with
//! the batch's deadline (`timeout`). The round trip runs on its own task (at
//! most [`MAX_IN_FLIGHT`] at once), so the next batch forms meanwhile.
//!
//! **Claims** (`Batcher::claim`, the DPoP replay check of
//! [`super::Revocation::claim_once`]) are `SET <key> 1 NX PX <ttl>`: `OK`
//! means this request was first, nil that the key was already there. They
//! ride in the same batches as lookups, under the same deadline, breaker
//! and failure reasons, and are never deduplicated: two claims of one key
//! in a batch are sent in queue order in one pipeline (same key, same
//! group), so Redis answers the first `OK` and the second nil. A claim goes
//! into its key's hash-tag group (a replay key has no tag: it is a group of
//! its own) after that group's `MGET`. On one server the whole batch is
//! one pipeline: group after group, each its `MGET` and its claims. On a
//! cluster the crate's cluster connection routes a pipeline whole, to one
//! slot (it refuses a pipeline whose keys span slots), so each group is a
//! pipeline of its own (one slot: one hash tag, or one untagged key); they
//! are sent at once and the cluster connection multiplexes those bound for
//! one node on that node's connection, so a batch still costs one round
//! trip per node, not per group. A claim whose batch failed may still have
//! reached Redis (a timeout): a retry of it can then find its own key.
//!
//! **Counters.** A claim counts as one request in `batch_size` (requests
//! per round trip), [`super::Stats::claims`] and, when it finds its key,
//! [`super::Stats::replays`]; `keys` counts lookup keys only, `max_batch`
//! lookup keys and claims together (the keys one round trip carried). A
//! claim refused by the open circuit counts in `short_circuited`; one that
//! got no answer counts in [`super::Stats::failed_lookups`] by reason.
//!
//! The window is waited in short thread sleeps, not a tokio timer: tokio's
//! timers tick in milliseconds, four times the window. That is affordable
//! because the batcher has a runtime and a thread of its own (see
//! [`super::Revocation::redis`]): the sleeps delay nothing but the replies
//! of the round trips in flight, by at most one slice, and unlike a spin of
//! `yield_now` they leave the cores to the signature checks whose lookups
//! are filling the batch.
//!
//! **Connections.** One `MultiplexedConnection` (or, for a cluster, the
//! crate's cluster connection) carries the batches and the reads of pushed
//! keys, made on the first batch and made again after a failed batch;
//! revocations written through the daemon keep a second one, made on the
//! first write and again after a failed one (its deadline is a write's, not
//! a batch's). Both are made by `remote::Target::connect`, the one way jwtd
//! connects to Redis. jwtd reconnects on its own schedule rather than using
//! the crate's `ConnectionManager`, whose retries run on a backoff of their
//! own that a 100 ms batch deadline cannot bound.
//!
//! **Circuit breaker.** After [`BREAKER_FAILURES`] failed batches in a row,
//! lookups fail at once (no timeout paid per request) with
//! [`StoreError::BreakerOpen`]; every [`BREAKER_PROBE`] one batch goes
//! through as a probe, and its success closes the circuit.
//!
//! **Failures** are [`StoreError`]s: every request of a failed batch gets
//! the batch's reason (timeout, connect, an error reply), one refused by the
//! open circuit `BreakerOpen`, one that outwaited its own deadline in the
//! queue `Timeout`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::remote::{Conn, Part, StoreError, Target, WithTtl};
use super::{Entry, RevocationConfig, Stats};

/// Failed batches in a row that open the circuit.
pub const BREAKER_FAILURES: u32 = 3;
/// While the circuit is open, one probe batch per this period.
pub const BREAKER_PROBE: Duration = Duration::from_millis(250);
/// The window is waited in sleeps of at most this long.
const WINDOW_SLICE: Duration = Duration::from_micros(50);
/// Round trips in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;

/// Values of the keys asked, in order (`None`: absent), or why none came.
pub type Answers = Result<Vec<Option<Vec<u8>>>, StoreError>;

/// Whether a claim set its key (`true`: first) or found it there
/// (`false`: a replay), or why no answer came.
pub type Claimed = Result<bool, StoreError>;

enum Request {
    Lookup {
        keys: Vec<String>,
        tx: oneshot::Sender<Answers>,
    },
    Claim {
        key: String,
        /// Milliseconds, at least 1.
        ttl_ms: u64,
        tx: oneshot::Sender<Claimed>,
    },
}

impl Request {
    /// What the request weighs against `batch_max`: its keys.
    fn weight(&self) -> usize {
        match self {
            Request::Lookup { keys, .. } => keys.len(),
            Request::Claim { .. } => 1,
        }
    }

    /// Answers the request with `why`.
    fn fail(self, why: &StoreError) {
        match self {
            Request::Lookup { tx, .. } => {
                let _ = tx.send(Err(why.clone()));
            }
            Request::Claim { tx, .. } => {
                let _ = tx.send(Err(why.clone()));
            }
        }
    }
}

/// The handle checks enqueue lookups and claims on.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
    /// The runtime everything that talks to Redis runs on.
    runtime: tokio::runtime::Handle,
}

impl Batcher {
    /// Starts the batcher task for `target` on `runtime`.
    pub(crate) fn spawn(
        runtime: &tokio::runtime::Handle,
        target: Arc<Target>,
        config: &RevocationConfig,
        stats: Arc<Stats>,
    ) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            target,
            batches: Slot::new(config.timeout),
            writes: Slot::new(WRITE_TIMEOUT),
            breaker: Mutex::new(Breaker::default()),
            stats,
            timeout: config.timeout,
            batch_size: metrics::histogram!("jwtd_revocation_batch_size"),
            roundtrip: metrics::histogram!("jwtd_revocation_roundtrip_seconds"),
        });
        runtime.spawn(run(
            rx,
            shared.clone(),
            config.window,
            config.batch_max.max(1).saturating_mul(2),
        ));
        Batcher {
            tx,
            shared,
            runtime: runtime.clone(),
        }
    }

    /// Reads one key outside the batches (a pushed revocation read back):
    /// its value and remaining time to live (`None`: no expiry), or `None`
    /// when it is absent. Uses the batches' connection (made if there is
    /// none); `Err` when Redis did not answer within `timeout`.
    pub(crate) async fn read(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<WithTtl>, StoreError> {
        let shared = &self.shared;
        let read = async {
            let mut conn = shared.batches.get(&shared.target).await?;
            conn.get_with_ttl(key).await
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
    }

    /// The values of `keys`, asked in the next batch; `Err` if no answer
    /// came within `timeout` of the call (however long the queue), or the
    /// batch failed.
    pub(crate) async fn lookup(&self, keys: Vec<String>, timeout: Duration) -> Answers {
        self.ask(|tx| Request::Lookup { keys, tx }, timeout).await
    }

    /// Claims `key` for `ttl` (`SET key 1 NX PX ttl`, at least 1 ms, a
    /// fraction of a millisecond rounded up) in the next batch: `true` when
    /// this claim set it, `false` when it was there already; `Err` as for
    /// [`Batcher::lookup`].
    pub(crate) async fn claim(&self, key: String, ttl: Duration, timeout: Duration) -> Claimed {
        let ttl_ms = u64::try_from(ttl.as_nanos().div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
            .max(1);
        self.ask(|tx| Request::Claim { key, ttl_ms, tx }, timeout)
            .await
    }

    /// Enqueues the request `make` builds and waits for its answer, at
    /// most `timeout`.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
        timeout: Duration,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| StoreError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            // The batcher dropped the request unanswered: it is gone.
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout(timeout)),
        }
    }

    /// Writes `entry` and announces it on `channel` (a revocation through
    /// the daemon), on the connection kept for writes (made if there is
    /// none), within [`WRITE_TIMEOUT`]: how many subscribers received the
    /// announcement.
    ///
    /// The write runs on the batcher's runtime, like every other exchange
    /// with Redis, so the connection it may make is driven there too.
    ///
    /// # Errors
    ///
    /// Why Redis was not written (or not known to be: a write that timed
    /// out may still land, which can only revoke more).
    pub(crate) async fn write(&self, entry: &Entry, channel: &str) -> Result<i64, StoreError> {
        let (shared, entry, channel) = (self.shared.clone(), entry.clone(), channel.to_owned());
        let write = self.runtime.spawn(async move {
            let work = async {
                let mut conn = shared.writes.get(&shared.target).await?;
                conn.write(&entry, &channel).await
            };
            let written = tokio::time::timeout(WRITE_TIMEOUT, work)
                .await
                .unwrap_or(Err(StoreError::Timeout(WRITE_TIMEOUT)));
            if written.is_err() {
                // A fresh connection for the next write: this one may be
                // dead.
                shared.writes.reset();
            }
            written
        });
        write.await.unwrap_or(Err(StoreError::Stopped))
    }
}

/// Deadline of a revocation written through the daemon (connecting
/// included), as `jwtd revoke --redis` has.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by the batcher and its round-trip tasks.
struct Shared {
    target: Arc<Target>,
    /// The batches' connection, also used to read pushed keys back.
    batches: Slot,
    /// The connection of revocations written through the daemon: one of
    /// its own, because a command on a connection is bounded by the
    /// deadline the connection was made with, and a write's
    /// ([`WRITE_TIMEOUT`]) is not a batch's (`revocation_timeout`, 100 ms).
    writes: Slot,
    breaker: Mutex<Breaker>,
    stats: Arc<Stats>,
    timeout: Duration,
    /// Requests (lookups, each a token's keys, and claims) per round trip.
    batch_size: metrics::Histogram,
    /// Round-trip time.
    roundtrip: metrics::Histogram,
}

impl Shared {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection kept for reuse: made (by [`Target::connect`]) when first
/// needed, and again after [`Slot::reset`] (a failure).
struct Slot {
    conn: Mutex<Option<Conn>>,
    /// Deadline of the connect and of each command on the connection.
    timeout: Duration,
}

impl Slot {
    fn new(timeout: Duration) -> Slot {
        Slot {
            conn: Mutex::new(None),
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept connection, made (and kept) if there is none.
    async fn get(&self, target: &Target) -> Result<Conn, StoreError> {
        let existing = self.lock().clone();
        if let Some(c) = existing {
            return Ok(c);
        }
        let c = target.connect(self.timeout).await?;
        *self.lock() = Some(c.clone());
        Ok(c)
    }

    /// Drops the kept connection: the next use makes a new one.
    fn reset(&self) {
        *self.lock() = None;
    }
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether a batch may go out now (a probe, when the circuit is open).
    fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(t) if now >= t => {
                // One probe per period: the next waits for its result.
                self.open_until = Some(now + BREAKER_PROBE);
                true
            }
            Some(_) => false,
        }
    }

    fn success(&mut self) {
        if self.open_until.is_some() {
            tracing::info!("revocation store answering again: circuit closed");
        }
        self.failures = 0;
        self.open_until = None;
    }

    fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= BREAKER_FAILURES {
            if self.open_until.is_none() {
                tracing::warn!(
                    failed_batches = self.failures,
                    "revocation store failing: circuit open, lookups fail at once, probing every {BREAKER_PROBE:?}"
                );
            }
            self.open_until = Some(now + BREAKER_PROBE);
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    window: Duration,
    max_keys: usize,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Real time, not tokio's: the window is waited in real thread
        // sleeps (see the module doc), and on a paused tokio clock (tests)
        // a tokio deadline would never come.
        let deadline = std::time::Instant::now() + window;
        let mut keys = first.weight();
        let mut batch = vec![first];
        loop {
            while keys < max_keys {
                match rx.try_recv() {
                    Ok(r) => {
                        keys += r.weight();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let now = std::time::Instant::now();
            if keys >= max_keys || now >= deadline {
                break;
            }
            // A short real sleep, then a turn for the round trips in flight
            // (this runtime's only other work): a bare `yield_now` would
            // spin a core for the whole window.
            std::thread::sleep((deadline - now).min(WINDOW_SLICE));
            tokio::task::yield_now().await;
        }
        if !shared.breaker().allow(Instant::now()) {
            shared
                .stats
                .short_circuited
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            fail(batch, &StoreError::BreakerOpen);
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.batch_size.record(batch.len() as f64);
            let started = Instant::now();
            let result = round_trip(&shared, batch).await;
            shared.roundtrip.record(started.elapsed().as_secs_f64());
            let ok = result.is_ok();
            shared.stats.down.store(!ok, Ordering::Relaxed);
            if let Err(why) = &result {
                // The breaker logs when it opens; below that, debug.
                tracing::debug!(reason = why.as_str(), error = %why, "revocation batch failed");
            }
            let now = Instant::now();
            if ok {
                shared.breaker().success();
            } else {
                shared.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                shared.breaker().failure(now);
                // Reconnect on the next batch: a timed-out connection may
                // be dead, and a fresh one costs one connect.
                shared.batches.reset();
            }
            drop(permit);
        });
    }
}

/// Answers every request of `batch` with `why`.
fn fail(batch: Vec<Request>, why: &StoreError) {
    for r in batch {
        r.fail(why);
    }
}

/// Where a request's answer is in a round trip's replies.
enum Placed {
    /// A lookup: indices of its keys in the deduplicated keys.
    Keys(Vec<usize>),
    /// A claim: its index among the batch's claims.
    Claim(usize),
}

/// One hash-tag group of a batch: indices of its deduplicated keys and of
/// its claims (in queue order).
#[derive(Default)]
struct Group {
    keys: Vec<usize>,
    claims: Vec<usize>,
}

/// Asks the store for `batch`'s keys, makes its claims, and answers every
/// request; `Err` (why) when the store could not be asked (every request is
/// answered with it).
async fn round_trip(shared: &Shared, batch: Vec<Request>) -> Result<(), StoreError> {
    // Deduplicate the lookups' keys, remembering where each request's
    // answers will be; claims are kept apart, each one, in queue order.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    let mut claims: Vec<(&str, u64)> = Vec::new();
    let mut placed: Vec<Placed> = Vec::with_capacity(batch.len());
    for r in &batch {
        placed.push(match r {
            Request::Lookup { keys, .. } => Placed::Keys(
                keys.iter()
                    .map(|k| {
                        *index.entry(k.as_str()).or_insert_with(|| {
                            unique.push(k.as_str());
                            unique.len() - 1
                        })
                    })
                    .collect(),
            ),
            Request::Claim { key, ttl_ms, .. } => {
                claims.push((key.as_str(), *ttl_ms));
                Placed::Claim(claims.len() - 1)
            }
        });
    }
    // One group per hash tag (on a cluster a tag is one slot): its MGET,
    // then its claims in order.
    let mut groups: HashMap<&str, Group> = HashMap::new();
    for (i, key) in unique.iter().enumerate() {
        groups.entry(hash_tag(key)).or_default().keys.push(i);
    }
    for (i, (key, _)) in claims.iter().enumerate() {
        groups.entry(hash_tag(key)).or_default().claims.push(i);
    }
    let stats = &shared.stats;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.keys.fetch_add(unique.len() as u64, Ordering::Relaxed);
    stats
        .claims
        .fetch_add(claims.len() as u64, Ordering::Relaxed);
    stats
        .max_batch
        .fetch_max((unique.len() + claims.len()) as u64, Ordering::Relaxed);

    let groups: Vec<Group> = groups.into_values().collect();
    let parts: Vec<Part<'_>> = groups
        .iter()
        .map(|g| Part {
            keys: g.keys.iter().map(|&i| unique[i]).collect(),
            claims: g.claims.iter().map(|&i| claims[i]).collect(),
        })
        .collect();
    let asked = async {
        let conn = shared.batches.get(&shared.target).await?;
        let replies = conn.exchange(&parts).await?;
        let mut values: Vec<Option<Vec<u8>>> = vec![None; unique.len()];
        let mut claimed: Vec<bool> = vec![false; claims.len()];
        for (group, reply) in groups.iter().zip(replies) {
            for (&i, v) in group.keys.iter().zip(reply.values) {
                values[i] = v;
            }
            for (&i, first) in group.claims.iter().zip(reply.claimed) {
                claimed[i] = first;
            }
        }
        Ok((values, claimed))
    };
    let answered = tokio::time::timeout(shared.timeout, asked)
        .await
        .unwrap_or(Err(StoreError::Timeout(shared.timeout)));
    match answered {
        Ok((values, claimed)) => {
            let replays = claimed.iter().filter(|first| !**first).count();
            stats.replays.fetch_add(replays as u64, Ordering::Relaxed);
            for (r, at) in batch.into_iter().zip(placed) {
                match (r, at) {
                    (Request::Lookup { tx, .. }, Placed::Keys(at)) => {
                        let _ = tx.send(Ok(at.iter().map(|&i| values[i].clone()).collect()));
                    }
                    (Request::Claim { tx, .. }, Placed::Claim(i)) => {
                        let _ = tx.send(Ok(claimed[i]));
                    }
                    _ => unreachable!("each request is placed as it was read"),
                }
            }
            Ok(())
        }
        Err(why) => {
            fail(batch, &why);
            Err(why)
        }
    }
}

/// The `{...}` hash tag of a key (the whole key if it has none).
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::super::remote::{Failure, Script};
    use super::*;

    fn scripted(script: &Arc<Script>, config: &RevocationConfig) -> Batcher {
        let target = Arc::new(Target::scripted(script.clone()));
        let runtime = tokio::runtime::Handle::current();
        Batcher::spawn(&runtime, target, config, Arc::default())
    }

    fn keys() -> Vec<String> {
        vec!["jwtd:{-}:jti:a".to_owned(), "jwtd:{-}:sub:b".to_owned()]
    }

    // Paused time: the deadlines come when the test says, and the window
    // (real time, thread sleeps) still ends.
    #[tokio::test(start_paused = true)]
    async fn each_failed_lookup_says_why_and_the_open_circuit_answers_at_once() {
        let script = Arc::new(Script::default());
        let config = RevocationConfig::default();
        let deadline = config.timeout;
        let b = scripted(&script, &config);
        script.set("jwtd:{-}:sub:b", b"7", None);
        assert_eq!(
            b.lookup(keys(), deadline).await,
            Ok(vec![None, Some(b"7".to_vec())])
        );

        script.fail(Some(Failure::Hang));
        assert_eq!(
            b.lookup(keys(), deadline).await,
            Err(StoreError::Timeout(deadline))
        );
        script.fail(Some(Failure::Refuse));
        let refused = b.lookup(keys(), deadline).await;
        assert!(
            matches!(refused, Err(StoreError::Connect(_))),
            "{refused:?}"
        );
        script.fail(Some(Failure::Error));
        let failed = b.lookup(keys(), deadline).await;
        assert!(matches!(failed, Err(StoreError::Redis(_))), "{failed:?}");
        assert_eq!(b.shared.stats.failed_batches.load(Ordering::Relaxed), 3);

        // Three in a row: open. Refused at once, without a round trip.
        script.fail(None);
        let mgets = script.mgets.load(Ordering::Relaxed);
        assert_eq!(
            b.lookup(keys(), deadline).await,
            Err(StoreError::BreakerOpen)
        );
        assert_eq!(script.mgets.load(Ordering::Relaxed), mgets);
        assert_eq!(b.shared.stats.short_circuited.load(Ordering::Relaxed), 1);
        // The probe, one period later, closes it.
        tokio::time::advance(BREAKER_PROBE).await;
        assert!(b.lookup(keys(), deadline).await.is_ok());
        assert!(b.lookup(keys(), deadline).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_waits_no_longer_than_its_own_deadline() {
        let script = Arc::new(Script::default());
        script.fail(Some(Failure::Hang));
        let config = RevocationConfig {
            timeout: Duration::from_secs(10),
            ..RevocationConfig::default()
        };
        let b = scripted(&script, &config);
        let mine = Duration::from_millis(5);
        let asked = Instant::now();
        assert_eq!(b.lookup(keys(), mine).await, Err(StoreError::Timeout(mine)));
        assert_eq!(asked.elapsed(), mine);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_keep_one_connection_of_their_own_and_make_another_after_a_failure() {
        let script = Arc::new(Script::default());
        let b = scripted(&script, &RevocationConfig::default());
        let entry = |n: i64| {
            super::super::Revoke::Subject {
                sub: format!("u{n}"),
                before: n,
            }
            .entry("jwtd:", None)
        };
        b.write(&entry(1), "ch").await.unwrap();
        b.write(&entry(2), "ch").await.unwrap();
        assert_eq!(script.connects.load(Ordering::Relaxed), 1, "reused");
        assert_eq!(script.get("jwtd:{-}:sub:u2"), Some((b"2".to_vec(), None)));

        script.fail(Some(Failure::Hang));
        let asked = Instant::now();
        assert_eq!(
            b.write(&entry(3), "ch").await,
            Err(StoreError::Timeout(WRITE_TIMEOUT))
        );
        assert_eq!(asked.elapsed(), WRITE_TIMEOUT);
        script.fail(None);
        b.write(&entry(4), "ch").await.unwrap();
        assert_eq!(script.connects.load(Ordering::Relaxed), 2, "made again");
        // The batches have a connection of their own.
        b.lookup(keys(), Duration::from_secs(1)).await.unwrap();
        assert_eq!(script.connects.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_batcher_whose_runtime_is_gone_says_it_stopped() {
        let gone = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let script = Arc::new(Script::default());
        let b = Batcher::spawn(
            gone.handle(),
            Arc::new(Target::scripted(script)),
            &RevocationConfig::default(),
            Arc::default(),
        );
        drop(gone);
        let here = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let entry = super::super::Revoke::Subject {
            sub: "u".to_owned(),
            before: 1,
        }
        .entry("jwtd:", None);
        here.block_on(async {
            assert_eq!(
                b.lookup(keys(), Duration::from_secs(1)).await,
                Err(StoreError::Stopped)
            );
            assert_eq!(b.write(&entry, "ch").await, Err(StoreError::Stopped));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn claims_ride_in_the_batches_of_lookups_in_queue_order() {
        let script = Arc::new(Script::default());
        let b = scripted(&script, &RevocationConfig::default());
        let deadline = Duration::from_secs(1);
        let claim = |key: &str| b.claim(key.to_owned(), Duration::from_secs(60), deadline);
        script.set("jwtd:{-}:sub:b", b"7", None);
        let (first, again, looked_up, other) = tokio::join!(
            claim("jwtd:dpop:aa"),
            claim("jwtd:dpop:aa"),
            b.lookup(keys(), deadline),
            claim("jwtd:dpop:bb"),
        );
        assert_eq!((first, again, other), (Ok(true), Ok(false), Ok(true)));
        assert_eq!(looked_up, Ok(vec![None, Some(b"7".to_vec())]));
        let stats = &b.shared.stats;
        assert_eq!(stats.batches.load(Ordering::Relaxed), 1, "one batch");
        assert_eq!(stats.claims.load(Ordering::Relaxed), 3, "none deduplicated");
        assert_eq!(stats.replays.load(Ordering::Relaxed), 1);
        assert_eq!(stats.keys.load(Ordering::Relaxed), 2);
        assert_eq!(stats.max_batch.load(Ordering::Relaxed), 5);
        assert_eq!(script.claims.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_weighs_one_key_against_batch_max() {
        let script = Arc::new(Script::default());
        // batch_max 1: two keys (one token's) per batch.
        let config = RevocationConfig {
            batch_max: 1,
            ..RevocationConfig::default()
        };
        let b = scripted(&script, &config);
        let deadline = Duration::from_secs(1);
        let claim = |n: u8| b.claim(format!("k{n}"), Duration::from_secs(1), deadline);
        let all = tokio::join!(claim(1), claim(2), claim(3), claim(4));
        assert_eq!(all, (Ok(true), Ok(true), Ok(true), Ok(true)));
        assert_eq!(b.shared.stats.batches.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn claims_fail_like_lookups_and_share_the_breaker() {
        let script = Arc::new(Script::default());
        let config = RevocationConfig::default();
        let deadline = config.timeout;
        let b = scripted(&script, &config);
        let claim = || b.claim("jwtd:dpop:cc".to_owned(), Duration::from_secs(1), deadline);
        script.fail(Some(Failure::Hang));
        assert_eq!(claim().await, Err(StoreError::Timeout(deadline)));
        script.fail(Some(Failure::Error));
        assert!(matches!(claim().await, Err(StoreError::Redis(_))));
        // A failed lookup counts toward the same breaker.
        assert!(b.lookup(keys(), deadline).await.is_err());
        script.fail(None);
        assert_eq!(claim().await, Err(StoreError::BreakerOpen));
        assert_eq!(
            b.lookup(keys(), deadline).await,
            Err(StoreError::BreakerOpen)
        );
        assert_eq!(script.claims.load(Ordering::Relaxed), 0, "none answered");
        tokio::time::advance(BREAKER_PROBE).await;
        assert_eq!(claim().await, Ok(true), "the probe closes the circuit");
        assert_eq!(claim().await, Ok(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_ttl_is_at_least_a_millisecond_rounded_up() {
        // Seen through the queue: the request carries the milliseconds.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let b = Batcher {
            tx,
            shared: Arc::new(Shared {
                target: Arc::new(Target::scripted(Arc::default())),
                batches: Slot::new(Duration::from_secs(1)),
                writes: Slot::new(Duration::from_secs(1)),
                breaker: Mutex::default(),
                stats: Arc::default(),
                timeout: Duration::from_secs(1),
                batch_size: metrics::histogram!("test"),
                roundtrip: metrics::histogram!("test"),
            }),
            runtime: tokio::runtime::Handle::current(),
        };
        for (ttl, ms) in [
            (Duration::ZERO, 1),
            (Duration::from_micros(10), 1),
            (Duration::from_micros(1_500), 2),
            (Duration::from_millis(200), 200),
        ] {
            let asked = b.claim("k".to_owned(), ttl, Duration::from_millis(1));
            let (answer, request) = tokio::join!(asked, rx.recv());
            assert_eq!(answer, Err(StoreError::Timeout(Duration::from_millis(1))));
            match request {
                Some(Request::Claim { ttl_ms, .. }) => assert_eq!(ttl_ms, ms, "{ttl:?}"),
                _ => panic!("not a claim"),
            }
        }
    }

    #[test]
    fn hash_tags_are_what_redis_cluster_hashes() {
        assert_eq!(hash_tag("jwtd:{abc}:jti:1"), "abc");
        assert_eq!(hash_tag("jwtd:{-}:sub:x{y}"), "-");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
    }

    #[test]
    fn the_breaker_opens_after_failures_and_probes_once_per_period() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..BREAKER_FAILURES - 1 {
            b.failure(t0);
            assert!(b.allow(t0), "closed below the threshold");
        }
        b.failure(t0);
        assert!(!b.allow(t0), "open after the threshold");
        let later = t0 + BREAKER_PROBE;
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one");
        b.success();
        assert!(b.allow(later) && b.allow(later), "closed again");
    }
}
