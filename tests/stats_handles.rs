//! Every handle reports the same Stats shape, exact when the caller looks (issue 14).

mod support;

use std::time::Duration;

use async_bridge::{ComputePool, Offloader, Stats, Worker, WorkerPool};
use support::{poll_once, Gate};

fn ordered(stats: &Stats) {
    for p in [stats.queue_wait, stats.run_time] {
        assert!(
            p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max,
            "{stats:?}"
        );
    }
}

#[tokio::test]
async fn a_lane_counts_every_outcome() {
    let lane = Offloader::builder("stats")
        .max_concurrency(1)
        .max_queue(1)
        .build()
        .unwrap();
    lane.run(|| ()).await.unwrap();
    let _ = lane.run(|| panic!("boom")).await;
    // Hold the slot; one call queued then withdrawn; one rejected.
    let gate = Gate::new();
    let g = gate.clone();
    let held = tokio::spawn(lane.run(move || g.wait()));
    while lane.stats().running == 0 {
        tokio::task::yield_now().await;
    }
    let mut queued = Box::pin(lane.run(|| ()));
    assert!(poll_once(queued.as_mut()).is_pending());
    assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
    drop(queued);
    gate.open();
    held.await.unwrap().unwrap();
    let stats = lane.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.panicked,
            stats.withdrawn,
            stats.rejected
        ),
        (5, 2, 1, 1, 1)
    );
    assert_eq!((stats.queued, stats.running, stats.cancelled), (0, 0, 1));
    assert!(stats.run_time.max > Duration::ZERO);
    ordered(&stats);
}

#[tokio::test]
async fn a_compute_pool_counts_like_a_lane() {
    let pool = ComputePool::builder("stats").threads(1).build().unwrap();
    for i in 0..10 {
        let _ = pool
            .run(move || {
                if i == 3 {
                    panic!("boom")
                }
            })
            .await;
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.panicked),
        (10, 9, 1)
    );
    ordered(&stats);
}

#[tokio::test]
async fn a_worker_counts_every_outcome() {
    let w = Worker::builder("stats")
        .timeout(Duration::from_secs(60))
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    w.call(|_| ()).await.unwrap();
    let _ = w.call(|_| panic!("boom")).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let gate = Gate::new();
    let g = gate.clone();
    let held = tokio::spawn(w.call(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    }));
    started_rx.await.unwrap();
    let mut queued = Box::pin(w.call(|_| ()));
    assert!(poll_once(queued.as_mut()).is_pending());
    assert_eq!((w.stats().queued, w.stats().running), (1, 1));
    drop(queued);
    gate.open();
    held.await.unwrap().unwrap();
    let stats = w.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.panicked,
            stats.withdrawn,
            stats.cancelled
        ),
        (4, 2, 1, 1, 1)
    );
    assert_eq!((stats.queued, stats.running, stats.rejected), (0, 0, 0));
    ordered(&stats);
}

#[tokio::test]
async fn a_worker_pool_sums_its_workers() {
    let pool = WorkerPool::builder("stats")
        .workers(3)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    for _ in 0..30 {
        pool.call(|_| ()).await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.completed), (30, 30));
    ordered(&stats);
}

#[tokio::test]
async fn stats_are_exact_when_the_caller_looks() {
    let lane = Offloader::builder("exact").build().unwrap();
    let w = Worker::builder("exact")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    for i in 1..=100u64 {
        lane.run(|| ()).await.unwrap();
        w.call(|_| ()).await.unwrap();
        assert_eq!(lane.stats().completed, i);
        assert_eq!(w.stats().completed, i);
    }
}
