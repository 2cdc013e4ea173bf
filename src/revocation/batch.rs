//! The batcher: turns the lookups of concurrent checks into few Redis round
//! trips.
//!
//! One task owns the queue. When a lookup arrives it keeps taking whatever
//! else is queued until the batch holds `batch_max` tokens' keys or the
//! window (default 250 µs, measured from the first lookup) ends, pausing in
//! between so that other tasks can enqueue. It then deduplicates
//! the keys (the subject key of a busy user is asked once per batch, however
//! many of its tokens are in flight), groups them by issuer hash tag and
//! sends one `MGET` per group on the shared multiplexed connection, with the
//! batch's deadline (`timeout`). The round trip runs on its own task (at most
//! [`MAX_IN_FLIGHT`] at once), so the next batch forms meanwhile.
//!
//! The window is waited in short thread sleeps, not a tokio timer: tokio's
//! timers tick in milliseconds, four times the window. That is affordable
//! because the batcher has a runtime and a thread of its own (see
//! [`super::Revocation::redis`]): the sleeps delay nothing but the replies
//! of the round trips in flight, by at most one slice, and unlike a spin of
//! `yield_now` they leave the cores to the signature checks whose lookups
//! are filling the batch.
//!
//! **Connection.** One `MultiplexedConnection` (or, for a cluster, the
//! crate's cluster connection), made on the first batch and made again after
//! a failed batch. jwtd reconnects on its own schedule rather than using the
//! crate's `ConnectionManager`, whose retries run on a backoff of their own
//! that a 100 ms batch deadline cannot bound.
//!
//! **Circuit breaker.** After [`BREAKER_FAILURES`] failed batches in a row,
//! lookups fail at once (no timeout paid per request); every
//! [`BREAKER_PROBE`] one batch goes through as a probe, and its success
//! closes the circuit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::{RevocationConfig, Stats};

/// Failed batches in a row that open the circuit.
pub const BREAKER_FAILURES: u32 = 3;
/// While the circuit is open, one probe batch per this period.
pub const BREAKER_PROBE: Duration = Duration::from_millis(250);
/// The window is waited in sleeps of at most this long.
const WINDOW_SLICE: Duration = Duration::from_micros(50);
/// Round trips in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;

/// Values of the keys asked, in order (`None`: absent); `Err`: no answer.
pub type Answers = Result<Vec<Option<Vec<u8>>>, ()>;

/// Where the store is.
#[derive(Clone)]
pub enum Target {
    /// One server (or a replica set behind one address).
    Single(redis::Client),
    /// Cluster nodes to start from.
    Cluster(Vec<String>),
}

impl Target {
    /// One URL: a single server; several: cluster seed nodes.
    ///
    /// # Errors
    ///
    /// If a URL is malformed.
    pub fn parse(urls: &[String]) -> redis::RedisResult<Target> {
        match urls {
            [one] => Ok(Target::Single(redis::Client::open(one.as_str())?)),
            many => {
                for url in many {
                    redis::Client::open(url.as_str())?;
                }
                Ok(Target::Cluster(many.to_vec()))
            }
        }
    }

    /// Clients for the push subscription, tried in turn (any node will do:
    /// cluster pub/sub is broadcast to every node).
    ///
    /// # Errors
    ///
    /// If a URL is malformed.
    pub fn pubsub_clients(&self) -> redis::RedisResult<Vec<redis::Client>> {
        match self {
            Target::Single(client) => Ok(vec![client.clone()]),
            Target::Cluster(urls) => urls
                .iter()
                .map(|u| redis::Client::open(u.as_str()))
                .collect(),
        }
    }

    async fn connect(&self, timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Target::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .retries(1)
                        .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// `GET key` and `TTL key` (`None`: the key has no expiry).
    async fn get_with_ttl(
        &mut self,
        key: &str,
    ) -> redis::RedisResult<Option<(Vec<u8>, Option<i64>)>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("TTL").arg(key);
        let (value, ttl): (Option<Vec<u8>>, i64) = match self {
            Conn::Single(c) => pipe.query_async(c).await?,
            Conn::Cluster(c) => pipe.query_async(c).await?,
        };
        Ok(value.map(|v| (v, (ttl >= 0).then_some(ttl))))
    }

    async fn mget(&mut self, keys: &[&str]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

struct Request {
    keys: Vec<String>,
    tx: oneshot::Sender<Answers>,
}

/// The handle checks enqueue lookups on.
pub struct Batcher {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

impl Batcher {
    /// Starts the batcher task for `target` on `runtime`.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        target: Target,
        config: &RevocationConfig,
        stats: Arc<Stats>,
    ) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            target,
            conn: Mutex::new(None),
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
        Batcher { tx, shared }
    }

    /// Reads one key outside the batches (a pushed revocation read back):
    /// its value and remaining time to live (`None`: no expiry), or `None`
    /// when it is absent. Uses the batches' connection (made if there is
    /// none); `Err` (why) when Redis did not answer within `timeout`.
    pub async fn read(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>, String> {
        let shared = &self.shared;
        let read = async {
            let mut conn = shared.connection().await?;
            conn.get_with_ttl(key)
                .await
                .map_err(|e| format!("GET: {e}"))
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    /// The values of `keys`, asked in the next batch; `Err` if no answer
    /// came within `timeout` of the call (however long the queue).
    pub async fn lookup(&self, keys: Vec<String>, timeout: Duration) -> Answers {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request { keys, tx }).map_err(|_| ())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answers)) => answers,
            _ => Err(()),
        }
    }
}

/// State shared by the batcher and its round-trip tasks.
struct Shared {
    target: Target,
    conn: Mutex<Option<Conn>>,
    breaker: Mutex<Breaker>,
    stats: Arc<Stats>,
    timeout: Duration,
    /// Tokens per round trip.
    batch_size: metrics::Histogram,
    /// Round-trip time.
    roundtrip: metrics::Histogram,
}

impl Shared {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The batches' connection, made (and kept) if there is none; `Err`
    /// says why not.
    async fn connection(&self) -> Result<Conn, String> {
        let existing = self.conn().clone();
        if let Some(c) = existing {
            return Ok(c);
        }
        let c = self
            .target
            .connect(self.timeout)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        *self.conn() = Some(c.clone());
        Ok(c)
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
        let deadline = Instant::now() + window;
        let mut keys = first.keys.len();
        let mut batch = vec![first];
        loop {
            while keys < max_keys {
                match rx.try_recv() {
                    Ok(r) => {
                        keys += r.keys.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
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
            fail(batch);
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
                tracing::debug!(error = %why, "revocation batch failed");
            }
            let now = Instant::now();
            if ok {
                shared.breaker().success();
            } else {
                shared.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                shared.breaker().failure(now);
                // Reconnect on the next batch: a timed-out connection may
                // be dead, and a fresh one costs one connect.
                *shared.conn() = None;
            }
            drop(permit);
        });
    }
}

fn fail(batch: Vec<Request>) {
    for r in batch {
        let _ = r.tx.send(Err(()));
    }
}

/// Asks the store for `batch`'s keys and answers every request; `Err` (why)
/// when the store could not be asked (every request is answered `Err`).
async fn round_trip(shared: &Shared, batch: Vec<Request>) -> Result<(), String> {
    // Deduplicate, remembering where each request's keys went.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    let mut placed: Vec<Vec<usize>> = Vec::with_capacity(batch.len());
    for r in &batch {
        let at = r
            .keys
            .iter()
            .map(|k| {
                *index.entry(k.as_str()).or_insert_with(|| {
                    unique.push(k.as_str());
                    unique.len() - 1
                })
            })
            .collect();
        placed.push(at);
    }
    // One MGET per hash tag: on a cluster a tag is one slot.
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, key) in unique.iter().enumerate() {
        groups.entry(hash_tag(key)).or_default().push(i);
    }
    let stats = &shared.stats;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.keys.fetch_add(unique.len() as u64, Ordering::Relaxed);
    stats
        .max_batch
        .fetch_max(unique.len() as u64, Ordering::Relaxed);

    let asked = async {
        let conn = shared.connection().await?;
        let mut values: Vec<Option<Vec<u8>>> = vec![None; unique.len()];
        let queries = groups.values().map(|members| {
            let mut conn = conn.clone();
            let keys: Vec<&str> = members.iter().map(|&i| unique[i]).collect();
            async move { (members, conn.mget(&keys).await) }
        });
        for (members, answer) in futures_util::future::join_all(queries).await {
            let answer = answer.map_err(|e| format!("MGET: {e}"))?;
            if answer.len() != members.len() {
                return Err("MGET: wrong number of values".to_owned());
            }
            for (&i, v) in members.iter().zip(answer) {
                values[i] = v;
            }
        }
        Ok::<_, String>(values)
    };
    let values = match tokio::time::timeout(shared.timeout, asked).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", shared.timeout)),
    };
    for (r, at) in batch.into_iter().zip(placed) {
        let answer = match &values {
            Ok(values) => Ok(at.iter().map(|&i| values[i].clone()).collect()),
            Err(_) => Err(()),
        };
        let _ = r.tx.send(answer);
    }
    values.map(drop)
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
    use super::*;

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
