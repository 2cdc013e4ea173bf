//! One native-protocol connection: socket <-> frames <-> [`Verifier`].
//!
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
//! - **Verification in flight, all connections.** A miss takes a slot of the
//!   server-wide [`Budget`]; when none is free the request is answered
//!   UNDECIDED `overloaded` at once instead of queueing without bound.
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
use crate::metrics::Front;
use crate::protocol::{self, Cause, Op, ProtocolError, Reply, Request};
use crate::verifier::{Miss, Outcome, Verifier};

/// How long a draining connection waits for more requests from a quiet
/// client before closing.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// How long a draining connection keeps answering new requests normally
/// before refusing them with `shutting_down`.
const DRAIN_ANSWER: Duration = Duration::from_secs(1);

/// Largest batch of replies written at once.
const WRITE_BATCH: usize = 64 * 1024;

/// Server-wide verification state shared by every connection: the bound on
/// misses queued or running, and how many verification groups are running
/// now. Cheap to clone.
#[derive(Clone)]
pub struct Budget(Arc<BudgetInner>);

struct BudgetInner {
    slots: Arc<Semaphore>,
    /// Groups verifying right now, over all connections. A connection splits
    /// its misses only onto workers no other group occupies: when every
    /// core is already verifying, a split costs a cross-thread wake-up and
    /// buys no parallelism (measured: about a fifth of an RS256 request).
    running: std::sync::atomic::AtomicUsize,
}

impl Budget {
    /// At most `slots` cache misses in verification at once.
    pub fn new(slots: usize) -> Budget {
        Budget(Arc::new(BudgetInner {
            slots: Arc::new(Semaphore::new(slots)),
            running: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The slots, for the metrics.
    pub fn slots(&self) -> Arc<Semaphore> {
        self.0.slots.clone()
    }
}

/// Marks one verification group as running while alive.
struct Running(Budget);

impl Running {
    fn start(budget: &Budget) -> Running {
        budget
            .0
            .running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Running(budget.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A reply and the in-flight permit it releases once encoded.
type Outgoing = (Reply, OwnedSemaphorePermit);

/// What the writer receives: one reply (hits, PINGs) or a verified group.
enum Batch {
    One(Outgoing),
    Many(Vec<Outgoing>),
}

/// A cache miss waiting for verification.
struct Pending {
    id: u32,
    selector: Bytes,
    token: Bytes,
    miss: Miss,
    permit: OwnedSemaphorePermit,
    /// When the read that brought it completed (request latency).
    arrived: std::time::Instant,
}

/// The read being answered: when it arrived (one clock read per read, not
/// per request: its requests arrived together), and its plain cache hits,
/// counted in the metrics at once when the read is done.
struct Read {
    arrived: std::time::Instant,
    hits: u64,
}

/// Serves one connection until the client leaves, a framing error, a stalled
/// writer, idle timeout, or drain.
pub async fn serve(
    stream: UnixStream,
    verifier: Verifier,
    config: &ServerConfig,
    budget: Budget,
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
    // arrived together.
    let mut batch_read = Read {
        arrived: std::time::Instant::now(),
        hits: 0,
    };

    'conn: loop {
        // Answer every complete frame already buffered.
        loop {
            let request = match protocol::decode_request(&mut buf, config.max_frame_bytes) {
                Ok(Some(request)) => request,
                Ok(None) => break,
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
                    dispatch(&mut pending, &verifier, &budget, groups, &tx);
                    tokio::select! {
                        permit = in_flight.clone().acquire_owned() => match permit {
                            Ok(p) => p,
                            Err(_) => break 'conn,
                        },
                        () = tx.closed() => break 'conn,
                    }
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
                &mut batch_read,
            ) {
                pending.push(p);
            }
        }
        verifier.metrics().record_hits(
            Front::Native,
            std::mem::take(&mut batch_read.hits),
            batch_read.arrived,
        );
        // Hits waiting for a revocation lookup: one task for the read, so
        // their lookups join one batch.
        spawn_waiters(std::mem::take(&mut waiters), &verifier, &tx, None);
        // `shutting_down` closes the connection (docs/protocol.md): refuse
        // what was already buffered, then read no more.
        if closing {
            break 'conn;
        }
        dispatch(&mut pending, &verifier, &budget, groups, &tx);

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
                Ok(Ok(_)) => batch_read.arrived = std::time::Instant::now(),
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
    verifier.metrics().record_hits(
        Front::Native,
        std::mem::take(&mut batch_read.hits),
        batch_read.arrived,
    );
    spawn_waiters(std::mem::take(&mut waiters), &verifier, &tx, None);
    dispatch(&mut pending, &verifier, &budget, groups, &tx);
    // Closing our sender lets the writer finish once every spawned group has
    // sent its replies; then it sends the final ERROR, if any.
    drop(tx);
    drop(last_tx);
    let _ = writer.await;
}

/// Answers a request inline when it can; returns the cache misses.
fn answer(
    request: Request,
    permit: OwnedSemaphorePermit,
    verifier: &Verifier,
    refusing: bool,
    tx: &mpsc::UnboundedSender<Batch>,
    waiters: &mut Vec<Waiter>,
    read: &mut Read,
) -> Option<Pending> {
    let id = request.id;
    let arrived = read.arrived;
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
        Op::Verify { selector, token } => {
            match verifier.check_cached(&selector, &token, unix_now()) {
                Ok(Outcome::Pending(p)) => {
                    waiters.push(Waiter {
                        pending: p,
                        id,
                        selector,
                        token,
                        permit,
                        arrived,
                    });
                    return None;
                }
                Ok(Outcome::Valid {
                    result,
                    cached: true,
                }) if result.anomalies == crate::verify::Anomalies::NONE => {
                    read.hits += 1;
                    valid_reply(id, &result, true)
                }
                Ok(outcome) => reply(id, outcome, verifier, &token, arrived),
                Err(miss) => {
                    return Some(Pending {
                        id,
                        selector,
                        token,
                        miss,
                        permit,
                        arrived,
                    });
                }
            }
        }
    };
    let _ = tx.send(Batch::One((reply, permit)));
    None
}

/// Carries out a REVOKE request: the key written, or why not. A revocation
/// that can match nothing (an issuer this daemon does not serve, a token
/// long expired) is refused, never reported done.
async fn revoke(verifier: &Verifier, body: &[u8]) -> Result<String, ProtocolError> {
    use crate::revocation::RevokeError;
    let now = unix_now();
    let (iss, what) = crate::revocation::parse_revoke(body, now).ok_or(ProtocolError::BadRevoke)?;
    if !verifier.serves_issuer(iss.as_deref()) {
        tracing::info!(
            iss = iss.as_deref().unwrap_or("(none)"),
            "revocation through the socket refused: issuer not served"
        );
        return Err(ProtocolError::UnknownIssuer);
    }
    match verifier
        .revocation()
        .revoke(iss.as_deref(), &what, now)
        .await
    {
        Ok(key) => {
            tracing::info!(%key, "revoked through the socket");
            Ok(key)
        }
        Err(RevokeError::MatchesNothing(why)) => {
            tracing::info!(%why, "revocation through the socket refused");
            Err(ProtocolError::NothingToRevoke)
        }
        Err(e @ RevokeError::Store(_)) => {
            tracing::warn!(error = %e, "revocation through the socket failed (enforced here only)");
            Err(ProtocolError::RevokeFailed)
        }
    }
}

/// Verifies (and empties) a read's misses: what the budget cannot take is
/// answered `overloaded` at once; the rest is verified on this task when no
/// other core is free, else split into groups on spawned tasks.
fn dispatch(
    pending: &mut Vec<Pending>,
    verifier: &Verifier,
    budget: &Budget,
    groups: usize,
    tx: &mpsc::UnboundedSender<Batch>,
) {
    let mut misses = std::mem::take(pending);
    if misses.is_empty() {
        return;
    }
    // Another connection may take slots between the count and the
    // acquisition: retry with the new count rather than shed everything.
    let mut slots = None;
    for _ in 0..3 {
        let fits = misses.len().min(budget.0.slots.available_permits());
        let Some(n) = u32::try_from(fits).ok().filter(|n| *n > 0) else {
            break;
        };
        if let Ok(s) = budget.0.slots.clone().try_acquire_many_owned(n) {
            slots = Some(s);
            break;
        }
    }
    let granted = slots.as_ref().map_or(0, |s| s.num_permits());
    if granted < misses.len() {
        tracing::debug!(
            shed = misses.len() - granted,
            "verification budget exhausted"
        );
        let shed = misses
            .drain(granted..)
            .map(|p| {
                verifier
                    .metrics()
                    .record_overloaded(Front::Native, p.arrived);
                let reply = Reply::Undecided {
                    id: p.id,
                    cause: Cause::Overloaded,
                };
                (reply, p.permit)
            })
            .collect();
        let _ = tx.send(Batch::Many(shed));
    }
    if misses.is_empty() {
        return;
    }
    let busy = budget.0.running.load(std::sync::atomic::Ordering::Relaxed);
    let groups = groups.saturating_sub(busy).max(1).min(misses.len());
    if groups == 1 {
        let running = Running::start(budget);
        verify_group(misses, verifier, tx, slots);
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
        let group_slots = slots.as_mut().and_then(|s| s.split(group.len()));
        let (verifier, tx, running) = (verifier.clone(), tx.clone(), Running::start(budget));
        tokio::spawn(async move {
            verify_group(group, &verifier, &tx, group_slots);
            drop(running);
        });
    }
}

/// Verifies a group holding `slots` of the budget (one per request); the
/// slots of requests waiting for a key refresh stay with them until their
/// second verification.
fn verify_group(
    group: Vec<Pending>,
    verifier: &Verifier,
    tx: &mpsc::UnboundedSender<Batch>,
    mut slots: Option<OwnedSemaphorePermit>,
) {
    // Time is read when verification starts, not when the request arrived,
    // so a queued token is never judged by a stale clock.
    let now = unix_now();
    let mut waiters = Vec::new();
    let replies = group
        .into_iter()
        .filter_map(
            |p| match verifier.check_uncached(p.miss, &p.selector, &p.token, now) {
                Outcome::Pending(pending) => {
                    waiters.push(Waiter {
                        pending,
                        id: p.id,
                        selector: p.selector,
                        token: p.token,
                        permit: p.permit,
                        arrived: p.arrived,
                    });
                    None
                }
                outcome => Some((
                    reply(p.id, outcome, verifier, &p.token, p.arrived),
                    p.permit,
                )),
            },
        )
        .collect();
    let _ = tx.send(Batch::Many(replies));
    // Waiters keep their budget slots until answered.
    let waiting_slots = slots.as_mut().and_then(|s| s.split(waiters.len()));
    drop(slots);
    spawn_waiters(waiters, verifier, tx, waiting_slots);
}

/// A request whose answer needs a wait (a key refresh, a revocation
/// lookup).
struct Waiter {
    pending: crate::verifier::Pending,
    id: u32,
    selector: Bytes,
    token: Bytes,
    permit: OwnedSemaphorePermit,
    arrived: std::time::Instant,
}

/// Finishes `waiters` on one task, all at once: waiting costs no CPU, their
/// revocation lookups join one batch, and the replies already sent are not
/// held up. `slots` (budget) are released when the last one is answered.
fn spawn_waiters(
    waiters: Vec<Waiter>,
    verifier: &Verifier,
    tx: &mpsc::UnboundedSender<Batch>,
    slots: Option<OwnedSemaphorePermit>,
) {
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
                let outcome = w.pending.finish(verifier, &w.selector, &w.token).await;
                let reply = reply(w.id, outcome, verifier, &w.token, w.arrived);
                let _ = tx.send(Batch::One((reply, w.permit)));
            }
        });
        futures_util::future::join_all(finishing).await;
        drop(slots);
    });
}

/// The reply for a decided request, counted in the metrics.
fn reply(
    id: u32,
    outcome: Outcome,
    verifier: &Verifier,
    token: &[u8],
    arrived: std::time::Instant,
) -> Reply {
    verifier
        .metrics()
        .record(Front::Native, &outcome, token, arrived);
    match outcome {
        Outcome::Valid { result, cached } => valid_reply(id, &result, cached),
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
        Outcome::RevocationUnavailable => Reply::Undecided {
            id,
            cause: Cause::RevocationUnavailable,
        },
        // The callers hand these to `spawn_waiters`; never answered here.
        Outcome::Pending(p) => match p.rejection() {
            Some(rejection) => Reply::Invalid {
                id,
                reason: rejection.reason,
            },
            None => Reply::Undecided {
                id,
                cause: Cause::RevocationUnavailable,
            },
        },
    }
}

fn valid_reply(id: u32, result: &crate::verify::Verified, cached: bool) -> Reply {
    Reply::Valid {
        id,
        cached,
        anomalies: result.anomalies,
        claims: result.claims.raw.clone(),
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
