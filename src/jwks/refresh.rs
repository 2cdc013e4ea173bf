//! [`RefreshGate`]: how requests that name an unknown `kid` ask a remote key
//! source for a refresh without ever causing a fetch storm.
//!
//! One gate per remote issuer, shared by the request path and the issuer's
//! fetch task (`source::remote`):
//!
//! - **Single flight.** While a fetch is in flight, every request that meets
//!   an unknown kid joins it (gets a [`Wait`] on the same completion) instead
//!   of starting another.
//! - **Cooldown.** Otherwise a request may start a fetch only if the last
//!   fetch of this issuer, of any kind, *started* at least `cooldown` ago
//!   (30 s by default, as `jose`'s `cooldownDuration`). Within the cooldown
//!   the request is answered `unknown_key` at once and counted as
//!   suppressed. A spray of random kids therefore costs at most one fetch per
//!   cooldown, however fast it comes.
//! - **Bounded wait.** A [`Wait`] ends when the fetch completes (well or
//!   badly) or at its deadline (`unknown_kid_wait` after the request met the
//!   gate), whichever comes first; the request is then verified once more
//!   against whatever set is current, and never triggers another refresh.
//!
//! The gate holds no key material and does no I/O: the fetch task calls
//! [`RefreshGate::started`] / [`RefreshGate::finished`] around each fetch and
//! sleeps in [`RefreshGate::sleep`], which an unknown-kid request cuts short.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Single-flight, cooled-down refresh requests for one issuer.
#[derive(Debug)]
pub struct RefreshGate {
    cooldown: Duration,
    wait: Duration,
    state: Mutex<State>,
    /// Wakes the fetch task early.
    wake: Notify,
    /// Bumped when a fetch completes; waiters watch it.
    done: watch::Sender<u64>,
    /// Unknown-kid refreshes refused by the cooldown.
    suppressed: AtomicU64,
    /// Fetches an unknown kid asked for (and got).
    requested: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// When the last fetch (scheduled or requested) started.
    last_start: Option<Instant>,
    /// A fetch is running, or has been requested and not yet started.
    in_flight: bool,
}

impl RefreshGate {
    /// A gate allowing one requested fetch per `cooldown`, with requests
    /// waiting at most `wait` for it.
    pub fn new(cooldown: Duration, wait: Duration) -> RefreshGate {
        RefreshGate {
            cooldown,
            wait,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            done: watch::Sender::new(0),
            suppressed: AtomicU64::new(0),
            requested: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The critical sections below cannot panic; a poisoned lock still
        // holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request met a kid the current set lacks. Returns a [`Wait`] if a
    /// fetch is in flight or was just requested, `None` if the cooldown
    /// refuses one (the request should be answered `unknown_key` now).
    pub fn unknown_kid(&self) -> Option<Wait> {
        let now = Instant::now();
        let mut state = self.state();
        if !state.in_flight {
            let cooling = state
                .last_start
                .is_some_and(|t| now.duration_since(t) < self.cooldown);
            if cooling {
                drop(state);
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            state.in_flight = true;
            state.last_start = Some(now);
            self.requested.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
        // Subscribed under the lock: the completion cannot slip between the
        // check and the subscription.
        let rx = self.done.subscribe();
        drop(state);
        Some(Wait {
            rx,
            deadline: now + self.wait,
        })
    }

    /// Unknown-kid refreshes refused by the cooldown so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Fetches requested by unknown kids so far.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }

    /// The fetch task starts a fetch (scheduled or requested).
    pub fn started(&self) {
        let mut state = self.state();
        state.in_flight = true;
        state.last_start = Some(Instant::now());
    }

    /// The fetch task finished a fetch, whatever its result; waiters go on.
    pub fn finished(&self) {
        let mut state = self.state();
        state.in_flight = false;
        // Bumped under the lock: a request that starts the next flight right
        // after must subscribe after this bump, or this completion would
        // release it before its own fetch ran.
        self.done.send_modify(|generation| *generation += 1);
        drop(state);
    }

    /// Sleeps until `deadline`, or until a request asks for a refresh.
    pub async fn sleep(&self, deadline: Instant) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = self.wake.notified() => {
                    // A wake-up stored while the task was fetching (the
                    // request then joined that fetch) is no request for
                    // another: only one that set `in_flight` since counts.
                    if self.state().in_flight {
                        return;
                    }
                }
            }
        }
    }
}

/// A request waiting for an in-flight refresh.
#[derive(Debug)]
pub struct Wait {
    rx: watch::Receiver<u64>,
    deadline: Instant,
}

impl Wait {
    /// Resolves when the refresh completes or the wait bound passes.
    pub async fn done(mut self) {
        let _ = tokio::time::timeout_at(self.deadline, self.rx.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_join_one_flight_and_the_cooldown_refuses_more() {
        let gate = RefreshGate::new(Duration::from_secs(30), Duration::from_secs(1));
        let first = gate.unknown_kid().expect("first request starts a fetch");
        let second = gate.unknown_kid().expect("second joins the flight");
        // The fetch task wakes at once, not at its scheduled time.
        tokio::time::timeout(
            Duration::from_millis(1),
            gate.sleep(Instant::now() + Duration::from_secs(3600)),
        )
        .await
        .expect("woken by the request");
        gate.started();
        gate.finished();
        tokio::time::timeout(Duration::from_millis(1), async {
            first.done().await;
            second.done().await;
        })
        .await
        .expect("waiters released by the completion");
        // Within the cooldown: refused and counted.
        for _ in 0..1000 {
            assert!(gate.unknown_kid().is_none());
        }
        assert_eq!(gate.suppressed(), 1000);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(gate.unknown_kid().is_some(), "cooldown over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_fetch_starts_the_cooldown_too() {
        let gate = RefreshGate::new(Duration::from_secs(30), Duration::from_secs(1));
        gate.started();
        // In flight: joined, not refused.
        let w = gate.unknown_kid().expect("joins the scheduled fetch");
        gate.finished();
        w.done().await;
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(gate.unknown_kid().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_wake_up_does_not_cut_the_next_sleep_short() {
        let gate = RefreshGate::new(Duration::from_secs(1), Duration::from_secs(1));
        // A request joins a fetch already under way: its wake-up is stored.
        gate.started();
        let _joined = gate.unknown_kid();
        gate.wake.notify_one();
        gate.finished();
        let start = Instant::now();
        gate.sleep(start + Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60), "woke for nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline_if_the_fetch_hangs() {
        let gate = RefreshGate::new(Duration::from_secs(30), Duration::from_millis(500));
        let w = gate.unknown_kid().expect("starts a fetch");
        let start = Instant::now();
        w.done().await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
