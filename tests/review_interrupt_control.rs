//! Control for review_interrupt.rs: without the panicking interrupter, re-firing works.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_bridge::Worker;

const GUARD: Duration = Duration::from_secs(30);

#[test]
fn refire_stops_a_call_whose_first_interrupt_was_missed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Worker B: a well-behaved interrupter whose first fire is "missed" (as SQLite's is
    // when it comes just before the blocking part); only a re-fire stops the call.
    let (b_stop_tx, b_stop_rx) = mpsc::channel::<()>();
    let b_stop_tx = Arc::new(Mutex::new(b_stop_tx));
    let b = Worker::builder("good-interrupter")
        .interrupter(move |_: &u32| {
            let fires = Arc::new(AtomicUsize::new(0));
            let tx = Arc::clone(&b_stop_tx);
            move || {
                if fires.fetch_add(1, Ordering::SeqCst) >= 1 {
                    let _ = tx.lock().unwrap().send(());
                }
            }
        })
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let (b_in_tx, b_in_rx) = mpsc::channel::<()>();
    let (b_done_tx, b_done_rx) = mpsc::channel::<bool>();
    let b_call = rt.spawn(b.call(move |_| {
        b_in_tx.send(()).unwrap();
        let stopped = b_stop_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        b_done_tx.send(stopped).unwrap();
    }));
    b_in_rx.recv_timeout(GUARD).unwrap();
    b_call.abort();
    let stopped = b_done_rx.recv_timeout(GUARD).unwrap();
    assert!(
        stopped,
        "B's call was never re-fired: the re-fire thread died with A's panicking interrupter"
    );
}
