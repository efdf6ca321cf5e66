//! `Unblock<T>` in the corners: io error kinds that std's loops would retry, a drop while
//! the blocking pool is busy, bytes of a value that cannot seek through every exit, the
//! item of a dropped `next()`, a seek started and not completed.

mod support;

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use async_bridge::{Offloader, Unblock};
use support::{block_on_plain, pattern, poll_once, within_a_minute, TempFile as Temp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime whose blocking pool has a single thread.
fn one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Occupies the pool's only blocking thread until the returned sender sends (or drops).
async fn hold_the_blocking_thread() -> mpsc::Sender<()> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
    }));
    started_rx.await.unwrap();
    release_tx
}

/// Returns once everything queued on the single blocking thread before it has run.
async fn blocking_queue_drained() {
    tokio::task::spawn_blocking(|| ()).await.unwrap();
}

impl Temp {
    /// A temporary file, deleted on drop.
    fn with(name: &str, data: &[u8]) -> Self {
        Temp::new(&std::env::temp_dir(), "unblock-corners", name, data)
    }
}

/// A reader and writer whose every `read` and `write` is an offload through a lane whose
/// runtime has gone away: each fails with the lane's "cancelled" error.
struct Orphaned {
    lane: Offloader,
    calls: Arc<AtomicUsize>,
}

impl Orphaned {
    fn new() -> (Self, Arc<AtomicUsize>) {
        let gone = runtime();
        let handle = gone.handle().clone();
        gone.shutdown_background();
        let lane = Offloader::builder("gone").handle(handle).build().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let me = Orphaned {
            lane,
            calls: Arc::clone(&calls),
        };
        (me, calls)
    }

    fn offload(&self) -> io::Error {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let err = block_on_plain(self.lane.run(|| ())).unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        err.into()
    }
}

impl Read for Orphaned {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.offload())
    }
}

impl Write for Orphaned {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(self.offload())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A cancelled offload is an error std's `read_exact`, `write_all` and `io::copy` (and
/// `Unblock`'s own blocking loops) return at once: not `Interrupted`, which they retry
/// (before the fix, each of these spun forever).
#[test]
fn a_cancelled_offload_is_returned_at_once_not_retried() {
    within_a_minute(|| {
        let (mut sync, calls) = Orphaned::new();
        let err = sync.read_exact(&mut [0; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let err = sync.write_all(b"abc").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let err = io::copy(&mut sync, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        runtime().block_on(async {
            let (reader, calls) = Orphaned::new();
            let mut reader = Unblock::new(reader);
            let err = reader.read_exact(&mut [0; 4]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
            assert_eq!(calls.load(Ordering::SeqCst), 1);

            let (writer, calls) = Orphaned::new();
            let mut writer = Unblock::new(writer);
            writer.write_all(b"abc").await.unwrap();
            let err = writer.flush().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    });
}

/// "Shut down" is one kind everywhere, and a full lane is not `WouldBlock` (which means
/// "try again when ready" to non-blocking loops).
#[test]
fn shut_down_is_one_kind_everywhere() {
    within_a_minute(|| {
        let rt = runtime();
        rt.block_on(async {
            let lane = Offloader::builder("closed").build().unwrap();
            lane.shutdown(std::time::Duration::ZERO).await;
            let err: io::Error = lane.run(|| ()).await.unwrap_err().into();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);

            let worker = async_bridge::Worker::builder("closed")
                .spawn(|| Ok::<_, io::Error>(()))
                .unwrap();
            worker.shutdown(std::time::Duration::ZERO).await;
            let err: io::Error = worker.call(|_| ()).await.unwrap_err().into();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        });
        let portal = async_bridge::Portal::from_handle(rt.handle().clone());
        portal.shutdown(std::time::Duration::ZERO);
        let err: io::Error = portal.block_on(async {}).unwrap_err().into();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    });
}

/// Dropped while its hop is still queued (the blocking pool is busy): the seek-back over
/// read-ahead still happens, so a file sharing the offset (`try_clone`) is where the
/// reads left it, and the queued `call` closure runs (it had been polled: see
/// `Unblock::call`), on the value where the reads left it. Before the fix the hop was
/// withdrawn: the file was left at the end of the read-ahead and the closure never ran.
#[test]
fn a_drop_with_its_hop_queued_gives_read_ahead_back_and_runs_the_call() {
    within_a_minute(|| {
        let data = pattern(100_000);
        let file = Temp::with("queued-call", &data);
        let original = File::open(&file.0).unwrap();
        let mut twin = original.try_clone().unwrap(); // same file description, same offset
        let (ran_tx, ran_rx) = mpsc::channel();
        one_blocking_thread().block_on(async {
            let mut reader = Unblock::new(original);
            let mut head = [0; 10];
            reader.read_exact(&mut head).await.unwrap();
            assert_eq!(head, data[..10]);
            let release = hold_the_blocking_thread().await;
            {
                let call = reader.call(move |f| ran_tx.send(f.stream_position().unwrap()));
                // Submitted, queued behind the held thread, then given up on.
                assert!(poll_once(call).is_pending());
            }
            drop(reader);
            release.send(()).unwrap();
            blocking_queue_drained().await;
        });
        assert_eq!(ran_rx.try_recv(), Ok(10));
        assert_eq!(twin.stream_position().unwrap(), 10);
        let mut next = [0; 5];
        twin.read_exact(&mut next).unwrap();
        assert_eq!(next, data[10..15]);
    });
}

/// The same with a seek queued: the read-ahead is given back. (tokio's `seek` future first
/// waits for any seek in progress, which is the hop queued here; the seek it was asked
/// for never started, so the offset stays where the reads left it.)
#[test]
fn a_drop_with_a_seek_queued_gives_read_ahead_back_first() {
    use tokio::io::AsyncSeekExt;
    within_a_minute(|| {
        let data = pattern(100_000);
        let file = Temp::with("queued-seek", &data);
        let original = File::open(&file.0).unwrap();
        let mut twin = original.try_clone().unwrap();
        one_blocking_thread().block_on(async {
            let mut reader = Unblock::new(original);
            let mut head = [0; 10];
            reader.read_exact(&mut head).await.unwrap();
            let release = hold_the_blocking_thread().await;
            assert!(poll_once(reader.seek(io::SeekFrom::Current(5))).is_pending());
            drop(reader);
            release.send(()).unwrap();
            blocking_queue_drained().await;
        });
        assert_eq!(twin.stream_position().unwrap(), 10);
    });
}

/// Writes buffered and a flush queued when the `Unblock` is dropped: written, flushed,
/// in order.
#[test]
fn a_drop_with_a_flush_queued_writes_and_flushes() {
    within_a_minute(|| {
        let log = Arc::new(std::sync::Mutex::new((Vec::new(), 0)));
        one_blocking_thread().block_on(async {
            let mut out = Unblock::new(Recorder(Arc::clone(&log)));
            out.write_all(b"abc").await.unwrap();
            let release = hold_the_blocking_thread().await;
            assert!(poll_once(out.flush()).is_pending());
            drop(out);
            release.send(()).unwrap();
            blocking_queue_drained().await;
        });
        let log = log.lock().unwrap();
        assert_eq!(log.0, b"abc");
        assert!(log.1 >= 1, "flushed");
    });
}

/// A writer that records what it got and how often it was flushed.
struct Recorder(Arc<std::sync::Mutex<(Vec<u8>, usize)>>);

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap().1 += 1;
        Ok(())
    }
}

/// A socket that says when a blocking `read` on it has started: it cannot seek.
struct Socket {
    inner: UnixStream,
    reading: mpsc::Sender<()>,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _ = self.reading.send(());
        self.inner.read(buf)
    }
}

/// An `Unblock` over one end of a socket pair, and the other end, with a blocking `read`
/// started by a read future that was then dropped (as a `select!` or a timeout would):
/// that `read` goes on. Then `data` is written and the writing end closed.
fn after_a_dropped_read(data: &[u8]) -> Unblock<Socket> {
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let (reading, started) = mpsc::channel();
    let mut rx = Unblock::new(Socket { inner: rx, reading });
    let mut buf = [0; 4];
    assert!(poll_once(rx.read(&mut buf)).is_pending());
    started.recv().unwrap();
    tx.write_all(data).unwrap();
    rx
}

/// The bytes of that dropped read come out of `into_parts`, in front of what the socket
/// reads next. Before, `into_inner` dropped them.
#[test]
fn into_parts_hands_out_the_bytes_of_a_dropped_read() {
    within_a_minute(|| {
        runtime().block_on(async {
            let rx = after_a_dropped_read(b"abcdef");
            let (mut rx, unread) = rx.into_parts().await;
            assert!(!unread.is_empty());
            let mut rest = vec![0; 6 - unread.len()];
            rx.inner.read_exact(&mut rest).unwrap();
            assert_eq!([unread, rest].concat(), b"abcdef");
        });
    });
}

/// `call`, with bytes of a dropped read buffered in front of a value that cannot seek,
/// refuses (its closure would read past them); after `take_buffered` it runs, and reads
/// what comes after. Before, the closure ran and read later bytes first.
#[test]
fn call_refuses_to_run_behind_bytes_it_cannot_give_back() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut rx = after_a_dropped_read(b"abcdef");
            let ran = Arc::new(AtomicUsize::new(0));
            let r = Arc::clone(&ran);
            let err = rx
                .call(move |s| {
                    r.fetch_add(1, Ordering::SeqCst);
                    let mut rest = [0; 2];
                    s.inner.read_exact(&mut rest).map(|()| rest)
                })
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Other);
            assert!(err.to_string().contains("take_buffered"), "{err}");
            assert_eq!(ran.load(Ordering::SeqCst), 0);
            let n = rx.buffered();
            assert!(n > 0);
            let unread = rx.take_buffered().await;
            assert_eq!(unread.len(), n);
            assert_eq!(rx.buffered(), 0);
            let rest = rx
                .call(move |s| {
                    let mut rest = vec![0; 6 - n];
                    s.inner.read_exact(&mut rest).map(|()| rest)
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!([unread, rest].concat(), b"abcdef");
        });
    });
}

/// `get_mut` leaves the bytes buffered: the next async read returns them first.
#[test]
fn get_mut_leaves_the_bytes_of_a_dropped_read_in_front() {
    within_a_minute(|| {
        runtime().block_on(async {
            let mut rx = after_a_dropped_read(b"abcdef");
            rx.get_mut()
                .await
                .inner
                .shutdown(std::net::Shutdown::Write)
                .unwrap();
            let mut all = [0; 6];
            rx.read_exact(&mut all).await.unwrap();
            assert_eq!(&all, b"abcdef");
        });
    });
}

/// The item of a `next()` dropped after its first poll: `call` refuses to run behind it,
/// `take_fetched` hands it out, and the iterator resumes right after it. Before,
/// `into_inner` dropped it.
#[test]
fn the_item_of_a_dropped_next_is_handed_out() {
    use futures::StreamExt;
    within_a_minute(|| {
        runtime().block_on(async {
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let go_rx = std::sync::Mutex::new(go_rx);
            let mut items = Unblock::new((1..=4).inspect(move |_| {
                let _ = go_rx.lock().unwrap().recv();
            }));
            go_tx.send(()).unwrap();
            assert_eq!(items.next().await, Some(1));
            // Polled once, while `next` waits on the channel: the item is fetched later.
            assert!(poll_once(items.next()).is_pending());
            go_tx.send(()).unwrap();
            let err = items.call(|_| ()).await.unwrap_err();
            assert!(err.to_string().contains("take_fetched"), "{err}");
            assert_eq!(items.take_fetched().await, Some(2));
            assert_eq!(items.take_fetched().await, None);
            drop(go_tx); // later `next`s do not wait
            let rest: Vec<_> = items.into_inner().await.collect();
            assert_eq!(rest, [3, 4]);
        });
    });
}

/// A read queued when the `Unblock` is dropped (the pool busy) does not read: a socket
/// shared with a clone keeps every byte for it. A queued `next` does not advance the
/// iterator. (The queued step still runs, for the drop's cleanup, but its read is for
/// nobody and could not be given back.)
#[test]
fn a_read_or_next_queued_at_drop_takes_nothing() {
    use futures::StreamExt;
    within_a_minute(|| {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut twin = rx.try_clone().unwrap();
        let nexts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&nexts);
        one_blocking_thread().block_on(async {
            let mut reader = Unblock::new(rx);
            let mut items = Unblock::new(std::iter::repeat_with(move || {
                counted.fetch_add(1, Ordering::SeqCst)
            }));
            let release = hold_the_blocking_thread().await;
            let mut buf = [0; 4];
            assert!(poll_once(reader.read(&mut buf)).is_pending());
            assert!(poll_once(items.next()).is_pending());
            drop(reader);
            drop(items);
            tx.write_all(b"kept").unwrap();
            release.send(()).unwrap();
            blocking_queue_drained().await;
        });
        assert_eq!(nexts.load(Ordering::SeqCst), 0);
        let mut kept = [0; 4];
        twin.read_exact(&mut kept).unwrap();
        assert_eq!(&kept, b"kept");
    });
}

/// A seek started (`start_seek`) is done before a read that comes after it, even without
/// `poll_complete` (whose result is kept for it). Before, the read ignored it and a
/// later, unrelated `poll_complete` moved the value.
#[test]
fn a_started_seek_comes_before_a_later_read() {
    use std::pin::Pin;
    use tokio::io::{AsyncSeek, AsyncSeekExt};
    within_a_minute(|| {
        runtime().block_on(async {
            let mut value = Unblock::new(io::Cursor::new(b"0123456789".to_vec()));
            Pin::new(&mut value)
                .start_seek(io::SeekFrom::Start(5))
                .unwrap();
            let mut two = [0; 2];
            value.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, b"56");
            let done = std::future::poll_fn(|cx| Pin::new(&mut value).poll_complete(cx)).await;
            assert_eq!(done.unwrap(), 5);
            assert_eq!(value.stream_position().await.unwrap(), 7);
        });
    });
}

/// futures' `seek` after one dropped after its first poll seeks where it is asked to.
/// Before, it returned the dropped seek's result without moving.
#[cfg(feature = "futures-io")]
#[test]
fn a_futures_seek_after_a_dropped_one_goes_where_asked() {
    use futures::AsyncSeekExt;
    within_a_minute(|| {
        runtime().block_on(async {
            let mut value = Unblock::new(io::Cursor::new(b"0123456789".to_vec()));
            let _ = poll_once(value.seek(io::SeekFrom::Start(3)));
            assert_eq!(value.seek(io::SeekFrom::Start(8)).await.unwrap(), 8);
            let mut two = [0; 2];
            value.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, b"89");
        });
    });
}

/// The futures of the methods that hand out what cannot be given back are `Send`, like
/// the others (they can be awaited in a spawned task).
#[test]
fn the_new_futures_are_send() {
    fn send<F: std::future::Future + Send>(_: F) {}
    let mut bytes = Unblock::new(io::Cursor::new(Vec::<u8>::new()));
    send(bytes.take_buffered());
    send(bytes.into_parts());
    let mut items = Unblock::new(0..3);
    send(items.take_fetched());
}
