//! CPU-bound work on rayon: the [`compute`] function and the [`ComputePool`] handle.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::ConfigError;
use crate::job::{self, Outcome};
use crate::origin::{Kind, Origin};
use crate::OffloadError;

/// Runs CPU-bound code on rayon's global pool and awaits its result.
///
/// Hashing, compression, parsing, image work: anything that keeps a core busy belongs on
/// a pool sized to the cores, not on tokio's blocking pool (sized for threads that wait)
/// and never on the executor. Nothing happens until the future is first polled; if it is
/// dropped before `f` starts, `f` is skipped.
///
/// The future needs no runtime: it can be awaited on any executor. Waiting for it never
/// blocks a thread, and it does not spend tokio's cooperative budget, so ten thousand of
/// them awaited together cost about what raw `rayon::spawn` plus a oneshot costs.
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
    let site = Location::caller();
    async move {
        let (ticket, reply) = job::pair(Origin::new(Kind::Compute, None, site), None);
        rayon::spawn(move || {
            ticket.run(|_| f());
        });
        match reply.await {
            Outcome::Completed(value) => value,
            Outcome::Panicked(payload) => job::resume(payload),
            Outcome::Dropped => unreachable!("rayon runs or keeps every job it is given"),
        }
    }
}

/// A named rayon pool for CPU-bound work, with an async API.
///
/// Use one when a kind of CPU work must not compete with the rest of the process on
/// rayon's global pool (a fixed share of cores for report generation, say), or when its
/// threads should carry a name. Clones share one pool; the pool's threads end when the
/// last clone is dropped and its queued jobs are done. Dropping never blocks.
///
/// Panics come back as [`is_panic`](OffloadError::is_panic) errors, as with an
/// [`Offloader`](crate::Offloader).
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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[must_use = "a ComputePool does nothing unless called"]
pub struct ComputePool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    name: Arc<str>,
    pool: rayon::ThreadPool,
}

/// Builds a [`ComputePool`]; see [`ComputePool::builder`].
///
/// # Examples
///
/// ```
/// let pool = async_bridge::ComputePool::builder("hashing").threads(1).build().unwrap();
/// assert_eq!(pool.threads(), 1);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ComputePoolBuilder {
    name: String,
    threads: Option<usize>,
}

impl ComputePool {
    /// Starts building a pool called `name`; its threads are named `name-0`, `name-1`, …
    /// Default size: one thread per core.
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
        &self.inner.name
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
        self.inner.pool.current_num_threads()
    }

    /// Runs `f` on the pool and awaits its value.
    ///
    /// Nothing happens until the future is polled; a future dropped before `f` starts
    /// means `f` is skipped.
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
    /// An [`OffloadError`] with [`is_panic`](OffloadError::is_panic) when `f` panicked.
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> impl Future<Output = Result<T, OffloadError>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.call(Location::caller(), false, move |_| f())
    }

    /// Runs `f` on the pool, handing it a token that is cancelled when the caller drops
    /// the future (a timeout around it, say).
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

    fn call<F, T>(
        &self,
        site: &'static Location<'static>,
        cancellable: bool,
        f: F,
    ) -> impl Future<Output = Result<T, OffloadError>> + Send
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        async move {
            let token = cancellable.then(CancellationToken::new);
            let origin = Origin::new(Kind::Compute, Some(Arc::clone(&inner.name)), site);
            let (ticket, reply) = job::pair(origin, token);
            inner.pool.spawn(move || {
                ticket.run(f);
            });
            match reply.await {
                Outcome::Completed(value) => Ok(value),
                Outcome::Panicked(payload) => Err(OffloadError::panic(&inner.name, payload)),
                Outcome::Dropped => Err(OffloadError::cancelled(&inner.name)),
            }
        }
    }
}

impl fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputePool")
            .field("name", &self.inner.name)
            .field("threads", &self.threads())
            .finish()
    }
}

impl ComputePoolBuilder {
    /// The number of threads (default: one per core). Must be at least 1.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Builds the pool and starts its threads.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `threads` is zero or the threads cannot be started.
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
        let prefix = self.name.clone();
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
        Ok(ComputePool {
            inner: Arc::new(PoolInner {
                name: self.name.into(),
                pool,
            }),
        })
    }
}
