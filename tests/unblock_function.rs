//! `unblock`: values, panics, cancellation before start, no runtime, paused clock.

mod support;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_bridge::unblock;
use support::{panic_text, poll_once, Gate};

#[tokio::test]
async fn returns_the_closure_value() {
    let data = [3u64, 4, 5];
    let sum = unblock(move || data.iter().sum::<u64>()).await;
    assert_eq!(sum, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_off_the_executor_thread() {
    let here = std::thread::current().id();
    let there = unblock(|| std::thread::current().id()).await;
    assert_ne!(here, there);
}

#[tokio::test]
async fn a_panic_resumes_in_the_caller_with_its_payload() {
    let err = tokio::spawn(unblock(|| -> u32 { panic!("legacy exploded: {}", 42) }))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(panic_text(&*err.into_panic()), "legacy exploded: 42");
}

#[test]
fn dropped_before_start_never_runs() {
    // One blocking thread, held by a gated closure: the next job must queue behind it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let gate = Gate::new();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let g = gate.clone();
        let blocker = tokio::spawn(unblock(move || {
            started_tx.send(()).unwrap();
            g.wait();
        }));
        started_rx.await.unwrap();

        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let queued = unblock(move || r.store(true, Ordering::SeqCst));
        assert!(poll_once(queued).is_pending()); // submitted, then dropped

        gate.open();
        blocker.await.unwrap();
        // The pool is FIFO with one thread: once this runs, the dropped job had its turn.
        unblock(|| ()).await;
        assert!(!ran.load(Ordering::SeqCst), "a dropped job ran");
    });
}

#[test]
fn outside_a_runtime_it_panics_with_a_clear_message() {
    let fut = unblock(|| 1);
    let payload = panic::catch_unwind(AssertUnwindSafe(|| poll_once(fut))).unwrap_err();
    let msg = panic_text(&*payload);
    assert!(msg.contains("outside a tokio runtime"), "{msg}");
    assert!(
        msg.contains("unblock_function.rs"),
        "names the call site: {msg}"
    );
}

#[test]
fn nothing_runs_until_polled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let fut = unblock(move || r.store(true, Ordering::SeqCst));
    drop(fut);
    rt.block_on(unblock(|| ()));
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn tokio_paused_clock_waits_for_the_closure() {
    // The closure waits for a plain thread to do some real work. With the clock paused,
    // a timeout would fire at once if tokio did not see the blocking closure as busy.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        go_rx.recv().unwrap();
        let work = (0..2_000_000u64).fold(0u64, |h, x| h.rotate_left(3) ^ x);
        done_tx.send(work).unwrap();
    });
    let result = tokio::time::timeout(
        Duration::from_secs(1),
        unblock(move || {
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap()
        }),
    )
    .await;
    assert!(
        result.is_ok(),
        "the paused clock ran ahead of the blocking closure"
    );
}
