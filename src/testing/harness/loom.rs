//! loom models of the virtual-time ledger: participants entering, starting, suspending,
//! resuming and leaving, against the holder (the task whose existence holds tokio's
//! paused clock) and against the harness looking at who is active (`describe`, what the
//! stall report shows).
//!
//! Not modelled, and why: tokio's paused clock itself and the holder's `spawn_blocking`
//! (the holder runs on a loom thread, `sync::spawn_on_pool`; that tokio holds a paused
//! clock while a blocking task exists is tokio's promise, documented on
//! `tokio::time::pause`); `sleep` and `wake` (a tokio timer task and a channel: the
//! phase change they make is the same one `suspend` and `resume` make, which is
//! modelled); the stall monitor's real-time loop over the progress epoch (a std atomic
//! the runtime's unpark hook also bumps, outside the model).

use std::panic::Location;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ::loom::thread;

use super::Harness;
use crate::origin::{Kind, Origin};
use crate::sync::model::{check, join_spawned};

fn origin() -> Origin {
    Origin::new(Kind::Offload, None, Location::caller())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The ledger's invariants, at any moment: `active` counts the entries that hold the
/// clock; while any does, a holder exists (so the clock cannot move); `describe` shows
/// the same count as running entries.
fn assert_consistent(harness: &Harness) {
    {
        let ledger = harness.ledger.lock();
        let holding = ledger.entries.values().filter(|e| e.holds).count();
        assert_eq!(ledger.active, holding, "active miscounted");
        assert!(
            ledger.active == 0 || ledger.holder,
            "active participants, no holder"
        );
    }
    let (active, text) = harness.describe();
    let running = text.matches("running (holds the clock)").count();
    assert_eq!(
        active, running,
        "describe: {active} active, listing:\n{text}"
    );
}

/// After every participant left and every holder ended: nobody in the ledger, nobody
/// active, no holder.
fn assert_empty(harness: &Harness) {
    let ledger = harness.ledger.lock();
    assert!(ledger.entries.is_empty(), "an entry left in the ledger");
    assert_eq!(ledger.active, 0);
    assert!(!ledger.holder, "the holder never ended");
}

/// A job that holds the clock from submission (`enter`, not queued) leaving, a queued
/// job starting (claimed) and leaving, and the harness checking who is active at any
/// moment: the ledger stays consistent (every holding entry counted once in `active`,
/// a holder whenever one is active, `describe` agrees), a holder that sees nobody
/// active ends and one is started again for the next (no lost notification: a holder
/// waiting forever is a deadlock, which loom reports), and the ledger ends empty.
#[test]
fn leave_vs_start_vs_check() {
    let rt = runtime();
    let handle = rt.handle().clone();
    check("ledger::leave_vs_start_vs_check", move || {
        let harness = Harness::new(handle.clone(), Arc::new(AtomicU64::new(0)));
        let running = {
            let harness = Arc::clone(&harness);
            thread::spawn(move || {
                let participant = harness.enter(origin(), false);
                assert_consistent(&harness); // while it holds the clock
                drop(participant);
            })
        };
        let queued = {
            let harness = Arc::clone(&harness);
            thread::spawn(move || {
                let participant = harness.enter(origin(), true);
                participant.starter().start();
                participant.starter().start(); // idempotent
                thread::yield_now();
                assert_consistent(&harness); // while it holds the clock
                drop(participant);
            })
        };
        assert_consistent(&harness);
        running.join().unwrap();
        queued.join().unwrap();
        join_spawned();
        assert_consistent(&harness);
        assert_empty(&harness);
    });
}

/// A participant that lets go of the clock while it waits (`suspend`, as a facade's park
/// loop or a sleep does) and takes it back (`resume`, as its waker or timer does)
/// before leaving, against another participant entering, being checked and leaving on
/// the main thread: the same invariants; each time the active count reaches zero the
/// holder ends, and the next participant to hold starts a new one.
#[test]
fn suspend_resume_vs_enter_leave() {
    let rt = runtime();
    let handle = rt.handle().clone();
    check("ledger::suspend_resume_vs_enter_leave", move || {
        let harness = Harness::new(handle.clone(), Arc::new(AtomicU64::new(0)));
        let waiter = {
            let harness = Arc::clone(&harness);
            thread::spawn(move || {
                let participant = harness.enter(origin(), false);
                harness.suspend(participant.id());
                harness.resume(participant.id());
                thread::yield_now();
                assert_consistent(&harness); // while it holds the clock
                drop(participant);
            })
        };
        let participant = harness.enter(origin(), false);
        thread::yield_now();
        assert_consistent(&harness); // while it holds the clock
        drop(participant);
        waiter.join().unwrap();
        join_spawned();
        assert_consistent(&harness);
        assert_empty(&harness);
    });
}
