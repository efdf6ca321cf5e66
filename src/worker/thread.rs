//! The worker's thread: builds the object with the maker, runs the calls of its mailbox
//! one at a time, applies the panic policy, and drops the object when it ends.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use super::error::{cause, Cause, RebuildFailed};
use super::mailbox::{Closed, Mailbox};
use super::{AfterPanic, WorkerError};
use crate::error::ConfigError;
use crate::interrupt::TakeInterrupter;
use crate::job::{self, Ran};

/// Builds the worker's object, on its thread.
pub(crate) type Maker<T> = Box<dyn FnMut() -> Result<T, Cause> + Send>;

/// Boxes a user's maker, turning its error into a shareable cause.
pub(crate) fn maker<T, M, E>(mut make: M) -> Maker<T>
where
    M: FnMut() -> Result<T, E> + Send + 'static,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    Box::new(move || make().map_err(|e| Arc::from(e.into())))
}

/// A worker thread that has been started and is running its maker.
pub(crate) struct Starting {
    name: Arc<str>,
    made: mpsc::Receiver<Result<(), WorkerError>>,
}

impl Starting {
    /// Waits for the maker: `Ok` once the object is built and the worker serves calls.
    pub(crate) fn wait(self) -> Result<(), WorkerError> {
        self.made.recv().unwrap_or_else(|_| {
            Err(WorkerError::closed(
                &self.name,
                Some(cause("its thread ended before the maker returned")),
            ))
        })
    }
}

/// Starts a worker thread called `thread_name` serving `shared`'s mailbox.
pub(crate) fn start<T: 'static>(
    shared: &Arc<Mailbox<T>>,
    thread_name: String,
    mut maker: Maker<T>,
    after_panic: AfterPanic,
    interrupter: Option<TakeInterrupter<T>>,
) -> Result<Starting, WorkerError> {
    let (made_tx, made) = mpsc::sync_channel(1);
    let name = Arc::clone(&shared.name);
    let thread_shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let shared = thread_shared;
            let stop = StopOnExit(&shared);
            let object = match panic::catch_unwind(AssertUnwindSafe(&mut maker)) {
                Ok(Ok(object)) => object,
                Ok(Err(cause)) => {
                    let _ = made_tx.send(Err(WorkerError::maker(&shared.name, cause)));
                    return;
                }
                Err(payload) => {
                    let _ = made_tx.send(Err(WorkerError::panic(&shared.name, payload)));
                    return;
                }
            };
            let none = shared
                .interrupt
                .replace(interrupter.as_ref().map(|take| take(&object)));
            debug_assert!(none.is_none());
            let _ = made_tx.send(Ok(()));
            drop(made_tx);
            serve(&shared, object, maker, after_panic, interrupter);
            drop(stop);
        })
        .map_err(|e| {
            WorkerError::config(
                &name,
                ConfigError::with_source(
                    &name,
                    format!("cannot start the worker's thread: {e}"),
                    e,
                ),
            )
        })?;
    Ok(Starting { name, made })
}

/// Marks the worker stopped when its thread ends, however it ends, so that no caller is
/// left waiting on a thread that is gone.
struct StopOnExit<'a, T: 'static>(&'a Mailbox<T>);

impl<T: 'static> Drop for StopOnExit<'_, T> {
    fn drop(&mut self) {
        self.0.mark_stopped();
    }
}

/// Runs the mailbox's calls until it is closed and empty, then drops the object here.
pub(super) fn serve<T: 'static>(
    shared: &Mailbox<T>,
    object: T,
    mut maker: Maker<T>,
    after_panic: AfterPanic,
    interrupter: Option<TakeInterrupter<T>>,
) {
    shared.enter_thread();
    // `None` only after a rebuild whose maker failed; no call runs after that.
    let object = RefCell::new(Some(object));
    let mut claimed = None;
    while let Some(envelope) = claimed.take().or_else(|| shared.next()) {
        let mut broken = false;
        let (started, waited) = envelope.claimed_and_waited();
        envelope.run(&object, &shared.interrupt, &mut |ran| {
            let mut ended = std::time::Instant::now();
            let took = ended.saturating_duration_since(started);
            shared.count(ran, took);
            if ran != Ran::Skipped {
                // What its caller waited, the wake-up aside: before the reply, so that
                // the caller's next call looks (or not) by it.
                shared.look_for_reply.answered(waited + took);
            }
            if ran == Ran::Panicked && after_panic == AfterPanic::Rebuild {
                // The old object goes first: it may hold something the new one needs
                // (a lock file, a device, an exclusive connection).
                drop_quietly(shared.interrupt.replace(None));
                drop_quietly(object.borrow_mut().take());
                match panic::catch_unwind(AssertUnwindSafe(&mut maker)) {
                    Ok(Ok(new)) => {
                        let none = shared
                            .interrupt
                            .replace(interrupter.as_ref().map(|take| take(&new)));
                        debug_assert!(none.is_none());
                        *object.borrow_mut() = Some(new);
                        // The next call waited through the rebuild: not its run time.
                        ended = std::time::Instant::now();
                    }
                    Ok(Err(cause)) => {
                        broken = true;
                        let why = RebuildFailed(cause);
                        shared.close(Closed::Stopped(Arc::new(why)));
                    }
                    Err(payload) => {
                        broken = true;
                        let msg = job::panic_message(&payload).unwrap_or("no message");
                        let why = RebuildFailed(cause(format!("the maker panicked: {msg}")));
                        shared.close(Closed::Stopped(Arc::new(why)));
                    }
                }
            }
            // The next call is claimed before this one's reply, so that under the
            // virtual-time harness the clock cannot move between the two.
            if !broken {
                claimed = shared.try_next(ended);
            }
            Some((waited, took)) // for the ledger (see `job::pair_queued`)
        });
        if broken {
            shared.abandon_queue();
            break;
        }
    }
    // The interrupter goes with the thread, before the object it came from (as on a
    // rebuild): left in the mailbox, it would be dropped with the worker's last handle,
    // in async code, where an interrupter that owns a runtime panics as it drops.
    drop_quietly(shared.interrupt.replace(None));
    drop_quietly(object.into_inner());
}

/// Drops a value, containing a panic of its destructor: the thread must still report
/// that it stopped.
fn drop_quietly<T>(value: T) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(value)));
}

static GROUPS: AtomicU64 = AtomicU64::new(1);

#[cfg(not(all(test, async_bridge_loom)))]
thread_local! {
    /// The group of the worker whose thread this is; 0 on any other thread.
    static GROUP: Cell<u64> = const { Cell::new(0) };
}

// loom runs a model's threads on one OS thread: each needs a value of its own.
#[cfg(all(test, async_bridge_loom))]
loom::thread_local! {
    /// The group of the worker whose thread this is; 0 on any other thread.
    static GROUP: Cell<u64> = Cell::new(0);
}

/// A fresh group id, for a worker or a pool: a thread of the group calling into it
/// would wait for itself.
pub(crate) fn new_group() -> u64 {
    GROUPS.fetch_add(1, Ordering::Relaxed)
}

/// True on a thread of `group` (the worker itself or a pool sibling).
pub(crate) fn in_group(group: u64) -> bool {
    GROUP.with(Cell::get) == group
}

/// Marks the calling thread as one of `group`'s.
pub(crate) fn enter_group(group: u64) {
    GROUP.with(|g| g.set(group));
}
