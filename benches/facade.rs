//! Blocking facades, each beside its raw baselines in the same run:
//!
//! - `plain_thread`: one trivial future at a time from a plain thread:
//!   `async_bridge::block_on` (global portal) and `Portal::block_on` vs
//!   `Handle::block_on` on a kept multi-thread runtime (the target: ≤ 1.1×), vs a
//!   thread-park executor written here (what `futures::executor::block_on` does; futures'
//!   `executor` feature is not enabled in this crate, so it stands in for it), vs the
//!   reqwest::blocking pattern (a background runtime thread fed by a channel, the reply
//!   on a oneshot).
//! - `plain_thread_yield`: the same with a future that yields once (one wake-up).
//! - `from_worker`: from a task on a multi-thread runtime: `block_on` vs the raw
//!   `block_in_place(|| handle.block_on(..))` it does there.
//!
//! - interleaved (printed at the end of a real bench run): `Portal::block_on` and
//!   `block_on` against `Handle::block_on`, 31 rounds of a batch of each in ABBA order,
//!   medians per call and their ratio: a shared 2-core machine drifts over a criterion
//!   run, so the ratio of one interleaved pass is the figure that counts (the target:
//!   ≤ 1.0×; the portal's stats are counted on this path).
//!
//! Run with: `cargo bench --bench facade`. The figure that counts is the ratio of a
//! library row to its baseline row of the same group.

#[path = "support/mod.rs"]
mod support;

use support::runtime;

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use async_bridge::{block_on, Portal};
use criterion::{criterion_group, Criterion};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static PARK_WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// A thread-park executor with a cached waker, as `futures::executor::block_on` is.
/// No tokio context: fine for the futures benched here, which need none.
fn park_block_on<F: Future>(future: F) -> F::Output {
    PARK_WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            thread::park();
        }
    })
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The reqwest::blocking pattern: a thread runs a runtime; callers send it futures over
/// a channel and wait for a oneshot reply.
struct Background {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Background {
    fn start() -> Background {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    tokio::spawn(job);
                }
            });
        });
        Background { jobs }
    }

    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = tx.send(future.await);
        });
        self.jobs.send(job).ok().unwrap();
        rx.blocking_recv().unwrap()
    }
}

fn plain_thread(c: &mut Criterion) {
    let kept = runtime();
    let handle = kept.handle().clone();
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    let background = Background::start();
    let _ = block_on(async {}); // start the global portal outside the measurement

    let mut group = c.benchmark_group("plain_thread");
    group.bench_function("block_on (global portal)", |b| {
        b.iter(|| block_on(async { black_box(1) }).unwrap())
    });
    group.bench_function("Portal::block_on", |b| {
        b.iter(|| portal.block_on(async { black_box(1) }).unwrap())
    });
    group.bench_function("baseline: Handle::block_on (kept runtime)", |b| {
        b.iter(|| handle.block_on(async { black_box(1) }))
    });
    group.bench_function("baseline: thread-park executor", |b| {
        b.iter(|| park_block_on(async { black_box(1) }))
    });
    group.bench_function("baseline: background thread + channel", |b| {
        b.iter(|| background.block_on(async { black_box(1) }))
    });
    group.finish();

    let mut group = c.benchmark_group("plain_thread_yield");
    group.bench_function("block_on (global portal)", |b| {
        b.iter(|| block_on(tokio::task::yield_now()).unwrap())
    });
    group.bench_function("baseline: Handle::block_on (kept runtime)", |b| {
        b.iter(|| handle.block_on(tokio::task::yield_now()))
    });
    group.finish();
}

/// Times `iters` facade calls made one after another by one task on `rt`'s workers.
fn in_a_task(rt: &Runtime, iters: u64, call: fn() -> i32) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(call());
            }
            start.elapsed()
        })
        .await
        .unwrap()
    })
}

fn from_worker(c: &mut Criterion) {
    let app = runtime();
    let _ = block_on(async {});
    let mut group = c.benchmark_group("from_worker");
    group.bench_function("block_on (global portal)", |b| {
        b.iter_custom(|iters| in_a_task(&app, iters, || block_on(async { 1 }).unwrap()))
    });
    group.bench_function("baseline: block_in_place + Handle::block_on", |b| {
        b.iter_custom(|iters| {
            in_a_task(&app, iters, || {
                let portal = Portal::global().unwrap().handle();
                tokio::task::block_in_place(|| Handle::block_on(portal, async { 1 }))
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config(20, 2);
    targets = plain_thread, from_worker
}

/// Times `iters` calls of `call` from the current (plain) thread.
fn plain(iters: u64, mut call: impl FnMut() -> i32) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(call());
    }
    start.elapsed()
}

/// `rounds` rounds of a batch of each side in ABBA order: the median per call of each.
fn interleaved(
    rounds: usize,
    batch: u64,
    mut baseline: impl FnMut(u64) -> Duration,
    mut library: impl FnMut(u64) -> Duration,
) -> (Duration, Duration) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(baseline(batch));
            b.push(library(batch));
        } else {
            b.push(library(batch));
            a.push(baseline(batch));
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2] / batch as u32
    };
    (median(a), median(b))
}

fn interleaved_pass() {
    const ROUNDS: usize = 31;
    const BATCH: u64 = 200_000;
    let kept = runtime();
    let handle = kept.handle().clone();
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    let _ = block_on(async {});
    println!("\ninterleaved A/B ({ROUNDS} rounds of {BATCH}, ABBA, medians):");
    let report = |name: &str, (baseline, library): (Duration, Duration)| {
        println!(
            "{name:<28} Handle::block_on {baseline:>8.1?}/op  library {library:>8.1?}/op  ratio {:.3}x",
            library.as_secs_f64() / baseline.as_secs_f64()
        );
    };
    report(
        "Portal::block_on",
        interleaved(
            ROUNDS,
            BATCH,
            |n| plain(n, || handle.block_on(async { black_box(1) })),
            |n| plain(n, || portal.block_on(async { black_box(1) }).unwrap()),
        ),
    );
    report(
        "block_on (global portal)",
        interleaved(
            ROUNDS,
            BATCH,
            |n| plain(n, || handle.block_on(async { black_box(1) })),
            |n| plain(n, || block_on(async { black_box(1) }).unwrap()),
        ),
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if std::env::args().any(|arg| arg == "--bench") {
        interleaved_pass();
    }
}
