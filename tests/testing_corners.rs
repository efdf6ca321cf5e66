//! Corners of virtual time (issue 11): queued CPU jobs let the clock move.

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
