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

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

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
    _slot: Option<OwnedSemaphorePermit>,
    _open: Option<crate::metrics::OpenConnection>,
}

#[derive(Debug)]
enum Io {
    Unix(UnixStream),
    /// Nagle off: answers are small and latency-bound.
    Tcp(TcpStream),
}

/// Accepts on every listener, at most `max_connections` open at once (over
/// all of them; further clients wait in the kernel backlog), and hands the
/// connections over the returned channel. The accept loops stop, closing
/// the listeners, when the [`Accepting`] guard is dropped. Open connections
/// are counted in `verifier`'s metrics under `front`.
pub fn accept_all(
    listeners: Vec<Listener>,
    max_connections: usize,
    verifier: &crate::verifier::Verifier,
    front: crate::metrics::Front,
) -> (mpsc::Receiver<Stream>, Accepting) {
    let (tx, rx) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    verifier.metrics().connection_limit(front, max_connections);
    let mut tasks = JoinSet::new();
    for listener in listeners {
        let (tx, slots, verifier) = (tx.clone(), slots.clone(), verifier.clone());
        tasks.spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                match listener.accept().await {
                    Ok(mut stream) => {
                        stream._slot = Some(slot);
                        stream._open = Some(verifier.metrics().connection_opened(front));
                        if tx.send(stream).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    (rx, Accepting { _tasks: tasks })
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
                _slot: None,
                _open: None,
            }),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Stream {
                    io: Io::Tcp(s),
                    _slot: None,
                    _open: None,
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
