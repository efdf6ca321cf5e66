//! Adversarial review of the tower services' poll_ready reservations (src/service.rs).
#![cfg(feature = "tower")]

use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_bridge::Offloader;
use tower::Service;

const GUARD: Duration = Duration::from_secs(30);

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn ready<S: Service<R>, R>(s: &mut S) -> Poll<Result<(), S::Error>> {
    let waker = Waker::from(Arc::new(Noop));
    s.poll_ready(&mut Context::from_waker(&waker))
}

/// Promise (LaneService docs): a held place is given back when the service is dropped;
/// clones share the lane, not the held place; after shutdown poll_ready is is_shutdown and
/// a call on a held place fails with is_shutdown (no hang, no leak).
#[test]
fn reservations_are_given_back_and_shutdown_with_one_held_does_not_hang() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lane = Offloader::builder("svc")
            .max_concurrency(1)
            .max_queue(0)
            .build()
            .unwrap();
        let mut a = lane.service(|x: u32| x + 1);
        assert!(matches!(ready(&mut a), Poll::Ready(Ok(()))));
        // The one place is held by `a`: a clone cannot get one, and a plain run is rejected.
        let mut b = a.clone();
        assert!(ready(&mut b).is_pending());
        let err = lane.run(|| 0).await.unwrap_err();
        assert!(err.is_rejected(), "{err}");
        drop(a); // gives the place back
        assert!(matches!(ready(&mut b), Poll::Ready(Ok(()))));
        assert_eq!(
            tokio::time::timeout(GUARD, b.call(1))
                .await
                .expect("hang")
                .unwrap(),
            2
        );

        // A place held through a shutdown.
        assert!(matches!(ready(&mut b), Poll::Ready(Ok(()))));
        let report = tokio::time::timeout(GUARD, lane.shutdown(Duration::from_secs(5)))
            .await
            .expect("shutdown hung with a reservation held");
        assert!(report.is_complete(), "{report}");
        let err = tokio::time::timeout(GUARD, b.call(1))
            .await
            .expect("hang")
            .unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        let mut c = b.clone();
        match ready(&mut c) {
            Poll::Ready(Err(e)) => assert!(e.is_shutdown(), "{e}"),
            other => panic!("poll_ready after shutdown: {:?}", other.map(|r| r.is_ok())),
        }
        drop((b, c));
        let _ = mpsc::channel::<()>();
    });
}

/// Promise (Stats docs): "submitted: Calls submitted (admitted, or turned away at
/// admission)". A run turned away because a tower reservation holds the lane's last place
/// is rejected: it must count in `submitted` as a full-queue rejection does.
#[test]
fn a_run_rejected_because_of_a_reservation_counts_as_submitted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lane = Offloader::builder("svc-stats")
            .max_concurrency(1)
            .max_queue(0)
            .build()
            .unwrap();
        // A full-queue rejection, for comparison: one running, the next rejected.
        let (in_tx, in_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let running = tokio::spawn(lane.run(move || {
            in_tx.send(()).unwrap();
            go_rx.recv_timeout(GUARD).unwrap();
        }));
        in_rx.recv_timeout(GUARD).unwrap();
        assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
        go_tx.send(()).unwrap();
        running.await.unwrap().unwrap();
        let before = lane.stats();
        assert_eq!((before.submitted, before.rejected), (2, 1), "{before:?}");

        let mut svc = lane.service(|x: u32| x);
        assert!(matches!(ready(&mut svc), Poll::Ready(Ok(()))));
        assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
        let after = lane.stats();
        assert_eq!(after.rejected, 2, "{after:?}");
        assert_eq!(
            after.submitted, 3,
            "a rejection caused by a reservation is not counted as submitted: {after:?}"
        );
        drop(svc);
    });
}
