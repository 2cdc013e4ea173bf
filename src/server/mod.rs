//! Listeners: the native-protocol Unix socket ([`native`]) and, beside it,
//! the proxy fronts ([`http`] for nginx and Envoy HTTP mode, [`grpc`] for
//! Envoy gRPC mode), thin adapters over the same [`Verifier`] that share
//! one decision ([`authz`]) and one listener type ([`listen`]: a Unix
//! socket or a TCP address).
//!
//! This module owns socket hygiene (stale-socket replacement, permissions
//! and group, removal on exit), the accept loop with its connection limit,
//! the file-descriptor budget ([`reserve_descriptors`]), and graceful
//! shutdown. [`run`] takes its shutdown trigger as a future, as mini-redis
//! does, so tests drive it without signals.
//!
//! # Shutdown
//!
//! When `shutdown` resolves (to the grace period): stop accepting, tell every
//! connection to drain (answer everything already sent, close once the client
//! has been quiet briefly with nothing in flight), wait for all of them up to
//! the grace period, then drop what is left.

pub mod admin;
pub mod authz;
pub mod grpc;
pub mod http;
pub mod listen;
pub mod native;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use crate::verifier::Verifier;

/// Settings of the native listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Maximum concurrent connections; further clients wait in the backlog.
    pub max_connections: usize,
    /// Maximum unanswered requests per connection before reading pauses.
    pub max_in_flight: usize,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// A connection with nothing in flight is closed after this long without
    /// a request.
    pub idle_timeout: Duration,
    /// A reply write that makes no progress for this long (the client stopped
    /// reading) closes the connection.
    pub write_timeout: Duration,
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Something is already listening there: never steal a live socket.
    #[error("{0}: another process is listening on this socket")]
    InUse(PathBuf),
    /// The path exists and is not a socket: never delete a regular file.
    #[error("{0}: exists and is not a socket")]
    NotASocket(PathBuf),
    /// Any other I/O problem.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The socket file a daemon created, identified by device and inode so it is
/// removed only while it is still ours: a successor that replaced it during
/// our drain keeps its own.
#[derive(Debug, Clone)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the file if it is still the one we created.
    pub fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(error = %e, "could not remove the socket file");
                }
            }
            Ok(_) => tracing::info!("socket file was replaced by another process; leaving it"),
            Err(_) => {}
        }
    }
}

/// Binds a Unix socket at `path` with permissions `mode`. A stale socket file
/// (nothing accepts on it) is replaced; a live one is an error.
///
/// # Errors
///
/// See [`BindError`].
pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile), BindError> {
    bind_with_group(path, mode, None)
}

/// [`bind`], giving the socket file the group `group` (`socket_group`)
/// before anyone can connect: with mode 0660, members of that group (e.g.
/// nginx's worker user) may connect, and nobody else.
///
/// # Errors
///
/// See [`BindError`]; a group the process may not give (it is neither root
/// nor a member) is an [`BindError::Io`] naming the gid.
pub fn bind_with_group(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<(UnixListener, SocketFile), BindError> {
    use std::os::unix::fs::MetadataExt;
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket(path.to_owned()));
        }
        Ok(meta) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Remove only the stale file we probed: if another daemon
                // replaced it meanwhile, its socket is not ours to delete.
                let still_stale = std::fs::symlink_metadata(path)
                    .is_ok_and(|now| now.ino() == meta.ino() && now.dev() == meta.dev());
                if still_stale {
                    tracing::info!(path = %path.display(), "replacing stale socket file");
                    std::fs::remove_file(path).map_err(io_err)?;
                }
            }
            Err(e) => return Err(io_err(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // Bind inside a private (0700) directory next to the target, set the
    // mode, then publish with link(2): nobody can connect while the socket
    // still has the umask's permissions, and unlike rename(2) a link fails
    // if the path exists, so a daemon that started at the same moment is
    // never silently replaced. The staging name is random and short (a
    // socket path is limited to 107 bytes), and only a directory this call
    // created is ever removed.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = loop {
        let mut r = [0u8; 4];
        aws_lc_rs::rand::fill(&mut r).map_err(|_| io_err(io::Error::other("no randomness")))?;
        let dir = parent.join(format!(".jwtd{:08x}", u32::from_be_bytes(r)));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(e)),
        }
    };
    let staged = staging.join("s");
    let published = (|| {
        let listener = UnixListener::bind(&staged)?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&staged, None, Some(gid)).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot give the socket group {gid}: {e}"))
            })?;
        }
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        let meta = std::fs::symlink_metadata(&staged)?;
        std::fs::hard_link(&staged, path)?;
        Ok((listener, meta))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    let (listener, meta) = published.map_err(|e: io::Error| match e.kind() {
        io::ErrorKind::AlreadyExists => BindError::InUse(path.to_owned()),
        _ => io_err(e),
    })?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((listener, file))
}

/// Resolves `socket_group`: a number is a gid, taken as is (in containers
/// the gid often has no name, e.g. Kubernetes' `fsGroup`); anything else is
/// a group name, looked up through the system's group database (NSS).
///
/// # Errors
///
/// An unknown group name, or a failed lookup.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name =
        std::ffi::CString::new(group).map_err(|_| format!("{group:?} is not a group name"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `grp`, `buf` and `found` outlive the call, `buf.len()` is
        // its real size, and `name` is NUL-terminated; getgrnam_r is the
        // thread-safe form and writes only into them.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => {
                return Err(format!(
                    "no group named {group:?} (give a group name this system knows, or a numeric gid)"
                ));
            }
            0 => return Ok(grp.gr_gid),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => {
                return Err(format!(
                    "looking up group {group:?}: {}",
                    io::Error::from_raw_os_error(e)
                ));
            }
        }
    }
}

/// Descriptors kept beside the connection limits for everything else:
/// listeners, the runtime's epoll and wakers, Redis and JWKS connections,
/// watched key files, log output, and connections being refused.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// What the descriptor budget came to (see [`reserve_descriptors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    /// The soft `RLIMIT_NOFILE` now in force.
    pub limit: u64,
    /// What the configured limits may use at once.
    pub needed: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the usual soft limit,
/// 1024, is less than one front's default `max_connections` plus the rest),
/// then compares it with what the listeners may hold at once: each listed
/// connection limit plus [`RESERVED_DESCRIPTORS`]. The caller warns when
/// `needed > limit`: past it, an `accept` fails with `EMFILE` (the accept
/// loops back off and retry, they never spin) and so may a Redis or JWKS
/// connection.
///
/// # Errors
///
/// The limit could not be read.
pub fn reserve_descriptors(connection_limits: &[usize]) -> io::Result<Descriptors> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the call to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above; raising the soft limit up to the hard one needs
        // no privilege. On failure the old limit stays, and is reported.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let needed = connection_limits
        .iter()
        .map(|&n| n as u64)
        .sum::<u64>()
        .saturating_add(RESERVED_DESCRIPTORS);
    Ok(Descriptors {
        limit: lim.rlim_cur,
        needed,
    })
}

/// What [`run`] did when it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the grace period ended (closed abruptly).
    pub abandoned: usize,
}

/// Serves `listener` until `shutdown` resolves to a grace period, then
/// drains. Does not remove the socket file (the caller bound it).
pub async fn run(
    listener: UnixListener,
    verifier: Verifier,
    config: ServerConfig,
    shutdown: impl Future<Output = Duration>,
) -> Drained {
    let config = Arc::new(config);
    let (mut accepted, accepting) = listen::accept_all(
        vec![listen::Listener::Unix(listener)],
        config.max_connections,
        listen::WhenFull::Wait,
        Some((&verifier, crate::metrics::Front::Native)),
    );
    let mut connections = listen::Connections::new();
    tokio::pin!(shutdown);

    let grace = loop {
        let stream = tokio::select! {
            grace = &mut shutdown => break grace,
            stream = accepted.recv() => match stream {
                Some(stream) => stream,
                None => break Duration::ZERO, // The accept loop ended; defensive.
            },
        };
        // The native socket is Unix only.
        let Ok((stream, held)) = stream.into_unix() else {
            continue;
        };
        let (verifier, config, drain) = (verifier.clone(), config.clone(), connections.draining());
        connections.spawn(async move {
            native::serve(stream, verifier, &config, drain).await;
            drop(held);
        });
    };

    drop(accepting);
    // A connection accepted as shutdown came sits in the channel: close it
    // now rather than at the end of the grace.
    drop(accepted);
    tracing::info!(open = connections.len(), grace = ?grace, "shutting down: draining connections");
    let abandoned = connections.drain(grace).await;
    Drained { abandoned }
}
