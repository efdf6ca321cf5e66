//! The engine of a lane: admission, drainers, the FIFO queue and shutdown's bookkeeping,
//! under an [`Offloader`](crate::Offloader) (drainers on tokio's blocking pool) and a
//! [`ComputePool`](crate::ComputePool) (drainers on the pool's rayon threads).
//!
//! - this file: the engine;
//! - `call`: [`OffloadCall`], the future a caller awaits.
//!
//! # Invariants
//!
//! All under the lane's one lock (`state`):
//!
//! 1. `drainers <= max_concurrency`: a drainer is started only while a slot is free,
//!    and gives its slot back (`release`) only after it finds the queue empty.
//! 2. `queued` counts the live entries of `queue` (waiting, not withdrawn); `queue` may
//!    also hold withdrawn entries, skipped when popped and compacted when they dominate.
//!    A caller that withdraws decrements `queued` once (`withdraw`), a drainer that
//!    claims decrements it once (`pop`), a shutdown that abandons decrements it once
//!    (`abandon_queue`): each entry's claim (see the job layer) lets exactly one of them
//!    count it, and each does it under the lock in the same step as its claim, so
//!    `queued` is exact whenever the lock is free.
//! 3. At most `max_queue` entries wait beyond the idle drainers and those on their way
//!    back to the queue (a drainer between the end of one call and its next look at the
//!    queue is neither running nor idle): a caller past that is rejected at once,
//!    before anything is queued.
//! 4. `running` counts entries claimed and not yet done; `sites[slot]` names what the
//!    drainer in `slot` runs. Counters (`completed`, `panicked`) are bumped before
//!    `running` drops, so whoever sees `running == 0` sees the counts too.
//! 5. A drainer claims the next entry before the job it just ran replies (seam rule 3:
//!    `done` pops under the same lock, called from the job layer's `before_reply`).
//!    An entry admitted while fewer live entries wait than drainers are not running
//!    (idle, starting, or on their way back to the queue) is claimed without time
//!    passing: it holds the virtual clock from its admission (`runs_soon`, seam rule 2).
//! 6. `waking <= idle`: an idle drainer is notified only while fewer drainers are on
//!    their way than entries wait, so a burst of pushes costs one wake-up per drainer
//!    needed, not one per push. On their way: woken (`waking`), starting, or back from
//!    a call to the queue, where it looks before it sleeps. An entry that a drainer
//!    that runs nothing will take is queued for it: no notification, no new drainer
//!    (a caller awaiting one call after another, whose next call comes while the
//!    drainer of the last is still on its way back, neither wakes a sleeping drainer
//!    nor starts a second one). A drainer on its way back always looks (what it drops
//!    after its answer cannot unwind it: see the job layer's `Slot`), though that drop,
//!    the caller's code, may take a while, and it may be the very thread that calls: a
//!    call made on one of the lane's drainer threads counts on no drainer on its way
//!    back.
//! 7. Once `closed`, nothing is admitted; the queue is abandoned (its callers fail with
//!    `is_shutdown`); the last drainer to leave abandons what a dropped drainer left.
//! 8. `reserved` counts places held ahead of a call (`poll_reserve`, tower's
//!    `poll_ready`) against the lane's capacity, `max_concurrency + max_queue`: one is
//!    granted only while `queued + running + reserved` is below it; a caller without one
//!    is refused a place that reservations hold; a call with one is admitted (queued past
//!    `max_queue` if the drainers are all busy: its place was counted), and a
//!    reservation given up frees its place. Whatever lowers `queued + running +
//!    reserved` wakes the tasks waiting to reserve (`reservers`), and so does `closed`:
//!    their wakers are taken under the lock and woken after it is released (a waker may
//!    call back into the lane).
//! 9. At most one drainer spins (`spinning`: a blocking-pool drainer that found the
//!    queue empty looks again, the lock released, for up to `SPIN` before it sleeps).
//!    While it does, it counts in `idle` and in `waking` (an idle drainer already on its
//!    way), and an admission notifies no one: the spinner takes the first entry, and on
//!    taking it notifies the idle drainers that the entries queued behind it need (the
//!    admission's rule of invariant 6, applied late). It stops under the lock, in the
//!    same step as it sees an entry queued (then it pops it) or none (then it waits,
//!    counted idle, for the next admission's notification): no entry is left queued
//!    with every drainer asleep, and a burst pays its wake-ups on the drainers' side, not
//!    the caller's.

mod call;
#[cfg(all(test, async_bridge_loom))]
mod loom;

use std::cell::Cell;
use std::collections::VecDeque;
use std::pin::pin;

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use call::OffloadCall;

use crate::interrupt::{self, Interrupter};
use crate::job::{self, Claim, Outcome, Ran, Reply, Timing};
use crate::look::{Look, ReplyLook};
use crate::origin::{Kind, Origin, Site};
use crate::shutdown::{InterruptedCall, ShutdownReport};
use crate::stats::{Counters, Stats, Writers};
use crate::sync::{Condvar, Mutex, MutexGuard};
use crate::timer::{self, Deadline};
use crate::unblock::OffloadError;

/// How long an idle blocking-pool drainer keeps its thread, waiting for the next call.
/// (Rayon drainers do not linger: an idle rayon thread should steal other work.)
///
/// A drainer that gives its thread back while callers keep coming makes tokio start a
/// new thread (the old one is not yet idle in tokio's pool when the next drainer is
/// spawned). 2 ms was enough on an idle machine; under a load average of 6 on 2 cores
/// the caller's thread was sometimes late by more than that between waves of calls and
/// a lane of 4 took a 5th thread (tests/unblock_threads.rs, 2 to 4 failures in 10
/// runs); at 20 ms none in 12. An idle drainer waits on a condvar (after at most one
/// [`SPIN`]): it costs no CPU.
const LINGER: Duration = Duration::from_millis(20);

/// How long a blocking-pool drainer that found the queue empty keeps looking for the
/// next call, the lock released, before it waits on the condvar: one drainer at a time
/// (`State::spinning`), once per look at an empty queue, giving its core away between
/// looks (invariant 9).
///
/// A caller that submits calls a little slower than the drainers run them (a burst
/// through a `tower::Service`, which builds each call as it polls it, where
/// `Offloader::run` builds them all before the first is polled) found the drainers
/// asleep at nearly every call and paid a condvar notification for it: a futex wake on
/// the caller's thread, and the woken drainer's switch in and, finding nothing more, out.
/// On 2 cores that was about half of a 10k burst of tiny calls (`tower_burst_10k`:
/// 1.4–1.9× of the same burst through `Offloader::run`). While a drainer spins,
/// admissions notify no one: the spinner takes the first call and notifies for the calls
/// queued behind it, so the wake-ups a burst needs are paid on the drainers' side. A lane
/// that goes quiet costs one spin, not a spin per linger.
const SPIN: Duration = Duration::from_micros(20);

/// Where a lane's drainers run.
pub(crate) enum Runner {
    /// On tokio's blocking pool: this runtime's, or the one current when a call is
    /// first polled.
    Blocking(Option<Handle>),
    /// On a rayon pool's threads.
    Rayon(rayon::ThreadPool),
}

#[cfg(not(all(test, async_bridge_loom)))]
thread_local! {
    /// The lane whose drainer runs on this thread (its address), or 0.
    static DRAINING: Cell<usize> = const { Cell::new(0) };
}

// loom runs a model's threads on one OS thread: each needs a value of its own.
#[cfg(all(test, async_bridge_loom))]
::loom::thread_local! {
    /// The lane whose drainer runs on this thread (its address), or 0.
    static DRAINING: Cell<usize> = Cell::new(0);
}

/// The shared state of a lane.
pub(crate) struct Lane {
    pub(super) name: Arc<str>,
    /// Offload or compute: for origins and error messages.
    kind: Kind,
    pub(super) max_concurrency: usize,
    pub(super) max_queue: usize,
    pub(super) timeout: Option<Duration>,
    runner: Runner,
    /// The parent of every job token; cancelled by `shutdown`.
    pub(super) shutdown: CancellationToken,
    pub(super) state: Mutex<State>,
    /// Wakes idle drainers: a call was queued for them, or the lane shut down.
    pub(super) wake: Condvar,
    /// Notified when the last running closure ends.
    pub(super) idle: Notify,
    pub(super) counters: Counters,
    /// How long a caller whose call a drainer that runs nothing takes looks for the reply
    /// (`crate::look`); the drainers write it, from the stamps they keep for the stats.
    look_for_reply: Look,
}

#[derive(Default)]
pub(super) struct State {
    /// Drainers holding a slot, idle ones included.
    pub(super) drainers: usize,
    /// Drainers waiting for work.
    pub(super) idle: usize,
    /// Idle drainers woken for a queued entry that have not yet left their wait.
    pub(super) waking: usize,
    /// Drainers started for a queued entry whose thread has not yet taken it: the
    /// entry stays queued (and withdrawable) until a drainer really starts it.
    pub(super) starting: usize,
    /// Closures running now.
    pub(super) running: usize,
    /// Live entries waiting (the queue may also hold withdrawn ones, skipped when popped).
    pub(super) queued: usize,
    pub(super) queue: VecDeque<Entry>,
    pub(super) closed: bool,
    /// What each drainer slot is running now, by call site.
    pub(super) sites: Vec<Option<Site>>,
    /// Each drainer slot's interrupt slot: which call runs there, and its interrupter.
    pub(super) interrupts: Vec<Arc<interrupt::Slot>>,
    pub(super) free_slots: Vec<usize>,
    /// Places reserved ahead of a call and not yet used or given up (invariant 8).
    pub(super) reserved: usize,
    /// Tasks waiting for a place to reserve; all woken when one may be free.
    pub(super) reservers: Vec<Waker>,
    /// A drainer is looking for work before it sleeps (`Lane::spin`; it counts in
    /// `idle` and in `waking`).
    pub(super) spinning: bool,
}

/// A job on its way through the lane.
pub(super) struct Entry {
    /// When it was admitted, for the queue-wait distribution, the ledger and the look of
    /// the caller (its first poll).
    /// (Set at admission, not when the call is made: one clock read per call.)
    admitted: Option<Instant>,
    /// When a drainer claimed it: the end of its queue wait and the start of its run.
    claimed: Option<Instant>,
    /// Claimed by a drainer, or withdrawn by its caller: exactly one wins.
    claim: Arc<dyn Claim>,
    /// Runs the job, calling the drainer's bookkeeping before the caller sees the outcome.
    run: RunJob,
}

/// A type-erased job; its argument is the drainer's bookkeeping, run before the reply,
/// which returns the drainer's timing of the job for the ledger.
type RunJob = Box<dyn FnOnce(&interrupt::Slot, &mut dyn FnMut(Ran) -> Timing) + Send>;

impl Entry {
    fn site(&self) -> Site {
        self.claim.origin().site
    }
}

impl Lane {
    pub(crate) fn new(
        name: Arc<str>,
        max_concurrency: usize,
        max_queue: usize,
        timeout: Option<Duration>,
        runner: Runner,
    ) -> Self {
        let kind = match runner {
            Runner::Blocking(_) => Kind::Offload,
            Runner::Rayon(_) => Kind::Compute,
        };
        Lane {
            name,
            kind,
            max_concurrency,
            max_queue,
            timeout,
            runner,
            shutdown: CancellationToken::new(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            idle: Notify::new(),
            counters: Counters::default(),
            look_for_reply: Look::new(),
        }
    }

    /// Makes a call's job: the entry to admit and the caller's reply, and the call's id
    /// for interrupts.
    pub(super) fn pair<F, T>(
        &self,
        site: Site,
        cancellable: bool,
        interrupter: Option<Interrupter>,
        f: F,
    ) -> (Entry, Reply<T>, u64)
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let token = cancellable.then(|| self.shutdown.child_token());
        // An unnamed lane (the harness's compute pool) names no lane in reports.
        let name = (!self.name.is_empty()).then(|| Arc::clone(&self.name));
        let origin = Origin::new(self.kind, name, site);
        let (ticket, reply) = job::pair_queued(origin, token);
        let id = interrupt::next_id();
        let entry = Entry {
            admitted: None,
            claimed: None,
            claim: ticket.claim_handle(),
            run: Box::new(
                move |slot: &interrupt::Slot, done: &mut dyn FnMut(Ran) -> Timing| {
                    ticket.run_and(
                        // Only a call that carries an interrupter is marked in the slot: no
                        // lock on the hot path of the others.
                        |token| match &interrupter {
                            Some(own) => slot.run_with(id, Some(own), || f(token)),
                            None => f(token),
                        },
                        done,
                    );
                },
            ),
        };
        (entry, reply, id)
    }

    /// Interrupts call `id` where it runs, if it has an interrupter.
    pub(super) fn interrupt(&self, id: u64) {
        let slots = self.state.lock().interrupts.clone();
        for slot in slots {
            if slot.interrupt(id) {
                return;
            }
        }
    }

    /// An error of this lane.
    pub(super) fn error(&self, make: impl FnOnce(Kind, &Arc<str>) -> OffloadError) -> OffloadError {
        make(self.kind, &self.name)
    }

    /// The runtime whose blocking pool runs the lane's closures; `None` for a rayon lane.
    pub(super) fn blocking_handle(&self) -> Result<Option<Handle>, OffloadError> {
        match &self.runner {
            Runner::Rayon(_) => Ok(None),
            Runner::Blocking(handle) => handle
                .clone()
                .or_else(|| Handle::try_current().ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(|k, n| {
                        OffloadError::no_runtime(
                            k,
                            n,
                            "no tokio runtime: call the lane from inside one, or give the builder a `handle`",
                        )
                    })
                }),
        }
    }

    /// A timer for a call's timeout: the caller's own runtime's, where it has one with
    /// timers (a timer of the lane's runtime would panic inside tokio once that runtime
    /// shut down under a caller from elsewhere); for a caller outside any runtime, of a
    /// lane given a runtime, a helper thread's, for the same reason. `None` when nothing
    /// can time it.
    pub(super) fn timeout_timer(&self, after: Duration) -> Option<Deadline> {
        if let Some(sleep) = Handle::try_current()
            .ok()
            .and_then(|current| timer::sleep_on(&current, after))
        {
            return Some(Deadline::tokio(sleep));
        }
        match &self.runner {
            Runner::Blocking(Some(handle)) if timer::has_timers(handle) => {
                Some(Deadline::thread(after))
            }
            _ => None,
        }
    }

    /// The rayon pool's size, for a rayon lane.
    pub(crate) fn threads(&self) -> Option<usize> {
        match &self.runner {
            Runner::Rayon(pool) => Some(pool.current_num_threads()),
            Runner::Blocking(_) => None,
        }
    }

    /// A snapshot of the lane's counters.
    pub(crate) fn stats(&self) -> Stats {
        let (queued, running) = {
            let state = self.state.lock();
            (state.queued, state.running)
        };
        self.counters.snapshot(queued, running)
    }

    /// Shutdown's first step: stops admission, fails the queue (outside the lock), wakes
    /// idle drainers so they give their threads back, cancels running tokens. Returns
    /// how many queued calls it abandoned.
    pub(crate) fn close(&self) -> usize {
        let (abandoned, tickets, reservers) = {
            let mut state = self.state.lock();
            state.closed = true;
            let (abandoned, tickets) = Self::abandon_queue(&mut state);
            (abandoned, tickets, Self::take_reservers(&mut state))
        };
        self.wake.notify_all();
        Self::wake_reservers(reservers);
        if !tickets.is_empty() {
            crate::blocking::drop_where_blocking_is_allowed(tickets);
        }
        self.shutdown.cancel();
        abandoned
    }

    /// Stops admission, fails the queue, cancels running tokens, waits at most `grace`.
    pub(crate) async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let finished_before = self.counters.finished();
        let abandoned = self.close();
        // Running calls that carry an interrupter: which slot, the call, its site.
        let interrupted: Vec<(Arc<interrupt::Slot>, u64, Site)> = {
            let state = self.state.lock();
            state
                .interrupts
                .iter()
                .zip(&state.sites)
                .filter_map(|(slot, site)| Some((Arc::clone(slot), (*site)?)))
                .collect::<Vec<_>>()
        }
        .into_iter()
        .filter_map(|(slot, site)| slot.interrupt_running().map(|id| (slot, id, site)))
        .collect();
        let mut deadline = pin!(Deadline::new(grace));
        loop {
            let idle = self.idle.notified();
            let mut idle = pin!(idle);
            idle.as_mut().enable();
            if self.state.lock().running == 0 {
                break;
            }
            if let Either::Right(_) = future::select(idle, deadline.as_mut()).await {
                break;
            }
        }
        let still_running = self.state.lock().sites.iter().flatten().copied().collect();
        ShutdownReport::new(
            OffloadError::subject(self.kind),
            &self.name,
            self.counters.finished() - finished_before,
            abandoned,
            still_running,
        )
        .with_interrupted(
            interrupted
                .into_iter()
                .map(|(slot, id, site)| InterruptedCall::new(site, slot.running() != id))
                .collect(),
        )
    }

    /// Turns a job's outcome into the caller's answer.
    pub(super) fn answer<T>(&self, outcome: Outcome<T>) -> Result<T, OffloadError> {
        match outcome {
            Outcome::Completed(value) => Ok(value),
            Outcome::Panicked(payload) => {
                Err(self.error(|k, n| OffloadError::panic(k, n, payload)))
            }
            Outcome::Dropped if self.state.lock().closed => Err(self.error(OffloadError::shutdown)),
            Outcome::Dropped => Err(self.error(OffloadError::cancelled)),
        }
    }

    /// Starts the entry on a new drainer, queues it, or rejects it. `reserved`: the call
    /// holds a place from `poll_reserve`, used up here whatever the outcome (invariant 8).
    /// `look` is armed when a drainer that is not running a call takes the entry at once.
    pub(super) fn admit(
        self: &Arc<Self>,
        entry: Entry,
        handle: Option<Handle>,
        reserved: bool,
        look: &mut ReplyLook,
    ) -> Result<(), OffloadError> {
        let mut entry = entry;
        let admitted = Instant::now();
        entry.admitted = Some(admitted);
        let mut state = self.state.lock();
        if reserved {
            state.reserved -= 1;
        }
        if state.closed {
            return Err(self.error(OffloadError::shutdown));
        }
        Counters::bump(&self.counters.submitted);
        if !reserved && state.reserved > 0 && !self.has_room(&state) {
            drop(state);
            Counters::bump(&self.counters.rejected);
            return Err(self.error(|k, n| OffloadError::rejected(k, n, self.max_queue)));
        }
        // Entries queued beyond those that idle or starting drainers will take at once.
        let waiting = state.queued.saturating_sub(state.idle + state.starting);
        // A drainer that is awake and not running a call (idle, or on its way back to
        // the queue) takes it at once: its caller looks for the reply.
        if state.queued
            < state
                .drainers
                .saturating_sub(state.running + state.starting)
        {
            look.arm(&self.look_for_reply, admitted);
        }
        // Drainers on their way back take it too, with no notification and no new
        // drainer (invariant 6); but not for a call made on one of this lane's drainer
        // threads (a closure's nested call, or a drop after its answer): the drainer on
        // its way back may be that very thread.
        let draining_here = self.is_draining_here();
        let returning = if draining_here {
            0
        } else {
            Self::returning(&state)
        };
        if state.queued < state.idle + state.starting + returning {
            // An idle, starting or returning drainer will take it at once.
            state.queued += 1;
            entry.claim.runs_soon(); // under the harness: it holds the clock from now on
            state.queue.push_back(entry);
            // A spinning drainer takes it without a notification, and wakes drainers
            // for whatever was queued behind it meanwhile (invariant 9).
            if !state.spinning {
                self.wake_for_queue(&mut state, returning);
            }
            Ok(())
        } else if state.drainers < self.max_concurrency {
            // A new drainer takes it from the queue once its thread runs: until then the
            // caller can still withdraw it (tokio's pool may have no thread free).
            state.queued += 1;
            entry.claim.runs_soon();
            state.queue.push_back(entry);
            state.drainers += 1;
            state.starting += 1;
            let slot = state.free_slots.pop().unwrap_or_else(|| {
                state.sites.push(None);
                state.interrupts.push(Arc::default());
                state.sites.len() - 1
            });
            let interrupts = Arc::clone(&state.interrupts[slot]);
            drop(state);
            let drainer = Drainer {
                lane: Arc::clone(self),
                slot,
                interrupts,
                started: false,
                released: false,
            };
            match (&self.runner, handle) {
                (Runner::Blocking(_), Some(handle)) => {
                    job::spawn_blocking(&handle, move || drainer.drain())
                }
                (Runner::Rayon(pool), _) => pool.spawn(move || drainer.drain()),
                (Runner::Blocking(_), None) => unreachable!("a blocking lane admits with a handle"),
            }
            Ok(())
        } else if draining_here && state.queued >= state.drainers.saturating_sub(state.running) {
            // A closure of this lane waiting for another call of it, with no slot left
            // and no drainer on its way back to the queue to take it: it could be
            // waiting for itself.
            let site = entry.site();
            drop(state);
            Counters::bump(&self.counters.rejected);
            Err(self.error(|k, n| OffloadError::would_deadlock(k, n, site)))
        } else if waiting < self.max_queue || reserved || self.has_room(&state) {
            // (`has_room` here: a drainer that just ran a call and is on its way back to
            // the queue, neither running nor idle, will take it: see invariant 3.)
            // A drainer on its way back (its call answered, its next look at the queue
            // not yet taken) claims this entry without time passing when fewer entries
            // wait before it than drainers are not running: then, as above, it holds the
            // clock from now on (or the caller, woken by the answer, parks on a queued
            // call that holds nothing and the clock jumps before the drainer claims it).
            if state.queued < state.drainers.saturating_sub(state.running) {
                entry.claim.runs_soon();
            }
            state.queued += 1;
            state.queue.push_back(entry);
            Ok(())
        } else {
            drop(state);
            Counters::bump(&self.counters.rejected);
            Err(self.error(|k, n| OffloadError::rejected(k, n, self.max_queue)))
        }
    }

    /// True while a place is free for one more call or reservation (invariant 8).
    fn has_room(&self, state: &State) -> bool {
        state.queued + state.running + state.reserved
            < self.max_concurrency.saturating_add(self.max_queue)
    }

    /// Reserves a place for one call (invariant 8), or registers the task to be woken
    /// when one may be free. `site`: the caller, if this is one of the lane's own
    /// closures waiting for a place only the lane can free.
    #[cfg(feature = "tower")]
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut std::task::Context<'_>,
        site: Site,
    ) -> std::task::Poll<Result<(), OffloadError>> {
        use std::task::Poll;
        let mut state = self.state.lock();
        if state.closed {
            return Poll::Ready(Err(self.error(OffloadError::shutdown)));
        }
        if self.has_room(&state) {
            state.reserved += 1;
            return Poll::Ready(Ok(()));
        }
        if self.is_draining_here() {
            drop(state);
            return Poll::Ready(Err(
                self.error(|k, n| OffloadError::would_deadlock(k, n, site))
            ));
        }
        if !state.reservers.iter().any(|w| w.will_wake(cx.waker())) {
            state.reservers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Gives back a place reserved and not used.
    pub(crate) fn unreserve(&self) {
        let reservers = {
            let mut state = self.state.lock();
            state.reserved -= 1;
            Self::take_reservers(&mut state)
        };
        Self::wake_reservers(reservers);
    }

    /// Takes the wakers of every task waiting to reserve (a place may be free, or the
    /// lane closed), to be woken by [`wake_reservers`](Self::wake_reservers) once the
    /// lock is released: a waker may call back into the lane (poll a service of it, read
    /// its stats), which under the lock would deadlock.
    fn take_reservers(state: &mut State) -> Vec<Waker> {
        std::mem::take(&mut state.reservers)
    }

    /// Wakes the wakers [`take_reservers`](Self::take_reservers) took; call it with the
    /// lane's lock released.
    fn wake_reservers(reservers: Vec<Waker>) {
        reservers.into_iter().for_each(Waker::wake);
    }

    /// The next live entry for the drainer in `slot`, spinning up to [`SPIN`] (if no other
    /// drainer spins) then waiting up to [`LINGER`] for one;
    /// `None` after releasing the slot.
    fn next(&self, slot: usize) -> Option<Entry> {
        // Declared before the guard: dropped after it (see `pop`).
        let mut dead = Vec::new();
        let mut state = self.state.lock();
        let mut lingered = false;
        // Spun once already (a drainer spins once per look at an empty queue), and
        // whether it found an entry doing so.
        let (mut spun, mut found) = (false, false);
        loop {
            if let Some(entry) = self.pop(&mut state, slot, None, &mut dead) {
                if found {
                    // Admissions made while it spun notified no one: what was queued
                    // behind its entry gets the drainers it needs now (invariant 9).
                    let returning = Self::returning(&state);
                    self.wake_for_queue(&mut state, returning);
                }
                return Some(entry);
            }
            if state.closed || lingered || matches!(self.runner, Runner::Rayon(_)) {
                self.release(state, slot);
                return None;
            }
            if !spun && !state.spinning {
                spun = true;
                found = Self::spin(&mut state);
                continue;
            }
            found = false;
            state.idle += 1;
            lingered = self.wake.wait_for(&mut state, LINGER).timed_out();
            state.idle -= 1;
            // Whether it was this drainer that was woken or not, one fewer is on its way.
            state.waking = state.waking.saturating_sub(1);
        }
    }

    /// Looks for a queued entry for up to [`SPIN`] before the drainer sleeps: counted idle
    /// and already woken (invariant 9), it lets the lock go between looks and gives its
    /// core away. Returns with the lock held and the spin's counts undone, when an entry
    /// waits (then `true`), the lane closed or the time is up.
    fn spin(state: &mut MutexGuard<'_, State>) -> bool {
        state.spinning = true;
        state.idle += 1;
        state.waking += 1;
        let until = Instant::now() + SPIN;
        loop {
            MutexGuard::unlocked(state, spin_pause);
            // (Under loom: one look, any other thread's steps before it.)
            if state.queued > 0
                || state.closed
                || cfg!(all(test, async_bridge_loom))
                || Instant::now() >= until
            {
                break;
            }
        }
        state.idle -= 1;
        // As a woken drainer leaving its wait: one fewer is on its way.
        state.waking = state.waking.saturating_sub(1);
        state.spinning = false;
        state.queued > 0
    }

    /// Notifies as many idle drainers as the queued entries need, beyond those already
    /// on their way (the admission's rule, for entries admitted while a drainer spun).
    /// `returning`: the drainers on their way back to count on (invariant 6).
    fn wake_for_queue(&self, state: &mut State, returning: usize) {
        let unclaimed = state.queued.saturating_sub(state.starting + returning);
        while state.waking < unclaimed.min(state.idle) {
            state.waking += 1;
            self.wake.notify_one();
        }
    }

    /// Drainers on their way back to the queue: neither running, idle nor starting (an
    /// answer given, their next look at the queue not yet taken).
    fn returning(state: &State) -> usize {
        let awake = state
            .drainers
            .saturating_sub(state.running + state.starting);
        awake.saturating_sub(state.idle)
    }

    /// True on a thread that runs one of this lane's drainers.
    fn is_draining_here(&self) -> bool {
        DRAINING.with(Cell::get) == self as *const Lane as usize
    }

    /// Takes the first live entry of the queue for the drainer in `slot`. `now`, when
    /// given, is the time the drainer's previous job ended, read just before: it stands
    /// for this claim's time too, so a drainer going from job to job reads the clock once
    /// per job.
    fn pop(
        &self,
        state: &mut State,
        slot: usize,
        now: Option<Instant>,
        dead: &mut Vec<Entry>,
    ) -> Option<Entry> {
        while let Some(mut entry) = state.queue.pop_front() {
            if !entry.claim.claim() {
                // Withdrawn: dropped by the caller after the lock (its closure may own
                // anything, a call of this lane whose drop takes the lock included).
                dead.push(entry);
                continue;
            }
            let now = now.unwrap_or_else(Instant::now);
            if let Some(admitted) = entry.admitted {
                self.counters
                    .queue_wait
                    .record(now.saturating_duration_since(admitted));
            }
            entry.claimed = Some(now);
            state.queued -= 1;
            state.running += 1;
            state.sites[slot] = Some(entry.site());
            return Some(entry);
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
        let reservers = Self::take_reservers(&mut state);
        drop(state);
        Self::wake_reservers(reservers);
        drop(orphans);
    }

    /// Empties the queue, giving up its live entries (under the lock, so that a caller
    /// withdrawing at the same moment and this count each entry once). Returns how many
    /// were live, and the entries, to drop outside the lock. The places it frees are for
    /// the caller to announce ([`take_reservers`](Self::take_reservers)).
    pub(super) fn abandon_queue(state: &mut State) -> (usize, VecDeque<Entry>) {
        let entries = std::mem::take(&mut state.queue);
        let abandoned = entries.iter().filter(|e| e.claim.abandon()).count();
        state.queued -= abandoned;
        (abandoned, entries)
    }

    /// Bookkeeping for a closure that ended, done before its caller sees the outcome,
    /// and, under the same lock, the next entry for the drainer in `slot` if one waits.
    /// Returns that entry and the drainer's timing of the closure, for the ledger: its
    /// wait from admission to `started`, and its run.
    fn done(
        &self,
        slot: usize,
        ran: Ran,
        admitted: Option<Instant>,
        started: Instant,
    ) -> (Option<Entry>, Timing) {
        let ended = Instant::now();
        let took = ended.saturating_duration_since(started);
        // Counted first: whoever sees `running` drop (shutdown) sees this count too.
        self.counters.ran(ran, took, Writers::Any);
        let waited = admitted.map(|at| started.saturating_duration_since(at));
        if let Some(waited) = waited {
            // What its caller waited for the reply, from stamps already read.
            self.look_for_reply.answered(waited + took);
        }
        let mut dead = Vec::new();
        let mut state = self.state.lock();
        state.sites[slot] = None;
        let next = self.pop(&mut state, slot, Some(ended), &mut dead);
        let reservers = self.end_running(&mut state);
        drop(state);
        Self::wake_reservers(reservers);
        (next, waited.map(|waited| (waited, took)))
    }

    /// One closure fewer runs; tells shutdown when none does. Returns the reservers to
    /// wake once the lock is released (its place is free).
    #[must_use = "the reservers are to be woken after the lock"]
    pub(super) fn end_running(&self, state: &mut State) -> Vec<Waker> {
        state.running -= 1;
        if state.running == 0 {
            self.idle.notify_waiters();
        }
        Self::take_reservers(state)
    }

    /// A caller gives up on its call: withdraws it if it is still queued, freeing its
    /// place, and says whether it did. Under the lane's lock, so that `queued` is exact
    /// at every admission: a withdrawn entry counted until its caller came back for the
    /// lock could turn a later caller away (found by the loom model
    /// `callers_withdraw_then_shutdown` once admission queued a new drainer's first
    /// entry; before that, the same window left a wake-up missed for one linger,
    /// `withdraw_vs_idle_drainer`).
    pub(super) fn withdraw<T>(&self, reply: &Reply<T>) -> bool {
        let mut state = self.state.lock();
        if !reply.withdraw() {
            return false;
        }
        state.queued -= 1;
        let reservers = Self::take_reservers(&mut state);
        // Withdrawn entries stay in the deque until popped; compact when they dominate,
        // dropping them after the lock (see `pop`) and off the executor: they are other
        // callers' closures, which a drainer would have dropped on its thread.
        let dead: VecDeque<Entry> = if state.queue.len() > 2 * state.queued + 64 {
            let (live, withdrawn) = std::mem::take(&mut state.queue)
                .into_iter()
                .partition(|e| e.claim.is_waiting());
            state.queue = live;
            withdrawn
        } else {
            VecDeque::new()
        };
        drop(state);
        Counters::bump(&self.counters.withdrawn);
        Self::wake_reservers(reservers);
        if !dead.is_empty() {
            crate::blocking::drop_off_the_executor(dead);
        }
        true
    }
}

/// A spinning drainer's pause between two looks at the queue: a few spin-loop hints,
/// then its core to any thread that wants it.
fn spin_pause() {
    for _ in 0..32 {
        std::hint::spin_loop();
    }
    crate::sync::yield_now();
}

/// One `spawn_blocking` task of a lane: runs entries until the queue is empty.
struct Drainer {
    lane: Arc<Lane>,
    slot: usize,
    /// The slot's interrupt slot.
    interrupts: Arc<interrupt::Slot>,
    /// Its thread has run: it no longer counts as `starting`.
    started: bool,
    released: bool,
}

impl Drainer {
    fn drain(mut self) {
        self.started = true;
        let (lane, slot) = (&self.lane, self.slot);
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                DRAINING.with(|d| d.set(self.0));
            }
        }
        let _restore = Restore(DRAINING.with(|d| d.replace(Arc::as_ptr(lane) as usize)));
        let mut dead = Vec::new();
        let mut next = {
            let mut state = lane.state.lock();
            state.starting -= 1;
            lane.pop(&mut state, slot, None, &mut dead)
        };
        drop(dead);
        // Its entry may have been withdrawn meanwhile: then it serves the queue, or
        // lingers and leaves.
        loop {
            let entry = match next.take().or_else(|| lane.next(slot)) {
                Some(entry) => entry,
                None => {
                    self.released = true;
                    return;
                }
            };
            let started = entry.claimed.unwrap_or_else(Instant::now);
            let admitted = entry.admitted;
            (entry.run)(&self.interrupts, &mut |ran| {
                let timing;
                (next, timing) = lane.done(slot, ran, admitted, started);
                timing
            });
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        // Only a drainer whose task was dropped before it ran (its runtime shut down)
        // gets here: it took nothing from the queue.
        if !self.released {
            let mut state = self.lane.state.lock();
            if !self.started {
                state.starting -= 1;
            }
            self.lane.release(state, self.slot);
        }
    }
}
