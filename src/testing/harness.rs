//! The harness's ledger of participants, and the one `spawn_blocking` task that holds
//! tokio's paused clock while any participant is active.
//!
//! tokio's public API has no way to hold a paused clock, but every `spawn_blocking`
//! task holds it (on a current_thread runtime) from spawn until it ends. So the harness
//! keeps exactly one such *holder* alive while the ledger counts an active participant,
//! and lets it end when the count reaches zero. A participant is a job of the library
//! (from submission until its reply is delivered) minus the time it spends asleep on
//! the clock: `clock::sleep` leaves the ledger and waits for a tokio timer, which
//! re-enters the ledger before it wakes the thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::job::Origin;

pub(crate) struct Harness {
    handle: Handle,
    start: Instant,
    ledger: Mutex<Ledger>,
    /// Wakes the holder when the active count reaches zero.
    released: Condvar,
    /// Bumped on every event that is progress: ledger changes, runtime wake-ups, polls
    /// of the test's future. The stall monitor watches it.
    epoch: Arc<AtomicU64>,
}

#[derive(Default)]
struct Ledger {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    /// Participants that hold the clock (entries not asleep on it).
    active: usize,
    holder: bool,
}

struct Entry {
    origin: Origin,
    asleep_until: Option<Instant>,
    /// Suspended in a blocking facade, waiting for its future to be woken.
    waiting: bool,
}

impl Entry {
    fn holds_clock(&self) -> bool {
        self.asleep_until.is_none() && !self.waiting
    }
}

impl Harness {
    /// A harness over the (paused, current_thread) runtime of `handle`; call inside it.
    /// `epoch` is shared with the runtime's unpark hook.
    pub(crate) fn new(handle: Handle, epoch: Arc<AtomicU64>) -> Arc<Self> {
        let start = {
            let _entered = handle.enter();
            Instant::now()
        };
        Arc::new(Harness {
            handle,
            start,
            ledger: Mutex::new(Ledger::default()),
            released: Condvar::new(),
            epoch,
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn progress(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Virtual time now.
    pub(crate) fn now(&self) -> Instant {
        let _entered = self.handle.enter();
        Instant::now()
    }

    /// Adds an active participant; the clock stays still until it leaves.
    pub(crate) fn enter(self: &Arc<Self>, origin: Origin) -> Participant {
        let mut ledger = self.ledger.lock();
        let id = ledger.next_id;
        ledger.next_id += 1;
        ledger.entries.insert(
            id,
            Entry {
                origin,
                asleep_until: None,
                waiting: false,
            },
        );
        self.activate(&mut ledger);
        drop(ledger);
        self.progress();
        Participant {
            harness: Arc::clone(self),
            id,
        }
    }

    fn activate(self: &Arc<Self>, ledger: &mut Ledger) {
        ledger.active += 1;
        if !ledger.holder {
            ledger.holder = true;
            let harness = Arc::clone(self);
            // Its existence alone holds tokio's paused clock (from this very call).
            drop(self.handle.spawn_blocking(move || harness.hold()));
        }
    }

    fn deactivate(&self, ledger: &mut Ledger) {
        ledger.active -= 1;
        if ledger.active == 0 {
            self.released.notify_all();
        }
    }

    /// The holder task: waits until no participant is active.
    fn hold(&self) {
        let mut ledger = self.ledger.lock();
        while ledger.active > 0 {
            self.released.wait(&mut ledger);
        }
        ledger.holder = false;
    }

    fn leave(&self, id: u64) {
        let mut ledger = self.ledger.lock();
        if let Some(entry) = ledger.entries.remove(&id) {
            if entry.holds_clock() {
                self.deactivate(&mut ledger);
            }
        }
        drop(ledger);
        self.progress();
    }

    /// Blocks the calling participant for `duration` of virtual time, letting the clock
    /// move meanwhile.
    pub(crate) fn sleep(self: &Arc<Self>, id: u64, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        // The participant still holds the clock: the deadline is exact.
        let deadline = self.now() + duration;
        let (woke_tx, woke_rx) = mpsc::channel::<()>();
        let harness = Arc::clone(self);
        // Spawned before the participant lets go of the clock, so the runtime has this
        // timer before it can advance time.
        drop(self.handle.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            harness.wake(id);
            let _ = woke_tx.send(());
        }));
        {
            let mut ledger = self.ledger.lock();
            if let Some(entry) = ledger.entries.get_mut(&id) {
                entry.asleep_until = Some(deadline);
            }
            self.deactivate(&mut ledger);
        }
        self.progress();
        // An error means the runtime is gone (the test ended): stop sleeping.
        let _ = woke_rx.recv();
    }

    /// A participant waits for something other than a timer of its own (a facade's
    /// future): it lets go of the clock until [`resume`](Self::resume).
    pub(crate) fn suspend(&self, id: u64) {
        {
            let mut ledger = self.ledger.lock();
            if let Some(entry) = ledger.entries.get_mut(&id) {
                entry.waiting = true;
            }
            self.deactivate(&mut ledger);
        }
        self.progress();
    }

    /// The suspended participant was woken: it holds the clock again, before its thread
    /// runs.
    pub(crate) fn resume(self: &Arc<Self>, id: u64) {
        let mut ledger = self.ledger.lock();
        if let Some(entry) = ledger.entries.get_mut(&id) {
            entry.waiting = false;
        }
        self.activate(&mut ledger);
        drop(ledger);
        self.progress();
    }

    /// The timer of a sleeping participant fired: it holds the clock again, before its
    /// thread runs.
    fn wake(self: &Arc<Self>, id: u64) {
        let mut ledger = self.ledger.lock();
        if let Some(entry) = ledger.entries.get_mut(&id) {
            entry.asleep_until = None;
        }
        self.activate(&mut ledger);
        drop(ledger);
        self.progress();
    }

    /// Who is in the ledger, for a stall report; empty when nobody is.
    pub(crate) fn describe(&self) -> (usize, String) {
        let ledger = self.ledger.lock();
        let mut text = String::new();
        for entry in ledger.entries.values() {
            let _ = match entry.asleep_until {
                None if entry.waiting => writeln!(
                    text,
                    "  - {}: waiting in a blocking facade for its future",
                    entry.origin
                ),
                None => writeln!(text, "  - {}: running (holds the clock)", entry.origin),
                Some(t) => writeln!(
                    text,
                    "  - {}: asleep on the clock until +{:?}",
                    entry.origin,
                    t - self.start
                ),
            };
        }
        (ledger.active, text)
    }

    /// Virtual time elapsed since the harness started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now() - self.start
    }
}

/// A ledger entry; leaves the ledger when dropped.
pub(crate) struct Participant {
    harness: Arc<Harness>,
    id: u64,
}

impl Participant {
    pub(crate) fn harness(&self) -> &Arc<Harness> {
        &self.harness
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.harness.leave(self.id);
    }
}
