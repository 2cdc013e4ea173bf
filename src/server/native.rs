//! One native-protocol connection: socket <-> frames <-> [`Verifier`].
//!
//! Two tasks per connection. The **reader** decodes requests from its buffer
//! and answers each one as soon as it can: PINGs and cache hits at once
//! (inline, a few hundred nanoseconds), misses on a spawned task so
//! signature checks of one pipelining client spread over all cores and a
//! slow request never holds up the ones behind it. Every reply goes through
//! one channel to the **writer**, which batches whatever is ready into one
//! write. Replies therefore leave in completion order, not request order;
//! the id ties them together.
//!
//! Flow control: each unanswered request holds a permit of a per-connection
//! semaphore (`max_in_flight`); the permit travels with the reply and is
//! released when the writer has encoded it. When permits run out the reader
//! stops reading, so a client that never reads replies stalls only itself.
//!
//! A framing error is answered with an ERROR reply after everything before
//! it, then the connection closes; a request-level error (unknown selector)
//! is answered and the connection goes on.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{ServerConfig, unix_now};
use crate::protocol::{self, Cause, Op, ProtocolError, Reply, Request};
use crate::verifier::{Outcome, Verifier};

/// How long a draining connection waits for more requests from a quiet
/// client before closing.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Largest batch of replies written at once.
const WRITE_BATCH: usize = 64 * 1024;

type Outgoing = (Reply, OwnedSemaphorePermit);

/// Serves one connection until the client leaves, a framing error, idle
/// timeout, or drain.
pub async fn serve(
    stream: UnixStream,
    verifier: Verifier,
    config: &ServerConfig,
    mut drain: watch::Receiver<bool>,
) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer = tokio::spawn(write_replies(wr, rx));
    let in_flight = std::sync::Arc::new(Semaphore::new(config.max_in_flight));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut draining = *drain.borrow();

    'conn: loop {
        // Answer every complete frame already buffered.
        loop {
            match protocol::decode_request(&mut buf, config.max_frame_bytes) {
                Ok(Some(request)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break 'conn;
                    };
                    handle(request, permit, &verifier, &tx);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e.error, "protocol error from client");
                    if let Ok(permit) = in_flight.clone().acquire_owned().await {
                        let _ = tx.send((
                            Reply::Error {
                                id: e.id,
                                error: e.error,
                            },
                            permit,
                        ));
                    }
                    if e.error.is_fatal() {
                        break 'conn;
                    }
                }
            }
        }
        let wait = if draining {
            DRAIN_QUIET
        } else {
            config.idle_timeout
        };
        tokio::select! {
            read = tokio::time::timeout(wait, rd.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                // Quiet for the whole wait with nothing in flight: close.
                Err(_elapsed) if all_answered(&in_flight, config) => break,
                Err(_elapsed) => {}
            },
            changed = drain.changed(), if !draining => {
                draining = changed.is_err() || *drain.borrow();
            }
        }
    }
    // Closing our sender lets the writer finish once every spawned
    // verification has sent its reply.
    drop(tx);
    let _ = writer.await;
}

fn all_answered(in_flight: &Semaphore, config: &ServerConfig) -> bool {
    in_flight.available_permits() == config.max_in_flight
}

fn handle(
    request: Request,
    permit: OwnedSemaphorePermit,
    verifier: &Verifier,
    tx: &mpsc::UnboundedSender<Outgoing>,
) {
    let id = request.id;
    let (selector, token) = match request.op {
        Op::Ping => {
            let _ = tx.send((Reply::Pong { id }, permit));
            return;
        }
        Op::Verify { selector, token } => (selector, token),
    };
    let now = unix_now();
    let miss = match verifier.check_cached(&selector, &token, now) {
        Ok(outcome) => {
            let _ = tx.send((reply(id, outcome), permit));
            return;
        }
        Err(miss) => miss,
    };
    let (verifier, tx) = (verifier.clone(), tx.clone());
    tokio::spawn(async move {
        let outcome = verifier.check_uncached(miss, &selector, &token, now);
        let _ = tx.send((reply(id, outcome), permit));
    });
}

fn reply(id: u32, outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Valid { result, cached } => Reply::Valid {
            id,
            cached,
            anomalies: result.anomalies,
            claims: result.claims.raw.clone(),
        },
        Outcome::Invalid(rejection) => {
            tracing::debug!(reason = rejection.reason.as_str(), "token rejected");
            Reply::Invalid {
                id,
                reason: rejection.reason,
            }
        }
        Outcome::NoKeys => Reply::Undecided {
            id,
            cause: Cause::NoKeys,
        },
        Outcome::UnknownSelector => Reply::Error {
            id,
            error: ProtocolError::UnknownSelector,
        },
    }
}

async fn write_replies(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Some((reply, permit)) = rx.recv().await {
        reply.encode(&mut out);
        drop(permit);
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok((reply, permit)) => {
                    reply.encode(&mut out);
                    drop(permit);
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() {
            // The client is gone; keep draining the channel so permits are
            // released and verification tasks finish quietly.
            out.clear();
            while rx.recv().await.is_some() {}
            return;
        }
        out.clear();
    }
    let _ = wr.shutdown().await;
}
