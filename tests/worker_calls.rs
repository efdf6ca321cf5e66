//! `Worker<T>`: calls, the object's thread, panics and the panic policy, cancellation,
//! the bounded FIFO mailbox, bad configuration, auto traits.

mod support;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;

use async_bridge::{AfterPanic, Worker, WorkerError};
use futures::future::join_all;
use support::{block_on_plain, panic_text, rt, within_a_minute, DropProbe, Gate, PanicsOnDrop};
use tokio_util::sync::CancellationToken;

type Io<T> = std::io::Result<T>;

/// Polls a future once with the current task's waker (so that it is woken later).
async fn poll_now<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    futures::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn calls_run_in_order_on_the_named_thread() {
    within_a_minute(|| {
        rt().block_on(async {
            let w = Worker::builder("ledger")
                .spawn(|| Io::Ok(Vec::new()))
                .unwrap();
            for i in 0..100 {
                w.call(move |v: &mut Vec<u32>| v.push(i)).await.unwrap();
            }
            let (len, thread) = w
                .call(|v| (v.len(), std::thread::current().name().map(str::to_owned)))
                .await
                .unwrap();
            assert_eq!(len, 100);
            assert_eq!(thread.as_deref(), Some("ledger"));
            assert_eq!(
                w.call(|v| v.clone()).await.unwrap(),
                (0..100).collect::<Vec<_>>()
            );
        })
    });
}

#[test]
fn a_value_that_is_not_send_lives_and_dies_on_its_thread() {
    within_a_minute(|| {
        let (dropped_tx, dropped_rx) = mpsc::channel();
        rt().block_on(async move {
            // Rc<RefCell<_>> is neither Send nor Sync.
            let w = Worker::builder("rc-owner")
                .spawn(move || {
                    let probe = DropProbe(dropped_tx.clone());
                    Io::Ok((Rc::new(RefCell::new(vec![1u32])), probe))
                })
                .unwrap();
            w.call(|(rc, _)| {
                let alias = Rc::clone(rc);
                alias.borrow_mut().push(2);
            })
            .await
            .unwrap();
            let seen = w
                .call(|(rc, _)| (Rc::strong_count(rc), rc.borrow().clone()))
                .await;
            assert_eq!(seen.unwrap(), (1, vec![1, 2]));
            drop(w);
        });
        assert_eq!(dropped_rx.recv().unwrap(), "rc-owner");
    });
}

#[test]
fn the_maker_runs_on_the_worker_thread() {
    let w = Worker::builder("maker-thread")
        .spawn(|| Io::Ok(std::thread::current().name().map(str::to_owned)))
        .unwrap();
    let made_on = w.call_blocking(|name| name.clone()).unwrap();
    assert_eq!(made_on.as_deref(), Some("maker-thread"));
}

#[test]
fn a_panic_reaches_its_caller_and_the_worker_keeps_serving() {
    within_a_minute(|| {
        rt().block_on(async {
            let w = Worker::builder("fragile").spawn(|| Io::Ok(0u32)).unwrap();
            w.call(|n| *n = 41).await.unwrap();
            let err = w
                .call(|n| -> u32 {
                    *n += 1;
                    panic!("boom at {n}")
                })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            assert!(!err.is_shutdown());
            assert_eq!(err.name(), "fragile");
            assert_eq!(
                err.to_string(),
                "worker `fragile`: closure panicked: boom at 42"
            );
            assert_eq!(panic_text(&*err.into_panic()), "boom at 42");
            // Kept (the default): the object is as the panic left it.
            assert_eq!(w.call(|n| *n).await.unwrap(), 42);
        })
    });
}

#[test]
fn a_panic_with_a_custom_payload_keeps_it() {
    #[derive(Debug, PartialEq)]
    struct Code(u16);
    let w = Worker::builder("payload").spawn(|| Io::Ok(())).unwrap();
    let err = w
        .call_blocking(|_| -> () { std::panic::panic_any(Code(503)) })
        .unwrap_err();
    assert_eq!(err.to_string(), "worker `payload`: closure panicked");
    let err = err.try_into_panic().unwrap();
    assert_eq!(*err.downcast::<Code>().unwrap(), Code(503));
}

#[test]
fn rebuild_drops_the_old_object_on_its_thread_and_makes_a_new_one() {
    within_a_minute(|| {
        let (dropped_tx, dropped_rx) = mpsc::channel();
        let made = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&made);
        let w = Worker::builder("rebuilt")
            .after_panic(AfterPanic::Rebuild)
            .spawn(move || {
                let generation = counted.fetch_add(1, Ordering::SeqCst);
                Io::Ok((generation, DropProbe(dropped_tx.clone())))
            })
            .unwrap();
        assert_eq!(w.call_blocking(|(g, _)| *g).unwrap(), 0);
        let err = w
            .call_blocking(|_| -> () { panic!("corrupted") })
            .unwrap_err();
        assert!(err.is_panic());
        // The old object was dropped on the worker's thread before the caller heard back.
        assert_eq!(dropped_rx.try_recv().unwrap(), "rebuilt");
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert_eq!(w.call_blocking(|(g, _)| *g).unwrap(), 1);
    });
}

#[test]
fn a_rebuild_that_fails_stops_the_worker_and_every_caller_sees_why() {
    within_a_minute(|| {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let w = Worker::builder("one-shot")
            .after_panic(AfterPanic::Rebuild)
            .spawn(move || match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(()),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "licence server gone",
                )),
            })
            .unwrap();
        let err = w.call_blocking(|_| -> () { panic!("first") }).unwrap_err();
        assert!(err.is_panic());
        for _ in 0..2 {
            let err = w.call_blocking(|_| ()).unwrap_err();
            assert!(err.is_shutdown(), "{err}");
            assert!(err.to_string().contains("licence server gone"), "{err}");
            let cause = std::error::Error::source(&err).unwrap();
            let io = std::error::Error::source(cause).unwrap();
            assert_eq!(
                io.downcast_ref::<std::io::Error>().unwrap().kind(),
                std::io::ErrorKind::NotFound
            );
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_maker_that_fails_returns_its_error_from_spawn() {
    let err = Worker::builder("no-db")
        .spawn(|| -> Io<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "denied",
            ))
        })
        .unwrap_err();
    assert!(err.is_maker_error());
    assert!(!err.is_panic() && !err.is_shutdown() && !err.is_config());
    assert_eq!(err.to_string(), "worker `no-db`: the maker failed: denied");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::PermissionDenied
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
}

#[test]
fn a_maker_that_panics_returns_the_panic_from_spawn() {
    let err = Worker::builder("bad-maker")
        .spawn(|| -> Io<()> { panic!("no config file") })
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(panic_text(&*err.into_panic()), "no config file");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let err = Worker::builder("zero")
        .mailbox(0)
        .spawn(|| Io::Ok(()))
        .unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "worker `zero`: cannot start: invalid configuration for `zero`: mailbox must be at least 1"
    );
    let err = Worker::builder("nul\0name")
        .spawn(|| Io::Ok(()))
        .unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("NUL"));
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn a_call_dropped_before_it_starts_never_runs() {
    within_a_minute(|| {
        rt().block_on(async {
            let w = Worker::builder("cancel").spawn(|| Io::Ok(())).unwrap();
            let gate = Gate::new();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let g = gate.clone();
            let blocker = tokio::spawn(w.call(move |_| {
                started_tx.send(()).unwrap();
                g.wait();
            }));
            started_rx.await.unwrap();

            let ran = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ran);
            let mut queued = Box::pin(w.call(move |_| flag.store(true, Ordering::SeqCst)));
            assert!(poll_now(&mut queued).await.is_pending()); // admitted, waiting to start
            drop(queued);
            // Never polled at all: never admitted, never runs.
            let flag = Arc::clone(&ran);
            drop(w.call(move |_| flag.store(true, Ordering::SeqCst)));

            gate.open();
            blocker.await.unwrap().unwrap();
            w.call(|_| ()).await.unwrap(); // everything before it has been dealt with
            assert!(!ran.load(Ordering::SeqCst));
        })
    });
}

#[test]
fn a_running_call_sees_its_token_cancelled_when_the_caller_goes_away() {
    within_a_minute(|| {
        rt().block_on(async {
            let w = Worker::builder("tokens").spawn(|| Io::Ok(0u64)).unwrap();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let call = tokio::spawn(w.call_cancellable(
                move |steps, cancel: &CancellationToken| {
                    started_tx.send(()).unwrap();
                    loop {
                        *steps += 1; // one step of a long scan
                        if cancel.is_cancelled() {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                },
            ));
            started_rx.await.unwrap();
            call.abort();
            assert!(call.await.unwrap_err().is_cancelled());
            // The scan saw its token cancelled and stopped, so the next call runs (a scan
            // that never stopped would hang this test until `within_a_minute` fails it).
            assert!(w.call(|steps| *steps).await.unwrap() >= 1);
            let fresh = w
                .call_cancellable(|_, c: &CancellationToken| c.is_cancelled())
                .await;
            assert!(!fresh.unwrap());
        })
    });
}

/// A worker with a mailbox of 2, held busy by one call until the gate opens.
async fn busy_worker(mailbox: usize) -> (Worker<Vec<usize>>, Gate, tokio::task::JoinHandle<()>) {
    let w = Worker::builder("small-mailbox")
        .mailbox(mailbox)
        .spawn(|| Io::Ok(Vec::new()))
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let g = gate.clone();
    let blocker = w.call(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    });
    let blocker = tokio::spawn(async move { blocker.await.unwrap() });
    started_rx.await.unwrap();
    (w, gate, blocker)
}

#[test]
fn a_full_mailbox_makes_callers_wait_and_then_proceed_in_order() {
    within_a_minute(|| {
        rt().block_on(async {
            let (w, gate, blocker) = busy_worker(2).await;
            let mut calls = Vec::new();
            for i in 0..20 {
                let mut call = Box::pin(w.call(move |order: &mut Vec<usize>| order.push(i)));
                // 2 take the mailbox's places, 18 wait for room.
                assert!(poll_now(&mut call).await.is_pending());
                calls.push(call);
            }
            gate.open();
            blocker.await.unwrap();
            for result in join_all(calls).await {
                result.unwrap();
            }
            assert_eq!(
                w.call(|order| order.clone()).await.unwrap(),
                (0..20).collect::<Vec<_>>()
            );
        })
    });
}

#[test]
fn callers_that_give_up_while_queued_or_waiting_leave_no_trace() {
    within_a_minute(|| {
        rt().block_on(async {
            let (w, gate, blocker) = busy_worker(2).await;
            let mut calls = Vec::new();
            for i in 0..8 {
                let mut call = Box::pin(w.call(move |order: &mut Vec<usize>| order.push(i)));
                assert!(poll_now(&mut call).await.is_pending());
                calls.push(Some(call));
            }
            // 1 is in the mailbox, 5 and 6 wait for room: all three give up.
            for i in [1, 5, 6] {
                calls[i] = None;
            }
            gate.open();
            blocker.await.unwrap();
            for result in join_all(calls.into_iter().flatten()).await {
                result.unwrap();
            }
            assert_eq!(
                w.call(|order| order.clone()).await.unwrap(),
                vec![0, 2, 3, 4, 7]
            );
        })
    });
}

#[test]
fn a_burst_far_beyond_the_mailbox_completes() {
    within_a_minute(|| {
        rt().block_on(async {
            let w = Worker::builder("burst")
                .mailbox(16)
                .spawn(|| Io::Ok(0usize))
                .unwrap();
            let calls = (0..5_000).map(|i| w.call(move |sum: &mut usize| *sum += i));
            for result in join_all(calls).await {
                result.unwrap();
            }
            assert_eq!(w.call(|sum| *sum).await.unwrap(), (0..5_000).sum::<usize>());
        })
    });
}

#[test]
fn calls_need_no_tokio_runtime() {
    within_a_minute(|| {
        let w = Worker::builder("no-runtime")
            .spawn(|| Io::Ok(String::new()))
            .unwrap();
        block_on_plain(async {
            w.call(|s| s.push_str("plain")).await.unwrap();
            assert_eq!(w.call(|s| s.clone()).await.unwrap(), "plain");
        });
    });
}

#[test]
fn calling_the_worker_from_its_own_thread_is_refused_not_a_deadlock() {
    within_a_minute(|| {
        let w = Worker::builder("reentrant").spawn(|| Io::Ok(1u32)).unwrap();
        let inner = w.clone();
        let err = w
            .call_blocking(move |_| inner.call_blocking(|n| *n))
            .unwrap()
            .unwrap_err();
        assert!(err.is_would_deadlock());
        assert!(err.to_string().contains("own thread"), "{err}");
        // The same through an async call awaited on the worker's thread.
        let inner = w.clone();
        let err = w
            .call_blocking(move |_| block_on_plain(inner.call(|n| *n)))
            .unwrap()
            .unwrap_err();
        assert!(err.is_would_deadlock());
        assert_eq!(w.call_blocking(|n| *n).unwrap(), 1);
    });
}

#[test]
fn handles_clone_and_share_one_object() {
    let w = Worker::builder("shared").spawn(|| Io::Ok(0u32)).unwrap();
    let clones: Vec<_> = (0..4).map(|_| w.clone()).collect();
    for c in &clones {
        c.call_blocking(|n| *n += 1).unwrap();
    }
    assert_eq!(w.call_blocking(|n| *n).unwrap(), 4);
    assert!(format!("{w:?}").contains("shared"));
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    fn unpin<T: Unpin>() {}
    // The handle is Send + Sync even when the object is neither.
    send_sync::<Worker<Rc<RefCell<u8>>>>();
    send_sync::<async_bridge::WorkerPool<Rc<RefCell<u8>>>>();
    send_sync::<WorkerError>();
    send_sync::<async_bridge::ShutdownReport>();
    send_sync::<AfterPanic>();
    unpin::<Worker<Rc<u8>>>();
    let w = Worker::builder("traits")
        .spawn(|| Io::Ok(Rc::new(1u8)))
        .unwrap();
    send(&w.call(|rc| **rc));
    send(&w.call_cancellable(|rc, _| **rc));
    send(&w.shutdown(std::time::Duration::ZERO));
    fn boxed(_: Box<dyn std::error::Error + Send + Sync>) {}
    boxed(Box::new(
        w.call_blocking(|_| -> () { panic!("x") }).unwrap_err(),
    ));
}

/// `WorkerBuilder<T>` / `WorkerPoolBuilder<T>` (the builders carry the object's type):
/// every way of writing a builder infers `T` from what follows it — the maker, a typed
/// hook before it, a builder kept in a variable or a field, a turbofish — and a builder
/// for a `!Send` object is configured on one thread and spawned on another.
#[test]
fn worker_builder_generic_inference_forms() {
    use async_bridge::{WorkerBuilder, WorkerPoolBuilder};

    struct Config {
        db: WorkerBuilder<Vec<u8>>,
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    // From the maker alone, through `Vec::new`'s inferred element type.
    let hooked = Worker::builder("inferred")
        .on_lease_abandoned(|v: &mut Vec<u8>| v.clear())
        .interrupter(|_: &Vec<u8>| || {})
        .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
        .unwrap();
    // Kept in a field, configured later.
    let config = Config {
        db: WorkerBuilder::new("field"),
    };
    let field = config
        .db
        .mailbox(4)
        .spawn(|| Ok::<_, std::io::Error>(vec![1u8]))
        .unwrap();
    // A turbofish, and a pool kept in a variable.
    let turbofish = Worker::<u32>::builder("turbofish")
        .spawn(|| Ok::<_, std::io::Error>(7))
        .unwrap();
    let pool_builder = WorkerPoolBuilder::new("pool").workers(2);
    let pool = pool_builder
        .interrupter(|_: &String| || {})
        .spawn(|| Ok::<_, std::io::Error>(String::from("p")))
        .unwrap();
    // A `!Send` object's builder crosses threads before `spawn`.
    let rc_builder = Worker::builder("rc").mailbox(2);
    let rc = std::thread::spawn(move || {
        rc_builder
            .spawn(|| Ok::<_, std::io::Error>(Rc::new(5u8)))
            .unwrap()
    })
    .join()
    .unwrap();
    rt.block_on(async {
        assert_eq!(hooked.call(|v| v.len()).await.unwrap(), 0);
        assert_eq!(field.call(|v| v[0]).await.unwrap(), 1);
        assert_eq!(turbofish.call(|n| *n).await.unwrap(), 7);
        assert_eq!(pool.call(|s| s.clone()).await.unwrap(), "p");
        assert_eq!(rc.call(|r| **r).await.unwrap(), 5);
    });
    let debug = format!("{:?}", Worker::<Rc<u8>>::builder("debug").mailbox(3));
    assert!(
        debug.contains("WorkerBuilder") && debug.contains("mailbox: 3"),
        "{debug}"
    );
}

#[test]
fn a_call_future_keeps_its_times_in_the_job_box() {
    let worker = Worker::builder("size")
        .spawn(|| Ok::<_, std::io::Error>(0u64))
        .unwrap();
    let x = 3_u64;
    let call = worker.call(move |n| *n + x);
    // A `join_all` of a burst moves every call future into its own task: the call's
    // three timings live in its job's box, not in the future (160 bytes when they
    // were in it, on x86_64).
    assert!(
        std::mem::size_of_val(&call) <= 112,
        "a worker call future takes {} bytes",
        std::mem::size_of_val(&call)
    );
    drop(call);
}

/// An answer its caller gave up on is dropped on the worker's thread, and its `Drop`
/// (the caller's code) may panic: the worker's thread goes on, with its object, and
/// answers the call queued behind it and the calls after. (The thread ended, and every
/// later call failed as "worker has stopped".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_dropping_an_answer_nobody_took_keeps_the_worker() {
    let worker = Worker::builder("drop-panics")
        .spawn(|| Ok::<_, std::io::Error>(7u32))
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let mut first = Box::pin(worker.call(move |_| {
        g.wait();
        PanicsOnDrop
    }));
    assert!(support::poll_once(first.as_mut()).is_pending());
    while worker.stats().running == 0 {
        tokio::task::yield_now().await;
    }
    let mut second = Box::pin(worker.call(|n| *n + 1));
    assert!(support::poll_once(second.as_mut()).is_pending()); // queued behind `first`
    drop(first); // its caller gives up while it runs
    gate.open();
    assert_eq!(second.await.unwrap(), 8);
    assert_eq!(worker.call(|n| *n + 2).await.unwrap(), 9);
}
