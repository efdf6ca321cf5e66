//! Stopping a running call from the cancelling side: the interrupter (a worker's, taken
//! from its object, or one given with a lane call), and the slot that says which call
//! it may interrupt. A worker has one slot; a lane has one per drainer.
//!
//! # Invariants
//!
//! 1. `running` names the call whose closure is executing on the slot's thread, and
//!    only between the closure's start and its return (or unwind): it is set and
//!    cleared under the slot's lock, by that thread.
//! 2. The interrupter fires only under the same lock and only when `running` is the id
//!    of the call being given up: a call that has returned is never interrupted, and a
//!    later call is never interrupted for an earlier one.
//! 3. It fires on the cancelling thread (a dropped caller, a timeout, a shutdown) and
//!    then, until the call returns, again every [`REFIRE`] from one process-wide
//!    re-fire thread; never on the object's thread. Re-firing is what makes interrupts
//!    that only stop what is already running (SQLite's) reliable: a call given up in
//!    the instant before it reached its blocking part is stopped once it gets there.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How often an interrupt is fired again while the call it is for has not returned.
const REFIRE: Duration = Duration::from_millis(5);

/// Stops a call blocked inside the object (e.g. `rusqlite::InterruptHandle::interrupt`).
pub(crate) type Interrupter = Arc<dyn Fn() + Send + Sync>;

/// Takes an interrupter from the object, on the worker's thread.
pub(crate) type TakeInterrupter<T> = Arc<dyn Fn(&T) -> Interrupter + Send + Sync>;

/// A fresh call id (0 is "none").
pub(crate) fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static IDS: AtomicU64 = AtomicU64::new(1);
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// Which call runs now on a worker's thread, and how to interrupt it.
#[derive(Default)]
pub(crate) struct Slot {
    inner: Mutex<State>,
    /// The slot has an interrupter of its own (a worker's): calls are marked. Written
    /// only by the slot's thread (`set`), read by it (`run`), so relaxed is enough.
    armed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    /// The id of the call whose closure runs now; 0 when none does.
    running: u64,
    fire: Option<Interrupter>,
}

impl Slot {
    /// Sets (or clears, while the object is rebuilt and when the worker's thread ends)
    /// the interrupter; returns the one before, for the caller to drop outside the lock.
    pub(crate) fn replace(&self, fire: Option<Interrupter>) -> Option<Interrupter> {
        let armed = fire.is_some();
        let before = std::mem::replace(&mut self.inner.lock().fire, fire);
        self.armed
            .store(armed, std::sync::atomic::Ordering::Relaxed);
        before
    }

    /// Runs call `id`'s closure, marking it as the one an interrupt may stop (when the
    /// slot has an interrupter: otherwise nothing could stop it, and it costs no lock).
    pub(crate) fn run<R>(&self, id: u64, f: impl FnOnce() -> R) -> R {
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return f();
        }
        self.run_with(id, None, f)
    }

    /// As [`run`](Self::run), with an interrupter of this call's own (a lane call's) in
    /// place of the slot's while it runs.
    pub(crate) fn run_with<R>(
        &self,
        id: u64,
        own: Option<&Interrupter>,
        f: impl FnOnce() -> R,
    ) -> R {
        struct Clear<'a>(&'a Slot, Option<Option<Interrupter>>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                let mut state = self.0.inner.lock();
                state.running = 0;
                if let Some(previous) = self.1.take() {
                    state.fire = previous;
                }
            }
        }
        let previous = {
            let mut state = self.inner.lock();
            state.running = id;
            own.map(|own| state.fire.replace(Arc::clone(own)))
        };
        let _clear = Clear(self, previous);
        f()
    }

    /// Interrupts call `id` if its closure is running now and there is an interrupter,
    /// and keeps re-firing until it returns; true when it fired.
    pub(crate) fn interrupt(self: &Arc<Self>, id: u64) -> bool {
        let fired = self.fire_if_running(id);
        if fired {
            refire(self, id);
        }
        fired
    }

    /// Interrupts whichever call runs now (for shutdown), as [`interrupt`](Self::interrupt);
    /// its id when it fired.
    pub(crate) fn interrupt_running(self: &Arc<Self>) -> Option<u64> {
        let id = self.running();
        self.interrupt(id).then_some(id)
    }

    /// Fires the interrupter, under the lock, if call `id` runs now.
    fn fire_if_running(&self, id: u64) -> bool {
        let state = self.inner.lock();
        match &state.fire {
            Some(fire) if state.running == id && id != 0 => {
                // A panicking interrupter must not take down its caller (a dropping
                // future, a shutdown) nor the re-fire thread: it counts as fired.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fire()));
                true
            }
            _ => false,
        }
    }

    /// The id of the call running now; 0 when none.
    pub(crate) fn running(&self) -> u64 {
        self.inner.lock().running
    }
}

/// Interrupts waiting to be fired again: the slot and the call they are for.
struct Refire {
    pending: Mutex<Vec<(Weak<Slot>, u64)>>,
    added: Condvar,
}

/// Has call `id` of `slot` interrupted again every [`REFIRE`] until it returns, by the
/// one re-fire thread (started on first use; it sleeps while nothing is pending).
fn refire(slot: &Arc<Slot>, id: u64) {
    static REFIRES: OnceLock<Option<Arc<Refire>>> = OnceLock::new();
    let refires = REFIRES.get_or_init(|| {
        let refires = Arc::new(Refire {
            pending: Mutex::new(Vec::new()),
            added: Condvar::new(),
        });
        let thread_refires = Arc::clone(&refires);
        std::thread::Builder::new()
            .name("async-bridge-interrupts".into())
            .spawn(move || refire_loop(&thread_refires))
            .ok()
            .map(|_| refires)
    });
    // Without the thread (none could start), the first interrupt is all there is.
    if let Some(refires) = refires {
        refires.pending.lock().push((Arc::downgrade(slot), id));
        refires.added.notify_one();
    }
}

fn refire_loop(refires: &Refire) {
    let mut pending = refires.pending.lock();
    loop {
        if pending.is_empty() {
            refires.added.wait(&mut pending);
            continue;
        }
        refires.added.wait_for(&mut pending, REFIRE);
        pending.retain(|(slot, id)| match slot.upgrade() {
            Some(slot) => slot.fire_if_running(*id),
            None => false,
        });
    }
}
