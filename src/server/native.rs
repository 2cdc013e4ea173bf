//! One native-protocol connection: socket <-> frames <-> [`Verifier`].
//!
//! The front only translates: each VERIFY frame becomes a
//! [`crate::request::Request`] sent down the verifier's pipeline
//! ([`Verifier::begin`]), each decision a reply; a REVOKE goes to
//! [`Verifier::revoke`]. What it owns is *where* the work runs:
//! Two tasks per connection. The **reader** decodes every complete frame in
//! its buffer and answers what it can at once: PINGs and cache hits inline
//! (a few hundred nanoseconds). Cache misses of one read are collected and
//! verified as a batch, split into one group per runtime worker: one group
//! on the reader itself, the others on spawned tasks, so one pipelining
//! client uses every core while each group costs one task and one hand-off
//! (a task per token cost more CPU than the transport, BENCHMARKS.md).
//! Replies reach the **writer** through one channel, a batch at a time, and
//! leave in completion order, not request order; the id ties them together.
//!
//! Limits, and what a misbehaving client can and cannot do:
//!
//! - **In flight per connection.** Each unanswered request holds a permit of
//!   a per-connection semaphore (`max_in_flight`), released when its reply is
//!   encoded. Without permits the reader stops reading.
//! - **Verification in flight, all fronts.** A miss takes a slot of the
//!   verifier's [`crate::verifier::Budget`] (shared with the proxy fronts);
//!   when none is free the request is answered UNDECIDED `overloaded` at
//!   once instead of queueing without bound.
//! - **A client that stops reading** its replies stalls only its writer; a
//!   write that makes no progress for `write_timeout` closes the
//!   connection, which releases everything it held.
//! - **Idle**: no complete request for `idle_timeout` with nothing in flight
//!   closes the connection (trickling bytes does not count as activity).
//! - **Framing errors** are answered with ERROR *after* every earlier request
//!   has been answered (cache hits waiting for a revocation lookup and
//!   misses of the same read included), then the connection closes; a
//!   request-level error (unknown selector) is answered and the connection
//!   goes on.
//! - **Drain** (shutdown): keep answering for one second; after that,
//!   requests get ERROR `shutting_down` and the connection closes once its
//!   replies are written; a quiet connection with nothing in flight closes
//!   at once. The server's grace period bounds all of it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::ServerConfig;
use crate::clock::unix_now;
use crate::protocol::{self, Op, ProtocolError, Reply, WireContext};
use crate::request::{ClientCert, Context, Decision, Front, Request, TokenScheme};
use crate::verifier::{Next, Refused, Step, Tally, Ticket, Verifier, Waiting};

/// How long a draining connection waits for more requests from a quiet
/// client before closing.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// How long a draining connection keeps answering new requests normally
/// before refusing them with `shutting_down`.
const DRAIN_ANSWER: Duration = Duration::from_secs(1);

/// Largest batch of replies written at once.
const WRITE_BATCH: usize = 64 * 1024;

/// A reply and the in-flight permit it releases once encoded.
type Outgoing = (Reply, OwnedSemaphorePermit);

/// What the writer receives: one reply (hits, PINGs) or a verified group.
enum Batch {
    One(Outgoing),
    Many(Vec<Outgoing>),
}

/// A cache miss waiting for verification (it holds its budget slot).
struct Pending {
    id: u32,
    selector: Bytes,
    token: Bytes,
    context: Option<Box<WireContext>>,
    ticket: Ticket,
    permit: OwnedSemaphorePermit,
    /// When the read that brought it completed (request latency).
    arrived: std::time::Instant,
}

/// The request a native frame is, for the pipeline: a VERIFY_CTX's
/// context fields fill the `Context` (a DPoP proof presents the token as
/// DPoP; the text fields were checked ASCII when decoded).
fn pipeline_request<'a>(
    selector: &'a [u8],
    token: &'a [u8],
    wire: Option<&'a WireContext>,
    arrived: std::time::Instant,
    now: i64,
) -> Request<'a> {
    let mut context = Context::new(Front::Native, arrived, now);
    if let Some(wire) = wire {
        let text = |b: &'a Option<Bytes>| b.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        context.method = text(&wire.method);
        context.uri = text(&wire.uri);
        context.dpop_proof = wire.dpop.as_deref();
        if wire.dpop.is_some() {
            context.token_scheme = TokenScheme::Dpop;
        }
        context.client_cert = wire.cert_sha256.map(ClientCert::Sha256);
        context.client = wire.client;
    }
    Request {
        token: Some(token),
        selector,
        context,
    }
}

/// Serves one connection until the client leaves, a framing error, a stalled
/// writer, idle timeout, or drain.
pub async fn serve(
    stream: UnixStream,
    verifier: Verifier,
    config: &ServerConfig,
    mut drain: watch::Receiver<bool>,
) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Batch>();
    let (last_tx, last_rx) = oneshot::channel::<Reply>();
    let writer = tokio::spawn(write_replies(wr, rx, last_rx, config.write_timeout));
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let groups = tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .max(1);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut pending: Vec<Pending> = Vec::new();
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut last_request = Instant::now();
    let mut drain_started: Option<Instant> = drain.borrow().then(Instant::now);
    let mut last_tx = Some(last_tx);
    let mut closing = false;
    // One clock read per read, not per request: the requests of one read
    // arrived together; their plain cache hits are counted at once.
    let mut tally = Tally::new(Front::Native, std::time::Instant::now());

    'conn: loop {
        // Answer every complete frame already buffered.
        loop {
            let request = match protocol::decode_request(&mut buf, config.max_frame_bytes) {
                Ok(Some(request)) => Ok(request),
                Ok(None) => break,
                // A whole frame this daemon cannot serve (an unknown op, a
                // bad VERIFY_CTX context): that request's error; the
                // stream goes on.
                Err(e) if !e.error.is_fatal() => Err(e),
                Err(e) => {
                    tracing::debug!(error = %e.error, "protocol error from client");
                    // Sent by the writer after every other reply.
                    if let Some(last) = last_tx.take() {
                        let _ = last.send(Reply::Error {
                            id: e.id,
                            error: e.error,
                        });
                    }
                    break 'conn;
                }
            };
            last_request = Instant::now();
            let permit = match in_flight.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // Out of permits: the misses collected so far hold some;
                    // verify them before waiting, or nothing would free one.
                    dispatch(&mut pending, &verifier, groups, &tx);
                    tokio::select! {
                        permit = in_flight.clone().acquire_owned() => match permit {
                            Ok(p) => p,
                            Err(_) => break 'conn,
                        },
                        () = tx.closed() => break 'conn,
                    }
                }
            };
            let request = match request {
                Ok(request) => request,
                Err(e) => {
                    tracing::debug!(error = %e.error, "request refused");
                    let reply = Reply::Error {
                        id: e.id,
                        error: e.error,
                    };
                    let _ = tx.send(Batch::One((reply, permit)));
                    continue;
                }
            };
            let refusing = drain_started.is_some_and(|t| t.elapsed() >= DRAIN_ANSWER);
            closing |= refusing;
            if let Some(p) = answer(
                request,
                permit,
                &verifier,
                refusing,
                &tx,
                &mut waiters,
                &mut tally,
            ) {
                pending.push(p);
            }
        }
        verifier.flush(&mut tally);
        // Hits waiting for a revocation lookup: one task for the read, so
        // their lookups join one batch.
        spawn_waiters(std::mem::take(&mut waiters), &verifier, &tx);
        // `shutting_down` closes the connection (docs/protocol.md): refuse
        // what was already buffered, then read no more.
        if closing {
            break 'conn;
        }
        dispatch(&mut pending, &verifier, groups, &tx);

        let wait = match drain_started {
            Some(_) => DRAIN_QUIET,
            // Past the idle deadline with replies still owed: wait a whole
            // period again (a zero wait would spin); the write timeout ends
            // a connection whose client stopped reading.
            None => match config.idle_timeout.saturating_sub(last_request.elapsed()) {
                Duration::ZERO => config.idle_timeout,
                left => left,
            },
        };
        tokio::select! {
            read = tokio::time::timeout(wait, rd.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => tally.restart(std::time::Instant::now()),
                // Quiet for the whole wait with nothing in flight: close.
                Err(_elapsed) if in_flight.available_permits() == config.max_in_flight => {
                    if drain_started.is_some() || last_request.elapsed() >= config.idle_timeout {
                        break;
                    }
                }
                Err(_elapsed) => {}
            },
            changed = drain.changed(), if drain_started.is_none() => {
                if changed.is_err() || *drain.borrow() {
                    drain_started = Some(Instant::now());
                }
            }
            () = tx.closed() => break,
        }
    }
    // Whatever ended the loop, everything read is answered: a framing
    // error leaves it in the middle of a read, before that read's hits
    // waiting for a revocation lookup were handed over, and its misses
    // were dispatched.
    verifier.flush(&mut tally);
    spawn_waiters(std::mem::take(&mut waiters), &verifier, &tx);
    dispatch(&mut pending, &verifier, groups, &tx);
    // Closing our sender lets the writer finish once every spawned group has
    // sent its replies; then it sends the final ERROR, if any.
    drop(tx);
    drop(last_tx);
    let _ = writer.await;
}

/// Answers a request inline when it can; returns the cache misses.
fn answer(
    request: protocol::Request,
    permit: OwnedSemaphorePermit,
    verifier: &Verifier,
    refusing: bool,
    tx: &mpsc::UnboundedSender<Batch>,
    waiters: &mut Vec<Waiter>,
    tally: &mut Tally,
) -> Option<Pending> {
    let id = request.id;
    let reply = match request.op {
        _ if refusing => Reply::Error {
            id,
            error: ProtocolError::ShuttingDown,
        },
        Op::Ping => Reply::Pong {
            id,
            ready: verifier.ready(),
        },
        Op::Revoke { body } => {
            // An administrative write, possibly to Redis: off the reader.
            let (verifier, tx) = (verifier.clone(), tx.clone());
            tokio::spawn(async move {
                let reply = match revoke(&verifier, &body).await {
                    Ok(key) => Reply::Done {
                        id,
                        key: Bytes::from(key),
                    },
                    Err(error) => Reply::Error { id, error },
                };
                let _ = tx.send(Batch::One((reply, permit)));
            });
            return None;
        }
        Op::Verify {
            selector,
            token,
            context,
        } => {
            let arrived = tally.arrived();
            let req = pipeline_request(&selector, &token, context.as_deref(), arrived, unix_now());
            match verifier.begin(&req, tally) {
                Step::Done(decision) => reply(id, decision),
                Step::Verify(ticket) => {
                    return Some(Pending {
                        id,
                        selector,
                        token,
                        context,
                        ticket,
                        permit,
                        arrived,
                    });
                }
                Step::Wait(waiting) => {
                    waiters.push(Waiter {
                        waiting,
                        id,
                        selector,
                        token,
                        context,
                        permit,
                        arrived,
                    });
                    return None;
                }
            }
        }
    };
    let _ = tx.send(Batch::One((reply, permit)));
    None
}

/// Carries out a REVOKE request through the verifier: the key written, or
/// the protocol error saying why not.
async fn revoke(verifier: &Verifier, body: &[u8]) -> Result<String, ProtocolError> {
    let (iss, what) = protocol::parse_revoke(body, unix_now()).ok_or(ProtocolError::BadRevoke)?;
    verifier
        .revoke(iss.as_deref(), &what)
        .await
        .map_err(|refused| match refused {
            Refused::UnknownIssuer => ProtocolError::UnknownIssuer,
            Refused::MatchesNothing => ProtocolError::NothingToRevoke,
            Refused::Store => ProtocolError::RevokeFailed,
        })
}

/// Verifies (and empties) a read's misses, each holding its budget slot:
/// on this task when no other core is free, else split into groups on
/// spawned tasks.
fn dispatch(
    pending: &mut Vec<Pending>,
    verifier: &Verifier,
    groups: usize,
    tx: &mpsc::UnboundedSender<Batch>,
) {
    let mut misses = std::mem::take(pending);
    if misses.is_empty() {
        return;
    }
    let budget = verifier.budget();
    let groups = groups
        .saturating_sub(budget.running())
        .max(1)
        .min(misses.len());
    if groups == 1 {
        let running = budget.group();
        verify_group(misses, verifier, tx);
        drop(running);
        return;
    }
    // Every group goes to a spawned task: tokio puts a worker's single
    // spawn in its LIFO slot, which no other worker can steal, so one group
    // spawned while this task verified the other would run after it, not
    // beside it. With several spawns, all but the last are stealable.
    let per_group = misses.len().div_ceil(groups);
    while !misses.is_empty() {
        let group = misses.split_off(misses.len().saturating_sub(per_group));
        let (verifier, tx, running) = (verifier.clone(), tx.clone(), budget.group());
        tokio::spawn(async move {
            verify_group(group, &verifier, &tx);
            drop(running);
        });
    }
}

/// Verifies a group of misses; those that must wait for a key refresh or a
/// revocation lookup keep their budget slots until answered.
fn verify_group(group: Vec<Pending>, verifier: &Verifier, tx: &mpsc::UnboundedSender<Batch>) {
    // Time is read when verification starts, not when the request arrived,
    // so a queued token is never judged by a stale clock.
    let now = unix_now();
    let mut waiters = Vec::new();
    let replies = group
        .into_iter()
        .filter_map(|p| {
            let req = pipeline_request(&p.selector, &p.token, p.context.as_deref(), p.arrived, now);
            match p.ticket.verify(verifier, &req) {
                Next::Wait(waiting) => {
                    waiters.push(Waiter {
                        waiting,
                        id: p.id,
                        selector: p.selector,
                        token: p.token,
                        context: p.context,
                        permit: p.permit,
                        arrived: p.arrived,
                    });
                    None
                }
                Next::Done(decision) => Some((reply(p.id, decision), p.permit)),
            }
        })
        .collect();
    let _ = tx.send(Batch::Many(replies));
    spawn_waiters(waiters, verifier, tx);
}

/// A request whose answer needs a wait (a key refresh, a revocation
/// lookup).
struct Waiter {
    waiting: Waiting,
    id: u32,
    selector: Bytes,
    token: Bytes,
    context: Option<Box<WireContext>>,
    permit: OwnedSemaphorePermit,
    arrived: std::time::Instant,
}

/// Finishes `waiters` on one task, all at once: waiting costs no CPU, their
/// revocation lookups join one batch, and the replies already sent are not
/// held up.
fn spawn_waiters(waiters: Vec<Waiter>, verifier: &Verifier, tx: &mpsc::UnboundedSender<Batch>) {
    if waiters.is_empty() {
        return;
    }
    let (verifier, tx) = (verifier.clone(), tx.clone());
    tokio::spawn(async move {
        let finishing = waiters.into_iter().map(|w| {
            let (verifier, tx) = (&verifier, &tx);
            async move {
                // A client gone while we waited gets no further work.
                if tx.is_closed() {
                    return;
                }
                let req = pipeline_request(
                    &w.selector,
                    &w.token,
                    w.context.as_deref(),
                    w.arrived,
                    unix_now(),
                );
                let decision = w.waiting.finish(verifier, &req).await;
                let _ = tx.send(Batch::One((reply(w.id, decision), w.permit)));
            }
        });
        futures_util::future::join_all(finishing).await;
    });
}

/// The reply for a decision (counted by the pipeline already).
fn reply(id: u32, decision: Decision) -> Reply {
    match decision {
        Decision::Valid { result, cached } => Reply::Valid {
            id,
            cached,
            anomalies: result.anomalies,
            claims: result.claims.raw.clone(),
        },
        Decision::Invalid(rejection) => Reply::Invalid {
            id,
            reason: rejection.reason,
        },
        Decision::Undecided(cause) => Reply::Undecided { id, cause },
        Decision::UnknownSelector => Reply::Error {
            id,
            error: ProtocolError::UnknownSelector,
        },
        // Native requests always carry a token and no path; should one of
        // these come back, it is refused, never valid.
        Decision::MissingToken | Decision::Forbidden { .. } => Reply::Invalid {
            id,
            reason: crate::verify::Reject::Malformed,
        },
    }
}

fn encode(out: &mut BytesMut, batch: Batch) {
    // Permits drop as each reply is encoded: the reader may read again.
    match batch {
        Batch::One((reply, _permit)) => reply.encode(out),
        Batch::Many(replies) => {
            for (reply, _permit) in replies {
                reply.encode(out);
            }
        }
    }
}

async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    last: oneshot::Receiver<Reply>,
    timeout: Duration,
) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Some(batch) = rx.recv().await {
        encode(&mut out, batch);
        while out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(batch) => encode(&mut out, batch),
                Err(_) => break,
            }
        }
        if !write_all(&mut wr, &out, timeout).await {
            // Gone or stalled: stop accepting replies (the reader sees the
            // channel close) and drain what is queued to release permits.
            rx.close();
            while rx.recv().await.is_some() {}
            return;
        }
        out.clear();
    }
    if let Ok(reply) = last.await {
        reply.encode(&mut out);
        let _ = write_all(&mut wr, &out, timeout).await;
    }
    let _ = wr.shutdown().await;
}

/// Writes a whole batch, or gives up when it takes longer than `timeout`:
/// one deadline per batch, so a client reading a byte at a time cannot hold
/// the connection by making a little progress now and then.
async fn write_all(wr: &mut OwnedWriteHalf, bytes: &[u8], timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, wr.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::debug!("client stopped reading replies; closing");
            false
        }
    }
}
