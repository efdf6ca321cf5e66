//! Helpers shared by the benches (each bench uses some of them).
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::future::join_all;
use tokio::runtime::Runtime;

/// The runtime every bench measures on: multi-thread, two workers, as on a 2-core box.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Times `iters` sequential awaits of `call()` inside the runtime.
pub fn awaited<F, Fut>(rt: &Runtime, iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(call().await);
        }
        start.elapsed()
    })
}

/// Times `iters` bursts of `n` calls issued at once and joined.
pub fn burst<F, Fut>(rt: &Runtime, iters: u64, n: usize, call: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(join_all((0..n).map(&call)).await);
        }
        start.elapsed()
    })
}

/// Short runs (CI compiles the benches; people run them): `samples` samples over
/// `seconds` after half a second of warm-up.
pub fn config(samples: usize, seconds: u64) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(seconds))
        .configure_from_args()
}
