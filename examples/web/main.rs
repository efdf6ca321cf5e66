//! A web service migrated route by route: the legacy service (a `tiny_http` sync server
//! over SQLite and a CPU-heavy route) and the migrated one (axum serving every route,
//! the legacy routes through the bridge, new routes native), side by side on loopback
//! ports, driven by the same closed-loop load from an async HTTP client.
//!
//! Run with: `cargo run --release --features tower --example web`
//!
//! Prints, for each server: requests per second, p50 and p99 latency, 5xx answers, and
//! the process's thread count after the run (both servers live in this one process, with
//! the client's runtime: compare the growth, not the totals).

mod client;
mod legacy;
mod migrated;

use std::time::Duration;

use migrated::Limits;

/// The load; `WEB_CLIENTS` and `WEB_REQUESTS` (per client) override it.
fn load_shape() -> (usize, usize) {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (var("WEB_CLIENTS", 32), var("WEB_REQUESTS", 200))
}
const LEGACY_THREADS: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(2);

/// This process's threads, from `/proc/self/status`; "n/a" where there is no `/proc`.
fn threads() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|n| n.trim().to_owned())
        })
        .unwrap_or_else(|| "n/a".to_owned())
}

fn main() {
    // Count the bridge crossings of the migrated service, to print what is left to port.
    async_bridge::ledger::enable();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (clients, per_client) = load_shape();
    rt.block_on(async {
        let http = client::client();
        let before = threads();
        let legacy_port = legacy::serve(legacy::Legacy::open(), LEGACY_THREADS, TIMEOUT);
        let (router, lane) = migrated::router(
            legacy::Legacy::open(),
            Limits {
                max_concurrency: 16,
                max_queue: 256,
                timeout: TIMEOUT,
            },
        );
        let migrated_port = migrated::serve(router).await;
        println!(
            "legacy: tiny_http, {LEGACY_THREADS} threads, port {legacy_port}; migrated: axum, \
             native routes {:?}, the rest through lane `legacy-handlers`, port {migrated_port}",
            migrated::NATIVE
        );
        println!(
            "load: {clients} clients x {per_client} requests, closed loop, mix {:?}",
            client::MIX
        );
        println!(
            "threads before the servers: {before}; with both started: {}",
            threads()
        );
        println!(
            "{:<10} {:>9} {:>9} {:>10} {:>10} {:>6} {:>8}",
            "service", "requests", "req/s", "p50", "p99", "5xx", "threads"
        );
        for (name, port) in [("legacy", legacy_port), ("migrated", migrated_port)] {
            let f = client::load(&http, port, clients, per_client).await;
            println!(
                "{:<10} {:>9} {:>9.0} {:>10.2?} {:>10.2?} {:>6} {:>8}",
                name,
                f.requests,
                f.per_second,
                f.p50,
                f.p99,
                f.errors,
                threads()
            );
        }
        let stats = lane.stats();
        println!(
            "lane `legacy-handlers`: {} completed, {} rejected, {} timed out; run time p50 {:.2?}, p99 {:.2?}",
            stats.completed, stats.rejected, stats.timed_out, stats.run_time.p50, stats.run_time.p99
        );
        println!(
            "\nthe migration ledger (crossings still made by the migrated service, by call site):\n{}",
            async_bridge::ledger()
        );
    });
}
