//! `Unblock<File>` beside its baselines, sequential 64 KiB calls over a 256 MiB file the
//! bench writes to `std::env::temp_dir()` (and deletes at the end):
//!
//! - `read`: `std::fs::File::read` (no runtime), `Unblock<File>`, smol's
//!   `blocking::Unblock<File>`, `tokio::fs::File`.
//! - `write`: the same four, each writing the whole file and flushing.
//!
//! Run with: `cargo bench --bench io`. The figures that count are the ratios to the `std`
//! row of the same group (targets: ≥ 0.9× std, ≥ 1.0× `blocking::Unblock`, ≥ 4×
//! `tokio::fs::File` in throughput).

#[path = "support/mod.rs"]
mod support;

use support::runtime;

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

fn main() {
    io_benches();
    Criterion::default().configure_from_args().final_summary();
}
