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
        }
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
    /// [`WorkerError::is_closed`](crate::WorkerError::is_closed) error for each caller).
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// The call sites of the calls still running when the grace period ended.
    pub fn still_running(&self) -> &[&'static Location<'static>] {
        &self.still_running
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
        Ok(())
    }
}
