//! `compute` and `ComputePool`: values, panics, skipping dropped jobs, cancellation,
//! bursts, no runtime needed, thread names, bad configuration, drop.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_bridge::{compute, ComputePool};
use support::{block_on_plain, panic_text, poll_once, Gate};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn compute_returns_the_value() {
    let v: Vec<u32> = (0..1000).collect();
    assert_eq!(compute(move || v.iter().sum::<u32>()).await, 499_500);
}

#[tokio::test]
async fn compute_resumes_a_panic_in_the_caller() {
    let err = tokio::spawn(compute(|| -> u8 { panic!("bad frame") }))
        .await
        .unwrap_err();
    assert_eq!(panic_text(&*err.into_panic()), "bad frame");
}

#[test]
fn compute_needs_no_runtime() {
    assert_eq!(block_on_plain(compute(|| 6 * 7)), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_burst_of_10k_returns_every_value() {
    let results = futures::future::join_all((0..10_000u64).map(|i| compute(move || i * i))).await;
    assert!(results
        .iter()
        .enumerate()
        .all(|(i, &r)| r == (i as u64) * (i as u64)));
}

#[tokio::test]
async fn pool_threads_carry_its_name() {
    let pool = ComputePool::builder("hasher").threads(2).build().unwrap();
    let name = pool
        .run(|| std::thread::current().name().map(str::to_owned))
        .await
        .unwrap()
        .unwrap();
    assert!(name.starts_with("hasher-"), "{name}");
    assert_eq!(pool.threads(), 2);
}

#[tokio::test]
async fn pool_panics_are_errors_with_the_payload() {
    let pool = ComputePool::builder("zip").threads(1).build().unwrap();
    let err = pool
        .run(|| -> u8 { panic!("corrupt block") })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(
        err.to_string(),
        "pool `zip`: closure panicked: corrupt block"
    );
    assert_eq!(panic_text(&*err.into_panic()), "corrupt block");
    assert_eq!(
        pool.run(|| 1).await.unwrap(),
        1,
        "the pool survives a panic"
    );
}

#[tokio::test]
async fn a_pool_job_dropped_before_it_starts_is_skipped() {
    let pool = ComputePool::builder("one").threads(1).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let blocker = tokio::spawn(pool.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
    }));
    started_rx.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    assert!(poll_once(pool.run(move || r.store(true, Ordering::SeqCst))).is_pending());
    gate.open();
    blocker.await.unwrap().unwrap();
    pool.run(|| ()).await.unwrap(); // one thread, FIFO: the dropped job had its turn
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_a_running_pool_job_cancels_its_token() {
    let pool = ComputePool::builder("cancel").threads(1).build().unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let call = tokio::spawn(pool.run_cancellable(move |cancel: &CancellationToken| {
        started_tx.send(()).unwrap();
        while !cancel.is_cancelled() {
            std::thread::yield_now();
        }
        seen_tx.send(()).unwrap();
    }));
    started_rx.await.unwrap();
    call.abort();
    seen_rx.await.expect("the job saw its token cancelled");
}

#[tokio::test]
async fn dropping_the_pool_inside_a_runtime_while_a_job_runs_neither_panics_nor_blocks() {
    let pool = ComputePool::builder("drop").threads(1).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let call = tokio::spawn(pool.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
        "finished"
    }));
    started_rx.await.unwrap();
    drop(pool); // returns at once although a job is blocked
    gate.open();
    assert_eq!(call.await.unwrap().unwrap(), "finished");
}

#[test]
fn pool_bad_configuration_is_an_error() {
    let err = ComputePool::builder("none").threads(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration for `none`: threads must be at least 1"
    );
}
