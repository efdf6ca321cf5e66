//! Adversarial review of Stats (src/stats.rs) on workers and leases.

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use async_bridge::Worker;

const GUARD: Duration = Duration::from_secs(30);

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Promise (Stats docs): "cancelled: Calls whose caller went away (dropped the future)
/// before they finished, waiting or running" — also a caller waiting for room in a full
/// mailbox (it is counted in `queued` while it waits).
#[test]
fn a_caller_dropped_while_waiting_for_room_counts_as_cancelled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = Worker::builder("stats-line")
        .mailbox(1)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let (in_tx, in_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let running = rt.spawn(w.call(move |_| {
        in_tx.send(()).unwrap();
        go_rx.recv_timeout(GUARD).unwrap();
    }));
    in_rx.recv_timeout(GUARD).unwrap();
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut queued = Box::pin(w.call(|_| ()));
    assert!(queued.as_mut().poll(&mut cx).is_pending()); // takes the one place
    let mut in_line = Box::pin(w.call(|_| ()));
    assert!(in_line.as_mut().poll(&mut cx).is_pending()); // waits for room
    assert_eq!(w.stats().queued, 2, "{:?}", w.stats());
    drop(in_line);
    drop(queued);
    let stats = w.stats();
    go_tx.send(()).unwrap();
    rt.block_on(running).unwrap().unwrap();
    assert_eq!(
        stats.cancelled, 2,
        "both callers went away before their calls finished: {stats:?}"
    );
}

/// Promise (Stats docs): every call is counted by how its closure ended; the counters
/// are exact when the caller looks. Calls made under a lease are calls of the worker.
#[test]
fn leased_calls_are_counted_in_the_workers_stats() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = Worker::builder("stats-lease")
            .spawn(|| Ok::<_, std::io::Error>(0u32))
            .unwrap();
        let mut lease = w.lease().await.unwrap();
        lease.call(|n| *n += 1).await.unwrap();
        lease.call(|n| *n += 1).await.unwrap();
        let during = w.stats();
        lease.call(|n| *n += 1).await.unwrap();
        lease.finish().await.unwrap();
        let after = w.stats();
        assert_eq!(
            during.completed, 2,
            "two leased calls returned, stats while the lease is held: {during:?}"
        );
        assert!(
            after.completed >= 3,
            "three leased calls returned, stats after finish: {after:?}"
        );
    });
}
