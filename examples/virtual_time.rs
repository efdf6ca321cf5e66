//! Virtual time across sync and async code: a legacy retry loop with an hour of backoff
//! (sync, `clock::sleep`) racing an async deadline, in a few milliseconds of real time.
//!
//! Run with: `cargo run --features test-util --example virtual_time`

use std::time::{Duration, Instant};

use async_bridge::{clock, testing, Offloader};

/// Legacy code: retries with a doubling backoff (was `thread::sleep`).
fn connect_with_retries(fail_times: u32) -> u32 {
    let mut backoff = Duration::from_secs(60);
    for attempt in 0..fail_times {
        println!(
            "  attempt {attempt} failed at +{:?} (virtual); backing off {backoff:?}",
            elapsed()
        );
        clock::sleep(backoff);
        backoff *= 2;
    }
    fail_times + 1
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn elapsed() -> Duration {
    clock::now() - *START.get().unwrap()
}

fn main() {
    let wall = Instant::now();
    testing::run(async {
        START.set(clock::now()).unwrap();
        let lane = Offloader::builder("connect")
            .timeout(Duration::from_secs(3600))
            .build()
            .unwrap();
        let attempts = lane.run(|| connect_with_retries(5)).await.unwrap();
        println!(
            "connected after {attempts} attempts at +{:?} (virtual)",
            elapsed()
        );
        let err = lane.run(|| connect_with_retries(7)).await.unwrap_err();
        println!("gave up: {err} at +{:?} (virtual)", elapsed());
    });
    println!("real time taken: {:?}", wall.elapsed());
}
