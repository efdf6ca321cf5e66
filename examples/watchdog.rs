//! Finding blocking code in async code: a watched handler that reads file metadata
//! with `std::fs` and calls `thread::sleep` by mistake, reported by call site, and the
//! executor-lag probe.
//!
//! Run with: `cargo run --example watchdog`

use std::time::Duration;

use async_bridge::watchdog::{WatchExt, Watchdog};

async fn handler_with_a_bug() {
    // Two blocking calls in async code: a `std::fs` call (fast here, slow on a busy disk
    // or a network mount) and a sleep that stands for a slow one.
    let exe = std::env::current_exe().expect("the example's own path");
    let _size = std::fs::metadata(exe).map(|m| m.len());
    std::thread::sleep(Duration::from_millis(30));
}

async fn well_behaved_handler() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dog = Watchdog::builder()
        .slow_poll(Duration::from_millis(10))
        .start()
        .unwrap();
    for _ in 0..3 {
        handler_with_a_bug().watched().await;
        well_behaved_handler().watched().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // let the lag probe tick
    println!("{}", dog.report());
}
