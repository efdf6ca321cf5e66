//! CPU-bound work on rayon: the [`compute`] function and the [`ComputePool`] handle.

use std::fmt;
use std::future::Future;
use std::mem;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{self, ready, Poll};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::ConfigError;
use crate::job::{self, Outcome, Reply};
use crate::lane::{Lane, OffloadCall, Runner};
use crate::origin::{Kind, Origin, Site};
use crate::seam;
use crate::shutdown::ShutdownReport;
use crate::Stats;

/// Runs CPU-bound code on rayon and awaits its result.
///
/// Where it runs: on rayon's global pool (through `rayon::spawn`). When the future is
/// polled on a thread of a rayon pool (a `block_on(compute(..))` inside a rayon job, or
/// inside a [`ComputePool`] closure), `f` runs right there instead, as `rayon::join` runs
/// its second half: queueing it behind the waiting thread could wait forever. `f` then
/// runs in that thread's context: inside a `Runtime::block_on` there, the runtime is
/// entered, and `f` cannot start or drop a runtime of its own (tokio panics, and the
/// panic resumes in the caller) as it could on a rayon thread of its own.
///
/// Hashing, compression, parsing, image work: anything that keeps a core busy belongs on
/// a pool sized to the cores, not on tokio's blocking pool (sized for threads that wait)
/// and never on the executor. Nothing happens until the future is first polled; if it is
/// dropped before `f` starts, `f` is skipped.
///
/// The future needs no runtime: it can be awaited on any executor. Waiting for it never
/// blocks a thread, and it does not spend tokio's cooperative budget. Its first poll
/// hands `f` to rayon and asks to be polled again (a yield) before it registers to be
/// woken, so that ten thousand of them awaited together (`join_all`) are all submitted
/// before any is waited for, and most are found finished without a wake-up from a rayon
/// thread; awaited alone, that costs one more poll.
///
/// # Examples
///
/// ```
/// use async_bridge::compute;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let data: Vec<u64> = (1..=1_000).collect();
/// let sum = compute(move || data.iter().sum::<u64>()).await;
/// assert_eq!(sum, 500_500);
/// # });
/// ```
///
/// # Panics
///
/// A panic in `f` resumes in the caller when the future is awaited, with its payload.
#[track_caller]
pub fn compute<F, T>(f: F) -> impl Future<Output = T> + Send
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Compute {
        step: Step::Start(f, Location::caller()),
    }
}
/// The future of [`compute`]: a hand-written state machine rather than an `async`
/// block, so that it is only as large as the closure, a call site and a tag (24 bytes
/// for a closure of one word, where the `async` block took 48): ten thousand of them
/// joined are ten thousand of the joining stream's task allocations, each that much
/// larger.
struct Compute<F, T> {
    step: Step<F, T>,
}

enum Step<F, T> {
    /// Not polled yet: nothing submitted.
    Start(F, Site),
    /// Under the virtual-time harness (seam rule 7). Boxed: the call is large, and a
    /// future that held it inline would be as large on every path.
    Harness(Pin<Box<OffloadCall<T>>>),
    /// Submitted: the job's reply.
    Waiting(Reply<T>),
    /// The value was returned.
    Done,
}

// `F` is moved out on the first poll and never pinned; the other fields are `Unpin`.
impl<F, T> Unpin for Compute<F, T> {}

impl<F, T> Future for Compute<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<T> {
        let this = &mut *self;
        loop {
            match &mut this.step {
                Step::Start(..) => {
                    let Step::Start(f, site) = mem::replace(&mut this.step, Step::Done) else {
                        unreachable!()
                    };
                    if this.submit(f, site, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Step::Harness(call) => {
                    let result = ready!(call.as_mut().poll(cx));
                    this.step = Step::Done;
                    return match result {
                        Ok(value) => Poll::Ready(value),
                        Err(err) if err.is_panic() => job::resume(err.into_panic()),
                        Err(err) => panic!("compute under the test harness failed: {err}"),
                    };
                }
                Step::Waiting(reply) => {
                    let outcome = ready!(Pin::new(reply).poll(cx));
                    this.step = Step::Done;
                    return match outcome {
                        Outcome::Completed(value) => Poll::Ready(value),
                        Outcome::Panicked(payload) => job::resume(payload),
                        Outcome::Dropped => {
                            unreachable!("rayon runs or keeps every job it is given")
                        }
                    };
                }
                Step::Done => panic!("`compute` future polled after completion"),
            }
        }
    }
}

impl<F, T> Compute<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// The first poll: hands the job to rayon (or to the harness's pool, or runs it
    /// here on a rayon thread) and moves to the next step. `Pending` when it asked to be
    /// polled again.
    fn submit(&mut self, f: F, site: Site, cx: &mut task::Context<'_>) -> Poll<()> {
        let on_rayon = rayon::current_thread_index().is_some();
        if !on_rayon {
            if let Some(pool) = seam::compute_pool() {
                self.step = Step::Harness(Box::pin(OffloadCall::new(
                    &pool.lane,
                    site,
                    false,
                    move |_| f(),
                )));
                return Poll::Ready(());
            }
        }
        let (ticket, reply) = job::pair(Origin::new(Kind::Compute, None, site), None);
        if on_rayon {
            // Polled on a rayon thread (a facade inside a rayon job): `rayon::spawn` would
            // queue the job on this thread's own pool, whose threads may all be waiting
            // like this one. Run it here instead, as `rayon::join` would.
            ticket.run(|_| f());
            self.step = Step::Waiting(reply);
            return Poll::Ready(());
        }
        rayon::spawn(move || {
            ticket.run(|_| f());
        });
        let done = reply.is_done();
        self.step = Step::Waiting(reply);
        if done {
            return Poll::Ready(());
        }
        // Asks to be polled again before it registers to be woken: a caller that polls
        // many of these together (a `join_all`, a `FuturesUnordered`) submits every job
        // before it waits for any, and by its second look most have finished, so they
        // cost no wake-up from a rayon thread (the cross-core half of a hop). Alone, it
        // costs one more poll of a future that is waiting anyway.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A named rayon pool for CPU-bound work, with an async API and the limits of an
/// [`Offloader`](crate::Offloader).
///
/// Use one when a kind of CPU work must not compete with the rest of the process on
/// rayon's global pool (a fixed share of cores for report generation, say), when its
/// threads should carry a name, or when a burst of CPU jobs needs a bound: at most
/// `threads` jobs run at once, up to `max_queue` more wait in FIFO order (without a
/// thread each), and callers beyond that get an
/// [`is_rejected`](crate::OffloadError::is_rejected) error at once. An optional timeout covers
/// waiting plus running and cancels the job's token; a job whose caller went away before
/// it started is never run. Panics come back as [`is_panic`](crate::OffloadError::is_panic)
/// errors. [`stats`](Self::stats) and a bounded [`shutdown`](Self::shutdown) work as on a
/// lane (it is one, whose drainers are the pool's rayon threads).
///
/// Clones share one pool; its threads end when the last clone is dropped and its queued
/// jobs are done. Dropping never blocks.
///
/// # When not to use it
///
/// - Blocking IO or waiting: a rayon thread that waits keeps a core's worth of pool
///   idle. Use [`unblock`](crate::unblock) or an [`Offloader`](crate::Offloader).
/// - Work that calls back into the same pool and waits for it: with every thread
///   waiting, nothing could run it; such a call is refused with
///   [`is_would_deadlock`](crate::OffloadError::is_would_deadlock).
///
/// # Examples
///
/// ```
/// use async_bridge::ComputePool;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let reports = ComputePool::builder("reports").threads(2).build()?;
/// let digest = reports.run(|| (0u64..1_000_000).fold(0, |h, x| h ^ x.rotate_left(7))).await?;
/// assert_eq!(digest, (0u64..1_000_000).fold(0, |h, x| h ^ x.rotate_left(7)));
/// assert_eq!(reports.stats().completed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[must_use = "a ComputePool does nothing unless called"]
pub struct ComputePool {
    lane: Arc<Lane>,
}

/// Builds a [`ComputePool`]; see [`ComputePool::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let pool = async_bridge::ComputePool::builder("hashing")
///     .threads(1)
///     .max_queue(100)
///     .timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(pool.threads(), 1);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ComputePoolBuilder {
    name: String,
    threads: Option<usize>,
    max_queue: usize,
    timeout: Option<Duration>,
}

impl ComputePool {
    /// The lane, for its `tower::Service` face.
    #[cfg(feature = "tower")]
    pub(crate) fn lane(&self) -> &Arc<Lane> {
        &self.lane
    }

    /// Starts building a pool called `name`; its threads are named `name-0`, `name-1`, …
    ///
    /// Defaults: one thread per core, `max_queue` 1024, no timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::ComputePool::builder("parse").build().unwrap();
    /// assert_eq!(pool.name(), "parse");
    /// ```
    pub fn builder(name: impl Into<String>) -> ComputePoolBuilder {
        ComputePoolBuilder {
            name: name.into(),
            threads: None,
            max_queue: 1024,
            timeout: None,
        }
    }

    /// The pool's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::ComputePool::builder("zip").threads(1).build().unwrap();
    /// assert_eq!(pool.name(), "zip");
    /// ```
    pub fn name(&self) -> &str {
        &self.lane.name
    }

    /// How many threads the pool has.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::ComputePool::builder("zip").threads(3).build().unwrap();
    /// assert_eq!(pool.threads(), 3);
    /// ```
    pub fn threads(&self) -> usize {
        self.lane
            .threads()
            .expect("a compute pool's lane runs on rayon")
    }

    /// Runs `f` on the pool and awaits its value.
    ///
    /// Nothing happens until the future is polled; a future dropped before `f` starts
    /// means `f` never runs (it is skipped, and counted as cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::ComputePool::builder("math").threads(1).build().unwrap();
    /// assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
    /// assert!(pool.run(|| panic!("overflow")).await.unwrap_err().is_panic());
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// An [`OffloadError`](crate::OffloadError): `f` panicked, the call timed out, the queue was full, the
    /// pool is shut down, or the call came from one of the pool's own jobs with no
    /// thread free ([`is_would_deadlock`](crate::OffloadError::is_would_deadlock)).
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> OffloadCall<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        OffloadCall::new(&self.lane, Location::caller(), false, move |_| f())
    }

    /// Runs `f` on the pool, handing it a token that is cancelled when the caller drops
    /// the future, when the call times out, and when the pool shuts down.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::ComputePool::builder("search").threads(1).build().unwrap();
    /// let found = pool
    ///     .run_cancellable(|cancel: &CancellationToken| {
    ///         (0u64..).take_while(|_| !cancel.is_cancelled()).find(|n| n * n > 1_000)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(found, Some(32));
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
        OffloadCall::new(&self.lane, Location::caller(), true, move |token| {
            f(token.expect("a cancellable job always has a token"))
        })
    }

    /// A snapshot of the pool's counters (the same [`Stats`] as a lane's).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::ComputePool::builder("stats").threads(1).build().unwrap();
    /// pool.run(|| ()).await.unwrap();
    /// let stats = pool.stats();
    /// assert_eq!((stats.completed, stats.running, stats.queued), (1, 0, 0));
    /// # });
    /// ```
    pub fn stats(&self) -> Stats {
        self.lane.stats()
    }

    /// Shuts the pool down, waiting at most `grace` for running jobs.
    ///
    /// New calls and the calls still queued fail with
    /// [`is_shutdown`](crate::OffloadError::is_shutdown); tokens of running jobs are cancelled;
    /// jobs still running when `grace` ends are named in the report by call site and left
    /// to finish on their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::ComputePool::builder("batch").threads(1).build().unwrap();
    /// pool.run(|| 1 + 1).await.unwrap();
    /// let report = pool.shutdown(Duration::from_secs(1)).await;
    /// assert!(report.is_complete());
    /// assert!(pool.run(|| ()).await.unwrap_err().is_shutdown());
    /// # });
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.lane.shutdown(grace).await
    }
}

impl fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputePool")
            .field("name", &self.lane.name)
            .field("threads", &self.threads())
            .field("max_queue", &self.lane.max_queue)
            .field("timeout", &self.lane.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ComputePoolBuilder {
    /// The number of threads (default: one per core), which is also how many jobs run at
    /// once. Must be at least 1.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// At most this many jobs wait for a thread (default 1024); more are rejected at
    /// once. Zero means no waiting.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// Fails a job that has not finished within `after`, waiting plus running, with
    /// [`is_timeout`](crate::OffloadError::is_timeout), and cancels its token. Must not be zero.
    /// The caller's runtime must have timers enabled.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Builds the pool and starts its threads.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `threads` is zero, the timeout is zero, or the threads cannot
    /// be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = async_bridge::ComputePool::builder("none").threads(0).build().unwrap_err();
    /// assert!(err.to_string().contains("threads must be at least 1"));
    /// ```
    pub fn build(self) -> Result<ComputePool, ConfigError> {
        if self.threads == Some(0) {
            return Err(ConfigError::new(&self.name, "threads must be at least 1"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(&self.name, "timeout must not be zero"));
        }
        let prefix = match self.name.as_str() {
            "" => "async-bridge-compute".to_owned(),
            name => name.to_owned(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads.unwrap_or(0))
            .thread_name(move |i| format!("{prefix}-{i}"))
            .build()
            .map_err(|e| {
                ConfigError::with_source(
                    &self.name,
                    format!("cannot start the pool's threads: {e}"),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        let threads = pool.current_num_threads();
        Ok(ComputePool {
            lane: Arc::new(Lane::new(
                self.name.into(),
                threads,
                self.max_queue,
                self.timeout,
                Runner::Rayon(pool),
            )),
        })
    }
}
