//! Which harness (if any) the current thread works for, and as which participant: the
//! live side of the core's seam to the harness ([`crate::seam`], where the ordering rules
//! are written down; its shells mirror these signatures without the `test-util` feature).
//!
//! The job layer captures the scope when work is submitted and installs it on the
//! thread that runs the work, so that `clock::now`/`clock::sleep` and nested offloads
//! inside the work see the same virtual clock, whichever thread (blocking pool, rayon,
//! a worker's own thread) it runs on.

use std::cell::RefCell;
use std::sync::Arc;

use super::harness::Harness;
pub(crate) use super::harness::{Participant, ParticipantRef};
use crate::origin::Origin;

#[derive(Clone)]
struct Scope {
    harness: Arc<Harness>,
    /// The ledger entry of the work running on this thread; `None` on the test's own
    /// runtime thread.
    participant: Option<u64>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

fn current() -> Option<Scope> {
    SCOPE.with(|s| s.borrow().clone())
}

/// True when this thread works for a harness (cheap: no allocation, no lock).
fn is_active() -> bool {
    SCOPE.with(|s| s.borrow().is_some())
}

/// Runs blocking work on `handle`'s blocking pool or, when this thread works for a
/// harness, on a thread of its own (seam rule 7).
pub(crate) fn spawn_blocking(handle: &tokio::runtime::Handle, f: impl FnOnce() + Send + 'static) {
    if is_active() {
        std::thread::Builder::new()
            .name("async-bridge-harness".into())
            .spawn(f)
            .expect("the harness could not start a thread for blocking work");
        return;
    }
    drop(handle.spawn_blocking(f));
}

/// Runs `f` with `scope` installed on this thread, restoring the previous scope after.
fn with_scope<R>(scope: Scope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SCOPE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let _restore = Restore(SCOPE.with(|s| s.borrow_mut().replace(scope)));
    f()
}

/// Runs the test's future on this thread as the harness's runtime thread.
pub(crate) fn as_runtime_thread<R>(harness: &Arc<Harness>, f: impl FnOnce() -> R) -> R {
    with_scope(
        Scope {
            harness: Arc::clone(harness),
            participant: None,
        },
        f,
    )
}

/// A ledger entry for a job submitted from this thread, when it works for a harness;
/// `queued` when the job waits in a lane or mailbox for work ahead of it (see
/// seam rule 2).
pub(crate) fn enter_job(origin: &Origin, queued: bool) -> Option<Participant> {
    current().map(|scope| scope.harness.enter(origin.clone(), queued))
}

impl Participant {
    /// Runs a participant's work on this thread: its scope installed and the harness's
    /// runtime entered, so that tokio's and this crate's clocks read virtual time.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let harness = self.harness();
        let _entered = harness.handle().enter();
        with_scope(
            Scope {
                harness: Arc::clone(harness),
                participant: Some(self.id()),
            },
            f,
        )
    }
}

/// Virtual now, when this thread works for a harness.
pub(crate) fn now() -> Option<std::time::Instant> {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|scope| scope.harness.now().into_std())
    })
}

/// Sleeps on the virtual clock when this thread works for a harness; false when it
/// does not (the caller then sleeps for real).
///
/// # Panics
///
/// On the test's runtime thread: blocking it would stop every task and timer.
#[track_caller]
pub(crate) fn sleep(duration: std::time::Duration) -> bool {
    let Some(scope) = current() else {
        return false;
    };
    match scope.participant {
        Some(id) => scope.harness.sleep(id, duration),
        None => panic!(
            "async_bridge::clock::sleep at {} was called on the test's runtime thread, where it \
             would stop every task and timer: in async code use tokio::time::sleep; run sync \
             code that sleeps through unblock, an Offloader, compute or a Worker",
            std::panic::Location::caller()
        ),
    }
    true
}

/// A facade's wait, seen by the harness: a participant that blocks its thread until a
/// waker fires lets go of the clock meanwhile (the future may be waiting for a virtual
/// timer), and takes it back in the waker, before its thread runs again.
#[derive(Default)]
pub(crate) struct ClockWait {
    /// The harness and participant of a wait in progress; the lock also orders the
    /// waker's "woken" against the waiter's check of it.
    suspended: parking_lot::Mutex<Option<(Arc<Harness>, u64)>>,
}

impl ClockWait {
    /// Called before the thread waits; `woken` tells whether the waker already fired.
    pub(crate) fn before_wait(&self, woken: impl FnOnce() -> bool) {
        let Some(Scope {
            harness,
            participant: Some(id),
        }) = current()
        else {
            return;
        };
        let mut suspended = self.suspended.lock();
        if !woken() {
            harness.suspend(id);
            *suspended = Some((harness, id));
        }
    }

    /// Called by the waker: marks the waiter woken and gives it the clock back first.
    pub(crate) fn wake(&self, mark_woken: impl FnOnce()) {
        let mut suspended = self.suspended.lock();
        if let Some((harness, id)) = suspended.take() {
            harness.resume(id);
        }
        mark_woken();
    }
}

/// The runtime a global facade should use under the harness: the harness's own, so its
/// timers are virtual too.
pub(crate) fn harness_handle() -> Option<tokio::runtime::Handle> {
    current().map(|scope| scope.harness.handle().clone())
}

/// The pool `compute` runs on when this thread works for a harness (seam rule 2 for CPU
/// jobs: queued behind a sleeping job, a job does not hold the clock).
pub(crate) fn compute_pool() -> Option<crate::ComputePool> {
    current().and_then(|scope| scope.harness.compute_pool())
}
