//! The Redis side of the revocation store: where it is ([`Target`]), the one
//! way jwtd connects to it, the commands it sends ([`Conn`]), and why an
//! answer did not come ([`StoreError`]).
//!
//! Every connection jwtd makes to Redis is made here, by [`Target::connect`]
//! (commands: the batches, the reads of pushed keys, revocations written
//! through the daemon or by `jwtd revoke --redis`) or [`Target::subscribe`]
//! (the push channel). Both go through one helper, so they read the same
//! URLs the same way (the scheme, the userinfo's credentials, the database)
//! and are bounded by one deadline, which covers the handshake and
//! authentication as well as the TCP connect. A failure becomes a
//! [`StoreError`] as it is made, its text already scrubbed of the URLs'
//! credentials ([`super::scrub`]), so no later log line or reply can leak
//! one.
//!
//! This module knows nothing of batching, keys or what answers mean: that
//! is `batch` and the parent module.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

use super::Entry;

/// Why the store gave no answer. Small data until displayed (the texts of
/// `Connect` and `Redis` are made once, when the failure happens, and carry
/// no credential); [`StoreError::as_str`] is a stable name for logs and
/// metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No answer within the deadline (connecting included): a Redis that
    /// is slow, blackholed or partitioned away.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No connection could be made: refused, unresolvable, authentication
    /// refused, an unusable URL.
    #[error("cannot connect: {0}")]
    Connect(Arc<str>),
    /// Not asked: the circuit is open after failed batches (one probe
    /// batch goes out per [`super::batch::BREAKER_PROBE`]).
    #[error("not asked: the circuit is open after failed batches")]
    BreakerOpen,
    /// Redis answered a command with an error, or the connection broke
    /// while it was in flight.
    #[error("redis failed: {0}")]
    Redis(Arc<str>),
    /// The revocation thread is gone (it lives as long as the process: seen
    /// at exit only).
    #[error("the revocation thread is not running")]
    Stopped,
}

impl StoreError {
    /// Every [`StoreError::as_str`], in a fixed order (the order of
    /// [`super::Stats::failed_lookups`]).
    pub const REASONS: [&'static str; 5] =
        ["timeout", "connect", "breaker_open", "redis", "stopped"];

    /// A stable name for logs and metric labels, one of
    /// [`StoreError::REASONS`].
    pub fn as_str(&self) -> &'static str {
        Self::REASONS[self.index()]
    }

    /// This reason's place in [`StoreError::REASONS`].
    pub(crate) fn index(&self) -> usize {
        match self {
            StoreError::Timeout(_) => 0,
            StoreError::Connect(_) => 1,
            StoreError::BreakerOpen => 2,
            StoreError::Redis(_) => 3,
            StoreError::Stopped => 4,
        }
    }

    /// A failure reported by the redis crate: [`StoreError::Timeout`] when
    /// the socket timed out, else `otherwise` with `what` and the error's
    /// text, scrubbed of the credentials of `urls`.
    fn from_redis(
        e: &redis::RedisError,
        what: &str,
        deadline: Duration,
        urls: &[String],
        otherwise: fn(Arc<str>) -> StoreError,
    ) -> StoreError {
        if e.is_timeout() {
            StoreError::Timeout(deadline)
        } else {
            otherwise(super::scrub(&format!("{what}: {e}"), urls).into())
        }
    }
}

/// A key's value and its remaining time to live in seconds (`None`: the
/// key does not expire).
pub(crate) type WithTtl = (Vec<u8>, Option<i64>);

/// Where the store is. Built once from the configured URLs; every
/// connection is made from it.
pub(crate) struct Target {
    nodes: Nodes,
    /// The URLs as configured, to scrub their credentials from errors.
    urls: Arc<[String]>,
}

enum Nodes {
    /// One server (or a replica set behind one address).
    Single(redis::Client),
    /// Cluster seed nodes (commands go through the crate's cluster client;
    /// the push subscription may use any node).
    Cluster(Vec<redis::Client>),
    /// A stand-in for Redis in unit tests: see [`Script`].
    #[cfg(test)]
    Scripted(Arc<Script>),
}

impl Target {
    /// One URL: a single server; several: cluster seed nodes.
    ///
    /// # Errors
    ///
    /// If a URL is malformed (the error may quote it: scrub it before
    /// showing it).
    pub(crate) fn parse(urls: &[String]) -> redis::RedisResult<Target> {
        let clients = urls
            .iter()
            .map(|u| redis::Client::open(u.as_str()))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let nodes = match <[_; 1]>::try_from(clients) {
            Ok([one]) => Nodes::Single(one),
            Err(many) => Nodes::Cluster(many),
        };
        Ok(Target {
            nodes,
            urls: urls.into(),
        })
    }

    /// How many nodes the push subscription can be made on.
    pub(crate) fn nodes(&self) -> usize {
        match &self.nodes {
            Nodes::Single(_) => 1,
            Nodes::Cluster(nodes) => nodes.len().max(1),
            #[cfg(test)]
            Nodes::Scripted(_) => 1,
        }
    }

    /// A connection for commands: a multiplexed connection (one server) or
    /// the crate's cluster connection, made within `timeout`, which also
    /// bounds each command's answer (per node and attempt on a cluster).
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] or [`StoreError::Connect`].
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Conn, StoreError> {
        let link = match &self.nodes {
            Nodes::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let made = client.get_multiplexed_async_connection_with_config(&config);
                Link::Single(self.within(timeout, made).await?)
            }
            Nodes::Cluster(_) => {
                let client =
                    redis::cluster::ClusterClient::builder(self.urls.iter().map(String::as_str))
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .retries(1)
                        .build()
                        .map_err(|e| {
                            StoreError::from_redis(
                                &e,
                                "cluster",
                                timeout,
                                &self.urls,
                                StoreError::Connect,
                            )
                        })?;
                Link::Cluster(self.within(timeout, client.get_async_connection()).await?)
            }
            #[cfg(test)]
            Nodes::Scripted(script) => Link::Scripted(script.connect()?),
        };
        Ok(Conn {
            link,
            timeout,
            urls: self.urls.clone(),
        })
    }

    /// The push subscription: a pub/sub connection to node `node` (modulo
    /// the nodes given: cluster pub/sub reaches every node), subscribed to
    /// `channel`, within `timeout`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] or [`StoreError::Connect`].
    pub(crate) async fn subscribe(
        &self,
        node: usize,
        channel: &str,
        timeout: Duration,
    ) -> Result<redis::aio::PubSub, StoreError> {
        let client = match &self.nodes {
            Nodes::Single(client) => client,
            Nodes::Cluster(nodes) if !nodes.is_empty() => &nodes[node % nodes.len()],
            Nodes::Cluster(_) => return Err(StoreError::Connect("no node given".into())),
            #[cfg(test)]
            Nodes::Scripted(_) => return Err(StoreError::Connect("no pub/sub here".into())),
        };
        let made = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok(pubsub)
        };
        self.within(timeout, made).await
    }

    /// The one deadline and error mapping of every connection made: `made`
    /// within `timeout`, its failure a [`StoreError::Connect`] without
    /// credentials ([`StoreError::Timeout`] when time ran out).
    async fn within<T>(
        &self,
        timeout: Duration,
        made: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(timeout, made).await {
            Ok(Ok(made)) => Ok(made),
            Ok(Err(e)) => Err(StoreError::from_redis(
                &e,
                "connect",
                timeout,
                &self.urls,
                StoreError::Connect,
            )),
            Err(_) => Err(StoreError::Timeout(timeout)),
        }
    }
}

/// A connection for commands, made by [`Target::connect`]. Cheap to clone:
/// clones share the connection (commands are pipelined on it).
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    /// The deadline it was made with (reported by a timed-out command).
    timeout: Duration,
    /// For scrubbing errors.
    urls: Arc<[String]>,
}

#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
    #[cfg(test)]
    Scripted(Arc<Script>),
}

/// One slot's share of a batch (see `batch`): an `MGET` of `keys` (none
/// when empty), then `SET <key> 1 NX PX <ms>` for each claim, in order, in
/// one pipeline. Every key of a part hashes to one cluster slot.
#[derive(Debug, Default)]
pub(crate) struct Part<'a> {
    /// Keys looked up.
    pub(crate) keys: Vec<&'a str>,
    /// Keys claimed, with their time to live in milliseconds (at least 1).
    pub(crate) claims: Vec<(&'a str, u64)>,
}

/// What Redis answered to one [`Part`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartReply {
    /// The values of the part's keys, in order (`None`: absent).
    pub(crate) values: Vec<Option<Vec<u8>>>,
    /// Per claim, in order: `true` when it set the key (`OK`), `false`
    /// when the key was there already (nil).
    pub(crate) claimed: Vec<bool>,
}

impl Part<'_> {
    /// The part's commands, appended to `pipe`.
    fn append_to(&self, pipe: &mut redis::Pipeline) {
        if !self.keys.is_empty() {
            pipe.cmd("MGET").arg(&self.keys);
        }
        for &(key, ms) in &self.claims {
            pipe.cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms.max(1));
        }
    }

    /// How many replies the part's commands give.
    fn replies(&self) -> usize {
        usize::from(!self.keys.is_empty()) + self.claims.len()
    }

    /// Reads the part's replies off `replies`.
    fn read(
        &self,
        replies: &mut impl Iterator<Item = redis::Value>,
    ) -> Result<PartReply, StoreError> {
        let short = || StoreError::Redis("pipeline: too few replies".into());
        let mut reply = PartReply::default();
        if !self.keys.is_empty() {
            let value = replies.next().ok_or_else(short)?;
            let values: Vec<Option<Vec<u8>>> = redis::FromRedisValue::from_redis_value(value)
                .map_err(|e| StoreError::Redis(format!("MGET: {e}").into()))?;
            if values.len() != self.keys.len() {
                return Err(StoreError::Redis("MGET: wrong number of values".into()));
            }
            reply.values = values;
        }
        for _ in &self.claims {
            let claimed = match replies.next().ok_or_else(short)? {
                redis::Value::Okay => true,
                redis::Value::SimpleString(s) if s == "OK" => true,
                redis::Value::Nil => false,
                other => {
                    return Err(StoreError::Redis(
                        format!("SET NX: unexpected reply {other:?}").into(),
                    ));
                }
            };
            reply.claimed.push(claimed);
        }
        Ok(reply)
    }
}

impl Conn {
    /// Sends `parts` (a batch's lookups and claims) and reads every answer:
    /// one pipeline of all of them on a single server; on a cluster, one
    /// pipeline per part (the crate's cluster connection routes a pipeline
    /// whole, to its first key's slot, and refuses one that spans slots),
    /// all in flight at once on the cluster connection, which multiplexes
    /// the pipelines bound for one node on that node's connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] or [`StoreError::Redis`] (an error reply to
    /// any command fails them all); a reply of the wrong shape is a
    /// [`StoreError::Redis`].
    pub(crate) async fn exchange(&self, parts: &[Part<'_>]) -> Result<Vec<PartReply>, StoreError> {
        match &self.link {
            Link::Single(c) => {
                let mut pipe = redis::pipe();
                for part in parts {
                    part.append_to(&mut pipe);
                }
                if pipe.is_empty() {
                    return Ok(parts.iter().map(|_| PartReply::default()).collect());
                }
                let expected: usize = parts.iter().map(Part::replies).sum();
                let replies: Vec<redis::Value> = pipe
                    .query_async(&mut c.clone())
                    .await
                    .map_err(|e| self.failed(&e, "pipeline"))?;
                if replies.len() != expected {
                    return Err(StoreError::Redis(
                        "pipeline: wrong number of replies".into(),
                    ));
                }
                let mut replies = replies.into_iter();
                parts.iter().map(|part| part.read(&mut replies)).collect()
            }
            Link::Cluster(c) => {
                let sent = parts.iter().map(|part| {
                    let mut c = c.clone();
                    async move {
                        let mut pipe = redis::pipe();
                        part.append_to(&mut pipe);
                        if pipe.is_empty() {
                            return Ok(PartReply::default());
                        }
                        let replies: Vec<redis::Value> = pipe
                            .query_async(&mut c)
                            .await
                            .map_err(|e| self.failed(&e, "pipeline"))?;
                        if replies.len() != part.replies() {
                            return Err(StoreError::Redis(
                                "pipeline: wrong number of replies".into(),
                            ));
                        }
                        part.read(&mut replies.into_iter())
                    }
                });
                futures_util::future::join_all(sent)
                    .await
                    .into_iter()
                    .collect()
            }
            #[cfg(test)]
            Link::Scripted(script) => {
                let mut replies = Vec::with_capacity(parts.len());
                for part in parts {
                    let mut reply = PartReply::default();
                    if !part.keys.is_empty() {
                        reply.values = script.mget(&part.keys).await?;
                    }
                    for &(key, ms) in &part.claims {
                        reply.claimed.push(script.claim(key, ms).await?);
                    }
                    replies.push(reply);
                }
                Ok(replies)
            }
        }
    }

    /// `GET key` and `TTL key`, pipelined: the value and its remaining time
    /// to live in seconds (`None`: no expiry), or `None` when it is absent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] or [`StoreError::Redis`].
    pub(crate) async fn get_with_ttl(&mut self, key: &str) -> Result<Option<WithTtl>, StoreError> {
        #[cfg(test)]
        if let Link::Scripted(script) = &self.link {
            return script.get_with_ttl(key);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("TTL").arg(key);
        let result = match &mut self.link {
            Link::Single(c) => pipe.query_async(c).await,
            Link::Cluster(c) => pipe.query_async(c).await,
            #[cfg(test)]
            Link::Scripted(_) => unreachable!("answered above"),
        };
        let (value, ttl): (Option<Vec<u8>>, i64) = result.map_err(|e| self.failed(&e, "GET"))?;
        Ok(value.map(|v| (v, (ttl >= 0).then_some(ttl))))
    }

    /// Writes `entry` (`SET`, with `EXAT` when it expires) and announces it
    /// on `channel` (`PUBLISH`, the key as message): how many subscribers
    /// received the announcement (on a cluster, those of the node that took
    /// the `PUBLISH`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] or [`StoreError::Redis`].
    pub(crate) async fn write(&mut self, entry: &Entry, channel: &str) -> Result<i64, StoreError> {
        #[cfg(test)]
        if let Link::Scripted(script) = &self.link {
            return script.write(entry).await;
        }
        let mut set = redis::cmd("SET");
        set.arg(&entry.key).arg(entry.value());
        if let Some(at) = entry.expires_at {
            // EXAT takes a positive time; an entry already expired goes at
            // once either way.
            set.arg("EXAT").arg(at.max(1));
        }
        self.query::<()>("SET", &set).await?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(&entry.key);
        self.query("PUBLISH", &publish).await
    }

    async fn query<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let result = match &mut self.link {
            Link::Single(c) => cmd.query_async(c).await,
            Link::Cluster(c) => cmd.query_async(c).await,
            #[cfg(test)]
            Link::Scripted(_) => unreachable!("scripted commands are answered by the script"),
        };
        result.map_err(|e| self.failed(&e, what))
    }

    fn failed(&self, e: &redis::RedisError, what: &str) -> StoreError {
        StoreError::from_redis(e, what, self.timeout, &self.urls, StoreError::Redis)
    }
}

#[cfg(test)]
pub(crate) use script::{Failure, Script};

/// A stand-in for Redis in the unit tests of the batcher, the failure
/// reasons and the memo timing, which run on paused time: a real Redis
/// answers on real time (the real-Redis tests are `tests/it/revocation.rs`).
#[cfg(test)]
mod script {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    impl Target {
        /// A target whose every connection goes to `script`.
        pub(crate) fn scripted(script: Arc<Script>) -> Target {
            Target {
                nodes: Nodes::Scripted(script),
                urls: Arc::new([]),
            }
        }
    }

    /// How the script fails, until told otherwise.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Failure {
        /// Connections are refused.
        Refuse,
        /// Commands hang (until the caller's deadline).
        Hang,
        /// Commands get an error reply.
        Error,
    }

    /// A value and when it expires (Unix seconds; `None`: never).
    type Stored = (Vec<u8>, Option<i64>);

    /// Values by key (with their expiry), and counters.
    #[derive(Debug, Default)]
    pub(crate) struct Script {
        values: Mutex<HashMap<String, Stored>>,
        failure: Mutex<Option<Failure>>,
        /// Connections made.
        pub(crate) connects: AtomicU64,
        /// `MGET`s answered.
        pub(crate) mgets: AtomicU64,
        /// Claims (`SET NX`) answered.
        pub(crate) claims: AtomicU64,
    }

    impl Script {
        pub(crate) fn set(&self, key: &str, value: &[u8], expires_at: Option<i64>) {
            self.values
                .lock()
                .unwrap()
                .insert(key.to_owned(), (value.to_vec(), expires_at));
        }

        pub(crate) fn get(&self, key: &str) -> Option<Stored> {
            self.values.lock().unwrap().get(key).cloned()
        }

        pub(crate) fn fail(&self, failure: Option<Failure>) {
            *self.failure.lock().unwrap() = failure;
        }

        fn failure(&self) -> Option<Failure> {
            *self.failure.lock().unwrap()
        }

        pub(super) fn connect(self: &Arc<Self>) -> Result<Arc<Script>, StoreError> {
            if self.failure() == Some(Failure::Refuse) {
                return Err(StoreError::Connect("refused (scripted)".into()));
            }
            self.connects.fetch_add(1, Ordering::Relaxed);
            Ok(self.clone())
        }

        async fn command(&self) -> Result<(), StoreError> {
            match self.failure() {
                Some(Failure::Hang) => std::future::pending().await,
                Some(Failure::Error) => Err(StoreError::Redis("ERR scripted".into())),
                // A refusing server breaks the connections it had.
                Some(Failure::Refuse) => {
                    Err(StoreError::Redis("connection reset (scripted)".into()))
                }
                None => Ok(()),
            }
        }

        pub(super) async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.command().await?;
            self.mgets.fetch_add(1, Ordering::Relaxed);
            let values = self.values.lock().unwrap();
            Ok(keys
                .iter()
                .map(|k| values.get(*k).map(|(v, _)| v.clone()))
                .collect())
        }

        /// `SET key 1 NX PX ms` (the expiry is kept in whole seconds,
        /// and, as for every scripted key, not enforced).
        pub(super) async fn claim(&self, key: &str, ms: u64) -> Result<bool, StoreError> {
            self.command().await?;
            self.claims.fetch_add(1, Ordering::Relaxed);
            let mut values = self.values.lock().unwrap();
            if values.contains_key(key) {
                return Ok(false);
            }
            let secs = i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX);
            let at = crate::clock::unix_now().saturating_add(secs);
            values.insert(key.to_owned(), (b"1".to_vec(), Some(at)));
            Ok(true)
        }

        pub(super) fn get_with_ttl(&self, key: &str) -> Result<Option<WithTtl>, StoreError> {
            let now = crate::clock::unix_now();
            Ok(self
                .get(key)
                .map(|(v, at)| (v, at.map(|at| at.saturating_sub(now)))))
        }

        pub(super) async fn write(&self, entry: &Entry) -> Result<i64, StoreError> {
            self.command().await?;
            self.set(&entry.key, entry.value().as_bytes(), entry.expires_at);
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_stable_name() {
        let all = [
            StoreError::Timeout(Duration::from_millis(1)),
            StoreError::Connect("x".into()),
            StoreError::BreakerOpen,
            StoreError::Redis("x".into()),
            StoreError::Stopped,
        ];
        let names: Vec<&str> = all.iter().map(StoreError::as_str).collect();
        assert_eq!(names, StoreError::REASONS);
        for e in &all {
            let shown = e.to_string();
            assert!(
                shown.starts_with(|c: char| c.is_lowercase()) && !shown.ends_with('.'),
                "{shown}"
            );
        }
    }

    /// Port 1: nothing listens there.
    const DEAD: &str = "redis://:hunter22@127.0.0.1:1";

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure_that_names_no_password() {
        let target = Target::parse(&[DEAD.to_owned()]).unwrap();
        let timeout = Duration::from_secs(2);
        let failed = target.connect(timeout).await.err().unwrap();
        assert!(matches!(&failed, StoreError::Connect(_)), "{failed:?}");
        let failed = target.subscribe(0, "ch", timeout).await.err().unwrap();
        assert!(matches!(&failed, StoreError::Connect(_)), "{failed:?}");
        // The same for every node of a cluster.
        let cluster = Target::parse(&[DEAD.to_owned(), DEAD.replace(":1", ":2")]).unwrap();
        assert_eq!(cluster.nodes(), 2);
        let failed = cluster.connect(timeout).await.err().unwrap();
        assert!(matches!(&failed, StoreError::Connect(_)), "{failed:?}");
        assert!(
            !format!("{failed} {failed:?}").contains("hunter22"),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        // Accepted by the kernel, never read: the handshake gets no answer.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
        let target = Target::parse(&[url]).unwrap();
        let timeout = Duration::from_millis(100);
        assert_eq!(
            target.connect(timeout).await.err(),
            Some(StoreError::Timeout(timeout))
        );
        assert_eq!(
            target.subscribe(0, "ch", timeout).await.err(),
            Some(StoreError::Timeout(timeout))
        );
    }
}
