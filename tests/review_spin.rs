//! Adversarial review of the lane's drainer spin (src/lane/mod.rs: `SPIN`,
//! `State::spinning`, `Lane::spin`, `wake_for_queue`, invariant 9).
//!
//! A drainer that just finished a call and finds the queue empty spins for up to 20 µs
//! before it waits; calls submitted right after an answer land in that window (no
//! sleep is needed to hit it: the tests submit the next calls as soon as the previous
//! answers arrive, many rounds over). Every wait is bounded by a hang guard.
#![cfg(all(feature = "test-util", feature = "tower"))]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::Context;
use std::time::Duration;

use async_bridge::{clock, testing, ComputePool, Offloader, Stats};
use support::{guarded, rt, Gate};
use tower::Service;

/// Every submitted call is in exactly one outcome once the lane is quiet.
fn assert_settled(stats: &Stats, abandoned: u64) {
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.withdrawn + stats.rejected + abandoned,
        "{stats:?}"
    );
}

/// Promise (invariant 9): calls admitted while a drainer spins notify no one, and the
/// spinner wakes the idle drainers the calls behind its own need. Three calls that can
/// only finish together (a barrier of 3) right after an answer: if the spinner did not
/// wake the others (or no new drainer started), they would wait for a linger and the
/// round would still pass, so the rounds also bound concurrency: never more closures
/// at once than `max_concurrency`, and every round completes (no entry left queued with
/// every drainer gone). Stats are exact after each round.
#[test]
fn calls_behind_a_spinner_run_together_and_never_beyond_the_bound() {
    guarded("rendezvous rounds behind a spinner", || {
        let rt = rt();
        let lane = Offloader::builder("spin-rendezvous")
            .max_concurrency(3)
            .max_queue(8)
            .build()
            .unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for round in 0..300u64 {
                // One call first: its drainer is left spinning when it answers.
                assert_eq!(lane.run(move || round).await.unwrap(), round);
                let barrier = Arc::new(Barrier::new(3));
                let calls = (0..3).map(|i| {
                    let (barrier, now, peak) = (barrier.clone(), now.clone(), peak.clone());
                    lane.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        barrier.wait();
                        now.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                });
                let out: Vec<_> = futures::future::join_all(calls).await;
                assert!(out
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.as_ref().ok() == Some(&i)));
                assert_settled(&lane.stats(), 0);
            }
        });
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        let stats = lane.stats();
        assert_eq!(stats.completed, 300 * 4);
    });
}

/// Promise: a burst larger than the lane's slots plus its queue, submitted right after
/// an answer (a drainer spinning), is admitted up to `max_concurrency + max_queue` and
/// rejected beyond it, never more closures at once than `max_concurrency`; every
/// admitted call runs; the counts are exact.
#[test]
fn a_burst_into_a_spinning_lane_keeps_its_bounds_and_counts() {
    guarded("bursts into a spinning lane", || {
        let rt = rt();
        let lane = Offloader::builder("spin-burst")
            .max_concurrency(2)
            .max_queue(4)
            .build()
            .unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut ok_total = 0u64;
            let mut rejected_total = 0u64;
            for _ in 0..300 {
                lane.run(|| ()).await.unwrap();
                ok_total += 1;
                let calls = (0..16).map(|_| {
                    let (now, peak) = (now.clone(), peak.clone());
                    lane.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::hint::black_box((0..200).sum::<u64>());
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                });
                for r in futures::future::join_all(calls).await {
                    match r {
                        Ok(()) => ok_total += 1,
                        Err(e) if e.is_rejected() => rejected_total += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                let stats = lane.stats();
                assert_settled(&stats, 0);
                assert_eq!(
                    (stats.completed, stats.rejected),
                    (ok_total, rejected_total)
                );
            }
        });
        assert!(
            peak.load(Ordering::SeqCst) <= 2,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
    });
}

/// Promise: `shutdown(grace)` right after an answer (a drainer spinning) does not hang,
/// reports exactly (nothing finished during it, nothing abandoned), and later calls fail
/// with `is_shutdown`; the lane's counts stay exact.
#[test]
fn shutdown_while_a_drainer_spins_is_exact_and_does_not_hang() {
    guarded("shutdowns of spinning lanes", || {
        let rt = rt();
        rt.block_on(async {
            for round in 0..200 {
                let lane = Offloader::builder("spin-shutdown")
                    .max_concurrency(2)
                    .build()
                    .unwrap();
                lane.run(|| ()).await.unwrap();
                let report = lane.shutdown(Duration::from_secs(20)).await;
                assert!(report.is_complete(), "round {round}: {report:?}");
                assert_eq!(
                    (report.finished(), report.abandoned()),
                    (0, 0),
                    "{report:?}"
                );
                assert!(lane.run(|| ()).await.unwrap_err().is_shutdown());
                let stats = lane.stats();
                assert_settled(&stats, 0);
                assert_eq!(stats.completed, 1);
            }
        });
    });
}

/// Promise: a shutdown with one call running (gated) and calls queued behind it while
/// the lane's other drainer spins abandons exactly the queued calls (their callers get
/// `is_shutdown`), waits for the running one within its grace, and reports it finished.
#[test]
fn shutdown_with_a_running_call_and_a_queue_counts_each_call_once() {
    guarded("shutdown with a queue behind a spinner", || {
        let rt = rt();
        rt.block_on(async {
            for _ in 0..50 {
                let lane = Arc::new(
                    Offloader::builder("spin-shutdown-queue")
                        .max_concurrency(1)
                        .max_queue(8)
                        .build()
                        .unwrap(),
                );
                lane.run(|| ()).await.unwrap(); // its drainer spins now
                let gate = Gate::new();
                let (started_tx, started) = tokio::sync::oneshot::channel();
                let running = {
                    let gate = gate.clone();
                    tokio::spawn(lane.run(move || {
                        started_tx.send(()).unwrap();
                        gate.wait();
                        7
                    }))
                };
                started.await.unwrap();
                let queued: Vec<_> = (0..3).map(|i| tokio::spawn(lane.run(move || i))).collect();
                // Admitted once polled: wait until the lane shows them queued.
                while lane.stats().queued < 3 {
                    tokio::task::yield_now().await;
                }
                let shutdown = {
                    let lane = lane.clone();
                    tokio::spawn(async move { lane.shutdown(Duration::from_secs(20)).await })
                };
                for q in queued {
                    assert!(q.await.unwrap().unwrap_err().is_shutdown());
                }
                gate.open();
                assert_eq!(running.await.unwrap().unwrap(), 7);
                let report = shutdown.await.unwrap();
                assert!(report.is_complete(), "{report:?}");
                assert_eq!(
                    (report.finished(), report.abandoned()),
                    (1, 3),
                    "{report:?}"
                );
                let stats = lane.stats();
                assert_settled(&stats, 3);
                assert_eq!(stats.completed, 2);
            }
        });
    });
}

/// Promise: a call dropped right after its first poll (admitted while a drainer spins)
/// either ran or was withdrawn, never both and never neither, and the lane serves the
/// next call; counts exact after each round.
#[test]
fn a_call_withdrawn_while_a_drainer_spins_is_counted_once() {
    guarded("withdrawals during a spin", || {
        let rt = rt();
        let lane = Offloader::builder("spin-withdraw")
            .max_concurrency(2)
            .max_queue(8)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for _ in 0..500 {
                lane.run(|| ()).await.unwrap();
                let ran2 = ran.clone();
                let mut call = Box::pin(lane.run(move || {
                    ran2.fetch_add(1, Ordering::SeqCst);
                }));
                let _ = support::poll_once(call.as_mut());
                drop(call);
                // The next call goes through (the lane is not wedged by the withdrawal).
                lane.run(|| ()).await.unwrap();
                // (The dropped call, if a drainer claimed it first, may still run.)
            }
        });
        // Wait for a closure that was claimed as its caller dropped it.
        let mut stats = lane.stats();
        while stats.running + stats.queued > 0 {
            std::thread::yield_now();
            stats = lane.stats();
        }
        assert_settled(&stats, 0);
        assert_eq!(stats.submitted, 1500);
        assert_eq!(
            stats.withdrawn + ran.load(Ordering::SeqCst) as u64,
            500,
            "{stats:?}"
        );
    });
}

/// Promise (virtual time): a lane call submitted in paused time, right after another
/// answered (its drainer spinning), holds the clock from its admission: with a one-hour
/// timer pending beside it, no call sees the clock move. The harness neither hangs nor
/// auto-advances past a call about to run.
#[test]
fn in_virtual_time_a_call_behind_a_spinner_holds_the_clock() {
    guarded("virtual-time rounds", || {
        testing::run(async {
            let lane = Offloader::builder("spin-virtual")
                .max_concurrency(2)
                .build()
                .unwrap();
            let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let start = clock::now();
            for i in 0..300u32 {
                assert_eq!(lane.run(move || i).await.unwrap(), i);
                let calls = (0..3).map(|j| lane.run(move || clock::now() + Duration::from_secs(j)));
                for (j, at) in futures::future::join_all(calls)
                    .await
                    .into_iter()
                    .enumerate()
                {
                    assert_eq!(at.unwrap(), start + Duration::from_secs(j as u64));
                }
                assert_eq!(
                    clock::now(),
                    start,
                    "round {i}: the clock moved past a call"
                );
            }
            sleeper.abort();
            assert_settled(&lane.stats(), 0);
        });
    });
}

/// Promise (virtual time): a lane's timeout fires in virtual time for a call that
/// sleeps on the clock, the queued call behind it (max_concurrency 1) times out in its
/// queue and is withdrawn, and the counts are exact; no hang.
#[test]
fn in_virtual_time_timeouts_of_a_lane_are_exact() {
    guarded("virtual-time timeouts", || {
        testing::run(async {
            let lane = Offloader::builder("spin-virtual-timeout")
                .max_concurrency(1)
                .max_queue(4)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            for _ in 0..20 {
                lane.run(|| ()).await.unwrap();
                let start = clock::now();
                let slow = lane.run(|| clock::sleep(Duration::from_secs(60)));
                let behind = lane.run(|| ());
                let (slow, behind) = futures::future::join(slow, behind).await;
                assert!(slow.unwrap_err().is_timeout());
                assert!(behind.unwrap_err().is_timeout());
                assert_eq!(clock::now() - start, Duration::from_secs(10));
                // The slow closure is still sleeping; let it finish.
                while lane.stats().running > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let stats = lane.stats();
            assert_settled(&stats, 0);
            assert_eq!((stats.timed_out, stats.withdrawn), (40, 20), "{stats:?}");
        });
    });
}

/// Promise: a closure of a lane calling into the same lane is refused with
/// `is_would_deadlock` when no slot is free, and served when one is; a spin between
/// calls changes neither; counts exact.
#[test]
fn a_lane_calling_itself_is_refused_only_without_a_free_slot() {
    guarded("re-entrant lane calls", || {
        let rt = rt();
        let lane = Arc::new(
            Offloader::builder("spin-reentrant")
                .max_concurrency(1)
                .max_queue(4)
                .build()
                .unwrap(),
        );
        rt.block_on(async {
            for _ in 0..100 {
                lane.run(|| ()).await.unwrap();
                let inner = lane.clone();
                let err = lane
                    .run(move || async_bridge::block_on(inner.run(|| ())).unwrap())
                    .await
                    .unwrap();
                assert!(err.unwrap_err().is_would_deadlock());
            }
        });
        let stats = lane.stats();
        assert_settled(&stats, 0);
        assert_eq!((stats.completed, stats.rejected), (200, 100), "{stats:?}");
    });
}

/// Promise: a `ComputePool` (rayon drainers, which must not spin or linger) runs
/// rounds of calls right after answers with exact counts and never more jobs at once
/// than its threads.
#[test]
fn a_compute_pool_runs_rounds_exactly() {
    guarded("compute rounds", || {
        let rt = rt();
        let pool = ComputePool::builder("spin-compute")
            .threads(2)
            .max_queue(8)
            .build()
            .unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for _ in 0..300 {
                pool.run(|| ()).await.unwrap();
                let calls = (0..4).map(|_| {
                    let (now, peak) = (now.clone(), peak.clone());
                    pool.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                });
                assert!(futures::future::join_all(calls)
                    .await
                    .iter()
                    .all(Result::is_ok));
                assert_settled(&pool.stats(), 0);
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(pool.stats().completed, 1500);
    });
}

/// Promise (tower): with the lane full (one call running, its queue of one held by a
/// reservation), `poll_ready` of another service is pending; dropping the reserved
/// service gives its place back and wakes the waiting service, which is then ready;
/// the call it makes runs; counts exact (a reservation is no submission).
#[test]
fn a_dropped_reserved_service_wakes_a_waiting_one() {
    guarded("tower reservations", || {
        let rt = rt();
        rt.block_on(async {
            for _ in 0..50 {
                let lane = Offloader::builder("spin-tower")
                    .max_concurrency(1)
                    .max_queue(1)
                    .build()
                    .unwrap();
                lane.run(|| ()).await.unwrap(); // its drainer spins
                let gate = Gate::new();
                let (started_tx, started) = tokio::sync::oneshot::channel();
                let running = {
                    let gate = gate.clone();
                    tokio::spawn(lane.run(move || {
                        started_tx.send(()).unwrap();
                        gate.wait();
                    }))
                };
                started.await.unwrap();
                let mut first = lane.service(|x: u32| x + 1);
                let mut second = first.clone();
                futures::future::poll_fn(|cx| first.poll_ready(cx))
                    .await
                    .unwrap();
                let (waker, woken) = support_waker();
                assert!(second
                    .poll_ready(&mut Context::from_waker(&waker))
                    .is_pending());
                drop(first); // gives its place back, wakes `second`
                woken
                    .recv_timeout(Duration::from_secs(20))
                    .expect("not woken");
                let ready = futures::future::poll_fn(|cx| second.poll_ready(cx)).await;
                assert!(ready.is_ok());
                let call = second.call(41);
                gate.open();
                assert_eq!(call.await.unwrap(), 42);
                running.await.unwrap().unwrap();
                let stats = lane.stats();
                assert_settled(&stats, 0);
                assert_eq!(stats.submitted, 3, "{stats:?}");
            }
        });
    });
}

/// A waker that reports its wake-ups on a channel.
fn support_waker() -> (std::task::Waker, std::sync::mpsc::Receiver<()>) {
    struct Tx(std::sync::Mutex<std::sync::mpsc::Sender<()>>);
    impl std::task::Wake for Tx {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    (
        std::task::Waker::from(Arc::new(Tx(std::sync::Mutex::new(tx)))),
        rx,
    )
}

/// Promise (virtual time, seam rule 2): a lane call admitted while its lane's only
/// drainer is on its way back to the queue (its previous call answered, its next look
/// not yet taken: neither running nor idle) is claimed without time passing, so it
/// holds the clock from its admission. It did not (src/lane/mod.rs, `admit`: the
/// branch that queues behind busy drainers never marked the entry `runs_soon`): the
/// caller, woken by the previous answer, parked on a queued call that held nothing, and
/// the clock jumped to the pending one-hour timer before the drainer claimed the call
/// (fails within a few hundred rounds without the fix, with or without the spin).
#[test]
fn in_virtual_time_a_call_made_as_its_drainer_returns_holds_the_clock() {
    guarded("calls behind a returning drainer", || {
        testing::run(async {
            let lane = Offloader::builder("returning")
                .max_concurrency(1)
                .build()
                .unwrap();
            let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let start = clock::now();
            for i in 0..2000u32 {
                let at = lane.run(clock::now).await.unwrap();
                assert_eq!(at, start, "round {i}: the clock moved before a call ran");
            }
            sleeper.abort();
            assert_settled(&lane.stats(), 0);
        });
    });
}

/// Promise (virtual time, tower): a call through `lane.service(f)` (its place reserved
/// by `poll_ready`, admitted past `max_queue` with it) made as the lane's drainer spins
/// or returns to the queue holds the clock from admission, as `run`'s does; reservations
/// are given back exactly (every call submitted, none rejected).
#[test]
fn in_virtual_time_service_calls_hold_the_clock() {
    use tower::ServiceExt;
    guarded("virtual-time service rounds", || {
        testing::run(async {
            let lane = Offloader::builder("spin-virtual-tower")
                .max_concurrency(1)
                .max_queue(0)
                .build()
                .unwrap();
            let mut svc = lane.service(|_: ()| clock::now());
            let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let start = clock::now();
            for i in 0..1000u32 {
                let at = svc.ready().await.unwrap().call(()).await.unwrap();
                assert_eq!(at, start, "round {i}: the clock moved before a call ran");
            }
            sleeper.abort();
            let stats = lane.stats();
            assert_settled(&stats, 0);
            assert_eq!((stats.submitted, stats.rejected), (1000, 0), "{stats:?}");
        });
    });
}

/// Promise (virtual time): the same for every other offload kind a test may loop on —
/// a `ComputePool` (rayon drainers, which return to the queue too), the free `compute`
/// and `unblock`, a `Worker` and a lease's calls: each call made right after the
/// previous answer holds the clock; a one-hour timer beside them never fires.
#[test]
fn in_virtual_time_every_kind_holds_the_clock_between_calls() {
    guarded("virtual-time rounds of every kind", || {
        testing::run(async {
            let pool = ComputePool::builder("spin-virtual-compute")
                .threads(1)
                .build()
                .unwrap();
            let worker = async_bridge::Worker::builder("spin-virtual-worker")
                .spawn(|| Ok::<_, std::io::Error>(()))
                .unwrap();
            let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let start = clock::now();
            for i in 0..300u32 {
                assert_eq!(
                    pool.run(clock::now).await.unwrap(),
                    start,
                    "compute pool, {i}"
                );
                assert_eq!(
                    async_bridge::compute(clock::now).await,
                    start,
                    "compute, {i}"
                );
                assert_eq!(
                    async_bridge::unblock(clock::now).await,
                    start,
                    "unblock, {i}"
                );
                assert_eq!(
                    worker.call(|_| clock::now()).await.unwrap(),
                    start,
                    "worker, {i}"
                );
            }
            let mut lease = worker.lease().await.unwrap();
            for i in 0..300u32 {
                assert_eq!(
                    lease.call(|_| clock::now()).await.unwrap(),
                    start,
                    "lease, {i}"
                );
            }
            lease.finish().await.unwrap();
            assert_eq!(clock::now(), start);
            sleeper.abort();
            assert_settled(&pool.stats(), 0);
        });
    });
}
