//! loom models of the job cell: claim, withdraw, abandon, reply and waker (the
//! `# Invariants` of `job.rs`; the outcome and the caller's waker share the slot's one
//! lock). Run every model as `.ci/run` does:
//! `RUSTFLAGS="--cfg async_bridge_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test --release --features test-util --lib loom -- --nocapture`.
//!
//! Not modelled: the virtual-time participant (`seam`; none exists outside a harness,
//! the ledger has its own model in `testing/harness/loom.rs`), tracing spans, and the
//! internals of tokio-util's `CancellationToken` (an opaque step to loom: it is only
//! cancelled and read here).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use ::loom::future::block_on;
use ::loom::thread;
use tokio_util::sync::CancellationToken;

use super::{pair, pair_queued, Outcome, Ran};
use crate::origin::{Kind, Origin};
use crate::sync::model::check;

fn origin() -> Origin {
    Origin::new(Kind::Unblock, None, Location::caller())
}

/// Claim (by a runner that claims through the type-erased handle, as a lane or a
/// mailbox does, then runs the ticket) against withdraw (by the caller): exactly one
/// wins (invariant 1); a withdrawn closure never runs, a claimed one runs exactly once
/// (2); the reply sees the matching outcome, exactly once (3), and waiting for it loses
/// no wake-up (4: a lost one is a deadlock, which loom reports).
#[test]
fn claim_vs_withdraw() {
    check("job::claim_vs_withdraw", || {
        let (ticket, reply) = pair_queued::<u32>(origin(), None);
        let runs = Arc::new(AtomicUsize::new(0));
        let runner = {
            let runs = Arc::clone(&runs);
            thread::spawn(move || {
                let claimed = ticket.claim_handle().claim();
                let ran = ticket.run(|_| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    7
                });
                (claimed, ran)
            })
        };
        let withdrawn = reply.withdraw();
        let outcome = block_on(reply);
        let (claimed, ran) = runner.join().unwrap();
        assert_ne!(claimed, withdrawn, "exactly one of claim and withdraw wins");
        if withdrawn {
            assert_eq!(ran, Ran::Skipped);
            assert_eq!(runs.load(Ordering::Relaxed), 0, "a withdrawn closure ran");
            assert!(matches!(outcome, Outcome::Dropped));
        } else {
            assert_eq!(ran, Ran::Completed);
            assert_eq!(runs.load(Ordering::Relaxed), 1);
            assert!(matches!(outcome, Outcome::Completed(7)));
        }
    });
}

/// A runner that claims the job through the type-erased handle and then runs the
/// ticket, which finds the claim with a plain load and does no second compare-exchange
/// (`Cell::start`), against the caller dropping its reply: a drop that finds the job
/// waiting withdraws it, the claim fails and the closure never runs (nor is the token
/// cancelled); a drop after the claim cancels the token, and the claimed closure runs
/// exactly once, with the token, and is answered into a cell nobody reads (invariants
/// 1, 2, 7).
#[test]
fn claimed_run_vs_reply_drop() {
    check("job::claimed_run_vs_reply_drop", || {
        let token = CancellationToken::new();
        let (ticket, reply) = pair_queued::<u32>(origin(), Some(token.clone()));
        let runs = Arc::new(AtomicUsize::new(0));
        let runner = {
            let runs = Arc::clone(&runs);
            thread::spawn(move || {
                let claimed = ticket.claim_handle().claim();
                if !claimed {
                    drop(ticket); // a queue skips a withdrawn call: never run
                    return (false, Ran::Skipped);
                }
                let ran = ticket.run(|token| {
                    assert!(token.is_some(), "the closure gets the job's token");
                    runs.fetch_add(1, Ordering::Relaxed);
                    7
                });
                (true, ran)
            })
        };
        drop(reply);
        let (claimed, ran) = runner.join().unwrap();
        if claimed {
            assert_eq!(ran, Ran::Completed, "a claimed job was not run");
            assert_eq!(runs.load(Ordering::Relaxed), 1);
        } else {
            assert_eq!(runs.load(Ordering::Relaxed), 0, "a withdrawn closure ran");
            assert!(
                !token.is_cancelled(),
                "a withdrawn job's token was cancelled"
            );
        }
    });
}

/// A reply awaited while its job runs on another thread (the runner claims inside
/// `run`): the outcome is delivered, and the wake-up between the reply's first look and
/// its waker's registration is not lost (invariants 3, 4); polling again after it
/// resolved finds nothing left, never a second outcome (3).
#[test]
fn reply_waker_no_lost_wakeup() {
    check("job::reply_waker_no_lost_wakeup", || {
        let (ticket, mut reply) = pair::<u32>(origin(), None);
        let runner = thread::spawn(move || ticket.run(|_| 7));
        let outcome = block_on(&mut reply);
        assert!(matches!(outcome, Outcome::Completed(7)));
        assert!(reply.is_done());
        assert!(matches!(block_on(&mut reply), Outcome::Dropped));
        assert_eq!(runner.join().unwrap(), Ran::Completed);
    });
}

/// A reply polled first with one waker (a future polled once by one task, then moved
/// to another), then awaited with another while its job runs and replies on another
/// thread: the slot keeps the waker of the last poll that found no outcome, and that
/// one is woken (invariant 4; a wake that went to the first waker only would leave the
/// awaiting thread parked for ever, which loom reports as a deadlock).
#[test]
fn reply_repolled_with_another_waker() {
    check("job::reply_repolled_with_another_waker", || {
        let (ticket, mut reply) = pair::<u32>(origin(), None);
        let runner = thread::spawn(move || ticket.run(|_| 7));
        let first = Pin::new(&mut reply).poll(&mut Context::from_waker(Waker::noop()));
        let outcome = match first {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => block_on(&mut reply),
        };
        assert!(matches!(outcome, Outcome::Completed(7)));
        assert_eq!(runner.join().unwrap(), Ran::Completed);
    });
}

/// The reply dropped while its job is claimed and run on another thread: a drop that
/// finds the job waiting withdraws it and the closure never runs; otherwise the closure
/// runs once and the token is cancelled only when the drop found it started (never for
/// a withdrawn job); the runner writes its outcome into a cell nobody reads without
/// harm (invariant 7).
#[test]
fn reply_drop_vs_run() {
    check("job::reply_drop_vs_run", || {
        let token = CancellationToken::new();
        let (ticket, reply) = pair::<u32>(origin(), Some(token.clone()));
        let runs = Arc::new(AtomicUsize::new(0));
        let runner = {
            let runs = Arc::clone(&runs);
            thread::spawn(move || {
                ticket.run(|token| {
                    assert!(token.is_some(), "the closure gets the job's token");
                    runs.fetch_add(1, Ordering::Relaxed);
                    7
                })
            })
        };
        drop(reply);
        let ran = runner.join().unwrap();
        match ran {
            Ran::Skipped => {
                assert_eq!(runs.load(Ordering::Relaxed), 0, "a withdrawn closure ran");
                assert!(
                    !token.is_cancelled(),
                    "a withdrawn job's token was cancelled"
                );
            }
            Ran::Completed => assert_eq!(runs.load(Ordering::Relaxed), 1),
            Ran::Panicked => unreachable!(),
        }
    });
}

/// A ticket that never runs (its queue abandons it, then drops it: a shutdown) against
/// its caller withdrawing and then awaiting: exactly one of abandon and withdraw wins;
/// either way the caller gets `Dropped`, exactly once, and is woken for it (3, 4).
#[test]
fn abandon_vs_withdraw_then_drop() {
    check("job::abandon_vs_withdraw_then_drop", || {
        let (ticket, reply) = pair_queued::<u32>(origin(), None);
        let queue = thread::spawn(move || {
            let abandoned = ticket.claim_handle().abandon();
            drop(ticket);
            abandoned
        });
        let withdrawn = reply.withdraw();
        assert!(matches!(block_on(reply), Outcome::Dropped));
        let abandoned = queue.join().unwrap();
        assert_ne!(
            abandoned, withdrawn,
            "exactly one of abandon and withdraw wins"
        );
    });
}

/// A ticket dropped unrun (its pool or runtime went away, no abandon) while its caller
/// awaits: the caller is woken with `Dropped`, exactly once (3, 4), and a claim after
/// that fails (the cell is `DONE`, never back to `WAITING`).
#[test]
fn ticket_dropped_unrun_vs_reply() {
    check("job::ticket_dropped_unrun_vs_reply", || {
        let (ticket, mut reply) = pair_queued::<u32>(origin(), None);
        let claim = ticket.claim_handle();
        let pool = thread::spawn(move || drop(ticket));
        assert!(matches!(block_on(&mut reply), Outcome::Dropped));
        assert!(!claim.claim(), "a job claimed after its ticket replied");
        assert!(!claim.is_waiting());
        assert!(matches!(block_on(&mut reply), Outcome::Dropped));
        pool.join().unwrap();
    });
}

/// A reply registered with one waker on one thread (a task polled it once, as a
/// `compute` future's second poll does), then moved to another thread and awaited
/// there with another waker, while its job runs and replies on a third: the first
/// registration, the second (which replaces it under the slot's lock) and the reply's
/// taking of the waker race in every order; the awaiting thread is always answered or
/// woken (invariant 4: a wake that reached only the first waker would leave it parked,
/// a deadlock loom reports), and the first waker is not kept once the job is done.
#[test]
fn reply_registered_then_moved_to_another_thread() {
    use std::task::Wake;

    struct Counted(AtomicUsize);
    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    check("job::reply_registered_then_moved_to_another_thread", || {
        let (ticket, mut reply) = pair::<u32>(origin(), None);
        let runner = thread::spawn(move || ticket.run(|_| 7));
        let first = Arc::new(Counted(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&first));
        let polled = Pin::new(&mut reply).poll(&mut Context::from_waker(&waker));
        drop(waker);
        let awaiter = thread::spawn(move || match polled {
            Poll::Ready(outcome) => (outcome, reply),
            Poll::Pending => (block_on(&mut reply), reply),
        });
        let (outcome, reply) = awaiter.join().unwrap();
        assert!(matches!(outcome, Outcome::Completed(7)));
        assert_eq!(runner.join().unwrap(), Ran::Completed);
        assert!(reply.is_done());
        // The job is done and its ticket gone: the cell holds no waker of the first poll.
        assert_eq!(Arc::strong_count(&first), 1, "the first waker was kept");
        assert!(first.0.load(Ordering::Relaxed) <= 1);
    });
}
