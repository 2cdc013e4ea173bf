//! Shared helpers: running the binary, temp files, key and token factories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use jwtd::verify::KeySet;
use serde_json::{Value, json};

/// Path of the `jwtd` binary under test.
pub fn jwtd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_jwtd")
}

/// Runs `jwtd` with `args`, optionally feeding `stdin`.
pub fn run_jwtd(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(jwtd_bin());
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn jwtd");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait for jwtd")
}

/// The single JSON line `jwtd check` printed.
pub fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "expected one line, got {text:?}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Path of a file under the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A signing key with kid, and a key set holding its public half.
#[allow(dead_code)] // Used by the adversarial and CLI modules.
pub fn keypair(alg: Algorithm, kid: &str) -> (SigningKey, KeySet) {
    let key = SigningKey::generate(alg)
        .expect("generate key")
        .with_kid(Some(kid.to_owned()));
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let set = KeySet::from_jwks(jwks.as_bytes()).expect("own key set loads");
    (key, set)
}

/// The current Unix time.
#[allow(dead_code)] // Not every test module needs it.
pub fn now() -> i64 {
    jwtd::clock::unix_now()
}

/// A free loopback TCP port (bound, then released for the caller).
#[allow(dead_code)] // Used by the modules that start TCP servers.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A token for a proxy-front test: sub `alice`, iss
/// `https://issuer.example`, valid 10 minutes, with `extra` claims on top.
#[allow(dead_code)] // Used by the HTTP, nginx and Envoy modules.
pub fn front_token(key: &SigningKey, extra: Value) -> String {
    let mut all = json!({"sub": "alice", "iss": "https://issuer.example", "exp": now() + 600});
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), extra) {
        all.extend(more);
    }
    key.mint(&all, &Default::default()).expect("mint")
}

/// `jwtd serve` for the proxy-front tests (HTTP, gRPC, metrics): trusting a
/// fresh ES256 key with kid `k1` in `dir/jwks.json` (unless the flags name a
/// `--jwks-url`), with `dir/jwtd.toml` as its config file and its log in
/// `dir/jwtd.log`. Killed on drop.
pub struct Sidecar {
    pub child: std::process::Child,
    /// The front's socket, `dir/front.sock`.
    pub socket: PathBuf,
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Serves the front named by `front_flag` (`--http-socket`,
    /// `--grpc-socket`) on `dir/front.sock`, with `config` as the TOML of
    /// its config file and `extra` flags; returns once that socket accepts.
    pub fn start(front_flag: &str, config: &str, extra: &[&str]) -> Sidecar {
        use std::time::{Duration, Instant};
        let key = SigningKey::generate(Algorithm::ES256)
            .expect("key")
            .with_kid(Some("k1".into()));
        let dir = tempfile::tempdir().expect("temp dir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).expect("jwks");
        let toml = dir.path().join("jwtd.toml");
        std::fs::write(&toml, config).expect("config");
        let socket = dir.path().join("front.sock");
        let mut cmd = std::process::Command::new(jwtd_bin());
        cmd.arg("serve")
            .arg("--socket")
            .arg(dir.path().join("jwtd.sock"))
            .arg(front_flag)
            .arg(&socket)
            .arg("--config")
            .arg(&toml);
        if !extra.contains(&"--jwks-url") {
            cmd.arg("--jwks-file").arg(&jwks);
        }
        let child = cmd
            .args(extra)
            .stderr(std::fs::File::create(dir.path().join("jwtd.log")).expect("log"))
            .spawn()
            .expect("spawn jwtd");
        let mut sidecar = Sidecar {
            child,
            socket,
            key,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sidecar.socket).is_err() {
            assert!(
                sidecar.is_running(),
                "jwtd exited at start: {}",
                sidecar.log()
            );
            assert!(Instant::now() < deadline, "the front is not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        sidecar
    }

    /// A token from its key: `front_token` claims plus `claims`.
    pub fn token(&self, claims: Value) -> String {
        front_token(&self.key, claims)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What jwtd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jwtd.log")).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` (a whole HTTP/1.x request, `\r\n` line ends; the server
/// must close the connection after answering) to `127.0.0.1:port` and reads
/// the answer: status (0 if there is none), head, body.
pub fn tcp_exchange(port: u16, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
