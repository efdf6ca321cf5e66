//! Old sync code calling new async code: `block_on` from a plain thread and from inside a
//! runtime, a `Blocking<T>` facade over an async client, and the refusal on a
//! current_thread runtime.
//!
//! Run with: `cargo run --example facade`

use std::time::Duration;

use async_bridge::{block_on, unblock, Blocking};

/// New async code.
struct PriceClient;

impl PriceClient {
    async fn price(&self, sku: u32) -> u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        100 + u64::from(sku)
    }
}

/// Old sync code, unchanged for its callers.
fn legacy_total(client: &Blocking<PriceClient>, skus: &[u32]) -> u64 {
    skus.iter()
        .map(|&sku| client.call(async |c| c.price(sku).await).expect("facade"))
        .sum()
}

fn main() {
    let client = Blocking::new(PriceClient);
    println!("from a plain thread: {}", legacy_total(&client, &[1, 2, 3]));

    // Inside a multi-thread runtime: runs (the worker's other tasks move elsewhere).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inside = rt.block_on(async {
        tokio::spawn(async { block_on(async { 7 }).unwrap() })
            .await
            .unwrap()
    });
    println!("from a runtime worker: {inside}");

    // On a current_thread runtime's own thread it would deadlock: refused, not hung.
    let ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    ct.block_on(async {
        let err = block_on(async { 1 }).unwrap_err();
        println!("on a current_thread runtime: {err}");
        // The fix the error suggests: move the sync caller onto a blocking thread.
        let ok = unblock(|| block_on(async { 1 }).unwrap()).await;
        println!("the same call through unblock: {ok}");
    });
}
