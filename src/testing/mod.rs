//! Paused virtual time over sync and async code, for tests (feature `test-util`).
//!
//! [`run`] runs a test's future on a current_thread tokio runtime whose clock is
//! paused, like `#[tokio::test(start_paused = true)]`, and extends that clock to
//! everything this crate runs for the test: closures of [`unblock`](crate::unblock) and
//! [`Offloader`](crate::Offloader), [`compute`](crate::compute) jobs on rayon, and sync
//! code sleeping through [`clock::sleep`](crate::clock::sleep). The rules:
//!
//! - Time advances only when every participant is idle: async tasks (tokio's rule), and
//!   every offloaded job from submission until its result is delivered, except while it
//!   sleeps on [`clock::sleep`](crate::clock::sleep). Work that computes holds the
//!   clock; work that sleeps on the clock does not.
//! - Timers fire in deadline order across both sides: an async `tokio::time::sleep(5s)`
//!   and a blocking `clock::sleep(3s)` started together wake at exactly 3 s and 5 s.
//! - A timeout around an offload does not fire while the offloaded work computes, even
//!   on rayon, where tokio alone would let it fire.
//! - If nothing can progress for a real-time limit ([`Builder::stall_limit`], 30 s by
//!   default) — a closure waiting forever on a channel, a lock cycle, an async
//!   deadlock — the test fails with a report of what holds the clock (which offload, of
//!   which lane, called from where) instead of hanging.
//!
//! Under the harness, blocking closures run on threads the harness controls rather than
//! on tokio's blocking pool: a closure sleeping on the clock inside tokio's own
//! `spawn_blocking` would hold tokio's paused clock forever.
//!
//! # Examples
//!
//! An hour of backoff in a legacy retry loop, checked to the millisecond, in a few
//! milliseconds of real time:
//!
//! ```
//! use std::time::Duration;
//! use async_bridge::{clock, testing, unblock};
//!
//! // Legacy code, made testable by one swap: thread::sleep -> clock::sleep.
//! fn fetch_with_retries(mut attempt: impl FnMut() -> Option<u32>) -> u32 {
//!     let mut backoff = Duration::from_secs(60);
//!     loop {
//!         if let Some(v) = attempt() {
//!             return v;
//!         }
//!         clock::sleep(backoff);
//!         backoff *= 2;
//!     }
//! }
//!
//! testing::run(async {
//!     let start = tokio::time::Instant::now();
//!     let mut failures = 5; // waits 1 + 2 + 4 + 8 + 16 minutes
//!     let value = unblock(move || {
//!         fetch_with_retries(|| if failures == 0 { Some(7) } else { failures -= 1; None })
//!     })
//!     .await;
//!     assert_eq!(value, 7);
//!     assert_eq!(start.elapsed(), Duration::from_secs(31 * 60));
//! });
//! ```

mod harness;
pub(crate) mod scope;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::{self, Either};

use harness::Harness;

/// Runs `test` to completion in paused virtual time that spans sync and async code.
///
/// See the [module docs](self) for the rules. Use [`Builder`] to change the stall
/// limit, or [`Builder::try_run`] to get a stall as a value.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// async_bridge::testing::run(async {
///     let start = tokio::time::Instant::now();
///     tokio::time::sleep(Duration::from_secs(3600)).await; // returns at once
///     assert_eq!(start.elapsed(), Duration::from_secs(3600));
/// });
/// ```
///
/// # Panics
///
/// Panics with a report when the test stalls, and when called inside a tokio runtime
/// (use a plain `#[test]`: the harness builds its own runtime). A panic of the test's
/// future propagates unchanged.
#[track_caller]
pub fn run<F: Future>(test: F) -> F::Output {
    Builder::new().run(test)
}

/// Options for [`run`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let value = async_bridge::testing::Builder::new()
///     .stall_limit(Duration::from_secs(5))
///     .run(async { 1 + 1 });
/// assert_eq!(value, 2);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `run` is called"]
pub struct Builder {
    stall_limit: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The default options: a stall limit of 30 s of real time.
    pub fn new() -> Self {
        Builder {
            stall_limit: Duration::from_secs(30),
        }
    }

    /// How long (real time) nothing may progress before the test fails with a stall
    /// report. Progress is any job starting, finishing, sleeping or waking, the runtime
    /// waking up, or the test's future being polled. A job that legitimately computes
    /// for longer than this without any of those needs a larger limit.
    pub fn stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// As [`run`]: runs `test`, panicking with the report if it stalls.
    #[track_caller]
    pub fn run<F: Future>(self, test: F) -> F::Output {
        match self.try_run(test) {
            Ok(output) => output,
            Err(stall) => panic!("{stall}"),
        }
    }

    /// Runs `test`; a stall is returned as an error instead of a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_bridge::{testing, Offloader};
    ///
    /// let stall = testing::Builder::new()
    ///     .stall_limit(Duration::from_millis(200))
    ///     .try_run(async {
    ///         let lane = Offloader::builder("stuck-db").build().unwrap();
    ///         let (_tx, rx) = std::sync::mpsc::channel::<()>();
    ///         lane.run(move || rx.recv()).await // waits forever: nobody sends
    ///     })
    ///     .unwrap_err();
    /// assert_eq!(stall.holders(), 1);
    /// assert!(stall.to_string().contains("offload `stuck-db` called at"));
    /// ```
    ///
    /// # Errors
    ///
    /// A [`Stall`] when nothing progressed for the stall limit.
    ///
    /// # Panics
    ///
    /// When called inside a tokio runtime, and when the test's future panics (the panic
    /// propagates).
    #[track_caller]
    pub fn try_run<F: Future>(self, test: F) -> Result<F::Output, Stall> {
        if tokio::runtime::Handle::try_current().is_ok() {
            panic!(
                "async_bridge::testing::run at {} was called inside a tokio runtime: call it \
                 from a plain #[test] function (not #[tokio::test]); it builds its own paused runtime",
                std::panic::Location::caller()
            );
        }
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rt = {
            let epoch = Arc::clone(&epoch);
            // A runtime wake-up is progress only when virtual time moved: while a job
            // holds the clock, tokio wakes every time a timer is due in real time and
            // finds the clock has not moved, which must not hide a stall.
            let last_seen = parking_lot::Mutex::new(None);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .on_thread_unpark(move || {
                    let now = tokio::time::Instant::now();
                    if last_seen.lock().replace(now) != Some(now) {
                        epoch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
                .build()
                .expect("the test runtime could not be built")
        };
        let harness = Harness::new(rt.handle().clone(), epoch);
        let (stall_tx, stall_rx) = futures::channel::oneshot::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let monitor = {
            let harness = Arc::clone(&harness);
            let limit = self.stall_limit;
            thread::Builder::new()
                .name("async-bridge-stall-monitor".into())
                .spawn(move || monitor(&harness, limit, &done_rx, stall_tx))
                .expect("the stall monitor thread could not be started")
        };
        let outcome = scope::as_runtime_thread(&harness, || {
            panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async {
                    let mut test = pin!(test);
                    let watched = future::poll_fn(|cx| {
                        harness.progress();
                        test.as_mut().poll(cx)
                    });
                    match future::select(pin!(watched), stall_rx).await {
                        Either::Left((output, _)) => Ok(output),
                        Either::Right((Ok(stall), _)) => Err(stall),
                        Either::Right((Err(_), watched)) => Ok(watched.await),
                    }
                })
            }))
        });
        drop(done_tx);
        let _ = monitor.join();
        // Work still running (a stalled closure, a detached job) must not keep the test
        // from ending: leave it behind instead of waiting for it.
        rt.shutdown_background();
        match outcome {
            Ok(result) => result,
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

/// Watches the harness's progress; reports a stall once nothing moved for `limit`.
fn monitor(
    harness: &Harness,
    limit: Duration,
    done: &mpsc::Receiver<()>,
    stall_tx: futures::channel::oneshot::Sender<Stall>,
) {
    let tick = (limit / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut seen = harness.epoch();
    let mut since = Instant::now();
    loop {
        match done.recv_timeout(tick) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let epoch = harness.epoch();
        if epoch != seen {
            seen = epoch;
            since = Instant::now();
            continue;
        }
        if since.elapsed() < limit {
            continue;
        }
        let stall = Stall::new(harness, limit);
        let text = stall.to_string();
        if stall_tx.send(stall).is_err() {
            return;
        }
        // The runtime thread picks the report up and fails the test, unless it is
        // itself blocked; then the report is all that can be done before aborting.
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            done.recv_timeout(limit.max(Duration::from_secs(1)))
        {
            eprintln!("{text}\nthe test's runtime thread is blocked too: aborting");
            std::process::abort();
        }
        return;
    }
}

/// A test run by the harness stopped making progress; see [`Builder::try_run`].
///
/// Its message lists what holds the clock: each offloaded job still in the ledger with
/// its kind, lane and call site, and whether it is running or asleep on the clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let stall = async_bridge::testing::Builder::new()
///     .stall_limit(Duration::from_millis(100))
///     .try_run(futures::future::pending::<()>())
///     .unwrap_err();
/// assert_eq!(stall.holders(), 0);
/// assert!(stall.to_string().contains("no timer to advance to"));
/// ```
#[derive(Clone, Debug)]
pub struct Stall {
    holders: usize,
    message: String,
}

impl Stall {
    fn new(harness: &Harness, limit: Duration) -> Self {
        let (holders, participants) = harness.describe();
        let mut message = format!(
            "testing::run stalled: nothing progressed for {limit:?} of real time, at virtual time +{:?}; ",
            harness.elapsed()
        );
        if holders == 0 {
            message.push_str(
                "no offloaded work holds the clock, and the runtime has no timer to advance to \
                 and no task that can run (an async deadlock, or a wait on something outside \
                 the harness)",
            );
        } else {
            message.push_str(&format!(
                "the clock is held by {holders} offloaded job(s) that never finished \
                 (waiting on a channel or lock that nothing will release?)"
            ));
        }
        if !participants.is_empty() {
            message.push_str(":\n");
            message.push_str(participants.trim_end());
        }
        Stall { holders, message }
    }

    /// How many offloaded jobs held the clock (were running, not asleep on it).
    pub fn holders(&self) -> usize {
        self.holders
    }
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Stall {}
