//! Thread-affine workers, each path beside its raw baseline in the same run:
//!
//! - `worker_per_call`: one awaited call at a time: `Worker::call` and
//!   `WorkerPool::call` vs `tokio::task::spawn_blocking`.
//! - `worker_burst_10k`: 10,000 calls issued at once and joined (mailbox 1024, so most
//!   callers wait for room): `Worker::call`, `WorkerPool::call` vs `spawn_blocking`.
//! - `sqlite_per_query` / `sqlite_burst_1k`: a real SQLite query (a primary-key lookup
//!   in a 1,000-row table) through a `Worker<Connection>` vs the common
//!   `Arc<Mutex<Connection>>` + `spawn_blocking` pattern.
//!
//! Method: criterion measures each row in turn. Because a shared 2-core machine drifts
//! over a run, each pair with a target is then measured once more *interleaved*
//! (`support::interleaved`): after one untimed warm-up batch of each side, rounds each
//! time the baseline and the worker in alternating order (ABBA); the medians per op and
//! their ratio are printed, the ratio as a line a script can grep,
//! `ratio <name> <x.xx>× target ≤ <t>× ok|MISS`:
//!
//! - `worker_per_call` (310 rounds of 200 awaited calls) / `spawn_blocking`: ≤ 1.0×;
//! - `worker_burst_10k` (31 rounds of one burst) / 10k `spawn_blocking`: ≤ 0.3×.
//!
//! Then `idle_worker_cpu`: the CPU time a worker thread uses over 1 s of real time from
//! one call on, the call included (after it the thread looks for a next call for up to
//! 50 µs, yielding, then sleeps: see `Worker::call`, "Waiting for the reply"), read from
//! `/proc/self/task/<tid>/schedstat`; and `worker_cpu_per_call`, its CPU time per
//! awaited call. (The peers users pick instead of a worker, `tokio-rusqlite` and
//! `async-sqlite`, are in `benches/peers.rs`.)
//!
//! Run with: `cargo bench --bench worker` (`ABBA_ONLY=1` skips the criterion rows).

#[path = "support/mod.rs"]
mod support;

use support::{awaited, burst, pair, runtime, Target::AtMost};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_bridge::{Worker, WorkerPool};
use criterion::{criterion_group, BenchmarkId, Criterion};
use rusqlite::Connection;

fn unit() -> std::io::Result<()> {
    Ok(())
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let worker = Worker::builder("bench").spawn(unit).unwrap();
    let pool = WorkerPool::builder("bench-pool")
        .workers(2)
        .spawn(unit)
        .unwrap();
    let mut g = c.benchmark_group("worker_per_call");
    g.bench_function("spawn_blocking (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || tokio::task::spawn_blocking(|| 1)))
    });
    g.bench_function("Worker::call", |b| {
        b.iter_custom(|n| awaited(&rt, n, || worker.call(|_| 1)))
    });
    g.bench_function("WorkerPool::call (2 workers)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || pool.call(|_| 1)))
    });
    g.finish();
}

fn burst_10k(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = runtime();
    let worker = Worker::builder("burst").spawn(unit).unwrap();
    let pool = WorkerPool::builder("burst-pool")
        .workers(2)
        .spawn(unit)
        .unwrap();
    let mut g = c.benchmark_group("worker_burst_10k");
    g.bench_function(BenchmarkId::new("spawn_blocking (baseline)", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| tokio::task::spawn_blocking(move || i)))
    });
    g.bench_function(BenchmarkId::new("Worker::call", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| worker.call(move |_| i)))
    });
    g.bench_function(BenchmarkId::new("WorkerPool::call (2 workers)", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| pool.call(move |_| i)))
    });
    g.finish();
}

/// A database file with 1,000 rows, removed when dropped.
struct Db(std::path::PathBuf);

impl Db {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "async-bridge-bench-worker-{}-{:?}.db",
            std::process::id(),
            Instant::now()
        ));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO items SELECT i, 'item-' || i FROM n;",
        )
        .unwrap();
        Db(path)
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        Connection::open(&self.0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// The query both sides run: a primary-key lookup through the statement cache.
fn lookup(conn: &Connection, id: usize) -> String {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM items WHERE id = ?1")
        .unwrap();
    stmt.query_row([(id % 1000 + 1) as i64], |row| row.get(0))
        .unwrap()
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let db = Db::new();
    let path = db.0.clone();
    let worker = Worker::builder("sqlite")
        .spawn(move || Connection::open(&path))
        .unwrap();
    let shared = Arc::new(Mutex::new(db.open().unwrap()));
    let mutexed = |i: usize| {
        let conn = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || lookup(&conn.lock().unwrap(), i))
    };

    let mut g = c.benchmark_group("sqlite_per_query");
    g.bench_function("Arc<Mutex<Connection>> + spawn_blocking (baseline)", |b| {
        b.iter_custom(|n| awaited(&rt, n, || mutexed(7)))
    });
    g.bench_function("Worker<Connection>::call", |b| {
        b.iter_custom(|n| awaited(&rt, n, || worker.call(|conn| lookup(conn, 7))))
    });
    g.finish();

    const N: usize = 1_000;
    let mut g = c.benchmark_group("sqlite_burst_1k");
    g.bench_function(
        BenchmarkId::new("Arc<Mutex<Connection>> + spawn_blocking (baseline)", N),
        |b| b.iter_custom(|n| burst(&rt, n, N, mutexed)),
    );
    g.bench_function(BenchmarkId::new("Worker<Connection>::call", N), |b| {
        b.iter_custom(|n| burst(&rt, n, N, |i| worker.call(move |conn| lookup(conn, i))))
    });
    g.finish();
    drop(worker);
    drop(shared);
    drop(db);
}

criterion_group! {
    name = benches;
    config = support::config(15, 3);
    targets = per_call, burst_10k, sqlite
}

/// The id of the calling thread, from `/proc/thread-self`.
fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// A worker whose object is its thread's id.
fn tid_worker(name: &str) -> Worker<Option<u32>> {
    Worker::builder(name)
        .spawn(|| Ok::<_, std::io::Error>(own_tid()))
        .unwrap()
}

/// The CPU time of an idle worker over 1 s, and its CPU time per awaited call.
fn worker_cpu(rt: &tokio::runtime::Runtime) {
    let worker = tid_worker("idle");
    let Some(tid) = rt.block_on(worker.call(|tid| *tid)).unwrap() else {
        println!("idle_worker_cpu: /proc/thread-self not available");
        return;
    };
    let cpu = || support::task_cpu_time(tid).unwrap_or_default();
    // Idle: one call, then a second of nothing (the call, and the look for a next one
    // that follows it, counted in).
    let before = cpu();
    rt.block_on(worker.call(|_| ())).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let idle = cpu() - before;
    println!(
        "idle_worker_cpu {:.1} µs over 1 s",
        idle.as_secs_f64() * 1e6
    );
    // Busy: 20,000 awaited calls one after another.
    const CALLS: u64 = 20_000;
    let before = cpu();
    let took = awaited(rt, CALLS, || worker.call(|_| 1));
    let busy = cpu() - before;
    println!(
        "worker_cpu_per_call {:.2} µs of worker CPU per awaited call ({:.2} µs wall per call)",
        busy.as_secs_f64() * 1e6 / CALLS as f64,
        took.as_secs_f64() * 1e6 / CALLS as f64
    );
}

/// The interleaved pass: each pair with a target, ABBA, and its ratio; then the CPU
/// time of a worker.
fn interleaved_pass() {
    const N: usize = 10_000;
    let rt = runtime();
    support::interleaved_header();
    let worker = Worker::builder("abba").spawn(unit).unwrap();
    pair(
        "worker_per_call",
        2_000,
        AtMost(1.0),
        |n| awaited(&rt, n, || tokio::task::spawn_blocking(|| 1)),
        |n| awaited(&rt, n, || worker.call(|_| 1)),
    );
    pair(
        "worker_burst_10k",
        1,
        AtMost(0.3),
        |n| burst(&rt, n, N, |i| tokio::task::spawn_blocking(move || i)),
        |n| burst(&rt, n, N, |i| worker.call(move |_| i)),
    );
    if support::selected("worker_cpu") {
        worker_cpu(&rt);
    }
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
