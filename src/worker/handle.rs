//! `Worker<T>`: one thread that owns a thread-affine object, with an async API.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lease::{self, Lease};
use super::mailbox::{Mailbox, Sender};
use super::{shutdown, WorkerBuilder, WorkerError};

/// One dedicated thread that owns a legacy object, and an async API to call it.
///
/// Many legacy objects must stay on one thread: a SQLite connection, a C library's
/// handle, anything holding an `Rc` or a `RefCell`. A `Worker` builds the object on its
/// own thread (named after the worker) with a *maker* closure, and runs each call
/// `|obj: &mut T| ...` there, one at a time, in the order they were made. `T` is never
/// moved: it need not be `Send`, and it is dropped on its thread.
///
/// - **Bounded mailbox.** Calls wait in a mailbox of [`mailbox`](WorkerBuilder::mailbox)
///   places; callers beyond that wait for room in FIFO order, holding no thread. Sync
///   callers ([`call_blocking`](Self::call_blocking)) share the same queue.
/// - **Panics** come back to their caller as [`is_panic`](WorkerError::is_panic) errors
///   with the payload; the worker goes on with the next call (see
///   [`AfterPanic`](crate::AfterPanic) for what happens to the object).
/// - **Cancellation.** A call whose future is dropped before it starts never runs; one
///   that has started can watch a token ([`call_cancellable`](Self::call_cancellable)).
/// - **Clones** share the worker. When the last clone is dropped, the calls already
///   made still run, then the object is dropped on its thread and the thread ends.
///   Dropping never blocks and never panics, inside or outside a runtime.
///   [`shutdown`](Self::shutdown) stops it with a bound instead.
///
/// # When not to use it
///
/// - Stateless blocking calls (a file read, a DNS lookup) need no dedicated thread:
///   use [`unblock`](crate::unblock) or an [`Offloader`](crate::Offloader).
/// - CPU-bound work belongs on rayon: [`compute`](crate::compute).
/// - One object serialises every call. If the object can be duplicated (another
///   connection to the same database), a [`WorkerPool`](crate::WorkerPool) serves calls
///   in parallel.
///
/// # Examples
///
/// ```
/// use async_bridge::Worker;
/// use rusqlite::Connection;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = Worker::builder("orders-db")
///     .mailbox(1_024)
///     .spawn(|| Connection::open_in_memory())?;   // built on the worker's thread
///
/// db.call(|conn| conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
///     .await??;
/// let inserted = db
///     .call(|conn| conn.execute("INSERT INTO orders (total) VALUES (?1)", [42]))
///     .await??;
/// assert_eq!(inserted, 1);
///
/// let total: i64 = db
///     .call(|conn| conn.query_row("SELECT SUM(total) FROM orders", [], |row| row.get(0)))
///     .await??;
/// assert_eq!(total, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// The object need not be `Send`:
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use async_bridge::Worker;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = Worker::builder("cache").spawn(|| Ok::<_, std::io::Error>(Rc::new(RefCell::new(Vec::new()))))?;
/// cache.call(|c| c.borrow_mut().push("a")).await?;
/// assert_eq!(cache.call(|c| Rc::strong_count(c) + c.borrow().len()).await?, 2);
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
#[must_use = "a Worker does nothing unless called"]
pub struct Worker<T: 'static> {
    link: Sender<T>,
}

impl<T: 'static> Worker<T> {
    /// Starts building a worker called `name`; the name is its thread's name and
    /// appears in errors, reports and tracing spans.
    ///
    /// Defaults: a mailbox of 1024 calls, [`AfterPanic::Keep`](crate::AfterPanic::Keep).
    /// The object's type `T` is inferred from the maker given to
    /// [`spawn`](WorkerBuilder::spawn), so `Worker::builder("name")` needs no
    /// annotation ([`WorkerBuilder::new`] is the same builder).
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = async_bridge::Worker::builder("legacy-sdk")
    ///     .spawn(|| Ok::<_, std::io::Error>(7u8))
    ///     .unwrap();
    /// assert_eq!(worker.name(), "legacy-sdk");
    /// ```
    pub fn builder(name: impl Into<String>) -> WorkerBuilder<T> {
        WorkerBuilder::new(name)
    }
}

impl<T: 'static> Worker<T> {
    pub(crate) fn from_sender(link: Sender<T>) -> Self {
        Worker { link }
    }

    fn shared(&self) -> &Arc<Mailbox<T>> {
        self.link.shared()
    }

    /// As [`call`](Self::call), from `site`, as the named future (for `WorkerService`).
    #[cfg(feature = "tower")]
    pub(crate) fn call_at<F, R>(&self, site: crate::origin::Site, f: F) -> super::Call<T, R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared().call(site, false, move |object, _| f(object))
    }

    /// The worker's name (also its thread's name).
    ///
    /// # Examples
    ///
    /// ```
    /// let w = async_bridge::Worker::builder("db").spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// assert_eq!(w.name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// Runs `f` with the object on the worker's thread and awaits its value.
    ///
    /// Nothing happens until the future is polled. It then takes a place in the
    /// mailbox, or waits for one (FIFO, holding no thread). A future dropped before its
    /// call starts leaves no trace: `f` never runs (once in the mailbox, `f` is dropped
    /// later, by the worker's thread, or on the runtime's blocking pool when such calls
    /// pile up and a caller clears them from the mailbox). One dropped while `f` runs
    /// lets `f` finish. The future needs no runtime: it can be awaited on any executor.
    ///
    /// # Waiting for the reply
    ///
    /// A call that finds the worker idle runs at once, and while the worker's recent
    /// callers had their answers within 50 µs of their calls, its caller first looks for
    /// its answer rather than let its thread sleep: for up to 50 µs the future yields
    /// (tokio's `yield_now`: the executor runs its other tasks first) and is polled
    /// again. The worker's thread likewise looks for its next call for up to 50 µs
    /// before it sleeps, giving its core away between looks. Neither looks where the
    /// process has a single core (`std::thread::available_parallelism`), where a look
    /// would only keep the other side from running. On a virtual machine, where a sleeping thread lets its vCPU halt
    /// and waking a halted vCPU takes 20 µs or more, this makes an awaited call of a
    /// quick closure take 1–2 µs instead of 45, for less CPU than the wake-ups cost. Both
    /// looks stop by themselves when the answers or the calls come slower than that
    /// (four slow ones in a row), so a worker whose calls take milliseconds, or an idle
    /// one, costs no CPU looking. A caller whose thread is on the CPU the worker's thread
    /// last answered on gives its core away between looks (`sched_yield`), so that the
    /// worker can run the call at once (on Linux on x86 and x86_64, where asking a
    /// thread's CPU costs no system call).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let words = async_bridge::Worker::builder("words")
    ///     .spawn(|| Ok::<_, std::io::Error>(vec!["legacy"]))
    ///     .unwrap();
    /// words.call(|w| w.push("async")).await.unwrap();
    /// assert_eq!(words.call(|w| w.join(" ")).await.unwrap(), "legacy async");
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// A [`WorkerError`]: `f` panicked ([`is_panic`](WorkerError::is_panic)), the worker
    /// is shut down or stopped ([`is_shutdown`](WorkerError::is_shutdown)), or the future
    /// was polled on the worker's own thread, where waiting for the worker can never end
    /// ([`is_would_deadlock`](WorkerError::is_would_deadlock)).
    #[track_caller]
    pub fn call<F, R>(&self, f: F) -> impl Future<Output = Result<R, WorkerError>> + Send
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared()
            .call(Location::caller(), false, move |object, _| f(object))
    }

    /// Runs `f` with the object and a token that is cancelled when the caller drops
    /// the future and when the worker shuts down.
    ///
    /// Nothing can stop a thread from outside; a long call should check the token
    /// between steps and return early.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let scanner = async_bridge::Worker::builder("scanner")
    ///     .spawn(|| Ok::<_, std::io::Error>(0u64))
    ///     .unwrap();
    /// let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    /// let scan = scanner.call_cancellable(move |rows: &mut u64, cancel: &CancellationToken| {
    ///     started_tx.send(()).unwrap();
    ///     loop {
    ///         *rows += 1; // one step of a long scan
    ///         if cancel.is_cancelled() {
    ///             break;
    ///         }
    ///         std::hint::spin_loop();
    ///     }
    /// });
    /// let scan = tokio::spawn(scan);
    /// started_rx.await.unwrap();
    /// scan.abort(); // the caller gives up: the token is cancelled, the scan stops
    /// assert!(scanner.call(|rows| *rows).await.unwrap() > 0);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    #[track_caller]
    pub fn call_cancellable<F, R>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, WorkerError>> + Send
    where
        F: FnOnce(&mut T, &CancellationToken) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared()
            .call(Location::caller(), true, move |object, token| {
                f(
                    object,
                    token.expect("a cancellable call always has a token"),
                )
            })
    }

    /// Runs `f` with the object on the worker's thread and blocks until it returns: the
    /// entry for sync callers, sharing the mailbox (and its order) with async ones.
    ///
    /// It waits through [`block_on`](crate::block_on), so it follows the same rules:
    /// it works from a plain thread, a blocking pool thread, a rayon thread and a
    /// multi-thread runtime worker (through `block_in_place`, so the worker's other tasks
    /// move on); from the thread of a current_thread runtime, and from the worker's own
    /// thread, it refuses with [`is_would_deadlock`](WorkerError::is_would_deadlock)
    /// instead of hanging, and `f` does not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Worker;
    ///
    /// // A sync function in a legacy codebase.
    /// fn count_orders(db: &Worker<rusqlite::Connection>) -> Result<i64, Box<dyn std::error::Error>> {
    ///     Ok(db.call_blocking(|c| c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0)))??)
    /// }
    ///
    /// let db = Worker::builder("orders-db").spawn(rusqlite::Connection::open_in_memory).unwrap();
    /// db.call_blocking(|c| c.execute_batch("CREATE TABLE orders (id INTEGER)")).unwrap().unwrap();
    /// assert_eq!(count_orders(&db).unwrap(), 0);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), plus [`is_would_deadlock`](WorkerError::is_would_deadlock)
    /// as above.
    #[track_caller]
    pub fn call_blocking<F, R>(&self, f: F) -> Result<R, WorkerError>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let shared = self.shared();
        if shared.on_own_thread() {
            return Err(WorkerError::own_thread(&shared.name));
        }
        let call = self.call(f);
        crate::block_on(call).unwrap_or_else(|err| Err(WorkerError::facade(&shared.name, err)))
    }

    /// A snapshot of the worker's counters, in the [`Stats`](crate::Stats) shape every
    /// handle shares. A mailbox makes callers wait, it does not turn them away:
    /// `rejected` counts only the calls a [`Lease`](crate::Lease) turned away because it
    /// had ended.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let w = async_bridge::Worker::builder("stats").spawn(|| Ok::<_, std::io::Error>(()))?;
    /// w.call(|_| ()).await?;
    /// let _ = w.call(|_| panic!("boom")).await;
    /// let stats = w.stats();
    /// assert_eq!((stats.submitted, stats.completed, stats.panicked), (2, 1, 1));
    /// assert_eq!((stats.queued, stats.running), (0, 0));
    /// # Ok::<(), async_bridge::WorkerError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> crate::Stats {
        let shared = self.shared();
        let (queued, running) = shared.now();
        shared.counters.snapshot(queued, running)
    }

    /// Takes a [`Lease`]: exclusive, ordered access to the object across several calls
    /// with awaits in between (a transaction, say). Resolves once the lease holds the
    /// object: callers before it in the mailbox have run, callers after it wait until it
    /// ends (FIFO, holding no thread). See [`Lease`] for how it ends and the release hook.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let counter = async_bridge::Worker::builder("counter").spawn(|| Ok::<_, std::io::Error>(0u32))?;
    /// let mut lease = counter.lease().await?;
    /// let seen = lease.call(|n| *n).await?;
    /// tokio::task::yield_now().await; // nobody else can touch the counter meanwhile
    /// lease.call(move |n| *n = seen + 1).await?;
    /// lease.finish().await?;
    /// assert_eq!(counter.call(|n| *n).await?, 1);
    /// # Ok::<(), async_bridge::WorkerError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call): the worker is shut down or stopped, or the lease was
    /// asked for on the worker's own thread (inside one of its calls), where it would
    /// wait for itself ([`is_would_deadlock`](WorkerError::is_would_deadlock)).
    #[track_caller]
    pub fn lease(&self) -> impl Future<Output = Result<Lease<T>, WorkerError>> + Send {
        let shared = self.shared();
        lease::lease(
            shared,
            self.link.clone(),
            Location::caller(),
            shared.lease_limit,
            shared.release_hook.clone(),
        )
    }

    /// Shuts the worker down, waiting at most `grace`, and reports.
    ///
    /// New calls and callers waiting for room fail with
    /// [`is_shutdown`](WorkerError::is_shutdown) at once; the tokens of
    /// [`call_cancellable`](Self::call_cancellable) calls are cancelled. Calls already in
    /// the mailbox keep running during `grace`; those left when it ends fail with
    /// `is_shutdown`. A call still running then is named in the report and left to
    /// finish (no thread is killed); the object is dropped on its thread after it.
    /// Every clone sees the shutdown. The calls given up are dropped where blocking is
    /// allowed (in a multi-thread runtime, through `block_in_place`; in place on a
    /// current_thread runtime), as the lanes' are.
    ///
    /// The bound holds on any executor: without a tokio timer at hand, a helper thread
    /// times the grace period.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::Poll;
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let w = async_bridge::Worker::builder("export").spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    /// let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    /// let stuck = tokio::spawn(w.call(move |_| {
    ///     started_tx.send(()).unwrap();
    ///     release_rx.recv().unwrap(); // a call that will not end by itself
    /// }));
    /// started_rx.await.unwrap();
    /// // A call polled once: it has its place in the mailbox, behind the stuck one.
    /// let mut queued = Box::pin(w.call(|_| "never runs"));
    /// let first = std::future::poll_fn(|cx| Poll::Ready(queued.as_mut().poll(cx))).await;
    /// assert!(first.is_pending());
    ///
    /// let report = w.shutdown(Duration::from_millis(20)).await;
    /// assert!(!report.is_complete());
    /// assert_eq!(report.still_running().len(), 1);
    /// assert_eq!(report.abandoned(), 1); // the queued call, failed instead of run
    /// assert!(queued.await.unwrap_err().is_shutdown());
    /// release_tx.send(()).unwrap();
    /// stuck.await.unwrap().unwrap();
    /// # });
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> crate::ShutdownReport {
        let shared = self.shared();
        shutdown::shutdown(&shared.name, std::slice::from_ref(shared), grace).await
    }
}

impl<T: 'static> Clone for Worker<T> {
    fn clone(&self) -> Self {
        Worker {
            link: self.link.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for Worker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Worker")
            .field("name", &shared.name)
            .field("pending", &shared.load())
            .field("stopped", &shared.is_stopped())
            .finish()
    }
}
