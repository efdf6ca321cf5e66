//! `watch(fut)` / `.watched()`: a future whose every poll is timed against the active
//! watchdogs' threshold.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::registry;

pin_project_lite::pin_project! {
    /// A future whose polls are timed; see [`watch`].
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::watchdog::WatchExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let answer = async { 42 }.watched().await;
    /// assert_eq!(answer, 42);
    /// # });
    /// ```
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct Watched<F> {
        #[pin]
        inner: F,
        site: &'static Location<'static>,
    }
}

/// Wraps `future` so that every poll longer than an active watchdog's `slow_poll`
/// threshold becomes a finding at the caller's location.
///
/// With no watchdog running, a watched poll costs one atomic load more than the bare
/// poll; with one running, two clock reads more (benches/watchdog.rs measures it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::watchdog::{self, Watchdog};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dog = Watchdog::builder().slow_poll(Duration::from_millis(5)).start()?;
/// watchdog::watch(async {
///     std::thread::sleep(Duration::from_millis(20)); // a blocking call in async code
/// })
/// .await;
/// let report = dog.report();
/// let finding = &report.findings()[0];
/// assert!(finding.site().file().ends_with(".rs"));
/// assert!(finding.worst() >= Duration::from_millis(20));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[track_caller]
pub fn watch<F: Future>(future: F) -> Watched<F> {
    Watched {
        inner: future,
        site: Location::caller(),
    }
}

/// `.watched()` on any future: the method form of [`watch`].
///
/// # Examples
///
/// ```
/// use async_bridge::watchdog::WatchExt;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// assert_eq!(async { "ok" }.watched().await, "ok");
/// # });
/// ```
pub trait WatchExt: Future + Sized {
    /// Wraps the future in [`watch`], recording the caller's location.
    #[track_caller]
    fn watched(self) -> Watched<Self> {
        Watched {
            inner: self,
            site: Location::caller(),
        }
    }
}

impl<F: Future> WatchExt for F {}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(threshold) = registry::threshold() else {
            return this.inner.poll(cx);
        };
        let start = Instant::now();
        let poll = this.inner.poll(cx);
        let took = start.elapsed();
        if took >= threshold {
            registry::record_slow_poll(this.site, took);
        }
        poll
    }
}
