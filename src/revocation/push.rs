//! Pushed revocations: a subscription to `<prefix>revocations`, on which
//! `jwtd revoke` publishes each key it writes. A message drops that key's
//! local answer (and retires every per-token memo), so the next check asks
//! Redis and sees the revocation: milliseconds, not the `cache_ttl` of a
//! "not revoked" answer. The key is then read back (`GET`, `TTL`, on a task
//! of its own) and the revocation becomes known to this daemon
//! (`super::known`): a Redis that loses it later cannot take it back.
//!
//! While the subscription is down, announcements are lost; so every local
//! answer that a missed announcement could have made stale is dropped each
//! time it (re)subscribes (see `Revocation::forget_all`), and such
//! answers never outlive `cache_ttl` anyway.
//!
//! A connection can die without a reset (a partition, a node gone): the
//! subscriber pings every [`PING_EVERY`] and reconnects when a ping goes
//! unanswered for [`PING_TIMEOUT`]. Reconnects back off from 100 ms to 1 s
//! and, on a cluster, go round the nodes given (cluster pub/sub reaches
//! every node).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::remote::Target;
use super::{Revocation, channel};

/// How often the subscription is checked.
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps the subscription up, forever (abort the task to stop). The nodes
/// of `target` are tried in turn.
pub(super) async fn subscribe(target: Arc<Target>, revocation: Revocation) {
    let channel = channel(&revocation.config().prefix);
    let mut delay = Duration::from_millis(100);
    let mut warned = false;
    for node in (0..target.nodes()).cycle() {
        match target.subscribe(node, &channel, PING_TIMEOUT).await {
            Ok(pubsub) => {
                revocation.forget_all();
                tracing::info!(%channel, "revocation push channel subscribed");
                warned = false;
                delay = Duration::from_millis(100);
                listen(pubsub, &revocation).await;
                revocation.forget_all();
                tracing::warn!(%channel, "revocation push channel lost; reconnecting");
            }
            // Once per outage (a Redis that times out included); the
            // error names no credential.
            Err(why) if !warned => {
                tracing::warn!(
                    reason = why.as_str(),
                    error = %why,
                    "revocation push channel unreachable; retrying"
                );
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Applies announcements until the connection ends or stops answering.
async fn listen(pubsub: redis::aio::PubSub, revocation: &Revocation) {
    let (mut sink, mut messages) = pubsub.split();
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(msg) => {
                    if let Ok(key) = msg.get_payload::<String>() {
                        revocation.forget(&key);
                        let revocation = revocation.clone();
                        tokio::spawn(async move { revocation.learn(&key).await });
                    }
                }
                None => return,
            },
            _ = ticks.tick() => {
                let ping = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>());
                if !matches!(ping.await, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
