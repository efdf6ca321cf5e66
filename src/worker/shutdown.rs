//! A bounded shutdown of a worker or a pool, and its report.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::{pin, Pin};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{self, Either};
use tokio::runtime::Handle;

use super::mailbox::{Closed, Shared, Site};
use crate::timer;

/// What [`Worker::shutdown`](crate::Worker::shutdown) or
/// [`WorkerPool::shutdown`](crate::WorkerPool::shutdown) found.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::Worker;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let log = Worker::builder("log").spawn(|| Ok::<_, std::io::Error>(Vec::<String>::new()))?;
/// log.call(|lines| lines.push("started".into())).await?;
/// let report = log.shutdown(Duration::from_secs(5)).await;
/// assert!(report.is_complete());        // the thread ended and dropped its object
/// assert_eq!(report.abandoned(), 0);
/// assert!(log.call(|lines| lines.len()).await.unwrap_err().is_closed());
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct WorkerShutdownReport {
    name: Arc<str>,
    workers: usize,
    stopped: usize,
    finished: u64,
    abandoned: usize,
    still_running: Vec<Site>,
}

impl WorkerShutdownReport {
    /// True when every worker thread ended within the grace period: its queue was run or
    /// abandoned, and its object was dropped on its thread.
    pub fn is_complete(&self) -> bool {
        self.stopped == self.workers
    }

    /// How many calls finished (returned or panicked) while shutdown waited.
    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// How many queued calls were failed with [`is_closed`](crate::WorkerError::is_closed)
    /// because the grace period ended before they could run.
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// The call sites of the calls still running when the grace period ended. Their
    /// tokens are cancelled; their threads are not killed, and each drops its object
    /// once its call returns.
    pub fn still_running(&self) -> &[&'static Location<'static>] {
        &self.still_running
    }
}

impl fmt::Display for WorkerShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker `{}` shut down: {} of {} threads stopped, {} calls finished during grace, \
             {} queued calls abandoned, {} still running",
            self.name,
            self.stopped,
            self.workers,
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

/// Shuts down `workers`: closes their mailboxes (waiting callers fail at once), cancels
/// their tokens, lets queued calls run for up to `grace`, then abandons what is left.
pub(crate) async fn shutdown<T: 'static>(
    name: &Arc<str>,
    workers: &[Arc<Shared<T>>],
    grace: Duration,
) -> WorkerShutdownReport {
    let finished_before: u64 = workers.iter().map(|w| w.finished()).sum();
    for worker in workers {
        worker.close(Closed::ShutDown);
        worker.shutdown.cancel();
    }
    let mut deadline = pin!(Deadline::new(grace));
    'workers: for worker in workers {
        loop {
            let stopped = worker.stopped_notified();
            let mut stopped = pin!(stopped);
            stopped.as_mut().enable();
            if worker.is_stopped() {
                break;
            }
            if let Either::Right(_) = future::select(stopped, deadline.as_mut()).await {
                break 'workers;
            }
        }
    }
    let abandoned = workers
        .iter()
        .filter(|w| !w.is_stopped())
        .map(|w| w.abandon_queue())
        .sum();
    let still_running = workers.iter().filter_map(|w| w.running()).collect();
    WorkerShutdownReport {
        name: Arc::clone(name),
        workers: workers.len(),
        stopped: workers.iter().filter(|w| w.is_stopped()).count(),
        finished: workers.iter().map(|w| w.finished()).sum::<u64>() - finished_before,
        abandoned,
        still_running,
    }
}

/// The end of a grace period: a tokio timer when the caller is in a runtime with timers,
/// otherwise a helper thread that waits it out (and ends early once the deadline is
/// dropped), so that the bound holds on any executor.
enum Deadline {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Thread {
        fired: oneshot::Receiver<()>,
        /// Dropped with the deadline: wakes the helper thread so it ends at once.
        _dropped: mpsc::Sender<()>,
    },
    Now,
}

impl Deadline {
    fn new(grace: Duration) -> Self {
        if grace.is_zero() {
            return Deadline::Now;
        }
        if let Some(sleep) = Handle::try_current()
            .ok()
            .and_then(|handle| timer::sleep_on(&handle, grace))
        {
            return Deadline::Tokio(Box::pin(sleep));
        }
        let (fire, fired) = oneshot::channel();
        let (dropped, wait) = mpsc::channel::<()>();
        let helper = std::thread::Builder::new()
            .name("worker-shutdown-timer".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(grace) {
                    let _ = fire.send(());
                }
            });
        match helper {
            Ok(_) => Deadline::Thread {
                fired,
                _dropped: dropped,
            },
            // No thread to time the grace with: do not wait at all rather than unbounded.
            Err(_) => Deadline::Now,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Deadline::Tokio(sleep) => sleep.as_mut().poll(cx),
            Deadline::Thread { fired, .. } => Pin::new(fired).poll(cx).map(drop),
            Deadline::Now => Poll::Ready(()),
        }
    }
}
