//! `jwtd serve`: the daemon. Reads like a script: configuration (exit 64 on
//! any problem, all listed), tracing, runtime, bind, serve until a signal,
//! drain, remove the socket. A valid configuration that cannot start (a
//! socket or address that cannot be bound, a runtime or store that cannot
//! be set up) is a start-up failure: exit 69 (`super::EXIT_UNAVAILABLE`).
//!
//! Its flags are not declared here: they come from the one list of settings
//! (`jwtd::config::SETTINGS`), grouped by topic in `--help`, each showing
//! its `JWTD_*` variable and default.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Arg, ArgAction, ArgMatches};
use tokio::sync::watch;

use jwtd::config::{Config, KeySource, Kind, Origins, RawConfig, SETTINGS, Setting, Value};
use jwtd::jwks::source;
use jwtd::revocation::Revocation;
use jwtd::server::admin::{Admin, AdminSettings};
use jwtd::server::listen::Listener;
use jwtd::server::{self, ServerConfig};
use jwtd::verifier::Verifier;

use super::Failure;

/// Flags of `jwtd serve`: `--config`, and one flag per setting of the list
/// (`jwtd::config::SETTINGS`), which clap learns from [`setting_arg`].
/// jwtd reads `JWTD_*` variables itself (precedence, unknown names and
/// origins in problems are its own), so clap is never told about them: the
/// help names each flag's variable in its text.
#[derive(Debug, Default, Clone)]
pub struct Args {
    /// TOML configuration file.
    config: Option<String>,
    /// The settings given as flags.
    flags: RawConfig,
}

impl clap::Args for Args {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML configuration file (flags and JWTD_* variables override it)"),
        );
        // By topic (a stable sort keeps the list's order within one), so
        // that each heading of --help is one block.
        let mut settings: Vec<&'static Setting> = SETTINGS.iter().collect();
        settings.sort_by_key(|s| s.topic);
        settings
            .into_iter()
            .fold(cmd, |cmd, s| cmd.arg(setting_arg(s)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Args {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Args::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = matches.get_one::<String>("config") {
            self.config = Some(path.clone());
        }
        let given = RawConfig::read(|s| flag_value(matches, s));
        self.flags = given.or(std::mem::take(&mut self.flags));
        Ok(())
    }
}

/// The flag of setting `s`: its name, value, topic, and in its help the
/// default and the variable.
fn setting_arg(s: &'static Setting) -> Arg {
    let mut help = s.help();
    if let Some(default) = s.default.filter(|_| s.kind != Kind::Switch) {
        help.push_str(&format!(" [default: {default}]"));
    }
    help.push_str(&format!(" [env: {}]", s.env));
    let arg = Arg::new(s.key)
        .long(s.flag)
        .help(help)
        .help_heading(s.topic.heading());
    match s.kind {
        Kind::Switch => arg.action(ArgAction::SetTrue),
        Kind::Text => arg.value_name(s.value_name).action(ArgAction::Set),
        Kind::List | Kind::Pairs => arg
            .value_name(s.value_name)
            .action(ArgAction::Append)
            .value_delimiter(','),
    }
}

/// What the command line gives for setting `s`.
fn flag_value(matches: &ArgMatches, s: &Setting) -> Option<Value> {
    match s.kind {
        Kind::Switch => matches
            .get_flag(s.key)
            .then(|| Value::Text("true".to_owned())),
        Kind::Text => matches.get_one::<String>(s.key).cloned().map(Value::Text),
        Kind::List | Kind::Pairs => matches
            .get_many::<String>(s.key)
            .map(|items| Value::List(items.cloned().collect())),
    }
}

/// Gathers flags, environment and file, then validates. Every problem
/// names where the bad value came from (the flag, the `JWTD_*` variable,
/// or the file and line).
fn configure(args: &Args) -> Result<Config, Failure> {
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
    let env = RawConfig::from_env(|k| std::env::var(k).ok());
    let origins = Origins::new(
        &args.flags,
        &env,
        args.config
            .as_deref()
            .map(|path| (path, text.as_str(), &file)),
    );
    let raw = args.flags.clone().or(env).or(file);
    let result = Config::from_raw(raw);
    if let Err(more) = &result {
        problems.extend(more.iter().cloned());
    }
    match result {
        Ok(config) if problems.is_empty() => Ok(config),
        _ => Err(Failure::Config(
            problems.iter().map(|p| origins.locate(p)).collect(),
        )),
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let config = configure(&args)?;
    init_tracing(&config.log, config.log_json);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        runtime.worker_threads(config.threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot build the async runtime")
        .map_err(Failure::Startup)?;
    runtime.block_on(serve(config))
}

/// The daemon, once configured: start everything (a failure removes the
/// sockets already bound and is a start-up failure), serve until a signal,
/// drain, stop.
async fn serve(config: Config) -> Result<ExitCode, Failure> {
    let signals = install_signals();
    let mut listeners = bind_listeners(&config).await.map_err(Failure::Startup)?;
    let started = match start(&config, &listeners) {
        Ok(started) => started,
        Err(e) => {
            for file in &listeners.socket_files {
                file.remove();
            }
            return Err(Failure::Startup(e));
        }
    };
    tracing::info!(
        socket = %config.socket.display(),
        issuers = config.sources.len(),
        ready = started.verifier.ready(),
        cache_entries = config.verifier.cache_entries,
        "jwtd serving"
    );
    let grace = drain_on_signal(
        signals,
        config.shutdown_grace,
        started.admin.clone(),
        std::mem::take(&mut listeners.socket_files),
    );
    let fronts = spawn_fronts(&config, &mut listeners, &started.verifier, &grace);
    let server_config = ServerConfig {
        max_connections: config.max_connections,
        max_in_flight: config.max_in_flight,
        max_frame_bytes: config.max_frame_bytes,
        idle_timeout: config.idle_timeout,
        write_timeout: config.write_timeout,
    };
    let drained = server::run(
        listeners.native,
        started.verifier.clone(),
        server_config,
        drain_signal(grace),
    )
    .await;
    for task in fronts {
        let _ = task.await;
    }
    started.stop();
    if drained.abandoned > 0 {
        tracing::warn!(
            connections = drained.abandoned,
            "grace period over: closed busy connections"
        );
    }
    tracing::info!("jwtd stopped");
    Ok(ExitCode::SUCCESS)
}

/// Every listener of the data plane, bound.
struct Listeners {
    native: tokio::net::UnixListener,
    http: Vec<Listener>,
    grpc: Vec<Listener>,
    /// The Unix socket files created, removed when draining starts (or when
    /// start-up fails).
    socket_files: Vec<server::SocketFile>,
}

/// Binds the native socket and the fronts' sockets and addresses. On
/// failure the socket files bound so far are removed.
async fn bind_listeners(config: &Config) -> anyhow::Result<Listeners> {
    let group = config.listen.socket_group;
    let (native, socket_file) = server::bind_with_group(&config.socket, config.socket_mode, group)
        .context("cannot bind the socket")?;
    let mut socket_files = vec![socket_file];
    let fronts = &config.fronts;
    let mode = (config.socket_mode, group);
    let mut bind = async |name, path, addr| {
        let bound = bind_front(name, path, addr, mode, &mut socket_files).await;
        if bound.is_err() {
            for file in &socket_files {
                file.remove();
            }
        }
        bound
    };
    let http = bind("HTTP", fronts.http_socket.as_deref(), fronts.http_listen).await?;
    let grpc = bind("gRPC", fronts.grpc_socket.as_deref(), fronts.grpc_listen).await?;
    Ok(Listeners {
        native,
        http,
        grpc,
        socket_files,
    })
}

/// What runs beside the listeners: the verifier with its revocation store
/// and key sources, the admin listener and the heartbeat it watches.
struct Started {
    verifier: Verifier,
    admin: Admin,
    admin_listener: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
    heartbeat: tokio::task::JoinHandle<()>,
    sources: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the verifier, the admin listener and the key sources.
fn start(config: &Config, listeners: &Listeners) -> anyhow::Result<Started> {
    // The recorder first: every handle binds to the recorder installed
    // when it is created.
    let prometheus = match config.admin_addr {
        None => None,
        Some(_) => Some(
            jwtd::metrics::install()
                .map_err(|e| anyhow!(e))
                .context("cannot install the metrics recorder")?,
        ),
    };
    let verifier = Verifier::with_revocation(config.verifier.clone(), revocation_store(config)?);
    for (path, keys) in config.jwe_keys.iter().zip(&config.verifier.jwe) {
        for skipped in keys.skipped_messages() {
            tracing::warn!(path = %path.display(), "JWE decryption {skipped}");
        }
        tracing::info!(path = %path.display(), keys = keys.len(), "JWE decryption keys loaded");
        jwe_key_file_mode(path);
    }
    let admin = Admin::with_settings(
        verifier.clone(),
        prometheus,
        AdminSettings {
            max_connections: config.listen.admin_max_connections,
            ready_requires_revocation: config.listen.ready_requires_revocation,
        },
    );
    check_descriptors(
        config,
        !listeners.http.is_empty(),
        !listeners.grpc.is_empty(),
    );
    let admin_listener = match config.admin_addr {
        None => None,
        Some(addr) => {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let (bound, thread) = admin
                .spawn(addr, stop_rx)
                .with_context(|| format!("cannot listen on {addr} for the admin listener"))?;
            tracing::info!(addr = %bound, "admin listener serving /metrics, /livez, /readyz");
            Some((stop_tx, thread))
        }
    };
    let heartbeat = spawn_heartbeat(admin.clone());
    let sources = start_sources(config, &verifier)
        .context("cannot set up the HTTP client for remote key sets")?;
    Ok(Started {
        verifier,
        admin,
        admin_listener,
        heartbeat,
        sources,
    })
}

impl Started {
    /// Stops what runs beside the listeners, once they are drained.
    fn stop(self) {
        for task in self.sources {
            task.abort();
        }
        self.heartbeat.abort();
        if let Some((stop, thread)) = self.admin_listener {
            let _ = stop.send(());
            let _ = thread.join();
        }
        log_revocation_stats(&self.verifier);
    }
}

/// The revocation store: Redis when configured, else in memory.
fn revocation_store(config: &Config) -> anyhow::Result<Revocation> {
    if config.redis.is_empty() {
        return Ok(Revocation::memory(config.revocation.clone()));
    }
    let revocation = Revocation::redis(config.revocation.clone(), &config.redis).map_err(|e| {
        // The error may quote a URL: never its password.
        anyhow!(jwtd::revocation::scrub(&e.to_string(), &config.redis))
            .context("cannot set up the revocation store")
    })?;
    tracing::info!(redis = %jwtd::redact::urls(&config.redis), fail_open = config.revocation.fail_open, "revocation store: Redis");
    Ok(revocation)
}

/// The data plane's heartbeat, which /livez checks.
fn spawn_heartbeat(admin: Admin) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            admin.heartbeat();
        }
    })
}

/// On the first signal: not ready, socket files removed (the listeners are
/// closed then, so a successor can bind the paths while we finish), and
/// the grace period sent to every front. One signal drains every front.
fn drain_on_signal(
    signals: Signals,
    shutdown_grace: Duration,
    admin: Admin,
    socket_files: Vec<server::SocketFile>,
) -> watch::Receiver<Option<Duration>> {
    let (grace_tx, grace_rx) = watch::channel(None::<Duration>);
    tokio::spawn(async move {
        let grace = signal(signals, shutdown_grace).await;
        admin.set_draining();
        for file in &socket_files {
            file.remove();
        }
        let _ = grace_tx.send(Some(grace));
    });
    grace_rx
}

/// Starts the HTTP and gRPC fronts on their listeners, if any.
fn spawn_fronts(
    config: &Config,
    listeners: &mut Listeners,
    verifier: &Verifier,
    grace: &watch::Receiver<Option<Duration>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let fronts = &config.fronts;
    let (http, grpc) = (
        std::mem::take(&mut listeners.http),
        std::mem::take(&mut listeners.grpc),
    );
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
    let mut tasks = Vec::new();
    if fronts.authz.cnf_header
        && (!http.is_empty() || !grpc.is_empty())
        && config.verifier.bind.public_origin.is_none()
    {
        // cnf_header: some issuer accepts DPoP.
        tracing::warn!(
            "DPoP on a proxy front without public_origin: a proof's htu is checked against the host the client sent the proxy; serve only your own host names at the proxy (nginx server_name, Envoy virtual host domains) or set public_origin, or a proof made for another site passes here"
        );
    }
    if !http.is_empty() {
        tracing::info!(socket = %shown(fronts.http_socket.as_ref().map(|p| p.display())), listen = %shown(fronts.http_listen), "HTTP front serving");
        tasks.push(tokio::spawn(server::http::run(
            http,
            limits.clone(),
            verifier.clone(),
            fronts.authz.clone(),
            drain_signal(grace.clone()),
        )));
    }
    if !grpc.is_empty() {
        tracing::info!(socket = %shown(fronts.grpc_socket.as_ref().map(|p| p.display())), listen = %shown(fronts.grpc_listen), "gRPC front serving");
        tasks.push(tokio::spawn(server::grpc::run(
            grpc,
            limits,
            verifier.clone(),
            fronts.authz.clone(),
            drain_signal(grace.clone()),
        )));
    }
    tasks
}

/// An optional setting for a log line: its Display form, or `-` (never the
/// Debug form `Some(..)`).
fn shown<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Binds a front's Unix socket and TCP address (either may be absent); the
/// socket file goes into `files`.
async fn bind_front(
    name: &str,
    path: Option<&std::path::Path>,
    addr: Option<std::net::SocketAddr>,
    (mode, group): (u32, Option<u32>),
    files: &mut Vec<server::SocketFile>,
) -> anyhow::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    if let Some(path) = path {
        let (listener, file) = server::bind_with_group(path, mode, group)
            .with_context(|| format!("cannot bind the {name} socket"))?;
        listeners.push(Listener::Unix(listener));
        files.push(file);
    }
    if let Some(addr) = addr {
        let listener = Listener::tcp(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the {name} front"))?;
        listeners.push(listener);
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
    for (set, path) in config.jwe_keys.iter().enumerate() {
        let verifier = verifier.clone();
        tasks.push(tokio::spawn(source::watch_jwe_file(
            path.clone(),
            move |keys| verifier.set_jwe_keys(set, keys),
            source::FILE_POLL,
        )));
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

/// Warns when the JWE decryption key file can be read by others than its
/// owner: it holds private keys.
fn jwe_key_file_mode(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "the JWE decryption key file is readable by group or others: it holds private keys (chmod 0600 or 0400)"
            );
        }
    }
}
