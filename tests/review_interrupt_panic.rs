//! Adversarial review: an interrupter that panics on the cancelling side.

use std::sync::mpsc;
use std::time::Duration;

use async_bridge::Worker;
use futures::FutureExt;
use std::future::Future;

const GUARD: Duration = Duration::from_secs(30);

/// Promise (Worker::shutdown / ShutdownReport): shutdown is bounded and returns a report.
/// A panicking interrupter (user code, fired from shutdown) must not make shutdown itself
/// panic, nor leave the worker without an answer.
#[test]
fn shutdown_survives_a_panicking_interrupter() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = Worker::builder("panicky")
        .interrupter(|_: &u32| || panic!("interrupter panics"))
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let (in_tx, in_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let call = rt.spawn(w.call(move |_| {
        in_tx.send(()).unwrap();
        let _ = go_rx.recv_timeout(GUARD);
    }));
    in_rx.recv_timeout(GUARD).unwrap();
    let outcome = rt.block_on(async {
        tokio::time::timeout(
            GUARD,
            std::panic::AssertUnwindSafe(w.shutdown(Duration::from_millis(100))).catch_unwind(),
        )
        .await
        .expect("shutdown hung")
    });
    go_tx.send(()).unwrap();
    let _ = rt.block_on(call);
    match outcome {
        Ok(report) => eprintln!("report: {report}"),
        Err(_) => panic!("Worker::shutdown panicked because the interrupter panicked"),
    }
}

/// A caller that drops its future (abort) while the interrupter panics: the panic comes
/// out of the future's drop, into whoever drops it.
#[test]
fn dropping_a_call_with_a_panicking_interrupter_does_not_panic_the_dropper() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = Worker::builder("panicky-drop")
        .interrupter(|_: &u32| || panic!("interrupter panics"))
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let (in_tx, in_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let mut call = Box::pin(w.call(move |_| {
        in_tx.send(()).unwrap();
        let _ = go_rx.recv_timeout(GUARD);
    }));
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let _enter = rt.enter();
    assert!(call.as_mut().poll(&mut cx).is_pending());
    in_rx.recv_timeout(GUARD).unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(call)));
    go_tx.send(()).unwrap();
    assert!(
        dropped.is_ok(),
        "dropping a worker call panicked (the interrupter's panic)"
    );
}
