//! Corners of virtual time (issue 11): queued CPU jobs let the clock move.
#![cfg(feature = "test-util")]

use std::time::Duration;

use async_bridge::{clock, testing, ComputePool};

#[test]
fn a_compute_job_queued_behind_a_sleeping_one_lets_the_clock_move() {
    let pool = ComputePool::builder("vt").threads(1).build().unwrap();
    testing::Builder::new()
        .stall_limit(Duration::from_secs(30))
        .run(async move {
            let start = tokio::time::Instant::now();
            let sleeper = pool.run(|| clock::sleep(Duration::from_secs(3600)));
            let queued = pool.run(|| 7);
            let (slept, value) = tokio::join!(sleeper, queued);
            slept.unwrap();
            assert_eq!(value.unwrap(), 7);
            assert_eq!(start.elapsed(), Duration::from_secs(3600));
        });
}

#[test]
fn a_compute_job_holds_the_clock_while_it_computes() {
    let pool = ComputePool::builder("vt-busy").threads(1).build().unwrap();
    testing::run(async move {
        let start = tokio::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = pool.run(move || rx.recv().unwrap());
        let timer = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            start.elapsed()
        };
        let release = async {
            tokio::task::yield_now().await;
            tx.send(()).unwrap();
        };
        let (done, fired, ()) = tokio::join!(busy, timer, release);
        done.unwrap();
        assert_eq!(fired, Duration::from_secs(5));
    });
}

#[test]
fn a_sleep_of_duration_max_under_the_harness_does_not_overflow() {
    testing::run(async {
        let start = tokio::time::Instant::now();
        let forever = async_bridge::unblock(|| clock::sleep(Duration::MAX));
        let timed = tokio::time::timeout(Duration::from_secs(3600), forever).await;
        assert!(timed.is_err());
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
    });
}

#[test]
fn work_left_asleep_when_the_run_ends_sleeps_for_real_instead_of_spinning() {
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let (report_tx, report_rx) = std::sync::mpsc::channel();
    testing::run(async move {
        let (asleep_tx, asleep_rx) = tokio::sync::oneshot::channel();
        let job = async_bridge::unblock(move || {
            asleep_tx.send(()).unwrap();
            // Still running when the run ends; its later sleeps find the harness gone.
            ended_rx.recv().unwrap();
            let start = std::time::Instant::now();
            let mut sleeps = 0;
            while start.elapsed() < Duration::from_millis(20) {
                clock::sleep(Duration::from_millis(5));
                sleeps += 1;
            }
            report_tx.send(sleeps).unwrap();
        });
        let mut job = Box::pin(job);
        tokio::select! {
            _ = &mut job => unreachable!("the job waits for the run to end"),
            _ = asleep_rx => {}
        }
        std::mem::forget(job); // leave the job running past the end of the run
    });
    ended_tx.send(()).unwrap();
    // Sleeps of 5 ms for real: at most a handful fit in 20 ms (a spin would make
    // thousands).
    let sleeps = report_rx.recv().unwrap();
    assert!(
        sleeps <= 4,
        "{sleeps} sleeps in 20 ms: clock::sleep returned at once"
    );
}

#[test]
fn compute_jobs_queued_behind_sleeping_ones_on_every_thread_let_the_clock_move() {
    testing::Builder::new()
        .stall_limit(Duration::from_secs(30))
        .run(async {
            let start = tokio::time::Instant::now();
            // More jobs than the pool has threads: some wait behind sleepers.
            let jobs = (0..rayon::current_num_threads() + 2).map(|i| {
                async_bridge::compute(move || {
                    clock::sleep(Duration::from_secs(60));
                    i
                })
            });
            let done = futures::future::join_all(jobs).await;
            assert_eq!(done.len(), rayon::current_num_threads() + 2);
            // Two waves of 60 s sleeps at most (a thread per sleeper, the rest queued).
            assert!(start.elapsed() >= Duration::from_secs(60));
            assert_eq!(start.elapsed().as_secs() % 60, 0, "{:?}", start.elapsed());
        });
}

#[test]
fn a_panic_in_compute_under_the_harness_resumes_in_the_caller() {
    testing::run(async {
        let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            async_bridge::compute(|| -> u32 { panic!("bad digest") }),
        ))
        .await;
        let payload = caught.unwrap_err();
        assert_eq!(*payload.downcast::<&str>().unwrap(), "bad digest");
    });
}

/// Nested facades under the harness, from a blocking thread, with virtual sleeps at both
/// depths, counted on the global portal; and the facade from the test's own task is
/// refused (the harness's thread drives its runtime).
#[test]
fn facades_nested_under_the_harness_run_on_virtual_time() {
    let before = async_bridge::Portal::global().unwrap().stats();
    testing::Builder::new()
        .stall_limit(Duration::from_secs(30))
        .run(async {
            let start = tokio::time::Instant::now();
            let inner = async_bridge::unblock(|| {
                async_bridge::block_on(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    async_bridge::block_on(async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        clock::sleep(Duration::from_secs(60));
                        5
                    })
                    .unwrap()
                })
                .unwrap()
            })
            .await;
            assert_eq!(inner, 5);
            assert_eq!(start.elapsed(), Duration::from_secs(3720));
            let refused = async_bridge::block_on(async { 1 });
            assert!(refused.unwrap_err().is_would_deadlock());
        });
    let after = async_bridge::Portal::global().unwrap().stats();
    // Other tests of this binary may use the global portal too: at least ours.
    assert!(after.submitted >= before.submitted + 3, "{after:?}");
    assert!(after.completed >= before.completed + 2, "{after:?}");
    assert!(after.rejected > before.rejected, "{after:?}");
}
