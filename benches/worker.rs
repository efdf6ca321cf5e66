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
//! Run with: `cargo bench --bench worker`. The figure that counts is the ratio of a
//! library row to its baseline row of the same group.

#[path = "support/mod.rs"]
mod support;

use support::{awaited, burst, runtime};

use std::sync::{Arc, Mutex};
use std::time::Instant;

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

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
