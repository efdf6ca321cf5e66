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
//! A drainer that finds the queue empty lingers for [`LINGER`] before it gives its
//! thread back. Without that, a lane whose queue empties between two batches of callers
//! would start a new drainer while the old one's thread is not yet idle in tokio's pool,
//! and the pool would start a new thread each time: a 100k burst took 42 threads through
//! a lane of 4 before drainers lingered.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{self, Either};
use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::OffloadError;
use crate::error::ConfigError;
use crate::job::{self, Claim, Kind, Origin, Outcome, Ran, Reply};
use crate::shutdown::ShutdownReport;
use crate::timer::{self, Deadline};

type Site = &'static Location<'static>;

/// How long an idle drainer keeps its thread, waiting for the next call.
const LINGER: Duration = Duration::from_millis(2);

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

/// Builds an [`Offloader`]; see [`Offloader::builder`].
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// let lane = Offloader::builder("legacy-sdk").max_concurrency(4).max_queue(64).build().unwrap();
/// assert_eq!(lane.name(), "legacy-sdk");
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct OffloaderBuilder {
    name: String,
    max_concurrency: usize,
    max_queue: usize,
    timeout: Option<Duration>,
    handle: Option<Handle>,
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
        OffloaderBuilder {
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
    pub fn run<F, T>(&self, f: F) -> impl Future<Output = Result<T, OffloadError>> + Send
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
    pub fn run_cancellable<F, T>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, OffloadError>> + Send
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
        let (abandoned, tickets) = {
            let mut state = lane.state.lock();
            state.closed = true;
            Lane::abandon_queue(&mut state)
        };
        lane.wake.notify_all(); // idle drainers give their threads back
        drop(tickets); // outside the lock: fails their callers with `is_shutdown`
        lane.shutdown.cancel();
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

    fn call<F, T>(
        &self,
        site: Site,
        cancellable: bool,
        f: F,
    ) -> impl Future<Output = Result<T, OffloadError>> + Send
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let lane = Arc::clone(&self.lane);
        let mut start = Some((site, cancellable, f));
        let mut pending = None;
        // Hand-rolled rather than `async`: a queued caller's future stays small (100k
        // of them must fit in the memory target).
        future::poll_fn(move |cx| {
            if let Some((site, cancellable, f)) = start.take() {
                match lane.submit(site, cancellable, f) {
                    Ok(submitted) => pending = Some(submitted),
                    Err(err) => return Poll::Ready(Err(err)),
                }
            }
            let pending: &mut Pending<T> = pending.as_mut().expect("polled after completion");
            Pin::new(pending).poll(cx)
        })
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

impl OffloaderBuilder {
    /// At most this many closures of the lane run at once (default 16). Must be at least 1.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// At most this many callers wait for a slot (default 1024); more are rejected at
    /// once. Zero means no waiting: a call that finds every slot busy is rejected.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// Fails a call that has not finished within `after`, waiting plus running, with
    /// [`is_timeout`](OffloadError::is_timeout), and cancels its token. Must not be zero.
    /// The runtime must have timers enabled.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Runs the lane's closures on this runtime's blocking pool, wherever the calls come
    /// from (by default, the runtime current when a call is first polled).
    pub fn handle(mut self, handle: Handle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Builds the lane.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `max_concurrency` is zero or the timeout is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_bridge::Offloader;
    ///
    /// assert!(Offloader::builder("a").build().is_ok());
    /// let err = Offloader::builder("b").timeout(Duration::ZERO).build().unwrap_err();
    /// assert!(err.to_string().contains("timeout must not be zero"));
    /// ```
    pub fn build(self) -> Result<Offloader, ConfigError> {
        if self.max_concurrency == 0 {
            return Err(ConfigError::new(
                &self.name,
                "max_concurrency must be at least 1",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(&self.name, "timeout must not be zero"));
        }
        Ok(Offloader {
            lane: Arc::new(Lane {
                name: self.name.into(),
                max_concurrency: self.max_concurrency,
                max_queue: self.max_queue,
                timeout: self.timeout,
                handle: self.handle,
                shutdown: CancellationToken::new(),
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                idle: Notify::new(),
                counters: Counters::default(),
            }),
        })
    }
}

/// The shared state of a lane.
struct Lane {
    name: Arc<str>,
    max_concurrency: usize,
    max_queue: usize,
    timeout: Option<Duration>,
    handle: Option<Handle>,
    /// The parent of every job token; cancelled by `shutdown`.
    shutdown: CancellationToken,
    state: Mutex<State>,
    /// Wakes idle drainers: a call was queued for them, or the lane shut down.
    wake: Condvar,
    /// Notified when the last running closure ends.
    idle: Notify,
    counters: Counters,
}

#[derive(Default)]
struct State {
    /// Drainers holding a slot, idle ones included.
    drainers: usize,
    /// Drainers waiting for work.
    idle: usize,
    /// Idle drainers woken for a queued entry that have not yet left their wait.
    waking: usize,
    /// Closures running now.
    running: usize,
    /// Live entries waiting (the queue may also hold withdrawn ones, skipped when popped).
    queued: usize,
    queue: VecDeque<Entry>,
    closed: bool,
    /// What each drainer slot is running now, by call site.
    sites: Vec<Option<Site>>,
    free_slots: Vec<usize>,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    panicked: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
}

impl Counters {
    fn finished(&self) -> u64 {
        self.completed.load(Ordering::Relaxed) + self.panicked.load(Ordering::Relaxed)
    }
}

/// A job on its way through the lane.
struct Entry {
    /// Claimed by a drainer, or withdrawn by its caller: exactly one wins.
    claim: Arc<dyn Claim>,
    /// Runs the job, calling the drainer's bookkeeping before the caller sees the outcome.
    run: RunJob,
}

/// A type-erased job; its argument is the drainer's bookkeeping, run before the reply.
type RunJob = Box<dyn FnOnce(&mut dyn FnMut(Ran)) + Send>;

impl Entry {
    fn site(&self) -> Site {
        self.claim.origin().site
    }
}

impl Lane {
    /// Admits a call: starts it on a drainer, queues it, or fails it at once.
    fn submit<F, T>(
        self: &Arc<Self>,
        site: Site,
        cancellable: bool,
        f: F,
    ) -> Result<Pending<T>, OffloadError>
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = &self.name;
        let Some(handle) = self.handle.clone().or_else(|| Handle::try_current().ok()) else {
            return Err(OffloadError::no_runtime(
                name,
                "no tokio runtime: call the lane from inside one, or give the builder a `handle`",
            ));
        };
        let sleep = match self.timeout {
            None => None,
            Some(after) => Some(Box::pin(timer::sleep_on(&handle, after).ok_or_else(|| {
                OffloadError::no_runtime(
                    name,
                    "the lane has a timeout but the runtime has no timers: build it with `enable_time`",
                )
            })?)),
        };
        let token = cancellable.then(|| self.shutdown.child_token());
        let origin = Origin::new(Kind::Offload, Some(Arc::clone(name)), site);
        let (ticket, reply) = job::submit_queued(origin, token);
        let entry = Entry {
            claim: ticket.claim_handle(),
            run: Box::new(move |done: &mut dyn FnMut(Ran)| {
                ticket.run_and(f, done);
            }),
        };
        self.admit(entry, &handle)?;
        Ok(Pending {
            lane: Arc::clone(self),
            reply,
            sleep,
            settled: false,
        })
    }

    /// Turns a job's outcome into the caller's answer.
    fn answer<T>(&self, outcome: Outcome<T>) -> Result<T, OffloadError> {
        match outcome {
            Outcome::Done(value) => Ok(value),
            Outcome::Panicked(payload) => Err(OffloadError::panic(&self.name, payload)),
            Outcome::Dropped if self.state.lock().closed => Err(OffloadError::shutdown(&self.name)),
            Outcome::Dropped => Err(OffloadError::cancelled(&self.name)),
        }
    }

    /// Starts the entry on a new drainer, queues it, or rejects it.
    fn admit(self: &Arc<Self>, entry: Entry, handle: &Handle) -> Result<(), OffloadError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(OffloadError::shutdown(&self.name));
        }
        if state.queued < state.idle {
            // An idle drainer will take it at once. Wake one only if the drainers already
            // woken are fewer than the entries waiting: a burst of pushes wakes as many
            // drainers as it needs, not one syscall per push.
            state.queued += 1;
            entry.claim.runs_soon(); // under the harness: it holds the clock from now on
            state.queue.push_back(entry);
            if state.waking < state.queued.min(state.idle) {
                state.waking += 1;
                self.wake.notify_one();
            }
            Ok(())
        } else if state.drainers < self.max_concurrency {
            entry.claim.claim();
            state.drainers += 1;
            state.running += 1;
            let slot = state.free_slots.pop().unwrap_or_else(|| {
                state.sites.push(None);
                state.sites.len() - 1
            });
            state.sites[slot] = Some(entry.site());
            drop(state);
            let drainer = Drainer {
                lane: Arc::clone(self),
                slot,
                released: false,
            };
            job::spawn_blocking(handle, move || drainer.drain(entry));
            Ok(())
        } else if state.queued - state.idle < self.max_queue {
            state.queued += 1;
            state.queue.push_back(entry);
            Ok(())
        } else {
            drop(state);
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Err(OffloadError::rejected(&self.name, self.max_queue))
        }
    }

    /// The next live entry for the drainer in `slot`, waiting up to [`LINGER`] for one;
    /// `None` after releasing the slot.
    fn next(&self, slot: usize) -> Option<Entry> {
        let mut state = self.state.lock();
        let mut lingered = false;
        loop {
            if let Some(entry) = Self::pop(&mut state, slot) {
                return Some(entry);
            }
            if state.closed || lingered {
                self.release(state, slot);
                return None;
            }
            state.idle += 1;
            lingered = self.wake.wait_for(&mut state, LINGER).timed_out();
            state.idle -= 1;
            // Whether it was this drainer that was woken or not, one fewer is on its way.
            state.waking = state.waking.saturating_sub(1);
        }
    }

    /// Takes the first live entry of the queue for the drainer in `slot`.
    fn pop(state: &mut State, slot: usize) -> Option<Entry> {
        while let Some(entry) = state.queue.pop_front() {
            if entry.claim.claim() {
                state.queued -= 1;
                state.running += 1;
                state.sites[slot] = Some(entry.site());
                return Some(entry);
            }
        }
        None
    }

    fn release(&self, mut state: MutexGuard<'_, State>, slot: usize) {
        state.sites[slot] = None;
        state.free_slots.push(slot);
        state.drainers -= 1;
        if state.drainers > 0 {
            return;
        }
        // Normally the queue is empty here. It is not only when a drainer was dropped
        // without running (its runtime shut down): then nothing would ever run the queue,
        // so its callers are failed rather than left waiting.
        let (_, orphans) = Self::abandon_queue(&mut state);
        drop(state);
        drop(orphans);
    }

    /// Empties the queue, giving up its live entries (under the lock, so that a caller
    /// withdrawing at the same moment and this count each entry once). Returns how many
    /// were live, and the entries, to drop outside the lock.
    fn abandon_queue(state: &mut State) -> (usize, VecDeque<Entry>) {
        let entries = std::mem::take(&mut state.queue);
        let abandoned = entries.iter().filter(|e| e.claim.abandon()).count();
        state.queued -= abandoned;
        (abandoned, entries)
    }

    /// Bookkeeping for a closure that ended, done before its caller sees the outcome,
    /// and, under the same lock, the next entry for the drainer in `slot` if one waits.
    fn done(&self, slot: usize, ran: Ran) -> Option<Entry> {
        // Counted first: whoever sees `running` drop (shutdown) sees this count too.
        match ran {
            Ran::Completed => self.counters.completed.fetch_add(1, Ordering::Relaxed),
            Ran::Panicked => self.counters.panicked.fetch_add(1, Ordering::Relaxed),
            Ran::Skipped => 0,
        };
        let mut state = self.state.lock();
        state.sites[slot] = None;
        let next = Self::pop(&mut state, slot);
        self.end_running(&mut state);
        next
    }

    /// One closure fewer runs; tells shutdown when none does.
    fn end_running(&self, state: &mut State) {
        state.running -= 1;
        if state.running == 0 {
            self.idle.notify_waiters();
        }
    }

    /// A caller gave up on an entry that was still queued: free its place.
    fn forget_queued(&self) {
        let mut state = self.state.lock();
        state.queued -= 1;
        // Withdrawn entries stay in the deque until popped; compact when they dominate.
        if state.queue.len() > 2 * state.queued + 64 {
            state.queue.retain(|e| e.claim.is_waiting());
        }
    }
}

/// One `spawn_blocking` task of a lane: runs entries until the queue is empty.
struct Drainer {
    lane: Arc<Lane>,
    slot: usize,
    released: bool,
}

impl Drainer {
    fn drain(mut self, first: Entry) {
        let mut entry = first;
        loop {
            let (lane, slot) = (&self.lane, self.slot);
            let mut next = None;
            (entry.run)(&mut |ran| next = lane.done(slot, ran));
            match next.or_else(|| lane.next(slot)) {
                Some(next) => entry = next,
                None => {
                    self.released = true;
                    return;
                }
            }
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        // Only a drainer whose task was dropped before it ran (its runtime shut down)
        // gets here: its first entry, counted as running, never ran.
        if !self.released {
            let mut state = self.lane.state.lock();
            self.lane.end_running(&mut state);
            self.lane.release(state, self.slot);
        }
    }
}

/// A submitted call, awaited by its caller: the reply, the timeout, and the bookkeeping
/// for a caller that gives up.
struct Pending<T> {
    lane: Arc<Lane>,
    reply: Reply<T>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set once the caller has its answer (value, error or timeout).
    settled: bool,
}

impl<T> Pending<T> {
    /// Gives up on the call: a queued job is withdrawn (it never runs and its place is
    /// freed), a running one has its token cancelled.
    fn give_up(&self) {
        if self.reply.withdraw() {
            self.lane.forget_queued();
        } else {
            self.reply.cancel();
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, OffloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(outcome) = Pin::new(&mut this.reply).poll(cx) {
            this.settled = true;
            return Poll::Ready(this.lane.answer(outcome));
        }
        if let Some(sleep) = &mut this.sleep {
            if sleep.as_mut().poll(cx).is_ready() {
                this.settled = true;
                this.give_up();
                let lane = &this.lane;
                lane.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                let after = lane.timeout.unwrap_or_default();
                return Poll::Ready(Err(OffloadError::timeout(&lane.name, after)));
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if !self.settled {
            self.give_up();
            // Not when the work had finished and only its reply was never read.
            if !self.reply.is_done() {
                self.lane.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
