//! The main demo: a legacy blocking inventory service, run as it was, then migrated.
//!
//! Run with: `cargo run --release --example migrate`
//!
//! The legacy service (`legacy.rs`) keeps stock and orders in SQLite, prices each order
//! by calling a pricing service over TCP (blocking client, retry loop with backoff),
//! digests each receipt (CPU), and answers sync callers one at a time. The pricing
//! service (`pricing.rs`) is embedded: a loopback server with a fixed latency, so the
//! demo needs nothing but cargo.
//!
//! Four runs of the same workload, same legacy functions, under the same closed-loop
//! load: [`CLIENTS`] clients, each sending an order and waiting for its answer before
//! sending the next, so the runs' latencies compare like with like:
//! 1. before: the legacy service, its clients threads that take turns on its one
//!    connection (a `Mutex<Inventory>`), as its sync callers always did;
//! 2. after: `migrated.rs`, one async task per client (Worker for the database,
//!    Offloader for the pricing client, compute for the digests);
//! 3. the old sync callers, unchanged, client threads calling the migrated service
//!    through `Blocking<AsyncInventory>`;
//! 4. bridged: the whole legacy service behind one `Worker`, through `AsyncOrders`, the
//!    async twin `#[bridge]` generates for its `Orders` trait. Runs 2 and 4 share their
//!    caller code, which holds an `Arc<dyn AsyncOrders>`: swapping the bridged legacy
//!    service for the migrated one changed no caller.
//!
//! Then the daily report, before and after. Thread counts leave out the embedded
//! pricing server's own threads; they are read from `/proc/self/task`, and shown as
//! "n/a" where there is no `/proc`.

mod legacy;
mod migrated;
mod pricing;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_bridge::{Blocking, Worker};
use legacy::{AsyncOrders, Inventory};
use migrated::AsyncInventory;

/// Orders in the workload.
const ORDERS: u32 = 400;
/// Concurrent clients in every run, each waiting for its answer before its next order.
const CLIENTS: u32 = 16;

fn order(i: u32) -> (u32, u32) {
    (i * 37 % legacy::ITEMS, 1 + i % 3)
}

/// The orders one client places, one after another.
fn orders_of(client: u32) -> impl Iterator<Item = u32> {
    (client..ORDERS).step_by(CLIENTS as usize)
}

struct Run {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
    /// `None` where threads cannot be counted (no `/proc`).
    peak_threads: Option<usize>,
}

/// What one client saw: each order's latency, and the most threads it counted.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    peak_threads: Option<usize>,
}

impl Sample {
    fn record(&mut self, latency: Duration) {
        self.latencies.push(latency);
        self.peak_threads = self.peak_threads.max(threads_now());
    }

    fn merge(mut self, other: Sample) -> Sample {
        self.latencies.extend(other.latencies);
        self.peak_threads = self.peak_threads.max(other.peak_threads);
        self
    }
}

/// Threads of this process, less the pricing server's; `None` without `/proc`.
fn threads_now() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let count = tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|name| !name.starts_with("pricing"))
                .unwrap_or(false)
        })
        .count();
    Some(count)
}

/// Joins client threads and merges what they saw.
fn join_clients(clients: Vec<std::thread::JoinHandle<io::Result<Sample>>>) -> io::Result<Sample> {
    let mut all = Sample::default();
    for client in clients {
        all = all.merge(client.join().expect("a client thread panicked")?);
    }
    Ok(all)
}

fn temp_db(tag: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("async-bridge-demo-{}-{tag}.db", std::process::id()));
    remove_db(&path);
    path
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn before(addr: SocketAddr, db: &std::path::Path) -> io::Result<(Run, (u64, u64), Duration)> {
    let service = Arc::new(Mutex::new(Inventory {
        conn: legacy::open_db(db).map_err(io::Error::other)?,
        pricing: addr,
    }));
    let start = Instant::now();
    let clients = (0..CLIENTS)
        .map(|client| {
            let service = Arc::clone(&service);
            std::thread::spawn(move || -> io::Result<Sample> {
                let mut sample = Sample::default();
                for i in orders_of(client) {
                    let (sku, qty) = order(i);
                    let t = Instant::now();
                    // One connection: the legacy service serves one caller at a time.
                    service.lock().unwrap().place_order(sku, qty)?;
                    sample.record(t.elapsed());
                }
                Ok(sample)
            })
        })
        .collect();
    let sample = join_clients(clients)?;
    let wall = start.elapsed();
    let t = Instant::now();
    let report = legacy::daily_report(&service.lock().unwrap().conn).map_err(io::Error::other)?;
    let report_time = t.elapsed();
    let run = Run {
        name: "before: legacy sync service",
        wall,
        latencies: sample.latencies,
        peak_threads: sample.peak_threads,
    };
    Ok((run, report, report_time))
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The async callers: one task per client, whatever serves the `dyn AsyncOrders`.
async fn async_callers(
    name: &'static str,
    service: Arc<dyn AsyncOrders>,
) -> io::Result<(Run, (u64, u64), Duration)> {
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                let mut sample = Sample::default();
                for i in orders_of(client) {
                    let (sku, qty) = order(i);
                    let t = Instant::now();
                    // The first `?` for the bridge (a `CallError`), the second for the
                    // service's own `io::Error`.
                    service.place_order(sku, qty).await??;
                    sample.record(t.elapsed());
                }
                Ok::<_, io::Error>(sample)
            })
        })
        .collect();
    let mut all = Sample::default();
    for client in clients {
        // The first `?` for the task (a `JoinError`), the second for the client's error.
        all = all.merge(client.await.map_err(io::Error::other)??);
    }
    let wall = start.elapsed();
    let t = Instant::now();
    let report = service.daily_report().await??;
    let report_time = t.elapsed();
    let run = Run {
        name,
        wall,
        latencies: all.latencies,
        peak_threads: all.peak_threads,
    };
    Ok((run, report, report_time))
}

fn after(addr: SocketAddr, db: &std::path::Path) -> io::Result<(Run, (u64, u64), Duration)> {
    // Built before entering the runtime: opening spawns the database worker, which
    // blocks its caller while the maker opens the database.
    let service: Arc<dyn AsyncOrders> = Arc::new(AsyncInventory::open(db, addr)?);
    runtime()?.block_on(async_callers(
        "after: async tasks (Worker, Offloader, compute)",
        service,
    ))
}

/// The first move of a migration by interface: the legacy service as it is, on a worker
/// thread of its own, called through the twin of its trait.
fn bridged(addr: SocketAddr, db: &std::path::Path) -> io::Result<(Run, (u64, u64), Duration)> {
    let path = db.to_owned();
    // `spawn` blocks until the maker has opened the database: outside the runtime.
    let legacy = Worker::builder("legacy-inventory").spawn(move || {
        legacy::open_db(&path).map(|conn| Inventory {
            conn,
            pricing: addr,
        })
    })?;
    let service: Arc<dyn AsyncOrders> = Arc::new(legacy);
    runtime()?.block_on(async_callers(
        "bridged: legacy service via #[bridge] twin",
        service,
    ))
}

fn sync_callers(addr: SocketAddr, db: &std::path::Path) -> io::Result<Run> {
    let service = Arc::new(Blocking::new(AsyncInventory::open(db, addr)?));
    let start = Instant::now();
    let clients = (0..CLIENTS)
        .map(|client| {
            let service = Arc::clone(&service);
            std::thread::spawn(move || -> io::Result<Sample> {
                let mut sample = Sample::default();
                for i in orders_of(client) {
                    let (sku, qty) = order(i);
                    let t = Instant::now();
                    // The old sync call, now through the facade: the first `?` for the
                    // facade (a `BlockOnError`), the second for the service's `io::Error`.
                    service.call(async |s| s.place_order(sku, qty).await)??;
                    sample.record(t.elapsed());
                }
                Ok(sample)
            })
        })
        .collect();
    let sample = join_clients(clients)?;
    Ok(Run {
        name: "old sync callers via Blocking<_>",
        wall: start.elapsed(),
        latencies: sample.latencies,
        peak_threads: sample.peak_threads,
    })
}

/// The IO-bound part alone: every order's pricing call, sync one at a time, then from
/// async tasks through the same kind of lane the migrated service uses.
fn pricing_only(addr: SocketAddr) -> io::Result<(Duration, Duration)> {
    let start = Instant::now();
    for i in 0..ORDERS {
        legacy::fetch_price(addr, order(i).0)?;
    }
    let sync = start.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lane = async_bridge::Offloader::builder("pricing")
        .max_concurrency(64)
        .max_queue(10_000)
        .build()?;
    let start = Instant::now();
    rt.block_on(async {
        let calls = (0..ORDERS).map(|i| lane.run(move || legacy::fetch_price(addr, order(i).0)));
        for price in futures::future::join_all(calls).await {
            price??;
        }
        Ok::<_, io::Error>(())
    })?;
    Ok((sync, start.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> io::Result<()> {
    // Count every crossing of the bridge by call site, to print at the end.
    async_bridge::ledger::enable();
    let addr = pricing::start()?;
    println!(
        "legacy inventory service: {ORDERS} orders; SQLite; pricing service on {addr} answering in {:?}\n",
        pricing::LATENCY
    );
    let dbs = [
        temp_db("before"),
        temp_db("after"),
        temp_db("sync"),
        temp_db("bridged"),
    ];
    let result = (|| {
        let (before, report_before, report_time_before) = before(addr, &dbs[0])?;
        let (after, report_after, report_time_after) = after(addr, &dbs[1])?;
        let sync = sync_callers(addr, &dbs[2])?;
        let (bridged, report_bridged, _) = bridged(addr, &dbs[3])?;
        let (io_before, io_after) = pricing_only(addr)?;
        assert_eq!(
            report_before, report_after,
            "both versions record the same orders"
        );
        // The same revenue (the digest folds orders in the order they were recorded).
        assert_eq!(
            report_before.0, report_bridged.0,
            "and so does the bridged one"
        );

        println!(
            "the same closed-loop load in every run: {CLIENTS} clients, each waiting for its \
             answer before sending its next order\n"
        );
        println!(
            "{:<48} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8}",
            "run", "requests", "wall", "req/s", "p50", "p99", "threads"
        );
        let p50_p99 = |run: &Run| {
            let mut sorted = run.latencies.clone();
            sorted.sort();
            (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
        };
        for run in [&before, &after, &sync, &bridged] {
            let (p50, p99) = p50_p99(run);
            let threads = run
                .peak_threads
                .map_or_else(|| "n/a".to_owned(), |n| n.to_string());
            println!(
                "{:<48} {:>8} {:>9.1?} {:>8.0} {:>9.2?} {:>9.2?} {:>8}",
                run.name,
                run.latencies.len(),
                run.wall,
                run.latencies.len() as f64 / run.wall.as_secs_f64(),
                p50,
                p99,
                threads,
            );
        }
        let ratio = |run: &Run| before.wall.as_secs_f64() / run.wall.as_secs_f64();
        println!(
            "\nthroughput vs the legacy service, {CLIENTS} clients each: {:.1}x from async \
             callers, {:.1}x from the old sync callers, {:.1}x bridged",
            ratio(&after),
            ratio(&sync),
            ratio(&bridged)
        );
        let ((b50, b99), (a50, a99)) = (p50_p99(&before), p50_p99(&after));
        println!(
            "latency at equal concurrency: p50 {b50:.1?} before, {a50:.1?} after; \
             p99 {b99:.1?} before, {a99:.1?} after"
        );
        println!(
            "IO-bound part alone ({ORDERS} pricing calls): {io_before:.1?} before, {io_after:.1?} after: {:.1}x",
            io_before.as_secs_f64() / io_after.as_secs_f64()
        );
        println!(
            "the whole request is bound by the one SQLite connection: its writes run one at a time"
        );
        println!(
            "daily report: {report_time_before:.1?} before, {report_time_after:.1?} after \
             (the same CPU work, moved off the executor to rayon; revenue {})",
            report_after.0
        );
        println!(
            "\nthe migration ledger: the bridge crossings the migrated runs still make, by \
             call site (each one is a piece of legacy code still to port)\n{}",
            async_bridge::ledger()
        );
        Ok(())
    })();
    dbs.iter().for_each(|db| remove_db(db));
    result
}
