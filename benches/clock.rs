//! The clock and the virtual-time harness:
//!
//! - `now`: `clock::now()` outside the harness beside `std::time::Instant::now()`
//!   (target: at most 2x).
//! - `virtual_hour`: the wall time of a test that spends one hour of virtual time in
//!   backoff across sync code (`clock::sleep` inside `unblock` and `compute`) and async
//!   code (`tokio::time::sleep`) (target: under 100 ms).
//!
//! Run with: `cargo bench --features test-util --bench clock`

use std::time::{Duration, Instant};

use async_bridge::{clock, compute, testing, unblock};
use criterion::{criterion_group, criterion_main, Criterion};

fn now(c: &mut Criterion) {
    let mut g = c.benchmark_group("now");
    g.bench_function("Instant::now (baseline)", |b| b.iter(Instant::now));
    g.bench_function("clock::now", |b| b.iter(clock::now));
    g.finish();
}

/// One hour of backoff: 60 one-minute waits, alternating sync and async layers.
fn hour_of_backoff() {
    testing::run(async {
        let start = tokio::time::Instant::now();
        for round in 0..20 {
            unblock(|| clock::sleep(Duration::from_secs(60))).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            compute(move || {
                clock::sleep(Duration::from_secs(60));
                round
            })
            .await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
    });
}

fn virtual_hour(c: &mut Criterion) {
    let mut g = c.benchmark_group("virtual_hour");
    g.bench_function("1 h of sync+async backoff under testing::run", |b| {
        b.iter(hour_of_backoff)
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = now, virtual_hour
}
criterion_main!(benches);
