//! A lane as a `tower::Service` beside the lane's own `run`, in the same run (feature
//! `tower`):
//!
//! - `per_call`: one awaited call at a time: `Offloader::run` (the baseline) vs
//!   `Service::call` after `poll_ready` on `lane.service(f)`, bare and under a
//!   `ServiceBuilder` with `load_shed` and `timeout`.
//! - `burst_10k`: 10,000 calls issued at once and joined: `Offloader::run` vs
//!   `Service::call` (each call reserves its place first).
//!
//! Method: criterion measures each row in turn; then each pair is measured once more
//! *interleaved* (`support::interleaved`: a warm-up batch of each, 310 rounds of a tenth
//! of a batch, or 31 of one burst, in ABBA order, medians per op), printed as `ratio tower_<row> <x.xx>× target ≤ 1.05× ok|MISS`.
//! The figure that counts is that ratio (issue 17: a service call within 5% of
//! `Offloader::run`).
//!
//! Run with: `cargo bench --features tower --bench tower` (`ABBA_ONLY=1` skips the
//! criterion rows).

#[path = "support/mod.rs"]
mod support;

use support::{awaited, burst, pair, runtime, Target::AtMost};

use std::time::Duration;

use async_bridge::Offloader;
use criterion::{criterion_group, BenchmarkId, Criterion};
use tower::{Service, ServiceBuilder, ServiceExt};

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let lane = Offloader::builder("bench")
        .max_concurrency(8)
        .max_queue(1_000)
        .build()
        .unwrap();
    let svc = lane.service(|n: u32| n);
    let layered = ServiceBuilder::new()
        .load_shed()
        .timeout(Duration::from_secs(10))
        .service(lane.service(|n: u32| n));
    let mut g = c.benchmark_group("per_call");
    g.bench_function("Offloader::run (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || lane.run(|| 1u32)))
    });
    g.bench_function("Service::call (lane.service)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || svc.clone().oneshot(1)))
    });
    g.bench_function("Service::call (load_shed + timeout)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || layered.clone().oneshot(1)))
    });
    g.finish();
}

fn burst_10k(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = runtime();
    let lane = Offloader::builder("burst")
        .max_concurrency(8)
        .max_queue(N)
        .build()
        .unwrap();
    let svc = lane.service(|i: usize| i);
    let mut g = c.benchmark_group("burst_10k");
    g.bench_function(BenchmarkId::new("Offloader::run (baseline)", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| lane.run(move || i)))
    });
    g.bench_function(BenchmarkId::new("Service::call (lane.service)", N), |b| {
        b.iter_custom(|n| {
            burst(&rt, n, N, |i| {
                let mut svc = svc.clone();
                async move {
                    // Reserve every place first, as a tower stack would.
                    std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                    svc.call(i).await
                }
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::config(20, 3);
    targets = per_call, burst_10k
}

fn interleaved_pass() {
    const N: usize = 10_000;
    let rt = runtime();
    support::interleaved_header();
    let lane = Offloader::builder("abba")
        .max_concurrency(8)
        .max_queue(N)
        .build()
        .unwrap();
    let svc = lane.service(|n: usize| n);
    pair(
        "tower_per_call",
        2_000,
        AtMost(1.05),
        |n| awaited(&rt, n, || lane.run(|| 1usize)),
        |n| awaited(&rt, n, || svc.clone().oneshot(1)),
    );
    pair(
        "tower_burst_10k",
        1,
        AtMost(1.05),
        |n| burst(&rt, n, N, |i| lane.run(move || i)),
        |n| burst(&rt, n, N, |i| svc.clone().oneshot(i)),
    );
}

fn main() {
    if support::criterion_rows() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if support::measuring() {
        interleaved_pass();
    }
}
