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
//! over a run, each pair is then measured once more *interleaved*: 310 rounds, each timing
//! a tenth of a batch with the ledger off and a tenth with it on in alternating order (ABBA),
//! switching the process-wide ledger between batches (`support::interleaved`, after a
//! warm-up batch of each), and the median time per call of each side and their ratio are
//! printed at the end as `ratio ledger_<row> <x.xx>× target ≤ 1.05× ok|MISS`. The figure
//! that counts is that ratio.
//!
//! Run with: `cargo bench --bench ledger` (`ABBA_ONLY=1` skips the criterion rows).

#[path = "support/mod.rs"]
mod support;

use support::{awaited, pair, plain, runtime, Target::AtMost};

use std::time::Duration;

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

/// One pair: the same calls with the ledger off (baseline) and on, interleaved.
fn ledger_pair(name: &str, batch: u64, mut run: impl FnMut(u64) -> Duration) {
    let run = std::cell::RefCell::new(&mut run);
    pair(
        name,
        batch,
        AtMost(1.05),
        |n| with_ledger(false, || (run.borrow_mut())(n)),
        |n| with_ledger(true, || (run.borrow_mut())(n)),
    );
}

fn interleaved_pass(rt: &Runtime) {
    support::interleaved_header();
    ledger_pair("ledger_unblock", 2_000, |n| {
        awaited(rt, n, || unblock(|| 1))
    });
    let lane = Offloader::builder("bench-ledger").build().unwrap();
    ledger_pair("ledger_lane", 2_000, |n| awaited(rt, n, || lane.run(|| 1)));
    let store = worker();
    ledger_pair("ledger_twin", 2_000, |n| awaited(rt, n, || store.get(7)));
    let portal = Portal::builder().worker_threads(2).build().unwrap();
    ledger_pair("ledger_facade", 20_000, |n| {
        plain(n, || portal.block_on(async { 1 }).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = support::config(15, 2);
    targets = rows
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
