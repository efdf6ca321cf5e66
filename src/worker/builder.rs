//! The builders of [`Worker`] and [`WorkerPool`], and the panic policy they share.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::lease::ReleaseHook;
use super::mailbox::{Mailbox, Sender, Settings};
use super::thread::{self, Starting};
use super::{Worker, WorkerError, WorkerPool};
use crate::error::ConfigError;
use crate::interrupt::TakeInterrupter;

/// What a worker does with its object after a call panicked.
///
/// Either way the caller of that call gets an [`is_panic`](WorkerError::is_panic) error
/// with the payload, and the worker goes on serving the next calls.
///
/// The default is [`Keep`](AfterPanic::Keep), because it is what the sync code did
/// before the migration (a panic caught by the caller left the object in place), it is
/// free, and unwinding runs destructors: a `rusqlite::Transaction` that a panic unwinds
/// through rolls back, a `MutexGuard`/`RefMut` is released. Choose
/// [`Rebuild`](AfterPanic::Rebuild) when the object has state a panic can leave half
/// updated with no guard to repair it (a raw `BEGIN` never committed, a C handle in the
/// middle of a protocol, a parser's internal buffers): the fresh object costs a maker
/// call, and loses what the old one held (caches, session settings).
///
/// # Examples
///
/// ```
/// use async_bridge::{AfterPanic, Worker};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let counter = Worker::builder("counter")
///     .after_panic(AfterPanic::Rebuild)
///     .spawn(|| Ok::<u32, std::io::Error>(0))?;
/// counter.call(|n| *n += 5).await?;
/// let err = counter.call(|n| { *n += 1; panic!("half-way") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(counter.call(|n| *n).await?, 0); // a fresh object from the maker
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterPanic {
    /// Keep the object as the panic left it (the default).
    #[default]
    Keep,
    /// Drop the object (on its thread) and build a new one with the maker before the
    /// next call. If the maker fails, the worker stops: queued and later calls fail with
    /// [`is_shutdown`](WorkerError::is_shutdown), whose source is the maker's error.
    Rebuild,
}

/// Default mailbox size, per worker.
const MAILBOX: usize = 1024;

/// Builds a [`Worker<T>`]; see [`Worker::builder`].
///
/// The builder carries the object's type `T`, so `Worker::builder("name")` needs no
/// annotation: `T` is inferred from the maker given to [`spawn`](Self::spawn), or from
/// the closure given to [`interrupter`](Self::interrupter) or
/// [`on_lease_abandoned`](Self::on_lease_abandoned), whichever comes first, and a
/// closure for another type is a compile error. [`WorkerBuilder::new`] is the same
/// builder, for code that prefers to name the builder type (as with tokio's
/// `runtime::Builder` and rayon's `ThreadPoolBuilder`).
///
/// # Examples
///
/// ```
/// use async_bridge::{AfterPanic, Worker};
///
/// let worker = Worker::builder("sdk")
///     .mailbox(64)
///     .after_panic(AfterPanic::Keep)
///     .spawn(|| Ok::<_, std::io::Error>(String::from("handle")))
///     .unwrap();
/// assert_eq!(worker.name(), "sdk");
/// ```
///
/// A hook for another type than the maker makes does not compile:
///
/// ```compile_fail
/// # use async_bridge::Worker;
/// let worker = Worker::builder("mismatch")
///     .on_lease_abandoned(|_: &mut String| {})
///     .spawn(|| Ok::<_, std::io::Error>(0u32)); // error: expected `String`, found `u32`
/// ```
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct WorkerBuilder<T: 'static> {
    name: String,
    mailbox: usize,
    after_panic: AfterPanic,
    options: Options<T>,
}

/// Builds a [`WorkerPool<T>`]; see [`WorkerPool::builder`].
///
/// As [`WorkerBuilder`], it carries the objects' type `T`, inferred from the maker (or
/// the first closure that takes a `T`); [`WorkerPoolBuilder::new`] is the same builder.
///
/// # Examples
///
/// ```
/// use async_bridge::WorkerPool;
///
/// let pool = WorkerPool::builder("parsers")
///     .workers(2)
///     .mailbox(128)
///     .spawn(|| Ok::<_, std::io::Error>(Vec::<u8>::new()))
///     .unwrap();
/// assert_eq!(pool.workers(), 2);
/// ```
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct WorkerPoolBuilder<T: 'static> {
    name: String,
    workers: usize,
    mailbox: usize,
    after_panic: AfterPanic,
    options: Options<T>,
}

impl<T: 'static> fmt::Debug for WorkerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("name", &self.name)
            .field("mailbox", &self.mailbox)
            .field("after_panic", &self.after_panic)
            .field("options", &self.options)
            .finish()
    }
}

impl<T: 'static> fmt::Debug for WorkerPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPoolBuilder")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("mailbox", &self.mailbox)
            .field("after_panic", &self.after_panic)
            .field("options", &self.options)
            .finish()
    }
}

/// The options both builders share, typed by the object `T` that `spawn` will make.
struct Options<T: 'static> {
    timeout: Option<Duration>,
    lease_limit: Option<Duration>,
    interrupter: Option<TakeInterrupter<T>>,
    release_hook: Option<ReleaseHook<T>>,
    /// `fn() -> T`: the builder is `Send` and `Sync` whatever `T` is (the object is made
    /// on the worker's thread, never held by the builder).
    _object: PhantomData<fn() -> T>,
}

impl<T: 'static> Default for Options<T> {
    fn default() -> Self {
        Options {
            timeout: None,
            lease_limit: None,
            interrupter: None,
            release_hook: None,
            _object: PhantomData,
        }
    }
}

impl<T: 'static> fmt::Debug for Options<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("lease_limit", &self.lease_limit)
            .field("interrupter", &self.interrupter.is_some())
            .field("release_hook", &self.release_hook.is_some())
            .finish()
    }
}

impl<T: 'static> Options<T> {
    fn interrupter<I>(&mut self, take: impl Fn(&T) -> I + Send + Sync + 'static)
    where
        I: Fn() + Send + Sync + 'static,
    {
        let take: TakeInterrupter<T> = Arc::new(move |object: &T| Arc::new(take(object)));
        self.interrupter = Some(take);
    }

    fn release_hook(&mut self, hook: impl Fn(&mut T) + Send + Sync + 'static) {
        let hook: ReleaseHook<T> = Arc::new(hook);
        self.release_hook = Some(hook);
    }

    /// Checks the options and splits them into what the thread and the mailbox keep.
    fn check(
        &mut self,
        name: &Arc<str>,
    ) -> Result<(Option<TakeInterrupter<T>>, Settings<T>), WorkerError> {
        let config = |problem: &str| WorkerError::config(name, ConfigError::new(name, problem));
        if self.timeout == Some(Duration::ZERO) {
            return Err(config("timeout must not be zero"));
        }
        if self.lease_limit == Some(Duration::ZERO) {
            return Err(config("lease_limit must not be zero"));
        }
        let settings = Settings {
            timeout: self.timeout,
            lease_limit: self.lease_limit,
            release_hook: self.release_hook.take(),
        };
        Ok((self.interrupter.take(), settings))
    }
}

impl<T: 'static> WorkerBuilder<T> {
    /// Starts building a worker called `name`: the same as [`Worker::builder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::WorkerBuilder;
    ///
    /// let worker = WorkerBuilder::new("sdk").spawn(|| Ok::<_, std::io::Error>(3u8)).unwrap();
    /// assert_eq!(worker.name(), "sdk");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        WorkerBuilder {
            name: name.into(),
            mailbox: MAILBOX,
            after_panic: AfterPanic::Keep,
            options: Options::default(),
        }
    }

    /// Fails a call that has not finished within `after`, waiting plus running, with
    /// [`is_timeout`](WorkerError::is_timeout); a call that had started has its token
    /// cancelled and, with an [`interrupter`](Self::interrupter), is interrupted. Must not
    /// be zero. Calls are then timed on the caller's tokio runtime, which must have
    /// timers.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.options.timeout = Some(after);
        self
    }

    /// Takes an interrupter from the object, on the worker's thread, once it is built
    /// (and again after an [`AfterPanic::Rebuild`]); the worker fires it from the
    /// cancelling side when a running call is given up: its caller dropped the future,
    /// the call timed out, or the worker shut down. It stops a call blocked inside the
    /// object, which a cancellation token cannot: rusqlite's `InterruptHandle`, a
    /// socket's `shutdown`, a child process's `kill`.
    ///
    /// It never runs on the object's thread, and never for a call that has returned
    /// (nor for the call after it). Until the call returns it is fired again every few
    /// milliseconds, because some interrupts (SQLite's) stop only what is already
    /// running: a call given up just before it reached its blocking part is stopped once
    /// it gets there. So it must be cheap, and harmless when repeated. The object's type
    /// is the builder's `T`, the one `spawn`'s maker makes.
    ///
    /// # When not to use it
    ///
    /// When the object has no thread-safe way to stop a call, an interrupter that does
    /// something drastic (closing a shared descriptor) can leave the object unusable:
    /// prefer a call that checks a token
    /// ([`call_cancellable`](crate::Worker::call_cancellable)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_bridge::Worker;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let db = Worker::builder("reports-db")
    ///     .timeout(Duration::from_millis(50))
    ///     .interrupter(|conn: &rusqlite::Connection| {
    ///         let handle = conn.get_interrupt_handle();
    ///         move || handle.interrupt()
    ///     })
    ///     .spawn(rusqlite::Connection::open_in_memory)?;
    /// let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
    ///                SELECT count(*) FROM c";
    /// let err = db
    ///     .call(move |c| c.query_row(endless, [], |r| r.get::<_, i64>(0)))
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// // Interrupted, the query returned at once: the worker is free for the next call.
    /// assert_eq!(db.call(|c| c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0))).await??, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// An interrupter taken from another type than the maker makes does not compile:
    ///
    /// ```compile_fail
    /// let worker = async_bridge::Worker::builder("mismatch")
    ///     .interrupter(|_: &String| || {})
    ///     .spawn(|| Ok::<_, std::io::Error>(0u32)); // error: expected `String`, found `u32`
    /// ```
    pub fn interrupter<I>(mut self, take: impl Fn(&T) -> I + Send + Sync + 'static) -> Self
    where
        I: Fn() + Send + Sync + 'static,
    {
        self.options.interrupter(take);
        self
    }

    /// Ends a [`Lease`](crate::Lease) held longer than `limit` (its release hook runs;
    /// later calls on it fail with [`is_lease_ended`](WorkerError::is_lease_ended)).
    /// Checked when the lease's next call comes and while it is idle; measured with
    /// [`clock::now`](crate::clock::now) when checked (virtual time under the harness),
    /// though the idle wait itself is in real time. Must not be zero.
    pub fn lease_limit(mut self, limit: Duration) -> Self {
        self.options.lease_limit = Some(limit);
        self
    }

    /// Runs `hook` on the object's thread whenever a [`Lease`](crate::Lease) ends without
    /// being [finished](crate::Lease::finish): dropped, a call under it panicked, or held
    /// past its [`lease_limit`](Self::lease_limit). The next caller gets the object only
    /// after it. For a database connection: `ROLLBACK`. A panic in the hook is contained.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Worker;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let log = Worker::builder("log")
    ///     .on_lease_abandoned(|entries: &mut Vec<&str>| entries.push("rolled back"))
    ///     .spawn(|| Ok::<_, std::io::Error>(Vec::new()))?;
    /// let mut lease = log.lease().await?;
    /// lease.call(|entries| entries.push("half")).await?;
    /// drop(lease); // not finished
    /// assert_eq!(log.call(|entries| entries.clone()).await?, ["half", "rolled back"]);
    /// # Ok::<(), async_bridge::WorkerError>(())
    /// # }).unwrap();
    /// ```
    pub fn on_lease_abandoned(mut self, hook: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.options.release_hook(hook);
        self
    }

    /// At most this many calls wait in the worker's mailbox (default 1024); further
    /// callers wait for room in FIFO order, holding no thread. Must be at least 1.
    pub fn mailbox(mut self, calls: usize) -> Self {
        self.mailbox = calls;
        self
    }

    /// What to do with the object after a call panics (default [`AfterPanic::Keep`]).
    pub fn after_panic(mut self, policy: AfterPanic) -> Self {
        self.after_panic = policy;
        self
    }

    /// Starts the worker: a thread named after the worker that builds its object with
    /// `maker`, then serves calls. Returns once the maker has returned.
    ///
    /// The maker runs on the worker's thread, so the object need not be `Send`; the
    /// maker must be, and is kept there to rebuild the object under
    /// [`AfterPanic::Rebuild`]. `spawn` blocks the calling thread while the maker runs;
    /// in async code with a slow maker, call it inside
    /// [`unblock`](crate::unblock).
    ///
    /// # Errors
    ///
    /// - [`is_maker_error`](WorkerError::is_maker_error): the maker returned an error,
    ///   which is the [`source`](Error::source) (downcast it to the maker's type).
    /// - [`is_panic`](WorkerError::is_panic): the maker panicked.
    /// - [`is_config`](WorkerError::is_config): the mailbox is zero, the name contains
    ///   a NUL byte, or the thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Worker;
    ///
    /// let err = Worker::builder("orders-db")
    ///     .spawn(|| rusqlite::Connection::open("/no/such/dir/orders.db"))
    ///     .unwrap_err();
    /// assert!(err.is_maker_error());
    /// let cause = std::error::Error::source(&err).unwrap();
    /// assert!(cause.downcast_ref::<rusqlite::Error>().is_some());
    /// ```
    pub fn spawn<M, E>(self, maker: M) -> Result<Worker<T>, WorkerError>
    where
        M: FnMut() -> Result<T, E> + Send + 'static,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        let mut this = self;
        let name: Arc<str> = this.name.as_str().into();
        check(&name, this.mailbox, 1, "workers")?;
        let (interrupter, settings) = this.options.check(&name)?;
        let shared = Mailbox::new(
            Arc::clone(&name),
            thread::new_group(),
            this.mailbox,
            settings,
        );
        let link = Sender::new(&shared);
        let maker = thread::maker(maker);
        thread::start(&shared, this.name, maker, this.after_panic, interrupter)?.wait()?;
        Ok(Worker::from_sender(link))
    }
}

impl<T: 'static> WorkerPoolBuilder<T> {
    /// Starts building a pool called `name`: the same as [`WorkerPool::builder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::WorkerPoolBuilder;
    ///
    /// let pool = WorkerPoolBuilder::new("parsers")
    ///     .workers(2)
    ///     .spawn(|| Ok::<_, std::io::Error>(()))
    ///     .unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        WorkerPoolBuilder {
            name: name.into(),
            workers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            mailbox: MAILBOX,
            after_panic: AfterPanic::Keep,
            options: Options::default(),
        }
    }

    /// As [`WorkerBuilder::timeout`], for every call into the pool.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.options.timeout = Some(after);
        self
    }

    /// As [`WorkerBuilder::interrupter`]: each worker takes its own interrupter from its
    /// own object.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::WorkerPool;
    ///
    /// let pool = WorkerPool::builder("readers")
    ///     .workers(2)
    ///     .interrupter(|conn: &rusqlite::Connection| {
    ///         let handle = conn.get_interrupt_handle();
    ///         move || handle.interrupt()
    ///     })
    ///     .spawn(rusqlite::Connection::open_in_memory)
    ///     .unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn interrupter<I>(mut self, take: impl Fn(&T) -> I + Send + Sync + 'static) -> Self
    where
        I: Fn() + Send + Sync + 'static,
    {
        self.options.interrupter(take);
        self
    }

    /// As [`WorkerBuilder::lease_limit`].
    pub fn lease_limit(mut self, limit: Duration) -> Self {
        self.options.lease_limit = Some(limit);
        self
    }

    /// As [`WorkerBuilder::on_lease_abandoned`], on whichever worker held the lease.
    pub fn on_lease_abandoned(mut self, hook: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.options.release_hook(hook);
        self
    }

    /// How many workers (threads, objects) the pool has; default: one per core. Must be
    /// at least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// At most this many calls wait in each worker's mailbox (default 1024). Must be at
    /// least 1.
    pub fn mailbox(mut self, calls: usize) -> Self {
        self.mailbox = calls;
        self
    }

    /// What each worker does with its object after a call panics (default
    /// [`AfterPanic::Keep`]).
    pub fn after_panic(mut self, policy: AfterPanic) -> Self {
        self.after_panic = policy;
        self
    }

    /// Starts the pool: one thread per worker, named `name-0`, `name-1`, …, each
    /// building its own object with `maker`. Returns once every maker has returned; if
    /// any failed, the workers already started are stopped and the first error returned.
    ///
    /// # Errors
    ///
    /// As [`WorkerBuilder::spawn`]; also [`is_config`](WorkerError::is_config) when
    /// `workers` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::WorkerPool;
    ///
    /// let err = WorkerPool::builder("none").workers(0).spawn(|| Ok::<_, std::io::Error>(()));
    /// assert!(err.unwrap_err().to_string().contains("workers must be at least 1"));
    /// ```
    pub fn spawn<M, E>(self, maker: M) -> Result<WorkerPool<T>, WorkerError>
    where
        M: Fn() -> Result<T, E> + Send + Sync + 'static,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        let mut this = self;
        let name: Arc<str> = this.name.as_str().into();
        check(&name, this.mailbox, this.workers, "workers")?;
        let (interrupter, settings) = this.options.check(&name)?;
        let maker = Arc::new(maker);
        let group = thread::new_group();
        let mut links = Vec::with_capacity(this.workers);
        let mut starting: Vec<Starting> = Vec::with_capacity(this.workers);
        for i in 0..this.workers {
            let shared = Mailbox::new(Arc::clone(&name), group, this.mailbox, settings.clone());
            links.push(Sender::new(&shared));
            let maker = Arc::clone(&maker);
            let each = thread::maker(move || maker());
            starting.push(thread::start(
                &shared,
                format!("{}-{i}", this.name),
                each,
                this.after_panic,
                interrupter.clone(),
            )?);
        }
        // Wait for every maker, even after one failed, so no thread is left mid-start.
        let results: Vec<_> = starting.into_iter().map(Starting::wait).collect();
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(WorkerPool::from_senders(name, links))
    }
}

/// Checks the settings shared by both builders.
fn check(name: &Arc<str>, mailbox: usize, workers: usize, what: &str) -> Result<(), WorkerError> {
    let problem = if mailbox == 0 {
        "mailbox must be at least 1".to_owned()
    } else if workers == 0 {
        format!("{what} must be at least 1")
    } else if name.contains('\0') {
        "the name must not contain a NUL byte (it names the worker's thread)".to_owned()
    } else {
        return Ok(());
    };
    Err(WorkerError::config(name, ConfigError::new(name, problem)))
}
