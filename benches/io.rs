//! `Unblock<File>` beside its baselines, sequential 64 KiB calls over a 256 MiB file the
//! bench writes to `std::env::temp_dir()` (and deletes at the end):
//!
//! - `read`: `std::fs::File::read` (no runtime), `Unblock<File>`, smol's
//!   `blocking::Unblock<File>`, `tokio::fs::File`.
//! - `write`: the same four, each writing the whole file and flushing.
//!
//! Method: criterion measures each row in turn. Because a shared 2-core machine drifts
//! over a run, the same sides are then measured once more *interleaved*
//! (`support::interleaved_many`), throughput per round: a 64 MiB file is written, synced
//! and read once with `std` (so its pages are in the page cache and stay there; the
//! machine has the memory) before anything is timed; then, after one untimed warm-up
//! pass of every side, 31 rounds each time one whole sequential pass of every side
//! (open, read to the end; for writes: create, write 32 MiB in 64 KiB calls, flush, no
//! sync) in alternating order (forward, then reversed: ABBA), and the medians are
//! compared. Every async side runs on the same two-worker multi-thread runtime from
//! `Runtime::block_on`. The ratios are speeds (the baseline's median time over
//! `Unblock`'s), each a line a script can grep, `ratio <name> <x.xx>× target ≥ <t>×
//! ok|MISS`:
//!
//! - `read_64k_vs_std`, `read_4k_vs_std`: ≥ 0.95×; `read_64k_vs_blocking`,
//!   `read_4k_vs_blocking` (smol's `blocking::Unblock`): ≥ 1.0×; `read_64k_vs_tokio`,
//!   `read_4k_vs_tokio` (`tokio::fs::File`): ≥ 4×;
//! - `write_vs_std`: ≥ 0.95×; `write_vs_blocking`: ≥ 1.0× (`tokio::fs::File` printed
//!   beside them, no target).
//!
//! Run with: `cargo bench --bench io` (`ABBA_ONLY=1` skips the criterion rows).

#[path = "support/mod.rs"]
mod support;

use support::{interleaved_many, report, runtime, selected, Target::AtLeast, ROUNDS};

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use async_bridge::Unblock;
use criterion::{criterion_group, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEN: usize = 256 * 1024 * 1024;
const CALL: usize = 64 * 1024;

/// Deletes the bench files however the bench ends.
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn payload() -> Vec<u8> {
    (0..CALL).map(|i| (i % 251) as u8).collect()
}

fn generate(path: &Path) {
    let block = payload();
    let mut file = File::create(path).unwrap();
    for _ in 0..LEN / CALL {
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
}

fn check(total: usize) {
    assert_eq!(total, LEN, "read the whole file");
}

fn read(c: &mut Criterion, path: &Path) {
    let rt = runtime();
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(LEN as u64));

    group.bench_function("std", |b| {
        b.iter(|| {
            let mut file = File::open(path).unwrap();
            let mut buf = vec![0; CALL];
            let mut total = 0;
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += black_box(&buf[..n]).len();
            }
            check(total);
        })
    });

    group.bench_function("async_bridge::Unblock", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = Unblock::new(File::open(path).unwrap());
                let mut buf = vec![0; CALL];
                let mut total = 0;
                loop {
                    let n = file.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    total += black_box(&buf[..n]).len();
                }
                check(total);
            })
        })
    });

    group.bench_function("blocking::Unblock", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = blocking::Unblock::new(File::open(path).unwrap());
                let mut buf = vec![0; CALL];
                let mut total = 0;
                loop {
                    let n = futures::AsyncReadExt::read(&mut file, &mut buf)
                        .await
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                    total += black_box(&buf[..n]).len();
                }
                check(total);
            })
        })
    });

    group.bench_function("tokio::fs::File", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = tokio::fs::File::open(path).await.unwrap();
                let mut buf = vec![0; CALL];
                let mut total = 0;
                loop {
                    let n = file.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    total += black_box(&buf[..n]).len();
                }
                check(total);
            })
        })
    });
    group.finish();
}

fn write(c: &mut Criterion, path: &Path) {
    let rt = runtime();
    let block = payload();
    let mut group = c.benchmark_group("write");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(LEN as u64));

    group.bench_function("std", |b| {
        b.iter(|| {
            let mut file = File::create(path).unwrap();
            for _ in 0..LEN / CALL {
                file.write_all(&block).unwrap();
            }
            file.flush().unwrap();
        })
    });

    group.bench_function("async_bridge::Unblock", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = Unblock::new(File::create(path).unwrap());
                for _ in 0..LEN / CALL {
                    file.write_all(&block).await.unwrap();
                }
                file.flush().await.unwrap();
            })
        })
    });

    group.bench_function("blocking::Unblock", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = blocking::Unblock::new(File::create(path).unwrap());
                for _ in 0..LEN / CALL {
                    futures::AsyncWriteExt::write_all(&mut file, &block)
                        .await
                        .unwrap();
                }
                futures::AsyncWriteExt::flush(&mut file).await.unwrap();
            })
        })
    });

    group.bench_function("tokio::fs::File", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut file = tokio::fs::File::create(path).await.unwrap();
                for _ in 0..LEN / CALL {
                    file.write_all(&block).await.unwrap();
                }
                file.flush().await.unwrap();
            })
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let input = dir.join(format!("async-bridge-bench-read-{pid}"));
    let output = dir.join(format!("async-bridge-bench-write-{pid}"));
    let _files = TempFiles(vec![input.clone(), output.clone()]);
    generate(&input);
    read(c, &input);
    write(c, &output);
}

criterion_group!(io_benches, benches);

/// The interleaved pass's file sizes: read, and written.
const ABBA_READ: usize = 64 * 1024 * 1024;
const ABBA_WRITE: usize = 32 * 1024 * 1024;

/// One sequential pass over `path` in reads of `call` bytes: `std`, `Unblock`,
/// `blocking::Unblock` or `tokio::fs::File` (`side` 0 to 3). Returns its time.
fn read_pass(rt: &Runtime, path: &Path, call: usize, side: usize) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0; call];
    let mut total = 0;
    match side {
        0 => {
            let mut file = File::open(path).unwrap();
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += black_box(&buf[..n]).len();
            }
        }
        1 => rt.block_on(async {
            let mut file = Unblock::new(File::open(path).unwrap());
            loop {
                let n = file.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += black_box(&buf[..n]).len();
            }
        }),
        2 => rt.block_on(async {
            let mut file = blocking::Unblock::new(File::open(path).unwrap());
            loop {
                let n = futures::AsyncReadExt::read(&mut file, &mut buf)
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                total += black_box(&buf[..n]).len();
            }
        }),
        _ => rt.block_on(async {
            let mut file = tokio::fs::File::open(path).await.unwrap();
            loop {
                let n = file.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += black_box(&buf[..n]).len();
            }
        }),
    }
    assert_eq!(total, ABBA_READ, "read the whole file");
    start.elapsed()
}

/// One pass writing `ABBA_WRITE` bytes to `path` in 64 KiB calls and flushing, with the
/// same four sides.
fn write_pass(rt: &Runtime, path: &Path, block: &[u8], side: usize) -> Duration {
    let start = Instant::now();
    let calls = ABBA_WRITE / block.len();
    match side {
        0 => {
            let mut file = File::create(path).unwrap();
            for _ in 0..calls {
                file.write_all(block).unwrap();
            }
            file.flush().unwrap();
        }
        1 => rt.block_on(async {
            let mut file = Unblock::new(File::create(path).unwrap());
            for _ in 0..calls {
                file.write_all(block).await.unwrap();
            }
            file.flush().await.unwrap();
        }),
        2 => rt.block_on(async {
            let mut file = blocking::Unblock::new(File::create(path).unwrap());
            for _ in 0..calls {
                futures::AsyncWriteExt::write_all(&mut file, block)
                    .await
                    .unwrap();
            }
            futures::AsyncWriteExt::flush(&mut file).await.unwrap();
        }),
        _ => rt.block_on(async {
            let mut file = tokio::fs::File::create(path).await.unwrap();
            for _ in 0..calls {
                file.write_all(block).await.unwrap();
            }
            file.flush().await.unwrap();
        }),
    }
    start.elapsed()
}

/// Measures the four sides interleaved; returns their medians (seconds per pass).
fn four_way(mut pass: impl FnMut(usize) -> Duration) -> Vec<f64> {
    let pass = std::cell::RefCell::new(&mut pass);
    let mut sides: Vec<Box<dyn FnMut(u64) -> Duration + '_>> = (0..4)
        .map(|side| {
            let pass = &pass;
            Box::new(move |_| (pass.borrow_mut())(side)) as Box<dyn FnMut(u64) -> Duration>
        })
        .collect();
    let mut refs: Vec<&mut dyn FnMut(u64) -> Duration> =
        sides.iter_mut().map(|s| &mut **s as _).collect();
    interleaved_many(ROUNDS, 1, &mut refs)
}

fn print_four(name: &str, m: &[f64], bytes: usize) {
    let mib = |t: f64| bytes as f64 / t / (1024.0 * 1024.0);
    println!(
        "  {name}: std {:.0} MiB/s, Unblock {:.0} MiB/s, blocking::Unblock {:.0} MiB/s, tokio::fs {:.0} MiB/s",
        mib(m[0]),
        mib(m[1]),
        mib(m[2]),
        mib(m[3])
    );
}

/// The interleaved pass (see the header for the method).
fn interleaved_pass() {
    let rt = runtime();
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let input = dir.join(format!("async-bridge-abba-read-{pid}"));
    let output = dir.join(format!("async-bridge-abba-write-{pid}"));
    let _files = TempFiles(vec![input.clone(), output.clone()]);
    let block = payload();
    {
        let mut file = File::create(&input).unwrap();
        for _ in 0..ABBA_READ / CALL {
            file.write_all(&block).unwrap();
        }
        file.sync_all().unwrap();
    }
    // Read once before anything is timed: every side then reads from the page cache.
    std::io::copy(&mut File::open(&input).unwrap(), &mut std::io::sink()).unwrap();
    support::interleaved_header();
    for (label, call) in [("64k", 64 * 1024), ("4k", 4 * 1024)] {
        let name = format!("read_{label}");
        if !selected(&name) {
            continue;
        }
        let m = four_way(|side| read_pass(&rt, &input, call, side));
        print_four(&name, &m, ABBA_READ);
        report(&format!("{name}_vs_std"), m[0], m[1], AtLeast(0.95));
        report(&format!("{name}_vs_blocking"), m[2], m[1], AtLeast(1.0));
        report(&format!("{name}_vs_tokio"), m[3], m[1], AtLeast(4.0));
    }
    if selected("write") {
        let m = four_way(|side| write_pass(&rt, &output, &block, side));
        print_four("write", &m, ABBA_WRITE);
        report("write_vs_std", m[0], m[1], AtLeast(0.95));
        report("write_vs_blocking", m[2], m[1], AtLeast(1.0));
    }
}

fn main() {
    if support::criterion_rows() {
        io_benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // Not under `cargo test --benches` / `--list`: only a real bench run measures.
    if support::measuring() {
        interleaved_pass();
    }
}
