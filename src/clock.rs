//! Time for code on both sides of the bridge: real time in production, the harness's
//! virtual time in tests.
//!
//! Legacy sync code that reads the time or sleeps (retry loops, backoffs, deadlines) is
//! the hardest part of a migration to test: it runs for real seconds, and tokio's paused
//! clock does not reach it. Swap `Instant::now()` for [`clock::now()`](now) and
//! `thread::sleep(d)` for [`clock::sleep(d)`](sleep) — a one-line change each — and the
//! code behaves exactly as before in production, while under
//! [`testing::run`](crate::testing::run) (feature `test-util`) it reads and waits on the
//! same virtual clock as `tokio::time`, on every thread the library runs work on.
//!
//! Outside the harness the cost is one thread-local check on top of the std call.

use std::time::{Duration, Instant};

/// The current time: `Instant::now()`, or the harness's virtual time when called from
/// work the harness runs (feature `test-util`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let start = async_bridge::clock::now();
/// async_bridge::clock::sleep(Duration::from_millis(1));
/// assert!(start.elapsed() >= Duration::from_millis(1));
/// ```
#[inline]
pub fn now() -> Instant {
    if let Some(now) = crate::seam::now() {
        return now;
    }
    Instant::now()
}

/// Blocks the thread for `duration`: `thread::sleep`, or a sleep on the harness's
/// virtual clock when called from work the harness runs (feature `test-util`). There the
/// sleeping thread does not hold the clock: time moves on to its wake-up as soon as
/// everything else is idle.
///
/// # Examples
///
/// A legacy retry loop, testable in virtual time once its sleep goes through the clock:
///
/// ```
/// use std::time::Duration;
/// use async_bridge::clock;
///
/// fn connect_with_backoff(mut attempt: impl FnMut() -> bool) -> u32 {
///     let mut backoff = Duration::from_millis(1);
///     let mut tries = 1;
///     while !attempt() {
///         clock::sleep(backoff);
///         backoff *= 2;
///         tries += 1;
///     }
///     tries
/// }
///
/// let mut failures = 2;
/// let tries = connect_with_backoff(|| { failures -= 1; failures < 0 });
/// assert_eq!(tries, 3);
/// ```
///
/// # Panics
///
/// Under the harness, on the test's own runtime thread (inside async code run directly
/// by [`testing::run`](crate::testing::run)), where blocking would stop every task: use
/// `tokio::time::sleep` there, and run sync code through an offload.
#[track_caller]
pub fn sleep(duration: Duration) {
    if crate::seam::sleep(duration) {
        return;
    }
    std::thread::sleep(duration);
}
