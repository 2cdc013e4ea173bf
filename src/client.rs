//! A Rust client for the native protocol: one connection, any number of
//! concurrent requests on it (pipelined; replies matched by id).
//!
//! Used by `jwtd verify`, the load generator's checks and the tests. Calls
//! from many tasks share the connection: each call writes its frame under a
//! short lock and waits on its own oneshot; one background task reads every
//! reply and hands it to the waiting call.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), jwtd::client::ClientError> {
//! let client = jwtd::client::Client::connect("/tmp/jwtd.sock").await?;
//! match client.verify(b"eyJ...").await? {
//!     jwtd::protocol::Reply::Valid { claims, .. } => println!("{}", String::from_utf8_lossy(&claims)),
//!     other => println!("not valid: {other:?}"),
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::protocol::{self, Reply};

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect or write.
    #[error("jwtd socket: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before the reply arrived.
    #[error("connection closed by jwtd")]
    Closed,
    /// The daemon sent bytes that are not a reply.
    #[error("malformed reply from jwtd")]
    Protocol,
    /// A selector longer than 255 bytes.
    #[error("selector longer than 255 bytes")]
    SelectorTooLong,
}

type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Reply>>>>>;

/// A connection to a jwtd daemon. Cheap to share behind an `Arc`; all
/// methods take `&self`.
pub struct Client {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Waiting calls by request id; `None` once the connection is dead.
    pending: Pending,
    next_id: AtomicU32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects to the daemon's socket.
    ///
    /// # Errors
    ///
    /// If the socket cannot be reached.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let (rd, wr) = UnixStream::connect(path).await?.into_split();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_replies(rd, pending.clone()));
        Ok(Client {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            next_id: AtomicU32::new(1),
            reader,
        })
    }

    /// Verifies `token` under the daemon's default policy.
    ///
    /// # Errors
    ///
    /// Transport failures only; an invalid token is an `Ok(Reply::Invalid)`.
    pub async fn verify(&self, token: &[u8]) -> Result<Reply, ClientError> {
        self.verify_for(b"", token).await
    }

    /// Verifies `token` for the audience `selector`.
    ///
    /// # Errors
    ///
    /// Transport failures, or a selector over 255 bytes.
    pub async fn verify_for(&self, selector: &[u8], token: &[u8]) -> Result<Reply, ClientError> {
        if selector.len() > 255 {
            return Err(ClientError::SelectorTooLong);
        }
        self.call(|buf, id| protocol::encode_verify(buf, id, selector, token))
            .await
    }

    /// Sends PING and waits for PONG.
    ///
    /// # Errors
    ///
    /// Transport failures.
    pub async fn ping(&self) -> Result<Reply, ClientError> {
        self.call(protocol::encode_ping).await
    }

    async fn call(&self, encode: impl FnOnce(&mut BytesMut, u32)) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.as_mut().ok_or(ClientError::Closed)?.insert(id, tx);
        }
        let mut frame = BytesMut::new();
        encode(&mut frame, id);
        self.writer.lock().await.write_all(&frame).await?;
        rx.await.map_err(|_| ClientError::Closed)
    }
}

async fn read_replies(mut rd: OwnedReadHalf, pending: Pending) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            match protocol::decode_reply(&mut buf, usize::MAX >> 1) {
                Ok(Some(reply)) => {
                    let waiter = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_mut()
                        .and_then(|m| m.remove(&reply.id()));
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(reply);
                        }
                        // A framing error names id 0 (or an id we never
                        // sent): the daemon closes after it, so does the
                        // loop below when the socket ends.
                        None => tracing::debug!(?reply, "reply for no pending request"),
                    }
                }
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Dropping every sender wakes each waiting call with `Closed`.
    pending.lock().unwrap_or_else(|p| p.into_inner()).take();
}
