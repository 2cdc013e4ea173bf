//! Pushed revocations: a subscription to `<prefix>revocations`, on which
//! `jwtd revoke` publishes each key it writes. A message drops that key's
//! local answer, so the next check asks Redis and sees the revocation:
//! milliseconds, not the `cache_ttl` of a "not revoked" answer.
//!
//! While the subscription is down, announcements are lost; so every local
//! "not revoked" answer (and every per-token memo) is dropped each time it
//! (re)subscribes, and such answers never outlive `cache_ttl` anyway.
//! Reconnects back off from 100 ms to 1 s.

use std::time::Duration;

use futures_util::StreamExt;

use super::{Revocation, channel};

/// Keeps the subscription up, forever (abort the task to stop).
pub async fn subscribe(client: redis::Client, revocation: Revocation) {
    let channel = channel(&revocation.config().prefix);
    let mut delay = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let connect = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub());
        match connect.await {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    revocation.forget_all();
                    tracing::info!(%channel, "revocation push channel subscribed");
                    warned = false;
                    delay = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        if let Ok(key) = msg.get_payload::<String>() {
                            revocation.forget(&key);
                        }
                    }
                    revocation.forget_all();
                    tracing::warn!(%channel, "revocation push channel lost; local \"not revoked\" answers dropped");
                }
                Err(e) => tracing::debug!(error = %e, "revocation push: subscribe failed"),
            },
            Ok(Err(e)) if !warned => {
                tracing::warn!(error = %e, "revocation push channel unreachable; retrying");
                warned = true;
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
