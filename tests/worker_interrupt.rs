//! Stopping started work for real (issue 13): a worker's interrupter fires from the
//! cancelling side on timeout, on a dropped caller and on shutdown, never for a call
//! that has returned; worker timeouts cover waiting plus running.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_bridge::{Worker, WorkerPool};
use rusqlite::Connection;
use support::{block_on_plain, poll_once};

/// A query that would run for minutes (it counts forever).
const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

fn sqlite_worker(timeout: Option<Duration>) -> Worker<Connection> {
    let builder = Worker::builder("sqlite").interrupter(|conn: &Connection| {
        let handle = conn.get_interrupt_handle();
        move || handle.interrupt()
    });
    let builder = match timeout {
        Some(after) => builder.timeout(after),
        None => builder,
    };
    builder.spawn(Connection::open_in_memory).unwrap()
}

fn select(conn: &mut Connection, n: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT ?1", [n], |r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minutes_long_query_under_a_timeout_is_interrupted_and_the_worker_answers_next() {
    // Long enough for the next query, which must succeed, on a busy machine.
    let db = sqlite_worker(Some(Duration::from_millis(250)));
    let err = db
        .call(|c| c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(
        err.to_string(),
        "worker `sqlite`: call timed out after 250ms"
    );
    let fired = Instant::now();
    assert_eq!(db.call(|c| select(c, 7)).await.unwrap().unwrap(), 7);
    eprintln!(
        "sqlite: timeout fired -> worker answered the next query in {:?}",
        fired.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_interrupts_its_running_query() {
    let db = sqlite_worker(None);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let endless = tokio::spawn(db.call(move |c| {
        started_tx.send(()).unwrap();
        c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0))
    }));
    started_rx.await.unwrap();
    endless.abort(); // the caller goes away: its future is dropped
    assert!(endless.await.unwrap_err().is_cancelled());
    // Only an interrupt can end that query: the worker is free again.
    assert_eq!(db.call(|c| select(c, 8)).await.unwrap().unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_grace_interrupts_the_running_call_and_reports_it() {
    let db = sqlite_worker(None);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let endless = tokio::spawn(db.call(move |c| {
        started_tx.send(()).unwrap();
        c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0))
    }));
    started_rx.await.unwrap();
    let report = db.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    let interrupted = report.interrupted();
    assert_eq!(interrupted.len(), 1, "{report}");
    assert!(interrupted[0].stopped_within_grace());
    assert!(interrupted[0]
        .site()
        .file()
        .ends_with("worker_interrupt.rs"));
    assert!(report
        .to_string()
        .contains("1 interrupted, 1 of them stopped within grace"));
    let query = endless.await.unwrap().unwrap();
    assert!(matches!(
        query,
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted
    ));
}

#[tokio::test]
async fn shutdown_reports_a_call_its_interrupt_could_not_stop() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let fired = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&fired);
    let w = Worker::builder("deaf")
        .interrupter(move |_: &()| {
            let counted = Arc::clone(&counted);
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stuck = tokio::spawn(w.call(move |_| {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap(); // ignores the interrupt
    }));
    started_rx.await.unwrap();
    let report = w.shutdown(Duration::from_millis(20)).await;
    assert!(fired.load(Ordering::SeqCst) >= 1); // and again while the call runs
    assert!(!report.is_complete());
    assert_eq!(report.interrupted().len(), 1);
    assert!(!report.interrupted()[0].stopped_within_grace());
    release_tx.send(()).unwrap();
    stuck.await.unwrap().unwrap();
}

/// A legacy blocking client: one request, then it waits for a reply line.
struct LegacyClient {
    stream: TcpStream,
}

impl LegacyClient {
    fn request(&mut self, line: &str) -> std::io::Result<String> {
        self.stream.write_all(line.as_bytes())?;
        let mut reply = Vec::new();
        let mut byte = [0];
        loop {
            match self.stream.read(&mut byte)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&reply).into_owned()),
                _ => reply.push(byte[0]),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_tcp_client_stuck_on_a_silent_server_is_unblocked_by_shutting_its_socket() {
    // A server that accepts and never answers (it holds the socket until the test ends).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (_socket, _) = listener.accept().unwrap();
        let _ = done_rx.recv();
    });
    let client = Worker::builder("legacy-client")
        // Long enough for the next call, which must succeed, on a busy machine.
        .timeout(Duration::from_millis(250))
        .interrupter(|c: &LegacyClient| {
            let socket = c.stream.try_clone().expect("a second handle on the socket");
            move || {
                let _ = socket.shutdown(Shutdown::Both);
            }
        })
        .spawn(move || TcpStream::connect(addr).map(|stream| LegacyClient { stream }))
        .unwrap();
    let err = client.call(|c| c.request("PRICE 7\n")).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let fired = Instant::now();
    // The stuck read returned (its socket was shut): the worker answers at once.
    assert_eq!(client.call(|_| "free").await.unwrap(), "free");
    eprintln!(
        "tcp: timeout fired -> worker answered the next call in {:?}",
        fired.elapsed()
    );
    done_tx.send(()).unwrap();
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_never_reaches_the_call_after_the_one_given_up() {
    // Callers give up at random points (before, during or after their query); the call
    // that follows each one must never see an interrupt meant for it.
    let fires = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&fires);
    let db = Worker::builder("sqlite-probe")
        .interrupter(move |conn: &Connection| {
            let handle = conn.get_interrupt_handle();
            let counted = Arc::clone(&counted);
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                handle.interrupt();
            }
        })
        .spawn(Connection::open_in_memory)
        .unwrap();
    for round in 0..1_000i64 {
        let given_up = tokio::spawn(db.call(move |c| {
            c.query_row(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
                 SELECT count(*) FROM c",
                [round * 50],
                |r| r.get::<_, i64>(0),
            )
        }));
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        given_up.abort();
        let _ = given_up.await;
        let next = db.call(move |c| select(c, round)).await.unwrap();
        assert_eq!(
            next.unwrap(),
            round,
            "the call after a given-up one was interrupted"
        );
    }
    eprintln!(
        "{} interrupts fired; no later call saw one",
        fires.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_call_that_times_out_while_queued_never_runs() {
    let w = Worker::builder("busy")
        .timeout(Duration::from_millis(20))
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = tokio::spawn(w.call(move |_| {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    }));
    started_rx.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let err = w
        .call(move |_| flag.store(true, Ordering::SeqCst))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    release_tx.send(()).unwrap();
    // The holder's own timer has fired too, but whether its task sees that or its
    // reply first depends on when it is polled: either answer is right here.
    let _ = holder.await.unwrap();
    // FIFO: a later call runs after where the timed-out one stood.
    let w2 = w.clone();
    let _ = tokio::time::timeout(Duration::from_secs(60), async move {
        while w2.call(|_| ()).await.is_err() {}
    })
    .await;
    assert!(
        !ran.load(Ordering::SeqCst),
        "a call that timed out while queued ran"
    );
}

#[tokio::test]
async fn a_pool_interrupts_the_member_running_the_call() {
    let pool = WorkerPool::builder("readers")
        .workers(2)
        // Long enough for the next call, which must succeed, on a busy machine.
        .timeout(Duration::from_millis(250))
        .interrupter(|conn: &Connection| {
            let handle = conn.get_interrupt_handle();
            move || handle.interrupt()
        })
        .spawn(Connection::open_in_memory)
        .unwrap();
    let (a, b) = tokio::join!(
        pool.call(|c| c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0))),
        pool.call(|c| c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0))),
    );
    assert!(a.unwrap_err().is_timeout());
    assert!(b.unwrap_err().is_timeout());
    assert_eq!(pool.call(|c| select(c, 3)).await.unwrap().unwrap(), 3);
}

#[test]
fn a_timeout_outside_any_runtime_is_an_error_not_a_panic() {
    let w = Worker::builder("timed")
        .timeout(Duration::from_secs(1))
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let err = block_on_plain(w.call(|_| ())).unwrap_err();
    assert!(err.is_no_runtime(), "{err}");
    let mut call = Box::pin(w.call(|_| ()));
    assert!(poll_once(call.as_mut()).is_ready());
}

#[test]
fn bad_configuration_is_an_error() {
    let err = Worker::builder("zero")
        .timeout(Duration::ZERO)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("timeout must not be zero"),
        "{err}"
    );
    // An interrupter for another type than the maker makes is a compile error now
    // (the builder carries the object's type; see the `compile_fail` example on
    // `WorkerBuilder::interrupter`).
}

/// A connected client whose server never answers, and the listener that keeps it so.
fn stuck_client() -> (TcpStream, TcpStream, TcpListener) {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(silent.local_addr().unwrap()).unwrap();
    let socket = client.try_clone().unwrap();
    (client, socket, silent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_call_carries_its_own_interrupter_fired_when_its_caller_goes_away() {
    let lane = async_bridge::Offloader::builder("clients")
        .max_concurrency(1)
        .build()
        .unwrap();
    let (mut client, socket, _silent) = stuck_client();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stuck = tokio::spawn(lane.run_with_interrupter(
        move |_| {
            started_tx.send(()).unwrap();
            client.read(&mut [0; 16])
        },
        move || {
            let _ = socket.shutdown(Shutdown::Both);
        },
    ));
    started_rx.await.unwrap();
    stuck.abort();
    let _ = stuck.await;
    // The lane's only slot is free again: the read returned when its socket was shut.
    assert_eq!(lane.run(|| 5).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_shutdown_interrupts_running_calls_and_reports_them() {
    let lane = async_bridge::Offloader::builder("clients").build().unwrap();
    let (mut client, socket, _silent) = stuck_client();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let stuck = tokio::spawn(lane.run_with_interrupter(
        move |_| {
            started_tx.send(()).unwrap();
            client.read(&mut [0; 16])
        },
        move || {
            let _ = socket.shutdown(Shutdown::Both);
        },
    ));
    started_rx.await.unwrap();
    let report = lane.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.interrupted().len(), 1, "{report}");
    assert!(report.interrupted()[0].stopped_within_grace());
    // The read saw its socket shut (end of stream or an error), and returned.
    let read = stuck.await.unwrap().unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Each worker numbers its own calls, and a call's id in the worker's interrupt slot is
/// its number (no process-wide counter per call): two workers' first calls share a
/// number. A caller giving up its running query on one worker interrupts that worker's
/// query only; the other's runs on until its own caller goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_reaches_only_its_own_worker_though_call_numbers_repeat() {
    fn counted_worker(name: &str, fires: &Arc<AtomicUsize>) -> Worker<Connection> {
        let fires = Arc::clone(fires);
        Worker::builder(name)
            .interrupter(move |conn: &Connection| {
                let handle = conn.get_interrupt_handle();
                let fires = Arc::clone(&fires);
                move || {
                    fires.fetch_add(1, Ordering::SeqCst);
                    handle.interrupt();
                }
            })
            .spawn(Connection::open_in_memory)
            .unwrap()
    }
    let (fires_a, fires_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, b) = (counted_worker("a", &fires_a), counted_worker("b", &fires_b));
    let endless = |started: tokio::sync::oneshot::Sender<()>| {
        move |c: &mut Connection| {
            started.send(()).unwrap();
            c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0))
        }
    };
    let (started_a, on_a) = tokio::sync::oneshot::channel();
    let (started_b, on_b) = tokio::sync::oneshot::channel();
    let running_a = tokio::spawn(a.call(endless(started_a)));
    let running_b = tokio::spawn(b.call(endless(started_b)));
    on_a.await.unwrap();
    on_b.await.unwrap();
    running_b.abort();
    let _ = running_b.await;
    // B is free again once its query was stopped.
    assert_eq!(b.call(|c| select(c, 2)).await.unwrap().unwrap(), 2);
    assert!(fires_b.load(Ordering::SeqCst) >= 1);
    assert_eq!(fires_a.load(Ordering::SeqCst), 0, "B's interrupt reached A");
    assert!(
        !running_a.is_finished(),
        "A's query stopped without its caller"
    );
    running_a.abort();
    let _ = running_a.await;
    assert_eq!(a.call(|c| select(c, 1)).await.unwrap().unwrap(), 1);
    assert!(fires_a.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_interrupter_that_owns_a_runtime_is_dropped_on_the_workers_thread() {
    // Legacy clients often own a tokio runtime, and a runtime dropped where blocking is
    // not allowed panics. The interrupter is taken from the object on the worker's
    // thread; it must be dropped there when the thread ends, as the object is, not kept
    // until the worker's last handle is dropped (here, in this async test).
    struct OwnsARuntime {
        _runtime: tokio::runtime::Runtime,
        dropped_on: mpsc::Sender<Option<String>>,
    }
    impl Drop for OwnsARuntime {
        fn drop(&mut self) {
            let here = std::thread::current().name().map(str::to_owned);
            let _ = self.dropped_on.send(here);
        }
    }
    let (tx, rx) = mpsc::channel();
    let worker = Worker::builder("interrupter-release")
        .interrupter(move |_: &u32| {
            let legacy = OwnsARuntime {
                _runtime: support::a_runtime_to_own(),
                dropped_on: tx.clone(),
            };
            move || {
                let _ = &legacy;
            }
        })
        .spawn(|| Ok::<_, std::io::Error>(7u32))
        .unwrap();
    assert_eq!(worker.call(|n| *n).await.unwrap(), 7);
    let report = worker.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    // The thread has ended, and the handle is still alive: the interrupter is gone,
    // dropped on the worker's thread.
    let dropped_on = rx.try_recv().expect("the interrupter outlived its thread");
    assert_ne!(dropped_on, std::thread::current().name().map(str::to_owned));
    drop(worker); // and nothing is left to drop here
}
