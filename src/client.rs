//! A Rust client for the native protocol: one connection, any number of
//! concurrent requests on it (pipelined; replies matched by id).
//!
//! Used by `jwtd verify` and the tests. Calls from many tasks share the
//! connection: each call hands its whole frame to one writer task and waits
//! on its own oneshot; one reader task hands every reply to the waiting call.
//! A call may be dropped at any point (a timeout, say): its frame is written
//! whole or not at all, and its pending entry is removed.
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
use tokio::sync::{mpsc, oneshot};

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
    /// A selector longer than 255 bytes.
    #[error("selector longer than 255 bytes")]
    SelectorTooLong,
    /// A VERIFY_CTX token or context field longer than 65535 bytes.
    #[error("token or context field longer than 65535 bytes")]
    FieldTooLong,
}

type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Reply>>>>>;

/// A connection to a jwtd daemon. Cheap to share behind an `Arc`; all
/// methods take `&self`, and any of them may be cancelled (dropped) at any
/// point without harming the connection or other calls.
pub struct Client {
    /// Whole frames to the writer task: a frame is written completely or
    /// not at all, whatever happens to the call that queued it.
    frames: mpsc::UnboundedSender<BytesMut>,
    /// Waiting calls by request id; `None` once the connection is dead.
    pending: Pending,
    next_id: AtomicU32,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Removes a call's pending entry when the call ends, however it ends.
struct Registration<'a> {
    pending: &'a Pending,
    id: u32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(map) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            map.remove(&self.id);
        }
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
        let (frames, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_replies(rd, pending.clone()));
        let writer = tokio::spawn(write_frames(wr, rx, pending.clone()));
        Ok(Client {
            frames,
            pending,
            next_id: AtomicU32::new(1),
            reader,
            writer,
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

    /// Verifies `token` for `selector` (empty: the default policy) with the
    /// request it came with (VERIFY_CTX): method, URI, DPoP proof, client
    /// certificate thumbprint, client address, as the binding stage needs
    /// them. A daemon older than VERIFY_CTX answers ERROR `unknown op` and
    /// closes the connection.
    ///
    /// # Errors
    ///
    /// Transport failures, a selector over 255 bytes, or a token or field
    /// over 65535 bytes.
    pub async fn verify_with_context(
        &self,
        selector: &[u8],
        token: &[u8],
        context: &protocol::WireContext,
    ) -> Result<Reply, ClientError> {
        if selector.len() > 255 {
            return Err(ClientError::SelectorTooLong);
        }
        let too_long = |b: Option<&[u8]>| b.is_some_and(|b| b.len() > usize::from(u16::MAX));
        if token.len() > usize::from(u16::MAX)
            || too_long(context.method.as_deref())
            || too_long(context.uri.as_deref())
            || too_long(context.dpop.as_deref())
        {
            return Err(ClientError::FieldTooLong);
        }
        self.call(|buf, id| protocol::encode_verify_ctx(buf, id, selector, token, context))
            .await
    }

    /// Sends REVOKE with `body` (a JSON revocation request, see
    /// `docs/protocol.md`); the reply is DONE with the key, or ERROR.
    ///
    /// # Errors
    ///
    /// Transport failures.
    pub async fn revoke(&self, body: &[u8]) -> Result<Reply, ClientError> {
        self.call(|buf, id| protocol::encode_revoke(buf, id, body))
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
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let map = guard.as_mut().ok_or(ClientError::Closed)?;
            // Ids wrap after 2^32 calls: skip 0 (the daemon's "unreadable")
            // and any id still waiting, so no reply reaches the wrong call.
            let id = loop {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                if id != 0 && !map.contains_key(&id) {
                    break id;
                }
            };
            map.insert(id, tx);
            id
        };
        let _registration = Registration {
            pending: &self.pending,
            id,
        };
        let mut frame = BytesMut::new();
        encode(&mut frame, id);
        self.frames.send(frame).map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }
}

async fn write_frames(
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<BytesMut>,
    pending: Pending,
) {
    let mut out = BytesMut::new();
    while let Some(frame) = frames.recv().await {
        out.unsplit(frame);
        while let Ok(frame) = frames.try_recv() {
            out.unsplit(frame);
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
    }
    // The connection is unusable: wake every waiting call with `Closed`.
    pending.lock().unwrap_or_else(|p| p.into_inner()).take();
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
                        // A cancelled call, or a framing error (id 0) after
                        // which the daemon closes. Never log the reply
                        // itself: it may hold claims.
                        None => tracing::debug!(id = reply.id(), "reply for no waiting call"),
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
