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

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::origin::Origin;
use crate::sync::{self, Condvar, Mutex};

#[cfg(all(test, async_bridge_loom))]
mod loom;

pub(crate) struct Harness {
    handle: Handle,
    start: Instant,
    ledger: Mutex<Ledger>,
    /// Wakes the holder when the active count reaches zero.
    released: Condvar,
    /// Bumped on every event that is progress: ledger changes, runtime wake-ups, polls
    /// of the test's future. The stall monitor watches it.
    epoch: Arc<AtomicU64>,
    /// Where `compute` runs under this harness (made on first use, gone with the
    /// harness): a rayon pool behind a lane, so that a job queued behind one asleep on
    /// the clock holds the clock only once it is claimed, which rayon's global pool
    /// cannot tell.
    compute: std::sync::OnceLock<Option<crate::ComputePool>>,
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
    phase: Phase,
    /// Counted in `active`: the entry holds the clock.
    holds: bool,
}

/// Where a participant is; only a running one holds the clock (with one exception: a
/// sleeper holds it until its timer is registered).
enum Phase {
    /// Submitted to a lane or mailbox, waiting for its turn: the work ahead of it holds
    /// the clock, or lets it move.
    Queued,
    Running,
    /// In `clock::sleep` until this virtual time.
    Asleep(Instant),
    /// In a blocking facade, waiting for its future to be woken.
    Waiting,
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
            compute: std::sync::OnceLock::new(),
        })
    }

    /// The pool `compute` uses under this harness; `None` if its threads cannot start
    /// (then `compute` uses rayon's global pool as outside the harness).
    pub(crate) fn compute_pool(&self) -> Option<crate::ComputePool> {
        self.compute
            .get_or_init(|| {
                // Unnamed: its jobs are reported as `compute`, as outside the harness.
                crate::ComputePool::builder("")
                    .threads(rayon::current_num_threads())
                    .max_queue(usize::MAX / 2)
                    .build()
                    .ok()
            })
            .clone()
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

    /// Adds a participant. A `queued` one does not hold the clock until it
    /// [starts](ParticipantRef::start); any other holds it from now until it leaves.
    pub(crate) fn enter(self: &Arc<Self>, origin: Origin, queued: bool) -> Participant {
        let mut ledger = self.ledger.lock();
        let id = ledger.next_id;
        ledger.next_id += 1;
        let phase = if queued {
            Phase::Queued
        } else {
            Phase::Running
        };
        ledger.entries.insert(
            id,
            Entry {
                origin,
                phase,
                holds: false,
            },
        );
        if !queued {
            self.hold_for(&mut ledger, id);
        }
        drop(ledger);
        self.progress();
        Participant {
            harness: Arc::clone(self),
            id,
        }
    }

    /// Makes entry `id` hold the clock, if it does not already.
    fn hold_for(self: &Arc<Self>, ledger: &mut Ledger, id: u64) {
        let Some(entry) = ledger.entries.get_mut(&id) else {
            return;
        };
        if entry.holds {
            return;
        }
        entry.holds = true;
        ledger.active += 1;
        if !ledger.holder {
            ledger.holder = true;
            let harness = Arc::clone(self);
            // Its existence alone holds tokio's paused clock (from this very call).
            sync::spawn_on_pool(&self.handle, move || harness.hold());
        }
    }

    /// Makes entry `id` let go of the clock, if it holds it.
    fn release_for(&self, ledger: &mut Ledger, id: u64) {
        let Some(entry) = ledger.entries.get_mut(&id) else {
            return;
        };
        if !entry.holds {
            return;
        }
        entry.holds = false;
        ledger.active -= 1;
        if ledger.active == 0 {
            self.released.notify_all();
        }
    }

    /// Moves entry `id` from phase `from` (any phase when `None`) to `to`; false when it
    /// was in another phase (or is gone).
    fn set_phase(
        ledger: &mut Ledger,
        id: u64,
        from: Option<fn(&Phase) -> bool>,
        to: Phase,
    ) -> bool {
        match ledger.entries.get_mut(&id) {
            Some(entry) if from.is_none_or(|is| is(&entry.phase)) => {
                entry.phase = to;
                true
            }
            _ => false,
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
        self.release_for(&mut ledger, id);
        ledger.entries.remove(&id);
        drop(ledger);
        self.progress();
    }

    /// A queued participant starts running: it holds the clock from now on.
    fn start(self: &Arc<Self>, id: u64) {
        let mut ledger = self.ledger.lock();
        if Self::set_phase(
            &mut ledger,
            id,
            Some(|p| matches!(p, Phase::Queued)),
            Phase::Running,
        ) {
            self.hold_for(&mut ledger, id);
            drop(ledger);
            self.progress();
        }
    }

    /// Blocks the calling participant for `duration` of virtual time, letting the clock
    /// move meanwhile.
    pub(crate) fn sleep(self: &Arc<Self>, id: u64, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        // The participant still holds the clock: the deadline is exact. Past the far
        // future (`Duration::MAX`, say) it is clamped, as tokio clamps its own timers.
        let now = self.now();
        let deadline = now
            .checked_add(duration)
            .unwrap_or_else(|| now + Duration::from_secs(FAR_FUTURE_SECS));
        Self::set_phase(&mut self.ledger.lock(), id, None, Phase::Asleep(deadline));
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
            // Unless the timer already fired (a test's own `tokio::time::advance`).
            if matches!(ledger.entries.get(&id), Some(e) if matches!(e.phase, Phase::Asleep(_))) {
                self.release_for(&mut ledger, id);
            }
        }
        self.progress();
        if woke_rx.recv().is_err() {
            // The timer was dropped unfired: the harness's runtime is gone (the test
            // ended while this work slept). Time is real again; sleeping for real keeps
            // a retry loop from spinning.
            std::thread::sleep(duration);
        }
    }

    /// The timer of a sleeping participant fired: it holds the clock again, before its
    /// thread runs.
    fn wake(self: &Arc<Self>, id: u64) {
        let mut ledger = self.ledger.lock();
        if Self::set_phase(
            &mut ledger,
            id,
            Some(|p| matches!(p, Phase::Asleep(_))),
            Phase::Running,
        ) {
            self.hold_for(&mut ledger, id);
        }
        drop(ledger);
        self.progress();
    }

    /// A participant waits for something other than a timer of its own (a facade's
    /// future): it lets go of the clock until [`resume`](Self::resume).
    pub(crate) fn suspend(&self, id: u64) {
        let mut ledger = self.ledger.lock();
        if Self::set_phase(&mut ledger, id, None, Phase::Waiting) {
            self.release_for(&mut ledger, id);
        }
        drop(ledger);
        self.progress();
    }

    /// The suspended participant was woken: it holds the clock again, before its thread
    /// runs.
    pub(crate) fn resume(self: &Arc<Self>, id: u64) {
        let mut ledger = self.ledger.lock();
        if Self::set_phase(
            &mut ledger,
            id,
            Some(|p| matches!(p, Phase::Waiting)),
            Phase::Running,
        ) {
            self.hold_for(&mut ledger, id);
        }
        drop(ledger);
        self.progress();
    }

    /// Who is in the ledger, for a stall report; empty when nobody is.
    pub(crate) fn describe(&self) -> (usize, String) {
        let ledger = self.ledger.lock();
        let mut text = String::new();
        for entry in ledger.entries.values() {
            let origin = &entry.origin;
            let _ = match entry.phase {
                Phase::Queued => writeln!(text, "  - {origin}: queued behind the work above"),
                Phase::Running => writeln!(text, "  - {origin}: running (holds the clock)"),
                Phase::Asleep(t) => writeln!(
                    text,
                    "  - {origin}: asleep on the clock until +{:?}",
                    t - self.start
                ),
                Phase::Waiting => {
                    writeln!(
                        text,
                        "  - {origin}: waiting in a blocking facade for its future"
                    )
                }
            };
        }
        (ledger.active, text)
    }

    /// Virtual time elapsed since the harness started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now() - self.start
    }
}

/// How far ahead a sleep past the representable future is clamped to: about 30 years,
/// as tokio does.
const FAR_FUTURE_SECS: u64 = 86_400 * 365 * 30;

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

    /// A handle that can start this participant from wherever its job is claimed.
    pub(crate) fn starter(&self) -> ParticipantRef {
        ParticipantRef {
            harness: Arc::clone(&self.harness),
            id: self.id,
        }
    }
}

/// Starts a queued participant; see [`Participant::starter`].
pub(crate) struct ParticipantRef {
    harness: Arc<Harness>,
    id: u64,
}

impl ParticipantRef {
    /// The participant's job was claimed: it holds the clock from now on (idempotent).
    pub(crate) fn start(&self) {
        self.harness.start(self.id);
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.harness.leave(self.id);
    }
}
