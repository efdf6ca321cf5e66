//! Offloading blocking and CPU-bound calls: `unblock`, an `Offloader` lane with limits,
//! and `compute` on rayon, with a panic and an overload handled.
//!
//! Run with: `cargo run --example offload`

use std::time::Duration;

use async_bridge::{compute, unblock, Offloader};

/// A legacy, blocking lookup (stands for a driver or SDK call).
fn legacy_lookup(key: u32) -> String {
    std::thread::sleep(Duration::from_millis(20));
    format!("value-{key}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The panics below are deliberate: print one line for each, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(deliberate panic: {info})")));

    // The odd blocking call.
    println!("unblock: {}", unblock(|| legacy_lookup(1)).await);

    // A lane for one legacy dependency: at most 4 threads, at most 8 waiting callers.
    let lane = Offloader::builder("legacy-lookup")
        .max_concurrency(4)
        .max_queue(8)
        .timeout(Duration::from_secs(1))
        .build()?;
    let calls = (0..20).map(|k| lane.run(move || legacy_lookup(k)));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.is_rejected()))
        .count();
    println!(
        "20 calls at once through a lane of 4 + 8 waiting: {ok} ran, {rejected} rejected at once"
    );

    // A panic comes back as an error with its payload; the lane keeps working.
    let err = lane
        .run(|| -> u32 { panic!("corrupt record") })
        .await
        .unwrap_err();
    println!("panic: {err}");
    println!("stats: {:?}", lane.stats());

    // CPU work on rayon.
    let sum = compute(|| (0..10_000_000u64).sum::<u64>()).await;
    println!("compute: {sum}");
    Ok(())
}
