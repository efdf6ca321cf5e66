//! What the migration ledger costs: each crossing with the ledger on beside the same
//! crossing with it off, in the same run (issue 14's target: the `unblock` hop with the
//! ledger on within 5% of it off):
//!
//! - `ledger_unblock`: one awaited `unblock(|| ..)` at a time.
//! - `ledger_lane`: one awaited `Offloader::run` at a time.
//! - `ledger_twin`: one awaited `#[bridge]` twin call on a `Worker` (the ledger learns
//!   the twin's site too).
//! - `ledger_facade`: `Portal::block_on` of a ready future from a plain thread (with the
//!   ledger on, every call reads the clock twice: about 35 ns a read here).
//!
//! Method: criterion measures each row in turn; because a shared 2-core machine drifts
//! over a run, each pair is then measured once more *interleaved*: 31 rounds, each timing
//! a batch with the ledger off and a batch with it on in alternating order (ABBA),
//! switching the process-wide ledger between batches, and the median time per call of
//! each side and their ratio are printed at the end. The figure that counts is that
//! ratio.
//!
//! Run with: `cargo bench --bench ledger`.

#[path = "support/mod.rs"]
mod support;

use support::{awaited, runtime};

use std::hint::black_box;
use std::time::{Duration, Instant};

use async_bridge::{bridge, ledger, unblock, Offloader, Portal, Worker};
use criterion::{criterion_group, Criterion};
use tokio::runtime::Runtime;

/// A legacy interface with one tiny method, so the bridge's own cost shows.
#[bridge(async = AsyncStore)]
pub trait Store {
    fn get(&self, key: u32) -> u64;
}

struct Legacy(u64);

impl Store for Legacy {
    fn get(&self, key: u32) -> u64 {
        self.0 + u64::from(key)
    }
}

fn worker() -> Worker<Legacy> {
    Worker::builder("bench-ledger")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap()
}

/// Runs `f` with the ledger switched `on`.
fn with_ledger<R>(on: bool, f: impl FnOnce() -> R) -> R {
    if on {
        ledger::enable();
    } else {
        ledger::disable();
    }
    let out = f();
    ledger::disable();
    out
}

/// Times `iters` calls of `call` from the current (plain) thread.
fn plain(iters: u64, mut call: impl FnMut() -> u32) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(call());
    }
    start.elapsed()
}

fn rows(c: &mut Criterion) {
    let rt = runtime();
    let lane = Offloader::builder("bench-ledger").build().unwrap();
    let store = worker();
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    for on in [false, true] {
        let state = if on { "ledger on" } else { "ledger off" };
        let mut g = c.benchmark_group("ledger");
        g.bench_function(format!("unblock, {state}"), |b| {
            b.iter_custom(|n| with_ledger(on, || awaited(&rt, n, || unblock(|| 1))))
        });
        g.bench_function(format!("Offloader::run, {state}"), |b| {
            b.iter_custom(|n| with_ledger(on, || awaited(&rt, n, || lane.run(|| 1))))
        });
        g.bench_function(format!("twin, {state}"), |b| {
            b.iter_custom(|n| with_ledger(on, || awaited(&rt, n, || store.get(7))))
        });
        g.bench_function(format!("Portal::block_on, {state}"), |b| {
            b.iter_custom(|n| {
                with_ledger(on, || plain(n, || portal.block_on(async { 1 }).unwrap()))
            })
        });
        g.finish();
    }
}

/// The interleaved A/B pass: `rounds` rounds of a batch with the ledger off and one with
/// it on, in ABBA order. Returns the median per-call time of each side.
fn interleaved(
    rounds: usize,
    batch: u64,
    mut run: impl FnMut(u64) -> Duration,
) -> (Duration, Duration) {
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for ledger_on in order {
            let took = with_ledger(ledger_on, || run(batch));
            if ledger_on {
                on.push(took);
            } else {
                off.push(took);
            }
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2] / batch as u32
    };
    (median(off), median(on))
}

fn report(name: &str, (off, on): (Duration, Duration)) {
    println!(
        "{name:<20} ledger off {off:>10.2?}/op  on {on:>10.2?}/op  ratio {:.3}x",
        on.as_secs_f64() / off.as_secs_f64()
    );
}

fn interleaved_pass(rt: &Runtime) {
    const ROUNDS: usize = 31;
    println!("\ninterleaved A/B ({ROUNDS} rounds, ABBA, medians):");
    report(
        "unblock",
        interleaved(ROUNDS, 2_000, |n| awaited(rt, n, || unblock(|| 1))),
    );
    let lane = Offloader::builder("bench-ledger").build().unwrap();
    report(
        "Offloader::run",
        interleaved(ROUNDS, 2_000, |n| awaited(rt, n, || lane.run(|| 1))),
    );
    let store = worker();
    report(
        "twin",
        interleaved(ROUNDS, 2_000, |n| awaited(rt, n, || store.get(7))),
    );
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    report(
        "Portal::block_on",
        interleaved(ROUNDS, 200_000, |n| {
            plain(n, || portal.block_on(async { 1 }).unwrap())
        }),
    );
}

criterion_group! {
    name = benches;
    config = support::config(15, 2);
    targets = rows
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if std::env::args().any(|arg| arg == "--bench") {
        interleaved_pass(&runtime());
    }
}
