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
//! A drainer that finds the queue empty lingers for a moment before it gives its
//! thread back. Without that, a lane whose queue empties between two batches of callers
//! would start a new drainer while the old one's thread is not yet idle in tokio's pool,
//! and the pool would start a new thread each time: a 100k burst took 42 threads through
//! a lane of 4 before drainers lingered.
//!
//! Before it lingers, one drainer at a time keeps looking at the queue for up to 20 µs,
//! giving its core to any thread that wants it between looks. A caller whose calls come
//! a little slower than the lane runs them (a `tower` stack, which makes each call as
//! it polls it) otherwise found the drainers asleep at nearly every call and paid a
//! wake-up for each. A lane that goes quiet spends one such look, then waits on a
//! condvar, costing no CPU.

//!
//! The engine (admission, drainers, the queue, shutdown's bookkeeping) is the crate's
//! lane (`crate::lane`), which a [`ComputePool`](crate::ComputePool) shares with rayon
//! drainers; here are the public handle and its builder.

mod builder;

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use builder::OffloaderBuilder;

use crate::lane::{Lane, OffloadCall};
use crate::origin::Site;
use crate::shutdown::ShutdownReport;
use crate::stats::Stats;

/// A named lane onto tokio's blocking pool, with limits.
///
/// At most `max_concurrency` closures of the lane run at once, however many callers
/// there are; up to `max_queue` more callers wait, in FIFO order and without holding a
/// thread; callers beyond that get an [`is_rejected`](crate::OffloadError::is_rejected) error at
/// once. An optional timeout covers waiting plus running. Panics come back as
/// [`is_panic`](crate::OffloadError::is_panic) errors with their payload.
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

impl Offloader {
    /// The lane, for its `tower::Service` face.
    #[cfg(feature = "tower")]
    pub(crate) fn lane(&self) -> &Arc<Lane> {
        &self.lane
    }

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
    /// no trace (its queue place is freed and `f` never runs; `f` itself is dropped later,
    /// by the drainer that skips it, or on the runtime's blocking pool when such calls
    /// pile up and a caller clears them from the queue); one dropped while `f` runs lets
    /// `f` finish on its own.
    ///
    /// # Waiting for the reply
    ///
    /// A call that a drainer not running anything takes at once (the lane's calls come
    /// one after another) is looked for by its caller, as a [`Worker`](crate::Worker)'s
    /// is (see [`Worker::call`](crate::Worker::call)): while the lane's recent calls were
    /// answered within 50 µs, the future yields (tokio's `yield_now`) and is polled
    /// again for up to 50 µs before it lets its thread sleep, and the drainer looks at
    /// the queue for up to 20 µs before it sleeps. On a virtual machine, where waking a
    /// halted vCPU takes 20 µs or more, an awaited call of a quick closure then takes
    /// 2–3 µs instead of 13–30. The look stops by itself after four slower answers in a
    /// row (a lane whose closures take milliseconds never looks), and never happens on a
    /// single core. A caller on the CPU the lane's drainer last answered on gives its
    /// core away between looks, as a worker's does.
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
    /// An [`OffloadError`](crate::OffloadError): the closure panicked, the call timed out, the queue was full,
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

    /// As [`run_cancellable`](Self::run_cancellable), with an interrupter for this call:
    /// when the call is given up while `f` runs (its caller dropped the future, it timed
    /// out, or the lane shuts down), the lane fires `interrupter` from the cancelling
    /// side, to stop `f` where a token cannot reach it: `shutdown` a clone of the socket
    /// a legacy client is stuck reading, `kill` a child process. It never runs on `f`'s
    /// thread, never once `f` has returned, and is fired again every few milliseconds
    /// until `f` returns (so it must be cheap and harmless when repeated).
    ///
    /// # When not to use it
    ///
    /// When `f` can check its token between steps, the token is enough. For a legacy
    /// object that lives on one thread, build a [`Worker`](crate::Worker) with an
    /// [`interrupter`](crate::WorkerBuilder::interrupter) instead: it is taken once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{Shutdown, TcpListener, TcpStream};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let silent = TcpListener::bind("127.0.0.1:0")?; // accepts, never answers
    /// let mut client = TcpStream::connect(silent.local_addr()?)?;
    /// let socket = client.try_clone()?;
    /// let lane = async_bridge::Offloader::builder("legacy-client")
    ///     .timeout(Duration::from_millis(50))
    ///     .build()?;
    /// let err = lane
    ///     .run_with_interrupter(
    ///         move |_| client.read(&mut [0; 64]), // stuck until the socket is shut
    ///         move || {
    ///             let _ = socket.shutdown(Shutdown::Both);
    ///         },
    ///     )
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// // The read returned when its socket was shut: the lane's slot is free again.
    /// assert_eq!(lane.run(|| 1).await?, 1);
    /// # drop(silent);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    #[track_caller]
    pub fn run_with_interrupter<F, T, I>(&self, f: F, interrupter: I) -> OffloadCall<T>
    where
        F: FnOnce(&CancellationToken) -> T + Send + 'static,
        T: Send + 'static,
        I: Fn() + Send + Sync + 'static,
    {
        OffloadCall::with_interrupter(
            &self.lane,
            Location::caller(),
            true,
            Some(Arc::new(interrupter)),
            move |token| f(token.expect("a cancellable job always has a token")),
        )
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
        self.lane.stats()
    }

    /// Shuts the lane down, waiting at most `grace` for running closures.
    ///
    /// New calls fail with [`is_shutdown`](crate::OffloadError::is_shutdown), and so do the calls
    /// still queued; tokens of running closures are cancelled. Closures still running
    /// when `grace` ends are named in the report by call site and left to finish on
    /// their own (no thread is killed). Every clone of the lane sees the shutdown.
    /// The closures given up are dropped where blocking is allowed (in a multi-thread
    /// runtime, through `block_in_place`), so one that owns a runtime or blocks in its
    /// `Drop` does not panic or stall the executor; on a current_thread runtime they are
    /// dropped in place.
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
        self.lane.shutdown(grace).await
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
