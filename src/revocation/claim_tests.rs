//! DPoP replay claims ([`Revocation::claim_once`]) against a real Redis:
//! first and replayed claims, one winner among concurrent claims of a key,
//! claims and lookups answered by one batch, expiry after the `ttl`, a
//! Redis that refuses or never answers, the in-memory store, the key
//! layout, and a three-master Redis Cluster.
//!
//! Each test starts its own `redis-server` ([`Redis`]) on a free loopback
//! port, with a temporary `--dir` and no persistence, and kills it on drop,
//! as `tests/it/revocation.rs` does (the cluster test starts three with
//! `--cluster-enabled yes` and joins them with `redis-cli --cluster
//! create`). Without `redis-server` and `redis-cli` on `PATH` the tests
//! fail, saying what to install. Deadlines are generous ("it happens"), not
//! measurements.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::tests::token;
use super::*;

const REDIS_MISSING: &str = "the revocation tests need redis-server and redis-cli on PATH: \
                             apt-get install redis-server redis-tools";

/// How long a server may take to start, or a cluster to form.
const WAIT: Duration = Duration::from_secs(30);

/// The batch deadline of the tests that expect answers: far above any
/// round trip on a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `redis-cli ARGS...`.
fn redis_cli(args: &[&str]) -> Output {
    match Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
        Err(e) => panic!("running redis-cli: {e}"),
    }
}

/// A `redis-server` on a loopback port; killed on drop.
struct Redis {
    port: u16,
    child: Child,
    /// The server's `--dir` and its log.
    dir: tempfile::TempDir,
}

impl Redis {
    /// A standalone server.
    fn start() -> Redis {
        Redis::launch(false)
    }

    /// A server ready to join a cluster (no slots yet).
    fn start_cluster_node() -> Redis {
        Redis::launch(true)
    }

    fn launch(cluster: bool) -> Redis {
        let dir = tempfile::tempdir().expect("redis temp dir");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if cluster {
            let config = dir.path().join(format!("nodes-{port}.conf"));
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                config.display().to_string(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                // The default bus port (port + 10000) may not exist.
                "--cluster-port".into(),
                free_port().to_string(),
            ]);
        }
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("redis log");
        let mut cmd = Command::new("redis-server");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log);
        // SAFETY: prctl(2) is async-signal-safe. The server gets SIGKILL when
        // the thread that started it (the test's) ends, so it cannot outlive
        // a test process killed before drop runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
            Err(e) => panic!("starting redis-server: {e}"),
        };
        let mut redis = Redis { port, child, dir };
        let deadline = Instant::now() + WAIT;
        while redis.cli(&["ping"]).trim() != "PONG" {
            if let Some(status) = redis.child.try_wait().expect("redis-server status") {
                panic!("redis-server exited ({status}) at start{}", redis.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {WAIT:?}{}",
                redis.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p PORT ARGS...`: what it printed.
    fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = redis_cli(&[&["-p", port.as_str()][..], args].concat());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times the server has run `command` (lower case), from
    /// `INFO commandstats`.
    fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["info", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0, |rest| {
                let calls = rest.split(',').next().unwrap_or_default();
                calls.parse().expect("a call count")
            })
    }

    /// The server's log, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        format!("\n--- redis-server log ---\n{text}")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters, no replicas, every slot assigned.
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::start_cluster_node()).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = redis_cli(&args);
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + WAIT;
        for node in &nodes {
            while !node.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "node {} never reached cluster_state:ok{}",
                    node.port,
                    node.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Cluster { nodes }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// How many times the nodes together have run `command`.
    fn calls(&self, command: &str) -> u64 {
        self.nodes.iter().map(|n| n.calls(command)).sum()
    }
}

/// A checker on `urls` (one server, or cluster nodes) with batch deadline
/// `timeout` and batching window `window`.
fn on(urls: &[String], timeout: Duration, window: Duration) -> Revocation {
    let config = RevocationConfig {
        timeout,
        window,
        ..RevocationConfig::default()
    };
    Revocation::redis(config, urls).expect("revocation on redis")
}

fn jkt(n: u8) -> [u8; 32] {
    [n; 32]
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_first_claim_of_a_key_wins_and_the_next_is_a_replay() {
    let redis = Redis::start();
    let r = on(&[redis.url()], TIMEOUT, RevocationConfig::default().window);
    assert!(r.shares_claims());
    let key = r.replay_key(&jkt(1), "proof-1");
    assert_eq!(r.claim_once(key.clone(), 60 * SECOND).await, Ok(true));
    assert_eq!(r.claim_once(key.clone(), 60 * SECOND).await, Ok(false));
    let other = r.replay_key(&jkt(1), "proof-2");
    assert_eq!(r.claim_once(other, 60 * SECOND).await, Ok(true));
    // Written as specified: value 1, with an expiry.
    assert_eq!(redis.cli(&["get", &key]).trim(), "1");
    let ttl: i64 = redis.cli(&["pttl", &key]).trim().parse().unwrap();
    assert!((1..=60_000).contains(&ttl), "pttl {ttl}");
    let stats = r.stats();
    assert_eq!(stats.claims.load(Ordering::Relaxed), 3);
    assert_eq!(stats.replays.load(Ordering::Relaxed), 1);
    assert!(stats.failed_lookups().all(|(_, n)| n == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_claims_of_one_key_exactly_one_is_first() {
    let redis = Redis::start();
    let r = on(&[redis.url()], TIMEOUT, RevocationConfig::default().window);
    for round in 0..5 {
        let key = r.replay_key(&jkt(2), &format!("proof-{round}"));
        let start = Arc::new(tokio::sync::Barrier::new(64));
        let claims: Vec<_> = (0..64)
            .map(|_| {
                let (r, key, start) = (r.clone(), key.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    r.claim_once(key, 60 * SECOND).await
                })
            })
            .collect();
        let mut firsts = 0;
        for claim in claims {
            if claim.await.unwrap().expect("answered") {
                firsts += 1;
            }
        }
        assert_eq!(firsts, 1, "round {round}");
    }
    // Batched: far fewer round trips than claims.
    let stats = r.stats();
    assert_eq!(stats.claims.load(Ordering::Relaxed), 5 * 64);
    assert_eq!(stats.replays.load(Ordering::Relaxed), 5 * 63);
    let batches = stats.batches.load(Ordering::Relaxed);
    println!("5 x 64 concurrent claims in {batches} batches");
    assert!(batches < 5 * 64, "{batches} batches");
}

#[tokio::test]
async fn two_claims_of_one_key_in_one_batch_answer_first_then_replay() {
    let redis = Redis::start();
    // A long window: both claims join one batch.
    let r = on(&[redis.url()], TIMEOUT, Duration::from_millis(50));
    let key = r.replay_key(&jkt(3), "twice");
    let (a, b) = tokio::join!(
        r.claim_once(key.clone(), 60 * SECOND),
        r.claim_once(key.clone(), 60 * SECOND)
    );
    assert_eq!((a, b), (Ok(true), Ok(false)), "queue order decides");
    assert_eq!(r.stats().batches.load(Ordering::Relaxed), 1);
    assert_eq!(redis.calls("set"), 2, "not deduplicated");
}

#[tokio::test]
async fn claims_and_lookups_in_one_batch_are_all_answered() {
    let redis = Redis::start();
    let r = on(&[redis.url()], TIMEOUT, Duration::from_millis(50));
    let iss = Some("https://issuer.test");
    let revoked = token(iss, Some("alice"), Some("gone"), Some(1));
    let clear = token(iss, Some("bob"), Some("fine"), Some(1));
    redis.cli(&["set", &jti_key("jwtd:", iss, "gone"), "1"]);
    let taken = r.replay_key(&jkt(4), "taken");
    redis.cli(&["set", &taken, "1"]);
    let fresh = r.replay_key(&jkt(4), "fresh");

    let (a, b, c, d) = tokio::join!(
        r.check(&revoked, 0),
        r.claim_once(fresh.clone(), 60 * SECOND),
        r.check(&clear, 0),
        r.claim_once(taken, 60 * SECOND),
    );
    assert_eq!(a.0, Standing::Revoked);
    assert_eq!(b, Ok(true));
    assert_eq!(c.0, Standing::Clear);
    assert_eq!(d, Ok(false));
    let stats = r.stats();
    assert_eq!(stats.batches.load(Ordering::Relaxed), 1, "one round trip");
    assert_eq!(stats.keys.load(Ordering::Relaxed), 4, "two tokens' keys");
    assert_eq!(stats.claims.load(Ordering::Relaxed), 2);
    assert_eq!(stats.max_batch.load(Ordering::Relaxed), 6);
    // One issuer: one MGET; each claim one SET (plus the two above).
    assert_eq!(redis.calls("mget"), 1);
    assert_eq!(redis.calls("set"), 4);
    assert_eq!(redis.cli(&["exists", &fresh]).trim(), "1");
}

#[tokio::test]
async fn a_claim_expires_after_its_ttl() {
    let redis = Redis::start();
    let r = on(&[redis.url()], TIMEOUT, RevocationConfig::default().window);
    let key = r.replay_key(&jkt(5), "short");
    let ttl = Duration::from_millis(200);
    assert_eq!(r.claim_once(key.clone(), ttl).await, Ok(true));
    assert_eq!(r.claim_once(key.clone(), ttl).await, Ok(false));
    tokio::time::sleep(ttl + Duration::from_millis(150)).await;
    assert_eq!(r.claim_once(key.clone(), ttl).await, Ok(true), "expired");

    // A ttl under a millisecond is one (PX 0 would be an error reply).
    let tiny = r.replay_key(&jkt(5), "tiny");
    assert_eq!(r.claim_once(tiny.clone(), Duration::ZERO).await, Ok(true));
    let micro = r.replay_key(&jkt(5), "micro");
    assert_eq!(
        r.claim_once(micro, Duration::from_micros(10)).await,
        Ok(true)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.claim_once(tiny, Duration::ZERO).await, Ok(true));
    assert!(r.stats().failed_lookups().all(|(_, n)| n == 0));
}

#[tokio::test]
async fn a_redis_that_refuses_or_never_answers_fails_a_claim_within_the_deadline() {
    let deadline = Duration::from_millis(100);
    // Port 1: nothing listens, the connection is refused.
    let refused = on(
        &["redis://127.0.0.1:1".to_owned()],
        deadline,
        RevocationConfig::default().window,
    );
    let key = refused.replay_key(&jkt(6), "p");
    let asked = Instant::now();
    let failed = refused.claim_once(key.clone(), 60 * SECOND).await;
    assert!(
        matches!(failed, Err(StoreError::Connect(_) | StoreError::Timeout(_))),
        "{failed:?}"
    );
    assert!(asked.elapsed() < 2 * SECOND, "took {:?}", asked.elapsed());
    // After the breaker's failures, refused at once.
    for _ in 1..batch::BREAKER_FAILURES {
        assert!(refused.claim_once(key.clone(), SECOND).await.is_err());
    }
    assert_eq!(
        refused.claim_once(key.clone(), SECOND).await,
        Err(StoreError::BreakerOpen)
    );
    assert_eq!(refused.stats().short_circuited.load(Ordering::Relaxed), 1);
    let failures: u64 = refused.stats().failed_lookups().map(|(_, n)| n).sum();
    assert_eq!(failures, u64::from(batch::BREAKER_FAILURES) + 1);

    // Accepted by the kernel, never read: no answer comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let blackholed = on(&[url], deadline, RevocationConfig::default().window);
    let asked = Instant::now();
    assert_eq!(
        blackholed.claim_once(key, 60 * SECOND).await,
        Err(StoreError::Timeout(deadline))
    );
    assert!(asked.elapsed() < 2 * SECOND, "took {:?}", asked.elapsed());
}

#[tokio::test]
async fn the_memory_store_shares_no_claim_and_every_claim_is_first() {
    let r = Revocation::memory(RevocationConfig::default());
    assert!(!r.shares_claims());
    let key = r.replay_key(&jkt(7), "p");
    for _ in 0..3 {
        assert_eq!(r.claim_once(key.clone(), SECOND).await, Ok(true));
    }
    assert_eq!(r.stats().claims.load(Ordering::Relaxed), 0);
}

#[test]
fn replay_keys_are_the_prefix_and_the_hex_digest_of_jkt_and_jti() {
    let r = Revocation::memory(RevocationConfig {
        prefix: "p:".to_owned(),
        ..RevocationConfig::default()
    });
    let key = r.replay_key(&jkt(1), "a");
    let hex = key.strip_prefix("p:dpop:").expect("prefix + dpop:");
    assert_eq!(hex.len(), 64, "{key}");
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{key}"
    );
    // SHA-256(jkt || jti), computed apart.
    let mut input = jkt(1).to_vec();
    input.extend_from_slice(b"a");
    let d = digest::digest(&digest::SHA256, &input);
    let expected: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
    // Stable, and different for another jti or another key.
    assert_eq!(r.replay_key(&jkt(1), "a"), key);
    assert_ne!(r.replay_key(&jkt(1), "b"), key);
    assert_ne!(r.replay_key(&jkt(2), "a"), key);
    // The default prefix.
    let d = Revocation::memory(RevocationConfig::default());
    assert!(d.replay_key(&jkt(1), "a").starts_with("jwtd:dpop:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_work_the_same_on_a_redis_cluster_of_three_masters() {
    let cluster = Cluster::start();
    let r = on(&cluster.urls(), TIMEOUT, Duration::from_millis(20));
    assert!(r.shares_claims());
    let iss = Some("https://cluster-issuer.test");
    redis_set_on_cluster(&cluster, &jti_key("jwtd:", iss, "gone"));
    let revoked = token(iss, Some("alice"), Some("gone"), Some(1));

    // Keys on every node (no hash tag: each on its own slot), each claimed
    // by four tasks at once, with a lookup in the same batches.
    let keys: Vec<String> = (0..32)
        .map(|n| r.replay_key(&jkt(8), &format!("proof-{n}")))
        .collect();
    let start = Arc::new(tokio::sync::Barrier::new(keys.len() * 4 + 1));
    let claims: Vec<_> = (0..4)
        .flat_map(|_| keys.iter().cloned().enumerate())
        .map(|(n, key)| {
            let (r, start) = (r.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                (n, r.claim_once(key, 60 * SECOND).await)
            })
        })
        .collect();
    let lookup = {
        let (r, start) = (r.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            r.check(&revoked, 0).await.0
        })
    };
    let mut firsts = vec![0; keys.len()];
    for claim in claims {
        let (n, claimed) = claim.await.unwrap();
        if claimed.expect("answered") {
            firsts[n] += 1;
        }
    }
    assert_eq!(firsts, vec![1; keys.len()], "one first claim per key");
    assert_eq!(lookup.await.unwrap(), Standing::Revoked);
    // Every node took some of the claims.
    for node in &cluster.nodes {
        assert!(node.calls("set") > 0, "node {} took no claim", node.port);
    }
    assert_eq!(cluster.calls("set"), 1 + 4 * keys.len() as u64);
    println!(
        "cluster: {} claims and a lookup in {} batches",
        4 * keys.len(),
        r.stats().batches.load(Ordering::Relaxed)
    );

    // A replay, and a fresh key, one at a time.
    assert_eq!(r.claim_once(keys[0].clone(), SECOND).await, Ok(false));
    let fresh = r.replay_key(&jkt(9), "fresh");
    assert_eq!(r.claim_once(fresh.clone(), SECOND).await, Ok(true));
    assert_eq!(r.claim_once(fresh, SECOND).await, Ok(false));
}

/// `SET key 1` on the cluster (`redis-cli -c` follows the redirection).
fn redis_set_on_cluster(cluster: &Cluster, key: &str) {
    let port = cluster.nodes[0].port.to_string();
    let out = redis_cli(&["-c", "-p", &port, "set", key, "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{out:?}"
    );
}
