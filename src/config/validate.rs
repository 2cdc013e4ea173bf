//! The second stage: [`Config::from_raw`] types and checks every setting of
//! a [`RawConfig`] and returns a [`Config`], or every problem found. Each
//! setting's default is the one the list declares ([`Setting::default`]).
//!
//! The fronts, revocation, and issuers with their policies are typed in
//! their own modules; this one holds the steps of the daemon as a whole and
//! the checks they share ([`Check`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::parse_duration;
use super::fronts::{self, Fronts};
use super::issuers::{self, IssuerSource, KeyRefresh};
use super::revocation;
use super::settings::{RawConfig, Setting, s};
use crate::jwks::source::RemoteSettings;
use crate::revocation::RevocationConfig;
use crate::verifier::VerifierConfig;

/// Longest refresh period, cooldown or fetch timeout accepted.
const MAX_REFRESH: Duration = Duration::from_secs(30 * 86_400);

/// A validated `jwtd serve` configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket path.
    pub socket: PathBuf,
    /// Socket file permissions.
    pub socket_mode: u32,
    /// One key source per issuer, in the order of `verifier.issuers`.
    pub sources: Vec<IssuerSource>,
    /// Fetch settings of remote sources.
    pub remote: RemoteSettings,
    /// Redis URLs for revocation (empty: the in-memory store).
    pub redis: Vec<String>,
    /// Revocation settings.
    pub revocation: RevocationConfig,
    /// The proxy fronts: where they listen, and their shared settings.
    pub fronts: Fronts,
    /// Verification, policy and cache settings.
    pub verifier: VerifierConfig,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Maximum unanswered requests per connection.
    pub max_in_flight: usize,
    /// Maximum frame size in bytes.
    pub max_frame_bytes: usize,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// Stalled reply writes close the connection after this long.
    pub write_timeout: Duration,
    /// How long SIGTERM waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Tokio worker threads (0 = one per core).
    pub threads: usize,
    /// Tracing filter.
    pub log: String,
    /// Log lines as JSON objects (else text).
    pub log_json: bool,
    /// The admin listener (`/metrics`, `/livez`, `/readyz`); none: no
    /// admin listener and no metrics.
    pub admin_addr: Option<SocketAddr>,
    /// Bounds of the listeners (proxy fronts, admin) and socket ownership.
    pub listen: ListenLimits,
    /// The JWE decryption key files (`jwe_keys`, top level and per
    /// issuer, each once), in the order of [`VerifierConfig::jwe`], for the
    /// start-up checks (file mode), the watchers and logs.
    pub jwe_keys: Vec<PathBuf>,
}

/// Resource bounds of the proxy fronts and the admin listener, and the
/// group of the Unix sockets (`src/server/listen.rs` explains each value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenLimits {
    /// gRPC: largest `CheckRequest` message.
    pub grpc_max_message_bytes: usize,
    /// gRPC: concurrent streams per connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub grpc_max_streams: u32,
    /// gRPC: request bytes received and not yet decided, over the front.
    pub grpc_max_buffered_bytes: usize,
    /// gRPC: a request message that has not fully arrived after this long
    /// is refused.
    pub grpc_body_timeout: Duration,
    /// HTTP front: largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// HTTP front: a request head must arrive within this long of its
    /// first byte.
    pub header_timeout: Duration,
    /// Admin listener: connections open at once; beyond, closed at once.
    pub admin_max_connections: usize,
    /// Group (gid) given to every Unix socket jwtd creates; none: the
    /// process's group.
    pub socket_group: Option<u32>,
    /// `/readyz` fails while the revocation store (Redis) cannot be reached.
    pub ready_requires_revocation: bool,
}

/// The default socket path: `$XDG_RUNTIME_DIR/jwtd.sock`, else
/// `/tmp/jwtd.sock`.
pub fn default_socket() -> String {
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(dir) if !dir.is_empty() => format!("{dir}/jwtd.sock"),
        _ => "/tmp/jwtd.sock".to_owned(),
    }
}

/// Collects problems while typing settings. Each problem starts with the
/// name of the setting it is about, so that [`super::Origins::locate`] can
/// say where its value came from.
#[derive(Debug, Default)]
pub(super) struct Check {
    pub(super) problems: Vec<String>,
    /// What the names of the settings checked now start with: `""` at the
    /// top level, `"issuers[1]."` while an `[[issuers]]` table is checked.
    pub(super) at: String,
}

impl Check {
    /// Records a problem of setting `s`.
    pub(super) fn problem(&mut self, s: &Setting, what: impl std::fmt::Display) {
        self.problems.push(format!("{}{}: {what}", self.at, s.key));
    }

    /// The value given, else the declared default.
    fn text<'a>(s: &Setting, v: Option<&'a str>) -> &'a str {
        v.or(s.default)
            .expect("a setting read without a value given declares a default")
    }

    pub(super) fn duration(&mut self, s: &Setting, v: Option<&str>) -> Duration {
        parse_duration(Self::text(s, v)).unwrap_or_else(|e| {
            self.problem(s, e);
            Duration::ZERO
        })
    }

    /// A boolean: `true` or `false`, also `1` or `0` (as `JWTD_DEV=1`).
    pub(super) fn flag(&mut self, s: &Setting, v: Option<&str>) -> bool {
        match Self::text(s, v).trim() {
            "false" | "0" => false,
            "true" | "1" => true,
            other => {
                self.problem(s, format_args!("{other:?} is neither true nor false"));
                false
            }
        }
    }

    /// A timeout of at least one second (shorter ones close healthy
    /// connections between two requests).
    pub(super) fn at_least_1s(&mut self, s: &Setting, v: Option<&str>) -> Duration {
        let d = self.duration(s, v);
        if d < Duration::from_secs(1) {
            self.problem(s, format_args!("{d:?} is below the minimum of 1s"));
        }
        d
    }

    /// A duration that must be whole seconds (NumericDates are seconds:
    /// `500ms` would silently become 0; see [`super::parse_whole_seconds`]).
    pub(super) fn whole_seconds(&mut self, s: &Setting, v: Option<&str>) -> Duration {
        let d = self.duration(s, v);
        if d.subsec_nanos() != 0 {
            self.problem(s, format_args!("{d:?} is not a whole number of seconds"));
        }
        d
    }

    /// A whole number within `range`; out of range or not a number, a
    /// problem (and the default).
    pub(super) fn number(&mut self, s: &Setting, v: Option<&str>, range: (usize, usize)) -> usize {
        let default = || -> usize {
            Self::text(s, None)
                .parse()
                .expect("a number setting declares a numeric default")
        };
        let text = Self::text(s, v);
        match text.trim().parse::<usize>() {
            Ok(n) if (range.0..=range.1).contains(&n) => n,
            Ok(n) => {
                self.problem(
                    s,
                    format_args!("{n} is outside {} ..= {}", range.0, range.1),
                );
                default()
            }
            Err(_) => {
                self.problem(s, format_args!("{text:?} is not a whole number"));
                default()
            }
        }
    }

    /// One of `choices` (the first is the default's meaning), by index.
    pub(super) fn choice(
        &mut self,
        s: &Setting,
        v: Option<&str>,
        choices: [&str; 2],
        what: &str,
    ) -> bool {
        match Self::text(s, v).trim() {
            t if t == choices[0] => false,
            t if t == choices[1] => true,
            other => {
                self.problem(s, format_args!("{other:?} is {what}"));
                false
            }
        }
    }

    /// The problems found, if any.
    fn finish(self) -> Result<(), Vec<String>> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems)
        }
    }
}

impl Config {
    /// Types and validates every setting, loading the key files.
    ///
    /// # Errors
    ///
    /// Every problem found, one message each, starting with the name of
    /// the setting it is about.
    pub fn from_raw(raw: RawConfig) -> Result<Config, Vec<String>> {
        let mut c = Check::default();
        let (socket, socket_mode) = socket(&mut c, &raw);
        let max_token_bytes = c.number(
            &s::max_token_bytes,
            raw.max_token_bytes.as_deref(),
            (64, 1024 * 1024),
        );
        let (remote, refresh) = key_refresh(&mut c, &raw);
        let revocation = revocation::settings(&mut c, &raw);
        let fronts = fronts::settings(&mut c, &raw, &socket);
        let redis = redis_urls(&mut c, &raw);
        let (sources, issuers, jwe) = issuers::settings(&mut c, &raw, max_token_bytes, &refresh);
        let conn = connections(&mut c, &raw, max_token_bytes);
        // Routes and the verification budget are stages of the verifier's
        // pipeline, shared by every front.
        let routes = fronts::routes(&mut c, &raw);
        let mut verifier = cache(&mut c, &raw, issuers, conn.max_verifying, routes);
        verifier.bind = fronts::bindings(&mut c, &raw);
        let jwe_keys = jwe.iter().map(|(path, _)| path.clone()).collect();
        verifier.jwe = jwe.into_iter().map(|(_, keys)| keys).collect();
        let mut fronts = fronts;
        fronts.authz.cnf_header = verifier
            .issuers
            .iter()
            .any(|i| i.binding.dpop != crate::bind::DpopMode::Off);
        let (threads, shutdown_grace) = process(&mut c, &raw);
        let (log, log_json) = logging(&mut c, &raw);
        let admin_addr = admin_addr(&mut c, &raw);
        let listen = listen_limits(&mut c, &raw, max_token_bytes);
        c.finish()?;
        Ok(Config {
            jwe_keys,
            socket,
            socket_mode,
            sources,
            remote,
            redis,
            revocation,
            fronts,
            verifier,
            max_connections: conn.max_connections,
            max_in_flight: conn.max_in_flight,
            max_frame_bytes: conn.max_frame_bytes,
            idle_timeout: conn.idle_timeout,
            write_timeout: conn.write_timeout,
            shutdown_grace,
            threads,
            log,
            log_json,
            admin_addr,
            listen,
        })
    }
}

/// The native socket's path and permissions.
fn socket(c: &mut Check, raw: &RawConfig) -> (PathBuf, u32) {
    let socket = PathBuf::from(raw.socket.clone().unwrap_or_else(default_socket));
    if socket.as_os_str().is_empty() {
        c.problem(&s::socket, "empty path");
    }
    let mode = Check::text(&s::socket_mode, raw.socket_mode.as_deref());
    let mode = match u32::from_str_radix(mode.trim(), 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            c.problem(
                &s::socket_mode,
                format_args!(
                    "{:?} is not an octal permission such as 0660",
                    raw.socket_mode.as_deref().unwrap_or_default()
                ),
            );
            0o660
        }
    };
    (socket, mode)
}

/// How remote key sets are fetched and refreshed, and how an issuer's
/// unknown kids and staleness are handled.
fn key_refresh(c: &mut Check, raw: &RawConfig) -> (RemoteSettings, KeyRefresh) {
    // At least 1 s, at most 30 days (a longer one would be a typo, and must
    // not overflow a timer).
    let refresh = |c: &mut Check, s: &Setting, v: Option<&str>| {
        let d = c.at_least_1s(s, v);
        if d > MAX_REFRESH {
            c.problem(s, format_args!("{d:?} is above the maximum of 30 days"));
        }
        d.min(MAX_REFRESH)
    };
    let refresh_interval = refresh(c, &s::refresh_interval, raw.refresh_interval.as_deref());
    let refresh_min = refresh(c, &s::refresh_min, raw.refresh_min.as_deref());
    let refresh_max = refresh(c, &s::refresh_max, raw.refresh_max.as_deref());
    let fetch_timeout = refresh(c, &s::fetch_timeout, raw.fetch_timeout.as_deref());
    if refresh_min > refresh_max {
        c.problems.push(format!(
            "refresh_min ({refresh_min:?}) is above refresh_max ({refresh_max:?})"
        ));
    }
    let max_stale =
        Some(c.whole_seconds(&s::max_stale, raw.max_stale.as_deref())).filter(|d| !d.is_zero());
    if let Some(stale) = max_stale
        && stale < refresh_min * 2
    {
        c.problem(
            &s::max_stale,
            format_args!(
                "{stale:?} is below twice refresh_min ({refresh_min:?}): a healthy issuer could not be refreshed in time"
            ),
        );
    }
    let remote = RemoteSettings {
        refresh_interval,
        refresh_min,
        refresh_max,
        fetch_timeout,
        max_bytes: c.number(
            &s::max_jwks_bytes,
            raw.max_jwks_bytes.as_deref(),
            (1024, 64 * 1024 * 1024),
        ),
        max_stale,
    };
    let cooldown = refresh(
        c,
        &s::unknown_kid_cooldown,
        raw.unknown_kid_cooldown.as_deref(),
    );
    let wait = c.duration(&s::unknown_kid_wait, raw.unknown_kid_wait.as_deref());
    if wait > Duration::from_secs(60) {
        c.problem(
            &s::unknown_kid_wait,
            format_args!("{wait:?} is above the maximum of 60s"),
        );
    }
    let refresh = KeyRefresh {
        unknown_kid: (cooldown, wait),
        max_stale,
    };
    (remote, refresh)
}

/// The Redis URLs of the revocation store, each checked by the client.
fn redis_urls(c: &mut Check, raw: &RawConfig) -> Vec<String> {
    let redis: Vec<String> = raw.redis.clone().unwrap_or_default();
    for url in &redis {
        if let Err(e) = redis::Client::open(url.as_str()) {
            c.problem(&s::redis, format_args!("{url:?}: {e}"));
        }
    }
    redis
}

/// The verifier's settings: its issuers, the verified-result cache, the
/// verification budget and the route policies.
fn cache(
    c: &mut Check,
    raw: &RawConfig,
    issuers: Vec<crate::verifier::IssuerConfig>,
    max_verifying: usize,
    routes: Vec<crate::route::Route>,
) -> VerifierConfig {
    // The LRU preallocates its table: bound what one setting can reserve.
    let cache_entries = c.number(
        &s::cache_entries,
        raw.cache_entries.as_deref(),
        (0, 10_000_000),
    );
    let cache_max_ttl = c.whole_seconds(&s::cache_max_ttl, raw.cache_max_ttl.as_deref());
    if cache_max_ttl.is_zero() {
        c.problem(
            &s::cache_max_ttl,
            "must be at least 1s (use cache_entries = 0 to disable the cache)",
        );
    }
    VerifierConfig {
        issuers,
        cache_entries,
        cache_max_ttl: cache_max_ttl.as_secs(),
        max_verifying,
        routes,
        bind: crate::bind::BindConfig::default(),
        jwe: Vec::new(),
    }
}

/// The native socket's connection bounds.
struct Connections {
    max_connections: usize,
    max_in_flight: usize,
    max_frame_bytes: usize,
    max_verifying: usize,
    idle_timeout: Duration,
    write_timeout: Duration,
}

fn connections(c: &mut Check, raw: &RawConfig, max_token_bytes: usize) -> Connections {
    let max_connections = c.number(
        &s::max_connections,
        raw.max_connections.as_deref(),
        (1, 1_000_000),
    );
    let max_in_flight = c.number(
        &s::max_in_flight,
        raw.max_in_flight.as_deref(),
        (1, 1_000_000),
    );
    let max_frame_bytes = c.number(
        &s::max_frame_bytes,
        raw.max_frame_bytes.as_deref(),
        (1024, 16 * 1024 * 1024),
    );
    if max_frame_bytes < max_token_bytes + 256 + crate::protocol::HEADER_LEN {
        c.problem(
            &s::max_frame_bytes,
            format_args!(
                "{max_frame_bytes} cannot carry a token of max_token_bytes ({max_token_bytes}) with a selector"
            ),
        );
    }
    Connections {
        max_connections,
        max_in_flight,
        max_frame_bytes,
        max_verifying: c.number(
            &s::max_verifying,
            raw.max_verifying.as_deref(),
            (1, 1_000_000),
        ),
        idle_timeout: c.at_least_1s(&s::idle_timeout, raw.idle_timeout.as_deref()),
        write_timeout: c.at_least_1s(&s::write_timeout, raw.write_timeout.as_deref()),
    }
}

/// Worker threads and the shutdown grace period.
fn process(c: &mut Check, raw: &RawConfig) -> (usize, Duration) {
    let threads = c.number(&s::threads, raw.threads.as_deref(), (0, 1024));
    let grace = c.duration(&s::shutdown_grace, raw.shutdown_grace.as_deref());
    (threads, grace)
}

/// The log filter, and whether lines are JSON.
fn logging(c: &mut Check, raw: &RawConfig) -> (String, bool) {
    let log = Check::text(&s::log, raw.log.as_deref()).to_owned();
    if let Err(e) = tracing_filter_check(&log) {
        c.problem(&s::log, e);
    }
    let json = c.choice(
        &s::log_format,
        raw.log_format.as_deref(),
        ["text", "json"],
        "neither text nor json",
    );
    (log, json)
}

/// The admin listener's address, if any.
fn admin_addr(c: &mut Check, raw: &RawConfig) -> Option<SocketAddr> {
    match raw.admin_addr.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => match v.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                c.problem(
                    &s::admin_addr,
                    format_args!("{v:?} is not an IP address and port (e.g. 0.0.0.0:9090)"),
                );
                None
            }
        },
    }
}

/// The listeners' bounds (see [`ListenLimits`]).
fn listen_limits(c: &mut Check, raw: &RawConfig, max_token_bytes: usize) -> ListenLimits {
    let grpc_max_message_bytes = c.number(
        &s::grpc_max_message_bytes,
        raw.grpc_max_message_bytes.as_deref(),
        (4096, 16 * 1024 * 1024),
    );
    if grpc_max_message_bytes < max_token_bytes + 1024 {
        c.problem(
            &s::grpc_max_message_bytes,
            format_args!(
                "{grpc_max_message_bytes} cannot carry a token of max_token_bytes ({max_token_bytes}) with its headers"
            ),
        );
    }
    let grpc_max_buffered_bytes = c.number(
        &s::grpc_max_buffered_bytes,
        raw.grpc_max_buffered_bytes.as_deref(),
        (64 * 1024, 1024 * 1024 * 1024),
    );
    if grpc_max_buffered_bytes < grpc_max_message_bytes {
        c.problem(
            &s::grpc_max_buffered_bytes,
            format_args!(
                "{grpc_max_buffered_bytes} is below grpc_max_message_bytes ({grpc_max_message_bytes})"
            ),
        );
    }
    let timeout = |c: &mut Check, s: &Setting, v: Option<&str>| {
        let d = c.at_least_1s(s, v);
        if d > Duration::from_secs(300) {
            c.problem(s, format_args!("{d:?} is above the maximum of 5m"));
        }
        d
    };
    let socket_group = match raw.socket_group.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(g) => match crate::server::group_id(g) {
            Ok(gid) => Some(gid),
            Err(e) => {
                c.problem(&s::socket_group, e);
                None
            }
        },
    };
    let grpc_max_streams = c.number(
        &s::grpc_max_streams,
        raw.grpc_max_streams.as_deref(),
        (1, 10_000),
    );
    ListenLimits {
        grpc_max_message_bytes,
        grpc_max_streams: u32::try_from(grpc_max_streams).expect("at most 10000: fits a u32"),
        grpc_max_buffered_bytes,
        grpc_body_timeout: timeout(c, &s::grpc_body_timeout, raw.grpc_body_timeout.as_deref()),
        max_header_bytes: c.number(
            &s::max_header_bytes,
            raw.max_header_bytes.as_deref(),
            (8192, 1024 * 1024),
        ),
        header_timeout: timeout(c, &s::header_timeout, raw.header_timeout.as_deref()),
        admin_max_connections: c.number(
            &s::admin_max_connections,
            raw.admin_max_connections.as_deref(),
            (1, 10_000),
        ),
        socket_group,
        ready_requires_revocation: c.flag(
            &s::ready_requires_revocation,
            raw.ready_requires_revocation.as_deref(),
        ),
    }
}

/// Validates a tracing filter without the subscriber crate (the library
/// does not depend on it): directives are `target=level` or `level`.
fn tracing_filter_check(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit('=').next().unwrap_or(directive);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not a log filter (e.g. info, or jwtd=debug)"
            ));
        }
    }
    Ok(())
}
