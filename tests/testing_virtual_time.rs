//! The virtual-time harness: one paused clock over async tasks, blocking-pool closures,
//! Offloader lanes, rayon jobs and sync code sleeping on `clock::sleep`.
#![cfg(feature = "test-util")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_bridge::{clock, compute, testing, unblock, Offloader};
use support::panic_text;
use tokio::time::Instant;

/// Burns real CPU for `real` wall time (the work under test, not a synchronisation).
fn compute_for(real: Duration) -> u64 {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < real {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    x
}

/// Awaits `setup` while a real-time heartbeat polls the test every few milliseconds.
///
/// A poll of the test is progress for the stall monitor, so a thread that is slow to be
/// scheduled on a loaded machine cannot be taken for a stall while a stall test is still
/// setting its scene; once `setup` is done the heartbeat stops and nothing progresses
/// again. (The beat is not synchronisation: `setup` itself waits on a channel or on
/// the virtual clock.)
async fn with_heartbeat<T>(setup: impl std::future::Future<Output = T>) -> T {
    let (beat_tx, mut beat_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        let (_never, interval) = std::sync::mpsc::channel::<()>();
        while beat_tx.send(()).is_ok() {
            let _ = interval.recv_timeout(Duration::from_millis(5));
        }
    });
    let mut setup = std::pin::pin!(setup);
    loop {
        tokio::select! {
            out = &mut setup => return out,
            _ = beat_rx.recv() => {}
        }
    }
}

type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

fn record(log: &Log, start: Instant, what: &'static str) {
    log.lock().unwrap().push((what, start.elapsed()));
}

#[test]
fn an_hour_of_sync_backoff_is_exact_virtual_time() {
    testing::run(async {
        let start = Instant::now();
        let sleeps = unblock(|| {
            let mut backoff = Duration::from_secs(225);
            let mut total = Duration::ZERO;
            for _ in 0..4 {
                clock::sleep(backoff); // 225 + 450 + 900 + 1800 s
                total += backoff;
                backoff *= 2;
            }
            total
        })
        .await;
        assert_eq!(sleeps, Duration::from_secs(3375));
        assert_eq!(start.elapsed(), Duration::from_secs(3375));
    });
}

#[test]
fn timers_fire_in_deadline_order_across_sync_and_async() {
    let log: Log = Arc::default();
    let events = log.clone();
    testing::run(async move {
        let start = Instant::now();
        let l = log.clone();
        let async_side = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            record(&l, start, "async 5s");
        });
        let l = log.clone();
        let sync_side = unblock(move || {
            clock::sleep(Duration::from_secs(3));
            record(&l, start, "sync 3s");
        });
        sync_side.await;
        async_side.await.unwrap();
    });
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            ("sync 3s", Duration::from_secs(3)),
            ("async 5s", Duration::from_secs(5))
        ]
    );
}

#[test]
fn a_timeout_does_not_fire_while_rayon_computes() {
    testing::run(async {
        let start = Instant::now();
        let done = tokio::time::timeout(
            Duration::from_secs(1),
            compute(|| compute_for(Duration::from_millis(200))),
        )
        .await;
        assert!(
            done.is_ok(),
            "the clock moved while a compute job was running"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    });
}

#[test]
fn a_timeout_does_not_fire_while_an_offloader_closure_computes() {
    testing::run(async {
        let lane = Offloader::builder("cpu-in-lane").build().unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(1),
            lane.run(|| compute_for(Duration::from_millis(200))),
        )
        .await;
        assert!(done.is_ok());
    });
}

#[test]
fn an_offloader_timeout_fires_in_virtual_time_while_its_closure_sleeps() {
    testing::run(async {
        let lane = Offloader::builder("slow-sync")
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let start = Instant::now();
        let err = lane
            .run(|| clock::sleep(Duration::from_secs(3600)))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    });
}

#[test]
fn clock_now_is_virtual_on_every_thread_of_the_harness() {
    testing::run(async {
        let t0 = clock::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(clock::now() - t0, Duration::from_secs(10));
        let on_pool = unblock(clock::now).await;
        let on_rayon = compute(clock::now).await;
        let lane = Offloader::builder("now").build().unwrap();
        let in_lane = lane.run(clock::now).await.unwrap();
        for t in [on_pool, on_rayon, in_lane] {
            assert_eq!(t - t0, Duration::from_secs(10));
        }
        // tokio's own clock agrees inside offloaded work too.
        let tokio_on_rayon = compute(|| tokio::time::Instant::now().into_std()).await;
        assert_eq!(tokio_on_rayon - t0, Duration::from_secs(10));
    });
}

/// A scenario mixing sync and async sleeps, retries and offload kinds, logging each
/// event with its virtual time.
fn scenario() -> Vec<(&'static str, Duration)> {
    let log: Log = Arc::default();
    let events = log.clone();
    testing::run(async move {
        let start = Instant::now();
        let lane = Offloader::builder("scenario")
            .max_concurrency(2)
            .build()
            .unwrap();
        let l = log.clone();
        let retry = lane.run(move || {
            for _ in 0..3 {
                clock::sleep(Duration::from_millis(700));
                record(&l, start, "sync retry");
            }
        });
        let l = log.clone();
        let ticker = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                record(&l, start, "async tick");
            }
        });
        let l = log.clone();
        // Spawned so that it starts now: offload futures are lazy.
        let crunch = tokio::spawn(compute(move || {
            let v = compute_for(Duration::from_millis(5));
            clock::sleep(Duration::from_millis(1200));
            record(&l, start, "rayon after sleep");
            v
        }));
        retry.await.unwrap();
        ticker.await.unwrap();
        crunch.await.unwrap();
    });
    let events = events.lock().unwrap().clone();
    events
}

#[test]
fn the_same_test_gives_the_same_events_at_the_same_virtual_times() {
    let first = scenario();
    assert_eq!(
        first,
        vec![
            ("async tick", Duration::from_millis(500)),
            ("sync retry", Duration::from_millis(700)),
            ("async tick", Duration::from_millis(1000)),
            ("rayon after sleep", Duration::from_millis(1200)),
            ("sync retry", Duration::from_millis(1400)),
            ("async tick", Duration::from_millis(1500)),
            ("async tick", Duration::from_millis(2000)),
            ("sync retry", Duration::from_millis(2100)),
        ]
    );
    for _ in 0..19 {
        assert_eq!(scenario(), first);
    }
}

#[test]
fn a_closure_waiting_forever_is_reported_instead_of_hanging() {
    let stall = testing::Builder::new()
        .stall_limit(Duration::from_millis(200))
        .try_run(async {
            let lane = Offloader::builder("orders-db").build().unwrap();
            let (_never_sent, rx) = std::sync::mpsc::channel::<()>();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let call = tokio::spawn(lane.run(move || {
                started_tx.send(()).unwrap();
                rx.recv()
            }));
            // Running (not still waiting for its thread) before the stall can be seen.
            with_heartbeat(started_rx).await.unwrap();
            call.await
        })
        .unwrap_err();
    assert_eq!(stall.holders(), 1);
    let text = stall.to_string();
    assert!(text.contains("offload `orders-db` called at"), "{text}");
    assert!(text.contains("testing_virtual_time.rs"), "{text}");
    assert!(text.contains("running (holds the clock)"), "{text}");
}

#[test]
fn a_lock_cycle_between_two_jobs_is_reported() {
    let stall = testing::Builder::new()
        .stall_limit(Duration::from_millis(200))
        .try_run(async {
            let a = Arc::new(Mutex::new(()));
            let b = Arc::new(Mutex::new(()));
            let both = Arc::new(std::sync::Barrier::new(2));
            let (a1, b1, both1) = (a.clone(), b.clone(), both.clone());
            let first = unblock(move || {
                let _a = a1.lock().unwrap();
                both1.wait();
                let _b = b1.lock().unwrap();
            });
            let second = compute(move || {
                let _b = b.lock().unwrap();
                both.wait();
                let _a = a.lock().unwrap();
            });
            futures::future::join(first, second).await
        })
        .unwrap_err();
    assert_eq!(stall.holders(), 2);
    let text = stall.to_string();
    assert!(text.contains("unblock called at"), "{text}");
    assert!(text.contains("compute called at"), "{text}");
}

#[test]
fn an_async_deadlock_is_reported() {
    let stall = testing::Builder::new()
        .stall_limit(Duration::from_millis(200))
        .try_run(async {
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            rx.await
        })
        .unwrap_err();
    assert_eq!(stall.holders(), 0);
    assert!(stall.to_string().contains("no timer to advance to"));
}

#[test]
fn a_sleeping_job_shows_in_a_stall_report_as_asleep() {
    let stall = testing::Builder::new()
        .stall_limit(Duration::from_millis(200))
        .try_run(async {
            let (_tx, rx) = std::sync::mpsc::channel::<()>();
            let sleeper = tokio::spawn(unblock(|| clock::sleep(Duration::from_secs(5))));
            // The clock moves only once nothing holds it: once the sleeper is asleep on it
            // (however late its thread was scheduled). Then the stuck job comes.
            with_heartbeat(tokio::time::sleep(Duration::from_millis(1))).await;
            let stuck = unblock(move || rx.recv());
            futures::future::join(stuck, sleeper).await
        })
        .unwrap_err();
    // The stuck job holds the clock, so the sleeper never reaches its wake-up.
    assert_eq!(stall.holders(), 1);
    let text = stall.to_string();
    assert!(text.contains("at virtual time +1ms"), "{text}");
    assert!(text.contains("asleep on the clock until +5s"), "{text}");
    assert!(text.contains("running (holds the clock)"), "{text}");
}

#[test]
fn tokio_test_helpers_work_inside_the_harness() {
    use tokio_test::{assert_pending, assert_ready};
    testing::run(async {
        let mut sleep = tokio_test::task::spawn(tokio::time::sleep(Duration::from_secs(1)));
        assert_pending!(sleep.poll());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(sleep.is_woken());
        assert_ready!(sleep.poll());
    });
}

#[test]
fn clock_sleep_on_the_runtime_thread_panics_with_advice() {
    let payload = std::panic::catch_unwind(|| {
        testing::run(async { clock::sleep(Duration::from_secs(1)) });
    })
    .unwrap_err();
    let msg = panic_text(&*payload);
    assert!(msg.contains("use tokio::time::sleep"), "{msg}");
    assert!(msg.contains("testing_virtual_time.rs"), "{msg}");
}

#[test]
fn run_inside_a_runtime_panics_with_advice() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { testing::run(async {}) })
    }))
    .unwrap_err();
    assert!(panic_text(&*payload).contains("plain #[test]"));
}

#[test]
fn a_panic_in_the_test_propagates_unchanged() {
    let payload = std::panic::catch_unwind(|| {
        testing::run(async {
            unblock(|| clock::sleep(Duration::from_secs(1))).await;
            panic!("assertion in the test");
        })
    })
    .unwrap_err();
    assert_eq!(panic_text(&*payload), "assertion in the test");
}

#[test]
fn outside_the_harness_the_clock_is_real() {
    let before = std::time::Instant::now();
    let now = clock::now();
    assert!(now >= before);
    clock::sleep(Duration::from_millis(1));
    assert!(clock::now() - now >= Duration::from_millis(1));
}

#[test]
fn a_facade_inside_offloaded_work_waits_on_the_virtual_clock() {
    testing::run(async {
        let start = Instant::now();
        // Sync code (on a harness thread) calling new async code through the facade.
        let waited = unblock(move || {
            async_bridge::block_on(async move {
                tokio::time::sleep(Duration::from_secs(90)).await;
                start.elapsed()
            })
            .unwrap()
        })
        .await;
        assert_eq!(waited, Duration::from_secs(90));
        let on_rayon = compute(move || {
            async_bridge::block_on(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                start.elapsed()
            })
            .unwrap()
        })
        .await;
        assert_eq!(on_rayon, Duration::from_secs(100));
    });
}

#[test]
fn a_facade_on_the_test_thread_is_refused_not_hung() {
    testing::run(async {
        let err = async_bridge::block_on(async { 1 }).unwrap_err();
        assert!(err.is_would_deadlock());
    });
}

#[test]
fn a_timeout_does_not_fire_while_a_worker_call_computes_and_a_worker_sleep_is_virtual() {
    testing::run(async {
        let worker = async_bridge::Worker::builder("vt-worker")
            .spawn(|| Ok::<_, std::io::Error>(0u64))
            .unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(1),
            worker.call(|n| *n = compute_for(Duration::from_millis(200))),
        )
        .await;
        assert!(done.is_ok(), "the clock moved while a worker call computed");
        let start = Instant::now();
        worker
            .call(|_| clock::sleep(Duration::from_secs(600)))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(600));
    });
}

#[test]
fn unblock_io_holds_the_clock_while_it_works() {
    use tokio::io::AsyncReadExt;
    testing::run(async {
        let data = vec![7u8; 4 << 20];
        let mut reader = async_bridge::Unblock::new(std::io::Cursor::new(data));
        let mut out = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_millis(1), reader.read_to_end(&mut out)).await;
        assert_eq!(read.unwrap().unwrap(), 4 << 20);
    });
}

#[test]
fn a_job_queued_behind_a_sleeping_job_lets_the_clock_move() {
    testing::run(async {
        let start = Instant::now();
        let lane = Offloader::builder("one-slot")
            .max_concurrency(1)
            .build()
            .unwrap();
        let first = lane.run(|| clock::sleep(Duration::from_secs(1)));
        let second = lane.run(|| clock::sleep(Duration::from_secs(1)));
        let (a, b) = futures::future::join(first, second).await;
        a.unwrap();
        b.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        // The same through a worker, whose call is made (its job paired, in the ledger as
        // queued) a second before it is first polled: it lets the clock move meanwhile,
        // and it runs only once polled, so its second starts at +3 s and ends at +4 s.
        let worker = async_bridge::Worker::builder("one-thread")
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        let call = worker.call(|_| clock::sleep(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        call.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    });
}

#[test]
fn a_stall_with_a_pending_timer_still_fails() {
    let stall = testing::Builder::new()
        .stall_limit(Duration::from_millis(200))
        .try_run(async {
            let lane = Offloader::builder("stuck-with-timeout")
                .timeout(Duration::from_millis(50))
                .build()
                .unwrap();
            let (_tx, rx) = std::sync::mpsc::channel::<()>();
            lane.run(move || rx.recv()).await
        })
        .unwrap_err();
    assert_eq!(stall.holders(), 1);
}
