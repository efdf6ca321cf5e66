//! Corners of the offload promises (issue 11): calls admitted while tokio's blocking pool
//! is saturated, nested offloads that would wait for themselves.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_bridge::{ComputePool, Offloader};
use support::{hold_blocking_pool, poll_once, within_a_minute};

/// A runtime whose blocking pool has one thread, and a guard that holds that thread
/// until dropped.
fn saturated_runtime() -> (tokio::runtime::Runtime, mpsc::Sender<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let release = hold_blocking_pool(&rt);
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

#[test]
fn block_on_compute_inside_a_one_thread_compute_pool_runs_instead_of_hanging() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pool = ComputePool::builder("one").threads(1).build().unwrap();
        let nested = rt.block_on(pool.run(|| {
            async_bridge::block_on(async_bridge::compute(|| {
                std::thread::current().name().map(str::to_owned)
            }))
            .unwrap()
        }));
        // The inner job ran on the pool's only thread, the one that waited for it.
        assert_eq!(nested.unwrap().as_deref(), Some("one-0"));
    });
}

#[test]
fn nested_compute_on_every_global_rayon_thread_at_once_does_not_hang() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let threads = rayon::current_num_threads();
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let calls = (0..threads).map(|i| {
            let barrier = Arc::clone(&barrier);
            async_bridge::compute(move || {
                barrier.wait(); // every global rayon thread is now in an outer job
                async_bridge::block_on(async_bridge::compute(move || i * 2)).unwrap()
            })
        });
        let results = rt.block_on(futures::future::join_all(calls));
        assert_eq!(results, (0..threads).map(|i| i * 2).collect::<Vec<_>>());
    });
}

#[test]
fn a_pool_job_that_waits_for_its_own_full_pool_is_refused_naming_the_call_site() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pool = ComputePool::builder("one").threads(1).build().unwrap();
        let inner = pool.clone();
        let err = rt
            .block_on(pool.run(move || async_bridge::block_on(inner.run(|| 1)).unwrap()))
            .unwrap()
            .unwrap_err();
        assert!(err.is_would_deadlock(), "{err}");
        assert!(
            err.to_string().contains("tests/unblock_corners.rs"),
            "{err}"
        );
        assert!(err.to_string().starts_with("pool `one`"), "{err}");
        // The pool keeps working.
        assert_eq!(rt.block_on(pool.run(|| 2)).unwrap(), 2);
    });
}

#[test]
fn a_lane_closure_that_waits_for_its_own_full_lane_is_refused_naming_the_call_site() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let lane = Offloader::builder("one")
            .max_concurrency(1)
            .build()
            .unwrap();
        let inner = lane.clone();
        let err = rt
            .block_on(lane.run(move || async_bridge::block_on(inner.run(|| 1)).unwrap()))
            .unwrap()
            .unwrap_err();
        assert!(err.is_would_deadlock(), "{err}");
        assert!(
            err.to_string().contains("tests/unblock_corners.rs"),
            "{err}"
        );
        assert_eq!(rt.block_on(lane.run(|| 2)).unwrap(), 2);
    });
}

#[test]
fn a_lane_closure_may_call_its_own_lane_while_a_slot_is_free() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let lane = Offloader::builder("two")
            .max_concurrency(2)
            .build()
            .unwrap();
        let inner = lane.clone();
        let value = rt
            .block_on(lane.run(move || async_bridge::block_on(inner.run(|| 21)).unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(value * 2, 42);
    });
}

#[test]
fn a_timeout_waiting_on_a_lane_whose_runtime_shut_down_is_an_error_not_a_tokio_panic() {
    within_a_minute(|| {
        let lane_rt = tokio::runtime::Runtime::new().unwrap();
        let lane = Offloader::builder("gone")
            .handle(lane_rt.handle().clone())
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (_never_tx, never_rx) = mpsc::channel::<()>();
        let caller_rt = tokio::runtime::Runtime::new().unwrap();
        let call = caller_rt.spawn(lane.run(move || {
            started_tx.send(()).unwrap();
            let _ = never_rx.recv();
        }));
        started_rx.recv().unwrap();
        lane_rt.shutdown_background();
        // The caller's timer lives on its own runtime: the call times out as an error,
        // never with tokio's "timer is being shutdown" panic.
        let result = caller_rt
            .block_on(call)
            .expect("the caller's task did not panic");
        let err = result.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    });
}

#[test]
fn a_caller_outside_any_runtime_times_out_on_a_lane_whose_runtime_shut_down() {
    within_a_minute(|| {
        let lane_rt = tokio::runtime::Runtime::new().unwrap();
        let lane = Offloader::builder("gone")
            .handle(lane_rt.handle().clone())
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (_never_tx, never_rx) = mpsc::channel::<()>();
        let call = lane.run(move || {
            started_tx.send(()).unwrap();
            let _ = never_rx.recv();
        });
        let caller = std::thread::spawn(move || support::block_on_plain(call));
        started_rx.recv().unwrap();
        lane_rt.shutdown_background();
        // No runtime on the caller's thread: its timeout is timed by a helper thread,
        // not by the dead runtime's timer (which would panic inside tokio).
        let err = caller
            .join()
            .expect("the caller did not panic")
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    });
}
