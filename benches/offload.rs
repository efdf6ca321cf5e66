//! Offloading, each path beside its raw baseline in the same run:
//!
//! - `per_call`: one awaited call at a time: `unblock` (also with the migration ledger
//!   on) and `Offloader::run` vs `tokio::task::spawn_blocking`; `compute` vs
//!   `rayon::spawn` + a `futures` oneshot.
//! - `burst_10k`: 10,000 calls issued at once and joined: `Offloader::run` vs
//!   `spawn_blocking`; `compute` and `ComputePool::run` vs `rayon::spawn` + oneshot.
//! - before the groups, the extra memory of 100,000 callers queued on one lane.
//!
//! Method: criterion measures each row in turn (`iter_custom`, the same runtime, a
//! multi-thread one with two workers, for every row; calls are awaited from
//! `Runtime::block_on` on the bench's main thread). Because a shared 2-core machine
//! drifts over a run, each pair that has a target is then measured once more
//! *interleaved* (`support::interleaved`): after one untimed warm-up batch of each side,
//! rounds each time the baseline and the library path in alternating order (ABBA), and
//! the median time per op of each side and their ratio are printed. The ratio is the
//! figure that counts, one line per target a script can grep:
//! `ratio <name> <x.xx>× target ≤ <t>× ok|MISS`:
//!
//! - `aa_spawn_blocking`, first: an A/A control, `spawn_blocking` on both sides (no
//!   target). How far it lands from 1.00× is the noise under the hop pairs that follow.
//! - `unblock_per_call` (310 rounds of 200 awaited calls) / `spawn_blocking`: ≤ 1.05×;
//! - `unblock_ledger_on` / `unblock` with the ledger off: ≤ 1.05×;
//! - `offloader_per_call` (limits and a timeout on) / `spawn_blocking`: ≤ 1.15×;
//! - `offloader_burst_10k` (31 rounds of one burst) / 10k `spawn_blocking`: ≤ 0.5×;
//! - `compute_burst_10k` / 10k `rayon::spawn` + `futures` oneshot: ≤ 1.1×.
//!
//! Then what a lane's drainer costs in CPU (it looks at its queue for up to 20 µs before
//! it waits): `idle_lane_cpu`, the CPU time of the whole process (every live thread's,
//! from `/proc/self/task/<tid>/schedstat`) over 1 s of real time after one call; and
//! `cpu_per_call`, the process's CPU time per awaited call (20,000 calls) through
//! `Offloader::run` and through `spawn_blocking`.
//!
//! Run with: `cargo bench --bench offload` (`ABBA_ONLY=1 cargo bench --bench offload`
//! skips the criterion rows and prints only the interleaved ratios).

#[path = "support/mod.rs"]
mod support;

use support::{awaited, burst, pair, runtime, Target::AtMost};

use std::time::Duration;

use async_bridge::{compute, unblock, ComputePool, Offloader};
use criterion::{criterion_group, BenchmarkId, Criterion};
use futures::channel::oneshot;

fn rayon_oneshot<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let lane = Offloader::builder("bench")
        .max_concurrency(8)
        .max_queue(1_000)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut g = c.benchmark_group("per_call");
    g.bench_function("spawn_blocking (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || tokio::task::spawn_blocking(|| 1)))
    });
    g.bench_function("unblock", |b| {
        b.iter_custom(|n| awaited(&rt, n, || unblock(|| 1)))
    });
    // The same hop with the migration ledger counting it (issue 14's cost target: within
    // 5% of the row above).
    g.bench_function("unblock, ledger on", |b| {
        async_bridge::ledger::enable();
        b.iter_custom(|n| awaited(&rt, n, || unblock(|| 1)));
        async_bridge::ledger::disable();
    });
    g.bench_function("Offloader::run (limits + timeout)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || lane.run(|| 1)))
    });
    g.bench_function("rayon::spawn + oneshot (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || rayon_oneshot(|| 1)))
    });
    g.bench_function("compute", |b| {
        b.iter_custom(|n| awaited(&rt, n, || compute(|| 1)))
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
    let pool = ComputePool::builder("burst").build().unwrap();
    let mut g = c.benchmark_group("burst_10k");
    g.bench_function(BenchmarkId::new("spawn_blocking (baseline)", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| tokio::task::spawn_blocking(move || i)))
    });
    g.bench_function(BenchmarkId::new("Offloader::run", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| lane.run(move || i)))
    });
    g.bench_function(
        BenchmarkId::new("rayon::spawn + oneshot (baseline)", N),
        |b| b.iter_custom(|n| burst(&rt, n, N, |i| rayon_oneshot(move || i))),
    );
    g.bench_function(BenchmarkId::new("compute", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| compute(move || i)))
    });
    g.bench_function(BenchmarkId::new("ComputePool::run", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| pool.run(move || i)))
    });
    g.finish();
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// 100,000 callers waiting on a lane whose one slot is held (`lane`), or, for the
/// baseline, 100,000 bare tasks each awaiting a oneshot (`bare`: the least a waiting
/// caller can cost). Returns the growth of the resident set while they wait.
fn queued_memory(scenario: &str) -> Option<u64> {
    const N: usize = 100_000;
    let rt = runtime();
    rt.block_on(async {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let lane = Offloader::builder("memory")
            .max_concurrency(1)
            .max_queue(N)
            .build()
            .unwrap();
        let holder = tokio::spawn(lane.run(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        }));
        started_rx.await.unwrap();
        let before = rss_bytes()?;
        let after = if scenario == "lane" {
            let callers: Vec<_> = (0..N).map(|i| tokio::spawn(lane.run(move || i))).collect();
            while lane.stats().queued < N {
                tokio::task::yield_now().await;
            }
            let after = rss_bytes()?;
            release_tx.send(()).unwrap();
            for c in callers {
                c.await.unwrap().unwrap();
            }
            after
        } else {
            let (senders, tasks): (Vec<_>, Vec<_>) = (0..N)
                .map(|_| {
                    let (tx, rx) = oneshot::channel::<usize>();
                    (tx, tokio::spawn(rx))
                })
                .unzip();
            tokio::task::yield_now().await;
            let after = rss_bytes()?;
            for (i, tx) in senders.into_iter().enumerate() {
                let _ = tx.send(i);
            }
            for t in tasks {
                let _ = t.await;
            }
            release_tx.send(()).unwrap();
            after
        };
        holder.await.unwrap().unwrap();
        Some(after.saturating_sub(before))
    })
}

/// Measures each memory scenario in a fresh process of this bench, so that neither
/// reuses the pages the other freed.
fn report_queued_memory() {
    if let Ok(scenario) = std::env::var("QUEUED_MEMORY_SCENARIO") {
        println!("{}", queued_memory(&scenario).unwrap_or(0));
        std::process::exit(0);
    }
    let measure = |scenario: &str| -> Option<u64> {
        let out = std::process::Command::new(std::env::current_exe().ok()?)
            .env("QUEUED_MEMORY_SCENARIO", scenario)
            .output()
            .ok()?;
        String::from_utf8(out.stdout)
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&b| b > 0)
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match (measure("lane"), measure("bare")) {
        (Some(lane), Some(bare)) => println!(
            "queued_memory: 100k callers queued on one Offloader (each a spawned task): \
             {:.1} MiB extra; 100k bare tasks awaiting a oneshot: {:.1} MiB; \
             the lane's own share: {} bytes per caller",
            mib(lane),
            mib(bare),
            lane.saturating_sub(bare) / 100_000
        ),
        _ => println!("queued_memory: /proc/self/statm not available"),
    }
}

criterion_group! {
    name = benches;
    config = support::config(20, 3);
    targets = per_call, burst_10k
}

/// The interleaved pass: each pair with a target, ABBA, and its ratio.
fn interleaved_pass() {
    const N: usize = 10_000;
    let rt = runtime();
    support::interleaved_header();
    let spawn_blocking = |n| awaited(&rt, n, || tokio::task::spawn_blocking(|| 1));
    support::control("aa_spawn_blocking", 2_000, spawn_blocking);
    pair(
        "unblock_per_call",
        2_000,
        AtMost(1.05),
        spawn_blocking,
        |n| awaited(&rt, n, || unblock(|| 1)),
    );
    pair(
        "unblock_ledger_on",
        2_000,
        AtMost(1.05),
        |n| awaited(&rt, n, || unblock(|| 1)),
        |n| {
            async_bridge::ledger::enable();
            let took = awaited(&rt, n, || unblock(|| 1));
            async_bridge::ledger::disable();
            took
        },
    );
    let lane = Offloader::builder("abba")
        .max_concurrency(8)
        .max_queue(1_000)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    pair(
        "offloader_per_call",
        2_000,
        AtMost(1.15),
        spawn_blocking,
        |n| awaited(&rt, n, || lane.run(|| 1)),
    );
    let lane = Offloader::builder("abba-burst")
        .max_concurrency(8)
        .max_queue(N)
        .build()
        .unwrap();
    pair(
        "offloader_burst_10k",
        1,
        AtMost(0.5),
        |n| burst(&rt, n, N, |i| tokio::task::spawn_blocking(move || i)),
        |n| burst(&rt, n, N, |i| lane.run(move || i)),
    );
    pair(
        "compute_burst_10k",
        1,
        AtMost(1.1),
        |n| burst(&rt, n, N, |i| rayon_oneshot(move || i)),
        |n| burst(&rt, n, N, |i| compute(move || i)),
    );
}

/// The CPU time of the whole process so far: the sum over its live threads (a
/// blocking-pool thread lives 10 s idle, longer than a measure here).
fn process_cpu() -> Duration {
    support::threads()
        .iter()
        .filter_map(|(tid, _)| support::task_cpu_time(*tid))
        .sum()
}

/// The CPU an idle lane costs over 1 s, and the CPU per awaited call of a lane and of
/// `spawn_blocking`.
fn lane_cpu(rt: &tokio::runtime::Runtime) {
    if support::task_cpu_time(std::process::id()).is_none() {
        println!("idle_lane_cpu: /proc/self/task not available");
        return;
    }
    let idle_after = |what: &dyn Fn()| {
        what();
        let before = process_cpu();
        std::thread::sleep(Duration::from_secs(1));
        (process_cpu() - before).as_secs_f64() * 1e6
    };
    let pool = idle_after(&|| rt.block_on(rt.spawn_blocking(|| ())).unwrap());
    let lane = Offloader::builder("idle").build().unwrap();
    let idle = idle_after(&|| rt.block_on(lane.run(|| ())).unwrap());
    println!(
        "idle_lane_cpu {idle:.1} µs over 1 s (the whole process; {pool:.1} µs after a \
         spawn_blocking call)"
    );
    const CALLS: u64 = 20_000;
    let per_call = |took: Duration| took.as_secs_f64() * 1e6 / CALLS as f64;
    let cpu_of = |run: &dyn Fn() -> Duration| {
        let before = process_cpu();
        let wall = run();
        (per_call(process_cpu() - before), per_call(wall))
    };
    let (lane_cpu, lane_wall) = cpu_of(&|| awaited(rt, CALLS, || lane.run(|| 1)));
    let (pool_cpu, pool_wall) =
        cpu_of(&|| awaited(rt, CALLS, || tokio::task::spawn_blocking(|| 1)));
    println!(
        "cpu_per_call Offloader::run {lane_cpu:.2} µs ({lane_wall:.2} µs wall), \
         spawn_blocking {pool_cpu:.2} µs ({pool_wall:.2} µs wall): process CPU per awaited call"
    );
}

fn main() {
    if support::criterion_rows() {
        report_queued_memory();
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if support::measuring() {
        interleaved_pass();
        if support::selected("lane_cpu") {
            lane_cpu(&runtime());
        }
    }
}
