//! Corners of the offload promises (issue 11): calls admitted while tokio's blocking pool
//! is saturated, nested offloads that would wait for themselves.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_bridge::Offloader;
use support::{poll_once, within_a_minute};

/// A runtime whose blocking pool has one thread, and a guard that holds that thread
/// until dropped.
fn saturated_runtime() -> (tokio::runtime::Runtime, mpsc::Sender<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (release, hold) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel();
    rt.spawn_blocking(move || {
        held_tx.send(()).unwrap();
        let _ = hold.recv();
    });
    held_rx.recv().unwrap();
    (rt, release)
}

#[test]
fn a_call_dropped_while_the_pool_is_saturated_never_runs() {
    within_a_minute(|| {
        let (rt, release) = saturated_runtime();
        let lane = Offloader::builder("saturated")
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut call = Box::pin(lane.run(move || flag.store(true, Ordering::SeqCst)));
        assert!(poll_once(call.as_mut()).is_pending());
        // Admitted, but no thread has taken it: it waits, it does not run.
        let stats = lane.stats();
        assert_eq!((stats.queued, stats.running), (1, 0));
        drop(call);
        let stats = lane.stats();
        assert_eq!((stats.queued, stats.running, stats.cancelled), (0, 0, 1));
        release.send(()).unwrap();
        // A later call runs after the dropped one would have (FIFO).
        rt.block_on(lane.run(|| ())).unwrap();
        assert!(
            !ran.load(Ordering::SeqCst),
            "a call dropped before it started ran"
        );
        assert_eq!(lane.stats().completed, 1);
    });
}

#[test]
fn shutdown_while_the_pool_is_saturated_fails_the_waiting_call_and_reports_nothing_running() {
    within_a_minute(|| {
        let (rt, release) = saturated_runtime();
        let lane = Offloader::builder("saturated")
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let call = rt.spawn(lane.run(move || flag.store(true, Ordering::SeqCst)));
        rt.block_on(async {
            while lane.stats().queued == 0 {
                tokio::task::yield_now().await;
            }
        });
        let report = rt.block_on(lane.shutdown(Duration::from_secs(30)));
        assert!(report.is_complete(), "{report}");
        assert!(report.still_running().is_empty(), "{report}");
        assert_eq!(report.abandoned(), 1, "{report}");
        let err = rt.block_on(call).unwrap().unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        release.send(()).unwrap();
        drop(lane);
        drop(rt); // waits for the blocking thread, and the drainer that found nothing
        assert!(!ran.load(Ordering::SeqCst));
    });
}
