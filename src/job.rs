//! The one layer under every offload.
//!
//! Every path that runs work off the executor (`unblock`, `Offloader`, `compute`,
//! `ComputePool`, and the kinds that come later) submits it here and gets two halves back:
//! a [`Ticket`] that travels to the thread that runs the work, and a [`Reply`] future
//! that the caller awaits. The layer owns what every offload must get right the same way:
//!
//! - **cancel before start**: a [`Ticket`] whose [`Reply`] was dropped never runs its
//!   closure;
//! - **cancellation after start**: the optional `CancellationToken` handed to the closure
//!   is cancelled when the [`Reply`] is dropped (a caller that gave up or timed out);
//! - **panics are never lost**: the closure runs under `catch_unwind` and the payload is
//!   delivered to the caller as [`Outcome::Panicked`];
//! - **ordering**: the result is delivered *before* the ticket is let go of, which is the
//!   rule the virtual-time harness depends on;
//! - **who and where**: the [`Origin`] (kind, lane or worker name, call site) of each job,
//!   used in errors, reports and tracing spans.
//!
//! The two halves share one allocation (a `Cell`: state, origin, and one lock over the
//! outcome slot and the caller's waker), which doubles as the job's start flag: a queue can claim a job or its caller can
//! withdraw it, and exactly one of the two wins. The reply does not take from tokio's
//! cooperative budget (tokio's own oneshot does), so ten thousand replies awaited in
//! one `join_all` are not re-polled over and over (the reason naive rayon bridges run
//! several times slower; the measured ratios are in README's performance table).
//!
//! The virtual-time harness is reached only through [`crate::seam`], whose ordering
//! rules this layer keeps (rules 1, 2, 4 and 5 here; 3 in the queues that feed it).
//!
//! # Invariants
//!
//! The cell's state moves `WAITING → STARTED → DONE`, `WAITING → WITHDRAWN → DONE`, or
//! `WAITING → DONE` (a ticket dropped unrun), and never back:
//!
//! 1. Only a compare-exchange from `WAITING` leaves `WAITING`, so claim (by the runner),
//!    withdraw (by the caller) and abandon (by the queue) race for one transition and
//!    exactly one wins.
//! 2. A closure runs only on the thread that won the claim, and at most once (the
//!    ticket is consumed by running it).
//! 3. The outcome is written exactly once, by the ticket (run, or dropped unrun), under
//!    the slot's lock, together with the `DONE` state and the taking of the caller's
//!    waker, which is woken after the lock is let go: a reply that sees `DONE` finds the
//!    outcome in the slot.
//! 4. The reply checks `DONE` and registers its waker under the same lock, so a reply
//!    is either answered at once or woken once the outcome is in: no wake-up is lost.
//!    No waker is woken or dropped under the lock (a waker's drop may run any code).
//!    (One lock where an `AtomicWaker` beside a locked slot cost the ticket two more
//!    read-modify-writes per job and the cell 24 more bytes.)
//! 5. A handle's bookkeeping (`before_reply`) runs after the closure and before the
//!    outcome is written: counters are exact by the time the caller looks.
//! 6. The job's harness participant is dropped only after the outcome is written.
//! 7. A reply dropped while `WAITING` withdraws the job (it never runs); one dropped
//!    after `STARTED` cancels the job's token; one dropped at `DONE` writes nothing.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{self, Poll, Waker};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::ledger;
use crate::origin::Origin;
use crate::seam;
use crate::sync::{AtomicU8, Mutex};
use crate::trace;

pub(crate) use crate::sync::spawn_blocking;

#[cfg(all(test, async_bridge_loom))]
mod loom;

/// A panic payload, as `std::panic::catch_unwind` returns it.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// How a job ended, as its caller sees it.
pub(crate) enum Outcome<T> {
    /// The closure returned.
    Completed(T),
    /// The closure panicked; the payload is intact.
    Panicked(Panic),
    /// The ticket was dropped without running: the queue it sat in was cleared, or the
    /// pool or runtime that was to run it went away.
    Dropped,
}

/// What a [`Ticket`] did with its closure, for the counters of the handle that ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The caller had gone away before the start: the closure was not run.
    Skipped,
    /// The closure returned.
    Completed,
    /// The closure panicked.
    Panicked,
}

/// Makes a job's two halves: the ticket goes to the thread that will run it, the reply
/// to the caller. Nothing is submitted anywhere; the caller's handle does that with the
/// ticket.
///
/// With `cancel` set, the closure is handed a token that is cancelled when the reply is
/// dropped after the job started; pass a child of a lane's token to have shutdown cancel
/// it too.
pub(crate) fn pair<T>(origin: Origin, cancel: Option<CancellationToken>) -> (Ticket<T>, Reply<T>) {
    pair_with(origin, cancel, false)
}

/// As [`pair`], for a job that waits in a queue of its handle (a lane, a mailbox)
/// behind other jobs of that handle: under the virtual-time harness it holds the clock
/// only from the moment a runner [claims](Claim::claim) it (seam rule 2). Its runner
/// keeps the times of its jobs for its stats anyway (a lane's drainers, a worker's
/// thread) and hands them to the ledger ([`Timing`], from `run_and`'s `before_reply`):
/// the job reads no clock of its own for the ledger.
pub(crate) fn pair_queued<T>(
    origin: Origin,
    cancel: Option<CancellationToken>,
) -> (Ticket<T>, Reply<T>) {
    pair_with(origin, cancel, true)
}

fn pair_with<T>(
    origin: Origin,
    cancel: Option<CancellationToken>,
    queued: bool,
) -> (Ticket<T>, Reply<T>) {
    let participant = seam::enter_job(&origin, queued);
    let context = Context::capture();
    let paired = (!queued && ledger::is_enabled()).then(Instant::now);
    let cell = Arc::new(Cell {
        starter: participant.as_ref().map(|p| p.starter()),
        origin,
        state: AtomicU8::new(WAITING),
        slot: Mutex::new(Slot {
            outcome: None,
            waker: None,
        }),
        cancel,
    });
    (
        Ticket {
            cell: Arc::clone(&cell),
            replied: false,
            participant,
            context,
            paired,
        },
        Reply { cell },
    )
}

/// The job has not started; its caller still wants it.
const WAITING: u8 = 0;
/// The job was claimed by the thread that runs it (or is running, or has run).
const STARTED: u8 = 1;
/// The caller gave up before the job started: it never will.
const WITHDRAWN: u8 = 2;
/// The outcome is in the cell, for the reply to take.
const DONE: u8 = 3;

/// The one allocation a job costs: its state, its origin and the slot for its outcome,
/// shared by the [`Ticket`] and the [`Reply`].
struct Cell<T> {
    /// Starts the job's harness participant when the job is claimed.
    starter: Option<seam::ParticipantRef>,
    origin: Origin,
    state: AtomicU8,
    /// The outcome and the waiting caller's waker (invariants 3 and 4).
    slot: Mutex<Slot<T>>,
    cancel: Option<CancellationToken>,
}

/// What the ticket hands the reply, under the cell's one lock.
struct Slot<T> {
    /// Written once by the ticket, taken once by the reply.
    outcome: Option<Outcome<T>>,
    /// The waker of the caller's last poll that found no outcome.
    waker: Option<Waker>,
}

/// An outcome nobody took (its caller gave up) is dropped by whoever drops the cell
/// last: often the runner's thread, right after it answered. Its `Drop` is the caller's
/// code; a panic there must not unwind the runner (a worker's thread ended with its
/// object, a drainer took the call it had claimed next down with it), so it is caught,
/// as tokio drops an unwanted task output. The panic hook has reported it.
impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(outcome)));
        }
    }
}

impl<T> Cell<T> {
    fn transition(&self, to: u8) -> Result<(), u8> {
        #[cfg(all(test, not(async_bridge_loom)))]
        tests::TRANSITIONS.with(|n| n.set(n.get() + 1));
        self.state
            .compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
    }

    /// Claims the job for running: false when its caller (or its queue) gave it up.
    ///
    /// A job its queue already claimed (`STARTED`, which only this job's runner sets, and
    /// which it leaves only by replying) is started: a plain load tells, and the runner
    /// skips a second compare-exchange (a locked instruction even when it fails) and a
    /// second hold of the clock (the claim took it).
    fn start(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            STARTED => return true,
            WAITING => {}
            _ => return false,
        }
        let started = matches!(self.transition(STARTED), Ok(()) | Err(STARTED));
        if started {
            self.hold_clock();
        }
        started
    }

    /// Under the virtual-time harness: the job holds the clock from now on.
    fn hold_clock(&self) {
        if let Some(starter) = &self.starter {
            starter.start();
        }
    }
}

/// A type-erased view of a job's start, for queues that hold jobs of many result types.
pub(crate) trait Claim: Send + Sync {
    /// Claims the job for running; false when its caller has already given up (then it
    /// must not run).
    fn claim(&self) -> bool;

    /// Gives up on a job that has not started, from the queue's side (the queue is being
    /// cleared); false when it had started or its caller had already given up.
    fn abandon(&self) -> bool;

    /// The queued job will be claimed without time passing (its runner is idle): under
    /// the virtual-time harness it holds the clock from now on. No effect otherwise.
    fn runs_soon(&self);

    /// True while the job has neither started nor been given up.
    fn is_waiting(&self) -> bool;

    /// The job's origin.
    fn origin(&self) -> &Origin;
}

impl<T: Send> Claim for Cell<T> {
    fn claim(&self) -> bool {
        self.start()
    }

    fn abandon(&self) -> bool {
        self.transition(WITHDRAWN).is_ok()
    }

    fn runs_soon(&self) {
        self.hold_clock();
    }

    fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// The runner's half of a job.
pub(crate) struct Ticket<T> {
    cell: Arc<Cell<T>>,
    replied: bool,
    /// The job's entry in the virtual-time harness's ledger, if it was submitted under
    /// one; dropped (leaving the ledger) only after the reply is delivered.
    participant: Option<seam::Participant>,
    /// What the job carries from its submitter (task-locals, the caller's span).
    context: Option<Box<Context>>,
    /// When it was paired, for the ledger's queue wait (only while the ledger is on).
    paired: Option<Instant>,
}

impl<T: Send + 'static> Ticket<T> {
    /// Turns the job away unrun; its caller gets [`Outcome::Dropped`]. True when the
    /// caller was still waiting for it, false when it had already withdrawn it: the
    /// queue's [`abandon`](Claim::abandon), then the ticket's drop (loom's
    /// `abandon_vs_withdraw_then_drop`).
    pub(crate) fn refuse(self) -> bool {
        self.cell.abandon()
    }

    /// A type-erased handle on the job's start, sharing the ticket's allocation.
    pub(crate) fn claim_handle(&self) -> Arc<dyn Claim> {
        Arc::clone(&self.cell) as Arc<dyn Claim>
    }

    /// The job's start, borrowed: for a queue whose entry owns the ticket itself (a
    /// worker's mailbox), which then needs no handle of its own (no reference count
    /// taken and given back per job).
    pub(crate) fn claim(&self) -> &dyn Claim {
        &*self.cell
    }
}

/// How long a job waited to start and how long it ran, as measured by a runner that
/// times its jobs anyway (a lane's drainer, a worker's thread), for the ledger; `None`
/// from the others, whose jobs the job layer times itself while the ledger is on.
pub(crate) type Timing = Option<(Duration, Duration)>;

impl<T> Ticket<T> {
    /// Runs `f` on this thread unless the caller has already gone away, and delivers the
    /// outcome to the caller before returning.
    ///
    /// `f` gets the job's cancellation token when the job was submitted with one.
    pub(crate) fn run<F>(self, f: F) -> Ran
    where
        F: FnOnce(Option<&CancellationToken>) -> T,
    {
        self.run_and(f, |_| None)
    }

    /// As [`run`](Self::run), calling `before_reply` once `f` has returned or panicked
    /// (or was skipped) and before the caller can see the outcome, so that a handle's
    /// own bookkeeping is up to date by the time its caller looks. What `before_reply`
    /// returns is the runner's [`Timing`] of the job, for the ledger.
    pub(crate) fn run_and<F>(mut self, f: F, before_reply: impl FnOnce(Ran) -> Timing) -> Ran
    where
        F: FnOnce(Option<&CancellationToken>) -> T,
    {
        if !self.cell.start() {
            // Withdrawn by its caller, or abandoned by its queue: the ticket's drop tells
            // a caller still listening that it was dropped.
            before_reply(Ran::Skipped);
            return Ran::Skipped;
        }
        let context = self.context.take();
        let _span = trace::job(&self.cell.origin, context.as_ref().and_then(|c| c.span()));
        let started = self.paired.map(|_| Instant::now());
        let cancel = self.cell.cancel.as_ref();
        let run = || panic::catch_unwind(AssertUnwindSafe(|| f(cancel)));
        let work = || match &self.participant {
            Some(participant) => participant.run(run),
            None => run(),
        };
        let result = match context {
            Some(context) => context.enter(work),
            None => work(),
        };
        let own = match (self.paired, started) {
            (Some(paired), Some(started)) => Some((started - paired, started.elapsed())),
            _ => None,
        };
        let (ran, outcome) = match result {
            Ok(value) => (Ran::Completed, Outcome::Completed(value)),
            Err(payload) => (Ran::Panicked, Outcome::Panicked(payload)),
        };
        let runners = before_reply(ran);
        if let Some((waited, took)) = own.or_else(|| runners.filter(|_| ledger::is_enabled())) {
            let origin = &self.cell.origin;
            ledger::record(origin.kind, origin.site, waited, took, false);
        }
        self.reply(outcome);
        ran
    }

    fn reply(&mut self, outcome: Outcome<T>) {
        self.replied = true;
        let waker = {
            let mut slot = self.cell.slot.lock();
            slot.outcome = Some(outcome);
            self.cell.state.store(DONE, Ordering::Release);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if !self.replied {
            self.reply(Outcome::Dropped);
        }
    }
}

impl<T> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("origin", &self.cell.origin)
            .finish()
    }
}

/// The caller's half of a job: resolves to its [`Outcome`].
///
/// Dropping it before the job starts means the job never starts; dropping it after
/// cancels the job's token, if it has one.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Reply<T> {
    cell: Arc<Cell<T>>,
}

impl<T> Reply<T> {
    /// Gives up on a job that has not started, so that it never will; false when it has
    /// already started (or was already withdrawn).
    pub(crate) fn withdraw(&self) -> bool {
        self.cell.transition(WITHDRAWN).is_ok()
    }

    /// True once the outcome is in (whether or not it was taken).
    pub(crate) fn is_done(&self) -> bool {
        self.cell.state.load(Ordering::Acquire) == DONE
    }

    /// Cancels the job's token, if it has one.
    pub(crate) fn cancel(&self) {
        if let Some(token) = &self.cell.cancel {
            token.cancel();
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Outcome<T>> {
        let cell = &self.cell;
        let mut slot = cell.slot.lock();
        if cell.state.load(Ordering::Acquire) == DONE {
            // Taken once: a reply polled again after it resolved has nothing left.
            return Poll::Ready(slot.outcome.take().unwrap_or(Outcome::Dropped));
        }
        let replaced = match &mut slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            waker => waker.replace(cx.waker().clone()),
        };
        // A replaced waker is dropped after the lock is let go: its drop may run any code
        // (the last reference to another task), even code that waits for this job, whose
        // runner needs the lock to deliver the outcome.
        drop(slot);
        drop(replaced);
        Poll::Pending
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        match self.cell.state.load(Ordering::Acquire) {
            // The common case, a reply dropped after it resolved: nothing to do, and no
            // write to a cache line the runner's core just wrote.
            DONE => {}
            WAITING if self.withdraw() => {}
            _ => self.cancel(),
        }
    }
}

/// Resumes a panic payload in the current thread, as the sync code would have panicked.
pub(crate) fn resume(payload: Panic) -> ! {
    panic::resume_unwind(payload)
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &Panic) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(all(test, not(async_bridge_loom)))]
mod tests {
    use super::*;

    thread_local! {
        /// Compare-exchanges tried on a cell's state by this thread (`Cell::transition`).
        pub(super) static TRANSITIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn origin() -> Origin {
        Origin::new(
            crate::origin::Kind::Worker,
            None,
            std::panic::Location::caller(),
        )
    }

    /// A job its queue claimed (a mailbox, a lane) is run with one compare-exchange in
    /// all, the claim's: `run` finds it started with a load (it did a second one, which
    /// fails and still costs a locked instruction per call); it runs once and answers.
    #[test]
    fn a_claimed_job_runs_without_a_second_compare_exchange() {
        let (ticket, mut reply) = pair_queued::<u32>(origin(), None);
        let before = TRANSITIONS.with(std::cell::Cell::get);
        assert!(ticket.claim_handle().claim());
        assert!(!reply.withdraw(), "a claimed job was withdrawn");
        let runs = std::cell::Cell::new(0);
        let ran = ticket.run(|_| {
            runs.set(runs.get() + 1);
            7
        });
        // The claim's transition and the failed withdrawal: none from `run`.
        assert_eq!(TRANSITIONS.with(std::cell::Cell::get) - before, 2);
        assert_eq!((ran, runs.get()), (Ran::Completed, 1));
        let waker = Waker::noop();
        assert!(matches!(
            Pin::new(&mut reply).poll(&mut task::Context::from_waker(waker)),
            Poll::Ready(Outcome::Completed(7))
        ));
    }

    /// A job withdrawn before its runner looks is skipped by `run` without a
    /// compare-exchange, and one never claimed is started by `run` itself (one).
    #[test]
    fn run_skips_a_withdrawn_job_and_starts_an_unclaimed_one() {
        let (ticket, reply) = pair::<u32>(origin(), None);
        assert!(reply.withdraw());
        let before = TRANSITIONS.with(std::cell::Cell::get);
        assert_eq!(
            ticket.run(|_| unreachable!("a withdrawn job ran")),
            Ran::Skipped
        );
        assert_eq!(TRANSITIONS.with(std::cell::Cell::get), before);
        let (ticket, _reply) = pair::<u32>(origin(), None);
        assert_eq!(ticket.run(|_| 1), Ran::Completed);
        assert_eq!(TRANSITIONS.with(std::cell::Cell::get) - before, 1);
    }

    /// The waker sits in the outcome's lock, not in an `AtomicWaker` beside it: the cell
    /// of a one-word result is 96 bytes (it was 104), within two cache lines with the
    /// `Arc`'s counts, in the default build, where the harness participant's field is
    /// empty. Under `test-util` (the build CI tests) that field is counted apart, so the
    /// bound is checked there too.
    #[test]
    fn the_cell_of_a_word_fits_in_96_bytes() {
        let harness = std::mem::size_of::<Option<seam::ParticipantRef>>();
        let size = std::mem::size_of::<Cell<u64>>();
        assert!(
            size - harness <= 96,
            "{size} bytes, {harness} of them the harness participant's"
        );
    }

    /// A reply polled with one waker and then another wakes only the last one when the
    /// outcome comes in (the slot keeps one waker).
    #[test]
    fn the_last_waker_registered_is_the_one_woken() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let origin = Origin::new(
            crate::origin::Kind::Unblock,
            None,
            std::panic::Location::caller(),
        );
        let (ticket, mut reply) = pair::<u32>(origin, None);
        let (first, second) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        for count in [&first, &second] {
            let waker = Waker::from(Arc::clone(count));
            assert!(Pin::new(&mut reply)
                .poll(&mut task::Context::from_waker(&waker))
                .is_pending());
        }
        ticket.run(|_| 7);
        assert_eq!(
            (
                first.0.load(Ordering::SeqCst),
                second.0.load(Ordering::SeqCst)
            ),
            (0, 1)
        );
        let waker = Waker::from(second);
        assert!(matches!(
            Pin::new(&mut reply).poll(&mut task::Context::from_waker(&waker)),
            Poll::Ready(Outcome::Completed(7))
        ));
    }
}
