//! `Offloader`: a named lane onto tokio's blocking pool, with limits, a timeout,
//! cancellation, stats and a bounded shutdown.
//!
//! How it works: a lane holds at most `max_concurrency` *drainers*, each a
//! `spawn_blocking` task that runs one closure and then keeps taking the next queued one
//! on the thread it already holds. A call that finds an idle drainer hands its closure
//! to it; one that finds a free slot starts a drainer; one that finds neither joins the
//! FIFO queue as a boxed closure (no thread, no task); one that finds the queue full is
//! rejected at once. In a burst this costs one thread hand-off per drainer instead of
//! one per call.
//!
//! A drainer that finds the queue empty lingers for a moment (`lane::LINGER`) before it gives its
//! thread back. Without that, a lane whose queue empties between two batches of callers
//! would start a new drainer while the old one's thread is not yet idle in tokio's pool,
//! and the pool would start a new thread each time: a 100k burst took 42 threads through
//! a lane of 4 before drainers lingered.

//!
//! - `builder`: [`OffloaderBuilder`];
//! - `lane`: the engine (admission, drainers, the queue, shutdown's bookkeeping);
//! - `call`: [`OffloadCall`], the future a caller awaits.

mod builder;
mod call;
mod lane;
#[cfg(all(test, async_bridge_loom))]
mod loom;

use std::fmt;
use std::panic::Location;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, Either};
use tokio_util::sync::CancellationToken;

pub use builder::OffloaderBuilder;
pub use call::OffloadCall;
use lane::Lane;

use crate::origin::Site;
use crate::shutdown::ShutdownReport;
use crate::timer::Deadline;

/// A named lane onto tokio's blocking pool, with limits.
///
/// At most `max_concurrency` closures of the lane run at once, however many callers
/// there are; up to `max_queue` more callers wait, in FIFO order and without holding a
/// thread; callers beyond that get an [`is_rejected`](OffloadError::is_rejected) error at
/// once. An optional timeout covers waiting plus running. Panics come back as
/// [`is_panic`](OffloadError::is_panic) errors with their payload.
///
/// Clones share one lane. Dropping the last clone never blocks and never panics: queued
/// calls still run. Use [`shutdown`](Self::shutdown) to stop a lane with a bound.
///
/// # When not to use it
///
/// - CPU-bound work belongs on rayon: use [`compute`](crate::compute) or a
///   [`ComputePool`](crate::ComputePool). The blocking pool is sized for waiting threads.
/// - A legacy object that must stay on one thread (a SQLite connection, an `Rc`) needs a
///   dedicated thread, not a lane whose closures may run on any pool thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = Offloader::builder("legacy-db")
///     .max_concurrency(8)
///     .max_queue(1_000)
///     .timeout(Duration::from_secs(2))
///     .build()?;
///
/// let rows = db.run(|| vec!["alice", "bob"]).await?;
/// assert_eq!(rows.len(), 2);
/// assert_eq!(db.stats().completed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[must_use = "an Offloader does nothing unless called"]
pub struct Offloader {
    lane: Arc<Lane>,
}

/// A snapshot of a lane's counters, from [`Offloader::stats`].
///
/// `queued` and `running` are the current numbers; the others count since the lane was
/// built.
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("stats").build().unwrap();
/// lane.run(|| ()).await.unwrap();
/// let _ = lane.run(|| panic!("boom")).await;
/// let stats = lane.stats();
/// assert_eq!((stats.completed, stats.panicked, stats.running), (1, 1, 0));
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Callers waiting for a slot now.
    pub queued: usize,
    /// Closures running now.
    pub running: usize,
    /// Closures that returned.
    pub completed: u64,
    /// Closures that panicked.
    pub panicked: u64,
    /// Calls turned away because the queue was full.
    pub rejected: u64,
    /// Calls that timed out, waiting or running.
    pub timed_out: u64,
    /// Calls whose caller went away (dropped the future) before they finished.
    pub cancelled: u64,
}

impl Offloader {
    /// Starts building a lane called `name`; the name appears in errors, reports and
    /// tracing spans.
    ///
    /// Defaults: `max_concurrency` 16, `max_queue` 1024, no timeout, the runtime that is
    /// current when a call is first polled.
    ///
    /// # Examples
    ///
    /// ```
    /// let lane = async_bridge::Offloader::builder("legacy-db").build().unwrap();
    /// assert_eq!(lane.name(), "legacy-db");
    /// ```
    pub fn builder(name: impl Into<String>) -> OffloaderBuilder {
        builder::OffloaderBuilder {
            name: name.into(),
            max_concurrency: 16,
            max_queue: 1024,
            timeout: None,
            handle: None,
        }
    }

    /// The lane's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let lane = async_bridge::Offloader::builder("sdk").build().unwrap();
    /// assert_eq!(lane.name(), "sdk");
    /// ```
    pub fn name(&self) -> &str {
        &self.lane.name
    }

    /// Runs `f` on the lane and awaits its value.
    ///
    /// Nothing happens until the future is polled. A future dropped while waiting leaves
    /// no trace (its queue place is freed and `f` never runs); one dropped while `f` runs
    /// lets `f` finish on its own.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("parser").build().unwrap();
    /// let n: usize = lane.run(|| "1,2,3".split(',').count()).await.unwrap();
    /// assert_eq!(n, 3);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// An [`OffloadError`]: the closure panicked, the call timed out, the queue was full,
    /// the lane is shut down, or there is no runtime to run on.
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> OffloadCall<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.call(Location::caller(), false, move |_| f())
    }

    /// Runs `f` on the lane, handing it a token that is cancelled when the caller drops
    /// the future, when the call times out, and when the lane shuts down.
    ///
    /// Nothing can stop a thread from outside; long-running closures should check the
    /// token between steps and return early.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("scanner")
    ///     .timeout(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    /// let err = lane
    ///     .run_cancellable(move |cancel: &CancellationToken| {
    ///         let _stopped = stopped_tx; // dropped when the scan returns
    ///         while !cancel.is_cancelled() {
    ///             std::hint::spin_loop(); // one step of a long scan
    ///         }
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// // The scan saw its token cancelled and returned (or never started, if the timeout
    /// // came first): either way the channel closes.
    /// assert!(stopped_rx.recv().is_err());
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    #[track_caller]
    pub fn run_cancellable<F, T>(&self, f: F) -> OffloadCall<T>
    where
        F: FnOnce(&CancellationToken) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.call(Location::caller(), true, move |token| {
            f(token.expect("a cancellable job always has a token"))
        })
    }

    /// A snapshot of the lane's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let lane = async_bridge::Offloader::builder("idle").build().unwrap();
    /// assert_eq!(lane.stats(), async_bridge::Stats::default());
    /// ```
    pub fn stats(&self) -> Stats {
        let (queued, running) = {
            let state = self.lane.state.lock();
            (state.queued, state.running)
        };
        let c = &self.lane.counters;
        Stats {
            queued,
            running,
            completed: c.completed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Shuts the lane down, waiting at most `grace` for running closures.
    ///
    /// New calls fail with [`is_shutdown`](OffloadError::is_shutdown), and so do the calls
    /// still queued; tokens of running closures are cancelled. Closures still running
    /// when `grace` ends are named in the report by call site and left to finish on
    /// their own (no thread is killed). Every clone of the lane sees the shutdown.
    ///
    /// Outside a runtime with timers, a helper thread times the grace period, so the
    /// bound holds on any executor.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("export").build().unwrap();
    /// let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    /// let call = tokio::spawn(lane.run_cancellable(move |cancel: &CancellationToken| {
    ///     started_tx.send(()).unwrap();
    ///     while !cancel.is_cancelled() {
    ///         std::hint::spin_loop();
    ///     }
    ///     "stopped early"
    /// }));
    /// started_rx.await.unwrap();
    /// let report = lane.shutdown(Duration::from_secs(10)).await;
    /// assert!(report.is_complete());
    /// assert_eq!(report.finished(), 1);
    /// assert_eq!(call.await.unwrap().unwrap(), "stopped early");
    /// # });
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let lane = &self.lane;
        let finished_before = lane.counters.finished();
        let abandoned = close(lane);
        let mut deadline = pin!(Deadline::new(grace));
        loop {
            let idle = lane.idle.notified();
            let mut idle = pin!(idle);
            idle.as_mut().enable();
            if lane.state.lock().running == 0 {
                break;
            }
            if let Either::Right(_) = future::select(idle, deadline.as_mut()).await {
                break;
            }
        }
        let still_running = lane.state.lock().sites.iter().flatten().copied().collect();
        ShutdownReport::new(
            "lane",
            &lane.name,
            lane.counters.finished() - finished_before,
            abandoned,
            still_running,
        )
    }

    fn call<F, T>(&self, site: Site, cancellable: bool, f: F) -> OffloadCall<T>
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        OffloadCall::new(&self.lane, site, cancellable, f)
    }
}

impl fmt::Debug for Offloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lane = &self.lane;
        f.debug_struct("Offloader")
            .field("name", &lane.name)
            .field("max_concurrency", &lane.max_concurrency)
            .field("max_queue", &lane.max_queue)
            .field("timeout", &lane.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Shutdown's first step, on its own for the loom models: stops admission, abandons the
/// queue (its callers fail with `is_shutdown`), lets idle drainers go and cancels the
/// lane's tokens. Returns how many queued calls were abandoned.
fn close(lane: &Lane) -> usize {
    let (abandoned, tickets) = {
        let mut state = lane.state.lock();
        state.closed = true;
        Lane::abandon_queue(&mut state)
    };
    lane.wake.notify_all(); // idle drainers give their threads back
    drop(tickets); // outside the lock: fails their callers with `is_shutdown`
    lane.shutdown.cancel();
    abandoned
}
