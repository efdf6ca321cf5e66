//! `ShutdownReport`: what a bounded shutdown of a lane, a worker or a pool found.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::origin::Site;

/// What a bounded shutdown found: returned by [`Offloader::shutdown`](crate::Offloader::shutdown),
/// [`Worker::shutdown`](crate::Worker::shutdown) and
/// [`WorkerPool::shutdown`](crate::WorkerPool::shutdown).
///
/// Shutdown never kills a thread: work still running when the grace period ends has its
/// cancellation token cancelled, is named here by call site, and finishes on its own.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("reports").build().unwrap();
/// lane.run(|| ()).await.unwrap();
/// let report = lane.shutdown(Duration::from_secs(1)).await;
/// assert!(report.is_complete());
/// assert_eq!(report.to_string(), "lane `reports` shut down: 0 finished during grace, 0 queued calls abandoned, 0 still running");
/// assert!(lane.run(|| ()).await.unwrap_err().is_shutdown());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    what: &'static str,
    name: Arc<str>,
    finished: u64,
    abandoned: usize,
    still_running: Vec<Site>,
    /// Worker threads stopped, of all (for workers and pools).
    threads: Option<(usize, usize)>,
    interrupted: Vec<InterruptedCall>,
}

/// A call that was running when a shutdown began and that the shutdown interrupted
/// (through the worker's [`interrupter`](crate::WorkerBuilder::interrupter)); from
/// [`ShutdownReport::interrupted`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_bridge::Worker;
///
/// // A legacy scanner that can be told to stop from another thread.
/// struct Scanner {
///     stop: Arc<AtomicBool>,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let scanner = Worker::builder("scanner")
///     .interrupter(|s: &Scanner| {
///         let stop = Arc::clone(&s.stop);
///         move || stop.store(true, Ordering::SeqCst)
///     })
///     .spawn(|| Ok::<_, std::io::Error>(Scanner { stop: Arc::default() }))?;
/// let (started_tx, started_rx) = tokio::sync::oneshot::channel();
/// let scan = tokio::spawn(scanner.call(move |s| {
///     started_tx.send(()).unwrap();
///     while !s.stop.load(Ordering::SeqCst) {
///         std::hint::spin_loop(); // one step of a long scan
///     }
///     "stopped"
/// }));
/// started_rx.await?;
/// let report = scanner.shutdown(Duration::from_secs(30)).await;
/// assert_eq!(report.interrupted().len(), 1);
/// assert!(report.interrupted()[0].stopped_within_grace());
/// assert!(report.is_complete());
/// assert_eq!(scan.await??, "stopped");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptedCall {
    site: Site,
    stopped: bool,
}

impl InterruptedCall {
    pub(crate) fn new(site: Site, stopped: bool) -> Self {
        InterruptedCall { site, stopped }
    }

    /// Where the interrupted call was made.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// True when the call returned within the grace period after the interrupt.
    pub fn stopped_within_grace(&self) -> bool {
        self.stopped
    }
}

impl ShutdownReport {
    pub(crate) fn new(
        what: &'static str,
        name: &Arc<str>,
        finished: u64,
        abandoned: usize,
        still_running: Vec<Site>,
    ) -> Self {
        ShutdownReport {
            what,
            name: Arc::clone(name),
            finished,
            abandoned,
            still_running,
            threads: None,
            interrupted: Vec::new(),
        }
    }

    /// For workers: the running calls this shutdown interrupted.
    pub(crate) fn with_interrupted(mut self, interrupted: Vec<InterruptedCall>) -> Self {
        self.interrupted = interrupted;
        self
    }

    /// For workers: how many of their threads stopped within the grace period.
    pub(crate) fn with_threads(mut self, stopped: usize, of: usize) -> Self {
        self.threads = Some((stopped, of));
        self
    }

    /// True when everything stopped within the grace period: nothing still running (and,
    /// for a worker or pool, every thread ended and dropped its object).
    pub fn is_complete(&self) -> bool {
        self.still_running.is_empty() && self.threads.is_none_or(|(stopped, of)| stopped == of)
    }

    /// How many calls finished (returned or panicked) while shutdown waited.
    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// How many queued calls were failed instead of running (an
    /// [`OffloadError::is_shutdown`](crate::OffloadError::is_shutdown) or
    /// [`WorkerError::is_shutdown`](crate::WorkerError::is_shutdown) error for each caller).
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// The call sites of the calls still running when the grace period ended.
    pub fn still_running(&self) -> &[&'static Location<'static>] {
        &self.still_running
    }

    /// The calls running when shutdown began that it interrupted (workers and pools with
    /// an [`interrupter`](crate::WorkerBuilder::interrupter)), and whether each stopped
    /// within the grace period.
    pub fn interrupted(&self) -> &[InterruptedCall] {
        &self.interrupted
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` shut down: ", self.what, self.name)?;
        if let Some((stopped, of)) = self.threads {
            write!(f, "{stopped} of {of} threads stopped, ")?;
        }
        write!(
            f,
            "{} finished during grace, {} queued calls abandoned, {} still running",
            self.finished,
            self.abandoned,
            self.still_running.len()
        )?;
        for (i, site) in self.still_running.iter().enumerate() {
            f.write_str(if i == 0 { " (called at " } else { ", " })?;
            write!(f, "{site}")?;
        }
        if !self.still_running.is_empty() {
            f.write_str(")")?;
        }
        if !self.interrupted.is_empty() {
            let stopped = self.interrupted.iter().filter(|c| c.stopped).count();
            write!(
                f,
                "; {} interrupted, {stopped} of them stopped within grace",
                self.interrupted.len()
            )?;
        }
        Ok(())
    }
}
