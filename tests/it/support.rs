//! Shared helpers: [`Jwtd`], the one launcher of `jwtd serve` every test
//! uses; honest waits ([`wait_for`], [`eventually`], [`Jwtd::wait_log`],
//! [`Jwtd::wait_metric`]); running the CLI; keys, tokens and HTTP bits.
//!
//! **Waits.** A test never sleeps a fixed time and hopes: it polls for the
//! condition it needs (a socket that accepts, a log line, a counter on
//! `/metrics`) with a generous deadline ([`WAIT`], 30 s), so a loaded 2-core
//! CI machine makes a test slower, not red. A test that asserts "nothing
//! changed" first waits until the event that could have changed it was seen
//! (a failed refresh counted, a lookup made).

#![allow(dead_code)] // Each module uses its own part of this one.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwtd::sign::SigningKey;
use jwtd::verify::Algorithm;
use jwtd::verify::KeySet;
use serde_json::{Value, json};

/// How long an honest wait waits before it gives up: long enough that only
/// a real failure reaches it.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(20);

/// Polls `ready` until it holds (true) or `within` has passed (false).
pub fn wait_for(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] for async checks: polls `check` until it holds (true) or
/// `within` has passed (false), letting the runtime run in between.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Path of the `jwtd` binary under test.
pub fn jwtd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_jwtd")
}

/// `jwtd ARGS...` with no `JWTD_*` setting leaking in from the environment,
/// `NO_COLOR=1` and stdin closed: the CLI as a test runs it.
pub fn jwtd_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(jwtd_bin());
    cmd.args(args);
    hermetic(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes every inherited `JWTD_*` variable and sets `NO_COLOR=1`.
fn hermetic(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JWTD_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// Runs `jwtd` with `args`, optionally feeding `stdin`.
pub fn run_jwtd(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = jwtd_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jwtd");
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
pub fn keypair(alg: Algorithm, kid: &str) -> (SigningKey, KeySet) {
    let key = SigningKey::generate(alg)
        .expect("generate key")
        .with_kid(Some(kid.to_owned()));
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let set = KeySet::from_jwks(jwks.as_bytes()).expect("own key set loads");
    (key, set)
}

/// The current Unix time.
pub fn now() -> i64 {
    jwtd::clock::unix_now()
}

/// A free loopback TCP port (bound, then released for the caller).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A token for a proxy-front test: sub `alice`, iss
/// `https://issuer.example`, valid 10 minutes, with `extra` claims on top.
pub fn front_token(key: &SigningKey, extra: Value) -> String {
    let mut all = json!({"sub": "alice", "iss": "https://issuer.example", "exp": now() + 600});
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), extra) {
        all.extend(more);
    }
    key.mint(&all, &Default::default()).expect("mint")
}

/// Sends a signal to process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) on a pid this test spawned, with a valid signal.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

// ---------------------------------------------------------------------------
// The launcher.

/// Where `jwtd serve` gets its keys.
enum Keys {
    /// `dir/jwks.json`, holding this key's public half (`--jwks-file`).
    File,
    /// The flags or the config file name the source; the key is still
    /// there to mint tokens with (nobody trusts them unless the test
    /// publishes it).
    Given,
}

/// Builds a `jwtd serve` (see [`Jwtd`]). Every path lives in a fresh temp
/// dir; the defaults give a daemon on `dir/jwtd.sock` trusting a fresh ES256
/// key with kid `k1`, with no `JWTD_*` variable inherited.
#[must_use]
pub struct JwtdBuilder {
    key: Option<SigningKey>,
    keys: Keys,
    args: Vec<OsString>,
    /// Variables to set (`Some`) or remove (`None`).
    env: Vec<(OsString, Option<OsString>)>,
    config: Option<String>,
    socket: Option<PathBuf>,
    /// No `--socket`: `XDG_RUNTIME_DIR` is the temp dir, so jwtd's default
    /// socket is `dir/jwtd.sock`.
    default_socket: bool,
    http: bool,
    grpc: bool,
    admin: bool,
    nofile: Option<u64>,
    current_dir: Option<PathBuf>,
}

/// What a (re)start needs, kept for [`Jwtd::restart`].
struct Launch {
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    nofile: Option<u64>,
    current_dir: Option<PathBuf>,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> Child {
        let mut cmd = Command::new(jwtd_bin());
        cmd.args(&self.args);
        hermetic(&mut cmd);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        // Appended: a restarted daemon's log follows the first one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("jwtd log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let nofile = self.nofile;
        // SAFETY: prctl(2) and setrlimit(2) are async-signal-safe. The
        // daemon gets SIGKILL when the thread that started it (the test's)
        // ends, so it cannot outlive a test process killed before Drop
        // runs.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(n) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn jwtd serve")
    }
}

impl JwtdBuilder {
    /// Signs with (and, by default, trusts) `key` instead of a fresh ES256
    /// key with kid `k1`. The key is used as given (kid included).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// No `--jwks-file`: the flags or the config file name the key source.
    pub fn no_jwks_file(mut self) -> Self {
        self.keys = Keys::Given;
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Unsets `name` (e.g. the `NO_COLOR=1` every launch sets).
    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Self {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    /// `toml` as `dir/jwtd.toml`, passed with `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// The native socket at `path` rather than `dir/jwtd.sock`.
    pub fn socket_at(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// No `--socket`; `XDG_RUNTIME_DIR` is the temp dir, where jwtd puts its
    /// default socket.
    pub fn default_socket(mut self) -> Self {
        self.default_socket = true;
        self
    }

    /// The HTTP front on `dir/http.sock`.
    pub fn http_front(mut self) -> Self {
        self.http = true;
        self
    }

    /// The gRPC front on `dir/grpc.sock`.
    pub fn grpc_front(mut self) -> Self {
        self.grpc = true;
        self
    }

    /// The admin listener on a free loopback port (for the metric helpers).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Soft and hard `RLIMIT_NOFILE` of the daemon.
    pub fn nofile_limit(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the daemon; returns once every socket it was given accepts
    /// connections (and the admin port, with [`JwtdBuilder::admin`]).
    /// Panics, with the log, if it exits first or is not listening after
    /// [`WAIT`].
    pub fn start(self) -> Jwtd {
        let jwtd = self.spawn();
        jwtd.wait_listening();
        jwtd
    }

    /// Runs a configuration that must not start, to its exit (panics if it
    /// still runs after [`WAIT`]).
    pub fn run_until_exit(self) -> Exited {
        let jwtd = self.spawn();
        if !wait_for(WAIT, || jwtd.try_exit().is_some()) {
            panic!(
                "jwtd serve {:?} started instead of refusing its configuration{}",
                jwtd.launch.args,
                jwtd.log_report()
            );
        }
        let status = jwtd.try_exit().expect("exited");
        Exited {
            code: status.code(),
            log: jwtd.log(),
            socket: jwtd.socket.clone(),
            jwtd,
        }
    }

    fn spawn(self) -> Jwtd {
        let dir = tempfile::tempdir().expect("jwtd temp dir");
        let key = self.key.unwrap_or_else(|| {
            SigningKey::generate(Algorithm::ES256)
                .expect("generate key")
                .with_kid(Some("k1".into()))
        });
        let path = |name: &str| dir.path().join(name);
        let mut args: Vec<OsString> = vec!["serve".into()];
        let mut env = self.env;
        let socket = match (self.socket, self.default_socket) {
            (_, true) => {
                env.push(("XDG_RUNTIME_DIR".into(), Some(dir.path().into())));
                path("jwtd.sock")
            }
            (socket, false) => {
                let socket = socket.unwrap_or_else(|| path("jwtd.sock"));
                args.extend(["--socket".into(), socket.clone().into()]);
                socket
            }
        };
        let http = self.http.then(|| path("http.sock"));
        if let Some(http) = &http {
            args.extend(["--http-socket".into(), http.into()]);
        }
        let grpc = self.grpc.then(|| path("grpc.sock"));
        if let Some(grpc) = &grpc {
            args.extend(["--grpc-socket".into(), grpc.into()]);
        }
        let admin = self.admin.then(free_port);
        if let Some(port) = admin {
            args.extend(["--admin-addr".into(), format!("127.0.0.1:{port}").into()]);
        }
        if let Some(toml) = &self.config {
            let file = path("jwtd.toml");
            std::fs::write(&file, toml).expect("write jwtd.toml");
            args.extend(["--config".into(), file.into()]);
        }
        if let Keys::File = self.keys {
            let file = path("jwks.json");
            let jwks = json!({"keys": [key.public_jwk()]}).to_string();
            std::fs::write(&file, jwks).expect("write jwks.json");
            args.extend(["--jwks-file".into(), file.into()]);
        }
        args.extend(self.args);
        let launch = Launch {
            args,
            env,
            nofile: self.nofile,
            current_dir: self.current_dir,
            log: path("jwtd.log"),
        };
        let child = launch.spawn();
        Jwtd {
            child: Mutex::new(child),
            launch,
            socket,
            http,
            grpc,
            admin,
            key: Arc::new(key),
            dir,
        }
    }
}

/// A `jwtd serve` that exited by itself ([`JwtdBuilder::run_until_exit`]).
pub struct Exited {
    pub code: Option<i32>,
    /// Its stderr.
    pub log: String,
    /// Where its native socket would have been.
    pub socket: PathBuf,
    /// Keeps the temp dir until the test looked.
    jwtd: Jwtd,
}

/// A running `jwtd serve`, started by [`Jwtd::builder`]: stderr captured in
/// `dir/jwtd.log`, killed (and reaped) on drop.
pub struct Jwtd {
    /// Behind a lock so that every helper takes `&self` (tests share the
    /// daemon with closures and tasks) while `try_wait` needs `&mut`.
    child: Mutex<Child>,
    launch: Launch,
    /// The native socket.
    pub socket: PathBuf,
    http: Option<PathBuf>,
    grpc: Option<PathBuf>,
    admin: Option<u16>,
    /// The key the daemon trusts (unless the test gave it other keys).
    pub key: Arc<SigningKey>,
    /// Holds the sockets, the key file, the config and the log. Declared
    /// last: removed after the daemon is killed.
    pub dir: tempfile::TempDir,
}

impl Jwtd {
    pub fn builder() -> JwtdBuilder {
        JwtdBuilder {
            key: None,
            keys: Keys::File,
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            socket: None,
            default_socket: false,
            http: false,
            grpc: false,
            admin: false,
            nofile: None,
            current_dir: None,
        }
    }

    /// The usual daemon: a fresh key in `dir/jwks.json`, the native socket,
    /// and `args`.
    pub fn start(args: &[&str]) -> Jwtd {
        Jwtd::builder().args(args).start()
    }

    fn wait_listening(&self) {
        use std::os::unix::net::UnixStream;
        let listening = || {
            UnixStream::connect(&self.socket).is_ok()
                && [&self.http, &self.grpc]
                    .into_iter()
                    .flatten()
                    .all(|s| UnixStream::connect(s).is_ok())
                && self
                    .admin
                    .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
        };
        let ok = wait_for(WAIT, || {
            if let Some(status) = self.try_exit() {
                panic!("jwtd exited at start ({status}){}", self.log_report());
            }
            listening()
        });
        assert!(ok, "jwtd not listening after {WAIT:?}{}", self.log_report());
    }

    /// A native-protocol client on the socket.
    pub async fn client(&self) -> jwtd::client::Client {
        jwtd::client::Client::connect(&self.socket)
            .await
            .expect("connect to jwtd")
    }

    /// A token with exactly `claims`, signed by [`Jwtd::key`].
    pub fn mint(&self, claims: &Value) -> String {
        self.key.mint(claims, &Default::default()).expect("mint")
    }

    /// A proxy-front token ([`front_token`]): sub `alice`, iss
    /// `https://issuer.example`, 10 minutes, plus `extra`.
    pub fn token(&self, extra: Value) -> String {
        front_token(&self.key, extra)
    }

    /// The HTTP front's socket ([`JwtdBuilder::http_front`]).
    pub fn http_socket(&self) -> &Path {
        self.http
            .as_deref()
            .expect("started without the HTTP front")
    }

    /// The gRPC front's socket ([`JwtdBuilder::grpc_front`]).
    pub fn grpc_socket(&self) -> &Path {
        self.grpc
            .as_deref()
            .expect("started without the gRPC front")
    }

    /// The admin port ([`JwtdBuilder::admin`]).
    pub fn admin_port(&self) -> u16 {
        self.admin.expect("started without the admin listener")
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its exit status, if it exited.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        self.child().try_wait().expect("jwtd status")
    }

    pub fn is_running(&self) -> bool {
        self.try_exit().is_none()
    }

    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Waits for the exit status; panics (with the log) after `within`.
    pub fn wait_exit(&self, within: Duration) -> ExitStatus {
        if !wait_for(within, || self.try_exit().is_some()) {
            panic!("jwtd did not exit within {within:?}{}", self.log_report());
        }
        self.try_exit().expect("exited")
    }

    /// SIGKILL, and reaped.
    pub fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the daemon and starts it again, same flags, same files; returns
    /// once it listens.
    pub fn restart(&self) {
        self.kill();
        *self.child() = self.launch.spawn();
        self.wait_listening();
    }

    /// What it logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.launch.log).unwrap_or_default()
    }

    /// The log under a header, for failure messages.
    pub fn log_report(&self) -> String {
        format!("\n--- jwtd log ---\n{}", self.log())
    }

    /// Waits until the log holds `needle`; panics after [`WAIT`] or if the
    /// daemon exits first.
    pub fn wait_log(&self, needle: &str) {
        let seen = wait_for(WAIT, || {
            self.log().contains(needle) || {
                assert!(
                    self.is_running(),
                    "jwtd exited before logging {needle:?}{}",
                    self.log_report()
                );
                false
            }
        });
        assert!(seen, "no {needle:?} in the log{}", self.log_report());
    }

    /// `GET path` on the admin listener: status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let (status, _, body) =
            tcp_exchange(self.admin_port(), &format!("GET {path} HTTP/1.0\r\n\r\n"));
        (status, body)
    }

    /// The `/metrics` exposition.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of the sample whose name and labels are exactly `series`
    /// (e.g. `jwtd_jwks_refreshes_total{issuer="default",result="error"}`);
    /// panics if there is none.
    pub fn metric(&self, series: &str) -> f64 {
        let m = self.metrics();
        sample(&m, series).unwrap_or_else(|| panic!("no sample {series} in:\n{m}"))
    }

    /// Polls [`Jwtd::metric`] until `holds` accepts its value, which it
    /// returns; panics after [`WAIT`]. Blocks the calling thread: in async
    /// tests whose in-process tasks must run meanwhile, poll
    /// [`Jwtd::metric`] with [`eventually`] instead.
    pub fn wait_metric(&self, series: &str, holds: impl Fn(f64) -> bool) -> f64 {
        let mut last = None;
        let ok = wait_for(WAIT, || {
            let v = self.metric(series);
            last = Some(v);
            holds(v)
        });
        assert!(
            ok,
            "{series} is still {last:?} after {WAIT:?}{}",
            self.log_report()
        );
        last.expect("sampled")
    }

    /// The names (`comm`) of the daemon's threads, one per thread.
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = format!("/proc/{}/task", self.pid());
        let mut names: Vec<String> = std::fs::read_dir(&tasks)
            .expect("/proc/PID/task")
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
            .map(|n| n.trim_end().to_owned())
            .collect();
        names.sort();
        names
    }

    /// User + system CPU time the daemon used so far, in clock ticks
    /// (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let rest = stat.rsplit_once(')').expect("stat format").1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Jwtd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the sample whose name and labels are exactly `series`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

// ---------------------------------------------------------------------------
// Helper processes: apps and proxies in front of jwtd.

/// A process a test needs beside jwtd (a stand-in app, nginx, Envoy):
/// SIGTERM on drop, then SIGKILL if it is still there after 5 s (nginx's
/// master stops its workers on SIGTERM; killed outright, it would leave them
/// running).
pub struct Helper {
    child: Child,
    what: String,
}

impl Helper {
    /// Spawns `cmd` (stdin closed).
    pub fn spawn(what: &str, cmd: &mut Command) -> Helper {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Helper {
            child,
            what: what.to_owned(),
        }
    }

    /// Waits for it to exit by itself; false if it still runs after
    /// `within`.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let child = &mut self.child;
        wait_for(within, || !matches!(child.try_wait(), Ok(None)))
    }

    /// Waits until `127.0.0.1:port` accepts connections; panics if the
    /// process exits first or after [`WAIT`].
    pub fn wait_tcp(&mut self, port: u16) {
        let what = self.what.clone();
        let child = &mut self.child;
        let ok = wait_for(WAIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited at start ({status})");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ok, "{what} is not listening on port {port} after {WAIT:?}");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = libc::pid_t::try_from(self.child.id()).map(|pid| {
            // SAFETY: kill(2) on our own unreaped child, a valid signal.
            unsafe { libc::kill(pid, libc::SIGTERM) }
        });
        wait_for(Duration::from_secs(5), || {
            !matches!(self.child.try_wait(), Ok(None))
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// jwtd behind a proxy (nginx, Envoy) in front of a stand-in app: what the
/// proxy tests share. The proxy and the app are stopped before jwtd.
pub struct Proxied {
    /// The proxy first, then the app: the order they stop in.
    helpers: Vec<Helper>,
    pub jwtd: Jwtd,
    /// The proxy's listening port.
    pub port: u16,
}

impl Proxied {
    /// `jwtd`, and `helpers` (proxy first) already listening on `port`.
    pub fn new(jwtd: Jwtd, helpers: Vec<Helper>, port: u16) -> Proxied {
        Proxied {
            helpers,
            jwtd,
            port,
        }
    }

    /// A token jwtd trusts ([`Jwtd::token`]).
    pub fn token(&self, extra: Value) -> String {
        self.jwtd.token(extra)
    }

    /// `request` through the proxy ([`tcp_exchange`]).
    pub fn send(&self, request: &str) -> (u16, String, String) {
        tcp_exchange(self.port, request)
    }
}

// ---------------------------------------------------------------------------
// HTTP bits.

/// Sends `request` (a whole HTTP/1.x request, `\r\n` line ends; the server
/// must close the connection after answering) to `127.0.0.1:port` and reads
/// the answer: status (0 if there is none), head, body.
pub fn tcp_exchange(port: u16, request: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
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

/// One HTTP/1.x response read off a kept-alive connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then a `Content-Length` body) from `stream`,
/// byte by byte through the head so that nothing past the response is
/// consumed and the connection can go on.
pub fn read_response(stream: &mut impl Read) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read");
        assert!(
            n == 1,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let text = String::from_utf8(buf).expect("ASCII headers");
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = response
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    response.body = vec![0u8; len];
    stream.read_exact(&mut response.body).expect("body");
    response
}

/// Sends `request` (with `\r\n` line ends) on `stream` and reads the answer.
pub fn exchange(stream: &mut (impl Read + Write), request: &str) -> Response {
    stream.write_all(request.as_bytes()).expect("write");
    read_response(stream)
}
