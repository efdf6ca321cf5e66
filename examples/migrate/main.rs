//! The main demo: a legacy blocking service, run as it was and then migrated.
//!
//! Run with: `cargo run --release --example migrate`
//!
//! The legacy service prices orders: for each order it calls a pricing service over TCP
//! with a blocking client (with a retry loop and `thread::sleep` backoff, as legacy code
//! does), then computes a digest of the order's line items (CPU work). The pricing
//! service is embedded: a thread-per-connection server on loopback that answers after a
//! fixed latency, like a remote service would.
//!
//! "before" runs the orders one after another, as the legacy sync caller did. "after"
//! runs the same code, unchanged, from async tasks: the blocking client through an
//! `Offloader` lane (bounded, with a timeout), the digest through `compute` on rayon.
//! The table shows requests, throughput, latency percentiles and the threads the
//! process used.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use async_bridge::{compute, Offloader};

/// The pricing service's latency per request.
const LATENCY: Duration = Duration::from_millis(5);
/// Orders in the workload.
const ORDERS: usize = 400;

// ---- the legacy code, unchanged by the migration -------------------------------------

/// Blocking client of the pricing service, with the legacy retry loop.
fn fetch_price(addr: SocketAddr, sku: u32) -> io::Result<u64> {
    let mut backoff = Duration::from_millis(1);
    for attempt in 0.. {
        match try_fetch_price(addr, sku) {
            Ok(price) => return Ok(price),
            Err(err) if attempt < 3 => {
                eprintln!("pricing attempt {attempt} failed: {err}; retrying");
                thread::sleep(backoff);
                backoff *= 2;
            }
            Err(err) => return Err(err),
        }
    }
    unreachable!()
}

fn try_fetch_price(addr: SocketAddr, sku: u32) -> io::Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    writeln!(stream, "PRICE {sku}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// CPU work: a digest of the order's line items (FNV-1a over generated data).
fn order_digest(order: usize) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..200_000u64 {
        let byte = (i ^ order as u64).wrapping_mul(0x9e37_79b9) as u8;
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// One request of the legacy service: price the order, then digest it.
fn handle_order(addr: SocketAddr, order: usize) -> io::Result<(u64, u64)> {
    let price = fetch_price(addr, order as u32)?;
    Ok((price, order_digest(order)))
}

// ---- the embedded pricing service ----------------------------------------------------

fn start_pricing_service() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_ok() {
                    let sku: u64 = line
                        .trim()
                        .trim_start_matches("PRICE ")
                        .parse()
                        .unwrap_or(0);
                    thread::sleep(LATENCY); // the remote service's latency
                    let _ = writeln!(&stream, "{}", 100 + sku % 900);
                }
            });
        }
    });
    Ok(addr)
}

// ---- measuring -------------------------------------------------------------------------

struct Run {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
    peak_threads: usize,
    checksum: u64,
}

fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn before(addr: SocketAddr) -> io::Result<Run> {
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(ORDERS);
    let mut checksum = 0u64;
    let mut peak_threads = threads_now();
    for order in 0..ORDERS {
        let t = Instant::now();
        let (price, digest) = handle_order(addr, order)?;
        latencies.push(t.elapsed());
        checksum = checksum.wrapping_add(price ^ digest);
        peak_threads = peak_threads.max(threads_now());
    }
    Ok(Run {
        name: "before: sync, one at a time",
        wall: start.elapsed(),
        latencies,
        peak_threads,
        checksum,
    })
}

fn after(addr: SocketAddr) -> io::Result<Run> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pricing = Offloader::builder("pricing")
            .max_concurrency(64)
            .max_queue(ORDERS)
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(io::Error::from)?;
        let start = Instant::now();
        let tasks: Vec<_> = (0..ORDERS)
            .map(|order| {
                let pricing = pricing.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let price = pricing
                        .run(move || fetch_price(addr, order as u32))
                        .await??;
                    let digest = compute(move || order_digest(order)).await;
                    Ok::<_, io::Error>((t.elapsed(), price ^ digest, threads_now()))
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(ORDERS);
        let mut checksum = 0u64;
        let mut peak_threads = 0;
        for task in tasks {
            let (latency, value, threads) = task.await.map_err(io::Error::other)??;
            latencies.push(latency);
            checksum = checksum.wrapping_add(value);
            peak_threads = peak_threads.max(threads);
        }
        Ok(Run {
            name: "after: async tasks + Offloader + compute",
            wall: start.elapsed(),
            latencies,
            peak_threads,
            checksum,
        })
    })
}

fn main() -> io::Result<()> {
    let addr = start_pricing_service()?;
    println!(
        "legacy order service: {ORDERS} orders, pricing service on {addr} answering in {LATENCY:?}\n"
    );
    let runs = [before(addr)?, after(addr)?];
    assert_eq!(
        runs[0].checksum, runs[1].checksum,
        "both runs compute the same prices"
    );

    println!(
        "{:<42} {:>8} {:>10} {:>11} {:>10} {:>10} {:>8}",
        "run", "requests", "wall", "req/s", "p50", "p99", "threads"
    );
    for run in &runs {
        let mut sorted = run.latencies.clone();
        sorted.sort();
        println!(
            "{:<42} {:>8} {:>10.1?} {:>11.0} {:>10.2?} {:>10.2?} {:>8}",
            run.name,
            run.latencies.len(),
            run.wall,
            run.latencies.len() as f64 / run.wall.as_secs_f64(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            run.peak_threads,
        )
    }
    let speedup = runs[0].wall.as_secs_f64() / runs[1].wall.as_secs_f64();
    println!("\nthroughput: {speedup:.1}x the legacy service, with the legacy code unchanged");
    println!("(threads include the embedded pricing server's per-connection threads)");
    Ok(())
}
