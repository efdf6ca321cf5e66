//! `Blocking<T>`: `call`/`call_mut`, the std IO traits over tokio's async ones, the
//! `Iterator` over a `Stream`, and a real async peer (a tokio TCP echo server) used by
//! several plain threads.

mod support;

use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};

use async_bridge::{block_on, BlockOnError, Blocking, Portal};
use futures::stream::{self, Stream};
use support::{panic_text, within_a_minute};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// A tokio echo server on loopback, on its own runtime (the "async peer").
fn echo_server() -> (Runtime, std::net::SocketAddr) {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    (rt, addr)
}

#[test]
fn plain_threads_talk_to_a_tokio_echo_server_through_std_io_every_byte_checked() {
    let (server, addr) = echo_server();
    let own = Portal::builder()
        .worker_threads(1)
        .thread_name("echo-facade")
        .build()
        .unwrap();
    let totals = within_a_minute(move || {
        let clients: Vec<_> = (0..4u8)
            .map(|id| {
                let own = own.clone();
                std::thread::spawn(move || -> io::Result<usize> {
                    // Half the clients use the global portal, half their own.
                    let mut conn = if id % 2 == 0 {
                        Blocking::new(block_on(TcpStream::connect(addr))??)
                    } else {
                        Blocking::with_portal(own.block_on(TcpStream::connect(addr))??, &own)
                    };
                    let mut total = 0;
                    for round in 0..50usize {
                        let len = 1 + (round * 397 + usize::from(id) * 31) % 4000;
                        let sent: Vec<u8> = (0..len)
                            .map(|i| (i as u8).wrapping_mul(7) ^ id ^ round as u8)
                            .collect();
                        conn.write_all(&sent)?;
                        conn.flush()?;
                        let mut back = vec![0; len];
                        conn.read_exact(&mut back)?;
                        assert_eq!(back, sent, "client {id}, round {round}");
                        total += len;
                    }
                    // Close our side; the server echoes nothing more and closes too.
                    conn.call_mut(async |s| s.shutdown().await)??;
                    let mut rest = Vec::new();
                    assert_eq!(conn.read_to_end(&mut rest)?, 0);
                    Ok(total)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(totals.len(), 4);
    assert!(totals.iter().all(|&t| t > 0));
    drop(server);
}

#[test]
fn call_and_call_mut_run_borrowing_futures() {
    struct Counter {
        hits: AtomicUsize,
        name: String,
    }
    impl Counter {
        async fn hit(&self, by: usize) -> usize {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.hits.fetch_add(by, Ordering::SeqCst) + by
        }
        async fn name(&self) -> &str {
            &self.name
        }
        async fn rename(&mut self, to: &str) {
            tokio::task::yield_now().await;
            self.name = to.to_owned();
        }
    }
    within_a_minute(|| {
        let mut counter = Blocking::new(Counter {
            hits: AtomicUsize::new(0),
            name: "a".into(),
        });
        assert_eq!(counter.call(async |c| c.hit(2).await).unwrap(), 2);
        assert_eq!(counter.call(async |c| c.hit(3).await).unwrap(), 5);
        let len = counter.call(async |c| c.name().await.len()).unwrap();
        assert_eq!(len, 1);
        let to = String::from("renamed");
        counter.call_mut(async |c| c.rename(&to).await).unwrap();
        assert_eq!(counter.get_ref().name, "renamed");
        counter.get_mut().name.push('!');
        let inner = counter.into_inner();
        assert_eq!(
            (inner.name.as_str(), inner.hits.into_inner()),
            ("renamed!", 5)
        );
    });
}

#[test]
fn a_panic_in_call_resumes_with_its_payload() {
    let payload = within_a_minute(|| {
        let value = Blocking::new(1);
        panic::catch_unwind(AssertUnwindSafe(|| {
            value.call(async |_| -> u8 { panic!("inside call") })
        }))
        .unwrap_err()
    });
    assert_eq!(panic_text(&*payload), "inside call");
}

#[test]
fn calls_from_a_current_thread_runtime_are_refused_and_io_says_deadlock() {
    let (call, read, next) = within_a_minute(|| {
        current_thread().block_on(async {
            let value = Blocking::new(1);
            let call = value.call(async |v| *v).unwrap_err();
            let (a, _b) = tokio::io::duplex(8);
            let mut pipe = Blocking::new(a);
            let read = pipe.read(&mut [0; 4]).unwrap_err();
            let mut items = Blocking::new(stream::iter([1]));
            let next = items.try_next().unwrap_err();
            let iterated = panic::catch_unwind(AssertUnwindSafe(|| items.next())).unwrap_err();
            assert!(panic_text(&*iterated).contains("refused to block"));
            (call, read, next)
        })
    });
    assert!(call.is_would_deadlock() && next.is_would_deadlock());
    assert_eq!(read.kind(), io::ErrorKind::Deadlock);
    let inner = read.into_inner().unwrap();
    assert!(inner
        .downcast_ref::<BlockOnError>()
        .unwrap()
        .is_would_deadlock());
}

/// A reader and writer that fail with a custom error.
struct Failing;

#[derive(Debug)]
struct Custom;

impl std::fmt::Display for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("custom failure")
    }
}

impl std::error::Error for Custom {}

impl AsyncRead for Failing {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, Custom)))
    }
}

impl AsyncWrite for Failing {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, Custom)))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::Error::from_raw_os_error(5)))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn io_errors_pass_through_unchanged() {
    within_a_minute(|| {
        let mut failing = Blocking::new(Failing);
        let err = failing.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(err.get_ref().unwrap().downcast_ref::<Custom>().is_some());
        let err = failing.write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(err.get_ref().unwrap().downcast_ref::<Custom>().is_some());
        let err = failing.flush().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
    });
}

#[test]
fn buf_read_lines_over_a_tokio_buf_reader() {
    let lines = within_a_minute(|| {
        let (a, b) = tokio::io::duplex(16);
        let writer = std::thread::spawn(move || {
            let mut a = Blocking::new(a);
            a.write_all(b"first line\nsecond\n\nlast without newline")
                .unwrap();
            a.flush().unwrap();
            // Dropping `a` closes the pipe: the reader sees the end.
        });
        let reader = Blocking::new(tokio::io::BufReader::new(b));
        let lines: Vec<String> = reader.lines().map(Result::unwrap).collect();
        writer.join().unwrap();
        lines
    });
    assert_eq!(lines, ["first line", "second", "", "last without newline"]);
}

#[test]
fn seek_and_read_a_tokio_file() {
    let path = std::env::temp_dir().join(format!("async-bridge-seek-{}", std::process::id()));
    std::fs::write(&path, b"0123456789").unwrap();
    let p = path.clone();
    let (middle, end, tail) = within_a_minute(move || {
        let file = block_on(tokio::fs::File::open(&p)).unwrap().unwrap();
        let mut file = Blocking::new(file);
        assert_eq!(file.seek(SeekFrom::Start(3)).unwrap(), 3);
        let mut middle = [0; 4];
        file.read_exact(&mut middle).unwrap();
        let end = file.seek(SeekFrom::End(-2)).unwrap();
        let mut tail = String::new();
        file.read_to_string(&mut tail).unwrap();
        (middle, end, tail)
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&middle, b"3456");
    assert_eq!(end, 8);
    assert_eq!(tail, "89");
}

#[test]
fn a_stream_iterates_to_its_end_and_is_never_polled_after_it() {
    // `unfold` panics if polled again after it ended; the iterator must not do that.
    let items = within_a_minute(|| {
        let counting = stream::unfold(0, |n| async move {
            tokio::task::yield_now().await;
            (n < 3).then_some((n, n + 1))
        });
        let mut iter = Blocking::new(Box::pin(counting));
        let items: Vec<i32> = iter.by_ref().collect();
        assert_eq!(iter.next(), None);
        assert_eq!(iter.try_next().unwrap(), None);
        assert_eq!(iter.size_hint(), (0, Some(0)));
        items
    });
    assert_eq!(items, [0, 1, 2]);
}

#[test]
fn a_stream_of_results_yields_its_errors_as_items_and_goes_on() {
    let items = within_a_minute(|| {
        let results = stream::iter(vec![Ok(1), Err("bad row"), Ok(3)]);
        Blocking::new(results).collect::<Vec<Result<i32, &str>>>()
    });
    assert_eq!(items, [Ok(1), Err("bad row"), Ok(3)]);
}

#[test]
fn a_panicking_stream_resumes_in_the_caller() {
    struct Boom;
    impl Stream for Boom {
        type Item = u8;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u8>> {
            panic!("stream broke")
        }
    }
    let payload = within_a_minute(|| {
        panic::catch_unwind(AssertUnwindSafe(|| Blocking::new(Boom).next())).unwrap_err()
    });
    assert_eq!(panic_text(&*payload), "stream broke");
}

#[test]
fn the_value_is_dropped_inside_the_portals_runtime_context() {
    /// Spawns a cleanup task on drop, as some async clients do: that needs a runtime.
    struct SpawnsOnDrop(Option<mpsc::Sender<&'static str>>);
    impl Drop for SpawnsOnDrop {
        fn drop(&mut self) {
            let tx = self.0.take().unwrap();
            tokio::spawn(async move { tx.send("cleaned up").unwrap() });
        }
    }
    let got = within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        let portal = Portal::builder().worker_threads(1).build().unwrap();
        drop(Blocking::with_portal(SpawnsOnDrop(Some(tx)), &portal));
        rx.recv().unwrap()
    });
    assert_eq!(got, "cleaned up");
}

#[test]
fn blocking_has_the_auto_traits_of_its_value() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Blocking<TcpStream>>();
    send_sync::<Blocking<Vec<u8>>>();
    send::<Blocking<std::cell::Cell<u8>>>();
    let shared = Arc::new(Blocking::new(5));
    let text = format!("{:?}", shared);
    assert!(text.contains("inner: Some(5)"), "{text}");
}
