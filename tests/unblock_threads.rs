//! Thread counts stay at the lane's bound under 100k calls that come in waves.
//!
//! Alone in its own test binary, so that no other test's threads change the count.
//!
//! The calls come in waves, each awaited before the next is submitted: between two
//! waves the lane's queue is empty and its drainers have nothing to do. That is the
//! moment a drainer used to give its thread back to tokio's pool, and the next wave
//! started new drainers before those threads were idle in the pool again, so the pool
//! grew a thread at a time (42 threads through a lane of 4): drainers now linger for the
//! next call instead. A single burst submitted in one poll never empties the queue, so
//! it cannot see this. The peak is sampled continuously by a thread of its own, not only
//! from inside the closures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

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

/// Calls per wave: twice the lane's slots, so that every wave starts (or finds) all
/// four drainers and queues calls behind them.
const WAVE: usize = 8;

#[test]
fn waves_of_calls_never_take_more_threads_than_the_lane_allows() {
    if !std::path::Path::new("/proc/self/status").exists() {
        return; // the thread count is read from procfs
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The sampler runs from before the baseline to the end, so it is in both counts.
    // Every 100 µs: a measurement interval (an extra pool thread lives for tokio's
    // 10 s keep-alive, so none can slip between two samples), not synchronisation.
    let peak = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = mpsc::channel::<()>();
    let (first_tx, first_rx) = mpsc::channel::<()>();
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || loop {
            peak.fetch_max(threads_now(), Ordering::SeqCst);
            let _ = first_tx.send(());
            if stopped.recv_timeout(Duration::from_micros(100)) != Err(RecvTimeoutError::Timeout) {
                return;
            }
        })
    };
    first_rx.recv().unwrap(); // the sampler is running, and counted in `before`
    let before = threads_now();
    let lane = Offloader::builder("bounded")
        .max_concurrency(4)
        .max_queue(WAVE)
        .build()
        .unwrap();
    let emptied = rt.block_on(async {
        let mut emptied = 0;
        for wave in 0..100_000 / WAVE {
            let calls = (0..WAVE).map(|i| lane.run(move || wave * WAVE + i));
            let done = futures::future::join_all(calls).await;
            assert!(done
                .iter()
                .enumerate()
                .all(|(i, r)| r.as_ref().ok() == Some(&(wave * WAVE + i))));
            let stats = lane.stats();
            assert_eq!((stats.queued, stats.running), (0, 0));
            emptied += 1;
        }
        emptied
    });
    drop(stop);
    sampler.join().unwrap();
    assert_eq!(emptied, 100_000 / WAVE);
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("{peak} threads at peak, {before} before the waves");
    assert!(
        peak <= before + 4,
        "{peak} threads at peak, {before} before the waves: more than the lane's 4"
    );
}
