//! The synchronisation primitives of the crate's state machines, swappable for loom's.
//!
//! The job cell (`job.rs`), the `Offloader` lane (`unblock/offloader/lane.rs`), the
//! `Worker` mailbox (`worker/mailbox.rs`) and the virtual-time ledger
//! (`testing/harness.rs`) take their atomics, locks, condition variables and wakers from
//! here. In a normal build these are exactly the std, `parking_lot` and `futures` types
//! they always used (re-exports, no wrapper). Under `--cfg async_bridge_loom` they are
//! loom's, behind the same `parking_lot`-shaped API, so that the models in
//! `src/**/loom.rs` explore every interleaving of the real code, the way tokio checks its
//! own (`tokio/src/loom`).
//!
//! Only what loom can model is swapped. `Arc` stays std's (loom's cannot be coerced to
//! `Arc<dyn Claim>`; a reference count is not one of our state machines). tokio's own
//! types inside (`Notify`, `CancellationToken`, the runtime) stay tokio's: loom sees them
//! as opaque steps. What loom cannot model, the loom build replaces by the smallest
//! stand-in, each described on its item below: the drainer's `spawn_blocking`
//! ([`spawn_blocking`]) and a timed wait ([`Condvar::wait_for`]).
//!
//! The cfg is `async_bridge_loom`, not the customary `loom`: under a plain `--cfg loom`
//! a dev-dependency of ours (`blocking`, through `event-listener` and `concurrent-queue`)
//! does not build.

#[cfg(not(all(test, async_bridge_loom)))]
pub(crate) use self::std_impl::*;

#[cfg(all(test, async_bridge_loom))]
pub(crate) use self::loom_impl::*;

#[cfg(not(all(test, async_bridge_loom)))]
mod std_impl {

    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};

    /// Blocking work goes to the harness seam (tokio's blocking pool, or the harness's
    /// own threads under virtual time).
    pub(crate) use crate::seam::spawn_blocking;

    /// Blocking work goes to tokio's own blocking pool (where its mere existence holds a
    /// paused clock).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn spawn_on_pool(
        handle: &tokio::runtime::Handle,
        f: impl FnOnce() + Send + 'static,
    ) {
        drop(handle.spawn_blocking(f));
    }

    /// Gives the core to any thread that wants it (a thread looking for work between two
    /// looks, before it sleeps).
    pub(crate) use std::thread::yield_now;
}

#[cfg(all(test, async_bridge_loom))]
mod loom_impl {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::task::Waker;
    use std::time::Duration;

    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
    pub(crate) use loom::thread::yield_now;

    /// loom's mutex with `parking_lot`'s API: `lock` returns the guard.
    #[derive(Debug)]
    pub(crate) struct Mutex<T> {
        inner: loom::sync::Mutex<T>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex {
                inner: loom::sync::Mutex::new(value),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.inner,
                guard: Some(self.inner.lock().unwrap_or_else(PoisonError::into_inner)),
            }
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    /// A guard of [`Mutex`]; the lock can be let go of and taken back (`unlocked`, a
    /// condvar wait), as with `parking_lot`.
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a loom::sync::Mutex<T>,
        /// `None` only while unlocked inside `unlocked` or a wait.
        guard: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<'a, T> MutexGuard<'a, T> {
        /// Runs `f` with the lock let go of, then takes it back.
        pub(crate) fn unlocked<U>(this: &mut Self, f: impl FnOnce() -> U) -> U {
            drop(this.guard.take());
            let result = f();
            this.relock();
            result
        }

        fn relock(&mut self) {
            self.guard = Some(self.mutex.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard.as_ref().expect("locked")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("locked")
        }
    }

    /// loom's condition variable with `parking_lot`'s API.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar {
        inner: loom::sync::Condvar,
    }

    /// Whether a [`Condvar::wait_for`] timed out.
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar::default()
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.guard.take().expect("locked");
            let inner = self
                .inner
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
            guard.guard = Some(inner);
        }

        /// loom has no time. A model picks how a timed wait ends with
        /// [`model::set_timed_waits`]:
        ///
        /// - [`TimedWait::TimesOut`] (the default): the lock is let go of, other threads
        ///   may run (a yield), the lock is taken back and the wait reports a timeout:
        ///   the deadline passing at any point after the waiter let go, whether or not
        ///   it was notified meanwhile (a notification then finds no waiter);
        /// - [`TimedWait::Untimed`]: an untimed wait that only a notification ends (the
        ///   deadline is later than anything in the model), reporting no timeout.
        pub(crate) fn wait_for<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: Duration,
        ) -> WaitTimeoutResult {
            match model::timed_waits() {
                model::TimedWait::TimesOut => {
                    MutexGuard::unlocked(guard, loom::thread::yield_now);
                    WaitTimeoutResult(true)
                }
                model::TimedWait::Untimed => {
                    self.wait(guard);
                    WaitTimeoutResult(false)
                }
            }
        }

        pub(crate) fn notify_one(&self) {
            self.inner.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.inner.notify_all();
        }
    }

    /// tokio's blocking pool is outside the model: the work runs on a new loom thread
    /// instead, joined by [`model::join_spawned`].
    pub(crate) fn spawn_blocking(
        _handle: &tokio::runtime::Handle,
        f: impl FnOnce() + Send + 'static,
    ) {
        let thread = loom::thread::spawn(f);
        model::SPAWNED.with(|spawned| spawned.borrow_mut().push(thread));
    }

    /// As [`spawn_blocking`]: a new loom thread instead of tokio's pool.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn spawn_on_pool(
        handle: &tokio::runtime::Handle,
        f: impl FnOnce() + Send + 'static,
    ) {
        spawn_blocking(handle, f);
    }

    /// Helpers for the models.
    pub(crate) mod model {
        use std::cell::{Cell, RefCell};
        use std::sync::atomic::{AtomicUsize, Ordering};

        use loom::thread::JoinHandle;

        /// How [`Condvar::wait_for`](super::Condvar::wait_for) ends in this model.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum TimedWait {
            TimesOut,
            Untimed,
        }

        // loom runs every thread of a model on the test's own OS thread: a std
        // thread-local here is one value for the whole model, which is what these are.
        std::thread_local! {
            static TIMED_WAITS: Cell<TimedWait> = const { Cell::new(TimedWait::TimesOut) };
            pub(super) static SPAWNED: RefCell<Vec<JoinHandle<()>>> = const { RefCell::new(Vec::new()) };
        }

        pub(crate) fn timed_waits() -> TimedWait {
            TIMED_WAITS.with(Cell::get)
        }

        /// Sets how timed waits end, for the models run next on this test thread.
        pub(crate) fn set_timed_waits(how: TimedWait) {
            TIMED_WAITS.with(|t| t.set(how));
        }

        /// Joins every thread started by [`spawn_blocking`](super::spawn_blocking) so
        /// far in this execution (and those they started).
        pub(crate) fn join_spawned() {
            while let Some(thread) = SPAWNED.with(|s| s.borrow_mut().pop()) {
                thread.join().expect("a spawned thread panicked");
            }
        }

        /// Runs `f` under loom (preemptions bounded by `LOOM_MAX_PREEMPTIONS`, 2 when
        /// unset) and prints how many interleavings it explored.
        pub(crate) fn check<F>(name: &str, f: F)
        where
            F: Fn() + Sync + Send + 'static,
        {
            let mut builder = loom::model::Builder::new();
            if builder.preemption_bound.is_none() {
                builder.preemption_bound = Some(2);
            }
            let bound = builder.preemption_bound;
            let counter = std::sync::Arc::new(AtomicUsize::new(0));
            let count = std::sync::Arc::clone(&counter);
            let how = timed_waits();
            builder.check(move || {
                count.fetch_add(1, Ordering::Relaxed);
                set_timed_waits(how);
                SPAWNED.with(|s| s.borrow_mut().clear());
                f();
                join_spawned();
            });
            println!(
                "loom model {name}: {} interleavings (preemption bound {bound:?})",
                counter.load(Ordering::Relaxed)
            );
        }
    }
}
