//! Find the code that blocks the executor, by call site.
//!
//! The most common and costly migration bug is a blocking call left inside async code:
//! one `std::fs::read` or mutex wait in a hot task stalls every other task on that
//! worker thread. A [`Watchdog`] finds it three ways, on stable tokio:
//!
//! - **Slow polls, by call site.** Wrap a future with [`watch`] or
//!   [`.watched()`](WatchExt::watched); every poll longer than the `slow_poll` threshold
//!   becomes a [`Finding`] at the line that wrapped it, with its count, total and worst
//!   time. Findings from many tasks aggregate per call site.
//! - **Executor lag.** A probe task measures how late its timer fires each tick (the
//!   "event loop lag" of the asyncio world), as a [`Lag`] histogram: a stalled worker
//!   shows up even in code nobody wrapped. On a multi-thread runtime the probe runs on
//!   one worker at a time, so it sees a stall of the worker it is on (and of the timer
//!   driver); slow polls by call site are the precise tool there.
//! - **Blocking facades on a runtime thread.** A [`block_on`](crate::block_on) or other
//!   blocking facade called from async code is a finding at its call site, even where
//!   it is allowed to run. (One case cannot be seen with tokio's public API: the future
//!   that a multi-thread runtime's own `Runtime::block_on` polls on the calling thread
//!   looks like a blocking-pool thread. Code in spawned tasks is covered.)
//!
//! Findings are process-wide: every running watchdog sees every watched future. With
//! the `tracing` feature each finding is also logged as a `tracing` warning.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use async_bridge::watchdog::{WatchExt, Watchdog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dog = Watchdog::builder().slow_poll(Duration::from_millis(10)).start()?;
//!
//! async {
//!     std::thread::sleep(Duration::from_millis(30)); // a blocking call, by mistake
//! }
//! .watched()
//! .await;
//!
//! let report = dog.report();
//! let finding = &report.findings()[0];
//! assert_eq!(finding.count(), 1);
//! assert!(finding.worst() >= Duration::from_millis(30));
//! // e.g. "src/main.rs:8:2 blocked 1 poll, 30 ms total, worst 30 ms"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod registry;
mod report;
mod watched;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::ConfigError;

pub(crate) use registry::record_blocking_facade;

/// True while any watchdog runs (one atomic load).
#[inline]
pub(crate) fn is_running() -> bool {
    registry::threshold().is_some()
}
pub use report::{Finding, Kind, Lag, Report};
pub use watched::{watch, WatchExt, Watched};

/// A running watchdog; stops when dropped. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use async_bridge::watchdog::Watchdog;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dog = Watchdog::builder().start()?;
/// assert!(dog.report().findings().is_empty());
/// drop(dog); // stops the lag probe; watched futures stop timing their polls
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use = "a watchdog stops when dropped"]
pub struct Watchdog {
    findings: Arc<report::Findings>,
    probe: Option<JoinHandle<()>>,
}

/// Builds a [`Watchdog`]; see [`Watchdog::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::watchdog::Watchdog;
///
/// let err = Watchdog::builder().slow_poll(Duration::ZERO).start().unwrap_err();
/// assert!(err.to_string().contains("slow_poll must not be zero"));
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct WatchdogBuilder {
    slow_poll: Duration,
    lag_probe: Option<Duration>,
    handle: Option<Handle>,
}

impl Watchdog {
    /// Starts building a watchdog. Defaults: `slow_poll` 10 ms, a lag probe every
    /// 10 ms on the current runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dog = async_bridge::watchdog::Watchdog::builder()
    ///     .slow_poll(Duration::from_millis(50))
    ///     .start()
    ///     .unwrap();
    /// # drop(dog);
    /// # });
    /// ```
    pub fn builder() -> WatchdogBuilder {
        WatchdogBuilder {
            slow_poll: Duration::from_millis(10),
            lag_probe: Some(Duration::from_millis(10)),
            handle: None,
        }
    }

    /// What the watchdog found so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dog = async_bridge::watchdog::Watchdog::builder().start().unwrap();
    /// assert!(dog.report().findings().is_empty());
    /// # });
    /// ```
    pub fn report(&self) -> Report {
        self.findings.report()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        registry::unregister(&self.findings);
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("slow_poll", &self.findings.slow_poll())
            .field("lag_probe", &self.probe.is_some())
            .finish()
    }
}

impl WatchdogBuilder {
    /// A watched poll at least this long is a finding (default 10 ms). Must not be zero.
    pub fn slow_poll(mut self, threshold: Duration) -> Self {
        self.slow_poll = threshold;
        self
    }

    /// Ticks of the executor-lag probe (default 10 ms). Must not be zero.
    pub fn lag_probe(mut self, every: Duration) -> Self {
        self.lag_probe = Some(every);
        self
    }

    /// No lag probe: only watched futures and facades are checked (no runtime needed).
    pub fn without_lag_probe(mut self) -> Self {
        self.lag_probe = None;
        self
    }

    /// Runs the lag probe on this runtime (default: the current one).
    pub fn handle(mut self, handle: Handle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Starts the watchdog.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero threshold or tick, or when a lag probe is wanted and
    /// there is no runtime to run it on, or that runtime has no timers.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::watchdog::Watchdog;
    ///
    /// // Outside a runtime, a probe has nowhere to run; without one, fine.
    /// assert!(Watchdog::builder().start().is_err());
    /// assert!(Watchdog::builder().without_lag_probe().start().is_ok());
    /// ```
    pub fn start(self) -> Result<Watchdog, ConfigError> {
        const NAME: &str = "watchdog";
        if self.slow_poll.is_zero() {
            return Err(ConfigError::new(NAME, "slow_poll must not be zero"));
        }
        let probe = match self.lag_probe {
            None => None,
            Some(every) if every.is_zero() => {
                return Err(ConfigError::new(NAME, "lag_probe must not be zero"))
            }
            Some(every) => {
                let handle = self
                    .handle
                    .or_else(|| Handle::try_current().ok())
                    .ok_or_else(|| {
                        ConfigError::new(
                            NAME,
                            "the lag probe needs a tokio runtime: start the watchdog inside one, \
                         give it a `handle`, or use `without_lag_probe`",
                        )
                    })?;
                if !crate::timer::has_timers(&handle) {
                    return Err(ConfigError::new(
                        NAME,
                        "the lag probe needs a runtime with timers: build it with `enable_time`, \
                         or use `without_lag_probe`",
                    ));
                }
                Some(every).zip(Some(handle))
            }
        };
        let findings = Arc::new(report::Findings::new(self.slow_poll));
        registry::register(&findings);
        let probe =
            probe.map(|(every, handle)| handle.spawn(lag_probe(Arc::downgrade(&findings), every)));
        Ok(Watchdog { findings, probe })
    }
}

/// Measures how late a timer fires, every `every`.
async fn lag_probe(findings: Weak<report::Findings>, every: Duration) {
    loop {
        let due = tokio::time::Instant::now() + every;
        tokio::time::sleep_until(due).await;
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        match findings.upgrade() {
            Some(findings) => findings.record_lag(lag),
            None => return,
        }
    }
}
