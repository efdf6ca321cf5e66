//! `Unblock<File>` reads what the page cache holds on the caller's thread (Linux,
//! `preadv2` with `RWF_NOWAIT`), and sends a read to a blocking thread only when the
//! kernel would wait for the disk: a cached file is read while the blocking pool is full,
//! positions stay exact, a file evicted from memory waits for a blocking thread, and a
//! task reading a cached file to its end lets the other tasks of its worker run.
//!
//! The files live in `CARGO_TARGET_TMPDIR` (under `target/`), whose file system reads
//! without waiting (ext4, xfs, btrfs); on one that cannot (tmpfs), `Unblock<File>` reads
//! on a blocking thread, and these tests say so instead of passing.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod support;

use std::fs::File;
use std::future::Future;
use std::io::IoSliceMut;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use async_bridge::Unblock;
use rustix::io::{Errno, ReadWriteFlags};
use support::{
    hold_blocking_pool, one_blocking_thread, pattern, within_a_minute, TempFile as Temp,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt};

impl Temp {
    /// A file under `target/`, deleted on drop.
    fn with(name: &str, data: &[u8]) -> Self {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let temp = Temp::new(dir, "unblock-cached", name, data);
        assert!(
            reads_cached(&temp.open(), 0),
            "the file system of {} cannot read without waiting (RWF_NOWAIT): \
             Unblock<File> reads on a blocking thread there, and these tests cannot run",
            dir.display()
        );
        temp
    }

    fn open(&self) -> File {
        File::open(&self.0).unwrap()
    }

    /// Writes the file out and drops its pages from the page cache. (Not checked here: a
    /// read that finds no page may start reading the file in, even with `RWF_NOWAIT`.)
    fn evict(&self) {
        let file = self.open();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
}

/// Runs `f` as [`within_a_minute`] does, while no other test of this file runs: each of
/// them reads or writes megabytes on both cores, and a test that wants the kernel to
/// find a page missing fails its tries far more often beside them (see
/// `a_file_out_of_memory_waits_for_a_blocking_thread`; load from outside the process is
/// its own matter).
fn alone<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static ALONE: Mutex<()> = Mutex::new(());
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    within_a_minute(f)
}

/// Whether the page cache holds the byte at `at` (a read that never waits, and moves no
/// position).
fn reads_cached(file: &File, at: u64) -> bool {
    let mut byte = [0];
    match rustix::io::preadv2(
        file,
        &mut [IoSliceMut::new(&mut byte)],
        at,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => n == 1,
        Err(Errno::AGAIN) => false,
        Err(err) => panic!("preadv2(RWF_NOWAIT): {err}"),
    }
}

#[test]
fn a_cached_file_is_read_while_the_blocking_pool_is_full() {
    alone(|| {
        let data = pattern(3 * 1024 * 1024 + 17);
        let temp = Temp::with("full-pool", &data);
        let rt = one_blocking_thread();
        let held = hold_blocking_pool(&rt);
        rt.block_on(async {
            // Every size: small reads served from a chunk, large ones straight into the
            // caller's buffer, and reads larger than a chunk.
            let mut file = Unblock::new(temp.open());
            let mut got = vec![0; 100];
            file.read_exact(&mut got).await.unwrap();
            let mut large = vec![0; 200 * 1024];
            file.read_exact(&mut large).await.unwrap();
            got.extend_from_slice(&large);
            let mut huge = vec![0; 1024 * 1024 + 3];
            file.read_exact(&mut huge).await.unwrap();
            got.extend_from_slice(&huge);
            file.read_to_end(&mut got).await.unwrap();
            assert!(got == data, "the bytes of the file, in order");
            assert_eq!(file.read(&mut [0; 8]).await.unwrap(), 0, "at its end");

            // Lines, through `AsyncBufRead`.
            let mut lines = Unblock::new(temp.open());
            let mut first = Vec::new();
            lines.read_until(200, &mut first).await.unwrap();
            let end = data.iter().position(|&b| b == 200).unwrap();
            assert_eq!(first, data[..=end]);
        });
        // The blocking thread back: a seek is a hop, and it sees the exact position.
        drop(held);
        rt.block_on(async {
            let mut file = Unblock::new(temp.open());
            let mut ten = [0; 10];
            file.read_exact(&mut ten).await.unwrap();
            assert_eq!(ten, data[..10]);
            assert_eq!(file.stream_position().await.unwrap(), 10);
            let mut next = [0; 5];
            file.read_exact(&mut next).await.unwrap();
            assert_eq!(
                next,
                data[10..15],
                "after the seek, where the reads left it"
            );
            let mut std_file = file.into_inner().await;
            use std::io::Seek;
            assert_eq!(std_file.stream_position().unwrap(), 15);
        });
    });
}

#[test]
fn a_file_out_of_memory_waits_for_a_blocking_thread() {
    /// How long to keep trying (a try takes a few ms): well inside `within_a_minute`.
    const TRYING: std::time::Duration = std::time::Duration::from_secs(20);
    alone(|| {
        let data = pattern(1024 * 1024);
        let rt = one_blocking_thread();
        // A try can prove nothing, in two ways, and is then made again with a new file:
        // - eviction is a hint: the kernel may keep a page (one it is still adding to its
        //   lists, say), and a read of it is answered at once;
        // - a read that finds no page starts reading the file in before it answers
        //   `EAGAIN`, and a thread preempted in between (a busy machine) finds the page
        //   read when it runs again, so the kernel answers with the bytes. Measured
        //   here, 600 runs of this file each: with files written straight to the device
        //   (`O_DIRECT`: no page ever in memory) and this file's other tests running
        //   beside this one, 22 first tries were answered at once, and in two runs all
        //   five tries then made; with evicted files and the tests kept apart
        //   ([`alone`]), 3 tries in 603, at most two in a row.
        // Failed tries come in bursts (a busy spell of the machine), so the test keeps
        // trying for a while rather than a number of times; one try must find the page
        // gone. A library that read such a file on the caller's thread would answer
        // every first poll at once, and fail here.
        let trying = std::time::Instant::now();
        let mut waited = false;
        let mut tries = 0;
        while !waited && trying.elapsed() < TRYING {
            let temp = Temp::with(&format!("evicted-{tries}"), &data);
            tries += 1;
            temp.evict();
            let held = hold_blocking_pool(&rt);
            rt.block_on(async {
                let mut file = Unblock::new(temp.open());
                let mut buf = vec![0; 64 * 1024];
                let n = {
                    let mut read = pin!(file.read(&mut buf));
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
                    waited |= first.is_pending();
                    drop(held);
                    match first {
                        Poll::Ready(n) => n.unwrap(),
                        Poll::Pending => read.await.unwrap(),
                    }
                };
                assert!(n > 0);
                let mut got = buf[..n].to_vec();
                file.read_to_end(&mut got).await.unwrap();
                assert!(got == data, "the bytes of the file, in order");
            });
        }
        assert!(
            waited,
            "a read the page cache cannot answer goes to the (full) blocking pool, but \
             {tries} reads of freshly evicted files over {TRYING:?} were answered at once"
        );
    });
}

#[test]
fn a_task_reading_a_cached_file_lets_others_run() {
    alone(|| {
        let data = pattern(16 * 1024 * 1024);
        let temp = Temp::with("coop", &data);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ran = Arc::new(AtomicBool::new(false));
            let other = tokio::spawn({
                let ran = Arc::clone(&ran);
                async move { ran.store(true, Ordering::SeqCst) }
            });
            let mut file = Unblock::new(temp.open());
            let mut buf = vec![0; 64 * 1024];
            let mut read = 0;
            let mut read_when_it_ran = None;
            loop {
                let n = file.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                read += n;
                if read_when_it_ran.is_none() && ran.load(Ordering::SeqCst) {
                    read_when_it_ran = Some(read);
                }
            }
            assert_eq!(read, data.len());
            let at = read_when_it_ran.expect("the other task ran only once the file was read");
            assert!(at < data.len(), "the other task ran after {at} bytes");
            other.await.unwrap();
        });
    });
}

#[test]
fn written_bytes_are_read_back_before_the_cache_is_tried() {
    alone(|| {
        let temp = Temp::with("rw", &pattern(4096));
        let rt = one_blocking_thread();
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut file = Unblock::new(
                File::options()
                    .read(true)
                    .write(true)
                    .open(&temp.0)
                    .unwrap(),
            );
            file.write_all(b"written").await.unwrap();
            // Queued, not yet in the file: the read must write them first (a hop), then
            // read after them.
            let mut rest = Vec::new();
            file.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, pattern(4096)[7..]);
            let mut std_file = file.into_inner().await;
            use std::io::{Read, Seek, SeekFrom};
            std_file.seek(SeekFrom::Start(0)).unwrap();
            let mut all = Vec::new();
            std_file.read_to_end(&mut all).unwrap();
            assert_eq!(&all[..7], b"written");
        });
    });
}
