//! Adversarial review of leases (worker/lease.rs). Each test states the promise it checks.
//! Every wait is bounded by a hang guard; a hang is a failure, not a hung run.

mod support;

use std::future::Future;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use support::guarded;

use async_bridge::Worker;

const GUARD: Duration = Duration::from_secs(30);

struct Signal(mpsc::Sender<()>);
impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(());
    }
}

/// Promise (lease.rs module doc, Worker::lease docs): a lease future dropped before it
/// resolves leaves no trace; the worker serves its next caller. Here the future is
/// dropped after its holder started on the worker thread (the `started` signal was sent)
/// but before the future was polled again to see it.
#[test]
fn lease_future_dropped_right_as_it_starts_frees_the_worker() {
    guarded("lease dropped as it starts", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let w = Worker::builder("drop-as-start")
            .spawn(|| Ok::<_, std::io::Error>(0u32))
            .unwrap();
        // Block the worker so the lease queues.
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let (in_tx, in_rx) = mpsc::channel::<()>();
        let blocker = w.call(move |_| {
            in_tx.send(()).unwrap();
            block_rx.recv_timeout(GUARD).unwrap();
        });
        let blocker = rt.spawn(blocker);
        in_rx.recv_timeout(GUARD).unwrap();

        let (woke_tx, woke_rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(Signal(woke_tx)));
        let mut cx = Context::from_waker(&waker);
        {
            let _enter = rt.enter();
            let mut fut = Box::pin(w.lease());
            assert!(fut.as_mut().poll(&mut cx).is_pending()); // queued behind the blocker
            block_tx.send(()).unwrap(); // the holder starts and sends `started`
            woke_rx
                .recv_timeout(GUARD)
                .expect("the lease future is woken once it starts");
            drop(fut); // ... and is dropped before it is polled again
        }
        rt.block_on(blocker).unwrap().unwrap();
        let answer = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), w.call(|n| *n + 1)).await
        });
        assert_eq!(
            answer
                .expect("worker hung: a dropped lease future keeps the worker forever")
                .unwrap(),
            1
        );
    });
}

/// Promise (Lease docs): "if it ends any other way — ... the worker shut down — the
/// worker's release hook runs ... and later calls on the lease fail with is_lease_ended".
#[test]
fn shutdown_ends_a_held_lease_and_runs_the_hook() {
    guarded("shutdown with a lease held", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let hooks = Arc::new(AtomicUsize::new(0));
            let h = Arc::clone(&hooks);
            let w = Worker::builder("shut-held")
                .on_lease_abandoned(move |_: &mut u32| {
                    h.fetch_add(1, Ordering::SeqCst);
                })
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            lease.call(|n| *n += 1).await.unwrap();
            let report = w.shutdown(Duration::from_millis(200)).await;
            eprintln!("report with a lease held: {report}");
            let after = lease.call(|n| *n += 1).await;
            let hooks_after_shutdown = hooks.load(Ordering::SeqCst);
            drop(lease);
            match after {
                Ok(()) => panic!(
                    "a leased call ran after shutdown returned (report: {report}); hook ran {hooks_after_shutdown} times"
                ),
                Err(e) => assert!(e.is_lease_ended() || e.is_shutdown(), "{e}"),
            }
            assert_eq!(hooks_after_shutdown, 1, "the hook did not run at shutdown");
        })
    });
}

/// Promise (Worker::lease docs): a lease from the worker's own thread is refused with
/// is_would_deadlock, not a hang.
#[test]
fn nested_lease_inside_a_leased_call_is_refused() {
    guarded("nested lease", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("nested")
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let inner = w.clone();
            let mut lease = w.lease().await.unwrap();
            let err = lease
                .call(move |_| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(inner.lease())
                        .map(|_| ())
                })
                .await
                .unwrap()
                .unwrap_err();
            assert!(err.is_would_deadlock(), "{err}");
            lease.finish().await.unwrap();
        })
    });
}

/// Promise (Lease::call docs; futures are lazy, as `Worker::call` is — it is admitted on
/// its first poll): a leased call whose future is never polled does not run. Here the
/// closure reports that it ran while its future sat unpolled: `Lease::call` sends the
/// job when it is *called*, not when it is polled.
#[test]
fn leased_call_future_never_polled_does_not_run() {
    guarded("unpolled leased call", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("dropped-call")
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            let (ran_tx, ran_rx) = mpsc::channel::<()>();
            let fut = lease.call(move |n| {
                *n += 1;
                let _ = ran_tx.send(());
            });
            let ran = ran_rx.recv_timeout(Duration::from_secs(5)).is_ok();
            drop(fut);
            lease.finish().await.unwrap();
            assert!(
                !ran,
                "a leased call ran although its future was never polled"
            );
        })
    });
}

/// Promise (lease_limit + virtual time, lease.rs invariant 3): under testing::run a lease
/// held past its lease_limit ends in virtual time, so a caller waiting behind it is
/// served once the virtual clock passes the limit.
#[cfg(feature = "test-util")]
#[test]
fn lease_limit_expires_in_virtual_time_for_a_caller_behind_it() {
    guarded("lease_limit in virtual time", || {
        async_bridge::testing::run(async {
            let hooks = Arc::new(AtomicUsize::new(0));
            let h = Arc::clone(&hooks);
            let w = Worker::builder("vt-limit")
                .lease_limit(Duration::from_secs(60))
                .on_lease_abandoned(move |_: &mut u32| {
                    h.fetch_add(1, Ordering::SeqCst);
                })
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            lease.call(|n| *n += 1).await.unwrap();
            // Held, never finished: the caller behind it waits for the limit.
            let n = w.call(|n| *n).await.unwrap();
            assert_eq!(n, 1);
            assert_eq!(hooks.load(Ordering::SeqCst), 1);
            assert!(lease.call(|_| ()).await.unwrap_err().is_lease_ended());
        })
    });
}

/// A pool lease when every member is busy waits (FIFO) and is served once one frees.
#[test]
fn pool_lease_with_all_members_busy_waits_then_runs() {
    guarded("pool lease all busy", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = async_bridge::WorkerPool::builder("pool-busy")
                .workers(2)
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
            let (in_tx, in_rx) = mpsc::channel::<()>();
            let mut busy = Vec::new();
            for _ in 0..2 {
                let g = Arc::clone(&go_rx);
                let i = in_tx.clone();
                busy.push(tokio::spawn(pool.call(move |_| {
                    i.send(()).unwrap();
                    g.lock().unwrap().recv_timeout(GUARD).unwrap();
                })));
            }
            for _ in 0..2 {
                in_rx.recv_timeout(GUARD).unwrap();
            }
            let lease = tokio::spawn(pool.lease());
            tokio::task::yield_now().await;
            go_tx.send(()).unwrap();
            go_tx.send(()).unwrap();
            let mut lease = tokio::time::timeout(Duration::from_secs(20), lease)
                .await
                .expect("pool lease hung")
                .unwrap()
                .unwrap();
            lease.call(|n| *n += 1).await.unwrap();
            lease.finish().await.unwrap();
            for b in busy {
                b.await.unwrap().unwrap();
            }
        })
    });
}

/// Diagnosis for the test above: with a 3 s limit the caller is served, but only after
/// about 3 s of *real* time (printed): the idle lease waits on a real-time condvar.
#[cfg(feature = "test-util")]
#[test]
fn diagnosis_lease_limit_idle_wait_is_real_time() {
    let real = std::time::Instant::now();
    guarded("lease_limit 3s in virtual time", || {
        async_bridge::testing::run(async {
            let w = Worker::builder("vt-limit-3")
                .lease_limit(Duration::from_secs(3))
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let lease = w.lease().await.unwrap();
            assert_eq!(w.call(|n| *n).await.unwrap(), 0);
            drop(lease);
        })
    });
    eprintln!(
        "real time taken for a 3 s virtual lease_limit: {:?}",
        real.elapsed()
    );
}

/// Dropping a Lease while a leased call runs: the call finishes, then the hook runs,
/// then the next caller gets the object (in that order).
#[test]
fn lease_dropped_while_a_leased_call_runs_hooks_after_it() {
    guarded("drop lease mid-call", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("drop-mid")
                .on_lease_abandoned(|v: &mut Vec<&'static str>| v.push("hook"))
                .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            let (in_tx, in_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            {
                // Polled once (so sent: a leased call is sent on its first poll), then
                // dropped while it runs.
                let fut = lease.call(move |v| {
                    in_tx.send(()).unwrap();
                    go_rx.recv_timeout(GUARD).unwrap();
                    v.push("call");
                });
                let mut fut = Box::pin(fut);
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                in_rx.recv_timeout(GUARD).unwrap();
                drop(fut); // while the call runs
            }
            drop(lease);
            go_tx.send(()).unwrap();
            let seen = tokio::time::timeout(GUARD, w.call(|v| v.clone()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(seen, vec!["call", "hook"]);
        })
    });
}

/// finish() racing a panic (the only race the API allows: a panicking call sent and its
/// future dropped, then finish): finish's answer and the hook agree; the worker serves on.
#[test]
fn finish_after_a_panicking_leased_call_reports_ended_and_hook_runs_once() {
    guarded("finish vs panic", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let hooks = Arc::new(AtomicUsize::new(0));
            let h = Arc::clone(&hooks);
            let w = Worker::builder("finish-panic")
                .on_lease_abandoned(move |_: &mut u32| {
                    h.fetch_add(1, Ordering::SeqCst);
                })
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            // The dropped call either never runs (finish is Ok, no hook) or ran and
            // panicked (finish is is_lease_ended, the hook ran): the two must agree.
            let mut ended = 0;
            for _ in 0..200 {
                let mut lease = w.lease().await.unwrap();
                drop(lease.call(|_| panic!("boom"))); // sent, not awaited
                match lease.finish().await {
                    Ok(()) => {}
                    Err(err) => {
                        assert!(err.is_lease_ended(), "{err}");
                        ended += 1;
                    }
                }
            }
            assert_eq!(hooks.load(Ordering::SeqCst), ended);
            assert_eq!(w.call(|n| *n).await.unwrap(), 0);
        })
    });
}

/// A lease future dropped while queued leaves no trace.
#[test]
fn lease_future_dropped_while_queued_leaves_no_trace() {
    guarded("lease dropped while queued", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("drop-queued")
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let (in_tx, in_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let blocker = tokio::spawn(w.call(move |_| {
                in_tx.send(()).unwrap();
                go_rx.recv_timeout(GUARD).unwrap();
            }));
            in_rx.recv_timeout(GUARD).unwrap();
            let queued = tokio::spawn(w.lease());
            tokio::task::yield_now().await;
            queued.abort();
            let _ = queued.await;
            go_tx.send(()).unwrap();
            blocker.await.unwrap().unwrap();
            let n = tokio::time::timeout(Duration::from_secs(10), w.call(|n| *n)).await;
            assert_eq!(
                n.expect("worker hung after a queued lease was dropped")
                    .unwrap(),
                0
            );
        })
    });
}

/// Promise (Lease::finish docs): "Ends the lease cleanly". A worker with a call timeout:
/// the lease's holder is a call armed with that timeout on its first poll, so a lease
/// held (across awaits) longer than the worker's timeout ends in a timeout at finish.
#[cfg(feature = "test-util")]
#[test]
fn finish_after_a_lease_held_longer_than_the_worker_timeout_is_clean() {
    guarded("finish vs worker timeout", || {
        async_bridge::testing::run(async {
            let w = Worker::builder("timeout-lease")
                .timeout(Duration::from_secs(1))
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            lease.call(|n| *n += 1).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await; // awaits between calls
            lease.call(|n| *n += 1).await.unwrap();
            let finished = lease.finish().await;
            let stats = w.stats();
            assert!(
                finished.is_ok(),
                "finish failed: {} (stats {stats:?})",
                finished.unwrap_err()
            );
            assert_eq!(w.call(|n| *n).await.unwrap(), 2);
        })
    });
}

/// Promise (AfterPanic::Rebuild docs): "Drop the object ... and build a new one with the
/// maker before the next call" after a call panics. A leased call is a call of the
/// worker: a panic under a lease should rebuild too (a raw BEGIN half done is exactly
/// the case Rebuild is for).
#[test]
fn a_panic_under_a_lease_rebuilds_the_object_with_after_panic_rebuild() {
    guarded("rebuild after leased panic", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("rebuild-lease")
                .after_panic(async_bridge::AfterPanic::Rebuild)
                .spawn(|| Ok::<_, std::io::Error>(0u32))
                .unwrap();
            let mut lease = w.lease().await.unwrap();
            lease.call(|n| *n = 41).await.unwrap();
            let err = lease
                .call(|n| {
                    *n = 99;
                    panic!("half-way")
                })
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err}");
            drop(lease);
            let n = tokio::time::timeout(GUARD, w.call(|n| *n))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                n, 0,
                "after a panic under a lease the object was kept, not rebuilt"
            );
        })
    });
}

/// A call on a lease that has ended is turned away at once, and counted so: every
/// submitted call lands in exactly one outcome (before, it was submitted and nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_by_an_ended_lease_counts_as_rejected() {
    let worker = Worker::builder("refused")
        .spawn(|| Ok::<_, std::io::Error>(0_u32))
        .unwrap();
    let mut lease = worker.lease().await.unwrap();
    let err = lease
        .call(|_| -> () { panic!("ends the lease") })
        .await
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
    let err = lease.call(|n| *n).await.unwrap_err();
    assert!(err.is_lease_ended(), "{err}");
    drop(lease);
    // The worker serves on; then every call is accounted for.
    assert_eq!(worker.call(|n| *n + 1).await.unwrap(), 1);
    let stats = worker.stats();
    assert_eq!(stats.rejected, 1, "{stats:?}");
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.rejected + stats.withdrawn,
        "{stats:?}"
    );
}

/// Runs a first leased call that signals it started, waits for `go`, then runs `then`;
/// its future is dropped once it runs (a call dropped while it runs lets it finish; one
/// dropped before would be withdrawn).
fn start_a_held_call(
    lease: &mut async_bridge::Lease<u32>,
    then: impl FnOnce() + Send + 'static,
) -> mpsc::Sender<()> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (in_tx, in_rx) = mpsc::channel::<()>();
    let mut first = Box::pin(lease.call(move |_| {
        in_tx.send(()).unwrap();
        go_rx.recv_timeout(GUARD).unwrap();
        then();
    }));
    assert!(support::poll_once(first.as_mut()).is_pending());
    in_rx.recv_timeout(GUARD).unwrap();
    drop(first);
    go_tx
}

/// A call still queued on a lease when a call before it panics is turned away, and
/// counted so (before, the lease dropped it uncounted: submitted and nothing, which CI
/// caught as a race in the test above when the refused call was queued in time).
#[test]
fn a_call_still_queued_when_the_lease_ends_counts_as_rejected() {
    guarded("queued call on an ending lease", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let worker = Worker::builder("queued-refused")
            .spawn(|| Ok::<_, std::io::Error>(0_u32))
            .unwrap();
        let mut lease = rt.block_on(worker.lease()).unwrap();
        let go = start_a_held_call(&mut lease, || panic!("ends the lease"));
        let mut queued = Box::pin(lease.call(|n| *n));
        assert!(support::poll_once(queued.as_mut()).is_pending()); // sent, behind the first
        go.send(()).unwrap();
        let err = rt.block_on(queued).unwrap_err();
        assert!(err.is_lease_ended(), "{err}");
        drop(lease);
        assert_eq!(rt.block_on(worker.call(|n| *n + 1)).unwrap(), 1);
        let stats = worker.stats();
        assert_eq!((stats.rejected, stats.withdrawn), (1, 0), "{stats:?}");
        // The panicked call and its holder (which panics in turn, for the panic policy).
        assert_eq!((stats.completed, stats.panicked), (1, 2), "{stats:?}");
        assert_eq!(stats.submitted, 4, "{stats:?}");
    });
}

/// A leased call dropped before it started never runs and counts as withdrawn (before,
/// it was submitted and nothing).
#[test]
fn a_leased_call_withdrawn_before_it_starts_counts_as_withdrawn() {
    guarded("withdrawn leased call", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let worker = Worker::builder("lease-withdrawn")
            .spawn(|| Ok::<_, std::io::Error>(0_u32))
            .unwrap();
        let mut lease = rt.block_on(worker.lease()).unwrap();
        let go = start_a_held_call(&mut lease, || {});
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&ran);
        let queued = lease.call(move |_| counted.fetch_add(1, Ordering::SeqCst));
        assert!(support::poll_once(queued).is_pending()); // sent, then dropped unstarted
        go.send(()).unwrap();
        // The lease's calls run in order: once this one answers, the withdrawn one is past.
        assert_eq!(rt.block_on(lease.call(|n| *n + 7)).unwrap(), 7);
        rt.block_on(lease.finish()).unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn call never runs");
        let stats = worker.stats();
        assert_eq!((stats.withdrawn, stats.rejected), (1, 0), "{stats:?}");
        // The first call, the last one and the finished holder.
        assert_eq!((stats.completed, stats.panicked), (3, 0), "{stats:?}");
        assert_eq!(stats.submitted, 4, "{stats:?}");
    });
}
