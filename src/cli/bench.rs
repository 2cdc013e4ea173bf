//! `jwtd bench`: the load generator, and the reference servers it is
//! compared with in the same run.
//!
//! * `jwtd bench run`: N connections x pipeline depth against a jwtd socket
//!   (native protocol) or an HTTP verifier on a Unix socket (`--http`:
//!   `GET /verify` with `Authorization: Bearer`, one request at a time per
//!   connection, for peers such as the Node `jose` service). Closed loop by
//!   default; `--rate` paces requests open loop (a pacer thread ticks every
//!   100 us; each connection sends what real elapsed time owes) to measure
//!   latency below saturation. Reports requests/s and p50/p99/p99.9, and,
//!   with `--server-pid`, the server's CPU time per request from `/proc`.
//! * `jwtd bench echo`: a server speaking the native framing that answers
//!   every request VALID without verifying: the transport limit, measured
//!   with the same client.
//! * `jwtd bench crypto`: raw aws-lc-rs verification of one signature on
//!   one thread: the crypto limit per core. With `--dpop-proof`, the raw
//!   check of a DPoP proof's signature beside jwtd's whole proof check and
//!   a replay-cache admission, interleaved in short rounds.
//!
//! DPoP (`run --dpop-key`): every request is a VERIFY_CTX carrying a proof
//! for its token. Proofs are the client's work, so they are all signed
//! before the warm-up (spread over the cores this process may use) and
//! none during the measured window; each is sent once. They go stale after
//! the daemon's proof window (60 s + 30 s of leeway by default), so a run
//! is refused when it cannot end inside it.
//!
//! Latency is measured from the write of a request to the read of its reply.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

mod jwe;

use jwtd::protocol::{self, Reply, WireContext};
use jwtd::verify::Anomalies;
use jwtd::verify::KeySet;

/// `jwtd bench` subcommands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Drive load at a socket and report throughput and latency.
    Run(RunArgs),
    /// Serve the native framing, answering VALID without verifying.
    Echo(EchoArgs),
    /// Measure raw single-thread signature verification.
    Crypto(CryptoArgs),
    /// Mint distinct tokens, one per line, for `run --tokens`.
    Tokens(TokensArgs),
}

#[derive(Debug, clap::Args)]
struct TokensArgs {
    /// Private key (as for `jwtd mint`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// How many tokens.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Issuer claim (iss).
    // `--iss`, the old spelling, stays for scripts.
    #[arg(long = "issuer", alias = "iss", value_name = "S")]
    issuer: Option<String>,
    /// Audience claim (aud).
    // `--aud`, the old spelling, stays for scripts.
    #[arg(long = "audience", alias = "aud", value_name = "S")]
    audience: Option<String>,
    /// Lifetime of the tokens.
    #[arg(long, default_value = "1h", value_parser = jwtd::config::parse_duration)]
    ttl: Duration,
    /// Bind every token to this DPoP key (a private key file): `cnf.jkt`
    /// is its RFC 7638 thumbprint, as `jwtd mint --dpop-key`.
    #[arg(long, value_name = "FILE")]
    dpop_key: Option<PathBuf>,
    /// Encrypt every token (a nested JWT), as `jwtd mint --encrypt-to`.
    #[command(flatten)]
    encrypt: super::mint::EncryptArgs,
}

/// The URI DPoP proofs are made for unless `--dpop-uri` says otherwise.
const DEFAULT_DPOP_URI: &str = "https://api.example.com/orders";

/// Proofs made per second of warm-up and measurement in closed loop when
/// `--dpop-proofs` is not given: about twice what jwtd verifies per
/// second on a 2-core machine (ES256 proofs).
const DEFAULT_PROOFS_PER_SECOND: u64 = 25_000;

/// Longest warm-up + measurement (plus the time to sign the proofs) a DPoP
/// run may take: proofs are stale after the daemon's max age + leeway, 60
/// + 30 s by default, counted from their `iat` (when they were signed).
const MAX_DPOP_RUN: Duration = Duration::from_secs(85);

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Socket to load.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Speak HTTP/1.1 (`GET /verify`, bearer token) instead of the native
    /// protocol; depth is then 1.
    #[arg(long)]
    http: bool,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection (native protocol).
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// Measurement time.
    #[arg(long, short = 'd', default_value = "10s", value_parser = jwtd::config::parse_duration)]
    duration: Duration,
    /// Warm-up time before measuring (not counted).
    #[arg(long, default_value = "1s", value_parser = jwtd::config::parse_duration)]
    warmup: Duration,
    /// Open loop: total requests per second, paced over all connections.
    #[arg(long)]
    rate: Option<u64>,
    /// Tokens, one per line, used round-robin (one line = every request a
    /// cache hit after the first); see `jwtd bench tokens`.
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// Native selector sent with every request.
    #[arg(long, value_name = "S", default_value = "")]
    selector: String,
    /// Report this process's CPU time per request (from /proc);
    /// repeatable: the CPU of all of them (e.g. a proxy and jwtd), with
    /// each one's share.
    #[arg(long, value_name = "PID")]
    server_pid: Vec<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Present every token as DPoP, with a fresh proof signed by this
    /// client key (the `--tokens` must be bound to it: `jwtd bench tokens
    /// --dpop-key`). Native protocol only: each request is a VERIFY_CTX.
    #[arg(long, value_name = "FILE", conflicts_with = "http")]
    dpop_key: Option<PathBuf>,
    /// The request URI the proofs are for (htu), sent with each request.
    #[arg(long, value_name = "URI", default_value = DEFAULT_DPOP_URI, requires = "dpop_key")]
    dpop_uri: String,
    /// The request method the proofs are for (htm), sent with each request.
    #[arg(
        long,
        value_name = "METHOD",
        default_value = "GET",
        requires = "dpop_key"
    )]
    dpop_method: String,
    /// Proofs to sign before the run, each sent once [default: `--rate` x
    /// (warm-up + duration) + 20%, or 25,000 per second in closed loop].
    /// If they run out during the measurement, the measured window ends
    /// there (and the report says so); during the warm-up, the run fails.
    #[arg(long, value_name = "N", requires = "dpop_key")]
    dpop_proofs: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct EchoArgs {
    /// Socket to serve.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CryptoArgs {
    /// Key set holding the token's key.
    // `--jwks`, the old spelling, stays for scripts.
    #[arg(
        long = "jwks-file",
        alias = "jwks",
        value_name = "FILE",
        required_unless_present = "dpop_proof"
    )]
    jwks_file: Option<PathBuf>,
    /// A token signed by a key of the set.
    #[arg(long, value_name = "TOKEN", required_unless_present_any = ["dpop_proof", "jwe"])]
    token: Option<String>,
    /// Instead of a token: a nested JWT (a JWE around a token signed by a
    /// key of --jwks-file), decrypted with --jwe-keys. Measures, in
    /// interleaved rounds, the raw primitives (key management, content
    /// decryption, the inner signature) against jwtd's decrypt + verify.
    #[arg(long, value_name = "JWE", conflicts_with_all = ["token", "dpop_proof"], requires = "jwe_keys")]
    jwe: Option<String>,
    /// The decryption keys (a JWK set), with --jwe.
    #[arg(long, value_name = "FILE", requires = "jwe")]
    jwe_keys: Option<PathBuf>,
    /// Instead of a token: a DPoP proof, checked with the key in its own
    /// header. Measures, interleaved in rounds of a few ms: `raw`, the
    /// signature alone (key parsed once); `proof`, jwtd's whole proof
    /// check (`verify::dpop::verify_proof`: parse, key, signature,
    /// thumbprint, claims, htu, ath); `replay`, one replay-cache admission;
    /// `key`, parsing the proof's `jwk` into a key (as a one-key set).
    #[arg(long, value_name = "PROOF", conflicts_with_all = ["jwks_file", "token"])]
    dpop_proof: Option<String>,
    /// The access token the proof was made for (its ath), with
    /// `--dpop-proof`.
    #[arg(long, value_name = "TOKEN", requires = "dpop_proof")]
    access_token: Option<String>,
    /// The request URI the proof was made for (htu), with `--dpop-proof`.
    #[arg(long, value_name = "URI", default_value = DEFAULT_DPOP_URI)]
    uri: String,
    /// The request method the proof was made for (htm), with
    /// `--dpop-proof`.
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// Measurement time.
    #[arg(long, default_value = "3s", value_parser = jwtd::config::parse_duration)]
    duration: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Run(a) => run_load(a),
        BenchCommand::Echo(a) => run_echo(a),
        BenchCommand::Crypto(a) => run_crypto(a),
        BenchCommand::Tokens(a) => run_tokens(a),
    }
}

fn load_tokens(path: &std::path::Path) -> anyhow::Result<Vec<Bytes>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--tokens {}", path.display()))?;
    let tokens: Vec<Bytes> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Bytes::copy_from_slice(l.as_bytes()))
        .collect();
    if tokens.is_empty() {
        bail!("--tokens {}: no tokens", path.display());
    }
    Ok(tokens)
}

fn run_tokens(a: TokensArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let key = super::signing_key("--key", &a.key)?;
    let jkt = a
        .dpop_key
        .as_deref()
        .map(|path| super::signing_key("--dpop-key", path).map(|k| k.thumbprint()))
        .transpose()?;
    let encryption = a.encrypt.encryption()?;
    // One random number per run in every jti: two runs in the same second
    // (pools of a benchmark) must not share jtis, or revoking one pool's
    // tokens revokes the other's.
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let run = u64::from_be_bytes(nonce);
    let now = jwtd::clock::unix_now();
    let exp = now.saturating_add(i64::try_from(a.ttl.as_secs()).unwrap_or(i64::MAX));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..a.count {
        // A realistic access token: ~300 bytes of claims.
        let mut claims = json!({
            "sub": format!("user-{i:06}"), "iat": now, "nbf": now - 60, "exp": exp,
            "jti": format!("bench-{run:016x}-{i:08}"),
            "scope": "openid profile email orders:read orders:write payments:read",
        });
        if let Some(iss) = &a.issuer {
            claims["iss"] = iss.as_str().into();
        }
        if let Some(aud) = &a.audience {
            claims["aud"] = aud.as_str().into();
        }
        if let Some(jkt) = &jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let token = key.mint(&claims, &Default::default())?;
        match &encryption {
            Some(e) => writeln!(out, "{}", e.seal(&token)?)?,
            None => writeln!(out, "{token}")?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Per-connection results.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    invalid: u64,
    other: u64,
    /// Replies other than VALID over the whole run, warm-up included, by
    /// reason (`dpop_replay`, `overloaded`...).
    not_valid: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 ns .. 60 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            ok: 0,
            invalid: 0,
            other: 0,
            not_valid: BTreeMap::new(),
        }
    }

    /// Counts a reply that is not VALID under its reason, measured or not.
    fn note(&mut self, reply: &Reply) {
        let reason = match reply {
            Reply::Valid { .. } => return,
            Reply::Invalid { reason, .. } => reason.as_str().to_owned(),
            Reply::Undecided { cause, .. } => cause.as_str().to_owned(),
            Reply::Error { error, .. } => format!("error: {}", error.message()),
            Reply::Pong { .. } => "pong".to_owned(),
            Reply::Done { .. } => "done".to_owned(),
            Reply::Other { status, code, .. } => format!("status {status} code {code}"),
        };
        *self.not_valid.entry(reason).or_default() += 1;
    }

    fn record(&mut self, latency: Duration, outcome: Option<bool>) {
        let _ = self
            .hist
            .record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
        match outcome {
            Some(true) => self.ok += 1,
            Some(false) => self.invalid += 1,
            None => self.other += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.invalid += other.invalid;
        self.other += other.other;
        for (reason, n) in &other.not_valid {
            *self.not_valid.entry(reason.clone()).or_default() += n;
        }
    }
}

/// DPoP proofs signed before the run (`run --dpop-key`), sent in order,
/// each once, by whichever connection asks next.
struct Proofs {
    method: Bytes,
    uri: Bytes,
    /// (index of the token in `--tokens`, proof made for it).
    list: Vec<(usize, Bytes)>,
    next: AtomicUsize,
    ran_out: AtomicBool,
}

impl Proofs {
    /// The next unsent proof, or `None` (and `ran_out` set) when all are
    /// sent.
    fn take(&self) -> Option<&(usize, Bytes)> {
        let proof = self.list.get(self.next.fetch_add(1, Ordering::Relaxed));
        if proof.is_none() {
            self.ran_out.store(true, Ordering::Relaxed);
        }
        proof
    }

    fn ran_out(&self) -> bool {
        self.ran_out.load(Ordering::Relaxed)
    }

    fn sent(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.list.len())
    }
}

/// Signs `--dpop-proofs` proofs for the tokens, round-robin, on every core
/// this process may run on (all of them before any request is sent).
fn make_proofs(
    a: &RunArgs,
    key_path: &std::path::Path,
    tokens: &[Bytes],
) -> anyhow::Result<Proofs> {
    let key = super::signing_key("--dpop-key", key_path)?;
    let run = a.warmup + a.duration;
    let count = match (a.dpop_proofs, a.rate) {
        (Some(n), _) => n,
        (None, Some(rate)) => (rate as f64 * run.as_secs_f64() * 1.2) as u64 + 1000,
        (None, None) => (DEFAULT_PROOFS_PER_SECOND as f64 * run.as_secs_f64()) as u64,
    };
    let count = usize::try_from(count).context("--dpop-proofs")?.max(1);
    if run > MAX_DPOP_RUN {
        bail!(
            "--dpop-key: --warmup + --duration is {:.0} s, but the proofs, all signed before the run, must be used within {} s of signing (the daemon's default DPoP window is 60 s + 30 s of leeway): keep runs shorter",
            run.as_secs_f64(),
            MAX_DPOP_RUN.as_secs()
        );
    }
    // A prefix unique to this run: the daemon remembers (jkt, jti) for the
    // proof window, so two runs in a row must not reuse a jti.
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).context("random jti prefix")?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let iat = jwtd::clock::unix_now();
    let began = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(count);
    let chunk = count.div_ceil(threads);
    let no_extra = serde_json::Map::new();
    let list = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (key, nonce, no_extra) = (&key, &nonce, &no_extra);
                scope.spawn(move || -> anyhow::Result<Vec<(usize, Bytes)>> {
                    (t * chunk..((t + 1) * chunk).min(count))
                        .map(|i| {
                            let token = i % tokens.len();
                            let proof = key.dpop_proof(
                                &a.dpop_method,
                                &a.dpop_uri,
                                Some(&tokens[token]),
                                iat,
                                &format!("{nonce}-{i}"),
                                no_extra,
                            )?;
                            Ok((token, Bytes::from(proof)))
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("proof signing thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?
    .concat();
    let signing = began.elapsed();
    if signing + run > MAX_DPOP_RUN {
        bail!(
            "--dpop-key: signing {count} proofs took {:.1} s; with the run they would go stale before its end: fewer --dpop-proofs or a shorter run",
            signing.as_secs_f64()
        );
    }
    eprintln!(
        "signed {count} DPoP proofs ({}) in {:.2} s on {threads} thread(s), before the run",
        key.alg(),
        signing.as_secs_f64()
    );
    Ok(Proofs {
        method: Bytes::copy_from_slice(a.dpop_method.as_bytes()),
        uri: Bytes::copy_from_slice(a.dpop_uri.as_bytes()),
        list,
        next: AtomicUsize::new(0),
        ran_out: AtomicBool::new(false),
    })
}

/// Process CPU time (user + system) in seconds, from /proc/PID/stat.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Ok(ticks / 100.0)
}

fn run_load(a: RunArgs) -> anyhow::Result<ExitCode> {
    let tokens = Arc::new(load_tokens(&a.tokens)?);
    let proofs = a
        .dpop_key
        .as_deref()
        .map(|key| make_proofs(&a, key, &tokens).map(Arc::new))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut settings = a.settings();
    settings.proofs = proofs.clone();
    let json = settings.json;
    let a_pids = settings.server_pid.clone();
    let summary = runtime.block_on(load(settings, tokens))?;
    let not_valid: u64 = summary.tally.not_valid.values().sum();
    let dpop = proofs.as_ref().map(|p| {
        json!({
            "proofs": p.list.len(), "sent": p.sent(), "ran_out": summary.proofs_ran_out,
        })
    });
    let secs = summary.elapsed.as_secs_f64();
    let total = summary.tally.ok + summary.tally.invalid + summary.tally.other;
    let rps = total as f64 / secs;
    let q = |p: f64| summary.tally.hist.value_at_quantile(p) as f64 / 1000.0;
    let per_request = |cpu: f64| cpu * 1e6 / total.max(1) as f64;
    let cpu_us =
        (!summary.server_cpu.is_empty()).then(|| per_request(summary.server_cpu.iter().sum()));
    let cpu_by_pid: serde_json::Map<String, serde_json::Value> = a_pids
        .iter()
        .zip(&summary.server_cpu)
        .map(|(pid, cpu)| (pid.to_string(), per_request(*cpu).into()))
        .collect();
    if json {
        println!(
            "{}",
            json!({
                "requests": total, "valid": summary.tally.ok, "invalid": summary.tally.invalid,
                "other": summary.tally.other, "seconds": secs, "rps": rps,
                "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": summary.tally.hist.max() as f64 / 1000.0,
                "server_cpu_us_per_request": cpu_us,
                "server_cpu_us_per_request_by_pid": cpu_by_pid,
                "not_valid": summary.tally.not_valid, "dpop": dpop,
            })
        );
    } else {
        println!(
            "{total} requests in {secs:.2} s: {rps:.0} req/s ({} valid, {} invalid, {} other)",
            summary.tally.ok, summary.tally.invalid, summary.tally.other
        );
        println!(
            "latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            q(0.5),
            q(0.99),
            q(0.999),
            summary.tally.hist.max() as f64 / 1000.0
        );
        if let Some(us) = cpu_us {
            println!("server CPU {us:.2} us per request");
        }
        if let Some(p) = &proofs {
            println!(
                "DPoP: {} of {} proofs sent, each once",
                p.sent(),
                p.list.len()
            );
        }
    }
    if not_valid > 0 {
        let reasons: Vec<String> = summary
            .tally
            .not_valid
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        eprintln!(
            "warning: {not_valid} replies were not VALID over the run, warm-up included: {}",
            reasons.join(", ")
        );
    }
    if summary.proofs_ran_out {
        eprintln!(
            "warning: the DPoP proofs ran out after {:.2} s of measurement: the measured window ended there (raise --dpop-proofs)",
            secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings the async part needs (clap structs stay on the CLI side).
#[derive(Clone)]
struct RunSettings {
    socket: PathBuf,
    http: bool,
    connections: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    rate: Option<u64>,
    selector: Bytes,
    server_pid: Vec<u32>,
    json: bool,
    /// DPoP proofs to send, one per request (`--dpop-key`).
    proofs: Option<Arc<Proofs>>,
}

impl RunArgs {
    fn settings(&self) -> RunSettings {
        RunSettings {
            socket: self.socket.clone(),
            http: self.http,
            connections: self.connections.max(1),
            depth: if self.http { 1 } else { self.depth.max(1) },
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            selector: Bytes::copy_from_slice(self.selector.as_bytes()),
            server_pid: self.server_pid.clone(),
            json: self.json,
            proofs: None,
        }
    }
}

struct Summary {
    tally: Tally,
    elapsed: Duration,
    /// CPU seconds of each `--server-pid` over the measured window.
    server_cpu: Vec<f64>,
    /// The DPoP proofs ran out: the measured window ended early.
    proofs_ran_out: bool,
}

/// Sleeps for `d`, or until the DPoP proofs run out (then returns true).
async fn sleep_unless_out(d: Duration, proofs: Option<&Proofs>) -> bool {
    let Some(proofs) = proofs else {
        tokio::time::sleep(d).await;
        return false;
    };
    let end = Instant::now() + d;
    loop {
        if proofs.ran_out() {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(5))).await;
    }
}

async fn load(s: RunSettings, tokens: Arc<Vec<Bytes>>) -> anyhow::Result<Summary> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // tokio's timers tick in milliseconds; a millisecond of requests sent as
    // one burst would measure the burst, not the server. A plain thread
    // sleeping 100 us wakes the connections instead.
    let pacer = s.rate.map(|_| {
        let (notify, stop) = (Arc::new(tokio::sync::Notify::new()), stop.clone());
        let ticks = notify.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(100));
                ticks.notify_waiters();
            }
        });
        notify
    });
    let mut tasks = Vec::new();
    for c in 0..s.connections {
        let stream = UnixStream::connect(&s.socket)
            .await
            .with_context(|| format!("connect {}", s.socket.display()))?;
        let (s2, tokens, measuring, stop, pacer) = (
            s.clone(),
            tokens.clone(),
            measuring.clone(),
            stop.clone(),
            pacer.clone(),
        );
        // Each connection starts at a different token so N connections
        // over N tokens do not all ask about the same one.
        let start = c * tokens.len() / s.connections;
        tasks.push(tokio::spawn(async move {
            if s2.http {
                http_connection(stream, &s2, &tokens, start, pacer, measuring, stop).await
            } else {
                native_connection(stream, &s2, &tokens, start, pacer, measuring, stop).await
            }
        }));
    }
    let proofs = s.proofs.as_deref();
    if sleep_unless_out(s.warmup, proofs).await {
        stop.store(true, Ordering::Relaxed);
        bail!(
            "the {} DPoP proofs ran out during the warm-up: raise --dpop-proofs",
            proofs.map_or(0, |p| p.list.len())
        );
    }
    let cpu = |pids: &[u32]| -> anyhow::Result<Vec<f64>> {
        pids.iter().map(|p| process_cpu(*p)).collect()
    };
    let cpu_before = cpu(&s.server_pid)?;
    let began = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    let proofs_ran_out = sleep_unless_out(s.duration, proofs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed();
    let cpu_after = cpu(&s.server_pid)?;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(&t.await.context("load task")??);
    }
    Ok(Summary {
        tally,
        elapsed,
        server_cpu: cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| a - b)
            .collect(),
        proofs_ran_out,
    })
}

/// Send times of outstanding requests, by id (slot = id mod size).
struct InFlight {
    slots: Vec<(u32, Option<Instant>)>,
}

impl InFlight {
    fn new(depth: usize) -> InFlight {
        InFlight {
            // Large enough that an id is never overwritten while its request
            // is still outstanding, even far past saturation in open loop.
            slots: vec![(0, None); (depth * 64).next_power_of_two().max(1 << 18)],
        }
    }
    fn put(&mut self, id: u32, at: Instant) {
        let n = self.slots.len();
        self.slots[id as usize & (n - 1)] = (id, Some(at));
    }
    fn take(&mut self, id: u32) -> Option<Instant> {
        let n = self.slots.len();
        let slot = &mut self.slots[id as usize & (n - 1)];
        if slot.0 == id { slot.1.take() } else { None }
    }
}

/// The request stream of one connection: which token and id come next, and
/// when each outstanding id was sent.
struct Requests<'a> {
    tokens: &'a [Bytes],
    selector: &'a Bytes,
    /// DPoP: each request takes the next proof (and the token it is for).
    proofs: Option<&'a Proofs>,
    next_id: u32,
    next_token: usize,
    inflight: InFlight,
}

impl Requests<'_> {
    /// Encodes up to `n` requests into `out` (VERIFY, or VERIFY_CTX with a
    /// proof); returns how many (fewer once the proofs have run out).
    fn queue(&mut self, out: &mut BytesMut, n: usize) -> usize {
        let now = Instant::now();
        for queued in 0..n {
            match self.proofs {
                Some(proofs) => {
                    let Some((token, proof)) = proofs.take() else {
                        return queued;
                    };
                    let context = WireContext {
                        method: Some(proofs.method.clone()),
                        uri: Some(proofs.uri.clone()),
                        dpop: Some(proof.clone()),
                        ..Default::default()
                    };
                    protocol::encode_verify_ctx(
                        out,
                        self.next_id,
                        self.selector,
                        &self.tokens[*token],
                        &context,
                    );
                }
                None => {
                    let token = &self.tokens[self.next_token % self.tokens.len()];
                    self.next_token += 1;
                    protocol::encode_verify(out, self.next_id, self.selector, token);
                }
            }
            self.inflight.put(self.next_id, now);
            self.next_id = self.next_id.wrapping_add(1);
        }
        n
    }

    /// Nothing more will be sent: the proofs have run out.
    fn exhausted(&self) -> bool {
        self.proofs.is_some_and(Proofs::ran_out)
    }
}

/// Writes as much of `out` as the socket takes now, without waiting.
fn flush_some(wr: &tokio::net::unix::OwnedWriteHalf, out: &mut BytesMut) -> anyhow::Result<()> {
    while !out.is_empty() {
        match wr.try_write(out) {
            Ok(0) => bail!("server closed the connection"),
            Ok(n) => {
                let _ = out.split_to(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
async fn native_connection(
    stream: UnixStream,
    s: &RunSettings,
    tokens: &[Bytes],
    start: usize,
    pacer: Option<Arc<tokio::sync::Notify>>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Tally> {
    let (mut rd, wr) = stream.into_split();
    let mut tally = Tally::new();
    let mut requests = Requests {
        tokens,
        selector: &s.selector,
        proofs: s.proofs.as_deref(),
        next_id: 1,
        next_token: start,
        inflight: InFlight::new(s.depth),
    };
    let mut out = BytesMut::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut outstanding = 0usize;
    // Open loop: requests owed per second on this connection.
    let per_second = s.rate.map(|r| r as f64 / s.connections as f64);
    let mut owed = 0.0f64;
    let mut last_pace = Instant::now();

    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && outstanding == 0 {
            break;
        }
        if per_second.is_none() && !stopping && outstanding < s.depth {
            outstanding += requests.queue(&mut out, s.depth - outstanding);
            flush_some(&wr, &mut out)?;
        }
        // Out of proofs and nothing left to read: no reply would wake us.
        if outstanding == 0 && requests.exhausted() {
            break;
        }
        let tick = async {
            match &pacer {
                Some(p) => p.notified().await,
                None => std::future::pending().await,
            }
        };
        // Writes never block the loop: a server busy writing replies we are
        // not reading would wait on us while we wait on it (both socket
        // buffers full). What does not fit goes when the socket is
        // writable again.
        tokio::select! {
            ready = wr.writable(), if !out.is_empty() => {
                ready?;
                flush_some(&wr, &mut out)?;
            }
            read = rd.read_buf(&mut buf) => {
                if read? == 0 {
                    bail!("server closed the connection");
                }
                let now = Instant::now();
                while let Some(reply) = protocol::decode_reply(&mut buf, usize::MAX >> 1)
                    .map_err(|e| anyhow::anyhow!("bad reply: {:?}", e.error))?
                {
                    outstanding = outstanding.saturating_sub(1);
                    tally.note(&reply);
                    let outcome = match reply {
                        Reply::Valid { .. } => Some(true),
                        Reply::Invalid { .. } => Some(false),
                        _ => None,
                    };
                    let sent = requests.inflight.take(reply.id());
                    if let Some(sent) = sent
                        && measuring.load(Ordering::Relaxed)
                    {
                        tally.record(now - sent, outcome);
                    }
                }
            }
            () = tick => {
                let now = Instant::now();
                owed += per_second.unwrap_or(0.0) * (now - last_pace).as_secs_f64();
                last_pace = now;
                let n = owed as usize;
                owed -= n as f64;
                if n > 0 && !stop.load(Ordering::Relaxed) {
                    outstanding += requests.queue(&mut out, n);
                    flush_some(&wr, &mut out)?;
                }
            }
        }
    }
    Ok(tally)
}

async fn http_connection(
    mut stream: UnixStream,
    s: &RunSettings,
    tokens: &[Bytes],
    start: usize,
    pacer: Option<Arc<tokio::sync::Notify>>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut i = start;
    // Open loop: each request has a scheduled time, and its latency counts
    // from then, so a slow answer that delays the next send is not hidden
    // (coordinated omission).
    let interval = s
        .rate
        .map(|r| Duration::from_secs_f64(s.connections as f64 / r.max(1) as f64));
    let mut scheduled = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let token = &tokens[i % tokens.len()];
        i += 1;
        let mut req = Vec::with_capacity(token.len() + 96);
        req.extend_from_slice(b"GET /verify HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ");
        req.extend_from_slice(token);
        req.extend_from_slice(b"\r\n\r\n");
        let sent = match (interval, &pacer) {
            (Some(every), Some(pacer)) => {
                // Woken by the pacer thread's 100 us ticks: tokio's timer
                // has millisecond granularity, too coarse for per-connection
                // intervals below a millisecond.
                scheduled += every;
                while Instant::now() < scheduled && !stop.load(Ordering::Relaxed) {
                    pacer.notified().await;
                }
                scheduled
            }
            _ => Instant::now(),
        };
        // A server may close a kept-alive connection between two requests
        // (nginx after `keepalive_requests`): reconnect and send again,
        // once.
        let status = match exchange_http(&mut stream, &req, &mut buf).await {
            Ok(status) => status,
            Err(_) => {
                stream = UnixStream::connect(&s.socket)
                    .await
                    .with_context(|| format!("reconnect {}", s.socket.display()))?;
                buf.clear();
                exchange_http(&mut stream, &req, &mut buf).await?
            }
        };
        if measuring.load(Ordering::Relaxed) {
            let outcome = match status {
                200 => Some(true),
                401 | 403 => Some(false),
                _ => None,
            };
            if status != 200 {
                *tally.not_valid.entry(format!("HTTP {status}")).or_default() += 1;
            }
            tally.record(sent.elapsed(), outcome);
        }
    }
    Ok(tally)
}

async fn exchange_http(
    stream: &mut UnixStream,
    req: &[u8],
    buf: &mut BytesMut,
) -> anyhow::Result<u16> {
    stream.write_all(req).await?;
    read_http_response(stream, buf).await
}

/// Reads one HTTP/1.1 response (Content-Length bodies only) and returns its
/// status code.
async fn read_http_response(stream: &mut UnixStream, buf: &mut BytesMut) -> anyhow::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("non-UTF-8 response head")?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .context("bad status line")?;
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                if stream.read_buf(buf).await? == 0 {
                    bail!("server closed mid-response");
                }
            }
            let _ = buf.split_to(end + 4 + len);
            return Ok(status);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("server closed the connection");
        }
    }
}

/// A typical claims body (~300 bytes), so echo replies are as large as the
/// daemon's.
const ECHO_CLAIMS: &[u8] = br#"{"iss":"https://issuer.example.test/","sub":"user-000000","aud":"api://jwt-sidecar-bench","exp":1795350000,"nbf":1795346340,"iat":1795346400,"jti":"00000000-0000-4000-8000-000000000000","scope":"openid profile email orders:read orders:write payments:read inventory:read"}"#;

fn run_echo(a: EchoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (listener, socket_file) = jwtd::server::bind(&a.socket, 0o660)?;
        eprintln!("echo server on {}", a.socket.display());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    tokio::spawn(echo_connection(stream));
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        socket_file.remove();
        Ok(ExitCode::SUCCESS)
    })
}

async fn echo_connection(stream: UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let claims = Bytes::from_static(ECHO_CLAIMS);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match protocol::decode_request(&mut buf, protocol::DEFAULT_MAX_FRAME) {
                Ok(Some(req)) => Reply::Valid {
                    id: req.id,
                    cached: true,
                    anomalies: Anomalies::NONE,
                    claims: claims.clone(),
                }
                .encode(&mut out),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn run_crypto(a: CryptoArgs) -> anyhow::Result<ExitCode> {
    if let Some(proof) = &a.dpop_proof {
        return run_crypto_proof(&a, proof.trim().as_bytes());
    }
    if let (Some(token), Some(keys), Some(jwks)) = (&a.jwe, &a.jwe_keys, &a.jwks_file) {
        return jwe::run(token, keys, jwks, a.duration, a.json);
    }
    let (Some(jwks_file), Some(token)) = (&a.jwks_file, &a.token) else {
        bail!("--jwks-file and --token, or --dpop-proof");
    };
    let keys = KeySet::from_jwks(
        &std::fs::read(jwks_file)
            .with_context(|| format!("--jwks-file {}", jwks_file.display()))?,
    )?;
    let token = token.trim().as_bytes();
    let (alg, signing_input, sig) = split_jws(token)?;
    let key = keys
        .keys()
        .iter()
        .find(|k| k.verify(alg, signing_input, &sig))
        .context("no key of the set verifies the token")?;
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < a.duration {
        for _ in 0..64 {
            std::hint::black_box(key.verify(alg, std::hint::black_box(signing_input), &sig));
        }
        n += 64;
    }
    let per = began.elapsed().as_secs_f64() / n as f64;
    if a.json {
        println!(
            "{}",
            json!({"alg": alg.as_str(), "raw_us": per * 1e6, "per_second": 1.0 / per})
        );
    } else {
        println!(
            "{alg}: {:.0} verifications/s on one thread ({:.2} us each)",
            1.0 / per,
            per * 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A compact JWS's algorithm (from its header), signing input and
/// decoded signature.
fn split_jws(jws: &[u8]) -> anyhow::Result<(jwtd::verify::Algorithm, &[u8], Vec<u8>)> {
    let dot = jws.iter().rposition(|b| *b == b'.').context("not a JWS")?;
    let sig = jwtd::verify::B64URL
        .decode(&jws[dot + 1..])
        .context("signature is not base64url")?;
    let header =
        jwtd::verify::B64URL.decode(&jws[..jws.iter().position(|b| *b == b'.').unwrap_or(0)])?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    let alg = header["alg"].as_str().unwrap_or_default().parse()?;
    Ok((alg, &jws[..dot], sig))
}

/// `bench crypto --dpop-proof`: the proof's raw signature check against
/// jwtd's whole proof check and a replay admission, in rounds: each round
/// runs a batch of about 2 ms of every case (the order rotating), so all
/// cases of a round see the same machine, and the proof / raw ratio is
/// taken within each round (the median is reported).
fn run_crypto_proof(a: &CryptoArgs, proof: &[u8]) -> anyhow::Result<ExitCode> {
    use jwtd::bind::replay::{self, Replay};
    use jwtd::verify::dpop::{self, Expect, ProofPolicy};

    let (alg, signing_input, sig) = split_jws(proof)?;
    let header = jwtd::verify::B64URL
        .decode(&proof[..proof.iter().position(|b| *b == b'.').unwrap_or(0)])?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    let jwks = serde_json::to_vec(&json!({ "keys": [header["jwk"]] }))?;
    let keys = KeySet::from_jwks(&jwks).context("the proof's jwk")?;
    let key = keys.keys().first().context("the proof has no jwk")?;
    anyhow::ensure!(
        key.verify(alg, signing_input, &sig),
        "the proof's signature does not verify under its jwk"
    );
    let token = a
        .access_token
        .as_deref()
        .context("--access-token: the token the proof was made for (its ath)")?
        .trim();
    let expect = Expect {
        method: &a.method,
        uri: &a.uri,
        access_token: token.as_bytes(),
        jkt: None,
    };
    let policy = ProofPolicy::default();
    let now = jwtd::clock::unix_now();
    let checked = dpop::verify_proof(proof, &policy, &expect, now)
        .map_err(|p| anyhow::anyhow!("the proof does not hold: {p}"))?;
    // As the daemon asks: the token's cnf.jkt compared inside, before the
    // signature.
    let expect = Expect {
        jkt: Some(checked.jkt),
        ..expect
    };
    // A replay cache as the daemon's, admitting a new jti of the proof's
    // key each time. One key may hold an eighth of the capacity (250,000
    // here); the cache is renewed (untimed) at 200,000 entries, so the case
    // measures admissions, never a full share.
    let mut cache = Replay::new(2_000_000);
    let mut next_jti = 0u64;

    const CASES: [&str; 4] = ["raw", "proof", "replay", "key"];
    let per_batch = |d: Duration| -> u64 {
        // About 2 ms of the raw check per batch.
        (0.002 / d.as_secs_f64()).clamp(1.0, 10_000.0) as u64
    };
    let probe = Instant::now();
    for _ in 0..16 {
        std::hint::black_box(key.verify(alg, signing_input, &sig));
    }
    let batch = per_batch(probe.elapsed() / 16);
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut ratios = Vec::new();
    let began = Instant::now();
    let mut round = 0usize;
    while began.elapsed() < a.duration {
        let mut this = [0.0f64; 4];
        for k in 0..CASES.len() {
            let case = (round + k) % CASES.len();
            if case == 2 && cache.len() > 200_000 {
                cache = Replay::new(2_000_000);
            }
            let t = Instant::now();
            for _ in 0..batch {
                match case {
                    0 => {
                        std::hint::black_box(key.verify(
                            alg,
                            std::hint::black_box(signing_input),
                            &sig,
                        ));
                    }
                    1 => {
                        let _ = std::hint::black_box(dpop::verify_proof(
                            std::hint::black_box(proof),
                            &policy,
                            &expect,
                            now,
                        ));
                    }
                    3 => {
                        let _ =
                            std::hint::black_box(KeySet::from_jwks(std::hint::black_box(&jwks)));
                    }
                    _ => {
                        next_jti += 1;
                        let jti = next_jti.to_string();
                        std::hint::black_box(cache.admit(
                            &checked.jkt,
                            replay::key(&checked.jkt, &jti),
                            now + 90,
                            now,
                        ));
                    }
                }
            }
            this[case] = t.elapsed().as_secs_f64() / batch as f64;
        }
        for (all, t) in times.iter_mut().zip(this) {
            all.push(t);
        }
        ratios.push(this[1] / this[0]);
        round += 1;
    }
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let [raw, whole, admit, parse_key] = times.map(|mut t| median(&mut t) * 1e6);
    let ratio = median(&mut ratios);
    if a.json {
        println!(
            "{}",
            json!({
                "alg": alg.as_str(), "rounds": round, "raw_us": raw, "proof_us": whole,
                "replay_us": admit, "key_us": parse_key, "proof_over_raw": ratio, "per_second": 1e6 / raw,
            })
        );
    } else {
        println!(
            "{alg}: {:.0} verifications/s on one thread ({raw:.2} us each)",
            1e6 / raw
        );
        println!(
            "jwtd's whole proof check {whole:.2} us ({ratio:.3} x raw, median of {round} rounds); replay admission {admit:.3} us"
        );
        println!("parsing the proof's jwk into a key (a one-key set): {parse_key:.2} us");
    }
    Ok(ExitCode::SUCCESS)
}
