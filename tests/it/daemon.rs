//! The real `jwtd serve` on a socket in a temp dir, driven like a client.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use jwtd::client::Client;
use jwtd::protocol::{self, ProtocolError, Reply};
use jwtd::sign::SigningKey;
use jwtd::verify::{Algorithm, Reject};
use serde_json::json;

use crate::support::{Helper, Jwtd, WAIT, eventually, jwtd_bin, jwtd_command, now, wait_for};

/// A daemon trusting a fresh key of `alg` (kid "k1").
fn start_with(alg: Algorithm, args: &[&str]) -> Jwtd {
    let key = SigningKey::generate(alg)
        .expect("generate key")
        .with_kid(Some("k1".into()));
    Jwtd::builder().signing_key(key).args(args).start()
}

/// A token the daemon trusts, for alice, valid an hour.
fn valid_token(d: &Jwtd) -> String {
    d.mint(&json!({"sub": "alice", "exp": now() + 3600}))
}

/// Reads replies from a blocking stream until `n` arrived or EOF.
fn read_replies(stream: &mut StdStream, n: usize) -> (Vec<Reply>, bool) {
    read_replies_from(stream, &mut BytesMut::new(), n)
}

/// [`read_replies`] keeping what it read past the `n`th reply in `buf`, for
/// the next call.
fn read_replies_from(stream: &mut StdStream, buf: &mut BytesMut, n: usize) -> (Vec<Reply>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while out.len() < n {
            match protocol::decode_reply(buf, usize::MAX >> 1).unwrap() {
                Some(r) => out.push(r),
                None => break,
            }
        }
        if out.len() >= n {
            return (out, false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(k) => buf.put_slice(&chunk[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (out, false);
            }
            Err(_) => return (out, true),
        }
    }
}

fn connect(path: &Path) -> StdStream {
    let s = StdStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn is_eof(stream: &mut StdStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

#[tokio::test]
async fn valid_and_invalid_tokens_get_their_verdicts() {
    let d = Jwtd::start(&[]);
    let client = Client::connect(&d.socket).await.unwrap();
    match client.verify(valid_token(&d).as_bytes()).await.unwrap() {
        Reply::Valid { claims, .. } => {
            let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
            assert_eq!(claims["sub"], "alice");
        }
        other => panic!("expected valid, got {other:?}"),
    }
    let expired = d.mint(&json!({"exp": now() - 3600}));
    assert!(matches!(
        client.verify(expired.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::Expired,
            ..
        }
    ));
    assert!(matches!(
        client.verify(b"garbage").await.unwrap(),
        Reply::Invalid {
            reason: Reject::Malformed,
            ..
        }
    ));
    assert!(matches!(client.ping().await.unwrap(), Reply::Pong { .. }));
}

#[test]
fn ten_thousand_pipelined_requests_are_answered_by_id() {
    let d = Jwtd::start(&[]);
    let good = valid_token(&d);
    let expired = d.mint(&json!({"exp": now() - 3600}));
    let mut frames = BytesMut::new();
    for id in 0..10_000u32 {
        match id % 3 {
            0 => protocol::encode_verify(&mut frames, id, b"", good.as_bytes()),
            1 => protocol::encode_verify(&mut frames, id, b"", expired.as_bytes()),
            _ => protocol::encode_ping(&mut frames, id),
        }
    }
    let mut stream = connect(&d.socket);
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&frames).unwrap());
    let (replies, _) = read_replies(&mut stream, 10_000);
    sender.join().unwrap();
    assert_eq!(replies.len(), 10_000);
    let mut seen = vec![false; 10_000];
    for r in replies {
        let id = r.id();
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "id {id} answered twice"
        );
        match id % 3 {
            0 => assert!(matches!(r, Reply::Valid { .. }), "{id}: {r:?}"),
            1 => assert!(
                matches!(
                    r,
                    Reply::Invalid {
                        reason: Reject::Expired,
                        ..
                    }
                ),
                "{id}: {r:?}"
            ),
            _ => assert!(matches!(r, Reply::Pong { .. }), "{id}: {r:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_connections_are_served() {
    let d = Jwtd::start(&[]);
    let token = valid_token(&d);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (socket, token) = (d.socket.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(&socket).await.unwrap();
            for _ in 0..20 {
                let r = client.verify(token.as_bytes()).await.unwrap();
                assert!(matches!(r, Reply::Valid { .. }), "connection {i}: {r:?}");
            }
            // Keep every connection open until all have been served.
            client
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(clients.len(), 100);
}

#[tokio::test]
async fn second_verify_is_a_cache_hit_and_no_hit_survives_exp() {
    let d = Jwtd::start(&["--leeway", "0"]);
    let client = Client::connect(&d.socket).await.unwrap();
    let long = valid_token(&d);
    assert!(matches!(
        client.verify(long.as_bytes()).await.unwrap(),
        Reply::Valid { cached: false, .. }
    ));
    assert!(matches!(
        client.verify(long.as_bytes()).await.unwrap(),
        Reply::Valid { cached: true, .. }
    ));

    let exp = now() + 2;
    let short = d.mint(&json!({"exp": exp}));
    assert!(matches!(
        client.verify(short.as_bytes()).await.unwrap(),
        Reply::Valid { .. }
    ));
    assert!(matches!(
        client.verify(short.as_bytes()).await.unwrap(),
        Reply::Valid { cached: true, .. }
    ));
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        client.verify(short.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::Expired,
            ..
        }
    ));
}

fn raw_frame(len: u32, version: u8, op: u8, flags: u16, id: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&len.to_be_bytes());
    b.push(version);
    b.push(op);
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn malformed_frames_get_an_error_reply_then_the_connection_closes() {
    let d = Jwtd::start(&["--max-frame-bytes", "20000", "--max-token-bytes", "16384"]);
    let cases: [(Vec<u8>, u32, ProtocolError); 5] = [
        (
            raw_frame(9, 7, 1, 0, 1, b"\0"),
            1,
            ProtocolError::BadVersion,
        ),
        (raw_frame(9, 1, 42, 0, 2, b"\0"), 2, ProtocolError::BadOp),
        (raw_frame(9, 1, 1, 4, 3, b"\0"), 3, ProtocolError::BadFlags),
        (
            raw_frame(3, 1, 1, 0, 4, b""),
            0,
            ProtocolError::FrameTooShort,
        ),
        (
            raw_frame(1 << 30, 1, 1, 0, 5, b""),
            5,
            ProtocolError::FrameTooLarge,
        ),
    ];
    for (bytes, id, error) in cases {
        let mut s = connect(&d.socket);
        // A good request first: it is still answered.
        let mut good = BytesMut::new();
        protocol::encode_ping(&mut good, 99);
        s.write_all(&good).unwrap();
        s.write_all(&bytes).unwrap();
        let (replies, _) = read_replies(&mut s, 2);
        assert_eq!(replies.len(), 2, "{error:?}");
        assert_eq!(
            replies[0],
            Reply::Pong {
                id: 99,
                ready: true
            }
        );
        assert_eq!(replies[1], Reply::Error { id, error });
        assert!(is_eof(&mut s), "{error:?}: connection stayed open");
    }
    // The daemon is unharmed.
    let mut s = connect(&d.socket);
    let mut ping = BytesMut::new();
    protocol::encode_ping(&mut ping, 1);
    s.write_all(&ping).unwrap();
    assert_eq!(
        read_replies(&mut s, 1).0,
        vec![Reply::Pong { id: 1, ready: true }]
    );
}

#[test]
fn truncated_frame_then_hangup_harms_nothing() {
    let d = Jwtd::start(&[]);
    {
        let mut s = connect(&d.socket);
        let mut f = BytesMut::new();
        protocol::encode_verify(&mut f, 1, b"", valid_token(&d).as_bytes());
        s.write_all(&f[..f.len() / 2]).unwrap();
    }
    let mut s = connect(&d.socket);
    let mut f = BytesMut::new();
    protocol::encode_verify(&mut f, 2, b"", valid_token(&d).as_bytes());
    s.write_all(&f).unwrap();
    let (replies, _) = read_replies(&mut s, 1);
    assert!(matches!(replies.as_slice(), [Reply::Valid { id: 2, .. }]));
}

#[test]
fn oversized_token_in_a_legal_frame_is_an_invalid_verdict() {
    let d = Jwtd::start(&["--max-token-bytes", "1024"]);
    let mut s = connect(&d.socket);
    let mut f = BytesMut::new();
    protocol::encode_verify(&mut f, 1, b"", &vec![b'a'; 5000]);
    s.write_all(&f).unwrap();
    let (replies, _) = read_replies(&mut s, 1);
    assert_eq!(
        replies,
        vec![Reply::Invalid {
            id: 1,
            reason: Reject::TooLarge
        }]
    );
}

#[tokio::test]
async fn unknown_selector_is_an_error_but_the_connection_stays() {
    let d = Jwtd::start(&["--audience", "api", "--audience", "admin"]);
    let client = Client::connect(&d.socket).await.unwrap();
    let token = d.mint(&json!({"exp": now() + 60, "aud": "admin"}));
    assert!(matches!(
        client.verify_for(b"nope", token.as_bytes()).await.unwrap(),
        Reply::Error {
            error: ProtocolError::UnknownSelector,
            ..
        }
    ));
    assert!(matches!(
        client.verify_for(b"admin", token.as_bytes()).await.unwrap(),
        Reply::Valid { .. }
    ));
    assert!(matches!(
        client.verify_for(b"api", token.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::Audience,
            ..
        }
    ));
}

#[test]
fn sigterm_answers_every_request_in_flight_then_exits_cleanly() {
    // Cache off and RSA-2048 tokens, each distinct, so the requests are
    // still being verified when the signal lands.
    let d = start_with(Algorithm::PS256, &["--cache-entries", "0"]);
    let n = 3000u32;
    let mut frames = BytesMut::new();
    for id in 0..n {
        let t = d.mint(&json!({"exp": now() + 60, "jti": id.to_string()}));
        protocol::encode_verify(&mut frames, id, b"", t.as_bytes());
    }
    let mut s = connect(&d.socket);
    // Write from another thread while this one reads, as a real pipelining
    // client must: replies fill the socket buffer otherwise.
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&frames).unwrap());
    // The signal lands once the daemon is answering: 3000 RSA verifications
    // take far longer than one, so requests are unread, in flight, and not
    // yet written back.
    let mut buf = BytesMut::new();
    let (mut replies, _) = read_replies_from(&mut s, &mut buf, 1);
    assert_eq!(replies.len(), 1, "no first reply");
    d.signal(libc::SIGTERM);
    let (rest, _) = read_replies_from(&mut s, &mut buf, n as usize - 1);
    replies.extend(rest);
    sender.join().unwrap();
    assert_eq!(replies.len(), n as usize, "replies lost on SIGTERM");
    assert!(
        replies.iter().all(|r| matches!(r, Reply::Valid { .. })),
        "{:?}",
        replies.iter().find(|r| !matches!(r, Reply::Valid { .. }))
    );
    assert!(is_eof(&mut s), "connection not closed after drain");
    let status = d.wait_exit(WAIT);
    assert!(status.success(), "{status:?}");
    assert!(!d.socket.exists(), "socket file left behind");
}

#[test]
fn sigint_drains_fast_and_exits_cleanly() {
    let d = Jwtd::start(&[]);
    d.signal(libc::SIGINT);
    let status = d.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(!d.socket.exists());
}

#[test]
fn socket_is_created_with_mode_0660_by_default_and_as_configured() {
    let d = Jwtd::start(&[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let d = Jwtd::start(&["--socket-mode", "0600"]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The socket was bound in a private staging directory, then renamed in:
    // nothing of that is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(d.socket.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".jwtd"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_is_not_stolen() {
    let d = Jwtd::start(&[]);
    // Live: a second daemon on the same path must refuse and leave it alone.
    let second = Jwtd::builder()
        .no_jwks_file()
        .arg("--dev")
        .socket_at(&d.socket)
        .run_until_exit();
    assert_ne!(second.code, Some(0), "{}", second.log);
    assert!(
        second.log.contains("another process is listening"),
        "{}",
        second.log
    );
    assert!(
        StdStream::connect(&d.socket).is_ok(),
        "the live socket was removed"
    );

    // Stale: a socket file nobody listens on is replaced.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    // Returns once the path accepts connections again.
    let replaced = Jwtd::builder()
        .no_jwks_file()
        .arg("--dev")
        .socket_at(&stale)
        .start();
    drop(replaced);
    // The same after a crash: a daemon killed outright leaves its socket
    // file behind, and started again on that path it takes the path back.
    let crashed = Jwtd::start(&[]);
    crashed.kill();
    assert!(crashed.socket.exists(), "SIGKILL removed the socket file");
    crashed.restart();
    assert!(
        StdStream::connect(&crashed.socket).is_ok(),
        "{}",
        crashed.log_report()
    );

    // Not a socket: never deleted.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let refused = Jwtd::builder()
        .no_jwks_file()
        .arg("--dev")
        .socket_at(&file)
        .run_until_exit();
    assert_ne!(refused.code, Some(0), "{}", refused.log);
    assert!(refused.log.contains("not a socket"), "{}", refused.log);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn idle_connections_are_closed() {
    let d = Jwtd::start(&["--idle-timeout", "1s"]);
    let mut s = connect(&d.socket);
    let began = Instant::now();
    assert!(is_eof(&mut s));
    assert!(
        began.elapsed() >= Duration::from_millis(950),
        "closed too early"
    );
}

#[test]
fn in_flight_limit_pauses_reading_without_losing_requests() {
    let d = Jwtd::start(&["--max-in-flight", "1"]);
    let token = valid_token(&d);
    let mut frames = BytesMut::new();
    for id in 0..500 {
        protocol::encode_verify(&mut frames, id, b"", token.as_bytes());
    }
    let mut s = connect(&d.socket);
    s.write_all(&frames).unwrap();
    let (replies, _) = read_replies(&mut s, 500);
    assert_eq!(replies.len(), 500);
}

#[test]
fn connections_beyond_the_limit_wait_for_a_slot() {
    let d = Jwtd::start(&["--max-connections", "1"]);
    let mut first = connect(&d.socket);
    let mut ping = BytesMut::new();
    protocol::encode_ping(&mut ping, 1);
    first.write_all(&ping).unwrap();
    assert_eq!(
        read_replies(&mut first, 1).0,
        vec![Reply::Pong { id: 1, ready: true }]
    );

    let mut second = connect(&d.socket);
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    second.write_all(&ping).unwrap();
    assert!(
        read_replies(&mut second, 1).0.is_empty(),
        "served beyond the limit"
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        read_replies(&mut second, 1).0,
        vec![Reply::Pong { id: 1, ready: true }]
    );
}

#[test]
fn bad_config_lists_every_problem_and_exits_64() {
    let err = serve_refused(
        &[
            "--leeway",
            "1h",
            "--socket-mode",
            "999",
            "--jwks-file",
            "/nonexistent",
            "--algorithms",
            "none",
        ],
        &[],
    );
    for needle in ["leeway", "socket_mode", "/nonexistent", "algorithm 'none'"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("jwtd: config:") && l.contains(needle)),
            "{needle:?} missing from:\n{err}"
        );
    }
}

/// `jwtd serve` with `extra` flags and `env` variables (and no inherited
/// `JWTD_*` ones), to its exit: for configurations that must not start.
/// Asserts exit 64 and no socket bound; returns stderr.
fn serve_refused(extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut serve = Jwtd::builder().no_jwks_file().args(extra);
    for (k, v) in env {
        serve = serve.env(k, v);
    }
    let exited = serve.run_until_exit();
    assert_eq!(exited.code, Some(64), "{}", exited.log);
    assert!(!exited.socket.exists(), "bound a socket: {}", exited.log);
    exited.log
}

#[test]
fn serve_without_a_key_source_exits_64_naming_the_settings_that_give_keys() {
    let err = serve_refused(&[], &[]);
    for named in [
        "no key source",
        "jwks_file",
        "jwks_url",
        "discovery",
        "--dev",
    ] {
        assert!(err.contains(named), "{named:?} missing from:\n{err}");
    }
    // No subcommand is `serve` with its defaults: the same refusal.
    let out = jwtd_command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn dev_serves_the_published_set_for_the_dev_issuer_only() {
    let d = Jwtd::builder().no_jwks_file().arg("--dev").start();
    let socket = d.socket.clone();
    let sock = socket.to_string_lossy().into_owned();
    let key = crate::support::repo_path("deploy/dev/signing-key.pem");
    let key = key.to_string_lossy();
    let verify = |iss: &str| {
        let token = crate::support::run_jwtd(
            &[
                "mint",
                "--key",
                &key,
                "--issuer",
                iss,
                "--audience",
                "jwtd-dev",
            ],
            None,
        );
        assert!(token.status.success(), "{token:?}");
        let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        crate::support::run_jwtd(&["verify", "--socket", &sock, &token], None)
    };
    let good = verify("https://jwtd.dev.invalid");
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    // The same published key, claiming to be a real issuer: refused.
    let forged = verify("https://login.example.com");
    assert_eq!(forged.status.code(), Some(1), "{forged:?}");
    assert!(
        String::from_utf8_lossy(&forged.stdout).contains("\"issuer\""),
        "{forged:?}"
    );
    let err = d.log();
    assert!(err.contains("DEVELOPMENT key set"), "{err}");
    // Through the environment and the file as well; never beside real keys.
    serve_refused(&["--dev", "--issuer", "https://login.example.com"], &[]);
    serve_refused(
        &["--jwks-file", "deploy/dev/jwks.json"],
        &[("JWTD_DEV", "1")],
    );
}

#[test]
fn unknown_jwtd_variables_and_keys_stop_the_start_naming_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jwtd.toml");
    std::fs::write(
        &config,
        "dev = true\n\nleeway = \"10m\"\naudience = [\"api\"]\n",
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let err = serve_refused(
        &["--config", &config, "--max-connections", "0"],
        &[
            ("JWTD_JWKS_URI", "https://idp.example/jwks"),
            ("JWTD_AUDIENCE", "api"),
            ("JWTD_CACHE_MAX_TTL", "0"),
        ],
    );
    for line in [
        "jwtd: config: JWTD_JWKS_URI: not a jwtd setting; did you mean JWTD_JWKS_URL?".to_owned(),
        "jwtd: config: JWTD_AUDIENCE: not a jwtd setting; did you mean JWTD_AUDIENCES?".to_owned(),
        "jwtd: config: JWTD_CACHE_MAX_TTL: cache_max_ttl: ".to_owned(),
        "jwtd: config: --max-connections: max_connections: ".to_owned(),
        format!("jwtd: config: {config}:3: leeway: "),
        format!("jwtd: config: {config}:4: audience: unknown setting; did you mean audiences?"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&line)),
            "{line:?} missing from:\n{err}"
        );
    }
}

/// The pid of the process listening on the Unix socket `path`
/// (`SO_PEERCRED`).
fn listener_pid(path: &Path) -> u32 {
    use std::os::fd::AsRawFd;
    let stream = StdStream::connect(path).expect("connect");
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap();
    // SAFETY: getsockopt(2) writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_PEERCRED: {}", std::io::Error::last_os_error());
    u32::try_from(cred.pid).expect("a pid")
}

/// What `jwtd serve --dev` writes to stderr up to its `jwtd serving` line,
/// with `NO_COLOR` unset unless `no_color`: into a file, or (`tty`) onto a
/// pseudo-terminal made by `script`.
fn startup_log(tty: bool, no_color: bool) -> Vec<u8> {
    if !tty {
        let mut serve = Jwtd::builder().no_jwks_file().arg("--dev");
        if !no_color {
            serve = serve.env_remove("NO_COLOR");
        }
        let d = serve.start();
        d.wait_log("jwtd serving");
        return d.log().into_bytes();
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("jwtd.sock");
    let out = dir.path().join("tty.out");
    let serve = format!(
        "{} serve --dev --socket {}",
        jwtd_bin(),
        socket.to_string_lossy()
    );
    // script runs the command on a new pseudo-terminal and copies what it
    // writes there to its stdout (a file here); -f writes it at once.
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &serve, "/dev/null"])
        .env_remove("NO_COLOR")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let mut script = Helper::spawn("script (util-linux)", &mut cmd);
    let printed = || std::fs::read(&out).unwrap_or_default();
    let serving = wait_for(WAIT, || {
        String::from_utf8_lossy(&printed()).contains("jwtd serving")
            && StdStream::connect(&socket).is_ok()
    });
    assert!(
        serving,
        "no start-up on the terminal: {}",
        String::from_utf8_lossy(&printed())
    );
    // jwtd runs in script's session, not this process's: stop it by the pid
    // its socket names.
    crate::support::signal(listener_pid(&socket), libc::SIGINT);
    assert!(script.wait_exit(WAIT), "jwtd under script did not stop");
    printed()
}

#[test]
fn log_lines_carry_no_rust_debug_forms() {
    let d = Jwtd::builder()
        .no_jwks_file()
        .arg("--dev")
        .http_front()
        .grpc_front()
        .env_remove("NO_COLOR")
        .start();
    d.wait_log("HTTP front serving");
    d.wait_log("gRPC front serving");
    // The shutdown lines too.
    d.signal(libc::SIGINT);
    assert!(d.wait_exit(WAIT).success(), "{}", d.log_report());
    let log = d.log();
    for debug_form in ["Some(", "None", "\\\""] {
        assert!(!log.contains(debug_form), "{debug_form:?} in:\n{log}");
    }
}

#[test]
fn log_colours_only_on_a_terminal_and_never_with_no_color() {
    let has_escape = |log: &[u8]| log.contains(&0x1b);
    assert!(
        !has_escape(&startup_log(false, false)),
        "colours into a file"
    );
    assert!(
        has_escape(&startup_log(true, false)),
        "no colours on a terminal"
    );
    assert!(
        !has_escape(&startup_log(true, true)),
        "colours despite NO_COLOR"
    );
}

#[test]
fn jwtd_verify_prints_the_verdict_and_exits_by_it() {
    let d = Jwtd::start(&[]);
    let sock = d.socket.to_string_lossy().into_owned();
    let out = crate::support::run_jwtd(&["verify", "--socket", &sock, &valid_token(&d)], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(crate::support::stdout_json(&out)["claims"]["sub"], "alice");
    let expired = d.mint(&json!({"exp": 1}));
    let out = crate::support::run_jwtd(
        &["verify", "--socket", &sock, "-"],
        Some(format!("{expired}\n").as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(crate::support::stdout_json(&out)["reason"], "expired");
    let out = crate::support::run_jwtd(&["verify", "--socket", "/nonexistent.sock", "x"], None);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_framing_error_is_answered_after_every_earlier_request() {
    // Cache misses verified on other tasks must still reach the client
    // before the final ERROR.
    let d = start_with(Algorithm::ES384, &["--cache-entries", "0"]);
    let mut frames = BytesMut::new();
    for id in 0..20u32 {
        let t = d.mint(&json!({"exp": now() + 60, "jti": id.to_string()}));
        protocol::encode_verify(&mut frames, id, b"", t.as_bytes());
    }
    frames.extend_from_slice(&raw_frame(9, 7, 1, 0, 99, b"\0"));
    let mut s = connect(&d.socket);
    s.write_all(&frames).unwrap();
    let (replies, _) = read_replies(&mut s, 21);
    assert_eq!(replies.len(), 21);
    assert!(
        replies[..20]
            .iter()
            .all(|r| matches!(r, Reply::Valid { .. })),
        "{replies:?}"
    );
    assert_eq!(
        replies[20],
        Reply::Error {
            id: 99,
            error: ProtocolError::BadVersion
        }
    );
    assert!(is_eof(&mut s));
}

/// With Redis, answers can wait for a revocation lookup: cache hits whose
/// revocation memo ran out, and misses. One read holding such requests and
/// then a malformed frame: every request is answered, then the ERROR, then
/// the connection closes.
#[test]
fn a_framing_error_is_answered_after_requests_waiting_for_redis() {
    let redis = crate::revocation::Redis::start();
    let url = redis.url();
    let d = Jwtd::start(&["--redis", &url, "--revocation-cache-ttl", "100ms"]);
    let token = |what: &str, n: u32| {
        d.mint(&
            json!({"jti": format!("{what}-{n}"), "sub": format!("{what}-{n}"), "exp": now() + 600}),
        )
    };
    let hits: Vec<String> = (0..16).map(|n| token("hit", n)).collect();
    let misses: Vec<String> = (0..16).map(|n| token("miss", n)).collect();

    // Cache the hits, once the daemon reaches Redis (until then it cannot
    // decide: revocation fails closed).
    let mut s = connect(&d.socket);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut frames = BytesMut::new();
        for (id, t) in (0u32..).zip(&hits) {
            protocol::encode_verify(&mut frames, id, b"", t.as_bytes());
        }
        s.write_all(&frames).unwrap();
        let (replies, _) = read_replies(&mut s, hits.len());
        if replies.iter().all(|r| matches!(r, Reply::Valid { .. })) {
            break;
        }
        assert!(Instant::now() < deadline, "never valid: {replies:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Their memos and the local answers (100 ms) run out: each hit now
    // waits for a lookup.
    std::thread::sleep(Duration::from_millis(300));

    let mut frames = BytesMut::new();
    for (id, t) in (0u32..).zip(hits.iter().chain(&misses)) {
        protocol::encode_verify(&mut frames, id, b"", t.as_bytes());
    }
    frames.extend_from_slice(&raw_frame(9, 7, 1, 0, 99, b"\0"));
    assert!(frames.len() < 16 * 1024, "one read: {} bytes", frames.len());
    let mgets = redis.mget_calls();
    let mut s = connect(&d.socket);
    s.write_all(&frames).unwrap();
    let n = hits.len() + misses.len();
    let (replies, _) = read_replies(&mut s, n + 1);
    assert_eq!(replies.len(), n + 1, "{replies:?}");
    let mut answered = vec![false; n];
    for r in &replies[..n] {
        let Reply::Valid { id, cached, .. } = r else {
            panic!("{r:?} in {replies:?}");
        };
        let id = usize::try_from(*id).unwrap();
        assert_eq!(*cached, id < hits.len(), "{r:?}");
        assert!(!std::mem::replace(&mut answered[id], true), "twice: {r:?}");
    }
    assert_eq!(
        replies[n],
        Reply::Error {
            id: 99,
            error: ProtocolError::BadVersion
        }
    );
    assert!(is_eof(&mut s));
    assert!(redis.mget_calls() > mgets, "the answers waited for Redis");
}

#[test]
fn verification_beyond_the_budget_is_answered_overloaded() {
    let d = start_with(
        Algorithm::ES512,
        &["--cache-entries", "0", "--max-verifying", "1"],
    );
    let mut frames = BytesMut::new();
    for id in 0..200u32 {
        let t = d.mint(&json!({"exp": now() + 60, "jti": id.to_string()}));
        protocol::encode_verify(&mut frames, id, b"", t.as_bytes());
    }
    let mut s = connect(&d.socket);
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&frames).unwrap());
    let (replies, _) = read_replies(&mut s, 200);
    sender.join().unwrap();
    assert_eq!(replies.len(), 200, "every request is answered");
    let overloaded = replies
        .iter()
        .filter(|r| {
            matches!(
                r,
                Reply::Undecided {
                    cause: protocol::Cause::Overloaded,
                    ..
                }
            )
        })
        .count();
    let valid = replies
        .iter()
        .filter(|r| matches!(r, Reply::Valid { .. }))
        .count();
    assert!(overloaded > 0, "nothing was shed with a budget of 1");
    assert!(valid > 0, "nothing was verified");
    assert_eq!(overloaded + valid, 200);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_harms_no_one() {
    let d = Jwtd::start(&["--write-timeout", "1s"]);
    let mut pings = BytesMut::new();
    for id in 0..200_000u32 {
        protocol::encode_ping(&mut pings, id);
    }
    let mut stalled = connect(&d.socket);
    let mut writer = stalled.try_clone().unwrap();
    // The write blocks once jwtd stops reading; it ends when jwtd hangs up.
    let sender = std::thread::spawn(move || writer.write_all(&pings).is_ok());

    // Others are served meanwhile.
    let mut other = connect(&d.socket);
    let mut ping = BytesMut::new();
    protocol::encode_ping(&mut ping, 7);
    other.write_all(&ping).unwrap();
    assert_eq!(
        read_replies(&mut other, 1).0,
        vec![Reply::Pong { id: 7, ready: true }]
    );

    // jwtd hangs up on the stalled client (its writes fail then), with no
    // help from this side: nothing reads the stalled connection until then.
    assert!(
        wait_for(WAIT, || sender.is_finished()),
        "the stalled client is still connected after {WAIT:?}"
    );
    // The stalled connection was closed: what is buffered drains, then EOF.
    let (replies, ended) = read_replies(&mut stalled, 200_000);
    assert!(ended, "connection still open");
    assert!(
        replies.len() < 200_000,
        "a stalled client was answered in full"
    );
    assert!(
        !sender.join().unwrap(),
        "the stalled client's writes kept succeeding"
    );
}

#[test]
fn a_long_drain_refuses_new_requests_with_shutting_down() {
    let d = Jwtd::start(&["--shutdown-grace", "10s"]);
    let mut s = connect(&d.socket);
    // Be accepted and served before the signal: a connection still in the
    // listen backlog when the listener closes is dropped by the kernel.
    let mut first = BytesMut::new();
    protocol::encode_ping(&mut first, 1000);
    s.write_all(&first).unwrap();
    assert_eq!(
        read_replies(&mut s, 1).0,
        vec![Reply::Pong {
            id: 1000,
            ready: true
        }]
    );
    d.signal(libc::SIGTERM);
    let began = Instant::now();
    let mut refused = None;
    for id in 0..500u32 {
        let mut ping = BytesMut::new();
        protocol::encode_ping(&mut ping, id);
        if s.write_all(&ping).is_err() {
            break;
        }
        match read_replies(&mut s, 1).0.pop() {
            Some(Reply::Pong { .. }) => {}
            Some(Reply::Error {
                error: ProtocolError::ShuttingDown,
                ..
            }) => {
                refused = Some(began.elapsed());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused = refused.expect("a busy connection was never told to stop");
    assert!(
        refused >= Duration::from_millis(900),
        "refused after only {refused:?}"
    );
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_draining_daemon_never_removes_its_successors_socket() {
    // A successor has already replaced the socket path while the old daemon
    // still runs (e.g. a rolling restart that found the path stale-looking).
    // When the old one drains, it must leave the successor's socket alone.
    let old = Jwtd::start(&[]);
    let staging = old.socket.with_extension("next");
    let successor = std::os::unix::net::UnixListener::bind(&staging).unwrap();
    std::fs::rename(&staging, &old.socket).unwrap();
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    assert!(
        old.socket.exists(),
        "the successor's socket file was removed"
    );
    let client = StdStream::connect(&old.socket).expect("successor unreachable");
    drop((client, successor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_client_calls_leave_the_connection_usable_and_replies_routed() {
    let d = Jwtd::start(&["--cache-entries", "0"]);
    let client = std::sync::Arc::new(Client::connect(&d.socket).await.unwrap());
    let tokens: Vec<String> = (0..200)
        .map(|i| d.mint(&json!({"exp": now() + 60, "sub": format!("user-{i}")})))
        .collect();
    // Cancel calls at every stage: before, during and after their write.
    for (i, t) in tokens.iter().enumerate() {
        let wait = Duration::from_micros((i % 7) as u64 * 20);
        let _ = tokio::time::timeout(wait, client.verify(t.as_bytes())).await;
    }
    // Every later call, concurrent, gets its own token's claims back.
    let mut calls = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let (client, t) = (client.clone(), t.clone());
        calls.push(tokio::spawn(async move {
            match client.verify(t.as_bytes()).await.unwrap() {
                Reply::Valid { claims, .. } => {
                    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
                    assert_eq!(
                        claims["sub"],
                        format!("user-{i}"),
                        "reply routed to the wrong call"
                    );
                }
                other => panic!("call {i}: {other:?}"),
            }
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
}

/// Writes a ConfigMap-style version directory holding `jwks.json` and points
/// `..data` at it with an atomic rename, as the kubelet does.
fn configmap_publish(dir: &Path, version: &str, jwks: &str) {
    let v = dir.join(version);
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("jwks.json"), jwks).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_picked_up_and_removed_keys_stop_vouching() {
    let old = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("old".into()));
    let new = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid(Some("new".into()));
    let set = |k: &SigningKey| json!({"keys": [k.public_jwk()]}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let cm = dir.path().join("cm");
    std::fs::create_dir(&cm).unwrap();
    configmap_publish(&cm, "..v1", &set(&old));
    std::os::unix::fs::symlink("..data/jwks.json", cm.join("jwks.json")).unwrap();
    let d = Jwtd::builder()
        .no_jwks_file()
        .arg("--jwks-file")
        .arg(cm.join("jwks.json"))
        .admin()
        .start();
    let client = Client::connect(&d.socket).await.unwrap();
    let old_token = old
        .mint(&json!({"exp": now() + 600}), &Default::default())
        .unwrap();
    let new_token = new
        .mint(&json!({"exp": now() + 600}), &Default::default())
        .unwrap();
    assert!(matches!(
        client.verify(old_token.as_bytes()).await.unwrap(),
        Reply::Valid { .. }
    ));
    assert!(matches!(
        client.verify(old_token.as_bytes()).await.unwrap(),
        Reply::Valid { cached: true, .. }
    ));
    assert!(matches!(
        client.verify(new_token.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::UnknownKey,
            ..
        }
    ));

    // Rotate: the new key only. (The file is polled once a second; the
    // wait is generous so that a loaded machine does not fail it.)
    configmap_publish(&cm, "..v2", &set(&new));
    let (c, t) = (&client, &new_token);
    assert!(
        eventually(WAIT, || async move {
            matches!(c.verify(t.as_bytes()).await.unwrap(), Reply::Valid { .. })
        })
        .await,
        "swap not picked up{}",
        d.log_report()
    );
    // The old key's token was cached, and is refused right after the swap.
    assert!(matches!(
        client.verify(old_token.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::UnknownKey,
            ..
        }
    ));

    // A broken update keeps the last good set: once the watcher has read
    // and refused it (counted as a failed refresh), the new key still
    // verifies, cached and afresh.
    let errors = r#"jwtd_jwks_refreshes_total{issuer="default",result="error"}"#;
    let before = d.metric(errors);
    configmap_publish(&cm, "..v3", "{ not json");
    d.wait_metric(errors, |n| n > before);
    let fresh_new = new
        .mint(&json!({"exp": now() + 600}), &Default::default())
        .unwrap();
    for token in [&new_token, &fresh_new] {
        let reply = client.verify(token.as_bytes()).await.unwrap();
        assert!(
            matches!(reply, Reply::Valid { .. }),
            "{reply:?}{}",
            d.log_report()
        );
    }
}

#[test]
fn a_client_that_stops_reading_past_the_idle_deadline_costs_no_cpu() {
    let d = Jwtd::start(&["--idle-timeout", "1s", "--write-timeout", "30s"]);
    let mut pings = BytesMut::new();
    for id in 0..200_000u32 {
        protocol::encode_ping(&mut pings, id);
    }
    let stalled = connect(&d.socket);
    let mut writer = stalled.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&pings);
    });
    // Past the idle deadline, with replies owed and unread; then the CPU
    // the daemon uses over a 2 s window (a measurement, not a wait). A
    // loaded machine can only make a spinning daemon look cheaper, never a
    // quiet one dearer.
    std::thread::sleep(Duration::from_secs(2));
    let before = d.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = (d.cpu_ticks() - before) as f64 / 100.0;
    assert!(
        used < 0.5,
        "daemon burned {used:.2} s of CPU in 2 s for a stalled client"
    );
    // Unblock the writer thread (its clone keeps the socket open otherwise).
    let _ = stalled.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
}

fn ping_cli(socket: &Path) -> (Option<i32>, serde_json::Value) {
    let out = jwtd_command(&["ping", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json)
}

#[test]
fn jwtd_ping_reports_ready_not_ready_and_unreachable() {
    let d = Jwtd::start(&[]);
    assert_eq!(ping_cli(&d.socket), (Some(0), json!({"ready": true})));

    // A remote source that never answers: serving, but not ready.
    let unready = Jwtd::builder()
        .no_jwks_file()
        .args(["--jwks-url", "http://127.0.0.1:9/jwks.json"])
        .start();
    let socket = unready.socket.clone();
    assert_eq!(ping_cli(&socket), (Some(3), json!({"ready": false})));
    drop(unready);

    let (code, out) = ping_cli(&socket);
    assert_eq!(code, Some(1));
    assert_eq!(out["error"], "unreachable");
}

#[tokio::test]
async fn revocations_through_the_socket_reach_the_in_memory_store() {
    let d = Jwtd::start(&[]);
    let client = Client::connect(&d.socket).await.unwrap();
    let token =
        d.mint(&json!({"sub": "alice", "jti": "t-1", "iat": now() - 10, "exp": now() + 600}));
    let newer =
        d.mint(&json!({"sub": "alice", "jti": "t-2", "iat": now() + 5, "exp": now() + 600}));
    assert!(matches!(
        client.verify(token.as_bytes()).await.unwrap(),
        Reply::Valid { .. }
    ));
    assert!(matches!(
        client.verify(token.as_bytes()).await.unwrap(),
        Reply::Valid { cached: true, .. }
    ));

    // The CLI, through the socket: every token of alice issued until now.
    let out = jwtd_command(&["revoke", "--sub", "alice", "--issuer", "", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["revoked"], "jwtd:{-}:sub:alice");
    // The cached token is refused at once; one issued later is not.
    assert!(matches!(
        client.verify(token.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::Revoked,
            ..
        }
    ));
    assert!(matches!(
        client.verify(newer.as_bytes()).await.unwrap(),
        Reply::Valid { .. }
    ));

    // One token by jti, with the op itself.
    let reply = client
        .revoke(br#"{"jti":"t-2","exp":4102444800}"#)
        .await
        .unwrap();
    assert!(
        matches!(reply, Reply::Done { ref key, .. } if &key[..] == b"jwtd:{-}:jti:t-2"),
        "{reply:?}"
    );
    assert!(matches!(
        client.verify(newer.as_bytes()).await.unwrap(),
        Reply::Invalid {
            reason: Reject::Revoked,
            ..
        }
    ));

    // A malformed request is an error, and the connection goes on.
    let reply = client.revoke(b"{\"jti\":\"no exp\"}").await.unwrap();
    assert!(
        matches!(
            reply,
            Reply::Error {
                error: ProtocolError::BadRevoke,
                ..
            }
        ),
        "{reply:?}"
    );
    assert!(matches!(client.ping().await.unwrap(), Reply::Pong { .. }));
}

/// `--threads N` sizes the runtime: the daemon runs exactly N threads named
/// as tokio (1.54) names its workers, `tokio-rt-worker`, and answers on
/// them. The embedded dev key set
/// means no file is read, so no blocking-pool thread (which tokio names
/// the same) is started beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_sets_the_number_of_runtime_workers() {
    const WORKER: &str = "tokio-rt-worker";
    for threads in [1usize, 3] {
        let d = Jwtd::builder()
            .no_jwks_file()
            .args(["--dev", "--threads", &threads.to_string()])
            .start();
        // Requests are answered, several connections at once.
        let token = jwtd_command(&[
            "mint",
            "--key",
            crate::support::repo_path("deploy/dev/signing-key.pem")
                .to_str()
                .unwrap(),
            "--iss",
            "https://jwtd.dev.invalid",
            "--aud",
            "jwtd-dev",
        ])
        .output()
        .unwrap();
        assert!(token.status.success(), "{token:?}");
        let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
        let mut calls = Vec::new();
        for _ in 0..4 {
            let client = d.client().await;
            let token = token.clone();
            calls.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let r = client.verify(token.as_bytes()).await.unwrap();
                    assert!(matches!(r, Reply::Valid { .. }), "{r:?}");
                }
            }));
        }
        for call in calls {
            call.await.unwrap();
        }
        let names = d.thread_names();
        let workers = names.iter().filter(|n| *n == WORKER).count();
        assert_eq!(
            workers,
            threads,
            "--threads {threads}: the daemon's threads are {names:?}{}",
            d.log_report()
        );
    }
}
