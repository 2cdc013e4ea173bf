//! One listener type for the proxy fronts: a Unix socket (the default, and
//! what the deploy examples use) or a TCP address (for proxies that cannot
//! reach a socket file, e.g. another container without a shared volume).
//! The native protocol stays Unix-only: it is for the app in the same pod.
//!
//! # Bounds
//!
//! A local client must not be able to take the sidecar down, so everything
//! a connection can make jwtd hold is bounded ([`Limits`]):
//!
//! - **Connections**: `max_connections` per front; further clients wait in
//!   the kernel backlog (no descriptor is spent on them).
//! - **HTTP request heads**: at most `max_header_bytes` buffered (beyond:
//!   431), and complete within `header_timeout` of their first byte; an
//!   idle keep-alive connection is closed after `idle_timeout`. Worst case:
//!   `max_connections` x `max_header_bytes`.
//! - **gRPC messages**: a `CheckRequest` announcing more than
//!   `grpc_max_message_bytes` is refused on its 5-byte prefix, before any
//!   of it is buffered; at most `grpc_max_streams` streams per connection;
//!   request bytes held over the whole front at most
//!   `grpc_max_buffered_bytes` (beyond: `RESOURCE_EXHAUSTED` at once); a
//!   message not complete within `grpc_body_timeout` is refused
//!   (`DEADLINE_EXCEEDED`) and its bytes freed.
//!
//! Accept errors (`EMFILE` when descriptors run out) back off for 50 ms
//! and retry: the loop never spins, and serves again once descriptors free.
//!
//! # One accept loop, one drain
//!
//! Every listener of jwtd (native socket, HTTP, gRPC, admin) accepts
//! through [`accept_all`] and every front that owns its connection tasks
//! (native, HTTP, admin) keeps them in [`Connections`], which drains them
//! on shutdown: tell each to finish (a `watch` flag), wait up to the grace
//! period, abandon the rest. gRPC drains through tonic's own graceful
//! shutdown (HTTP/2 GOAWAY).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::metrics::{Front, OpenConnection};
use crate::verifier::Verifier;

/// Limits of a proxy front (`max_connections`, `max_in_flight` and
/// `idle_timeout`, as for the native socket).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, over all of the front's listeners.
    pub max_connections: usize,
    /// gRPC: concurrent streams (checks) per connection.
    pub max_streams: u32,
    /// HTTP: a connection that sends no complete request headers for this
    /// long is closed (idle keep-alive included).
    pub idle_timeout: Duration,
    /// HTTP: largest request head (request line and headers) buffered;
    /// beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// HTTP: a request head must be complete this long after its first
    /// byte arrived (slow-header clients), whatever `idle_timeout` is.
    pub header_timeout: Duration,
    /// gRPC: largest `CheckRequest` message.
    pub max_message_bytes: usize,
    /// gRPC: request bytes received and not yet decided, over the front.
    pub max_buffered_bytes: usize,
    /// gRPC: a request message must be complete this long after its
    /// stream opened.
    pub body_timeout: Duration,
}

/// A bound front listener.
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket (bound with [`super::bind`]).
    Unix(UnixListener),
    /// A TCP address.
    Tcp(TcpListener),
}

/// An accepted connection, holding its connection slot until dropped.
#[derive(Debug)]
pub struct Stream {
    io: Io,
    held: Held,
}

/// What an accepted connection holds while open: its connection slot, and
/// its count in `jwtd_connections`.
#[derive(Debug, Default)]
pub struct Held {
    _slot: Option<OwnedSemaphorePermit>,
    _open: Option<OpenConnection>,
}

impl Stream {
    /// The Unix stream and what it holds (keep both alive together), or
    /// the stream back if it is TCP.
    pub fn into_unix(self) -> Result<(UnixStream, Held), Stream> {
        match self.io {
            Io::Unix(s) => Ok((s, self.held)),
            io => Err(Stream {
                io,
                held: self.held,
            }),
        }
    }
}

/// What an accept loop does with a client beyond `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Leave it in the kernel backlog until a slot frees (the fronts: a
    /// burst waits instead of failing).
    Wait,
    /// Accept and close it at once, warning once a minute (the admin
    /// listener: a scraper or prober must never queue behind a flood, and
    /// a backlog full of them would hide the daemon's health).
    Refuse,
}

#[derive(Debug)]
enum Io {
    Unix(UnixStream),
    /// Nagle off: answers are small and latency-bound.
    Tcp(TcpStream),
}

/// Accepts on every listener, at most `max_connections` open at once (over
/// all of them; beyond it as `full` says), and hands the connections over
/// the returned channel. The accept loops stop, closing the listeners, when
/// the [`Accepting`] guard is dropped. With `counted`, open connections are
/// counted in that verifier's metrics under that front.
pub fn accept_all(
    listeners: Vec<Listener>,
    max_connections: usize,
    full: WhenFull,
    counted: Option<(&Verifier, Front)>,
) -> (mpsc::Receiver<Stream>, Accepting) {
    let (tx, rx) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let counted = counted.map(|(verifier, front)| {
        verifier.metrics().connection_limit(front, max_connections);
        (verifier.clone(), front)
    });
    let mut tasks = JoinSet::new();
    for listener in listeners {
        let (tx, slots, counted) = (tx.clone(), slots.clone(), counted.clone());
        tasks.spawn(async move {
            let mut refused_logged: Option<std::time::Instant> = None;
            loop {
                let waited = match full {
                    // Wait for a slot first, so a full front leaves new
                    // clients in the kernel backlog.
                    WhenFull::Wait => match slots.clone().acquire_owned().await {
                        Ok(slot) => Some(slot),
                        Err(_) => return,
                    },
                    WhenFull::Refuse => None,
                };
                let mut stream = match listener.accept().await {
                    Ok(stream) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = match waited {
                    Some(slot) => slot,
                    None => match slots.clone().try_acquire_owned() {
                        Ok(slot) => slot,
                        Err(_) => {
                            // Full: close at once (dropping the stream), so
                            // the connection holds no descriptor.
                            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                            {
                                tracing::warn!(
                                    max = max_connections,
                                    "listener full: closing new connections"
                                );
                                refused_logged = Some(std::time::Instant::now());
                            }
                            continue;
                        }
                    },
                };
                stream.held = Held {
                    _slot: Some(slot),
                    _open: counted
                        .as_ref()
                        .map(|(verifier, front)| verifier.metrics().connection_opened(*front)),
                };
                if tx.send(stream).await.is_err() {
                    return;
                }
            }
        });
    }
    (rx, Accepting { _tasks: tasks })
}

/// A front's connection tasks, and their drain: the native and HTTP
/// fronts and their connections. (The gRPC front's connections belong to
/// tonic, whose own graceful shutdown sends HTTP/2 GOAWAY, which only the
/// owner of the connection can do; `grpc::run` bounds it by the same
/// grace.)
#[derive(Debug)]
pub struct Connections {
    tasks: JoinSet<()>,
    drain_tx: watch::Sender<bool>,
    drain_rx: watch::Receiver<bool>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections::new()
    }
}

impl Connections {
    /// No connections yet.
    pub fn new() -> Connections {
        let (drain_tx, drain_rx) = watch::channel(false);
        Connections {
            tasks: JoinSet::new(),
            drain_tx,
            drain_rx,
        }
    }

    /// The flag a connection task watches: `true` once draining started.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.drain_rx.clone()
    }

    /// Runs one connection's task; finished ones are reaped (a panicked one
    /// logged: its connection was closed, the daemon goes on).
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
        while let Some(done) = self.tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!("a connection task panicked; its connection was closed");
            }
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Tells every connection to finish, waits for them up to `grace`, and
    /// closes the rest. Returns how many were closed abruptly.
    pub async fn drain(mut self, grace: Duration) -> usize {
        let _ = self.drain_tx.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        let abandoned = if drained.is_ok() { 0 } else { self.tasks.len() };
        self.tasks.shutdown().await;
        abandoned
    }
}

/// Keeps [`accept_all`]'s loops running; dropping it stops them.
#[derive(Debug)]
pub struct Accepting {
    _tasks: JoinSet<()>,
}

impl Listener {
    /// Binds a TCP address. A non-loopback address is allowed (the pod
    /// network may be the only way in) but warned about: checks carry the
    /// clients' tokens in clear text.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn tcp(addr: SocketAddr) -> io::Result<Listener> {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "a front listens beyond loopback: tokens travel in clear text");
        }
        Ok(Listener::Tcp(TcpListener::bind(addr).await?))
    }

    /// The next connection.
    ///
    /// # Errors
    ///
    /// The accept error (the caller backs off and goes on).
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => Ok(Stream {
                io: Io::Unix(l.accept().await?.0),
                held: Held::default(),
            }),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Stream {
                    io: Io::Tcp(s),
                    held: Held::default(),
                })
            }
        }
    }

    /// The bound TCP address (tests bind port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tcp(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Stream {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}
