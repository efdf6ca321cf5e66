//! `WorkerPool<T>`: several workers, each owning its own object, behind one handle.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lease::{self, Lease};
use super::mailbox::{Mailbox, Sender};
use super::{shutdown, WorkerError, WorkerPoolBuilder};

/// Several [`Worker`](crate::Worker)s, each with its own thread and its own object,
/// behind one handle that routes each call to the least-loaded worker.
///
/// For legacy objects that can be duplicated and used in parallel: several connections
/// to one SQLite database in WAL mode (readers in parallel, writers queued by SQLite),
/// several instances of a C library's handle. Each worker keeps everything a
/// [`Worker`](crate::Worker) promises (its own bounded mailbox, panics returned, the
/// object built and dropped on its thread); calls go to the worker with the fewest
/// calls pending, so one slow call does not hold up calls that another worker could
/// serve.
///
/// # When not to use it
///
/// - When calls must see each other's effects in order on one object (a transaction
///   spread over several calls, a session's state), use one [`Worker`](crate::Worker):
///   two calls through a pool may run on different objects, in any order.
/// - Stateless blocking calls need no dedicated threads: use an
///   [`Offloader`](crate::Offloader).
///
/// # Examples
///
/// ```
/// use async_bridge::WorkerPool;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // One parser instance per worker; each keeps its own scratch buffer.
/// let parsers = WorkerPool::builder("parsers")
///     .workers(2)
///     .spawn(|| Ok::<_, std::io::Error>(String::with_capacity(1024)))?;
/// let calls = (1..=10).map(|n| {
///     parsers.call(move |scratch: &mut String| {
///         scratch.clear();
///         scratch.push_str(&n.to_string());
///         scratch.parse::<u32>().unwrap()
///     })
/// });
/// let total: u32 = futures::future::try_join_all(calls).await?.into_iter().sum();
/// assert_eq!(total, 55);
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
#[must_use = "a WorkerPool does nothing unless called"]
pub struct WorkerPool<T: 'static> {
    inner: Arc<PoolInner<T>>,
}

struct PoolInner<T: 'static> {
    name: Arc<str>,
    workers: Vec<Sender<T>>,
    /// Where the search for the least-loaded worker starts, turning, so that ties are
    /// spread.
    next: AtomicUsize,
}

impl<T: 'static> WorkerPool<T> {
    /// Starts building a pool called `name`; its threads are named `name-0`, `name-1`, …
    ///
    /// Defaults: one worker per core, a mailbox of 1024 calls per worker,
    /// [`AfterPanic::Keep`](crate::AfterPanic::Keep). The objects' type `T` is inferred
    /// from the maker given to [`spawn`](WorkerPoolBuilder::spawn)
    /// ([`WorkerPoolBuilder::new`] is the same builder).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::WorkerPool::builder("readers")
    ///     .workers(3)
    ///     .spawn(|| Ok::<_, std::io::Error>(()))
    ///     .unwrap();
    /// assert_eq!((pool.name(), pool.workers()), ("readers", 3));
    /// ```
    pub fn builder(name: impl Into<String>) -> WorkerPoolBuilder<T> {
        WorkerPoolBuilder::new(name)
    }
}

impl<T: 'static> WorkerPool<T> {
    pub(crate) fn from_senders(name: Arc<str>, workers: Vec<Sender<T>>) -> Self {
        WorkerPool {
            inner: Arc::new(PoolInner {
                name,
                workers,
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The pool's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::WorkerPool::builder("db").workers(1).spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// assert_eq!(pool.name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many workers the pool has.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::WorkerPool::builder("db").workers(2).spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// The worker with the fewest calls pending, among those still serving (a worker
    /// whose object could not be rebuilt has stopped; its siblings carry on).
    fn route(&self) -> &Sender<T> {
        let workers = &self.inner.workers;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % workers.len();
        // Closed workers rank after every open one: the key is (closed, load).
        let key = |link: &Sender<T>| (link.shared().is_closed(), link.shared().load());
        let mut best = &workers[start];
        let mut best_key = key(best);
        for i in 1..workers.len() {
            if best_key == (false, 0) {
                break;
            }
            let link = &workers[(start + i) % workers.len()];
            let link_key = key(link);
            if link_key < best_key {
                (best, best_key) = (link, link_key);
            }
        }
        best
    }

    /// As [`call`](Self::call), from `site`, as the named future (for `WorkerService`).
    #[cfg(feature = "tower")]
    pub(crate) fn call_at<F, R>(&self, site: crate::origin::Site, f: F) -> super::Call<T, R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let link = self.route();
        link.shared().call(site, false, move |object, _| f(object))
    }

    fn on_own_thread(&self) -> bool {
        self.inner.workers[0].shared().on_own_thread()
    }

    /// Runs `f` with the object of the least-loaded worker, on that worker's thread, and
    /// awaits its value.
    ///
    /// The worker is chosen when `call` is called. Then everything is as in
    /// [`Worker::call`](crate::Worker::call), including that a call made from one of
    /// the pool's own threads fails with
    /// [`is_would_deadlock`](WorkerError::is_would_deadlock).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::WorkerPool::builder("names")
    ///     .workers(2)
    ///     .spawn(|| Ok::<_, std::io::Error>(()))
    ///     .unwrap();
    /// let thread = pool.call(|_| std::thread::current().name().unwrap().to_owned()).await.unwrap();
    /// assert!(thread == "names-0" || thread == "names-1");
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::call`](crate::Worker::call).
    #[track_caller]
    pub fn call<F, R>(&self, f: F) -> impl Future<Output = Result<R, WorkerError>> + Send
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let link = self.route();
        link.shared()
            .call(Location::caller(), false, move |object, _| f(object))
    }

    /// As [`call`](Self::call), handing `f` a token that is cancelled when the caller
    /// drops the future and when the pool shuts down.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::WorkerPool::builder("jobs").workers(1).spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// let live = pool.call_cancellable(|_, cancel: &CancellationToken| !cancel.is_cancelled());
    /// assert!(live.await.unwrap());
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
        let link = self.route();
        link.shared()
            .call(Location::caller(), true, move |object, token| {
                f(
                    object,
                    token.expect("a cancellable call always has a token"),
                )
            })
    }

    /// Runs `f` with the object of the least-loaded worker and blocks until it returns,
    /// with the rules of [`Worker::call_blocking`](crate::Worker::call_blocking). A call
    /// from one of the pool's own threads is refused: routed to a sibling it could work,
    /// until every worker does it at once and they all wait for each other.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = async_bridge::WorkerPool::builder("sync").workers(2).spawn(|| Ok::<_, std::io::Error>(1)).unwrap();
    /// assert_eq!(pool.call_blocking(|n| *n + 1).unwrap(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::call_blocking`](crate::Worker::call_blocking).
    #[track_caller]
    pub fn call_blocking<F, R>(&self, f: F) -> Result<R, WorkerError>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.on_own_thread() {
            return Err(WorkerError::own_thread(&self.inner.name));
        }
        let call = self.call(f);
        crate::block_on(call).unwrap_or_else(|err| Err(WorkerError::facade(&self.inner.name, err)))
    }

    /// A snapshot of the pool's counters, summed over its workers (percentiles over all
    /// their calls); see [`Worker::stats`](crate::Worker::stats).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::WorkerPool::builder("stats").workers(2).spawn(|| Ok::<_, std::io::Error>(()))?;
    /// for _ in 0..4 {
    ///     pool.call(|_| ()).await?;
    /// }
    /// assert_eq!(pool.stats().completed, 4);
    /// # Ok::<(), async_bridge::WorkerError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> crate::Stats {
        let (mut queued, mut running) = (0, 0);
        let counters: Vec<_> = self
            .inner
            .workers
            .iter()
            .map(|link| {
                let (q, r) = link.shared().now();
                (queued, running) = (queued + q, running + r);
                &link.shared().counters.0
            })
            .collect();
        crate::stats::Counters::merged(&counters, queued, running)
    }

    /// Takes a [`Lease`] on one worker of the pool (the least loaded): it pins that
    /// member for the lease's calls while the others keep serving. See
    /// [`Worker::lease`](crate::Worker::lease).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::WorkerPool::builder("accounts")
    ///     .workers(2)
    ///     .spawn(|| Ok::<_, std::io::Error>(Vec::<u32>::new()))?;
    /// let mut lease = pool.lease().await?;
    /// let pinned = lease.call(|_| std::thread::current().name().unwrap().to_owned()).await?;
    /// // The other member keeps serving while the lease is held.
    /// let other = pool.call(|_| std::thread::current().name().unwrap().to_owned()).await?;
    /// assert_ne!(pinned, other);
    /// lease.finish().await?;
    /// # Ok::<(), async_bridge::WorkerError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Worker::lease`](crate::Worker::lease).
    #[track_caller]
    pub fn lease(&self) -> impl Future<Output = Result<Lease<T>, WorkerError>> + Send {
        let link = self.route();
        let shared = link.shared();
        lease::lease(
            shared,
            link.clone(),
            Location::caller(),
            shared.lease_limit,
            shared.release_hook.clone(),
        )
    }

    /// Shuts every worker down, waiting at most `grace` in all, and reports over the
    /// whole pool; see [`Worker::shutdown`](crate::Worker::shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = async_bridge::WorkerPool::builder("db").workers(2).spawn(|| Ok::<_, std::io::Error>(())).unwrap();
    /// pool.call(|_| ()).await.unwrap();
    /// let report = pool.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_complete());
    /// assert!(pool.call(|_| ()).await.unwrap_err().is_shutdown());
    /// # });
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> crate::ShutdownReport {
        let shared: Vec<Arc<Mailbox<T>>> = self
            .inner
            .workers
            .iter()
            .map(|link| Arc::clone(link.shared()))
            .collect();
        shutdown::shutdown(&self.inner.name, &shared, grace).await
    }
}

impl<T: 'static> Clone for WorkerPool<T> {
    fn clone(&self) -> Self {
        WorkerPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: 'static> fmt::Debug for WorkerPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loads: Vec<usize> = self
            .inner
            .workers
            .iter()
            .map(|l| l.shared().load())
            .collect();
        f.debug_struct("WorkerPool")
            .field("name", &self.inner.name)
            .field("pending", &loads)
            .finish()
    }
}
