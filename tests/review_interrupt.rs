//! Adversarial review of interrupters (src/interrupt.rs). Alone in its binary: it kills
//! the process-wide re-fire thread on purpose.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

mod support;

use async_bridge::Worker;

const GUARD: Duration = Duration::from_secs(30);

/// Promise (WorkerBuilder::interrupter docs, interrupt.rs invariant 3): "Until the call
/// returns it is fired again every few milliseconds". One worker's interrupter that
/// panics when re-fired must not stop re-firing for every other worker in the process.
#[test]
fn a_panicking_interrupter_does_not_stop_refiring_for_other_workers() {
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Worker A: its interrupter ignores the first fire and panics on the first re-fire.
    let (a_fired_tx, a_fired_rx) = mpsc::channel::<usize>();
    let a_fired_tx = Arc::new(Mutex::new(a_fired_tx));
    let a = Worker::builder("bad-interrupter")
        .interrupter(move |_: &u32| {
            let fires = Arc::new(AtomicUsize::new(0));
            let tx = Arc::clone(&a_fired_tx);
            move || {
                let n = fires.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = tx.lock().unwrap().send(n);
                if n >= 2 {
                    panic!("interrupter A panics when re-fired");
                }
            }
        })
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let (a_in_tx, a_in_rx) = mpsc::channel::<()>();
    let (a_go_tx, a_go_rx) = mpsc::channel::<()>();
    let a_call = rt.spawn(a.call(move |_| {
        a_in_tx.send(()).unwrap();
        let _ = a_go_rx.recv_timeout(GUARD);
    }));
    a_in_rx.recv_timeout(GUARD).unwrap();
    a_call.abort(); // the caller goes away: fire #1 here, re-fires from the re-fire thread
    assert_eq!(a_fired_rx.recv_timeout(GUARD).unwrap(), 1);
    assert_eq!(
        a_fired_rx.recv_timeout(GUARD).unwrap(),
        2,
        "A was not re-fired"
    );
    a_go_tx.send(()).unwrap(); // let A's call return

    // Worker B: a well-behaved interrupter whose first fire is "missed"; only a re-fire
    // stops its call.
    let stopped = support::missed_first_interrupt_is_refired(&rt);
    assert!(
        stopped,
        "B's call was never re-fired: the re-fire thread died with A's panicking interrupter"
    );
}
