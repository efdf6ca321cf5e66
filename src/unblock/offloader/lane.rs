//! The engine of a lane: admission, drainers, the FIFO queue and shutdown's bookkeeping.
//!
//! # Invariants
//!
//! All under the lane's one lock (`state`):
//!
//! 1. `drainers <= max_concurrency`: a drainer is started only while a slot is free,
//!    and gives its slot back (`release`) only after it finds the queue empty.
//! 2. `queued` counts the live entries of `queue` (waiting, not withdrawn); `queue` may
//!    also hold withdrawn entries, skipped when popped and compacted when they dominate.
//!    A caller that withdraws decrements `queued` once (`forget_queued`), a drainer that
//!    claims decrements it once (`pop`), a shutdown that abandons decrements it once
//!    (`abandon_queue`): each entry's claim (see the job layer) lets exactly one of them
//!    count it.
//! 3. At most `max_queue` entries wait beyond the idle drainers: a caller past that is
//!    rejected at once, before anything is queued.
//! 4. `running` counts entries claimed and not yet done; `sites[slot]` names what the
//!    drainer in `slot` runs. Counters (`completed`, `panicked`) are bumped before
//!    `running` drops, so whoever sees `running == 0` sees the counts too.
//! 5. A drainer claims the next entry before the job it just ran replies (seam rule 3:
//!    `done` pops under the same lock, called from the job layer's `before_reply`).
//! 6. `waking <= idle`: an idle drainer is notified only while fewer drainers are on
//!    their way than entries wait, so a burst of pushes costs one wake-up per drainer
//!    needed, not one per push.
//! 7. Once `closed`, nothing is admitted; the queue is abandoned (its callers fail with
//!    `is_shutdown`); the last drainer to leave abandons what a dropped drainer left.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::job::{self, Claim, Outcome, Ran, Reply};
use crate::origin::{Kind, Origin, Site};
use crate::sync::{AtomicU64, Condvar, Mutex, MutexGuard};
use crate::unblock::OffloadError;

/// How long an idle drainer keeps its thread, waiting for the next call.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// The shared state of a lane.
pub(super) struct Lane {
    pub(super) name: Arc<str>,
    pub(super) max_concurrency: usize,
    pub(super) max_queue: usize,
    pub(super) timeout: Option<Duration>,
    pub(super) handle: Option<Handle>,
    /// The parent of every job token; cancelled by `shutdown`.
    pub(super) shutdown: CancellationToken,
    pub(super) state: Mutex<State>,
    /// Wakes idle drainers: a call was queued for them, or the lane shut down.
    pub(super) wake: Condvar,
    /// Notified when the last running closure ends.
    pub(super) idle: Notify,
    pub(super) counters: Counters,
}

#[derive(Default)]
pub(super) struct State {
    /// Drainers holding a slot, idle ones included.
    pub(super) drainers: usize,
    /// Drainers waiting for work.
    pub(super) idle: usize,
    /// Idle drainers woken for a queued entry that have not yet left their wait.
    pub(super) waking: usize,
    /// Closures running now.
    pub(super) running: usize,
    /// Live entries waiting (the queue may also hold withdrawn ones, skipped when popped).
    pub(super) queued: usize,
    pub(super) queue: VecDeque<Entry>,
    pub(super) closed: bool,
    /// What each drainer slot is running now, by call site.
    pub(super) sites: Vec<Option<Site>>,
    pub(super) free_slots: Vec<usize>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) completed: AtomicU64,
    pub(super) panicked: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) cancelled: AtomicU64,
}

impl Counters {
    pub(super) fn finished(&self) -> u64 {
        self.completed.load(Ordering::Relaxed) + self.panicked.load(Ordering::Relaxed)
    }
}

/// A job on its way through the lane.
pub(super) struct Entry {
    /// Claimed by a drainer, or withdrawn by its caller: exactly one wins.
    claim: Arc<dyn Claim>,
    /// Runs the job, calling the drainer's bookkeeping before the caller sees the outcome.
    run: RunJob,
}

/// A type-erased job; its argument is the drainer's bookkeeping, run before the reply.
type RunJob = Box<dyn FnOnce(&mut dyn FnMut(Ran)) + Send>;

impl Entry {
    fn site(&self) -> Site {
        self.claim.origin().site
    }
}

impl Lane {
    pub(super) fn new(
        name: Arc<str>,
        max_concurrency: usize,
        max_queue: usize,
        timeout: Option<Duration>,
        handle: Option<Handle>,
    ) -> Self {
        Lane {
            name,
            max_concurrency,
            max_queue,
            timeout,
            handle,
            shutdown: CancellationToken::new(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            idle: Notify::new(),
            counters: Counters::default(),
        }
    }

    /// Makes a call's job: the entry to admit and the caller's reply.
    pub(super) fn pair<F, T>(&self, site: Site, cancellable: bool, f: F) -> (Entry, Reply<T>)
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let token = cancellable.then(|| self.shutdown.child_token());
        let origin = Origin::new(Kind::Offload, Some(Arc::clone(&self.name)), site);
        let (ticket, reply) = job::pair_queued(origin, token);
        let entry = Entry {
            claim: ticket.claim_handle(),
            run: Box::new(move |done: &mut dyn FnMut(Ran)| {
                ticket.run_and(f, done);
            }),
        };
        (entry, reply)
    }

    /// The runtime whose blocking pool runs the lane's closures.
    pub(super) fn handle(&self) -> Result<Handle, OffloadError> {
        self.handle
            .clone()
            .or_else(|| Handle::try_current().ok())
            .ok_or_else(|| {
                OffloadError::no_runtime(
                    &self.name,
                    "no tokio runtime: call the lane from inside one, or give the builder a `handle`",
                )
            })
    }

    /// Turns a job's outcome into the caller's answer.
    pub(super) fn answer<T>(&self, outcome: Outcome<T>) -> Result<T, OffloadError> {
        match outcome {
            Outcome::Completed(value) => Ok(value),
            Outcome::Panicked(payload) => Err(OffloadError::panic(&self.name, payload)),
            Outcome::Dropped if self.state.lock().closed => Err(OffloadError::shutdown(&self.name)),
            Outcome::Dropped => Err(OffloadError::cancelled(&self.name)),
        }
    }

    /// Starts the entry on a new drainer, queues it, or rejects it.
    pub(super) fn admit(
        self: &Arc<Self>,
        entry: Entry,
        handle: &Handle,
    ) -> Result<(), OffloadError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(OffloadError::shutdown(&self.name));
        }
        if state.queued < state.idle {
            // An idle drainer will take it at once. Wake one only if the drainers already
            // woken are fewer than the entries waiting: a burst of pushes wakes as many
            // drainers as it needs, not one syscall per push.
            state.queued += 1;
            entry.claim.runs_soon(); // under the harness: it holds the clock from now on
            state.queue.push_back(entry);
            if state.waking < state.queued.min(state.idle) {
                state.waking += 1;
                self.wake.notify_one();
            }
            Ok(())
        } else if state.drainers < self.max_concurrency {
            entry.claim.claim();
            state.drainers += 1;
            state.running += 1;
            let slot = state.free_slots.pop().unwrap_or_else(|| {
                state.sites.push(None);
                state.sites.len() - 1
            });
            state.sites[slot] = Some(entry.site());
            drop(state);
            let drainer = Drainer {
                lane: Arc::clone(self),
                slot,
                released: false,
            };
            job::spawn_blocking(handle, move || drainer.drain(entry));
            Ok(())
        } else if state.queued - state.idle < self.max_queue {
            state.queued += 1;
            state.queue.push_back(entry);
            Ok(())
        } else {
            drop(state);
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Err(OffloadError::rejected(&self.name, self.max_queue))
        }
    }

    /// The next live entry for the drainer in `slot`, waiting up to [`LINGER`] for one;
    /// `None` after releasing the slot.
    fn next(&self, slot: usize) -> Option<Entry> {
        let mut state = self.state.lock();
        let mut lingered = false;
        loop {
            if let Some(entry) = Self::pop(&mut state, slot) {
                return Some(entry);
            }
            if state.closed || lingered {
                self.release(state, slot);
                return None;
            }
            state.idle += 1;
            lingered = self.wake.wait_for(&mut state, LINGER).timed_out();
            state.idle -= 1;
            // Whether it was this drainer that was woken or not, one fewer is on its way.
            state.waking = state.waking.saturating_sub(1);
        }
    }

    /// Takes the first live entry of the queue for the drainer in `slot`.
    fn pop(state: &mut State, slot: usize) -> Option<Entry> {
        while let Some(entry) = state.queue.pop_front() {
            if entry.claim.claim() {
                state.queued -= 1;
                state.running += 1;
                state.sites[slot] = Some(entry.site());
                return Some(entry);
            }
        }
        None
    }

    fn release(&self, mut state: MutexGuard<'_, State>, slot: usize) {
        state.sites[slot] = None;
        state.free_slots.push(slot);
        state.drainers -= 1;
        if state.drainers > 0 {
            return;
        }
        // Normally the queue is empty here. It is not only when a drainer was dropped
        // without running (its runtime shut down): then nothing would ever run the queue,
        // so its callers are failed rather than left waiting.
        let (_, orphans) = Self::abandon_queue(&mut state);
        drop(state);
        drop(orphans);
    }

    /// Empties the queue, giving up its live entries (under the lock, so that a caller
    /// withdrawing at the same moment and this count each entry once). Returns how many
    /// were live, and the entries, to drop outside the lock.
    pub(super) fn abandon_queue(state: &mut State) -> (usize, VecDeque<Entry>) {
        let entries = std::mem::take(&mut state.queue);
        let abandoned = entries.iter().filter(|e| e.claim.abandon()).count();
        state.queued -= abandoned;
        (abandoned, entries)
    }

    /// Bookkeeping for a closure that ended, done before its caller sees the outcome,
    /// and, under the same lock, the next entry for the drainer in `slot` if one waits.
    fn done(&self, slot: usize, ran: Ran) -> Option<Entry> {
        // Counted first: whoever sees `running` drop (shutdown) sees this count too.
        match ran {
            Ran::Completed => self.counters.completed.fetch_add(1, Ordering::Relaxed),
            Ran::Panicked => self.counters.panicked.fetch_add(1, Ordering::Relaxed),
            Ran::Skipped => 0,
        };
        let mut state = self.state.lock();
        state.sites[slot] = None;
        let next = Self::pop(&mut state, slot);
        self.end_running(&mut state);
        next
    }

    /// One closure fewer runs; tells shutdown when none does.
    pub(super) fn end_running(&self, state: &mut State) {
        state.running -= 1;
        if state.running == 0 {
            self.idle.notify_waiters();
        }
    }

    /// A caller gave up on an entry that was still queued: free its place.
    pub(super) fn forget_queued(&self) {
        let mut state = self.state.lock();
        state.queued -= 1;
        // Until now `queued` counted this entry: a call admitted meanwhile may have seen
        // no idle drainer free for it and been queued without a wake-up (found by the
        // loom model `withdraw_vs_idle_drainer`). Wake one for it now.
        if state.waking < state.queued.min(state.idle) {
            state.waking += 1;
            self.wake.notify_one();
        }
        // Withdrawn entries stay in the deque until popped; compact when they dominate.
        if state.queue.len() > 2 * state.queued + 64 {
            state.queue.retain(|e| e.claim.is_waiting());
        }
    }
}

/// One `spawn_blocking` task of a lane: runs entries until the queue is empty.
struct Drainer {
    lane: Arc<Lane>,
    slot: usize,
    released: bool,
}

impl Drainer {
    fn drain(mut self, first: Entry) {
        let mut entry = first;
        loop {
            let (lane, slot) = (&self.lane, self.slot);
            let mut next = None;
            (entry.run)(&mut |ran| next = lane.done(slot, ran));
            match next.or_else(|| lane.next(slot)) {
                Some(next) => entry = next,
                None => {
                    self.released = true;
                    return;
                }
            }
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        // Only a drainer whose task was dropped before it ran (its runtime shut down)
        // gets here: its first entry, counted as running, never ran.
        if !self.released {
            let mut state = self.lane.state.lock();
            self.lane.end_running(&mut state);
            self.lane.release(state, self.slot);
        }
    }
}
