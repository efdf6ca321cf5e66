//! `Unblock<T>`: reads, writes, seeks and `call` with exact positions; EOF, zero-length and
//! short reads; a writer that fails midway; drop with unflushed writes inside and outside
//! a runtime; iterators as streams (panicking, slow); no runtime; auto traits; the paused
//! clock of the test harness; futures' IO traits.

mod support;

use std::fs::File;
use std::io::{self, BufRead, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use async_bridge::Unblock;
use futures::{FutureExt, StreamExt};
use support::{block_on_plain, panic_text, pattern, within_a_minute, TempFile as Temp};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Temp {
    /// A temporary file, deleted on drop.
    fn with(name: &str, data: &[u8]) -> Self {
        Temp::new(&std::env::temp_dir(), "unblock-io", name, data)
    }
}

#[test]
fn reads_a_large_file_exactly_and_writes_it_back() {
    within_a_minute(|| {
        let data = pattern(3 * 1024 * 1024 + 17);
        let src = Temp::with("large-src", &data);
        let dst = Temp::with("large-dst", b"");
        runtime().block_on(async {
            // A capacity smaller than the file: the pipeline stops and restarts.
            let mut file = Unblock::with_capacity(300_000, File::open(&src.0).unwrap());
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).await.unwrap();
            assert_eq!(buf, data);

            let mut out = Unblock::with_capacity(1 << 20, File::create(&dst.0).unwrap());
            for piece in buf.chunks(65_536) {
                out.write_all(piece).await.unwrap();
            }
            out.flush().await.unwrap();
            // After flush, the bytes are in the file.
            assert_eq!(std::fs::read(&dst.0).unwrap(), data);
            let len = out
                .call(|f| f.metadata().map(|m| m.len()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(len, data.len() as u64);
            let file: File = out.into_inner().await;
            drop(file);
        });
    });
}

#[test]
fn eof_is_reported_every_time_and_zero_length_reads_move_nothing() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut reader = Unblock::new(Cursor::new(b"abc".to_vec()));
            assert_eq!(reader.read(&mut []).await.unwrap(), 0);
            assert_eq!(reader.stream_position().await.unwrap(), 0);
            let mut buf = [0; 8];
            assert_eq!(reader.read(&mut buf).await.unwrap(), 3);
            assert_eq!(&buf[..3], b"abc");
            assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
            assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
            assert_eq!(reader.read(&mut []).await.unwrap(), 0);
            // Data appended after EOF is read (EOF is not sticky).
            reader.write_all(b"de").await.unwrap();
            reader.seek(SeekFrom::Start(3)).await.unwrap();
            assert_eq!(reader.read(&mut buf).await.unwrap(), 2);
            assert_eq!(&buf[..2], b"de");
            assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
        });
    });
}

/// A reader that returns at most three bytes per call, and counts its calls.
struct Trickle {
    data: Cursor<Vec<u8>>,
    calls: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = buf.len().min(3);
        Read::read(&mut self.data, &mut buf[..n])
    }
}

#[test]
fn short_reads_pass_through_and_an_unseekable_reader_is_not_read_ahead() {
    within_a_minute(|| {
        runtime().block_on(async {
            let data = pattern(100);
            let mut reader = Unblock::new(Trickle {
                data: Cursor::new(data.clone()),
                calls: 0,
            });
            let mut buf = [0; 10];
            let n = reader.read(&mut buf).await.unwrap();
            assert!((1..=3).contains(&n), "a short read passes through: {n}");
            let mut rest = [0; 20];
            reader.read_exact(&mut rest).await.unwrap();
            // Exactly what was read, and not one byte more, was taken from the reader.
            let inner = reader.get_mut().await;
            assert_eq!(inner.data.position() as usize, n + 20);
            let calls = inner.calls;
            let inner = reader.into_inner().await;
            assert_eq!(inner.calls, calls);
            assert_eq!(inner.data.position() as usize, n + 20);
            assert_eq!(&buf[..n], &data[..n]);
            assert_eq!(&rest[..], &data[n..n + 20]);
        });
    });
}

#[test]
fn a_socket_handed_back_has_lost_no_byte() {
    within_a_minute(|| {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        tx.write_all(b"hello, world").unwrap();
        let rx = runtime().block_on(async {
            let mut rx = Unblock::new(rx);
            let mut hello = [0; 5];
            rx.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            rx.into_inner().await
        });
        drop(tx);
        let mut rest = String::new();
        (&rx).read_to_string(&mut rest).unwrap();
        assert_eq!(rest, ", world");
    });
}

#[test]
fn seek_get_mut_and_call_see_the_logical_position_after_read_ahead() {
    within_a_minute(|| {
        let data = pattern(200_000);
        let file = Temp::with("positions", &data);
        runtime().block_on(async {
            let mut reader = Unblock::new(File::open(&file.0).unwrap());
            let mut head = [0; 10];
            reader.read_exact(&mut head).await.unwrap();
            assert_eq!(reader.stream_position().await.unwrap(), 10);
            assert_eq!(reader.seek(SeekFrom::Current(5)).await.unwrap(), 15);
            let mut next = [0; 4];
            reader.read_exact(&mut next).await.unwrap();
            assert_eq!(&next, &data[15..19]);
            let pos = reader.call(|f| f.stream_position()).await.unwrap().unwrap();
            assert_eq!(pos, 19);
            reader.read_exact(&mut next).await.unwrap();
            assert_eq!(reader.get_mut().await.stream_position().unwrap(), 23);
            let mut file = reader.into_inner().await;
            assert_eq!(file.stream_position().unwrap(), 23);
        });
    });
}

#[test]
fn writes_are_visible_to_call_and_get_mut_before_a_flush() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut out = Unblock::new(Cursor::new(Vec::new()));
            out.write_all(b"abc").await.unwrap();
            let len = out.call(|c| c.get_ref().len()).await.unwrap();
            assert_eq!(len, 3);
            out.write_all(b"de").await.unwrap();
            assert_eq!(out.get_mut().await.get_ref(), b"abcde");
        });
    });
}

#[test]
fn buf_read_lines_over_a_file() {
    within_a_minute(|| {
        let file = Temp::with("lines", b"one\ntwo\nthree");
        runtime().block_on(async {
            let mut lines = Unblock::new(File::open(&file.0).unwrap()).lines();
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push(line);
            }
            assert_eq!(seen, ["one", "two", "three"]);
        });
    });
}

/// Accepts `limit` bytes, then fails every write with "disk full"; counts flushes.
struct FailAfter {
    written: Vec<u8>,
    limit: usize,
    flushes: usize,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.written.len();
        if room == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        let n = buf.len().min(room);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn a_write_error_is_reported_unchanged_and_no_byte_is_dropped() {
    within_a_minute(|| {
        runtime().block_on(async {
            let data = pattern(100);
            let mut out = Unblock::new(FailAfter {
                written: Vec::new(),
                limit: 40,
                flushes: 0,
            });
            // Buffered: accepted at once.
            out.write_all(&data).await.unwrap();
            let err = out.flush().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            assert_eq!(err.to_string(), "disk full");
            assert_eq!(out.call(|w| w.written.len()).await.unwrap(), 40);
            // Room again: the next flush writes the rest; nothing was dropped.
            out.call(|w| w.limit = 1000).await.unwrap();
            out.flush().await.unwrap();
            let inner = out.into_inner().await;
            assert_eq!(inner.written, data);
        });
    });
}

#[test]
fn a_write_behind_error_surfaces_on_a_later_write() {
    within_a_minute(|| {
        runtime().block_on(async {
            // A tiny capacity keeps the writer thread busy while the caller writes on.
            let mut out = Unblock::with_capacity(
                8,
                FailAfter {
                    written: Vec::new(),
                    limit: 50,
                    flushes: 0,
                },
            );
            let data = pattern(1000);
            let mut failed = None;
            for (i, byte) in data.chunks(4).enumerate() {
                if let Err(err) = out.write_all(byte).await {
                    failed = Some((i, err));
                    break;
                }
            }
            let (i, err) = failed.expect("a write must report the error");
            assert!(i * 4 >= 50, "accepted at least what fit");
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            // Reported once; what fits was written.
            assert_eq!(out.call(|w| w.written.len()).await.unwrap(), 50);
        });
    });
}

#[test]
fn shutdown_flushes_the_inner_writer() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut out = Unblock::new(FailAfter {
                written: Vec::new(),
                limit: 100,
                flushes: 0,
            });
            out.write_all(b"bye").await.unwrap();
            out.shutdown().await.unwrap();
            let inner = out.into_inner().await;
            assert_eq!(inner.written, b"bye");
            assert_eq!(inner.flushes, 1);
        });
    });
}

/// Sends its bytes and whether it was flushed when dropped.
struct Reporter {
    written: Vec<u8>,
    flushed: bool,
    on_drop: mpsc::Sender<(Vec<u8>, bool, thread::ThreadId)>,
}

impl Write for Reporter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        self.flushed = false;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushed = true;
        Ok(())
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.on_drop.send((
            std::mem::take(&mut self.written),
            self.flushed,
            thread::current().id(),
        ));
    }
}

#[test]
fn a_drop_inside_a_runtime_flushes_in_the_background() {
    within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        let rt = runtime();
        let caller = rt.block_on(async move {
            let mut out = Unblock::new(Reporter {
                written: Vec::new(),
                flushed: false,
                on_drop: tx,
            });
            out.write_all(b"unflushed").await.unwrap();
            drop(out);
            thread::current().id()
        });
        let (written, flushed, dropped_on) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(written, b"unflushed");
        assert!(flushed);
        assert_ne!(dropped_on, caller, "the blocking work ran off the executor");
    });
}

#[test]
fn a_drop_with_a_write_in_flight_loses_nothing() {
    within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        let rt = runtime();
        rt.block_on(async move {
            let mut out = Unblock::with_capacity(
                64,
                Reporter {
                    written: Vec::new(),
                    flushed: false,
                    on_drop: tx,
                },
            );
            // Several chunks: the writer thread is (or was) busy when the drop comes.
            out.write_all(&pattern(10_000)).await.unwrap();
            drop(out);
        });
        let (written, flushed, _) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(written, pattern(10_000));
        assert!(flushed);
    });
}

#[test]
fn a_drop_outside_a_runtime_flushes_on_the_dropping_thread() {
    within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        let out = runtime().block_on(async move {
            let mut out = Unblock::new(Reporter {
                written: Vec::new(),
                flushed: false,
                on_drop: tx,
            });
            out.write_all(b"late").await.unwrap();
            out
        });
        drop(out);
        let (written, flushed, on) = rx.try_recv().expect("flushed before drop returned");
        assert_eq!(written, b"late");
        assert!(flushed);
        assert_eq!(on, thread::current().id());
    });
}

#[test]
fn a_dropped_reader_gives_read_ahead_back_to_a_shared_file() {
    within_a_minute(|| {
        let data = pattern(100_000);
        let file = Temp::with("shared", &data);
        let original = File::open(&file.0).unwrap();
        let mut twin = original.try_clone().unwrap(); // same file description, same offset
        let rt = runtime();
        rt.block_on(async {
            let mut reader = Unblock::new(original);
            let mut head = [0; 10];
            reader.read_exact(&mut head).await.unwrap();
            drop(reader);
        });
        drop(rt); // waits for the background blocking work
        assert_eq!(twin.stream_position().unwrap(), 10);
        let mut next = [0; 5];
        twin.read_exact(&mut next).unwrap();
        assert_eq!(&next, &data[10..15]);
    });
}

#[test]
fn an_iterator_is_a_stream_and_into_inner_resumes_exactly() {
    within_a_minute(|| {
        runtime().block_on(async {
            let text = Cursor::new("one\ntwo\nthree\nfour\n");
            let mut lines = Unblock::new(BufRead::lines(text));
            assert_eq!(lines.next().await.unwrap().unwrap(), "one");
            assert_eq!(lines.next().await.unwrap().unwrap(), "two");
            // Nothing was fetched ahead.
            let mut rest = lines.into_inner().await;
            assert_eq!(rest.next().unwrap().unwrap(), "three");

            let numbers: Vec<u32> = Unblock::new(0..5).collect().await;
            assert_eq!(numbers, [0, 1, 2, 3, 4]);
        });
    });
}

#[test]
fn a_panicking_iterator_resumes_in_the_polling_task_with_its_payload() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut count = 0;
            let iter = std::iter::from_fn(move || {
                count += 1;
                if count == 3 {
                    panic!("bad record {count}");
                }
                Some(count)
            });
            let mut stream = Unblock::new(iter);
            let task = tokio::spawn(async move {
                let a = stream.next().await;
                let b = stream.next().await;
                assert_eq!((a, b), (Some(1), Some(2)));
                stream.next().await
            });
            let err = task.await.unwrap_err();
            assert_eq!(panic_text(&*err.into_panic()), "bad record 3");
        });
    });
}

#[test]
fn a_slow_iterator_does_not_block_the_executor() {
    within_a_minute(|| {
        // One executor thread: if `next` ran on it, the feeder task could never run.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (items_tx, items_rx) = mpsc::channel::<u32>();
            let (asks_tx, mut asks_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            // The blocking iterator waits for each item on a std channel.
            let iter = std::iter::from_fn(move || {
                // The feeder is gone once it has sent everything.
                let _ = asks_tx.send(());
                items_rx.recv().ok()
            });
            let feeder = tokio::spawn(async move {
                for i in 0..3 {
                    asks_rx.recv().await.unwrap();
                    items_tx.send(i).unwrap();
                }
                // Dropping the sender ends the iterator.
            });
            let items: Vec<u32> = Unblock::new(iter).collect().await;
            assert_eq!(items, [0, 1, 2]);
            feeder.await.unwrap();
        });
    });
}

#[test]
fn a_panic_in_call_resumes_with_its_payload_and_the_value_survives() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut value = Unblock::new(Cursor::new(vec![1u8, 2, 3]));
            let task = tokio::spawn(async move {
                let result = AssertUnwindSafe(value.call(|_| -> u8 { panic!("legacy bug") }))
                    .catch_unwind()
                    .await;
                (result.map_err(|p| panic_text(&*p)), value)
            });
            let (result, mut value) = task.await.unwrap();
            assert_eq!(result.unwrap_err(), "legacy bug");
            let mut buf = Vec::new();
            value.read_to_end(&mut buf).await.unwrap();
            assert_eq!(buf, [1, 2, 3]);
        });
    });
}

#[test]
fn io_outside_a_runtime_is_a_clear_error() {
    within_a_minute(|| {
        let mut reader = Unblock::new(Cursor::new(vec![1u8, 2, 3]));
        let err = block_on_plain(reader.read(&mut [0; 3])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert!(err.to_string().contains("outside a tokio runtime"), "{err}");
        assert!(
            err.to_string().contains("unblock_io.rs"),
            "names the site: {err}"
        );

        let mut stream = Unblock::new(0..3);
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| block_on_plain(stream.next())));
        let message = panic_text(&*panicked.unwrap_err());
        assert!(message.contains("outside a tokio runtime"), "{message}");
    });
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Unblock<File>>();
    send_sync::<Unblock<Cursor<Vec<u8>>>>();
    send_sync::<Unblock<std::vec::IntoIter<String>>>();
    let mut file = Unblock::new(Cursor::new(Vec::<u8>::new()));
    send(&file.call(|c| c.position()));
    send(&file.get_mut());
}

#[test]
fn debug_shows_the_value() {
    let value = Unblock::new(Cursor::new(vec![1u8]));
    let text = format!("{value:?}");
    assert!(text.starts_with("Unblock"), "{text}");
    assert!(text.contains("read_ahead: true"), "{text}");
}

#[cfg(feature = "test-util")]
#[test]
fn blocking_work_holds_the_paused_clock() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            // A plain thread releases the call only after it has started.
            let opener = thread::spawn(move || {
                started_rx.recv().unwrap();
                go_tx.send(()).unwrap();
            });
            let mut value = Unblock::new(Cursor::new(vec![0u8; 10]));
            let start = tokio::time::Instant::now();
            let result = tokio::time::timeout(
                Duration::from_secs(3600),
                value.call(move |c| {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    c.position()
                }),
            )
            .await;
            // Paused time did not jump to the timeout while the call was blocked.
            assert_eq!(result.unwrap().unwrap(), 0);
            assert_eq!(start.elapsed(), Duration::ZERO);
            let mut buf = Vec::new();
            value.read_to_end(&mut buf).await.unwrap();
            assert_eq!(buf.len(), 10);
            opener.join().unwrap();
        });
    });
}

#[cfg(feature = "futures-io")]
#[test]
fn futures_io_traits() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut value = Unblock::new(Cursor::new(Vec::new()));
            futures::AsyncWriteExt::write_all(&mut value, b"hello")
                .await
                .unwrap();
            futures::AsyncWriteExt::flush(&mut value).await.unwrap();
            let pos = futures::AsyncSeekExt::seek(&mut value, SeekFrom::Start(1))
                .await
                .unwrap();
            assert_eq!(pos, 1);
            let mut text = String::new();
            futures::AsyncReadExt::read_to_string(&mut value, &mut text)
                .await
                .unwrap();
            assert_eq!(text, "ello");
            futures::AsyncWriteExt::close(&mut value).await.unwrap();
        });
    });
}

#[test]
fn a_dropped_call_future_keeps_the_value() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut value = Unblock::new(Cursor::new(vec![5u8, 6, 7]));
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (ran_tx, ran_rx) = mpsc::channel::<()>();
            {
                let call = value.call(move |c| {
                    go_rx.recv().unwrap();
                    ran_tx.send(()).unwrap();
                    c.position()
                });
                // Polled once: submitted and started; then given up on.
                assert!(support::poll_once(call).is_pending());
            }
            go_tx.send(()).unwrap();
            // Once polled, the closure runs; the value comes back for the next operation.
            let mut buf = Vec::new();
            value.read_to_end(&mut buf).await.unwrap();
            assert_eq!(buf, [5, 6, 7]);
            ran_rx.try_recv().expect("the closure ran before the read");
        });
    });
}

#[test]
fn a_dropped_read_keeps_its_bytes_for_the_next_read() {
    within_a_minute(|| {
        runtime().block_on(async {
            let (mut tx, rx) = UnixStream::pair().unwrap();
            let mut rx = Unblock::new(rx);
            {
                let mut buf = [0; 4];
                let read = rx.read(&mut buf);
                assert!(support::poll_once(read).is_pending());
            }
            tx.write_all(b"abcdef").unwrap();
            let mut all = Vec::new();
            let mut buf = [0; 2];
            while all.len() < 6 {
                let n = rx.read(&mut buf).await.unwrap();
                all.extend_from_slice(&buf[..n]);
            }
            assert_eq!(all, b"abcdef");
        });
    });
}

#[test]
fn get_mut_and_into_inner_return_after_a_write_error() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut out = Unblock::new(FailAfter {
                written: Vec::new(),
                limit: 40,
                flushes: 0,
            });
            out.write_all(&[0; 100]).await.unwrap();
            let err = out.flush().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            // The failed bytes are not retried behind the caller's back.
            assert_eq!(out.get_mut().await.written.len(), 40);
            // Tried once more, still failing: dropped, and the value comes back.
            let inner = out.into_inner().await;
            assert_eq!(inner.written.len(), 40);
            assert_eq!(inner.flushes, 0);
        });
    });
}

#[test]
fn a_file_that_is_not_regular_is_not_read_ahead() {
    within_a_minute(|| {
        // A `File` over a socket: it cannot seek back over read-ahead.
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let rx = File::from(std::os::fd::OwnedFd::from(rx));
        tx.write_all(b"hello, world").unwrap();
        let rx = runtime().block_on(async {
            let mut rx = Unblock::new(rx);
            assert!(format!("{rx:?}").contains("read_ahead: false"));
            let mut hello = [0; 5];
            rx.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            rx.into_inner().await
        });
        drop(tx);
        let mut rest = String::new();
        (&rx).read_to_string(&mut rest).unwrap();
        assert_eq!(rest, ", world");
        // A regular file still is.
        let file = Temp::with("regular", b"x");
        let reader = Unblock::new(File::open(&file.0).unwrap());
        assert!(format!("{reader:?}").contains("read_ahead: true"));
    });
}

/// A seekable source that delivers what a channel sends, as it comes: each read returns
/// at most what has arrived, and blocks until more does.
struct Slow {
    got: Vec<u8>,
    pos: usize,
    feed: mpsc::Receiver<Vec<u8>>,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.got.len() {
            match self.feed.recv() {
                Ok(more) => self.got.extend_from_slice(&more),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.got.len() - self.pos);
        buf[..n].copy_from_slice(&self.got[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Seek for Slow {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(by) = pos else {
            unreachable!("only relative seeks are used")
        };
        self.pos = (self.pos as i64 + by) as usize;
        Ok(self.pos as u64)
    }
}

#[test]
fn a_short_read_ahead_wakes_a_waiting_reader() {
    within_a_minute(|| {
        runtime().block_on(async {
            let (feed, rx) = mpsc::channel();
            let slow = Slow {
                got: Vec::new(),
                pos: 0,
                feed: rx,
            };
            let mut reader = Unblock::new(slow).with_read_ahead();
            feed.send(b"abc".to_vec()).unwrap();
            let mut buf = [0; 3];
            reader.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"abc");
            {
                // The reader waits; the read-ahead hop is blocked for the next bytes.
                let mut read = std::pin::pin!(reader.read_exact(&mut buf));
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx))
                });
                assert!(first.await.is_pending());
                feed.send(b"def".to_vec()).unwrap();
                read.await.unwrap();
            }
            assert_eq!(&buf, b"def");
            drop(feed);
            assert_eq!(reader.get_mut().await.pos, 6);
        });
    });
}

/// Keeps what is written; each flush waits for a token on `gate`, counts itself, and the
/// first one fails.
struct GatedFlush {
    written: Vec<u8>,
    flushes: usize,
    gate: mpsc::Receiver<()>,
}

impl Write for GatedFlush {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.gate.recv().unwrap();
        self.flushes += 1;
        if self.flushes == 1 {
            return Err(io::Error::other("first flush fails"));
        }
        Ok(())
    }
}

#[test]
fn the_error_of_a_dropped_flush_is_returned_by_the_next_write() {
    within_a_minute(|| {
        runtime().block_on(async {
            let (gate, rx) = mpsc::channel();
            let mut out = Unblock::new(GatedFlush {
                written: Vec::new(),
                flushes: 0,
                gate: rx,
            });
            out.write_all(b"abc").await.unwrap();
            // Polled once: the flush is on its way; then given up on.
            assert!(support::poll_once(out.flush()).is_pending());
            gate.send(()).unwrap();
            let err = out.write_all(b"d").await.unwrap_err();
            assert_eq!(err.to_string(), "first flush fails");
            gate.send(()).unwrap();
            out.write_all(b"d").await.unwrap();
            out.flush().await.unwrap();
            let inner = out.get_mut().await;
            assert_eq!(inner.written, b"abcd");
            assert_eq!(inner.flushes, 2);
        });
    });
}

#[test]
fn a_flush_after_a_dropped_flush_and_a_call_flushes_again() {
    within_a_minute(|| {
        runtime().block_on(async {
            let (gate, rx) = mpsc::channel();
            let mut out = Unblock::new(GatedFlush {
                written: Vec::new(),
                flushes: 1, // the first flush succeeds
                gate: rx,
            });
            out.write_all(b"abc").await.unwrap();
            assert!(support::poll_once(out.flush()).is_pending());
            gate.send(()).unwrap();
            gate.send(()).unwrap();
            // `call` writes into `T` directly; the flush that follows must flush it.
            out.call(|w| w.written.push(b'x')).await.unwrap();
            out.flush().await.unwrap();
            assert_eq!(out.call(|w| w.flushes).await.unwrap(), 3);
        });
    });
}

#[test]
fn call_does_not_run_when_the_buffered_writes_fail() {
    within_a_minute(|| {
        runtime().block_on(async {
            let data = pattern(100);
            let mut out = Unblock::new(FailAfter {
                written: Vec::new(),
                limit: 40,
                flushes: 0,
            });
            out.write_all(&data).await.unwrap();
            let (ran_tx, ran_rx) = mpsc::channel();
            let err = out
                .call(move |w| ran_tx.send(w.written.len()).unwrap())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            assert!(ran_rx.try_recv().is_err(), "the closure did not run");
            // Reported once; the failed bytes stay buffered and a call can make room.
            out.call(|w| w.limit = 1000).await.unwrap();
            out.flush().await.unwrap();
            assert_eq!(out.into_inner().await.written, data);
        });
    });
}

/// A seekable source whose position is shared with the test (as a file description is
/// shared by `try_clone`d files); its second read waits for a gate.
struct GatedSource {
    data: Vec<u8>,
    pos: std::sync::Arc<std::sync::Mutex<usize>>,
    reads: usize,
    started: mpsc::Sender<()>,
    gate: support::Gate,
    dropped: mpsc::Sender<()>,
}

impl Read for GatedSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.reads == 2 {
            let _ = self.started.send(());
            self.gate.wait();
        }
        let mut pos = self.pos.lock().unwrap();
        let n = buf.len().min(self.data.len() - *pos);
        buf[..n].copy_from_slice(&self.data[*pos..*pos + n]);
        *pos += n;
        Ok(n)
    }
}

impl Seek for GatedSource {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(by) = to else {
            unreachable!("only relative seeks are used")
        };
        let mut pos = self.pos.lock().unwrap();
        *pos = (*pos as i64 + by) as usize;
        Ok(*pos as u64)
    }
}

impl Drop for GatedSource {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

#[test]
fn a_drop_during_read_ahead_gives_back_what_the_hop_still_reads() {
    within_a_minute(|| {
        let pos = std::sync::Arc::new(std::sync::Mutex::new(0));
        let gate = support::Gate::new();
        let (started_tx, started) = mpsc::channel();
        let (dropped_tx, dropped) = mpsc::channel();
        let source = GatedSource {
            data: pattern(3 << 20),
            pos: pos.clone(),
            reads: 0,
            started: started_tx,
            gate: gate.clone(),
            dropped: dropped_tx,
        };
        let rt = runtime();
        rt.block_on(async {
            let mut reader = Unblock::new(source).with_read_ahead();
            let mut head = [0; 10];
            reader.read_exact(&mut head).await.unwrap();
            // The hop is in its second read (of up to 256 KiB) when the drop comes.
            started.recv().unwrap();
            drop(reader);
        });
        gate.open();
        dropped.recv().unwrap(); // the cleanup is over: it drops the value last
        assert_eq!(*pos.lock().unwrap(), 10);
    });
}
