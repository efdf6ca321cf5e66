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
//! Method: criterion measures each row in turn. Because a shared 2-core machine drifts
//! over a run, the pair with a target is then measured once more *interleaved*
//! (`support::interleaved`): after one untimed warm-up batch of each side, 310 rounds each
//! time a batch of 2,000 calls of `Handle::block_on` on a kept two-worker multi-thread
//! runtime and 2,000 of `async_bridge::block_on`, both from the bench's main thread (a
//! plain thread), in alternating order (ABBA); the medians per call and their ratio are
//! printed, the ratio as a line a script can grep:
//! `ratio block_on_plain_thread <x.xx>× target ≤ 1.0× ok|MISS`; the same for a named
//! `Portal::block_on` (`portal_block_on_plain_thread`).
//! (`benches/peers.rs` sets `block_on` beside `pollster` and `futures::executor`.)
//!
//! Run with: `cargo bench --bench facade` (`ABBA_ONLY=1` skips the criterion rows).

#[path = "support/mod.rs"]
mod support;

use support::{pair, plain, runtime, Target::AtMost};

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

/// The interleaved pass: the pair with a target, ABBA, and its ratio.
fn interleaved_pass() {
    let kept = runtime();
    let handle = kept.handle().clone();
    let _ = block_on(async {}); // start the global portal outside the measurement
    support::interleaved_header();
    pair(
        "block_on_plain_thread",
        20_000,
        AtMost(1.0),
        |n| plain(n, || handle.block_on(async { black_box(1) })),
        |n| plain(n, || block_on(async { black_box(1) }).unwrap()),
    );
    // A named portal (its stats are counted on this path as on the global one's).
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    pair(
        "portal_block_on_plain_thread",
        20_000,
        AtMost(1.0),
        |n| plain(n, || handle.block_on(async { black_box(1) })),
        |n| plain(n, || portal.block_on(async { black_box(1) }).unwrap()),
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
