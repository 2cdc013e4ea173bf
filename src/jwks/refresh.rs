//! [`RefreshGate`]: how requests that name an unknown `kid` ask a remote key
//! source for a refresh without ever causing a fetch storm.
//!
//! One gate per remote issuer, shared by the request path and the issuer's
//! fetch task (`source::remote`):
//!
//! - **Single flight.** While a fetch is running or has been asked for,
//!   every request that meets an unknown kid joins it (gets a [`Wait`] on
//!   the same completion) instead of asking for another.
//! - **Cooldown, for unknown kids only.** Otherwise a request may ask for a
//!   fetch only if no *unknown kid* asked for one in the last `cooldown`
//!   (30 s by default, as `jose`'s `cooldownDuration`). Within the cooldown
//!   the request is answered `unknown_key` at once and counted as
//!   suppressed; the first suppression of each cooldown is logged, with
//!   when the next refresh is allowed. A spray of random kids therefore
//!   costs at most one fetch per cooldown, however fast it comes. Start-up
//!   and scheduled fetches do not use the cooldown up: a key published just
//!   after a pod started is fetched as soon as a token names it, not 30 s
//!   later.
//! - **Minimum gap.** No fetch of the issuer, of any kind, starts less than
//!   a minimum gap after the previous one started ([`RefreshGate::sleep`]
//!   enforces it; the fetch task passes [`min_gap`] of its settings:
//!   [`MIN_FETCH_GAP`], or `refresh_min` when that is shorter). A fetch an
//!   unknown kid asks for right after another waits out the gap; requests
//!   meanwhile join it. This protects the issuer from back-to-back fetches
//!   now that scheduled fetches no longer start the cooldown.
//! - **Bounded wait.** A [`Wait`] ends when the fetch completes (well or
//!   badly) or at its deadline (`unknown_kid_wait` after the request met the
//!   gate), whichever comes first; the request is then verified once more
//!   against whatever set is current, and never asks for another refresh.
//!
//! The gate holds no key material and does no I/O besides the one log line
//! per cooldown: the fetch task calls [`RefreshGate::started`] /
//! [`RefreshGate::finished`] around each fetch and sleeps in
//! [`RefreshGate::sleep`], which an unknown-kid request cuts short.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// The shortest time between the starts of two fetches of one issuer
/// (unless `refresh_min` is shorter; see [`min_gap`]).
pub const MIN_FETCH_GAP: Duration = Duration::from_secs(5);

/// The minimum gap between two fetches for a source refreshed at most every
/// `refresh_min`: [`MIN_FETCH_GAP`], or `refresh_min` when shorter (an
/// operator who allows a fetch per second has said the issuer can take it).
pub fn min_gap(refresh_min: Duration) -> Duration {
    MIN_FETCH_GAP.min(refresh_min)
}

/// Single-flight, cooled-down refresh requests for one issuer.
#[derive(Debug)]
pub struct RefreshGate {
    /// The issuer, for the log line of a suppressed refresh.
    issuer: Box<str>,
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
    /// Suppressions that were logged (one per cooldown at most).
    logged: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// When the last fetch (of any kind) started: the minimum gap runs from
    /// here.
    last_start: Option<Instant>,
    /// When an unknown kid last asked for a fetch (and got one): the
    /// cooldown runs from here.
    last_request: Option<Instant>,
    /// A fetch is running.
    fetching: bool,
    /// An unknown kid asked for a fetch that has not started yet.
    requested: bool,
    /// The current cooldown's first suppression was logged.
    suppression_logged: bool,
}

impl RefreshGate {
    /// A gate for `issuer` (a name for logs) allowing one fetch asked for by
    /// unknown kids per `cooldown`, with requests waiting at most `wait` for
    /// it.
    pub fn new(issuer: &str, cooldown: Duration, wait: Duration) -> RefreshGate {
        RefreshGate {
            issuer: issuer.into(),
            cooldown,
            wait,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            done: watch::Sender::new(0),
            suppressed: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            logged: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The critical sections below cannot panic; a poisoned lock still
        // holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request met a kid the current set lacks. Returns a [`Wait`] if a
    /// fetch is running, asked for, or allowed now (it is then asked for),
    /// `None` if the cooldown refuses one (the request should be answered
    /// `unknown_key` now).
    pub fn unknown_kid(&self) -> Option<Wait> {
        let now = Instant::now();
        let mut state = self.state();
        if !state.fetching && !state.requested {
            let cooling_until = state
                .last_request
                .map(|t| t + self.cooldown)
                .filter(|until| now < *until);
            if let Some(until) = cooling_until {
                let first = !std::mem::replace(&mut state.suppression_logged, true);
                drop(state);
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                if first {
                    self.logged.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        issuer = %self.issuer,
                        next_refresh_in = %whole_seconds(until - now),
                        "unknown kid: key set refresh suppressed by unknown_kid_cooldown; unknown kids are refused until then (logged once per cooldown)"
                    );
                }
                return None;
            }
            state.requested = true;
            state.last_request = Some(now);
            state.suppression_logged = false;
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

    /// Fetches asked for by unknown kids so far.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }

    /// Suppressions logged so far (at most one per cooldown).
    pub fn suppressions_logged(&self) -> u64 {
        self.logged.load(Ordering::Relaxed)
    }

    /// The fetch task starts a fetch (of any kind). It serves a fetch an
    /// unknown kid asked for, if any.
    pub fn started(&self) {
        let mut state = self.state();
        state.fetching = true;
        state.requested = false;
        state.last_start = Some(Instant::now());
    }

    /// The fetch task finished a fetch, whatever its result; waiters go on.
    pub fn finished(&self) {
        let mut state = self.state();
        state.fetching = false;
        // Bumped under the lock: a request that asks for the next fetch right
        // after must subscribe after this bump, or this completion would
        // release it before its own fetch ran.
        self.done.send_modify(|generation| *generation += 1);
        drop(state);
    }

    /// Sleeps until `deadline`, or until a request asks for a refresh; then,
    /// if the last fetch started less than `min_gap` ago, until it did.
    pub async fn sleep(&self, deadline: Instant, min_gap: Duration) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = self.wake.notified() => {
                    // A wake-up stored while the task was fetching (the
                    // request then joined that fetch) is no request for
                    // another: only one still waiting to be served counts.
                    if self.state().requested {
                        break;
                    }
                }
            }
        }
        let last_start = self.state().last_start;
        if let Some(earliest) = last_start.and_then(|t| t.checked_add(min_gap)) {
            tokio::time::sleep_until(earliest).await;
        }
    }
}

/// A duration as whole seconds, rounded up (`23s`): when the next refresh
/// is allowed, never earlier than said.
fn whole_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs() + u64::from(d.subsec_nanos() > 0))
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

    const GAP: Duration = MIN_FETCH_GAP;
    const FAR: Duration = Duration::from_secs(3600);

    fn gate(cooldown: u64) -> RefreshGate {
        RefreshGate::new(
            "https://issuer.example",
            Duration::from_secs(cooldown),
            Duration::from_secs(1),
        )
    }

    /// What the fetch task does for one fetch.
    fn fetch(gate: &RefreshGate) {
        gate.started();
        gate.finished();
    }

    #[tokio::test(start_paused = true)]
    async fn requests_join_one_flight_and_the_cooldown_refuses_more() {
        let gate = gate(30);
        let first = gate.unknown_kid().expect("first request asks for a fetch");
        let second = gate.unknown_kid().expect("second joins the flight");
        // The fetch task wakes at once (no fetch before: no gap to wait).
        tokio::time::timeout(
            Duration::from_millis(1),
            gate.sleep(Instant::now() + FAR, GAP),
        )
        .await
        .expect("woken by the request");
        fetch(&gate);
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
        assert_eq!(gate.requested(), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(gate.unknown_kid().is_some(), "cooldown over");
    }

    #[tokio::test(start_paused = true)]
    async fn two_unknown_kids_in_one_cooldown_cause_one_fetch() {
        let gate = gate(30);
        let start = Instant::now();
        let w = gate.unknown_kid().expect("the first asks for a fetch");
        gate.sleep(start + FAR, GAP).await;
        fetch(&gate);
        w.done().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(gate.unknown_kid().is_none(), "the second is refused");
        assert_eq!((gate.requested(), gate.suppressed()), (1, 1));
        // And the fetch task is not woken for it: it sleeps to its deadline.
        let now = Instant::now();
        gate.sleep(now + Duration::from_secs(60), GAP).await;
        assert_eq!(now.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_up_fetch_leaves_the_cooldown_to_unknown_kids() {
        let gate = gate(30);
        let start = Instant::now();
        // The start-up fetch; an unknown kid meanwhile joins it.
        gate.started();
        let joined = gate.unknown_kid().expect("joins the start-up fetch");
        gate.finished();
        joined.done().await;
        assert_eq!(gate.requested(), 0, "joining asks for nothing");
        // At t = 1 s a token names a key published since: a fetch is asked
        // for at once, and starts when the minimum gap has passed.
        tokio::time::advance(Duration::from_secs(1)).await;
        let w = gate.unknown_kid().expect("the cooldown is not used up");
        assert_eq!(gate.requested(), 1);
        gate.sleep(start + FAR, GAP).await;
        assert_eq!(start.elapsed(), GAP, "started at the minimum gap");
        // Requests meanwhile joined the fetch asked for; it serves them.
        fetch(&gate);
        w.done().await;
        assert!(gate.unknown_kid().is_none(), "now the cooldown runs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_fetch_does_not_start_the_cooldown() {
        let gate = gate(30);
        fetch(&gate);
        tokio::time::advance(Duration::from_secs(29)).await;
        fetch(&gate);
        tokio::time::advance(Duration::from_secs(GAP.as_secs())).await;
        assert!(gate.unknown_kid().is_some());
        assert_eq!(gate.suppressed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_fetch_starts_within_the_minimum_gap_of_another() {
        let gate = gate(30);
        let start = Instant::now();
        fetch(&gate);
        // A retry due after 1 s waits for the gap.
        gate.sleep(start + Duration::from_secs(1), GAP).await;
        assert_eq!(start.elapsed(), GAP);
        // A due time past the gap is kept.
        let start = Instant::now();
        fetch(&gate);
        gate.sleep(start + Duration::from_secs(7), GAP).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
        // A shorter refresh_min shortens the gap.
        assert_eq!(min_gap(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(min_gap(Duration::from_secs(60)), GAP);
    }

    #[tokio::test(start_paused = true)]
    async fn a_suppressed_refresh_is_logged_once_per_cooldown() {
        let lines = capture_logs();
        let gate = gate(30);
        let start = Instant::now();
        let w = gate.unknown_kid().expect("asks for a fetch");
        gate.sleep(start + FAR, GAP).await;
        fetch(&gate);
        w.done().await;
        tokio::time::advance(Duration::from_millis(6_500)).await;
        for _ in 0..100 {
            assert!(gate.unknown_kid().is_none());
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(gate.unknown_kid().is_none());
        assert_eq!(gate.suppressions_logged(), 1);
        let text = lines.text();
        assert_eq!(text.matches("refresh suppressed").count(), 1, "{text}");
        // 30 s cooldown from t = 0, first suppressed at t = 6.5 s.
        assert!(text.contains("next_refresh_in=24s"), "{text}");
        assert!(text.contains("issuer=https://issuer.example"), "{text}");

        // The next cooldown logs again, once.
        tokio::time::advance(Duration::from_secs(14)).await;
        let w = gate.unknown_kid().expect("cooldown over");
        gate.sleep(Instant::now() + FAR, GAP).await;
        fetch(&gate);
        w.done().await;
        for _ in 0..10 {
            assert!(gate.unknown_kid().is_none());
        }
        assert_eq!(gate.suppressions_logged(), 2);
        assert_eq!(lines.text().matches("refresh suppressed").count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_wake_up_does_not_cut_the_next_sleep_short() {
        let gate = gate(1);
        // A request joins a fetch already under way: its wake-up is stored.
        gate.started();
        let _joined = gate.unknown_kid();
        gate.wake.notify_one();
        gate.finished();
        let start = Instant::now();
        gate.sleep(start + Duration::from_secs(60), GAP).await;
        assert_eq!(start.elapsed(), Duration::from_secs(60), "woke for nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline_if_the_fetch_hangs() {
        let gate = RefreshGate::new("i", Duration::from_secs(30), Duration::from_millis(500));
        let w = gate.unknown_kid().expect("asks for a fetch");
        let start = Instant::now();
        w.done().await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }

    #[test]
    fn next_refresh_in_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(23_000)), "23s");
        assert_eq!(whole_seconds(Duration::from_millis(22_001)), "23s");
        assert_eq!(whole_seconds(Duration::from_millis(1)), "1s");
    }

    /// Log lines written on this thread while the returned handle lives.
    /// This thread's log lines while alive.
    struct Captured {
        buffer: std::sync::Arc<Mutex<Vec<u8>>>,
    }

    impl Captured {
        fn text(&self) -> String {
            let bytes = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl Drop for Captured {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }

    thread_local! {
        static CAPTURE: std::cell::RefCell<Option<std::sync::Arc<Mutex<Vec<u8>>>>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Writes a line into the capturing thread's buffer; lines of threads
    /// that capture nothing are dropped.
    struct Sink;

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(buffer) = &*c.borrow() {
                    buffer
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(buf);
                }
            });
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Captures this thread's log lines (the tests run on current-thread
    /// runtimes). One *global* subscriber, installed once: a scoped one
    /// (`set_default`) races tracing's global callsite cache when other
    /// tests' threads first hit the same log line, and loses events now
    /// and then.
    fn capture_logs() -> Captured {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(|| Sink)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let buffer = std::sync::Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone()));
        Captured { buffer }
    }
}
