//! A bounded shutdown of a worker or a pool.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, Either};

use super::mailbox::{Closed, Mailbox};
use crate::shutdown::{InterruptedCall, ShutdownReport};
use crate::timer::Deadline;

/// Shuts down `workers`: closes their mailboxes (waiting callers fail at once), cancels
/// their tokens, lets queued calls run for up to `grace`, then abandons what is left.
pub(crate) async fn shutdown<T: 'static>(
    name: &Arc<str>,
    workers: &[Arc<Mailbox<T>>],
    grace: Duration,
) -> ShutdownReport {
    let finished_before: u64 = workers.iter().map(|w| w.finished()).sum();
    // Calls interrupted here: which worker, the call's id, and its site.
    let mut interrupted = Vec::new();
    for (i, worker) in workers.iter().enumerate() {
        worker.close(Closed::ShutDown);
        worker.shutdown.cancel();
        worker.end_leases();
        let site = worker.running();
        if let (Some(id), Some(site)) = (worker.interrupt.interrupt_running(), site) {
            interrupted.push((i, id, site));
        }
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
    ShutdownReport::new(
        "worker",
        name,
        workers.iter().map(|w| w.finished()).sum::<u64>() - finished_before,
        abandoned,
        still_running,
    )
    .with_threads(
        workers.iter().filter(|w| w.is_stopped()).count(),
        workers.len(),
    )
    .with_interrupted(
        interrupted
            .into_iter()
            .map(|(i, id, site)| {
                // Stopped within the grace unless that same call still runs.
                let stopped = workers[i].interrupt.running() != id;
                InterruptedCall::new(site, stopped)
            })
            .collect(),
    )
}
