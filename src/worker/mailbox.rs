//! The mailbox between a worker's callers and its thread: a bounded FIFO queue of
//! calls, a FIFO line of callers waiting for room, and the call future that goes through
//! both.
//!
//! How a call travels: [`Call`] is created with its job already submitted to the job
//! layer (a `Ticket` boxed into an [`Envelope`], the `Reply` kept by the caller). On its
//! first poll it is *admitted* — pushed into the queue — if the mailbox has room and
//! nobody waits before it; otherwise it joins the line, *with its envelope*, holding no
//! thread. Whoever frees places admits the first calls in line into them: the worker
//! thread when it takes its next batch, or a caller whose withdrawal freed a place. A
//! caller in line is therefore never woken to admit itself: its task already waits for
//! its reply, and is woken once, with the answer. (Callers used to be granted a place,
//! woken, and re-polled to push their own call: in a 10k burst through a mailbox of
//! 1,024, that second wake-up of 9,000 callers made the worker 0.4-0.6× the speed of the
//! SQLite peers' unbounded channels; it is 0.82–0.94× now, see `benches/peers.rs`.) Callers
//! are admitted strictly in order. Sync callers use the same future.
//!
//! The worker thread takes the whole queue at once as its *batch* (one lock of the
//! mailbox for many calls: the lock callers take to admit), and claims the batch's calls
//! one by one under a lock of its own that callers never take. A batch's places count as
//! taken until they are claimed (claims are counted apart, read by a caller only when
//! the mailbox looks full without them) or withdrawn, so the bound holds: live calls in
//! the queue and the batch never exceed the capacity.
//!
//! A caller that gives up before its call starts leaves no trace: a caller in line
//! takes its call out of the line (its place number finds it), an admitted call is
//! withdrawn through the job layer and skipped when popped, from the queue or from the
//! batch (its number tells which, for the count of withdrawn entries in each). The
//! worker claims under the batch lock and the caller withdraws under the mailbox lock;
//! the job layer makes exactly one of the two win, and shutdown's `abandon_queue` takes
//! both locks, so the counts stay exact (the loom models in `loom.rs` check them).
//! Calls that will never run (skipped, cleared, failed by a close) are given up under
//! the locks but dropped after them: a call's closure may hold the worker's last
//! handle, whose drop takes the mailbox lock.
//!
//! Nothing here needs a tokio runtime, and nothing takes from tokio's cooperative
//! budget: a burst of ten thousand callers in one `join_all` is not re-polled over and
//! over.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Poll};
use std::thread::current as current_thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::error::{cause, Cause};
use super::lease::{self, ReleaseHook};
use super::thread;
use super::WorkerError;
use crate::interrupt;
use crate::job::{self, Claim, Outcome, Ran, Reply};
use crate::look::{Look, ReplyLook};
use crate::origin::{Kind, Origin, Site};
use crate::stats::{Counters, Padded, Writers};
use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard};
use crate::timer;

/// A queued call's job, type-erased: its ticket, its closure and its times in one box
/// (one allocation beside the job's cell), its start reached through the ticket.
trait Queued<T>: Send {
    /// The job's start: claimed by the worker, or withdrawn by the caller.
    fn claim(&self) -> &dyn Claim;

    /// Its times (see [`Times`]).
    fn times(&self) -> &Times;

    /// Its times, to stamp.
    fn times_mut(&mut self) -> &mut Times;

    /// Runs the call against the object (marked as the running call in the interrupt
    /// slot), calling the worker's bookkeeping (`done`) before the caller sees the
    /// outcome.
    fn run(
        self: Box<Self>,
        object: &RefCell<Option<T>>,
        slot: &interrupt::Slot,
        id: u64,
        done: &mut dyn FnMut(Ran) -> job::Timing,
    );
}

/// The id in the worker's interrupt slot of the call numbered `seq` (0 is "none").
fn interrupt_id(seq: u64) -> u64 {
    seq + 1
}

/// A job is run once: its ticket and closure are there until then.
const RUNS_ONCE: &str = "a worker's job runs once";

/// A call's ticket, closure and times (see [`Queued`]). The ticket and the closure are
/// taken out to run, and the emptied box goes back to the caller with the value (a
/// [`Husk`]).
struct Job<R, F> {
    ticket: Option<job::Ticket<(R, Husk)>>,
    f: Option<F>,
    times: Times,
}

/// A job's box after its run (ticket and closure taken, only its times left), returned
/// with the call's value so that the caller's thread frees it: the thread that made the
/// call allocated it (usually the one that polls it to its end). With glibc's malloc a
/// free on another thread goes through the allocating thread's arena lock once the
/// freeing thread's cache of that size is full, which for a worker's thread, allocating
/// nothing of that size itself, is every call: a 10k burst of `SELECT ?1` spent 14% of
/// the worker thread's time in `_int_free` (perf, `benches/peers.rs`); after this it is
/// not among that thread's top symbols. Built only from an emptied [`Job`], so dropping
/// it runs no caller code.
struct Husk {
    _job: Box<dyn Send>,
}

#[cfg(all(test, not(async_bridge_loom)))]
impl Drop for Husk {
    fn drop(&mut self) {
        tests::HUSKS.set(tests::HUSKS.get() + 1);
    }
}

/// A queued call's times. In its job's box rather than in its [`Envelope`]: the
/// envelope is moved (into the call future, the queue, the batch) and the box is not,
/// and a call future is 48 bytes smaller for it.
#[derive(Default)]
struct Times {
    /// When it entered the queue, for the queue-wait distribution (set at admission, not
    /// when the call is made: one clock read per call); once the worker claimed it, when
    /// it did: the end of its queue wait and the start of its run.
    stamp: Option<Instant>,
    /// How long it waited in the queue, once claimed.
    queued: Duration,
    /// When its caller first polled it (it may have waited in line before its admission),
    /// for what its caller waited (the ledger, `look_for_reply`).
    polled: Option<Instant>,
}

impl Times {
    /// When the worker claimed the call (see [`Mailbox::try_next`]).
    fn claimed_at(&self) -> Instant {
        self.stamp.unwrap_or_else(Instant::now)
    }
}

impl<T, R, F> Queued<T> for Job<R, F>
where
    R: Send + 'static,
    F: FnOnce(&mut T, &interrupt::Slot, u64, Option<&CancellationToken>) -> R + Send + 'static,
{
    fn claim(&self) -> &dyn Claim {
        self.ticket.as_ref().expect(RUNS_ONCE).claim()
    }

    fn times(&self) -> &Times {
        &self.times
    }

    fn times_mut(&mut self) -> &mut Times {
        &mut self.times
    }

    fn run(
        mut self: Box<Self>,
        object: &RefCell<Option<T>>,
        slot: &interrupt::Slot,
        id: u64,
        done: &mut dyn FnMut(Ran) -> job::Timing,
    ) {
        let (Some(ticket), Some(f)) = (self.ticket.take(), self.f.take()) else {
            unreachable!("{RUNS_ONCE}")
        };
        ticket.run_and(
            move |token| {
                let value = {
                    let mut object = object.borrow_mut();
                    // `None` only once the worker has stopped, when no call runs.
                    let object = object.as_mut().expect("the worker's object is there");
                    f(object, slot, id, token)
                };
                (value, Husk { _job: self })
            },
            done,
        );
    }
}

/// A call on its way to the worker's thread.
pub(crate) struct Envelope<T> {
    /// Its number: calls are queued in the order of their numbers (see `State::line`).
    seq: u64,
    /// The ticket, the closure and the times. Its start (`claim`): claimed by the
    /// worker, or withdrawn by the caller, exactly one wins.
    job: Box<dyn Queued<T>>,
}

impl<T> Envelope<T> {
    /// When the worker claimed it, and how long its caller waited for it to start, in
    /// line and in the queue (once claimed).
    pub(crate) fn claimed_and_waited(&self) -> (Instant, Duration) {
        let times = self.job.times();
        let claimed = times.claimed_at();
        let waited = times
            .polled
            .map_or(times.queued, |at| claimed.saturating_duration_since(at));
        (claimed, waited)
    }

    /// Its times, to stamp.
    fn times_mut(&mut self) -> &mut Times {
        self.job.times_mut()
    }

    /// The job's start.
    fn claim(&self) -> &dyn Claim {
        self.job.claim()
    }

    /// Runs the call against `object`, calling `done` before the caller sees the outcome
    /// (which returns the call's times, for the ledger).
    pub(crate) fn run(
        self,
        object: &RefCell<Option<T>>,
        slot: &interrupt::Slot,
        done: &mut dyn FnMut(Ran) -> job::Timing,
    ) {
        self.job.run(object, slot, interrupt_id(self.seq), done);
    }
}

/// Why the mailbox no longer admits calls.
#[derive(Clone)]
pub(crate) enum Closed {
    /// `shutdown` was called.
    ShutDown,
    /// The worker stopped for this reason (its object could not be rebuilt, or its
    /// thread ended).
    Stopped(Cause),
}

/// A worker's settings from its builder.
pub(crate) struct Settings<T> {
    pub(crate) timeout: Option<Duration>,
    pub(crate) lease_limit: Option<Duration>,
    pub(crate) release_hook: Option<ReleaseHook<T>>,
}

impl<T> Clone for Settings<T> {
    fn clone(&self) -> Self {
        Settings {
            timeout: self.timeout,
            lease_limit: self.lease_limit,
            release_hook: self.release_hook.clone(),
        }
    }
}

/// The state shared by a worker's handles, its callers and its thread.
pub(crate) struct Mailbox<T> {
    pub(crate) name: Arc<str>,
    /// The worker's group: the worker alone, or every worker of one pool. A thread of
    /// the group calling into it would wait for itself.
    group: u64,
    /// The thread serving this mailbox (set by `enter_thread`), for the check that its
    /// single-writer counters have one writer: a pool's siblings share the group, not
    /// the mailbox.
    server: std::sync::Mutex<Option<std::thread::ThreadId>>,
    capacity: usize,
    /// Fails a call not done within it, waiting plus running.
    pub(crate) timeout: Option<Duration>,
    /// Ends a lease held longer.
    pub(crate) lease_limit: Option<Duration>,
    /// Runs when a lease ends without being finished.
    pub(crate) release_hook: Option<ReleaseHook<T>>,
    /// The channels of leases taken on this worker, for shutdown to end them.
    leases: Mutex<Vec<Weak<lease::Channel<T>>>>,
    /// Which call runs now, and the object's interrupter.
    pub(crate) interrupt: Arc<interrupt::Slot>,
    /// How long the worker's thread looks for its next call before it sleeps, and a
    /// caller whose call it runs at once for the reply (`crate::look`). Only the worker's
    /// thread writes them, and only when they change.
    look_for_call: Look,
    pub(crate) look_for_reply: Look,
    // Fields written on every call sit alone on their cache lines (`Padded`), apart from
    // each other and from the read-mostly ones above and below: the worker's writes
    // (`batch_claimed`, `batch_left`, the counters) and the callers' (`load`) sharing a
    // line with `timeout` made every caller's first poll wait for that line (half the
    // samples of `Call::poll` in a 10k burst, before this layout).
    state: Padded<Mutex<State<T>>>,
    /// The calls the worker thread took from the queue in one go, popped one by one
    /// without taking `state`'s lock (the one callers take); locked after `state` when
    /// both are taken.
    batch: Padded<Mutex<Batch<T>>>,
    /// Calls of the current batch claimed so far: their places are free. Written by the
    /// worker as it claims, reset with the batch under both locks; callers read it only
    /// when the mailbox looks full without it.
    batch_claimed: Padded<AtomicUsize>,
    /// Calls left in the batch as the worker last saw it (only the worker writes it): at
    /// 0 it goes straight for the next batch. Stale only after `abandon_queue` emptied
    /// the batch, which the worker then finds empty.
    batch_left: Padded<AtomicUsize>,
    /// Wakes the worker thread: a call was queued, the last sender left, or shutdown.
    wake: Condvar,
    /// Handles (and leases): the worker thread ends once there are none, no call is
    /// alive (`load`) and its queue is empty.
    senders: Padded<AtomicUsize>,
    /// Calls made here and not yet dropped: for a pool's least-loaded routing, and they
    /// keep the worker up (a call made before the last handle was dropped still runs),
    /// without a sender of their own (two fewer shared counters touched per call).
    load: Padded<AtomicUsize>,
    /// The parent of every call's token; cancelled by `shutdown`.
    pub(crate) shutdown: CancellationToken,
    /// Every call's outcome and timings, for `stats()`.
    pub(crate) counters: Padded<Counters>,
    /// Set once the mailbox is closed, for routing without the lock.
    closed: AtomicBool,
    stopped: AtomicBool,
    stopped_notify: Notify,
}

struct State<T> {
    /// Admitted calls, withdrawn ones included until popped.
    queue: VecDeque<Envelope<T>>,
    /// Withdrawn calls still in the queue.
    dead: usize,
    /// The callers waiting for room, with their calls, in order (by number, so a
    /// caller finds its place by binary search).
    line: VecDeque<(u64, Envelope<T>)>,
    /// The number of the next call polled: a call joins the queue only when the line
    /// is empty, so the queue, and the worker's batch, hold calls in number order.
    next_seq: u64,
    /// The calls of the worker's current batch, as taken (popped ones included: a
    /// batch's places are freed when the worker comes back for the next one).
    taken: usize,
    /// Calls numbered below this were taken into the worker's batch.
    taken_upto: u64,
    /// Calls of the current batch withdrawn by their callers (skipped or not yet).
    batch_dead: usize,
    /// The worker holds a batch or runs a call (cleared when it finds nothing to take).
    serving: bool,
    closed: Option<Closed>,
    /// The worker thread waits on the condvar.
    idle: bool,
    /// It was notified and has not woken yet: no need to notify again.
    woken: bool,
}

/// The worker thread's batch (see [`Mailbox::next`]).
struct Batch<T> {
    entries: VecDeque<Envelope<T>>,
    /// Withdrawn calls popped and skipped from this batch.
    skipped: usize,
    /// The call site of the call running now.
    running: Option<Site>,
}

impl<T> State<T> {
    /// Slots taken, counting every call of the worker's current batch that was not
    /// withdrawn, claimed ones included (see [`Mailbox::has_room`]).
    fn occupied_upper(&self) -> usize {
        self.queue.len() - self.dead + self.taken - self.batch_dead
    }

    /// True when the worker neither runs a call nor holds one, and no live call is
    /// queued: a call queued now is claimed without time passing.
    fn worker_free(&self) -> bool {
        !self.serving && self.queue.len() == self.dead
    }

    /// Wakes the worker thread if it waits and nobody woke it yet; true when the caller
    /// must notify the condvar (after unlocking).
    fn needs_notify(&mut self) -> bool {
        let notify = self.idle && !self.woken;
        self.woken |= notify;
        notify
    }
}

impl<T: 'static> Mailbox<T> {
    pub(crate) fn new(
        name: Arc<str>,
        group: u64,
        capacity: usize,
        settings: Settings<T>,
    ) -> Arc<Self> {
        Arc::new(Mailbox {
            name,
            group,
            server: std::sync::Mutex::new(None),
            capacity,
            timeout: settings.timeout,
            lease_limit: settings.lease_limit,
            release_hook: settings.release_hook,
            leases: Mutex::new(Vec::new()),
            interrupt: Arc::default(),
            look_for_call: Look::new(),
            look_for_reply: Look::new(),
            state: Padded(Mutex::new(State {
                queue: VecDeque::new(),
                dead: 0,
                line: VecDeque::new(),
                next_seq: 0,
                taken: 0,
                taken_upto: 0,
                batch_dead: 0,
                serving: false,
                closed: None,
                idle: false,
                woken: false,
            })),
            batch: Padded(Mutex::new(Batch {
                entries: VecDeque::new(),
                skipped: 0,
                running: None,
            })),
            batch_claimed: Padded(AtomicUsize::new(0)),
            batch_left: Padded(AtomicUsize::new(0)),
            wake: Condvar::new(),
            senders: Padded(AtomicUsize::new(0)),
            load: Padded(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
            counters: Padded(Counters::default()),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stopped_notify: Notify::new(),
        })
    }

    /// True on a thread of this worker's group (the worker itself or a pool sibling).
    pub(crate) fn on_own_thread(&self) -> bool {
        thread::in_group(self.group)
    }

    /// Marks the calling thread as this worker's.
    pub(crate) fn enter_thread(&self) {
        thread::enter_group(self.group);
        *self.server() = Some(current_thread().id());
    }

    /// True on the thread serving this mailbox (not on a pool sibling's).
    fn is_server(&self) -> bool {
        *self.server() == Some(current_thread().id())
    }

    fn server(&self) -> std::sync::MutexGuard<'_, Option<std::thread::ThreadId>> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// No handle and no call left: an idle worker thread ends. Read under the mailbox
    /// lock, by the worker and by [`wake_if_unheld`](Self::wake_if_unheld).
    fn unheld(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0 && self.load.load(Ordering::Acquire) == 0
    }

    /// The last handle or the last call went away (its count already decremented): an
    /// idle worker thread ends once neither is left. Checked under the lock: of the last
    /// handle and the last call, whichever takes the lock second sees both gone (the
    /// other's decrement came before its unlock), so one of them wakes the worker; loom
    /// checks it (`last_handle_vs_last_call`). Without the lock, two plain reads could
    /// each miss the other's decrement.
    fn wake_if_unheld(&self) {
        let mut state = self.state.lock();
        let notify = self.unheld() && state.needs_notify();
        drop(state);
        if notify {
            self.wake.notify_one();
        }
    }

    pub(crate) fn finished(&self) -> u64 {
        self.counters.finished()
    }

    /// True once the mailbox admits no more calls (shut down or stopped).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// A future that resolves once the worker thread has ended; `enable` it, then check
    /// [`is_stopped`](Self::is_stopped), to not miss the notification.
    pub(crate) fn stopped_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.stopped_notify.notified()
    }

    /// The call site of the call running now, if any.
    pub(crate) fn running(&self) -> Option<Site> {
        self.batch.lock().running
    }

    /// Builds a call of `f` against the object, submitted to the job layer; while `f`
    /// runs, an interrupt given for this call may stop it.
    pub(crate) fn call<F, R>(self: &Arc<Self>, site: Site, cancellable: bool, f: F) -> Call<T, R>
    where
        F: FnOnce(&mut T, Option<&CancellationToken>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let token = cancellable.then(|| self.shutdown.child_token());
        self.make_call(
            None,
            site,
            Kind::Worker,
            token,
            true,
            move |object, slot, id, token| slot.run(id, || f(object, token)),
        )
    }

    /// As [`call`](Self::call), of another kind (a lease's holder, holding `link` until it
    /// is admitted) and never interrupted: `f` marks its own running parts in the slot,
    /// if any.
    pub(crate) fn call_kind<F, R>(
        self: &Arc<Self>,
        link: Sender<T>,
        site: Site,
        kind: Kind,
        f: F,
    ) -> Call<T, R>
    where
        F: FnOnce(&mut T, Option<&CancellationToken>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let token = Some(self.shutdown.child_token());
        self.make_call(
            Some(link),
            site,
            kind,
            token,
            false,
            move |object, _slot, _id, token| f(object, token),
        )
    }

    fn make_call<F, R>(
        self: &Arc<Self>,
        link: Option<Sender<T>>,
        site: Site,
        kind: Kind,
        token: Option<CancellationToken>,
        interruptible: bool,
        f: F,
    ) -> Call<T, R>
    where
        F: FnOnce(&mut T, &interrupt::Slot, u64, Option<&CancellationToken>) -> R + Send + 'static,
        R: Send + 'static,
    {
        // The shared counters first, before the new call's memory is written: a locked
        // increment waits for the stores ahead of it, and those miss the cache.
        let shared = Arc::clone(self);
        self.load.fetch_add(1, Ordering::Relaxed);
        let origin = Origin::new(kind, Some(Arc::clone(&self.name)), site);
        let (ticket, reply) = job::pair_queued(origin, token);
        let envelope = Envelope {
            seq: 0,
            job: Box::new(Job {
                ticket: Some(ticket),
                f: Some(f),
                times: Times::default(),
            }),
        };
        Call {
            shared,
            interruptible,
            link,
            envelope: Some(envelope),
            seq: None,
            reply,
            sleep: None,
            timed: kind != Kind::Lease,
            look: ReplyLook::default(),
            settled: false,
        }
    }

    /// Admits the first callers in line into the free slots, stamped as admitted at
    /// `now`; true if it admitted any. Whoever holds the lock does it (the worker thread
    /// as it frees slots, a caller whose withdrawal freed one), so a waiting caller is not
    /// woken to admit itself: its task already waits for the reply.
    fn admit_from_line(&self, state: &mut State<T>, now: Instant) -> bool {
        let free = state.worker_free();
        let taken = state.occupied_upper() - self.batch_claimed.load(Ordering::Acquire);
        let admitted = self.capacity.saturating_sub(taken).min(state.line.len());
        for (at, (_, mut envelope)) in state.line.drain(..admitted).enumerate() {
            envelope.times_mut().stamp = Some(now);
            if free && at == 0 {
                envelope.claim().runs_soon(); // see `Call::admit`
            }
            state.queue.push_back(envelope);
        }
        if admitted > 0 {
            // One count for the lot (before any of them can be claimed).
            let count = u64::try_from(admitted).unwrap_or(u64::MAX);
            self.counters.submitted.fetch_add(count, Ordering::Release);
        }
        admitted > 0
    }

    /// True when a live call queued now would not exceed the capacity: live calls in the
    /// queue and calls of the worker's batch it has not claimed yet. The worker's count of
    /// claims is read only when the mailbox looks full without it (it is written on every
    /// claim, by another core); a stale count only sends a caller to the line, from which
    /// the worker admits it when it takes its next batch.
    fn has_room(&self, state: &State<T>) -> bool {
        let upper = state.occupied_upper();
        upper < self.capacity || upper - self.batch_claimed.load(Ordering::Acquire) < self.capacity
    }

    /// Turns a job's outcome into the caller's answer.
    fn answer<R>(&self, outcome: Outcome<R>) -> Result<R, WorkerError> {
        match outcome {
            Outcome::Completed(value) => Ok(value),
            Outcome::Panicked(payload) => Err(WorkerError::panic(&self.name, payload)),
            Outcome::Dropped => Err(self.closed_error(self.state.lock().closed.clone())),
        }
    }

    fn closed_error(&self, closed: Option<Closed>) -> WorkerError {
        match closed {
            Some(Closed::ShutDown) => WorkerError::closed(&self.name, None),
            Some(Closed::Stopped(cause)) => WorkerError::closed(&self.name, Some(cause)),
            None => WorkerError::closed(&self.name, Some(cause("its thread ended"))),
        }
    }

    /// Stops admitting calls (keeping an earlier reason): new callers and waiters fail
    /// with `is_shutdown`; queued calls still run. Returns false if it was already closed.
    pub(crate) fn close(&self, why: Closed) -> bool {
        let mut state = self.state.lock();
        let first = state.closed.is_none();
        if first {
            state.closed = Some(why);
            self.closed.store(true, Ordering::Release);
        }
        let line = std::mem::take(&mut state.line);
        // Given up under the lock, as `abandon_queue` does: a caller leaving the line
        // after this must not find its call waiting and withdraw it as if admitted (a
        // withdrawal counted for a call never submitted, and a dead entry counted in a
        // queue that does not hold it).
        for (_, envelope) in &line {
            envelope.claim().abandon();
        }
        let notify = state.needs_notify();
        drop(state);
        if notify {
            self.wake.notify_one();
        }
        // Outside the lock: each dropped ticket answers its caller (`is_shutdown`).
        if !line.is_empty() {
            crate::blocking::drop_where_blocking_is_allowed(line);
        }
        first
    }

    /// Fails every queued call with `is_shutdown`; returns how many were live.
    pub(crate) fn abandon_queue(&self) -> usize {
        let mut state = self.state.lock();
        let mut batch = self.batch.lock();
        let queue = std::mem::take(&mut state.queue);
        let taken = std::mem::take(&mut batch.entries);
        (state.dead, state.taken, state.batch_dead, batch.skipped) = (0, 0, 0, 0);
        self.batch_claimed.store(0, Ordering::Relaxed);
        // Abandoned under the locks, so that no caller counts a withdrawal of its own and
        // the worker claims none of them.
        let abandoned = taken
            .iter()
            .chain(&queue)
            .filter(|e| e.claim().abandon())
            .count();
        drop(batch);
        drop(state);
        // Outside the locks: each dropped ticket wakes its caller.
        if !(taken.is_empty() && queue.is_empty()) {
            crate::blocking::drop_where_blocking_is_allowed((taken, queue));
        }
        abandoned
    }

    /// The next call to run, waiting for one; `None` when the worker should end: its
    /// queue is empty and it is closed or has no sender left. Also the bookkeeping of
    /// the call that ended before.
    pub(crate) fn next(&self) -> Option<Envelope<T>> {
        // Before it sleeps, the thread looks for the next call for as long as
        // `look_for_call` says (50 µs while calls follow each other closely, nothing once
        // they come slower than that: see `crate::look`), so that an awaited caller that
        // calls again at once finds it awake. When it first found nothing to run, to
        // learn how long the wait for the next call was:
        let mut since = None;
        loop {
            if let Some(envelope) = self.claim_next(None) {
                if let Some(since) = since {
                    // Its admission, from two stamps it carries: no clock read.
                    let times = envelope.job.times();
                    let admitted = times.claimed_at().checked_sub(times.queued);
                    let waited = admitted.map(|at| at.saturating_duration_since(since));
                    self.look_for_call.saw(waited.unwrap_or_default());
                }
                return Some(envelope);
            }
            let mut state = self.state.lock();
            loop {
                if !state.queue.is_empty() || !state.line.is_empty() {
                    break; // queued after the batch was looked for: take it
                }
                if state.closed.is_some() || self.unheld() {
                    return None;
                }
                if since.is_none() {
                    let now = Instant::now();
                    since = Some(now);
                    let window = self.look_for_call.window();
                    if (!window.is_zero() && crate::look::cores_to_spare())
                        || cfg!(all(test, async_bridge_loom))
                    {
                        // Not `idle` while it looks: callers queue without notifying.
                        MutexGuard::unlocked(&mut state, || self.look(now + window));
                        continue;
                    }
                }
                state.idle = true;
                self.wake.wait(&mut state);
                state.idle = false;
                state.woken = false;
            }
        }
    }

    /// Looks at the queue and the line until a call waits in either, the mailbox closes,
    /// nothing holds the worker any more or `until` passes, giving the core away between
    /// looks (under loom: one look, any other thread's steps before it).
    fn look(&self, until: Instant) {
        loop {
            crate::sync::yield_now();
            let state = self.state.lock();
            if !state.queue.is_empty()
                || !state.line.is_empty()
                || state.closed.is_some()
                || self.unheld()
                || cfg!(all(test, async_bridge_loom))
                || Instant::now() >= until
            {
                return;
            }
        }
    }

    /// The next queued call, claimed, without waiting; `None` when none is queued. Called
    /// by the worker thread before the reply of the call that just ended, so that under
    /// the virtual-time harness the clock cannot move between the two calls.
    ///
    /// `now` is the time the previous call ended, read just before: it also stands for
    /// this claim's time (the end of the next call's queue wait and the start of its run),
    /// so a worker going from call to call reads the clock once per call, not twice.
    pub(crate) fn try_next(&self, now: Instant) -> Option<Envelope<T>> {
        self.claim_next(Some(now))
    }

    /// Claims the next live call: from the worker's batch, under the batch's own lock
    /// (callers never take it, so going from call to call passes no cache line back and
    /// forth with them), or, once the batch is spent, from a new batch: under the
    /// mailbox lock, the callers in line are admitted into the places the last batch
    /// freed and the whole queue is taken at once. Withdrawn calls are skipped.
    fn claim_next(&self, now: Option<Instant>) -> Option<Envelope<T>> {
        // Withdrawn calls skipped, dropped after the locks (declared first, dropped last):
        // a closure may hold the worker's last handle, whose drop takes the mailbox lock.
        let mut skipped = Vec::new();
        if self.batch_left.load(Ordering::Relaxed) > 0 {
            let mut batch = self.batch.lock();
            batch.running = None;
            let next = self.claim_from(&mut batch, now, &mut skipped);
            self.batch_left
                .store(batch.entries.len(), Ordering::Relaxed);
            if next.is_some() {
                return next;
            }
        }
        loop {
            let mut state = self.state.lock();
            let mut batch = self.batch.lock();
            batch.running = None;
            debug_assert!(batch.entries.is_empty());
            // The last batch is spent: its places are free.
            (state.taken, state.batch_dead, batch.skipped) = (0, 0, 0);
            self.batch_claimed.store(0, Ordering::Relaxed);
            if !state.line.is_empty() {
                self.admit_from_line(&mut state, now.unwrap_or_else(Instant::now));
            }
            if state.queue.is_empty() {
                state.serving = false;
                return None;
            }
            let state = &mut *state;
            std::mem::swap(&mut state.queue, &mut batch.entries);
            state.taken = batch.entries.len();
            state.taken_upto = batch.entries.back().map_or(0, |e| e.seq + 1);
            state.batch_dead = std::mem::take(&mut state.dead);
            state.serving = true;
            if !state.line.is_empty() {
                // Into the places left, ready for the next batch.
                self.admit_from_line(state, now.unwrap_or_else(Instant::now));
            }
            let next = self.claim_from(&mut batch, now, &mut skipped);
            self.batch_left
                .store(batch.entries.len(), Ordering::Relaxed);
            if next.is_some() {
                return next;
            }
            // Every call of the batch was withdrawn: take the next one.
        }
    }

    /// Pops the batch's first live call and claims it, skipping withdrawn ones (into
    /// `skipped`, for the caller to drop once it holds no lock).
    fn claim_from(
        &self,
        batch: &mut Batch<T>,
        now: Option<Instant>,
        skipped: &mut Vec<Envelope<T>>,
    ) -> Option<Envelope<T>> {
        while let Some(mut envelope) = batch.entries.pop_front() {
            if !envelope.claim().claim() {
                batch.skipped += 1; // withdrawn by its caller: skip it
                skipped.push(envelope);
                continue;
            }
            let now = now.unwrap_or_else(Instant::now);
            let times = envelope.times_mut();
            if let Some(admitted) = times.stamp.replace(now) {
                times.queued = now.saturating_duration_since(admitted);
                // Only the worker's thread claims (under the batch lock): no locked
                // read-modify-write.
                self.counters
                    .queue_wait
                    .record_as(times.queued, Writers::Owner);
            }
            batch.running = Some(envelope.claim().origin().site);
            // Only this thread writes it (under the batch lock): no locked increment.
            let claimed = self.batch_claimed.load(Ordering::Relaxed);
            self.batch_claimed.store(claimed + 1, Ordering::Release);
            return Some(envelope);
        }
        None
    }

    /// Counts a call that ran for `took` (or was skipped). Only on the worker's thread,
    /// where every call of this mailbox and of its leases ends: the counters it writes
    /// have that one writer (see [`Counters::ran`]).
    pub(crate) fn count(&self, ran: Ran, took: Duration) {
        debug_assert!(self.is_server(), "a worker's call counted off its thread");
        self.counters.ran(ran, took, Writers::Owner);
    }

    /// Keeps a lease's channel for shutdown (and forgets the leases that are over).
    pub(crate) fn register_lease(&self, channel: &Arc<lease::Channel<T>>) {
        let mut leases = self.leases.lock();
        leases.retain(|l| l.strong_count() > 0);
        leases.push(Arc::downgrade(channel));
    }

    /// Shutdown ends every lease still held: its hook runs, its later calls fail.
    pub(crate) fn end_leases(&self) {
        let leases = std::mem::take(&mut *self.leases.lock());
        for channel in leases.iter().filter_map(Weak::upgrade) {
            channel.close(lease::End::ShutDown);
        }
    }

    /// The current numbers: (queued, running).
    pub(crate) fn now(&self) -> (usize, usize) {
        let state = self.state.lock();
        let batch = self.batch.lock();
        let in_batch = batch.entries.len() - (state.batch_dead - batch.skipped);
        let queued = state.queue.len() - state.dead + in_batch + state.line.len();
        (queued, usize::from(batch.running.is_some()))
    }

    /// For the loom models: the queue, the withdrawn count and the line of waiting
    /// callers are all empty.
    #[cfg(all(test, async_bridge_loom))]
    pub(super) fn assert_drained(&self) {
        let state = self.state.lock();
        assert!(state.queue.is_empty(), "calls left in the queue");
        assert!(
            self.batch.lock().entries.is_empty(),
            "calls left in the batch"
        );
        assert_eq!(state.dead, 0, "withdrawn calls miscounted");
        let claimed = self.batch_claimed.load(Ordering::Relaxed);
        assert_eq!(state.occupied_upper(), claimed, "batch places miscounted");
        assert!(state.line.is_empty(), "callers left in line");
    }

    /// The worker thread has ended (its object is dropped): fails anything left and
    /// tells those waiting for it.
    pub(crate) fn mark_stopped(&self) {
        self.close(Closed::Stopped(cause("its thread ended")));
        self.abandon_queue();
        self.batch.lock().running = None;
        self.stopped.store(true, Ordering::Release);
        self.stopped_notify.notify_waiters();
    }
}

/// A sender's hold on a worker: while any exists (handles, leases), or any call made
/// through one is alive, the worker thread keeps waiting for calls.
pub(crate) struct Sender<T: 'static> {
    shared: Arc<Mailbox<T>>,
}

impl<T: 'static> Sender<T> {
    pub(crate) fn new(shared: &Arc<Mailbox<T>>) -> Self {
        shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: Arc::clone(shared),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Mailbox<T>> {
        &self.shared
    }
}

impl<T: 'static> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender::new(&self.shared)
    }
}

impl<T: 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: an idle worker thread ends once no call is left.
            self.shared.wake_if_unheld();
        }
    }
}

/// A call into a worker, awaited by its caller: admission, then the reply.
pub(crate) struct Call<T: 'static, R> {
    shared: Arc<Mailbox<T>>,
    /// An interrupt given for this call may stop it, under its id in the worker's
    /// interrupt slot: its number plus one (see [`interrupt_id`]). Numbers are the
    /// mailbox's own, as is the slot: no process-wide counter is touched per call.
    interruptible: bool,
    /// A lease holder's hold on the worker, until the call is admitted (or answered, if
    /// it waited in line). Other calls hold it through `load`.
    link: Option<Sender<T>>,
    /// The call, until its first poll puts it in the queue or in the line.
    envelope: Option<Envelope<T>>,
    /// Its number, from its first poll (see `State::next_seq`).
    seq: Option<u64>,
    reply: Reply<(R, Husk)>,
    /// The worker's timeout, on the caller's runtime, from the first poll.
    sleep: Option<Pin<Box<Sleep>>>,
    /// False for a lease's holder: the worker's timeout is per call, not per lease.
    timed: bool,
    /// Admitted to a free worker, it runs at once: until then the caller looks for its
    /// reply (`look_for_reply`).
    look: ReplyLook,
    /// The caller has its answer.
    settled: bool,
}

enum Admit {
    /// In the queue.
    Done,
    /// In the line.
    Waiting,
    Refused(WorkerError),
}

impl<T: 'static, R> Call<T, R> {
    /// The first poll: the call goes into the queue if there is room and nobody waits
    /// before it, else into the line, where the worker (or a caller that frees a slot)
    /// admits it in its turn without waking its caller.
    fn admit(&mut self) -> Admit {
        let shared = &*self.shared;
        let envelope = self.envelope.take().expect("admitted twice");
        // Before the lock: the clock read is not part of what others wait for.
        let now = Instant::now();
        let mut state = shared.state.lock();
        if let Some(closed) = state.closed.clone() {
            drop(state);
            drop(envelope); // unrun: nobody listens yet
            return Admit::Refused(shared.closed_error(Some(closed)));
        }
        let mut envelope = envelope;
        envelope.times_mut().polled = Some(now);
        let seq = state.next_seq;
        state.next_seq += 1;
        envelope.seq = seq;
        self.seq = Some(seq);
        if !(state.line.is_empty() && shared.has_room(&state)) {
            state.line.push_back((seq, envelope));
            return Admit::Waiting;
        }
        envelope.times_mut().stamp = Some(now);
        Counters::bump(&shared.counters.submitted);
        if state.worker_free() {
            // The worker is idle and nothing is ahead: the call runs without time passing,
            // so under the virtual-time harness it holds the clock from now on.
            envelope.claim().runs_soon();
            self.look.arm(&shared.look_for_reply, now);
        }
        state.queue.push_back(envelope);
        let notify = state.needs_notify();
        drop(state);
        if notify {
            shared.wake.notify_one();
        }
        self.link = None; // outside the lock: dropping it may take it
        Admit::Done
    }

    /// The caller went away before its answer: a caller still in line leaves it (its
    /// call never runs), an admitted call that has not started is withdrawn (and a
    /// caller in line admitted into its place), a running one has its token cancelled.
    fn give_up(&mut self) {
        let shared = &*self.shared;
        let Some(seq) = self.seq else {
            return; // never polled: it is nowhere yet
        };
        let mut state = shared.state.lock();
        if let Ok(at) = state.line.binary_search_by_key(&seq, |(n, _)| *n) {
            let left = state.line.remove(at);
            drop(state);
            drop(left); // outside the lock; it was never submitted
            return;
        }
        // Not in line (any more): admitted into the queue (or dropped by a close).
        let mut cleared = VecDeque::new();
        if self.reply.withdraw() {
            Counters::bump(&shared.counters.withdrawn);
            if seq < state.taken_upto {
                // In the worker's batch: it frees its place now, and is skipped there.
                state.batch_dead += 1;
            } else {
                state.dead += 1;
                // Withdrawn entries stay queued until popped; compact when they dominate.
                if state.dead > shared.capacity.max(64) {
                    // Dropped after unlocking (a closure may hold the worker's last
                    // handle, whose drop takes the mailbox lock) and off the executor:
                    // they are other callers' calls, which the worker's thread would have
                    // dropped.
                    let queue = std::mem::take(&mut state.queue);
                    (state.queue, cleared) =
                        queue.into_iter().partition(|e| e.claim().is_waiting());
                    state.dead = 0;
                }
            }
            // The freed place goes to the first caller in line.
            let notify = !state.line.is_empty()
                && shared.admit_from_line(&mut state, Instant::now())
                && state.needs_notify();
            drop(state);
            if notify {
                shared.wake.notify_one();
            }
            if !cleared.is_empty() {
                crate::blocking::drop_off_the_executor(cleared);
            }
        } else {
            drop(state);
            // Running: cancel its token, and stop it inside the object if the worker
            // has an interrupter (never once it has returned: see `interrupt`).
            self.reply.cancel();
            if self.interruptible {
                shared.interrupt.interrupt(interrupt_id(seq));
            }
        }
    }

    /// Arms the worker's timeout on the first poll; an error when it cannot be timed.
    fn arm_timeout(&mut self) -> Result<(), WorkerError> {
        let (Some(after), None, true) = (self.shared.timeout, &self.sleep, self.timed) else {
            return Ok(());
        };
        let sleep = Handle::try_current()
            .ok()
            .and_then(|handle| timer::sleep_on(&handle, after))
            .ok_or_else(|| WorkerError::no_timer(&self.shared.name))?;
        self.sleep = Some(Box::pin(sleep));
        Ok(())
    }
}

impl<T: 'static, R> Future for Call<T, R> {
    type Output = Result<R, WorkerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        assert!(!this.settled, "a worker call polled after it completed");
        if let Err(err) = this.arm_timeout() {
            this.settled = true;
            this.give_up();
            this.envelope = None;
            return Poll::Ready(Err(err));
        }
        if this.envelope.is_some() {
            if this.shared.on_own_thread() {
                this.settled = true;
                this.envelope = None;
                return Poll::Ready(Err(WorkerError::own_thread(&this.shared.name)));
            }
            match this.admit() {
                Admit::Done | Admit::Waiting => {}
                Admit::Refused(err) => {
                    this.settled = true;
                    return Poll::Ready(Err(err));
                }
            }
        }
        if let Poll::Ready(outcome) = this.look.poll(&mut this.reply, cx) {
            this.settled = true;
            this.link = None;
            // The husk is freed here, on the caller's thread.
            return Poll::Ready(this.shared.answer(outcome).map(|(value, _husk)| value));
        }
        let pending = this.poll_timeout(cx);
        if pending.is_pending() {
            this.look.again(cx);
        }
        pending
    }
}

impl<T: 'static, R> Call<T, R> {
    /// Lets the call go without giving it up: it runs (or keeps running) and its result
    /// is dropped. For a lease's holder, which must not be interrupted on the way out.
    pub(crate) fn detach(mut self) {
        self.settled = true;
    }

    /// Pending, unless the timeout fired: then the call is given up (withdrawn, or its
    /// token cancelled and the object interrupted) and the caller gets the error.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, WorkerError>> {
        let Some(sleep) = &mut self.sleep else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.settled = true;
        Counters::bump(&self.shared.counters.timed_out);
        self.give_up();
        self.envelope = None;
        let after = self.shared.timeout.unwrap_or_default();
        Poll::Ready(Err(WorkerError::timeout(&self.shared.name, after)))
    }
}

impl<T: 'static, R> Drop for Call<T, R> {
    fn drop(&mut self) {
        if self.shared.load.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.wake_if_unheld();
        }
        if !self.settled {
            // Read before giving up (as a lane's call does): a withdrawn call that the
            // worker drops right after is done too, and was still cancelled.
            let finished = self.reply.is_done();
            // A caller in the line for room counts too; one never polled does not.
            let waited = self.envelope.is_none();
            self.give_up();
            if !finished && waited {
                Counters::bump(&self.shared.counters.cancelled);
            }
        }
    }
}

#[cfg(all(test, not(async_bridge_loom)))]
mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Husks dropped on this thread.
        pub(super) static HUSKS: Cell<usize> = const { Cell::new(0) };
    }

    /// A call's job box goes back with its value and is freed on the thread that made
    /// and awaited the call, not on the worker's (see [`super::Husk`]).
    #[test]
    fn a_calls_job_box_is_freed_on_the_callers_thread() {
        let worker = crate::Worker::builder("husk")
            .spawn(|| Ok::<_, std::io::Error>(0u64))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let before = HUSKS.get();
        for i in 1..=10 {
            let call = worker.call(|n| {
                *n += 1;
                *n
            });
            assert_eq!(rt.block_on(call).unwrap(), i);
        }
        assert_eq!(
            HUSKS.get() - before,
            10,
            "a job box was freed on another thread"
        );
    }
}
