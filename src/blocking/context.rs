//! Where a facade is being called from, told apart with tokio's public API alone.
//!
//! tokio keeps the fact that matters — "is this thread inside a runtime, and may it
//! block?" — in a private thread-local. Its public API gives three signals:
//!
//! - [`Handle::try_current`]: is a runtime context set on this thread at all? It is on a
//!   runtime's worker threads, inside `Runtime::block_on`/`Handle::block_on`, on blocking
//!   pool threads (`spawn_blocking`, [`unblock`](crate::unblock)) and after
//!   `Handle::enter`. It is not on plain threads, rayon threads or dedicated threads.
//! - [`Handle::runtime_flavor`]: current_thread or multi-thread.
//! - whether this thread is the one that *drives* a scheduler, seen through
//!   [`tokio::task::yield_now`]: its first poll hands the waker to the scheduler of the
//!   thread, which wakes it later, or — when the thread drives no scheduler (a blocking
//!   pool thread, a thread that only entered a handle, a multi-thread worker inside
//!   `block_in_place`) — wakes it at once. This is the only public way to tell the thread
//!   of a current_thread runtime (where blocking could deadlock) from that runtime's
//!   blocking pool threads (where blocking is the point). `tokio::task::try_id` cannot:
//!   blocking tasks have task ids too.
//!
//! What each case then does is decided in [`super::entry`].

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use tokio::runtime::{Handle, RuntimeFlavor};

/// Where a facade call comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No runtime context: a plain, rayon or dedicated thread. Blocking is fine.
    Plain,
    /// A runtime context is set and the thread does not drive a current_thread runtime:
    /// a multi-thread worker, a `block_on` (ours or tokio's), a blocking pool thread.
    /// Blocking goes through `block_in_place`, which moves a worker's other tasks to
    /// another thread and is a no-op where there is nothing to move.
    Runtime,
    /// The thread drives a current_thread runtime: blocking it could deadlock.
    CurrentThreadDriver,
}

/// Finds out where the caller is.
#[inline]
pub(crate) fn caller() -> Caller {
    match Handle::try_current() {
        Err(_) => Caller::Plain,
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::CurrentThread if drives_a_scheduler() => Caller::CurrentThreadDriver,
            _ => Caller::Runtime,
        },
    }
}

/// Records whether it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

thread_local! {
    static PROBE: (Arc<Flag>, Waker) = {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (Arc::clone(&flag), Waker::from(flag))
    };
}

/// True when this thread drives a tokio scheduler right now (see the module docs).
///
/// A deferred waker is woken later by that scheduler, on this thread; it only sets a
/// flag that the next probe resets first.
pub(crate) fn drives_a_scheduler() -> bool {
    let probe = |flag: &Arc<Flag>, waker: &Waker| {
        flag.0.store(false, Ordering::Relaxed);
        let yielded = pin!(tokio::task::yield_now());
        // The first poll is always pending: it defers the waker or wakes it at once.
        let _ = yielded.poll(&mut Context::from_waker(waker));
        !flag.0.load(Ordering::Relaxed)
    };
    PROBE
        .try_with(|(flag, waker)| probe(flag, waker))
        .unwrap_or_else(|_| {
            // The thread-local is gone (the thread is exiting): use a fresh one.
            let flag = Arc::new(Flag(AtomicBool::new(false)));
            probe(&flag, &Waker::from(Arc::clone(&flag)))
        })
}
