//! `Unblock<T>` in the corners: io error kinds that std's loops would retry, a drop while
//! the blocking pool is busy, bytes of a value that cannot seek through every exit.

mod support;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_bridge::{Offloader, Unblock};
use support::{block_on_plain, within_a_minute};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
