//! Adversarial review of the worker's single-writer counters (src/stats.rs
//! `bump_by_owner`, `ran_by_owner`, `Histogram::record_by_owner`; src/worker/mailbox.rs
//! `count`), leases' accounting (src/worker/lease.rs) and the per-mailbox interrupt ids
//! (`interrupt_id(seq)`, `Call::drop` interrupting a running call).
//!
//! A second writer of a worker's `completed`/`panicked` would lose counts (a load and a
//! store, no locked read-modify-write): the tests drive every path that ends a worker's
//! call from many threads at once and check the counts exactly, after each answer.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_bridge::{AfterPanic, Worker, WorkerPool};
use support::{assert_settled, guarded, rt, Gate};

/// Silences the panics the tests provoke on purpose (their messages only).
fn quiet_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = support::panic_text(info.payload());
        if !text.starts_with("review-boom") {
            previous(info);
        }
    }));
}

/// Promise: a pool's members do not share counters, and every call of every member is
/// counted by that member's thread alone: four plain threads calling a pool of three
/// at once, one call in seven panicking, land exactly in `completed` and `panicked`.
#[test]
fn a_pools_counts_are_exact_under_concurrent_callers() {
    quiet_panics();
    guarded("pool callers", || {
        let pool = WorkerPool::builder("owner-pool")
            .workers(3)
            .spawn(|| Ok::<_, std::io::Error>(0u64))
            .unwrap();
        let callers: Vec<_> = (0..4)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut panicked = 0u64;
                    for i in 0..500u64 {
                        let r = pool.call_blocking(move |n| {
                            if (t * 500 + i) % 7 == 0 {
                                panic!("review-boom");
                            }
                            *n += 1;
                        });
                        match r {
                            Ok(()) => {}
                            Err(e) if e.is_panic() => panicked += 1,
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                    panicked
                })
            })
            .collect();
        let panicked: u64 = callers.into_iter().map(|c| c.join().unwrap()).sum();
        let stats = pool.stats();
        assert_settled(&stats);
        assert_eq!(stats.submitted, 2000);
        assert_eq!(
            (stats.completed, stats.panicked),
            (2000 - panicked, panicked),
            "{stats:?}"
        );
        let ran: u64 = futures::executor::block_on(async {
            let mut sum = 0;
            for _ in 0..3 {
                // Least-loaded routing: not every member is reached for sure; read all.
                sum += pool.call(|n| *n).await.unwrap();
            }
            sum
        });
        assert!(ran <= 2000 - panicked);
    });
}

/// Promise: counts are exact when a caller looks right after its answer, through
/// panics and `AfterPanic::Rebuild` (the object rebuilt on the worker's thread between
/// calls), from an async caller and a plain thread's `call_blocking` taking turns.
#[test]
fn counts_are_exact_after_each_answer_through_rebuilds() {
    quiet_panics();
    guarded("rebuild rounds", || {
        let builds = Arc::new(AtomicUsize::new(0));
        let made = builds.clone();
        let worker = Worker::builder("owner-rebuild")
            .after_panic(AfterPanic::Rebuild)
            .spawn(move || {
                made.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(0u32)
            })
            .unwrap();
        let rt = rt();
        let mut answered = 0u64;
        for i in 0..400u32 {
            let r = if i % 2 == 0 {
                rt.block_on(worker.call(move |n| {
                    if i % 5 == 0 {
                        panic!("review-boom");
                    }
                    *n += 1;
                    *n
                }))
            } else {
                worker.call_blocking(move |n| {
                    if i % 5 == 0 {
                        panic!("review-boom");
                    }
                    *n += 1;
                    *n
                })
            };
            answered += 1;
            let stats = worker.stats();
            assert_eq!(
                stats.completed + stats.panicked,
                answered,
                "call {i}: {stats:?}"
            );
            assert_eq!(r.is_err(), i % 5 == 0);
        }
        let stats = worker.stats();
        assert_settled(&stats);
        assert_eq!((stats.completed, stats.panicked), (320, 80));
        assert_eq!(builds.load(Ordering::SeqCst), 81);
    });
}

/// Promise: a worker's closure calling into its own worker (`call_blocking` and
/// `call`) is refused (`is_would_deadlock`) without being submitted: its counts are
/// those of the outer call alone.
#[test]
fn a_worker_calling_itself_is_refused_and_not_counted() {
    guarded("self calls", || {
        let worker = Worker::builder("owner-self")
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        let inner = worker.clone();
        let (blocking, awaited) = worker
            .call_blocking(move |_| {
                let blocking = inner.call_blocking(|_| ()).unwrap_err().is_would_deadlock();
                let awaited = futures::executor::block_on(inner.call(|_| ()))
                    .unwrap_err()
                    .is_would_deadlock();
                (blocking, awaited)
            })
            .unwrap();
        assert!(blocking && awaited);
        let stats = worker.stats();
        assert_settled(&stats);
        assert_eq!((stats.submitted, stats.completed), (1, 1), "{stats:?}");
    });
}

/// Promise (leases): leased calls are counted by the worker's thread with its other
/// calls, each in one outcome: one dropped while running finishes (`completed`), one
/// sent behind it and dropped before it started is `withdrawn`, a panicking one ends the
/// lease (`panicked`, the holder too) and the next call on the lease is `rejected`;
/// other callers' calls from another thread meanwhile are exact too.
#[test]
fn a_leases_calls_land_in_one_outcome_each() {
    quiet_panics();
    guarded("lease outcomes", || {
        let worker = Worker::builder("owner-lease")
            .after_panic(AfterPanic::Rebuild)
            .spawn(|| Ok::<_, std::io::Error>(0u32))
            .unwrap();
        let rt = rt();
        rt.block_on(async {
            let outside = {
                let worker = worker.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        worker.call(|n| *n += 1).await.unwrap();
                    }
                })
            };
            let mut lease = worker.lease().await.unwrap();
            let gate = Gate::new();
            let (started_tx, started) = mpsc::channel();
            {
                let gate = gate.clone();
                let mut running = Box::pin(lease.call(move |_| {
                    started_tx.send(()).unwrap();
                    gate.wait();
                }));
                assert!(support::poll_once(running.as_mut()).is_pending());
                started.recv_timeout(Duration::from_secs(20)).unwrap();
                drop(running); // it finishes: a leased call is not interrupted
            }
            {
                let mut behind = Box::pin(lease.call(|_| unreachable!("a withdrawn call ran")));
                assert!(support::poll_once(behind.as_mut()).is_pending());
                drop(behind); // withdrawn before it started
            }
            gate.open();
            lease.call(|n| *n).await.unwrap();
            assert!(lease
                .call(|_| panic!("review-boom"))
                .await
                .unwrap_err()
                .is_panic());
            assert!(lease.call(|_| ()).await.unwrap_err().is_lease_ended());
            drop(lease);
            outside.await.unwrap();
            // After the rebuild, the worker serves again.
            worker.call(|n| *n).await.unwrap();
        });
        let stats = worker.stats();
        assert_settled(&stats);
        // 50 outside + 1 after; the lease: holder (panicked), running (completed), behind
        // (withdrawn), a read (completed), a panic (panicked), one rejected.
        assert_eq!(stats.submitted, 50 + 1 + 6, "{stats:?}");
        assert_eq!(
            (
                stats.completed,
                stats.panicked,
                stats.withdrawn,
                stats.rejected
            ),
            (53, 2, 1, 1),
            "{stats:?}"
        );
    });
}

/// What the tests' interruptible object reports.
struct Interruptible {
    fired: Arc<AtomicUsize>,
    tx: Arc<Mutex<mpsc::Sender<()>>>,
}

/// The interrupts fired, as a count and as messages.
type Fired = (Arc<AtomicUsize>, Arc<Mutex<mpsc::Receiver<()>>>);

/// A worker whose interrupter counts and reports each interrupt, with a timeout if given.
fn interruptible_worker(name: &str, timeout: Option<Duration>) -> (Worker<Interruptible>, Fired) {
    let fired = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let (f, t) = (fired.clone(), tx.clone());
    let mut builder = Worker::builder(name);
    if let Some(after) = timeout {
        builder = builder.timeout(after);
    }
    let worker = builder
        .interrupter(|obj: &Interruptible| {
            let (fired, tx) = (obj.fired.clone(), obj.tx.clone());
            move || {
                fired.fetch_add(1, Ordering::SeqCst);
                let _ = tx.lock().unwrap().send(());
            }
        })
        .spawn(move || {
            Ok::<_, std::io::Error>(Interruptible {
                fired: f.clone(),
                tx: t.clone(),
            })
        })
        .unwrap();
    (worker, (fired, Arc::new(Mutex::new(rx))))
}

/// Promise (interrupt ids are per mailbox, `seq + 1`): a call whose closure has
/// returned but whose caller drops its future only now (unsettled: `Call::drop` gives
/// it up and interrupts its id) does not interrupt the next call, running now under the
/// next number; dropping that next call's future does interrupt it.
#[test]
fn a_late_drop_of_a_finished_call_does_not_interrupt_the_next_one() {
    guarded("late drops", || {
        let (worker, (fired, interrupts)) = interruptible_worker("owner-interrupt", None);
        let rt = rt();
        rt.block_on(async {
            for round in 0..50 {
                let (done_tx, done) = mpsc::channel();
                let mut first = Box::pin(worker.call(move |_| done_tx.send(()).unwrap()));
                // (Ready if the worker answered within the poll: then the drop below is
                // a settled call's, and the round checks less.)
                let _ = support::poll_once(first.as_mut());
                done.recv_timeout(Duration::from_secs(20)).unwrap();
                let (started_tx, started) = mpsc::channel();
                let interrupts2 = interrupts.clone();
                let mut second = Box::pin(worker.call(move |_| {
                    started_tx.send(()).unwrap();
                    // Runs until interrupted.
                    interrupts2
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(20))
                        .expect("the second call was never interrupted");
                }));
                assert!(support::poll_once(second.as_mut()).is_pending());
                started.recv_timeout(Duration::from_secs(20)).unwrap();
                let before = fired.load(Ordering::SeqCst);
                drop(first); // its call has returned: nothing to interrupt
                assert_eq!(
                    fired.load(Ordering::SeqCst),
                    before,
                    "round {round}: the next call was interrupted"
                );
                drop(second); // running: interrupted
                assert!(fired.load(Ordering::SeqCst) > before);
                // The worker is free again once the second call returns.
                worker.call(|_| ()).await.unwrap();
                // Refires of the second call's id stop once it returned; drain them.
                while interrupts.lock().unwrap().try_recv().is_ok() {}
            }
        });
        let stats = worker.stats();
        assert_settled(&stats);
        assert_eq!(stats.completed, 150, "{stats:?}");
    });
}

/// Promise: a worker call that times out while running is interrupted under its own
/// id; the next call (the next number) is not, though the re-fire thread keeps firing
/// for the timed-out one until it returns. (The next call waits a while for a wrong
/// interrupt: an absence check, which can only miss a bug, never fail spuriously.)
#[test]
fn a_timed_out_call_is_interrupted_and_the_next_is_not() {
    guarded("timeouts and interrupts", || {
        let timeout = Some(Duration::from_secs(1));
        let (worker, (fired, rx)) = interruptible_worker("owner-timeout", timeout);
        let rt = rt();
        rt.block_on(async {
            for _ in 0..5 {
                let rx1 = rx.clone();
                let slow = worker.call(move |_| {
                    rx1.lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(20))
                        .expect("not interrupted");
                });
                assert!(slow.await.unwrap_err().is_timeout());
                let rx2 = rx.clone();
                let next = worker.call(move |_| {
                    // Whatever the timed-out call's interrupts left behind is drained
                    // first; then nothing may come for this call.
                    let rx = rx2.lock().unwrap();
                    while rx.try_recv().is_ok() {}
                    rx.recv_timeout(Duration::from_millis(30)).is_err()
                });
                assert!(next.await.unwrap(), "the next call was interrupted");
            }
        });
        let stats = worker.stats();
        assert_settled(&stats);
        assert_eq!((stats.completed, stats.timed_out), (10, 5), "{stats:?}");
        assert!(fired.load(Ordering::SeqCst) >= 5);
    });
}

/// Promise (shutdown is bounded and its report exact): a worker shut down with a call
/// running (gated) and three queued, with no grace, abandons exactly the three (their
/// callers get `is_shutdown`), reports the running call still running and none
/// finished; once the gate opens, that call completes and is counted by the worker's
/// thread: every submitted call lands in one outcome (the three abandoned).
#[test]
fn a_shutdown_without_grace_reports_and_counts_exactly() {
    guarded("worker shutdown", || {
        let worker = Worker::builder("owner-shutdown")
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        let rt = rt();
        rt.block_on(async {
            let gate = Gate::new();
            let (started_tx, started) = tokio::sync::oneshot::channel();
            let running = {
                let gate = gate.clone();
                tokio::spawn(worker.call(move |_| {
                    started_tx.send(()).unwrap();
                    gate.wait();
                    5
                }))
            };
            started.await.unwrap();
            let queued: Vec<_> = (0..3)
                .map(|i| tokio::spawn(worker.call(move |_| i)))
                .collect();
            while worker.stats().queued < 3 {
                tokio::task::yield_now().await;
            }
            let report = worker.shutdown(Duration::ZERO).await;
            assert!(!report.is_complete(), "{report:?}");
            assert_eq!(
                (report.finished(), report.abandoned()),
                (0, 3),
                "{report:?}"
            );
            assert_eq!(report.still_running().len(), 1, "{report:?}");
            for q in queued {
                assert!(q.await.unwrap().unwrap_err().is_shutdown());
            }
            gate.open();
            assert_eq!(running.await.unwrap().unwrap(), 5);
        });
        let stats = worker.stats();
        assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
        assert_eq!(stats.submitted, 4, "{stats:?}");
        assert_eq!(
            (stats.completed, stats.withdrawn, stats.rejected),
            (1, 0, 0),
            "{stats:?}"
        );
    });
}
