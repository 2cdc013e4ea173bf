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
//!   one thread: the crypto limit per core.
//!
//! Latency is measured from the write of a request to the read of its reply.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use jwtd::protocol::{self, Reply};
use jwtd::sign::SigningKey;
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
}

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
    /// Report this process's CPU time per request (from /proc).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
    #[arg(long = "jwks-file", alias = "jwks", value_name = "FILE")]
    jwks_file: PathBuf,
    /// A token signed by a key of the set.
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// Measurement time.
    #[arg(long, default_value = "3s", value_parser = jwtd::config::parse_duration)]
    duration: Duration,
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
    let text =
        std::fs::read_to_string(&a.key).with_context(|| format!("--key {}", a.key.display()))?;
    let key = SigningKey::from_file_contents(&text)?;
    let now = jwtd::clock::unix_now();
    let exp = now.saturating_add(i64::try_from(a.ttl.as_secs()).unwrap_or(i64::MAX));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..a.count {
        // A realistic access token: ~300 bytes of claims.
        let mut claims = json!({
            "sub": format!("user-{i:06}"), "iat": now, "nbf": now - 60, "exp": exp,
            "jti": format!("bench-{i:08}-{now}"),
            "scope": "openid profile email orders:read orders:write payments:read",
        });
        if let Some(iss) = &a.issuer {
            claims["iss"] = iss.as_str().into();
        }
        if let Some(aud) = &a.audience {
            claims["aud"] = aud.as_str().into();
        }
        writeln!(out, "{}", key.mint(&claims, &Default::default())?)?;
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
        }
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
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let settings = a.settings();
    let json = settings.json;
    let summary = runtime.block_on(load(settings, tokens))?;
    let secs = summary.elapsed.as_secs_f64();
    let total = summary.tally.ok + summary.tally.invalid + summary.tally.other;
    let rps = total as f64 / secs;
    let q = |p: f64| summary.tally.hist.value_at_quantile(p) as f64 / 1000.0;
    let cpu_us = summary
        .server_cpu
        .map(|cpu| cpu * 1e6 / total.max(1) as f64);
    if json {
        println!(
            "{}",
            json!({
                "requests": total, "valid": summary.tally.ok, "invalid": summary.tally.invalid,
                "other": summary.tally.other, "seconds": secs, "rps": rps,
                "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": summary.tally.hist.max() as f64 / 1000.0,
                "server_cpu_us_per_request": cpu_us,
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
    server_pid: Option<u32>,
    json: bool,
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
            server_pid: self.server_pid,
            json: self.json,
        }
    }
}

struct Summary {
    tally: Tally,
    elapsed: Duration,
    server_cpu: Option<f64>,
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
    tokio::time::sleep(s.warmup).await;
    let cpu_before = s.server_pid.map(process_cpu).transpose()?;
    let began = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(s.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed();
    let cpu_after = s.server_pid.map(process_cpu).transpose()?;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(&t.await.context("load task")??);
    }
    Ok(Summary {
        tally,
        elapsed,
        server_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
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
    next_id: u32,
    next_token: usize,
    inflight: InFlight,
}

impl Requests<'_> {
    /// Encodes `n` VERIFY requests into `out`; returns `n`.
    fn queue(&mut self, out: &mut BytesMut, n: usize) -> usize {
        let now = Instant::now();
        for _ in 0..n {
            let token = &self.tokens[self.next_token % self.tokens.len()];
            self.next_token += 1;
            protocol::encode_verify(out, self.next_id, self.selector, token);
            self.inflight.put(self.next_id, now);
            self.next_id = self.next_id.wrapping_add(1);
        }
        n
    }
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
    let (mut rd, mut wr) = stream.into_split();
    let mut tally = Tally::new();
    let mut requests = Requests {
        tokens,
        selector: &s.selector,
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
            wr.write_all(&out).await?;
            out.clear();
        }
        let tick = async {
            match &pacer {
                Some(p) => p.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = rd.read_buf(&mut buf) => {
                if read? == 0 {
                    bail!("server closed the connection");
                }
                let now = Instant::now();
                while let Some(reply) = protocol::decode_reply(&mut buf, usize::MAX >> 1)
                    .map_err(|e| anyhow::anyhow!("bad reply: {:?}", e.error))?
                {
                    outstanding = outstanding.saturating_sub(1);
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
                    wr.write_all(&out).await?;
                    out.clear();
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
    let keys = KeySet::from_jwks(
        &std::fs::read(&a.jwks_file)
            .with_context(|| format!("--jwks-file {}", a.jwks_file.display()))?,
    )?;
    let token = a.token.trim().as_bytes();
    let dot = token
        .iter()
        .rposition(|b| *b == b'.')
        .context("not a JWS")?;
    let sig = jwtd::verify::B64URL
        .decode(&token[dot + 1..])
        .context("signature is not base64url")?;
    let header = jwtd::verify::B64URL
        .decode(&token[..token.iter().position(|b| *b == b'.').unwrap_or(0)])?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    let alg: jwtd::verify::Algorithm = header["alg"].as_str().unwrap_or_default().parse()?;
    let key = keys
        .keys()
        .iter()
        .find(|k| k.verify(alg, &token[..dot], &sig))
        .context("no key of the set verifies the token")?;
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < a.duration {
        for _ in 0..64 {
            std::hint::black_box(key.verify(alg, std::hint::black_box(&token[..dot]), &sig));
        }
        n += 64;
    }
    let per = began.elapsed().as_secs_f64() / n as f64;
    println!(
        "{alg}: {:.0} verifications/s on one thread ({:.2} us each)",
        1.0 / per,
        per * 1e6
    );
    Ok(ExitCode::SUCCESS)
}
