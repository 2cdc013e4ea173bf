//! The admin listener (`--admin-addr`) of the real `jwtd serve`: the
//! metrics a mix of good, bad and attack tokens leaves behind (checked by
//! value, and by `promtool check metrics`), every documented metric
//! exported, a real Prometheus server scraping it, surge detection with
//! JSON security logs, and the probes. Contract: `docs/metrics.md`.

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use jwtd::verify::B64URL;
use serde_json::{Value, json};

use crate::support::{Jwtd, exchange, free_port, front_token, now, repo_path, tcp_exchange};

const PROMTOOL_MISSING: &str =
    "promtool/prometheus not found: run scripts/test (it installs the Debian package prometheus)";

/// `jwtd serve` with the HTTP front and the admin listener.
fn start(extra: &[&str]) -> Jwtd {
    Jwtd::builder().http_front().admin().args(extra).start()
}

/// Checks each token (`None`: no Authorization header) on one kept-alive
/// connection to the HTTP front; returns the statuses.
fn check_all(d: &Jwtd, tokens: &[Option<&str>]) -> Vec<u16> {
    let mut s = UnixStream::connect(d.http_socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tokens
        .iter()
        .map(|t| {
            let auth = t.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
            let request = format!("GET /verify HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
            exchange(&mut s, &request).status
        })
        .collect()
}

fn http_get(port: u16, request: &str) -> (u16, String) {
    let (status, _, body) = tcp_exchange(port, request);
    (status, body)
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(exposition: &str, series: &str) -> f64 {
    crate::support::sample(exposition, series).unwrap_or_else(|| panic!("no sample {series}"))
}

fn b64(json: &Value) -> String {
    use base64::Engine;
    B64URL.encode(json.to_string())
}

#[test]
fn good_bad_and_attack_tokens_move_the_right_counters() {
    let d = start(&[]);
    let t = now();
    let valid = d.token(json!({"iat": t - 10, "scope": "read"}));
    let expired = d.token(json!({"iat": t - 700, "exp": t - 100}));
    let replayed = d.token(json!({"iat": t - 9000, "exp": t - 7200}));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&json!({"sub": "x"}))
    );
    // HS256 naming the ES256 key: algorithm confusion.
    let hmac = SigningKey::generate(Algorithm::HS256)
        .expect("hmac")
        .with_kid(Some("k1".into()));
    let confused = front_token(&hmac, json!({}));
    let stranger = SigningKey::generate(Algorithm::ES256)
        .expect("key")
        .with_kid(Some("k9".into()));
    let unknown_kid = front_token(&stranger, json!({}));
    let other = d.token(json!({"sub": "bob"}));
    let forged = format!(
        "{}.{}",
        valid.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    let mut header = serde_json::Map::new();
    header.insert("jwk".into(), d.key.public_jwk());
    let embedded = d
        .key
        .mint(
            &json!({"sub": "alice", "iss": "x", "iat": t - 5, "exp": t + 600}),
            &header,
        )
        .expect("mint");

    let statuses = check_all(
        &d,
        &[
            Some(&valid),
            Some(&valid),
            Some(&valid),
            Some(&embedded),
            Some(&expired),
            Some(&replayed),
            Some("garbage"),
            Some(&none),
            Some(&confused),
            Some(&unknown_kid),
            Some(&forged),
            None,
        ],
    );
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 401, 401, 401, 401, 401, 401, 401, 401]
    );

    let m = d.metrics();
    let req = |outcome: &str, reason: &str| {
        sample(
            &m,
            &format!(
                r#"jwtd_requests_total{{front="http",outcome="{outcome}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(req("valid", "none"), 4.0);
    assert_eq!(req("invalid", "expired"), 2.0);
    assert_eq!(req("invalid", "malformed"), 1.0);
    assert_eq!(req("invalid", "alg_none"), 1.0);
    assert_eq!(req("invalid", "key_algorithm_mismatch"), 1.0);
    assert_eq!(req("invalid", "unknown_key"), 1.0);
    assert_eq!(req("invalid", "bad_signature"), 1.0);
    assert_eq!(req("invalid", "missing_token"), 1.0);
    assert_eq!(req("invalid", "revoked"), 0.0);
    assert_eq!(
        sample(
            &m,
            r#"jwtd_requests_total{front="native",outcome="valid",reason="none"}"#
        ),
        0.0,
        "every front is labelled apart"
    );
    for (kind, n) in [
        ("alg_none", 1.0),
        ("alg_confusion", 1.0),
        ("unknown_kid", 1.0),
        ("bad_signature", 1.0),
        ("malformed", 1.0),
        ("expired_replay", 1.0),
        ("embedded_jwk", 1.0),
        ("jku", 0.0),
        ("revoked", 0.0),
    ] {
        assert_eq!(
            sample(&m, &format!(r#"jwtd_anomalies_total{{kind="{kind}"}}"#)),
            n,
            "{kind}"
        );
    }
    assert_eq!(sample(&m, "jwtd_cache_hits_total"), 2.0);
    assert_eq!(sample(&m, "jwtd_cache_misses_total"), 9.0);
    assert_eq!(sample(&m, "jwtd_cache_entries"), 2.0);
    assert_eq!(
        sample(
            &m,
            r#"jwtd_signature_verify_duration_seconds_count{alg="ES256"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            r#"jwtd_request_duration_seconds_count{front="http",cache="hit"}"#
        ),
        3.0,
        "two hits and the missing token"
    );
    assert_eq!(sample(&m, "jwtd_token_lifetime_seconds_count"), 2.0);
    assert_eq!(
        sample(&m, r#"jwtd_token_iat_offset_seconds_bucket{le="-1"}"#),
        0.0,
        "no token from the future"
    );
    assert_eq!(sample(&m, "jwtd_ready"), 1.0);
    assert_eq!(
        sample(&m, r#"jwtd_connections_limit{front="http"}"#),
        1024.0
    );
    assert_eq!(sample(&m, r#"jwtd_verifying_limit{budget="all"}"#), 4096.0);
    assert_eq!(sample(&m, r#"jwtd_verifying{budget="all"}"#), 0.0);
    assert_eq!(sample(&m, r#"jwtd_jwks_keys{issuer="default"}"#), 1.0);
    assert_eq!(
        sample(
            &m,
            r#"jwtd_jwks_refreshes_total{issuer="default",result="updated"}"#
        ),
        1.0
    );
    assert!(sample(&m, r#"jwtd_jwks_age_seconds{issuer="default"}"#) < 60.0);

    // The exposition is what Prometheus accepts (names, types, help).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(PROMTOOL_MISSING);
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Security events name the token by fingerprint, never by value.
    let log = d.log();
    assert!(log.contains("suspicious token"), "{log}");
    for token in [&none, &confused, &forged, &embedded] {
        assert!(!log.contains(token.as_str()), "a token was logged");
        assert!(!log.contains(token.rsplit('.').next().unwrap_or("-")) || token.ends_with('.'));
    }
}

#[test]
fn open_connections_are_counted_by_front() {
    let d = start(&[]);
    let held: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(d.http_socket()).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&d.metrics(), r#"jwtd_connections{front="http"}"#) != 3.0 {
        assert!(Instant::now() < deadline, "{}", d.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    while sample(&d.metrics(), r#"jwtd_connections{front="http"}"#) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_documented_metric_is_exported() {
    let redis = crate::revocation::Redis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // JWE decryption keys, so that a nested JWT is counted too.
    let dir = tempfile::tempdir().expect("temp dir");
    let jwe_keys = dir.path().join("jwe.json");
    let oct = json!({"kty": "oct", "kid": "e", "k": base64::Engine::encode(&B64URL, [9u8; 32])});
    std::fs::write(&jwe_keys, json!({"keys": [oct]}).to_string()).expect("write");
    let d = start(&[
        "--redis",
        &url,
        "--jwe-keys",
        &jwe_keys.display().to_string(),
    ]);
    // A miss (a revocation round trip), a hit, and a nested JWT.
    let token = d.token(json!({"iat": now(), "jti": "j1"}));
    let nested = jwtd::seal::seal(
        d.token(json!({"jti": "j2"})).as_bytes(),
        oct.as_object().expect("object"),
        jwtd::verify::jwe::KeyAlg::AesKw(256),
        jwtd::verify::jwe::Enc::Gcm(256),
        Some("JWT"),
    )
    .expect("seal");
    assert_eq!(
        check_all(&d, &[Some(&token), Some(&token), Some(&nested)]),
        [200, 200, 200]
    );
    let m = d.metrics();
    let doc = std::fs::read_to_string(repo_path("docs/metrics.md")).expect("docs/metrics.md");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `jwtd_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(documented.len() >= 20, "{documented:?}");
    for name in documented {
        let name = format!("jwtd_{name}");
        let exported = m.lines().any(|l| {
            l.strip_prefix(&name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']) || rest.starts_with("_bucket"))
        });
        assert!(exported, "{name} is documented but not exported");
    }
    assert_eq!(sample(&m, "jwtd_revocation_backend_up"), 1.0);
    assert!(sample(&m, "jwtd_revocation_batch_size_count") >= 1.0);
}

#[test]
fn a_real_prometheus_scrapes_jwtd() {
    let d = start(&[]);
    let token = d.token(json!({}));
    assert_eq!(check_all(&d, &[Some(&token)]), [200]);
    let port = free_port();
    let config = d.dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n- job_name: jwtd\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n",
            d.admin_port()
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            d.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(PROMTOOL_MISSING);
    let query = "sum(jwtd_requests_total%7Bfront%3D%22http%22%2Coutcome%3D%22valid%22%7D)";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let value = loop {
        if Instant::now() > deadline {
            let _ = prometheus.kill();
            panic!("Prometheus never returned the counter: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            continue;
        }
        let (_, body) = http_get(
            port,
            &format!("GET /api/v1/query?query={query} HTTP/1.0\r\n\r\n"),
        );
        last = body.clone();
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
            break value.to_owned();
        }
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(value, "1", "{last}");
}

#[test]
fn an_attack_burst_raises_the_surge_gauge_and_logs_json_events() {
    let d = start(&["--log-format", "json"]);
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&json!({"sub": "x"}))
    );
    let burst: Vec<Option<&str>> = (0..300).map(|_| Some(none.as_str())).collect();
    assert!(check_all(&d, &burst).iter().all(|s| *s == 401));
    // The detector learns for its first 10 s, then sees the burst.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = d.metrics();
        if sample(&m, r#"jwtd_anomaly_surge{kind="alg_none"}"#) == 1.0 {
            assert_eq!(
                sample(&m, r#"jwtd_anomaly_surge{kind="bad_signature"}"#),
                0.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "no surge:\n{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = d.log();
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "jwtd::security")
        .collect();
    let surge = events
        .iter()
        .find(|v| v["fields"]["message"] == "anomaly surge")
        .unwrap_or_else(|| panic!("no surge event: {log}"));
    assert_eq!(surge["fields"]["kind"], "alg_none");
    let suspicious: Vec<&Value> = events
        .iter()
        .filter(|v| v["fields"]["message"] == "suspicious token")
        .collect();
    // Rate-limited: 300 attempts, at most 10 a second logged.
    assert!(
        !suspicious.is_empty() && suspicious.len() <= 40,
        "{} events",
        suspicious.len()
    );
    let first = &suspicious[0]["fields"];
    assert_eq!(first["kind"], "alg_none");
    assert_eq!(first["fingerprint"].as_str().map(str::len), Some(12));
    assert!(!log.contains(&none), "the token was logged");
}

#[test]
fn the_probes_say_live_and_why_not_ready() {
    let d = Jwtd::builder()
        .http_front()
        .admin()
        .no_jwks_file()
        .args(["--jwks-url", "http://127.0.0.1:9/jwks.json"])
        .start();
    assert_eq!(d.admin_get("/livez"), (200, "ok\n".to_owned()));
    assert_eq!(d.admin_get("/readyz"), (503, "no_keys\n".to_owned()));
    assert_eq!(sample(&d.metrics(), "jwtd_ready"), 0.0);
    assert_eq!(
        sample(&d.metrics(), r#"jwtd_jwks_age_seconds{issuer="default"}"#),
        f64::INFINITY
    );
    assert_eq!(d.admin_get("/nope").0, 404);
    let (status, _) = http_get(
        d.admin_port(),
        "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);

    let ready = start(&[]);
    assert_eq!(ready.admin_get("/readyz"), (200, "ready\n".to_owned()));
}

/// Sends `GET /livez` on `s` (keep-alive) and reads the status; 0 when the
/// server closed the connection instead of answering.
fn livez_on(s: &mut TcpStream) -> u16 {
    get_on(s, "/livez")
}

/// Sends `GET path` on `s` (keep-alive) and reads the status line; 0 when
/// the server closed the connection instead of answering.
fn get_on(s: &mut TcpStream, path: &str) -> u16 {
    use std::io::Read;
    if write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
        return 0;
    }
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => 0,
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

#[test]
fn admin_connections_beyond_the_cap_are_closed_and_metrics_answer_once_they_go() {
    // The default cap: 64.
    let d = start(&[]);
    let open = |d: &Jwtd| {
        let s = TcpStream::connect(("127.0.0.1", d.admin_port())).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // 64 kept-alive connections, each answered. (A connection that closed
    // just before, e.g. start-up's probe, may hold its slot a moment
    // longer: retry.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < 64 {
        let mut s = open(&d);
        if livez_on(&mut s) == 200 {
            held.push(s);
        } else {
            assert!(Instant::now() < deadline, "only {} connections", held.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The 65th is closed without an answer.
    let mut extra = open(&d);
    assert_eq!(livez_on(&mut extra), 0, "a connection beyond the cap");
    // Once they go, a fresh connection answers /metrics (the server notices
    // the closes asynchronously: poll).
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_on(&mut open(&d), "/metrics") == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/metrics did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A request head over 8 KiB: 431.
    let big = "a".repeat(10_000);
    let (status, _) = http_get(
        d.admin_port(),
        &format!("GET /livez HTTP/1.0\r\nX-Big: {big}\r\n\r\n"),
    );
    assert_eq!(status, 431);
}

#[test]
fn a_low_nofile_limit_is_warned_about_and_emfile_is_survived() {
    // Soft and hard limit 128: jwtd cannot raise it, and 1,024
    // connections per front do not fit.
    let d = Jwtd::builder().http_front().nofile_limit(128).start();
    let front = d.http_socket().to_owned();
    d.wait_log("file descriptor limit (nofile)");
    let text = d.log();
    assert!(
        text.contains("raise nofile to at least 2176"),
        "no advice: {text}"
    );
    let check = |s: &mut UnixStream| -> u16 {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
        if write!(s, "GET /verify HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
            return 0;
        }
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    };
    // More connections than descriptors: the backlog takes them, accept
    // fails with EMFILE, the loop backs off.
    let hogs: Vec<UnixStream> = (0..200)
        .filter_map(|_| UnixStream::connect(&front).ok())
        .collect();
    assert!(hogs.len() > 128, "only {} connections", hogs.len());
    // The CPU used over a 2 s window (a measurement, not a wait: a loaded
    // machine can only make a spinning loop look cheaper).
    let (cpu0, t0) = (d.cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = d.cpu_ticks() - cpu0;
    // Clock ticks are 1/100 s: a spinning loop would burn ~200 in 2 s.
    let tick_budget = t0.elapsed().as_millis() as u64 / 10 / 2;
    assert!(
        ticks < tick_budget,
        "{ticks} CPU ticks in 2 s: spinning on EMFILE"
    );
    drop(hogs);
    // Descriptors free again: a fresh client is served.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = UnixStream::connect(&front)
            && check(&mut s) == 401
        {
            break;
        }
        assert!(Instant::now() < deadline, "not served after EMFILE");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_can_require_the_revocation_store() {
    let mut redis = crate::revocation::Redis::start();
    let url = redis.url();
    let d = start(&["--redis", &url, "--ready-requires-revocation", "true"]);
    let wait_for = |want: (u16, &str), what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = d.admin_get("/readyz");
            if got.0 == want.0 && got.1 == want.1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: /readyz still says {got:?}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for((200, "ready\n"), "Redis up");
    redis.kill();
    wait_for((503, "revocation_unavailable\n"), "Redis killed");
    assert_eq!(sample(&d.metrics(), "jwtd_ready"), 0.0);
    redis.spawn();
    wait_for((200, "ready\n"), "Redis restarted");
    // Without the setting, a Redis outage does not touch readiness: once
    // the daemon has met it (a lookup failed, the store counted down),
    // /readyz still says ready.
    let plain = start(&["--redis", &url]);
    redis.kill();
    let token = plain.token(json!({"jti": "after-the-kill"}));
    assert_ne!(check_all(&plain, &[Some(&token)]), [200], "Redis is down");
    plain.wait_metric("jwtd_revocation_backend_up", |up| up == 0.0);
    let (status, body) = plain.admin_get("/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(plain.metric("jwtd_ready"), 1.0);
}
