//! `ComputePool` admission (issue 13): a queue bound with immediate rejection, a timeout
//! over waiting plus running that cancels the token, jobs withdrawn before they start
//! never run (and are counted), stats exact when the caller looks, a bounded shutdown.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_bridge::ComputePool;
use support::{poll_once, Gate};
use tokio_util::sync::CancellationToken;

/// Occupies the pool's one thread until the returned gate opens.
async fn occupy(pool: &ComputePool) -> (Gate, tokio::task::JoinHandle<()>) {
    let gate = Gate::new();
    let g = gate.clone();
    let held = tokio::spawn({
        let call = pool.run(move || g.wait());
        async move { call.await.unwrap() }
    });
    while pool.stats().running == 0 {
        tokio::task::yield_now().await;
    }
    (gate, held)
}

#[tokio::test]
async fn a_full_queue_rejects_at_once_and_counts_it() {
    let pool = ComputePool::builder("bounded")
        .threads(1)
        .max_queue(1)
        .build()
        .unwrap();
    let (gate, held) = occupy(&pool).await;
    let mut queued = Box::pin(pool.run(|| 1));
    assert!(poll_once(queued.as_mut()).is_pending());
    let err = pool.run(|| 2).await.unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert_eq!(
        err.to_string(),
        "pool `bounded`: call rejected: 1 callers already waiting"
    );
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.rejected), (1, 1, 1));
    gate.open();
    held.await.unwrap();
    assert_eq!(queued.await.unwrap(), 1);
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.running, stats.queued), (2, 0, 0));
}

#[tokio::test]
async fn a_timeout_cancels_the_running_job_token() {
    let pool = ComputePool::builder("slow")
        .threads(1)
        .timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let err = pool
        .run_cancellable(move |cancel: &CancellationToken| {
            while !cancel.is_cancelled() {
                std::hint::spin_loop();
            }
            seen_tx.send(()).unwrap();
        })
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    seen_rx.await.expect("the job saw its token cancelled");
    assert_eq!(pool.stats().timed_out, 1);
}

#[tokio::test]
async fn a_timeout_while_waiting_withdraws_the_job_so_it_never_runs() {
    let pool = ComputePool::builder("queue")
        .threads(1)
        .timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let held = tokio::spawn(pool.run(move || g.wait()));
    while pool.stats().running == 0 {
        tokio::task::yield_now().await;
    }
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let err = pool
        .run(move || flag.store(true, Ordering::SeqCst))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(pool.stats().queued, 0);
    // The holder times out too while its closure still runs (the gate is shut). Awaited
    // before the gate opens: once the closure has returned, a caller polled after its
    // deadline may take the finished value instead, as `tokio::time::timeout` does.
    assert!(held.await.unwrap().unwrap_err().is_timeout());
    assert_eq!(pool.stats().running, 1, "the timed-out holder still runs");
    gate.open();
    // Once nothing runs, the withdrawn job was passed over (a drainer claims the next
    // job before the one it ran counts as done, so it would be running now).
    assert!(pool.shutdown(Duration::from_secs(30)).await.is_complete());
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job withdrawn before it started ran"
    );
}

#[tokio::test]
async fn a_job_dropped_before_it_starts_is_skipped_and_counted() {
    let pool = ComputePool::builder("drops").threads(1).build().unwrap();
    let (gate, held) = occupy(&pool).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let mut dropped = Box::pin(pool.run(move || flag.store(true, Ordering::SeqCst)));
    assert!(poll_once(dropped.as_mut()).is_pending());
    assert_eq!(pool.stats().queued, 1);
    drop(dropped);
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.cancelled), (0, 1));
    gate.open();
    held.await.unwrap();
    pool.run(|| ()).await.unwrap(); // runs after where the dropped one stood
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!(
        (stats.completed, stats.cancelled, stats.panicked),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn stats_are_exact_when_the_caller_looks() {
    let pool = ComputePool::builder("exact").threads(2).build().unwrap();
    for i in 0..200u32 {
        if i % 10 == 0 {
            assert!(pool
                .run(move || -> u32 { panic!("job {i}") })
                .await
                .is_err());
        } else {
            assert_eq!(pool.run(move || i).await.unwrap(), i);
        }
        let stats = pool.stats();
        assert_eq!(stats.completed + stats.panicked, u64::from(i) + 1);
        assert_eq!(stats.running, 0);
    }
    assert_eq!(pool.stats().panicked, 20);
}

#[tokio::test]
async fn shutdown_fails_queued_jobs_cancels_running_ones_and_reports() {
    let pool = ComputePool::builder("closing").threads(1).build().unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(pool.run_cancellable(move |cancel: &CancellationToken| {
        started_tx.send(()).unwrap();
        while !cancel.is_cancelled() {
            std::hint::spin_loop();
        }
        "stopped"
    }));
    started_rx.await.unwrap();
    let mut queued = Box::pin(pool.run(|| "never"));
    assert!(poll_once(queued.as_mut()).is_pending());
    let report = pool.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!((report.finished(), report.abandoned()), (1, 1), "{report}");
    assert_eq!(running.await.unwrap().unwrap(), "stopped");
    assert!(queued.await.unwrap_err().is_shutdown());
    let err = pool.run(|| ()).await.unwrap_err();
    assert!(err.is_shutdown());
    assert_eq!(err.to_string(), "pool `closing`: pool is shut down");
}

#[tokio::test]
async fn shutdown_with_a_job_that_ignores_its_token_returns_within_grace_naming_it() {
    let pool = ComputePool::builder("stuck").threads(1).build().unwrap();
    let (gate, held) = occupy(&pool).await;
    let report = pool.shutdown(Duration::from_millis(10)).await;
    assert!(!report.is_complete());
    assert_eq!(report.still_running().len(), 1);
    assert!(report.still_running()[0]
        .file()
        .ends_with("compute_admission.rs"));
    gate.open();
    held.await.unwrap();
}

#[test]
fn bad_configuration_is_an_error() {
    let err = ComputePool::builder("zero")
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("timeout must not be zero"),
        "{err}"
    );
}

#[test]
fn a_timeout_outside_any_runtime_is_an_error_not_a_panic() {
    let pool = ComputePool::builder("nort")
        .threads(1)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = support::block_on_plain(pool.run(|| 1)).unwrap_err();
    assert!(err.is_no_runtime(), "{err}");
    // Without a timeout, no runtime is needed.
    let plain = ComputePool::builder("plain").threads(1).build().unwrap();
    assert_eq!(support::block_on_plain(plain.run(|| 1)).unwrap(), 1);
}
