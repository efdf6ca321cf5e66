//! Lanes, compute pools and workers as `tower::Service`s, under tower's own layers, and
//! the blocking face over any `tower::Service` (feature `tower`).
#![cfg(all(feature = "tower", feature = "test-util"))]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_bridge::{
    BlockingService, ComputePool, LaneService, OffloadError, Offloader, Worker, WorkerError,
    WorkerPool,
};
use tokio_util::sync::CancellationToken;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

use support::{within_a_minute, Gate};

/// A lane of one slot and `queue` places, and a service over it whose calls wait on
/// `gate`, telling `started` when they run.
fn gated_lane(
    queue: usize,
) -> (
    Offloader,
    Gate,
    mpsc::Receiver<u32>,
    impl Service<u32, Response = u32, Error = OffloadError, Future: Send> + Clone,
) {
    let lane = Offloader::builder("gated")
        .max_concurrency(1)
        .max_queue(queue)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let started_tx = std::sync::Mutex::new(started_tx);
    let g = gate.clone();
    let svc = lane.service(move |n: u32| {
        started_tx.lock().unwrap().send(n).unwrap();
        g.wait();
        n
    });
    (lane, gate, started, svc)
}

// --- Readiness is admission -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_service_holds_its_place_and_its_call_is_never_rejected() {
    let (lane, gate, started, mut svc) = gated_lane(1);
    let first = tokio::spawn(svc.ready().await.unwrap().call(1));
    assert_eq!(started.recv().unwrap(), 1); // the one slot is busy

    // The queue's one place, reserved: a plain caller is refused it...
    svc.ready().await.unwrap();
    let refused = lane.run(|| 0).await.unwrap_err();
    assert!(refused.is_rejected(), "{refused}");
    // ...and the reserved call is admitted.
    let second = tokio::spawn(svc.call(2));
    gate.open();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 2);
    let stats = lane.stats();
    assert_eq!((stats.completed, stats.rejected), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_ready_is_pending_while_the_lane_is_full_and_woken_when_a_place_frees() {
    let (lane, gate, started, mut svc) = gated_lane(0);
    let running = tokio::spawn(svc.ready().await.unwrap().call(1));
    assert_eq!(started.recv().unwrap(), 1);

    let mut waiting = svc.clone();
    let mut task = tokio_test::task::spawn(());
    assert!(task.enter(|cx, _| waiting.poll_ready(cx)).is_pending());
    gate.open();
    assert_eq!(running.await.unwrap().unwrap(), 1);
    assert!(task.is_woken());
    assert!(matches!(
        task.enter(|cx, _| waiting.poll_ready(cx)),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(waiting.call(2).await.unwrap(), 2);
    assert_eq!(lane.stats().rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_place_not_used_is_freed_by_dropping_the_service_or_the_future() {
    let lane = Offloader::builder("one")
        .max_concurrency(1)
        .max_queue(0)
        .build()
        .unwrap();
    let mut svc = lane.service(|n: u32| n);

    // Dropping the service with its place held.
    let mut held = svc.clone();
    held.ready().await.unwrap();
    assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
    drop(held);
    lane.run(|| ()).await.unwrap();

    // Dropping the call's future before it is polled.
    let unpolled = svc.ready().await.unwrap().call(1);
    assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
    drop(unpolled);
    lane.run(|| ()).await.unwrap();

    // A clone does not carry its original's place.
    svc.ready().await.unwrap();
    let mut clone = svc.clone();
    let mut task = tokio_test::task::spawn(());
    assert!(task.enter(|cx, _| clone.poll_ready(cx)).is_pending());
    assert_eq!(svc.call(7).await.unwrap(), 7); // frees the place...
    assert!(task.is_woken()); // ...and wakes the clone
    assert_eq!(clone.ready().await.unwrap().call(8).await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_readiness_and_a_reserved_call_with_is_shutdown() {
    let lane = Offloader::builder("closing").build().unwrap();
    let mut svc = lane.service(|n: u32| n);
    svc.ready().await.unwrap();
    assert!(lane.shutdown(Duration::from_secs(10)).await.is_complete());
    assert!(svc.call(1).await.unwrap_err().is_shutdown());
    let err = svc.ready().await.unwrap_err();
    assert!(err.is_shutdown(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_above_a_small_lane_queues_every_call_without_a_rejection() {
    let lane = Offloader::builder("buffered")
        .max_concurrency(2)
        .max_queue(1)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .buffer(256)
        .service(lane.service(|n: u64| n * 2));
    let calls: Vec<_> = (0..200u64)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(n).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u64 * 2);
    }
    let stats = lane.stats();
    assert_eq!((stats.completed, stats.rejected), (200, 0));
}

// --- Under tower's layers ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shed_sheds_when_the_lanes_queue_is_full() {
    let (lane, gate, started, svc) = gated_lane(1);
    let mut shed = ServiceBuilder::new().load_shed().service(svc);
    let running = tokio::spawn(shed.ready().await.unwrap().call(1));
    assert_eq!(started.recv().unwrap(), 1);
    let queued = tokio::spawn(shed.ready().await.unwrap().call(2));

    // Slot and queue place taken: the layer sees the lane not ready and sheds.
    let err = shed.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(
        err.downcast_ref::<tower::load_shed::error::Overloaded>()
            .is_some(),
        "{err}"
    );
    gate.open();
    assert_eq!(running.await.unwrap().unwrap(), 1);
    assert_eq!(queued.await.unwrap().unwrap(), 2);
    // Shed above the lane, never rejected by it after the fact.
    assert_eq!(lane.stats().rejected, 0);
    assert_eq!(shed.ready().await.unwrap().call(4).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crates_errors_stay_reachable_by_downcast_through_the_layers() {
    let lane = Offloader::builder("legacy").build().unwrap();
    let mut svc = ServiceBuilder::new()
        .load_shed()
        .timeout(Duration::from_secs(60))
        .service(lane.service(|n: u32| {
            assert!(n != 0, "legacy code panicked");
            n
        }));
    let err: BoxError = svc.ready().await.unwrap().call(0).await.unwrap_err();
    let offload = err.downcast_ref::<OffloadError>().expect("an OffloadError");
    assert!(offload.is_panic(), "{offload}");

    // Readiness fails once the lane is shut down, through the layers too.
    lane.shutdown(Duration::from_secs(10)).await;
    let err = svc.ready().await.unwrap_err();
    assert!(err.downcast_ref::<OffloadError>().unwrap().is_shutdown());
}

#[test]
fn a_timeout_layer_above_a_lane_cancels_the_closures_token() {
    let (seen_tx, seen) = mpsc::channel();
    async_bridge::testing::run(async move {
        let lane = Offloader::builder("slow").build().unwrap();
        let mut svc = ServiceBuilder::new()
            .timeout(Duration::from_secs(30))
            .service(
                lane.service_cancellable(move |(): (), cancel: &CancellationToken| {
                    let start = async_bridge::clock::now();
                    while !cancel.is_cancelled() {
                        async_bridge::clock::sleep(Duration::from_secs(1));
                    }
                    seen_tx.send(async_bridge::clock::now() - start).unwrap();
                }),
            );
        let start = tokio::time::Instant::now();
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        lane.shutdown(Duration::from_secs(60)).await;
        assert_eq!(lane.stats().cancelled, 1);
    });
    // The closure saw its token cancelled, within a second (one `clock::sleep`) of the
    // timeout, in virtual time.
    let ran = seen.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        ran >= Duration::from_secs(30) && ran <= Duration::from_secs(31),
        "{ran:?}"
    );
}

/// Retries a legacy "connection reset" twice, 10 s apart, then gives up.
#[derive(Clone)]
struct Backoff {
    left: u32,
}

impl<E> tower::retry::Policy<u32, io::Result<u32>, E> for Backoff {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _: &mut u32,
        result: &mut Result<io::Result<u32>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(Err(legacy)) if legacy.kind() == io::ErrorKind::ConnectionReset && self.left > 0 => {
                self.left -= 1;
                Some(Box::pin(tokio::time::sleep(Duration::from_secs(10))))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u32) -> Option<u32> {
        Some(*req)
    }
}

#[test]
fn a_retry_policy_retries_a_legacy_error_in_virtual_time() {
    async_bridge::testing::run(async {
        let lane = Offloader::builder("flaky").build().unwrap();
        let attempts = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&attempts);
        let legacy = move |n: u32| -> io::Result<u32> {
            async_bridge::clock::sleep(Duration::from_secs(1)); // the legacy round trip
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
                _ => Ok(n + 1),
            }
        };
        let mut svc = ServiceBuilder::new()
            .retry(Backoff { left: 2 })
            .service(lane.service(legacy));
        let start = tokio::time::Instant::now();
        assert_eq!(
            svc.ready().await.unwrap().call(41).await.unwrap().unwrap(),
            42
        );
        // Three round trips of 1 s and two backoffs of 10 s, exactly.
        assert_eq!(start.elapsed(), Duration::from_secs(23));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);

        // Out of retries: the legacy error comes back as the response.
        attempts.store(0, Ordering::SeqCst);
        let mut once = ServiceBuilder::new()
            .retry(Backoff { left: 1 })
            .service(lane.service(move |n: u32| -> io::Result<u32> {
                let _ = n;
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            }));
        let legacy_err = once
            .ready()
            .await
            .unwrap()
            .call(1)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(legacy_err.kind(), io::ErrorKind::ConnectionReset);
    });
}

#[test]
fn a_rate_limit_above_a_lane_spaces_calls_in_virtual_time() {
    async_bridge::testing::run(async {
        let lane = Offloader::builder("limited").build().unwrap();
        let mut svc = ServiceBuilder::new()
            .rate_limit(2, Duration::from_secs(1))
            .service(lane.service(|n: u32| n));
        let start = tokio::time::Instant::now();
        for n in 0..6 {
            assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        // Two calls a second: the 5th and 6th wait for the third second.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_above_a_compute_pool_bounds_it() {
    let pool = ComputePool::builder("hash")
        .threads(2)
        .max_queue(0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .buffer(64)
        .concurrency_limit(2)
        .service(pool.service(|n: u64| (0..n).sum::<u64>()));
    let calls: Vec<_> = (0..50u64)
        .map(|n| tokio::spawn(svc.clone().oneshot(n)))
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let n = n as u64;
        assert_eq!(call.await.unwrap().unwrap(), (0..n).sum::<u64>());
    }
    assert_eq!(pool.stats().rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compute_pools_cancellable_service_hands_out_a_live_token() {
    let pool = ComputePool::builder("scan").threads(1).build().unwrap();
    let mut svc = pool.service_cancellable(|n: u32, cancel: &CancellationToken| {
        (!cancel.is_cancelled()).then_some(n)
    });
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), Some(3));
}

// --- Workers -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_a_worker_pool_serve_a_method_of_their_object() {
    let db = Worker::builder("db")
        .spawn(rusqlite::Connection::open_in_memory)
        .unwrap();
    let mut exec = ServiceBuilder::new()
        .concurrency_limit(8)
        .service(db.service(|c: &mut rusqlite::Connection, sql: String| c.execute_batch(&sql)));
    exec.ready()
        .await
        .unwrap()
        .call("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (42);".into())
        .await
        .unwrap()
        .unwrap();
    let mut read = db.service(|c: &mut rusqlite::Connection, (): ()| {
        c.query_row("SELECT n FROM t", [], |r| r.get::<_, i64>(0))
    });
    assert_eq!(
        read.ready().await.unwrap().call(()).await.unwrap().unwrap(),
        42
    );

    let pool = WorkerPool::builder("shards")
        .workers(2)
        .spawn(|| Ok::<_, io::Error>(0u32))
        .unwrap();
    let svc = pool.service(|calls: &mut u32, n: u32| {
        *calls += 1; // each worker's own object
        n
    });
    let calls: Vec<_> = (0..20u32)
        .map(|n| tokio::spawn(svc.clone().oneshot(n)))
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u32);
    }
    // A worker's errors reach the caller through the layers, by downcast.
    let mut panics = ServiceBuilder::new()
        .timeout(Duration::from_secs(60))
        .service(
            db.service(|_: &mut rusqlite::Connection, (): ()| -> u32 { panic!("legacy panic") }),
        );
    let err = panics.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.downcast_ref::<WorkerError>().unwrap().is_panic());
}

// --- Where a call's function is released ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_owns_a_runtime_outlives_its_service_safely() {
    // Legacy sync wrappers often own a tokio runtime, which panics if dropped where
    // blocking is not allowed. The service is dropped before its call runs, so the call
    // holds the last reference to the function: it must be released on the thread that
    // ran the call, not in the caller's poll (this async test's thread).
    let owns_a_runtime = support::a_runtime_to_own;
    let lane = Offloader::builder("release").build().unwrap();
    let runtime = owns_a_runtime();
    let mut svc = lane.service(move |n: u32| {
        let _legacy = &runtime;
        n + 1
    });
    let call = svc.ready().await.unwrap().call(1);
    drop(svc);
    assert_eq!(call.await.unwrap(), 2);

    let worker = Worker::builder("release")
        .spawn(|| Ok::<_, io::Error>(10u32))
        .unwrap();
    let runtime = owns_a_runtime();
    let mut svc = worker.service(move |base: &mut u32, n: u32| {
        let _legacy = &runtime;
        *base + n
    });
    let call = svc.call(1);
    drop(svc);
    assert_eq!(call.await.unwrap(), 11);
}

// --- The blocking face over any `tower::Service` ----------------------------------------

fn counted_service(
    calls: &Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = BoxError> + Send + 'static {
    let calls = Arc::clone(calls);
    ServiceBuilder::new()
        .timeout(Duration::from_secs(60))
        .service(service_fn(move |n: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(n * 2)
            }
        }))
}

#[test]
fn a_blocking_service_serves_sync_code_on_a_plain_thread() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = BlockingService::new(counted_service(&calls));
    let doubled = within_a_minute(move || svc.call(21).unwrap().unwrap());
    assert_eq!(doubled, 42);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_service_works_on_a_multi_thread_runtime_worker() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = BlockingService::new(counted_service(&calls));
    // Called directly from the runtime's worker thread, as legacy sync code would be.
    assert_eq!(svc.call(5).unwrap().unwrap(), 10);
    // And a lane's service, called from sync code (the lane needs this runtime).
    let lane = Offloader::builder("sync-callers").build().unwrap();
    let mut lane_svc = BlockingService::new(lane.service(|n: u32| n + 1));
    assert_eq!(lane_svc.call(1).unwrap().unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_service_refuses_on_a_current_thread_runtime_and_does_not_call() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = BlockingService::new(counted_service(&calls));
    let err = svc.call(5).unwrap_err();
    assert!(err.is_would_deadlock(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_blocking_service_returns_the_services_own_error() {
    let mut svc = BlockingService::new(service_fn(|n: u32| async move {
        if n == 0 {
            Err(io::Error::other("zero"))
        } else {
            Ok(n)
        }
    }));
    let err = within_a_minute(move || svc.call(0).unwrap().unwrap_err());
    assert_eq!(err.to_string(), "zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offloaded_carrier_serves_a_method_of_its_shared_value() {
    let lane = Offloader::builder("catalog")
        .max_concurrency(1)
        .max_queue(0)
        .build()
        .unwrap();
    let catalog = async_bridge::Offloaded::new(vec!["bolt", "nut"], lane.clone());
    let mut find = catalog.service(|items: &Vec<&'static str>, i: usize| items.get(i).copied());
    find.ready().await.unwrap(); // the lane's one place, held
    assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
    assert_eq!(find.call(1).await.unwrap(), Some("nut"));
}

// --- The lane ------------------------------------------------------------------------------

/// A lane with no queue admits a caller while nothing runs, even when its drainer has
/// just finished a call and is on its way back to the queue (that caller used to be
/// rejected once in a while: seen as a flaky run of the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_without_a_queue_admits_one_caller_after_another() {
    let lane = Offloader::builder("no-queue")
        .max_concurrency(1)
        .max_queue(0)
        .build()
        .unwrap();
    for i in 0..5_000u32 {
        assert_eq!(lane.run(move || i).await.unwrap(), i);
    }
    assert_eq!(lane.stats().rejected, 0);
}

/// A lane's own closure waiting for a place only the lane can free is refused, not hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_ready_from_the_lanes_own_full_closure_is_would_deadlock() {
    let lane = Offloader::builder("self")
        .max_concurrency(1)
        .max_queue(0)
        .build()
        .unwrap();
    let inner = lane.service(|n: u32| n);
    let answer = lane
        .run(move || BlockingService::new(inner).call(1))
        .await
        .unwrap();
    let err = answer.unwrap().unwrap_err();
    assert!(err.is_would_deadlock(), "{err}");
}

/// A lane service over a plain function.
type Identity = LaneService<fn(u32) -> u32>;

/// A waker that calls back into the lane when woken: it polls `poll_ready` on a service
/// of the same lane (which takes the lane's lock) and reports whether it got a place.
struct CallsBack {
    svc: std::sync::Mutex<Identity>,
    ready: std::sync::Mutex<mpsc::Sender<bool>>,
}

impl CallsBack {
    /// A waker over a new `CallsBack` on `svc`, and where it reports.
    fn waker(svc: &Identity) -> (Waker, mpsc::Receiver<bool>) {
        let (tx, ready) = mpsc::channel();
        let callback = CallsBack {
            svc: std::sync::Mutex::new(svc.clone()),
            ready: std::sync::Mutex::new(tx),
        };
        (Waker::from(Arc::new(callback)), ready)
    }
}

impl Wake for CallsBack {
    fn wake(self: Arc<Self>) {
        let mut cx = Context::from_waker(Waker::noop());
        let ready = self.svc.lock().unwrap().poll_ready(&mut cx).is_ready();
        let _ = self.ready.lock().unwrap().send(ready);
    }
}

/// A task waiting for a place is woken after the lane's lock is released, not under it:
/// a waker that calls back into the lane (here: `poll_ready` on a service of the same
/// lane) was woken with the lock held and deadlocked the thread giving the place back
/// (the one dropping a reserved service, and the drainer ending a call).
#[test]
fn a_waker_that_calls_back_into_the_lane_is_woken_outside_its_lock() {
    support::guarded("a reserver's waker calling back into the lane", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let lane = Offloader::builder("calls-back")
            .max_concurrency(1)
            .max_queue(0)
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        let svc: Identity = lane.service(std::convert::identity);
        let mut waiting = svc.clone();

        // A place given back by dropping a reserved service (`unreserve`).
        let mut held = svc.clone();
        assert!(support::poll_once(std::future::poll_fn(|cx| held.poll_ready(cx))).is_ready());
        let (waker, ready) = CallsBack::waker(&svc);
        assert!(waiting
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        drop(held);
        assert!(ready.recv().unwrap(), "the woken task found the place free");
        drop(waker); // its service gives the place back

        // A place freed by a call that ends (the drainer's `end_running`).
        let gate = Gate::new();
        let (started_tx, started) = mpsc::channel();
        let g = gate.clone();
        let running = rt.spawn(lane.run(move || {
            started_tx.send(()).unwrap();
            g.wait();
        }));
        started.recv().unwrap();
        let (waker, ready) = CallsBack::waker(&svc);
        assert!(waiting
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        gate.open();
        rt.block_on(running).unwrap().unwrap();
        assert!(ready.recv().unwrap(), "the woken task found the place free");
    });
}
