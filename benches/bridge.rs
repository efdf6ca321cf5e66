//! Trait bridges: each twin call beside the hand-written call it expands to, in the same
//! run:
//!
//! - `bridge_per_call`: one awaited call at a time on a `Worker`: `worker.call(|o|
//!   o.get(k))` (the baseline) vs the `#[bridge]` twin `worker.get(k)`, called directly
//!   and through an `Arc<dyn AsyncStore>`; and a borrowed argument: the hand-written
//!   `to_owned` + `call` vs the twin's `find(&str)`.
//! - `bridge_burst_10k`: 10,000 calls issued at once and joined, `Worker::call` vs twin;
//!   and, with no target, the twin vs the same `Worker::call` boxed as the twin's
//!   async-trait shape boxes its future (`bridge_burst_10k_vs_boxed`: what the twin costs
//!   beyond that box).
//! - `bridge_lane_per_call`: `Offloaded::run` (the baseline the lane carrier expands to)
//!   vs the twin over `Offloaded<T>`.
//! - `bridge_blocking`: from a plain thread, `Blocking::call(async |s| s.get(k).await)`
//!   vs the blocking twin `s.get(k)`.
//!
//! Method: criterion measures each row in turn (`iter_custom`, the same runtime and
//! object for both rows of a group). Because a shared 2-core machine drifts over a run,
//! each pair is then measured once more *interleaved*: 310 rounds (31 for the burst), each timing a batch of
//! the baseline and a batch of the twin in alternating order (ABBA), and the median
//! time per op (one call; one 10k burst for the burst row) of each side and their
//! ratio are printed at the end (`support::interleaved`, after a warm-up batch of each),
//! as `ratio bridge_<row> <x.xx>× target ≤ 1.05× ok|MISS`. The figure that counts is
//! that ratio of a twin row to its baseline.
//!
//! Run with: `cargo bench --bench bridge` (`ABBA_ONLY=1` skips the criterion rows).
#![allow(async_fn_in_trait)]

#[path = "support/mod.rs"]
mod support;

use support::{awaited, burst, pair, plain, runtime, untargeted, Target::AtMost};

use std::sync::Arc;

use async_bridge::{bridge, Blocking, Offloaded, Offloader, Worker};
use criterion::{criterion_group, BenchmarkId, Criterion};
use tokio::runtime::Runtime;

/// The legacy interface under test: tiny methods, so the bridge's own cost shows.
#[bridge(async = AsyncStore)]
pub trait Store {
    fn get(&self, key: u32) -> u64;
    fn find(&self, prefix: &str) -> usize;
}

struct Legacy(u64);

impl Store for Legacy {
    fn get(&self, key: u32) -> u64 {
        self.0 + u64::from(key)
    }
    fn find(&self, prefix: &str) -> usize {
        prefix.len()
    }
}

/// The async interface under test for the blocking direction.
#[bridge(blocking = BlockingRates)]
pub trait Rates {
    async fn get(&self, key: u32) -> u64;
}

struct Native(u64);

impl Rates for Native {
    async fn get(&self, key: u32) -> u64 {
        self.0 + u64::from(key)
    }
}

fn worker() -> Worker<Legacy> {
    Worker::builder("bench-store")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap()
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let worker = worker();
    let shared: Arc<dyn AsyncStore> = Arc::new(worker.clone());
    let mut g = c.benchmark_group("bridge_per_call");
    g.bench_function("Worker::call (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || worker.call(|o| o.get(7))))
    });
    g.bench_function("twin", |b| {
        b.iter_custom(|n| awaited(&rt, n, || worker.get(7)))
    });
    g.bench_function("twin via dyn", |b| {
        b.iter_custom(|n| awaited(&rt, n, || shared.get(7)))
    });
    g.bench_function("Worker::call, &str copied (baseline)", |b| {
        b.iter_custom(|n| {
            awaited(&rt, n, || {
                let prefix = "legacy".to_owned();
                worker.call(move |o| o.find(&prefix))
            })
        })
    });
    g.bench_function("twin, &str", |b| {
        b.iter_custom(|n| awaited(&rt, n, || worker.find("legacy")))
    });
    g.finish();
}

fn burst_10k(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = runtime();
    let worker = worker();
    let mut g = c.benchmark_group("bridge_burst_10k");
    g.bench_function(BenchmarkId::new("Worker::call (baseline)", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| worker.call(move |o| o.get(i as u32))))
    });
    g.bench_function(BenchmarkId::new("twin", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| worker.get(i as u32)))
    });
    g.finish();
}

fn lane_per_call(c: &mut Criterion) {
    let rt = runtime();
    let lane = Offloader::builder("bench-lane").build().unwrap();
    let shared = Offloaded::new(Legacy(1), lane);
    let mut g = c.benchmark_group("bridge_lane_per_call");
    g.bench_function("Offloaded::run (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || shared.run(|o| o.get(7))))
    });
    g.bench_function("twin", |b| {
        b.iter_custom(|n| awaited(&rt, n, || shared.get(7)))
    });
    g.finish();
}

fn blocking(c: &mut Criterion) {
    let rates = Blocking::new(Native(1));
    let mut g = c.benchmark_group("bridge_blocking");
    g.bench_function("Blocking::call (baseline)", |b| {
        b.iter_custom(|n| plain(n, || rates.call(async |r| r.get(7).await).unwrap()))
    });
    g.bench_function("twin", |b| {
        b.iter_custom(|n| plain(n, || rates.get(7).unwrap()))
    });
    g.finish();
}

fn interleaved_pass(rt: &Runtime) {
    support::interleaved_header();
    let worker = worker();
    pair(
        "bridge_per_call",
        2_000,
        AtMost(1.05),
        |n| awaited(rt, n, || worker.call(|o| o.get(7))),
        |n| awaited(rt, n, || worker.get(7)),
    );
    let shared: Arc<dyn AsyncStore> = Arc::new(worker.clone());
    pair(
        "bridge_per_call_dyn",
        2_000,
        AtMost(1.05),
        |n| awaited(rt, n, || worker.call(|o| o.get(7))),
        |n| awaited(rt, n, || shared.get(7)),
    );
    pair(
        "bridge_burst_10k",
        1,
        AtMost(1.05),
        |n| burst(rt, n, 10_000, |i| worker.call(move |o| o.get(i as u32))),
        |n| burst(rt, n, 10_000, |i| worker.get(i as u32)),
    );
    // A control: the same call boxed, as the twin's async-trait shape boxes its future.
    untargeted(
        "bridge_burst_10k_vs_boxed",
        1,
        |n| {
            burst(rt, n, 10_000, |i| {
                Box::pin(worker.call(move |o| o.get(i as u32)))
            })
        },
        |n| burst(rt, n, 10_000, |i| worker.get(i as u32)),
    );
    let lane = Offloaded::new(Legacy(1), Offloader::builder("bench-lane").build().unwrap());
    pair(
        "bridge_lane_per_call",
        2_000,
        AtMost(1.05),
        |n| awaited(rt, n, || lane.run(|o| o.get(7))),
        |n| awaited(rt, n, || lane.get(7)),
    );
    let rates = Blocking::new(Native(1));
    pair(
        "bridge_blocking",
        20_000,
        AtMost(1.05),
        |n| plain(n, || rates.call(async |r| r.get(7).await).unwrap()),
        |n| plain(n, || rates.get(7).unwrap()),
    );
}

criterion_group! {
    name = benches;
    config = support::config(15, 3);
    targets = per_call, burst_10k, lane_per_call, blocking
}

fn main() {
    if support::criterion_rows() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if support::measuring() {
        interleaved_pass(&runtime());
    }
}
