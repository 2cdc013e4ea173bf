//! `jwtd serve`: the daemon. Reads like a script: configuration (exit 64 on
//! any problem, all listed), tracing, runtime, bind, serve until a signal,
//! drain, remove the socket.

use std::process::ExitCode;
use std::time::Duration;

use jwtd::config::{Config, EXIT_CONFIG, KeySource, Origins, RawConfig};
use jwtd::jwks::source;
use jwtd::revocation::Revocation;
use jwtd::server::admin::Admin;
use jwtd::server::listen::Listener;
use jwtd::server::{self, ServerConfig};
use jwtd::verifier::Verifier;

/// Flags of `jwtd serve`. Every flag also has a `JWTD_*` variable and a TOML
/// key; `src/config.rs` lists them all with defaults.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// TOML configuration file (flags and JWTD_* variables override it).
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Unix socket path [default: $XDG_RUNTIME_DIR/jwtd.sock or /tmp/jwtd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<String>,
    /// Socket file permissions, octal [default: 0660].
    #[arg(long, value_name = "MODE")]
    socket_mode: Option<String>,
    /// Trusted JWK set or PEM public key file, re-read when it changes.
    /// One key source (this, --jwks-url, --discovery, [[issuers]] in the
    /// config file, or --dev) is required.
    #[arg(long, value_name = "FILE")]
    jwks_file: Option<String>,
    /// Trusted JWK set URL, fetched in the background (https, or http to
    /// loopback).
    #[arg(long, value_name = "URL")]
    jwks_url: Option<String>,
    /// Issuer URL: its OIDC discovery document names the JWK set; tokens must
    /// carry this iss.
    #[arg(long, value_name = "ISSUER_URL")]
    discovery: Option<String>,
    /// Required issuer.
    #[arg(long, value_name = "S")]
    issuer: Option<String>,
    /// Accepted audience (repeatable); each is also a request selector.
    #[arg(long, value_name = "S")]
    audience: Vec<String>,
    /// Allowed algorithms, comma-separated [default: all].
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    algorithms: Option<Vec<String>>,
    /// Clock skew allowed on exp/nbf/iat [default: 30s; at most 5m].
    #[arg(long, value_name = "DURATION")]
    leeway: Option<String>,
    /// Claims required besides exp, comma-separated; the item -exp accepts
    /// tokens without exp (e.g. --require=sub,-exp) [default: exp only].
    #[arg(long, value_name = "CLAIM,...", value_delimiter = ',')]
    require: Option<Vec<String>>,
    /// Required header typ (e.g. at+jwt).
    #[arg(long, value_name = "T")]
    typ: Option<String>,
    /// Maximum token lifetime (exp - iat).
    #[arg(long, value_name = "DURATION")]
    max_lifetime: Option<String>,
    /// Maximum token size in bytes [default: 16384].
    #[arg(long, value_name = "BYTES")]
    max_token_bytes: Option<String>,
    /// Verified-result cache capacity in entries, 0 disables [default: 100000].
    #[arg(long, value_name = "N")]
    cache_entries: Option<String>,
    /// Longest a result stays cached [default: 10m].
    #[arg(long, value_name = "DURATION")]
    cache_max_ttl: Option<String>,
    /// Maximum concurrent connections [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Maximum unanswered requests per connection [default: 1024].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<String>,
    /// Maximum frame size in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_frame_bytes: Option<String>,
    /// Cache misses queued or in verification, all connections; beyond it
    /// requests are answered `overloaded` [default: 4096].
    #[arg(long, value_name = "N")]
    max_verifying: Option<String>,
    /// Close connections idle this long [default: 5m; at least 1s].
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Disconnect a client that reads no reply for this long [default: 30s].
    #[arg(long, value_name = "DURATION")]
    write_timeout: Option<String>,
    /// Time SIGTERM gives in-flight work [default: 10s].
    #[arg(long, value_name = "DURATION")]
    shutdown_grace: Option<String>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<String>,
    /// Log filter, e.g. info or jwtd=debug [default: info].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Log line format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Serve /metrics, /livez and /readyz on this TCP address, e.g.
    /// 0.0.0.0:9090; also turns metrics on [default: none].
    #[arg(long, value_name = "ADDR")]
    admin_addr: Option<String>,
    /// Refresh period of remote key sets without Cache-Control max-age
    /// [default: 5m].
    #[arg(long, value_name = "DURATION")]
    refresh_interval: Option<String>,
    /// Lower bound on a remote key set's max-age; cap of the retry backoff
    /// [default: 1m].
    #[arg(long, value_name = "DURATION")]
    refresh_min: Option<String>,
    /// Upper bound on a remote key set's max-age [default: 1d].
    #[arg(long, value_name = "DURATION")]
    refresh_max: Option<String>,
    /// Deadline of one key set fetch, body included [default: 5s].
    #[arg(long, value_name = "DURATION")]
    fetch_timeout: Option<String>,
    /// Largest key set or discovery document accepted [default: 262144].
    #[arg(long, value_name = "BYTES")]
    max_jwks_bytes: Option<String>,
    /// Least time between refreshes caused by unknown kids, per issuer
    /// [default: 30s].
    #[arg(long, value_name = "DURATION")]
    unknown_kid_cooldown: Option<String>,
    /// How long a request with an unknown kid waits for that refresh
    /// [default: 1s].
    #[arg(long, value_name = "DURATION")]
    unknown_kid_wait: Option<String>,
    /// Not ready once a remote key set has not been refreshed for this long;
    /// 0 = never [default: 0].
    #[arg(long, value_name = "DURATION")]
    max_stale: Option<String>,
    /// Revocation store: a redis:// URL, or several cluster nodes
    /// (repeatable or comma-separated) [default: in-memory].
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    redis: Vec<String>,
    /// When the revocation store cannot be asked: closed (could not decide)
    /// or open (not revoked) [default: closed].
    #[arg(long, value_name = "closed|open")]
    revocation_fail: Option<String>,
    /// Revocation key prefix [default: jwtd:].
    #[arg(long, value_name = "PREFIX")]
    revocation_prefix: Option<String>,
    /// How long a revocation batch waits for more lookups [default: 250us].
    #[arg(long, value_name = "DURATION")]
    revocation_window: Option<String>,
    /// Most tokens per revocation batch [default: 256].
    #[arg(long, value_name = "N")]
    revocation_batch: Option<String>,
    /// Deadline of one revocation batch [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    revocation_timeout: Option<String>,
    /// How long a "not revoked" answer is reused [default: 1s].
    #[arg(long, value_name = "DURATION")]
    revocation_cache_ttl: Option<String>,
    /// Serve the HTTP front (nginx auth_request, Envoy ext_authz HTTP mode)
    /// on this Unix socket [default: none].
    #[arg(long, value_name = "PATH")]
    http_socket: Option<String>,
    /// Also serve the HTTP front on this TCP address, e.g. 127.0.0.1:8081
    /// [default: none].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Serve the gRPC front (Envoy ext_authz gRPC mode) on this Unix socket
    /// [default: none].
    #[arg(long, value_name = "PATH")]
    grpc_socket: Option<String>,
    /// Also serve the gRPC front on this TCP address, e.g. 127.0.0.1:9191
    /// [default: none].
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
    /// Fronts: header holding the token; for `authorization` the Bearer
    /// scheme is required [default: authorization].
    #[arg(long, value_name = "NAME")]
    token_header: Option<String>,
    /// Fronts: cookie holding the token when the header is absent
    /// [default: none].
    #[arg(long, value_name = "NAME")]
    token_cookie: Option<String>,
    /// Fronts: query parameter holding the token (tokens in URLs get
    /// logged; off unless named) [default: none].
    #[arg(long, value_name = "NAME")]
    token_query: Option<String>,
    /// Fronts: claim headers for allowed requests, HEADER=CLAIM, repeatable
    /// or comma-separated; replaces the defaults [default:
    /// x-jwt-sub=sub,x-jwt-iss=iss,x-jwt-aud=aud,x-jwt-scope=scope].
    #[arg(
        long = "claim-header",
        value_name = "HEADER=CLAIM",
        value_delimiter = ','
    )]
    claim_headers: Vec<String>,
    /// Fronts: add the base64url payload as x-jwt-payload (true|false)
    /// [default: false].
    #[arg(long, value_name = "BOOL")]
    forward_payload: Option<String>,
    /// Fronts: add the reject reason as x-jwt-reason, for debugging
    /// (true|false) [default: false].
    #[arg(long, value_name = "BOOL")]
    debug_reason: Option<String>,
    /// Fronts: have the proxy remove the token header before the request
    /// goes upstream (true|false) [default: false].
    #[arg(long, value_name = "BOOL")]
    strip_token: Option<String>,
    /// HTTP front: prefix stripped from request paths before route matching
    /// (Envoy's path_prefix) [default: none].
    #[arg(long, value_name = "PREFIX")]
    http_path_prefix: Option<String>,
    /// Serve the embedded DEVELOPMENT key set (issuer https://jwtd.dev.invalid),
    /// whose private key is published in deploy/dev/: for trying jwtd out,
    /// never in production.
    #[arg(long)]
    dev: bool,
    /// Most keys a token without kid is tried against; beyond, it is refused
    /// unknown_key without a signature check [default: 4].
    #[arg(long, value_name = "N")]
    max_kidless_keys: Option<String>,
    /// gRPC front: largest CheckRequest message in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    grpc_max_message_bytes: Option<String>,
    /// gRPC front: concurrent streams per connection [default: 100].
    #[arg(long, value_name = "N")]
    grpc_max_streams: Option<String>,
    /// gRPC front: request bytes held at once over all connections
    /// [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    grpc_max_buffered_bytes: Option<String>,
    /// gRPC front: refuse a request message not complete after this long
    /// [default: 10s].
    #[arg(long, value_name = "DURATION")]
    grpc_body_timeout: Option<String>,
    /// HTTP front: largest request head in bytes; 431 beyond [default: 32768].
    #[arg(long, value_name = "BYTES")]
    max_header_bytes: Option<String>,
    /// HTTP front: close a connection whose request head is not complete
    /// this long after its first byte [default: 10s].
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// Admin listener: connections at once; beyond, closed at once
    /// [default: 64].
    #[arg(long, value_name = "N")]
    admin_max_connections: Option<String>,
    /// Group (name or gid) of every Unix socket jwtd creates [default: the
    /// process's group].
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// /readyz fails while the revocation store (Redis) cannot be reached
    /// (true|false) [default: false].
    #[arg(long, value_name = "BOOL")]
    ready_requires_revocation: Option<String>,
}

impl Args {
    fn raw(&self) -> RawConfig {
        RawConfig {
            socket: self.socket.clone(),
            socket_mode: self.socket_mode.clone(),
            jwks_file: self.jwks_file.clone(),
            jwks_url: self.jwks_url.clone(),
            discovery: self.discovery.clone(),
            issuer: self.issuer.clone(),
            audiences: (!self.audience.is_empty()).then(|| self.audience.clone()),
            algorithms: self.algorithms.clone(),
            leeway: self.leeway.clone(),
            required_claims: self.require.clone(),
            typ: self.typ.clone(),
            max_lifetime: self.max_lifetime.clone(),
            max_token_bytes: self.max_token_bytes.clone(),
            cache_entries: self.cache_entries.clone(),
            cache_max_ttl: self.cache_max_ttl.clone(),
            max_connections: self.max_connections.clone(),
            max_in_flight: self.max_in_flight.clone(),
            max_frame_bytes: self.max_frame_bytes.clone(),
            max_verifying: self.max_verifying.clone(),
            idle_timeout: self.idle_timeout.clone(),
            write_timeout: self.write_timeout.clone(),
            shutdown_grace: self.shutdown_grace.clone(),
            threads: self.threads.clone(),
            log: self.log.clone(),
            log_format: self.log_format.clone(),
            admin_addr: self.admin_addr.clone(),
            refresh_interval: self.refresh_interval.clone(),
            refresh_min: self.refresh_min.clone(),
            refresh_max: self.refresh_max.clone(),
            fetch_timeout: self.fetch_timeout.clone(),
            max_jwks_bytes: self.max_jwks_bytes.clone(),
            unknown_kid_cooldown: self.unknown_kid_cooldown.clone(),
            unknown_kid_wait: self.unknown_kid_wait.clone(),
            max_stale: self.max_stale.clone(),
            redis: (!self.redis.is_empty()).then(|| self.redis.clone()),
            revocation_fail: self.revocation_fail.clone(),
            revocation_prefix: self.revocation_prefix.clone(),
            revocation_window: self.revocation_window.clone(),
            revocation_batch: self.revocation_batch.clone(),
            revocation_timeout: self.revocation_timeout.clone(),
            revocation_cache_ttl: self.revocation_cache_ttl.clone(),
            http_socket: self.http_socket.clone(),
            http_listen: self.http_listen.clone(),
            grpc_socket: self.grpc_socket.clone(),
            grpc_listen: self.grpc_listen.clone(),
            token_header: self.token_header.clone(),
            token_cookie: self.token_cookie.clone(),
            token_query: self.token_query.clone(),
            claim_headers: (!self.claim_headers.is_empty()).then(|| self.claim_headers.clone()),
            forward_payload: self.forward_payload.clone(),
            debug_reason: self.debug_reason.clone(),
            strip_token: self.strip_token.clone(),
            http_path_prefix: self.http_path_prefix.clone(),
            issuers: None,
            routes: None,
            dev: self.dev.then(|| "true".to_owned()),
            max_kidless_keys: self.max_kidless_keys.clone(),
            grpc_max_message_bytes: self.grpc_max_message_bytes.clone(),
            grpc_max_streams: self.grpc_max_streams.clone(),
            grpc_max_buffered_bytes: self.grpc_max_buffered_bytes.clone(),
            grpc_body_timeout: self.grpc_body_timeout.clone(),
            max_header_bytes: self.max_header_bytes.clone(),
            header_timeout: self.header_timeout.clone(),
            admin_max_connections: self.admin_max_connections.clone(),
            socket_group: self.socket_group.clone(),
            ready_requires_revocation: self.ready_requires_revocation.clone(),
        }
    }
}

/// Gathers flags, environment and file, then validates; prints every
/// problem, each naming where the bad value came from (the flag, the
/// `JWTD_*` variable, or the file and line).
fn configure(args: &Args) -> Result<Config, ExitCode> {
    let mut problems = Vec::new();
    let mut text = String::new();
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => {
                text = t;
                RawConfig::from_toml(&text, &mut problems)
            }
            Err(e) => {
                problems.push(format!("--config {path}: {e}"));
                RawConfig::default()
            }
        },
        None => RawConfig::default(),
    };
    let vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("JWTD_"))
        .collect();
    problems.extend(jwtd::config::unknown_env(&vars));
    let flags = args.raw();
    let env = RawConfig::from_env(|k| std::env::var(k).ok());
    let origins = Origins::new(
        &flags,
        &env,
        args.config
            .as_deref()
            .map(|path| (path, text.as_str(), &file)),
    );
    let raw = flags.or(env).or(file);
    match Config::from_raw(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
    .map_err(|problems| {
        for p in &problems {
            eprintln!("jwtd: config: {}", origins.locate(p));
        }
        eprintln!(
            "jwtd: {} configuration problem(s); not starting",
            problems.len()
        );
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match configure(&args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_tracing(&config.log, config.log_json);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        runtime.worker_threads(config.threads);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let signals = install_signals();
    let group = config.listen.socket_group;
    let (listener, socket_file) =
        match server::bind_with_group(&config.socket, config.socket_mode, group) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind socket");
                return Ok(ExitCode::FAILURE);
            }
        };
    let mut socket_files = vec![socket_file];
    let fronts = &config.fronts;
    let http_listeners = match bind_front(
        "HTTP",
        fronts.http_socket.as_deref(),
        fronts.http_listen,
        (config.socket_mode, group),
        &mut socket_files,
    )
    .await
    {
        Ok(l) => l,
        Err(()) => return Ok(ExitCode::FAILURE),
    };
    let grpc_listeners = match bind_front(
        "gRPC",
        fronts.grpc_socket.as_deref(),
        fronts.grpc_listen,
        (config.socket_mode, group),
        &mut socket_files,
    )
    .await
    {
        Ok(l) => l,
        Err(()) => return Ok(ExitCode::FAILURE),
    };
    // The recorder first: every handle binds to the recorder installed
    // when it is created.
    let prometheus = match config.admin_addr {
        None => None,
        Some(_) => match jwtd::metrics::install() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot install the metrics recorder");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let revocation = if config.redis.is_empty() {
        Revocation::memory(config.revocation.clone())
    } else {
        match Revocation::redis(config.revocation.clone(), &config.redis) {
            Ok(r) => {
                tracing::info!(redis = %jwtd::redact::urls(&config.redis), fail_open = config.revocation.fail_open, "revocation store: Redis");
                r
            }
            Err(e) => {
                let error = jwtd::revocation::scrub(&e.to_string(), &config.redis);
                tracing::error!(%error, "cannot set up the revocation store");
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    let verifier = Verifier::with_revocation(config.verifier.clone(), revocation);
    let admin = Admin::with_settings(
        verifier.clone(),
        prometheus,
        jwtd::server::admin::AdminSettings {
            max_connections: config.listen.admin_max_connections,
            ready_requires_revocation: config.listen.ready_requires_revocation,
        },
    );
    check_descriptors(
        &config,
        !http_listeners.is_empty(),
        !grpc_listeners.is_empty(),
    );
    let (admin_stop, admin_thread) = match config.admin_addr {
        None => (None, None),
        Some(addr) => {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            match admin.spawn(addr, stop_rx) {
                Ok((bound, thread)) => {
                    tracing::info!(addr = %bound, "admin listener serving /metrics, /livez, /readyz");
                    (Some(stop_tx), Some(thread))
                }
                Err(e) => {
                    tracing::error!(error = %e, %addr, "cannot listen for the admin listener");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    // The data plane's heartbeat, which /livez checks.
    let heartbeat = {
        let admin = admin.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                admin.heartbeat();
            }
        })
    };
    let sources = match start_sources(&config, &verifier) {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the HTTP client for remote key sets");
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::info!(
        socket = %config.socket.display(),
        issuers = config.sources.len(),
        ready = verifier.ready(),
        cache_entries = config.verifier.cache_entries,
        "jwtd serving"
    );
    let server_config = ServerConfig {
        max_connections: config.max_connections,
        max_in_flight: config.max_in_flight,
        max_frame_bytes: config.max_frame_bytes,
        idle_timeout: config.idle_timeout,
        write_timeout: config.write_timeout,
    };
    // The socket files go when draining starts (the listeners are closed
    // then), so a successor can bind the paths while we finish. One signal
    // drains every front.
    let (grace_tx, grace_rx) = tokio::sync::watch::channel(None::<Duration>);
    let shutdown_grace = config.shutdown_grace;
    let draining = admin.clone();
    tokio::spawn(async move {
        let grace = signal(signals, shutdown_grace).await;
        draining.set_draining();
        for file in &socket_files {
            file.remove();
        }
        let _ = grace_tx.send(Some(grace));
    });
    let mut front_tasks = Vec::new();
    let limits = server::listen::Limits {
        max_connections: config.max_connections,
        max_streams: config.listen.grpc_max_streams,
        idle_timeout: config.idle_timeout,
        max_header_bytes: config.listen.max_header_bytes,
        header_timeout: config.listen.header_timeout,
        max_message_bytes: config.listen.grpc_max_message_bytes,
        max_buffered_bytes: config.listen.grpc_max_buffered_bytes,
        body_timeout: config.listen.grpc_body_timeout,
    };
    if !http_listeners.is_empty() {
        tracing::info!(socket = %shown(fronts.http_socket.as_ref().map(|p| p.display())), listen = %shown(fronts.http_listen), "HTTP front serving");
        front_tasks.push(tokio::spawn(server::http::run(
            http_listeners,
            limits.clone(),
            verifier.clone(),
            fronts.authz.clone(),
            drain_signal(grace_rx.clone()),
        )));
    }
    if !grpc_listeners.is_empty() {
        tracing::info!(socket = %shown(fronts.grpc_socket.as_ref().map(|p| p.display())), listen = %shown(fronts.grpc_listen), "gRPC front serving");
        front_tasks.push(tokio::spawn(server::grpc::run(
            grpc_listeners,
            limits,
            verifier.clone(),
            fronts.authz.clone(),
            drain_signal(grace_rx.clone()),
        )));
    }
    let verifier_stats = verifier.clone();
    let drained = server::run(listener, verifier, server_config, drain_signal(grace_rx)).await;
    for task in front_tasks {
        let _ = task.await;
    }
    for task in sources {
        task.abort();
    }
    heartbeat.abort();
    if let Some(stop) = admin_stop {
        let _ = stop.send(());
    }
    if let Some(thread) = admin_thread {
        let _ = thread.join();
    }
    log_revocation_stats(&verifier_stats);
    if drained.abandoned > 0 {
        tracing::warn!(
            connections = drained.abandoned,
            "grace period over: closed busy connections"
        );
    }
    tracing::info!("jwtd stopped");
    Ok(ExitCode::SUCCESS)
}

/// An optional setting for a log line: its Display form, or `-` (never the
/// Debug form `Some(..)`).
fn shown<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Binds a front's Unix socket and TCP address (either may be absent). On
/// failure, logs it and removes the socket files bound so far.
async fn bind_front(
    name: &str,
    path: Option<&std::path::Path>,
    addr: Option<std::net::SocketAddr>,
    (mode, group): (u32, Option<u32>),
    files: &mut Vec<server::SocketFile>,
) -> Result<Vec<Listener>, ()> {
    let mut listeners = Vec::new();
    let failed = |files: &Vec<server::SocketFile>| {
        for f in files {
            f.remove();
        }
        Err(())
    };
    if let Some(path) = path {
        match server::bind_with_group(path, mode, group) {
            Ok((listener, file)) => {
                listeners.push(Listener::Unix(listener));
                files.push(file);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot bind the {name} socket");
                return failed(files);
            }
        }
    }
    if let Some(addr) = addr {
        match Listener::tcp(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                tracing::error!(error = %e, %addr, "cannot listen for the {name} front");
                return failed(files);
            }
        }
    }
    Ok(listeners)
}

/// Raises the descriptor limit and warns when the listeners' connection
/// limits (plus a reserve) do not fit in it.
fn check_descriptors(config: &Config, http: bool, grpc: bool) {
    let mut limits = vec![config.max_connections];
    limits.extend(http.then_some(config.max_connections));
    limits.extend(grpc.then_some(config.max_connections));
    limits.extend(
        config
            .admin_addr
            .map(|_| config.listen.admin_max_connections),
    );
    match server::reserve_descriptors(&limits) {
        Ok(d) if d.needed > d.limit => tracing::warn!(
            nofile = d.limit,
            needed = d.needed,
            "the file descriptor limit (nofile) is below what the connection limits may use ({} for connections + {} reserved): raise nofile to at least {} or lower max_connections, else accepts fail with EMFILE under load",
            d.needed - server::RESERVED_DESCRIPTORS,
            server::RESERVED_DESCRIPTORS,
            d.needed
        ),
        Ok(d) => tracing::debug!(nofile = d.limit, needed = d.needed, "file descriptors"),
        Err(e) => tracing::warn!(error = %e, "cannot read the file descriptor limit"),
    }
}

/// Publishes the key sets loaded during validation and starts one task per
/// source that changes: file watchers and remote fetchers.
fn start_sources(
    config: &Config,
    verifier: &Verifier,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let mut client = None;
    for (n, issuer) in config.sources.iter().enumerate() {
        let name = config.verifier.issuers[n]
            .policy
            .issuer
            .as_deref()
            .unwrap_or("(any)")
            .to_owned();
        if let Some(keys) = &issuer.keys {
            jwtd::jwks::source::log_skipped(keys);
            verifier.set_keys(n, keys.clone());
        }
        match &issuer.source {
            KeySource::EmbeddedDev => tracing::warn!(
                issuer = jwtd::config::DEV_ISSUER,
                "--dev: trusting the embedded DEVELOPMENT key set (deploy/dev/jwks.json), whose private key is published; never use this in production"
            ),
            KeySource::File(path) => {
                tracing::info!(issuer = %name, path = %path.display(), "key set loaded; watching the file");
                tasks.push(tokio::spawn(source::watch_file(
                    path.clone(),
                    verifier.key_sink(n),
                    source::FILE_POLL,
                )));
            }
            KeySource::Remote(endpoint) => {
                tracing::info!(issuer = %name, url = %jwtd::redact::url(endpoint.url().as_str()), "fetching the key set");
                let client = match &client {
                    Some(c) => Clone::clone(c),
                    None => client
                        .insert(source::remote::client(&config.remote)?)
                        .clone(),
                };
                tasks.push(tokio::spawn(source::watch_remote(
                    endpoint.clone(),
                    config.remote.clone(),
                    client,
                    verifier.key_sink(n),
                )));
            }
        }
    }
    Ok(tasks)
}

/// One line of revocation counters at exit (what the batcher achieved).
fn log_revocation_stats(verifier: &Verifier) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = verifier.revocation().stats();
    let batches = s.batches.load(Relaxed);
    if batches == 0 && s.short_circuited.load(Relaxed) == 0 {
        return;
    }
    let keys = s.keys.load(Relaxed);
    tracing::info!(
        lookups = s.looked_up.load(Relaxed),
        batches,
        keys,
        mean_batch_keys = format!("{:.1}", keys as f64 / batches.max(1) as f64),
        max_batch_keys = s.max_batch.load(Relaxed),
        failed_batches = s.failed_batches.load(Relaxed),
        short_circuited = s.short_circuited.load(Relaxed),
        failed_open = s.failed_open.load(Relaxed),
        failed_closed = s.failed_closed.load(Relaxed),
        pushed = s.pushed.load(Relaxed),
        "revocation counters"
    );
}

/// Resolves to the grace period once shutdown starts.
async fn drain_signal(mut grace: tokio::sync::watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(g) = *grace.borrow_and_update() {
            return g;
        }
        if grace.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// SIGTERM and SIGINT streams, installed before the socket is bound: a
/// signal that arrives once clients can connect must drain, never kill
/// (tokio registers the handler when the stream is made, not when polled).
type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

fn install_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            None
        }
    }
}

/// Resolves on SIGTERM (graceful: the configured grace) or SIGINT (fast: at
/// most one second).
async fn signal(signals: Signals, grace: Duration) -> Duration {
    let Some((mut term, mut int)) = signals else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: draining");
            grace
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: draining fast");
            grace.min(Duration::from_secs(1))
        }
    }
}

fn init_tracing(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, and never with NO_COLOR
    // set and not empty (https://no-color.org): escape codes in a log file or a log shipper's
    // input are noise at best, and confuse parsers.
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
