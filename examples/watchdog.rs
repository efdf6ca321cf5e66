//! Finding blocking code in async code: a watched handler that calls `std::fs` and
//! `thread::sleep` by mistake, reported by call site, and the executor-lag probe.
//!
//! Run with: `cargo run --example watchdog`

use std::time::Duration;

use async_bridge::watchdog::{WatchExt, Watchdog};

async fn handler_with_a_bug() {
    std::thread::sleep(Duration::from_millis(30)); // a blocking call in async code
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
