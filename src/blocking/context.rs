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
//!
//! # What cannot be told apart without a panic
//!
//! tokio keeps one more fact private: whether a thread that is *inside* a runtime
//! (`EnterRuntime::Entered` in its thread context, set by `Runtime::block_on`) may leave
//! it through `block_in_place` (`allow_block_in_place`). It is false inside a
//! current_thread runtime's `block_on` and while a `LocalSet` is polled
//! (`LocalSet`'s `poll` and `run_until` clear it); only `block_in_place` reads it, and it
//! panics when it is false. `LocalSet`'s own context has one public reader,
//! `spawn_local`, which panics outside one too. So:
//!
//! - a current_thread runtime's context on a thread that does not drive it
//!   ([`Caller::CurrentThreadOther`]) is a blocking pool thread of it, a thread that
//!   entered its handle, or a second thread inside its `Runtime::block_on` while another
//!   thread holds its scheduler (perhaps polling a `LocalSet`). The first two may block;
//!   the third may not: it must be free to take the scheduler over when the driver
//!   leaves, and tokio's own `blocking_*` calls panic there. All three look alike to
//!   the public API (no scheduler of their own; a task id on a blocking thread and in a
//!   `LocalSet` task alike), so the facade asks `block_in_place`: a no-op on the first
//!   two, tokio's panic on the third, caught before the future is polled and returned
//!   as `is_would_deadlock`. (Running the third directly was tried: it hangs when the
//!   driver leaves while the facade waits for a task of that runtime, and when it
//!   blocks a `LocalSet` whose task it waits for; see tests/blocking_callers.rs.)
//! - a multi-thread runtime's context ([`Caller::Runtime`]) goes through `block_in_place`,
//!   which hands a worker's tasks away or leaves a `Runtime::block_on`. The one case in
//!   it that tokio refuses, a `LocalSet` polled inside a multi-thread runtime's
//!   `Runtime::block_on` (`LocalSet::block_on(&multi_thread_runtime, ..)`), cannot be
//!   seen beforehand either: its refusal is tokio's panic, caught the same way. So is a
//!   current_thread runtime's thread that entered a multi-thread runtime's handle
//!   (`Handle::enter`) inside its own task: the handle says multi-thread, the scheduler
//!   it drives is current_thread, and only the scheduler's kind, which is private, tells.
//!   Under `panic = "abort"` these cases abort (tests/blocking_abort.rs); every other
//!   refusal is decided here, without a panic.

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
    /// A multi-thread runtime's context is set: a worker, a `block_on` (ours or tokio's),
    /// a blocking pool thread. Blocking goes through `block_in_place`, which moves a
    /// worker's other tasks to another thread, leaves a `Runtime::block_on`, and is a
    /// no-op where there is nothing to move.
    Runtime,
    /// A current_thread runtime's context is set, but this thread does not drive it: a
    /// blocking pool thread of it, a thread that entered its handle, or a second thread
    /// inside its `Runtime::block_on` while another thread holds the scheduler. Through
    /// `block_in_place`: a no-op on the first two, tokio's refusal on the third (see the
    /// module docs). Not async code: a blocking pool thread is where blocking belongs.
    CurrentThreadOther,
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
            RuntimeFlavor::CurrentThread => Caller::CurrentThreadOther,
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

/// Drops calls given up unrun at shutdown (a queue, a line) where blocking is allowed,
/// before it returns (their callers are waiting for the answers the drop gives): their
/// closures are user code, and what they own may block or panic as it drops where an
/// executor runs (a tokio `Runtime` owned by a legacy client does). In a multi-thread
/// runtime's context (a worker, its `Runtime::block_on`, its blocking pool) the drop runs
/// in `block_in_place`, as tokio drops a queued `spawn_blocking` closure on a thread that
/// may block; elsewhere in place: a plain thread may block, and a current_thread runtime
/// has no thread to hand its other tasks to. Not the blocking pool, as for
/// [`drop_off_the_executor`]: a saturated pool would hold the callers' answers as long as
/// it stays full. Only at shutdown, and only when something was given up: handing a
/// worker's other tasks away costs microseconds.
pub(crate) fn drop_where_blocking_is_allowed<V>(value: V) {
    if cfg!(all(test, async_bridge_loom)) || caller() != Caller::Runtime {
        return drop(value);
    }
    let mut value = Some(value);
    // tokio refuses `block_in_place` in a `LocalSet` on a multi-thread runtime's
    // `block_on` (no public query tells that case beforehand): then the value is still
    // here, and is dropped in place after the unwind, not during it.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| drop(value.take()));
    }));
    drop(value);
}

/// Drops the withdrawn calls a caller clears from a queue (their callers gone, nobody
/// waiting for the answers) off the executor: in a runtime's context (either flavor, a
/// `LocalSet` included), on that runtime's blocking pool, as the runner that would have
/// popped them would have dropped them on its thread (a runtime shutting down drops them
/// in place); outside a runtime (a plain, rayon or dedicated thread, which may block), in
/// place. Not `block_in_place`: tokio refuses it inside a `LocalSet` with a panic no query
/// foretells, which a panic hook would see (and `panic = "abort"` would abort on) at every
/// clearing. Only when a queue holds more withdrawn entries than its threshold: the hop
/// costs microseconds, spread over the withdrawals before it.
pub(crate) fn drop_off_the_executor<V: Send + 'static>(value: V) {
    if cfg!(all(test, async_bridge_loom)) {
        return drop(value);
    }
    match Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}
