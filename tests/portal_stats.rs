//! A `Portal` reports the same `Stats` shape as every other handle (issue 14), exact when
//! the caller looks: completions, panics, refusals, calls running across a shutdown, and
//! a caller whose future lost what it waited for. Nothing sleeps to synchronise: calls in
//! flight wait on channels.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use async_bridge::{Blocking, Portal, Stats};
use support::{within_a_minute, SchedulerHeld};
use tokio::sync::oneshot;

const GUARD: Duration = Duration::from_secs(30);

fn portal() -> Portal {
    Portal::builder().worker_threads(1).build().unwrap()
}

fn ordered(stats: &Stats) {
    for p in [stats.queue_wait, stats.run_time] {
        assert!(
            p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max,
            "{stats:?}"
        );
    }
}

/// The counters every test checks, in one tuple: submitted, completed, panicked,
/// rejected, running.
fn counts(s: &Stats) -> (u64, u64, u64, u64, usize) {
    (s.submitted, s.completed, s.panicked, s.rejected, s.running)
}

/// What a facade's caller can never do: give up, time out, or wait in a queue.
fn never_waits_nor_gives_up(s: &Stats) {
    assert_eq!(
        (s.queued, s.withdrawn, s.timed_out, s.cancelled),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn every_call_is_counted_before_its_caller_sees_the_answer() {
    let portal = portal();
    for i in 1..=100u64 {
        assert_eq!(portal.block_on(async { i }).unwrap(), i);
        let stats = portal.stats();
        assert_eq!(counts(&stats), (i, i, 0, 0, 0));
    }
    let stats = portal.stats();
    never_waits_nor_gives_up(&stats);
    ordered(&stats);
    // From a plain thread nothing waits before the first poll: every call waited zero.
    assert_eq!(stats.queue_wait.max, Duration::ZERO);
}

#[test]
fn a_panicking_future_counts_as_panicked_and_the_next_call_works() {
    let portal = portal();
    let err = portal.block_on(async { panic!("boom") }).unwrap_err();
    assert!(err.is_panic());
    assert_eq!(counts(&portal.stats()), (1, 0, 1, 0, 0));
    assert_eq!(portal.block_on(async { 2 }).unwrap(), 2);
    let stats = portal.stats();
    assert_eq!(counts(&stats), (2, 1, 1, 0, 0));
    never_waits_nor_gives_up(&stats);
    // A `Blocking<T>` over the portal counts on it too; its panics resume in the caller.
    let value = Blocking::with_portal(3u32, &portal);
    assert_eq!(value.call(async |n| *n + 1).unwrap(), 4);
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        value.call(async |_| -> u32 { panic!("again") })
    }));
    assert!(resumed.is_err());
    assert_eq!(counts(&portal.stats()), (4, 2, 2, 0, 0));
}

#[test]
fn a_call_in_flight_is_running_and_its_run_time_is_measured() {
    let portal = portal();
    let (release, released) = oneshot::channel::<u32>();
    let (entered_tx, entered) = mpsc::channel();
    let caller = {
        let portal = portal.clone();
        std::thread::spawn(move || {
            portal.block_on(async move {
                entered_tx.send(()).unwrap();
                released.await.unwrap()
            })
        })
    };
    entered.recv_timeout(GUARD).unwrap();
    assert_eq!(counts(&portal.stats()), (1, 0, 0, 0, 1));
    release.send(5).unwrap();
    assert_eq!(caller.join().unwrap().unwrap(), 5);
    let stats = portal.stats();
    assert_eq!(counts(&stats), (1, 1, 0, 0, 0));
    // A portal's first call is always timed; this one parked, so it took time.
    assert!(stats.run_time.max > Duration::ZERO, "{stats:?}");
    ordered(&stats);
}

#[test]
fn a_caller_whose_future_lost_what_it_waited_for_completes_with_that_answer() {
    // The one way a facade's caller "goes away": what its future awaits is dropped.
    // The future still ends (with that loss as its output): completed, not cancelled.
    let portal = portal();
    let (gone, waiting) = oneshot::channel::<u32>();
    drop(gone);
    assert!(portal.block_on(waiting).unwrap().is_err());
    // A task the future awaited, aborted from elsewhere.
    let task = portal.handle().spawn(std::future::pending::<()>());
    task.abort();
    assert!(portal.block_on(task).unwrap().unwrap_err().is_cancelled());
    let stats = portal.stats();
    assert_eq!(counts(&stats), (2, 2, 0, 0, 0));
    never_waits_nor_gives_up(&stats);
}

#[test]
fn a_refusal_is_rejected_and_nothing_runs() {
    let portal = portal();
    let (err, stats) = {
        let portal = portal.clone();
        within_a_minute(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async { (portal.block_on(async { 1 }).unwrap_err(), portal.stats()) })
        })
    };
    assert!(err.is_would_deadlock());
    assert_eq!(
        counts(&stats),
        (1, 0, 0, 1, 0),
        "counted before the caller looked"
    );
    never_waits_nor_gives_up(&stats);
}

#[test]
fn from_a_runtime_worker_a_call_is_counted_like_any_other() {
    let portal = portal();
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let inner = portal.clone();
    let out = app
        .block_on(app.spawn(async move { inner.block_on(async { 7 }).unwrap() }))
        .unwrap();
    assert_eq!(out, 7);
    let stats = portal.stats();
    assert_eq!(counts(&stats), (1, 1, 0, 0, 0));
    ordered(&stats);
}

#[test]
fn calls_across_a_shutdown_end_counted_and_later_ones_are_refused_uncounted() {
    let portal = portal();
    let (release, released) = oneshot::channel::<u32>();
    let (entered_tx, entered) = mpsc::channel();
    let caller = {
        let portal = portal.clone();
        std::thread::spawn(move || {
            portal.block_on(async move {
                entered_tx.send(()).unwrap();
                // Not a timer or IO of the portal's runtime: it works after the shutdown.
                released.await.unwrap()
            })
        })
    };
    entered.recv_timeout(GUARD).unwrap();
    portal.shutdown(Duration::from_secs(5));
    assert_eq!(counts(&portal.stats()), (1, 0, 0, 0, 1));
    assert!(portal.block_on(async { 1 }).unwrap_err().is_shutdown());
    release.send(9).unwrap();
    assert_eq!(caller.join().unwrap().unwrap(), 9);
    let stats = portal.stats();
    // As a shut-down lane's: a call refused by a shutdown was never submitted.
    assert_eq!(counts(&stats), (1, 1, 0, 0, 0));
    never_waits_nor_gives_up(&stats);
}

#[test]
fn many_threads_at_once_are_counted_exactly() {
    let portal = portal();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let portal = portal.clone();
            std::thread::spawn(move || {
                for i in 0..1_000u32 {
                    if i % 250 == 249 {
                        assert!(portal.block_on(async { panic!("boom") }).is_err());
                    } else {
                        portal.block_on(tokio::task::yield_now()).unwrap();
                    }
                }
                t
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = portal.stats();
    assert_eq!(counts(&stats), (4_000, 3_984, 16, 0, 0));
    never_waits_nor_gives_up(&stats);
    ordered(&stats);
}

/// Promise 1 under every caller at once: nested calls (each one counted), a panic caught
/// by the outer future, `Blocking<T>` calls from a multi-thread worker (through
/// `block_in_place`, so each records a queue wait), a refusal from a current_thread
/// runtime, and a refusal on a second thread inside a current_thread `Runtime::block_on`
/// (its nested call never runs). Every count is exact, and the percentiles stay ordered.
#[test]
fn portal_stats_exact_over_nested_panicking_refused_and_async_callers() {
    let portal = portal();
    // Plain thread: 2 outer calls, each with 1 nested call (4 submitted, 4 completed).
    for _ in 0..2 {
        let outer = portal.block_on(async { portal.block_on(async { 1 }).unwrap() + 1 });
        assert_eq!(outer.unwrap(), 2);
    }
    // A nested panic, caught by the outer future: inner panicked, outer completed.
    let outer = portal.block_on(async { portal.block_on(async { panic!("inner") }).is_err() });
    assert!(outer.unwrap());
    assert_eq!(counts(&portal.stats()), (6, 5, 1, 0, 0));
    // From a multi-thread worker: 3 Blocking<T> calls.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wrapped = Blocking::with_portal(7u32, &portal);
    rt.block_on(async {
        tokio::spawn(async move {
            for _ in 0..3 {
                assert_eq!(wrapped.call(async |n| *n).unwrap(), 7);
            }
        })
        .await
        .unwrap();
    });
    assert_eq!(counts(&portal.stats()), (9, 8, 1, 0, 0));
    // Refused on the thread of a current_thread runtime.
    let ct = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let refused = ct.block_on(async { portal.block_on(async { 1 }) });
    assert!(refused.unwrap_err().is_would_deadlock());
    assert_eq!(counts(&portal.stats()), (10, 8, 1, 1, 0));
    // A second thread inside a current_thread `Runtime::block_on`: refused, so its
    // nested call is never made.
    let ct = std::sync::Arc::new(ct);
    let held = SchedulerHeld::new(&ct);
    let second = {
        let (ct, portal) = (std::sync::Arc::clone(&ct), portal.clone());
        within_a_minute(move || {
            ct.block_on(async { portal.block_on(async { portal.block_on(async { 3 }) }) })
        })
    };
    held.release();
    assert!(second.unwrap_err().is_would_deadlock());
    let stats = portal.stats();
    assert_eq!(counts(&stats), (11, 8, 1, 2, 0), "{stats:?}");
    never_waits_nor_gives_up(&stats);
    ordered(&stats);
    // The three calls from the worker waited in `block_in_place`; a wait can be 0 ns,
    // never more than the largest.
    assert!(stats.queue_wait.max >= stats.queue_wait.p99);
    rt.shutdown_timeout(GUARD);
    portal.shutdown(GUARD);
}
