//! Dropping the last handle (inside and outside a runtime) and `shutdown(grace)`: queued
//! calls, the object's drop on its thread, bounded waits and their reports.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use async_bridge::{Worker, WorkerPool};
use support::{block_on_plain, within_a_minute, DropProbe, Gate};
use tokio_util::sync::CancellationToken;

/// Polls a future once with the current task's waker (so that it is woken later).
async fn poll_now<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    futures::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

type Log = (Vec<u32>, DropProbe);

fn probed(name: &str) -> (Worker<Log>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let w = Worker::builder(name)
        .spawn(move || std::io::Result::Ok((Vec::new(), DropProbe(tx.clone()))))
        .unwrap();
    (w, rx)
}

/// Occupies the worker until the gate opens; returns once the call is running.
fn hold(w: &Worker<Log>, gate: &Gate) -> std::thread::JoinHandle<()> {
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let w = w.clone();
    let t = std::thread::spawn(move || {
        w.call_blocking(move |_| {
            started_tx.send(()).unwrap();
            g.wait();
        })
        .unwrap()
    });
    started_rx.recv().unwrap();
    t
}

#[test]
fn dropping_the_last_handle_outside_a_runtime_runs_queued_calls_then_drops_the_object() {
    within_a_minute(|| {
        let (w, dropped) = probed("drop-outside");
        let gate = Gate::new();
        let holder = hold(&w, &gate);
        let (done_tx, done_rx) = mpsc::channel();
        // Three calls admitted while the worker is busy, awaited on another thread.
        let calls: Vec<_> = (0..3)
            .map(|i| w.call(move |(log, _)| log.push(i)))
            .collect();
        let seen = w.call(|(log, _)| log.clone());
        let waiter = std::thread::spawn(move || {
            block_on_plain(async {
                for c in calls {
                    c.await.unwrap();
                }
                done_tx.send(seen.await.unwrap()).unwrap();
            })
        });
        drop(w); // never blocks: the held call is still running
        assert!(dropped.try_recv().is_err());
        gate.open();
        holder.join().unwrap();
        assert_eq!(done_rx.recv().unwrap(), vec![0, 1, 2]);
        waiter.join().unwrap();
        assert_eq!(dropped.recv().unwrap(), "drop-outside");
    });
}

#[test]
fn dropping_the_last_handle_inside_a_runtime_never_blocks_it() {
    within_a_minute(|| {
        let (w, dropped) = probed("drop-inside");
        let gate = Gate::new();
        let holder = hold(&w, &gate);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut pending = None;
        rt.block_on(async {
            let queued = tokio::spawn(w.call(|(log, _)| log.push(1)));
            tokio::task::yield_now().await; // the call is admitted
            drop(w); // on the runtime's only thread, with the worker busy
            pending = Some(queued);
        });
        let pending = pending.unwrap();
        assert!(dropped.try_recv().is_err());
        gate.open();
        holder.join().unwrap();
        rt.block_on(pending).unwrap().unwrap();
        assert_eq!(dropped.recv().unwrap(), "drop-inside");
    });
}

#[test]
fn shutdown_of_an_idle_worker_is_complete_and_later_calls_are_closed() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (w, dropped) = probed("idle");
            w.call(|(log, _)| log.push(1)).await.unwrap();
            let clone = w.clone();
            let report = w.shutdown(Duration::from_secs(30)).await;
            assert!(report.is_complete(), "{report}");
            assert_eq!((report.finished(), report.abandoned()), (0, 0));
            assert!(report.still_running().is_empty());
            // The object was dropped on its thread before the report was made.
            assert_eq!(dropped.try_recv().unwrap(), "idle");
            let err = clone.call(|(log, _)| log.len()).await.unwrap_err();
            assert!(err.is_shutdown());
            assert_eq!(err.to_string(), "worker `idle`: worker is shut down");
            assert!(clone.call_blocking(|_| ()).unwrap_err().is_shutdown());
            // A second shutdown is harmless.
            assert!(clone.shutdown(Duration::ZERO).await.is_complete());
        })
    });
}

#[test]
fn shutdown_runs_the_queue_within_grace() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (w, dropped) = probed("drain");
            let gate = Gate::new();
            let holder = hold(&w, &gate);
            let mut queued = Vec::new();
            for i in 0..3 {
                let mut call = Box::pin(w.call(move |(log, _): &mut Log| log.push(i)));
                assert!(poll_now(&mut call).await.is_pending()); // admitted
                queued.push(call);
            }
            let mut seen = Box::pin(w.call(|(log, _): &mut Log| log.clone()));
            assert!(poll_now(&mut seen).await.is_pending()); // admitted, behind the three
            let stopping = w.clone();
            let shutdown =
                tokio::spawn(async move { stopping.shutdown(Duration::from_secs(30)).await });
            // Wait until the shutdown has closed the mailbox, then let the worker go on.
            loop {
                let mut probe = Box::pin(w.call(|_| ()));
                if let Poll::Ready(result) = poll_now(&mut probe).await {
                    assert!(result.unwrap_err().is_shutdown());
                    break;
                }
                drop(probe); // admitted before the shutdown: withdrawn, never runs
                tokio::task::yield_now().await;
            }
            gate.open();
            holder.join().unwrap();
            let report = shutdown.await.unwrap();
            assert!(report.is_complete(), "{report}");
            assert_eq!(report.abandoned(), 0);
            // The holder, the three and `seen`; the probes were withdrawn.
            assert_eq!(report.finished(), 5, "{report}");
            for q in queued {
                q.await.unwrap();
            }
            // Admitted before the shutdown: it runs within grace, after the three.
            assert_eq!(seen.await.unwrap(), vec![0, 1, 2]);
            assert_eq!(dropped.recv().unwrap(), "drain");
        })
    });
}

#[test]
fn shutdown_is_bounded_by_grace_and_reports_what_is_left() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (w, dropped) = probed("stuck");
            let gate = Gate::new();
            let holder = hold(&w, &gate);
            let mut queued = Vec::new();
            for i in 0..3 {
                let mut call = Box::pin(w.call(move |(log, _)| log.push(i)));
                assert!(poll_now(&mut call).await.is_pending());
                queued.push(call);
            }
            let report = w.shutdown(Duration::from_millis(50)).await;
            assert!(!report.is_complete());
            assert_eq!(report.abandoned(), 3);
            assert_eq!(report.still_running().len(), 1);
            assert!(report.to_string().contains("1 still running"), "{report}");
            assert!(report.still_running()[0]
                .file()
                .ends_with("worker_shutdown.rs"));
            for q in queued {
                assert!(q.await.unwrap_err().is_shutdown());
            }
            assert!(dropped.try_recv().is_err()); // still in use by the stuck call
            gate.open();
            holder.join().unwrap();
            assert_eq!(dropped.recv().unwrap(), "stuck");
        })
    });
}

#[test]
fn shutdown_is_bounded_without_a_runtime_too() {
    within_a_minute(|| {
        let (w, dropped) = probed("no-runtime");
        let gate = Gate::new();
        let holder = hold(&w, &gate);
        let report = block_on_plain(w.shutdown(Duration::from_millis(50)));
        assert!(!report.is_complete());
        assert_eq!(report.still_running().len(), 1);
        gate.open();
        holder.join().unwrap();
        assert_eq!(dropped.recv().unwrap(), "no-runtime");
    });
}

#[test]
fn shutdown_cancels_the_tokens_of_running_calls() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let w = Worker::builder("scan")
                .spawn(|| std::io::Result::Ok(()))
                .unwrap();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let scan = tokio::spawn(w.call_cancellable(move |_, cancel: &CancellationToken| {
                started_tx.send(()).unwrap();
                while !cancel.is_cancelled() {
                    std::hint::spin_loop();
                }
                "stopped early"
            }));
            started_rx.await.unwrap();
            let report = w.shutdown(Duration::from_secs(30)).await;
            assert!(report.is_complete(), "{report}");
            assert_eq!(report.finished(), 1);
            assert_eq!(scan.await.unwrap().unwrap(), "stopped early");
        })
    });
}

#[test]
fn callers_waiting_for_room_fail_at_once_on_shutdown() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (tx, _rx) = mpsc::channel();
            let w = Worker::builder("tiny")
                .mailbox(1)
                .spawn(move || std::io::Result::Ok((Vec::new(), DropProbe(tx.clone()))))
                .unwrap();
            let gate = Gate::new();
            let holder = hold(&w, &gate);
            let mut calls = Vec::new();
            for i in 0..4 {
                let mut call = Box::pin(w.call(move |(log, _): &mut Log| log.push(i)));
                assert!(poll_now(&mut call).await.is_pending());
                calls.push(call);
            }
            let report = w.shutdown(Duration::from_millis(1)).await;
            assert_eq!(report.abandoned(), 1); // the one in the mailbox
            for c in calls {
                assert!(c.await.unwrap_err().is_shutdown()); // 1 abandoned, 3 refused
            }
            gate.open();
            holder.join().unwrap();
        })
    });
}

#[test]
fn a_pool_shuts_down_every_worker_and_drops_every_object_on_its_thread() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (tx, dropped) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let pool = WorkerPool::builder("pool")
            .workers(3)
            .spawn(move || std::io::Result::Ok(DropProbe(tx.lock().unwrap().clone())))
            .unwrap();
        rt.block_on(async {
            for _ in 0..9 {
                pool.call(|_| ()).await.unwrap();
            }
            let report = pool.shutdown(Duration::from_secs(30)).await;
            assert!(report.is_complete(), "{report}");
            assert!(
                report.to_string().contains("3 of 3 threads stopped"),
                "{report}"
            );
            assert!(pool.call(|_| ()).await.unwrap_err().is_shutdown());
        });
        let mut names: Vec<String> = dropped.iter().take(3).collect();
        names.sort();
        assert_eq!(names, ["pool-0", "pool-1", "pool-2"]);
    });
}

#[test]
fn dropping_a_pool_drops_every_object_on_its_thread() {
    within_a_minute(|| {
        let (tx, dropped) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let pool = WorkerPool::builder("dropped-pool")
            .workers(2)
            .spawn(move || std::io::Result::Ok(DropProbe(tx.lock().unwrap().clone())))
            .unwrap();
        let clone = pool.clone();
        drop(pool);
        clone.call_blocking(|_| ()).unwrap();
        drop(clone);
        let mut names: Vec<String> = dropped.iter().take(2).collect();
        names.sort();
        assert_eq!(names, ["dropped-pool-0", "dropped-pool-1"]);
    });
}

/// A worker with a mailbox of one, its thread held by a spawned call that waits for the
/// gate (opened when the guard drops, so that a failing test ends instead of hanging in
/// its runtime's shutdown); returns once that call runs.
async fn held_by_a_task(
    name: &str,
) -> (
    Worker<u32>,
    Gate,
    support::OpenOnDrop,
    tokio::task::JoinHandle<Result<(), async_bridge::WorkerError>>,
) {
    let worker = Worker::builder(name)
        .mailbox(1)
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let gate = Gate::new();
    let open = support::OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let g = gate.clone();
    let running = tokio::spawn(worker.call(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    }));
    started_rx.await.unwrap();
    (worker, gate, open, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_given_up_calls_that_own_a_runtime_where_blocking_is_allowed() {
    // Legacy clients often own a tokio runtime, which panics if dropped where blocking is
    // not allowed. Shutdown gives up a call waiting for room at once and a queued one
    // when its grace ends: both are dropped where blocking is allowed, not in the
    // shutdown's poll on this runtime (which panicked, for either).
    let owns_a_runtime = support::a_runtime_to_own;
    let (worker, gate, _open, running) = held_by_a_task("release-given-up").await;
    let (queued_rt, in_line_rt) = (owns_a_runtime(), owns_a_runtime());
    let mut queued = Box::pin(worker.call(move |_| {
        let _legacy = &queued_rt;
    }));
    assert!(support::poll_once(queued.as_mut()).is_pending());
    let mut in_line = Box::pin(worker.call(move |_| {
        let _legacy = &in_line_rt;
    }));
    assert!(support::poll_once(in_line.as_mut()).is_pending());
    assert_eq!(worker.stats().queued, 2);
    let report = worker.shutdown(Duration::ZERO).await;
    assert_eq!(report.abandoned(), 1, "{report}");
    assert!(in_line.await.unwrap_err().is_shutdown());
    assert!(queued.await.unwrap_err().is_shutdown());
    gate.open();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_calls_cleared_from_the_queue_are_dropped_off_the_executor() {
    // The caller whose withdrawal clears the mailbox of the withdrawn calls piled up in it
    // drops other callers' closures: they go off the executor (the runtime's blocking
    // pool), as the worker's thread would have dropped them, not in that caller's poll
    // here (where a closure owning a runtime panicked).
    let (worker, gate, _open, running) = held_by_a_task("clear-where-blocking").await;
    let runtime = support::a_runtime_to_own();
    let mut owner = Box::pin(worker.call(move |_| {
        let _legacy = &runtime;
    }));
    assert!(support::poll_once(owner.as_mut()).is_pending());
    // Withdrawn: it stays queued, freeing its place.
    drop(owner);
    // Each withdrawn as it drops: the 65th withdrawal (the owner's and 64 of these)
    // clears the queue.
    for _ in 0..100 {
        let mut call = Box::pin(worker.call(|_| 0));
        assert!(support::poll_once(call.as_mut()).is_pending());
    }
    assert_eq!(worker.stats().withdrawn, 101);
    gate.open();
    running.await.unwrap().unwrap();
}
