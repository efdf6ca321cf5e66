//! `Portal`: the runtime that blocking facades run their futures on.

use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

use super::context::{self, Caller};
use super::entry;
use super::BlockOnError;
use crate::error::ConfigError;
use crate::origin::{Kind, Origin};
use crate::stats::{Counters, Stats};

/// The name (and thread name) of the global portal.
const GLOBAL_NAME: &str = "async-bridge-portal";

/// The runtime that blocking facades run their futures on.
///
/// A facade polls the future *on the calling thread* (so the future need not be `Send`
/// or `'static`) with the portal's runtime context entered, so tokio timers, IO and
/// `tokio::spawn` inside the future use the portal's runtime, whose worker threads drive
/// them. The free function [`block_on`](crate::block_on) and [`Blocking::new`](crate::Blocking::new)
/// use the global portal, a small multi-thread runtime started on first use; build your
/// own to name its threads or size it, or wrap a runtime the application already has
/// with [`from_handle`](Self::from_handle).
///
/// Clones share one portal. A portal that owns its runtime shuts it down when the last
/// clone is dropped, without waiting (tokio's `shutdown_background`), so dropping it
/// never blocks and never panics, inside async code or not. Use
/// [`shutdown`](Self::shutdown) to wait for the runtime's threads with a bound.
///
/// # When not to use it
///
/// - Async code calling async code should `.await`; a portal is for sync callers.
/// - One call from `main` of a sync program needs no portal of its own: use
///   [`block_on`](crate::block_on), which uses the global one.
///
/// # Examples
///
/// ```
/// use async_bridge::Portal;
///
/// let portal = Portal::builder().worker_threads(1).thread_name("legacy-facade").build()?;
/// let answer = portal.block_on(async {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
///     42
/// })?;
/// assert_eq!(answer, 42);
/// assert_eq!(portal.name(), "legacy-facade");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use = "a Portal does nothing unless called"]
pub struct Portal {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    handle: Handle,
    /// The runtime this portal owns (`None` for `from_handle`, or after `shutdown`).
    runtime: Mutex<Option<Runtime>>,
    owns_runtime: bool,
    global: bool,
    shut_down: AtomicBool,
    /// Every facade call through this portal, counted on the caller's thread.
    counters: Counters,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.get_mut().take() {
            // Never `Runtime::drop` here: it blocks, and panics inside async code.
            runtime.shutdown_background();
        }
    }
}

/// Builds a [`Portal`]; see [`Portal::builder`].
///
/// # Examples
///
/// ```
/// let portal = async_bridge::Portal::builder()
///     .worker_threads(2)
///     .max_blocking_threads(16)
///     .thread_name("billing-facade")
///     .build()
///     .unwrap();
/// assert_eq!(portal.block_on(async { 1 + 1 }).unwrap(), 2);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PortalBuilder {
    worker_threads: usize,
    max_blocking_threads: Option<usize>,
    thread_name: String,
}

/// The global portal: started on first use, never stopped. Its threads do not keep the
/// process alive: a Rust process ends when `main` returns, whatever other threads run.
static GLOBAL: OnceLock<Result<Portal, String>> = OnceLock::new();

/// A small default: facades mostly wait on IO and timers.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

impl Portal {
    /// Starts building a portal with its own multi-thread runtime (default: up to two
    /// worker threads, named `async-bridge-portal`; IO and timers enabled).
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::builder().build().unwrap();
    /// assert_eq!(portal.name(), "async-bridge-portal");
    /// ```
    pub fn builder() -> PortalBuilder {
        PortalBuilder {
            worker_threads: default_workers(),
            max_blocking_threads: None,
            thread_name: GLOBAL_NAME.to_owned(),
        }
    }

    /// A portal over a runtime the application already has.
    ///
    /// The portal does not own the runtime: dropping or shutting down the portal leaves
    /// it running. With a multi-thread runtime, everything works as with an owned
    /// portal. With a current_thread runtime, the future is polled on the calling thread
    /// but that runtime's IO and timers are driven only by the thread inside its
    /// `Runtime::block_on`: the future can use them only while some thread is in there
    /// (tokio's rule for `Handle::block_on`), and calling from that very thread returns
    /// [`is_would_deadlock`](BlockOnError::is_would_deadlock).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Portal;
    ///
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// let portal = Portal::from_handle(runtime.handle().clone());
    /// let id = portal.block_on(async { tokio::runtime::Handle::current().id() }).unwrap();
    /// assert_eq!(id, runtime.handle().id());
    /// ```
    pub fn from_handle(handle: Handle) -> Portal {
        Portal::new("from-handle".into(), handle, None, false)
    }

    /// The global portal, started now if it was not yet.
    ///
    /// [`block_on`](crate::block_on) and [`Blocking::new`](crate::Blocking::new) use it.
    /// Its [`shutdown`](Self::shutdown) does nothing: other code shares it.
    ///
    /// # Errors
    ///
    /// [`is_no_runtime`](BlockOnError::is_no_runtime) when its runtime could not be
    /// started (the OS refused its threads); every later call fails the same way.
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::global().unwrap();
    /// let task = portal.handle().spawn(async { 6 * 7 });
    /// assert_eq!(portal.block_on(task).unwrap().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn global() -> Result<&'static Portal, BlockOnError> {
        global(Location::caller())
    }

    /// Runs `future` to completion on the calling thread, with this portal's runtime
    /// context entered, and returns its output. Safe to call from anywhere except the
    /// thread of a current_thread runtime; see [`block_on`](crate::block_on) for each
    /// case.
    ///
    /// # Errors
    ///
    /// - [`is_would_deadlock`](BlockOnError::is_would_deadlock): the caller drives a
    ///   current_thread runtime (or polls a `LocalSet`); the future was not run.
    /// - [`is_shutdown`](BlockOnError::is_shutdown): the portal was shut down.
    /// - [`is_panic`](BlockOnError::is_panic): the future panicked; the payload is
    ///   intact in [`into_panic`](BlockOnError::into_panic).
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::builder().worker_threads(1).build().unwrap();
    /// let words = vec!["a", "b"];
    /// // The future borrows `words`: no `'static` bound.
    /// assert_eq!(portal.block_on(async { words.len() }).unwrap(), 2);
    ///
    /// let err = portal.block_on(async { panic!("bad") }).unwrap_err();
    /// assert!(err.is_panic());
    /// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "bad");
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, BlockOnError> {
        entry::enter(
            Some(self),
            Location::caller(),
            future,
            entry::Panics::Return,
        )
    }

    /// The portal's name: its threads' name for a built portal,
    /// `async-bridge-portal` for the global one, `from-handle` for
    /// [`from_handle`](Self::from_handle).
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::builder().thread_name("db").build().unwrap();
    /// assert_eq!(portal.name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The handle of the portal's runtime, to spawn onto it or enter it.
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::builder().build().unwrap();
    /// let task = portal.handle().spawn(async { "done" });
    /// assert_eq!(portal.block_on(task).unwrap().unwrap(), "done");
    /// ```
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// The portal's counters, in the [`Stats`] shape every handle reports; exact when the
    /// caller looks (a call is counted before its caller gets the answer).
    ///
    /// A facade call has no queue: its future is polled on the calling thread, so
    /// `queued` is always 0, and `queue_wait` is the time before the first poll — zero
    /// from a plain thread, the hand-off of a runtime worker's other tasks
    /// (`block_in_place`) from async code. `run_time` is the time from the first poll to
    /// the output (or the panic). The counts are exact; the percentiles come from every
    /// call made from async code and, from plain threads, from one call in 64 to the
    /// portal (its first one included): there, reading the clock twice would cost more
    /// than the whole call (a call from a plain thread costs about 30 ns, a clock read
    /// about 35 ns, on the machine of README's performance table). With the
    /// [ledger](mod@crate::ledger) on, every call is timed.
    ///
    /// `submitted` counts the calls made on a live portal (those after
    /// [`shutdown`](Self::shutdown) are refused uncounted, as a shut-down lane's are);
    /// `rejected` the [`is_would_deadlock`](BlockOnError::is_would_deadlock) refusals;
    /// `panicked` the futures that panicked (also through
    /// [`block_on`](crate::block_on), which resumes the panic). `withdrawn`, `timed_out`
    /// and `cancelled` stay 0: a facade's caller is blocked in the call until it ends, so
    /// it can neither give up nor time out, and nothing waits to be withdrawn. The
    /// [global](Self::global) portal counts every [`block_on`](crate::block_on) and
    /// [`Blocking`](crate::Blocking) call made through it.
    ///
    /// # Examples
    ///
    /// ```
    /// let portal = async_bridge::Portal::builder().worker_threads(1).build().unwrap();
    /// portal.block_on(async { 1 }).unwrap();
    /// let _ = portal.block_on(async { panic!("boom") });
    /// let stats = portal.stats();
    /// assert_eq!((stats.submitted, stats.completed, stats.panicked), (2, 1, 1));
    /// assert_eq!((stats.running, stats.queued, stats.rejected), (0, 0, 0));
    /// assert!(stats.run_time.p50 <= stats.run_time.max);
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.counters.facade_snapshot()
    }

    /// Shuts the portal down: later calls through any clone fail with
    /// [`is_shutdown`](BlockOnError::is_shutdown), and an owned runtime is shut down,
    /// waiting at most `grace` for its threads (tokio's `shutdown_timeout`).
    ///
    /// It never panics and never blocks an executor: where the caller may not block (the
    /// thread of a current_thread runtime), it does not wait at all; on a multi-thread
    /// worker it waits inside `block_in_place`. Facade calls already running keep their
    /// futures, but the runtime under them is gone: its timers, IO and spawned tasks
    /// fail as tokio's do after a shutdown. A portal from
    /// [`from_handle`](Self::from_handle) leaves its runtime running; the global portal
    /// ignores this call.
    ///
    /// Why it is sync and returns no report, unlike the async `shutdown` of lanes, pools
    /// and workers: a portal's callers are sync code, which has no executor to await on,
    /// and a portal has no queue of its own to report on (each facade call runs on its
    /// caller's thread); what it waits for is the runtime's threads, which tokio's
    /// `shutdown_timeout` bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let portal = async_bridge::Portal::builder().build().unwrap();
    /// let clone = portal.clone();
    /// portal.shutdown(Duration::from_secs(1));
    /// assert!(clone.block_on(async { 1 }).unwrap_err().is_shutdown());
    /// ```
    #[track_caller]
    pub fn shutdown(&self, grace: Duration) {
        if self.inner.global {
            return;
        }
        self.inner.shut_down.store(true, Ordering::Release);
        let Some(runtime) = self.inner.runtime.lock().take() else {
            return;
        };
        let mut runtime = Some(runtime);
        let mut wait = || {
            if let Some(runtime) = runtime.take() {
                runtime.shutdown_timeout(grace);
            }
        };
        match context::caller() {
            Caller::Plain => wait(),
            Caller::Runtime => {
                // tokio refuses `block_in_place` in a few places (a `LocalSet`); its
                // panic comes before `wait` runs, and the runtime is then let go below.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    tokio::task::block_in_place(&mut wait);
                }));
            }
            // A current_thread runtime's context that this thread does not drive: a
            // second thread inside its `Runtime::block_on` may not block either (tokio
            // panics in `shutdown_timeout` there), and cannot be told from its blocking
            // pool threads; so no waiting here either.
            Caller::CurrentThreadOther | Caller::CurrentThreadDriver => {}
        }
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }

    fn new(name: Arc<str>, handle: Handle, runtime: Option<Runtime>, global: bool) -> Portal {
        Portal {
            inner: Arc::new(Inner {
                name,
                handle,
                owns_runtime: runtime.is_some(),
                runtime: Mutex::new(runtime),
                global,
                shut_down: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        }
    }

    /// The origin of a facade call through this portal. The global portal's name is
    /// left out (it says nothing to the user, and costs an `Arc` clone per call).
    pub(crate) fn origin(&self, site: &'static Location<'static>) -> Origin {
        let name = (!self.inner.global).then(|| Arc::clone(&self.inner.name));
        Origin::new(Kind::Facade, name, site)
    }

    #[inline]
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    #[inline]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }
}

/// The global portal, started on first use.
#[inline]
pub(crate) fn global(site: &'static Location<'static>) -> Result<&'static Portal, BlockOnError> {
    let started = GLOBAL.get_or_init(|| {
        Portal::builder()
            .build_portal(true)
            .map_err(|err| err.to_string())
    });
    started
        .as_ref()
        .map_err(|why| BlockOnError::no_runtime(Origin::new(Kind::Facade, None, site), why.clone()))
}

/// The global portal if it has been started, without starting it.
pub(crate) fn global_if_started() -> Option<&'static Portal> {
    GLOBAL.get().and_then(|started| started.as_ref().ok())
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("name", &self.inner.name)
            .field("flavor", &self.inner.handle.runtime_flavor())
            .field("owns_runtime", &self.inner.owns_runtime)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

impl PortalBuilder {
    /// The number of worker threads (default: the number of cores, at most two). Must be
    /// at least 1. Facade futures are polled on the calling threads; the workers drive
    /// timers and IO and run tasks the futures spawn.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// The most threads the runtime's blocking pool may start (tokio's default: 512).
    /// Must be at least 1.
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.max_blocking_threads = Some(n);
        self
    }

    /// The name of the runtime's threads, which is also the portal's name (default:
    /// `async-bridge-portal`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Builds the portal and starts its runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if a count is zero or the runtime's threads cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = async_bridge::Portal::builder().worker_threads(0).build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid configuration for `async-bridge-portal`: worker_threads must be at least 1"
    /// );
    /// ```
    pub fn build(self) -> Result<Portal, ConfigError> {
        self.build_portal(false)
    }

    fn build_portal(self, global: bool) -> Result<Portal, ConfigError> {
        if self.worker_threads == 0 {
            return Err(ConfigError::new(
                &self.thread_name,
                "worker_threads must be at least 1",
            ));
        }
        if self.max_blocking_threads == Some(0) {
            return Err(ConfigError::new(
                &self.thread_name,
                "max_blocking_threads must be at least 1",
            ));
        }
        let mut builder = Builder::new_multi_thread();
        builder
            .worker_threads(self.worker_threads)
            .thread_name(self.thread_name.clone())
            .enable_all();
        if let Some(n) = self.max_blocking_threads {
            builder.max_blocking_threads(n);
        }
        let runtime = builder.build().map_err(|err| {
            ConfigError::with_source(
                &self.thread_name,
                format!("cannot start the runtime's threads: {err}"),
                err,
            )
        })?;
        let handle = runtime.handle().clone();
        Ok(Portal::new(
            self.thread_name.into(),
            handle,
            Some(runtime),
            global,
        ))
    }
}
