//! The library beside what users would pick instead of it, in the same run:
//!
//! - `sqlite_awaited`, `sqlite_burst_1k`, `sqlite_burst_10k`: `SELECT ?1` on an
//!   in-memory SQLite database through a `Worker<rusqlite::Connection>`, through
//!   `tokio-rusqlite` (0.7, `Connection::call_unwrap`) and through `async-sqlite` (0.5,
//!   `Client::conn`), all three on rusqlite 0.37 over one bundled SQLite: 2,000 awaited
//!   calls a batch, or one burst of 1,000 / 10,000 calls issued at once and joined. The
//!   ratio is the worker's speed over the *faster* peer's (the peer's median time over
//!   the worker's). Targets: ≥ 1.1× awaited, ≥ 1.15× in bursts.
//! - `offloader_vs_blocking_unblock`: `Offloader::run` (limits and a timeout on) vs
//!   smol's `blocking::unblock`, 2,000 awaited calls a batch. DESIGN.md sets no target
//!   against this peer; the line carries the target against `spawn_blocking` (≤ 1.15×).
//! - `block_on_vs_pollster`, `block_on_vs_futures_executor`: `async_bridge::block_on`
//!   vs `pollster::block_on` and `futures::executor::block_on`, 20,000 calls a batch of
//!   a future that needs no runtime, from the bench's main thread. Those two executors
//!   enter no tokio context (a future that uses a tokio timer or `tokio::spawn` panics
//!   under them), so they are the floor; no target (`target none`).
//!
//! Method (as in every bench of this crate): one untimed warm-up batch of each side,
//! then 310 rounds each timing a tenth of a batch of every side (31 rounds of one burst
//! for the bursts) in alternating order (forward on
//! even rounds, reversed on odd ones: ABBA); the medians per op are printed and their
//! ratio as a line a script can grep, `ratio <name> <x.xx>× target ≥ <t>× ok|MISS`.
//! Every async side runs on the same multi-thread runtime with two workers, awaited from
//! `Runtime::block_on` on the main thread. There are no criterion rows here: the
//! interleaved pass is the measurement.
//!
//! Run with: `cargo bench --bench peers` (`ABBA_FILTER=sqlite` runs only the pairs whose
//! name contains `sqlite`).

#[path = "support/mod.rs"]
mod support;

use support::{
    awaited, burst, interleaved_many, pair, plain, report, runtime, selected, untargeted, Target,
    ROUNDS,
};

use std::hint::black_box;
use std::time::Duration;

use async_bridge::{block_on, Offloader, Worker};
use rusqlite::Connection;
use tokio::runtime::Runtime;

/// The query every side runs: one round trip through SQLite's VM, cached statement.
fn select(conn: &Connection, i: usize) -> i64 {
    conn.prepare_cached("SELECT ?1")
        .unwrap()
        .query_row([i as i64], |row| row.get(0))
        .unwrap()
}

/// Measures the worker and both peers interleaved, then reports the worker against the
/// faster peer. `batch`: the ops of one round; `run(side, n)`: times `n` ops of `side`
/// (0 the worker, 1 tokio-rusqlite, 2 async-sqlite).
fn three_way(name: &str, batch: u64, target: f64, mut run: impl FnMut(usize, u64) -> Duration) {
    if !selected(name) {
        return;
    }
    // Three sides over one `run`: each borrows it only while it times its batch.
    let shared = std::cell::RefCell::new(&mut run);
    let mut sides: Vec<Box<dyn FnMut(u64) -> Duration + '_>> = Vec::new();
    for k in 0..3 {
        let shared = &shared;
        sides.push(Box::new(move |n| (shared.borrow_mut())(k, n)));
    }
    let mut refs: Vec<&mut dyn FnMut(u64) -> Duration> =
        sides.iter_mut().map(|s| &mut **s as _).collect();
    let m = interleaved_many(ROUNDS, batch, &mut refs);
    let (worker, trs, asq) = (m[0], m[1], m[2]);
    let (peer, which) = if trs <= asq {
        (trs, "tokio-rusqlite")
    } else {
        (asq, "async-sqlite")
    };
    println!(
        "  {name}: worker {:.2} µs/op, tokio-rusqlite {:.2} µs/op, async-sqlite {:.2} µs/op (faster peer: {which})",
        worker * 1e6,
        trs * 1e6,
        asq * 1e6
    );
    report(name, peer, worker, Target::AtLeast(target));
}

fn sqlite(rt: &Runtime) {
    let worker = Worker::builder("sqlite")
        .spawn(Connection::open_in_memory)
        .unwrap();
    let trs = rt
        .block_on(tokio_rusqlite::Connection::open_in_memory())
        .unwrap();
    let asq = rt
        .block_on(async_sqlite::ClientBuilder::new().open())
        .unwrap();
    let call = |side: usize, i: usize| {
        let (worker, trs, asq) = (&worker, &trs, &asq);
        async move {
            match side {
                0 => worker.call(move |c| select(c, i)).await.unwrap(),
                1 => trs.call_unwrap(move |c| select(c, i)).await,
                _ => asq.conn(move |c| Ok(select(c, i))).await.unwrap(),
            }
        }
    };
    three_way("sqlite_awaited", 2_000, 1.1, |side, n| {
        awaited(rt, n, || call(side, 7))
    });
    for (name, n) in [("sqlite_burst_1k", 1_000), ("sqlite_burst_10k", 10_000)] {
        three_way(name, 1, 1.15, |side, iters| {
            burst(rt, iters, n, |i| call(side, i))
        });
    }
}

fn offloader(rt: &Runtime) {
    let lane = Offloader::builder("peers")
        .max_concurrency(8)
        .max_queue(1_000)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    pair(
        "offloader_vs_blocking_unblock",
        2_000,
        Target::AtMost(1.15),
        |n| awaited(rt, n, || blocking::unblock(|| 1)),
        |n| awaited(rt, n, || lane.run(|| 1)),
    );
}

fn executors() {
    let _ = block_on(async {}); // start the global portal outside the measurement
    let ours = |n| plain(n, || block_on(async { black_box(1) }).unwrap());
    for (name, peer) in [
        (
            "block_on_vs_pollster",
            (|| pollster::block_on(async { black_box(1) })) as fn() -> i32,
        ),
        ("block_on_vs_futures_executor", || {
            futures::executor::block_on(async { black_box(1) })
        }),
    ] {
        untargeted(name, 20_000, |n| plain(n, peer), ours);
    }
}

fn main() {
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if !support::measuring() {
        return;
    }
    let rt = runtime();
    support::interleaved_header();
    sqlite(&rt);
    offloader(&rt);
    executors();
}
