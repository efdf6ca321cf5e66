//! Thread counts stay at the lane's bound under a 100k-call burst.
//!
//! Alone in its own test binary, so that no other test's threads change the count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_bridge::Offloader;

fn threads_now() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_100k_burst_never_takes_more_threads_than_the_lane_allows() {
    if !std::path::Path::new("/proc/self/status").exists() {
        return; // the thread count is read from procfs
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let before = threads_now();
    let lane = Offloader::builder("bounded")
        .max_concurrency(4)
        .max_queue(100_000)
        .build()
        .unwrap();
    let peak_threads = Arc::new(AtomicUsize::new(0));
    let done = rt.block_on(async {
        let calls = (0..100_000usize).map(|i| {
            let peak = peak_threads.clone();
            lane.run(move || {
                if i % 1_000 == 0 {
                    peak.fetch_max(threads_now(), Ordering::SeqCst);
                }
                i
            })
        });
        futures::future::join_all(calls).await
    });
    assert!(done
        .iter()
        .enumerate()
        .all(|(i, r)| r.as_ref().ok() == Some(&i)));
    let peak = peak_threads.load(Ordering::SeqCst);
    assert!(
        peak <= before + 4,
        "{peak} threads at peak, {before} before the burst: more than the lane's 4"
    );
}
