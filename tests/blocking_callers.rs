//! `block_on` from every place it can be called from: each case runs, or (the thread of
//! a current_thread runtime) returns `is_would_deadlock` at once. Every test that could
//! hang is bounded by `within_a_minute`.

mod support;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use async_bridge::{block_on, unblock, BlockOnError, Portal};
use support::{panic_text, within_a_minute, SchedulerHeld};
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// A future that uses tokio's timer, spawner and IO driver of whatever runtime it is
/// polled in, and borrows its input.
async fn uses_tokio(input: &[u32]) -> u32 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(listener.local_addr().is_ok());
    let spawned = tokio::spawn(async { 1 }).await.unwrap();
    input.iter().sum::<u32>() + spawned
}

#[test]
fn a_plain_thread_runs_a_borrowing_future_with_tokio_inside() {
    let sum = within_a_minute(|| {
        let input = vec![1, 2, 3];
        block_on(uses_tokio(&input)).unwrap()
    });
    assert_eq!(sum, 7);
}

#[test]
fn a_future_that_is_not_send_runs() {
    let out = within_a_minute(|| {
        let local = std::rc::Rc::new(5);
        block_on(async move {
            tokio::task::yield_now().await;
            *local + 1
        })
        .unwrap()
    });
    assert_eq!(out, 6);
}

#[test]
fn a_multi_thread_worker_keeps_running_its_other_tasks() {
    // One worker: if the facade blocked it without `block_in_place`, the task that must
    // send the value could never run, and this would hang.
    let value = within_a_minute(|| {
        let rt = multi_thread(1);
        rt.block_on(async {
            let (entered_tx, entered_rx) = oneshot::channel::<()>();
            let (value_tx, value_rx) = oneshot::channel();
            let sender = tokio::spawn(async move {
                entered_rx.await.unwrap();
                value_tx.send(42).unwrap();
            });
            let facade = tokio::spawn(async move {
                block_on(async move {
                    entered_tx.send(()).unwrap();
                    value_rx.await.unwrap()
                })
                .unwrap()
            });
            sender.await.unwrap();
            facade.await.unwrap()
        })
    });
    assert_eq!(value, 42);
}

#[test]
fn the_root_future_of_a_multi_thread_block_on_runs() {
    let out =
        within_a_minute(|| multi_thread(1).block_on(async { block_on(uses_tokio(&[1])).unwrap() }));
    assert_eq!(out, 2);
}

#[test]
fn blocking_pool_threads_of_both_flavors_run() {
    for rt in [multi_thread(1), current_thread()] {
        let out = within_a_minute(move || {
            rt.block_on(async {
                let a = tokio::task::spawn_blocking(|| block_on(uses_tokio(&[1])).unwrap())
                    .await
                    .unwrap();
                let b = unblock(|| block_on(uses_tokio(&[2])).unwrap()).await;
                (a, b)
            })
        });
        assert_eq!(out, (2, 3));
    }
}

#[test]
fn rayon_and_dedicated_threads_run() {
    let out = within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        rayon::spawn(move || tx.send(block_on(uses_tokio(&[10])).unwrap()).unwrap());
        let from_rayon = rx.recv().unwrap();
        let from_compute =
            async_bridge::block_on(async_bridge::compute(|| block_on(async { 20 }).unwrap()))
                .unwrap();
        let dedicated = std::thread::Builder::new()
            .name("dedicated".into())
            .spawn(|| block_on(uses_tokio(&[30])).unwrap())
            .unwrap()
            .join()
            .unwrap();
        (from_rayon, from_compute, dedicated)
    });
    assert_eq!(out, (11, 20, 31));
}

#[test]
fn nested_calls_run_at_any_depth() {
    fn nest(depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        block_on(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            nest(depth - 1) + 1
        })
        .unwrap()
    }
    assert_eq!(within_a_minute(|| nest(4)), 4);
    // The same, starting on a multi-thread worker.
    let from_worker = within_a_minute(|| {
        multi_thread(1).block_on(async { tokio::spawn(async { nest(3) }).await.unwrap() })
    });
    assert_eq!(from_worker, 3);
}

#[test]
fn a_task_of_the_global_portal_itself_runs() {
    let out = within_a_minute(|| {
        let portal = Portal::global().unwrap();
        let task = portal
            .handle()
            .spawn(async { block_on(uses_tokio(&[4])).unwrap() });
        block_on(task).unwrap().unwrap()
    });
    assert_eq!(out, 5);
}

/// Runs `f` inside a current_thread runtime's `block_on`, bounded.
fn on_current_thread<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    within_a_minute(move || current_thread().block_on(f))
}

#[test]
fn the_thread_of_a_current_thread_runtime_is_refused_with_a_clear_error() {
    let (err, polled, line) = on_current_thread(async {
        let polled = Cell::new(false);
        let line = line!() + 1;
        let err = block_on(async { polled.set(true) }).unwrap_err();
        (err, polled.get(), line)
    });
    assert!(err.is_would_deadlock());
    assert!(!polled, "a refused future is never polled");
    assert_eq!(err.location().file(), file!());
    assert_eq!(err.location().line(), line);
    assert_eq!(err.portal_name(), None);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("facade called at {}:{line}:", file!())),
        "{message}"
    );
    assert!(message.contains("current_thread"), "{message}");
    assert!(message.contains("async_bridge::unblock"), "{message}");
    assert!(!err.is_panic() && !err.is_shutdown() && !err.is_no_runtime());
}

#[test]
fn a_task_spawned_on_a_current_thread_runtime_is_refused_too() {
    let err = on_current_thread(async {
        tokio::spawn(async { block_on(async { 1 }).unwrap_err() })
            .await
            .unwrap()
    });
    assert!(err.is_would_deadlock());
}

/// Issue 11, item 9: a thread inside a current_thread runtime's `Runtime::block_on`
/// while another thread holds that runtime's scheduler is refused, with the message that
/// says why (it must be free to take the scheduler over; tokio forbids blocking there).
/// Running it was tried and hangs in the corners below.
#[test]
fn a_second_thread_inside_a_current_thread_block_on_is_refused() {
    let err = on_a_second_thread(|| {
        // This thread is in the runtime's context, without its scheduler.
        assert!(Handle::try_current().is_ok());
        block_on(async { 42 })
    })
    .unwrap_err();
    assert!(err.is_would_deadlock(), "{err}");
    assert!(err.to_string().contains("does not allow blocking"), "{err}");
}

#[test]
fn a_local_set_is_refused_on_both_flavors() {
    let local = |rt: Runtime| {
        within_a_minute(move || {
            let set = tokio::task::LocalSet::new();
            rt.block_on(set.run_until(async {
                tokio::task::spawn_local(async { block_on(async { 1 }).unwrap_err() })
                    .await
                    .unwrap()
            }))
        })
    };
    assert!(local(current_thread()).is_would_deadlock());
    // On a multi-thread runtime's `block_on`, tokio refuses `block_in_place` inside a
    // LocalSet; the facade turns that refusal into the same error.
    assert!(local(multi_thread(1)).is_would_deadlock());
}

/// The other case only tokio's panic tells (documented in `block_on`): the thread of a
/// current_thread runtime that entered a multi-thread runtime's handle in its task.
#[test]
fn a_current_thread_task_inside_a_multi_thread_handle_is_refused() {
    let mt = multi_thread(1);
    let handle = mt.handle().clone();
    let err = on_current_thread(async move {
        let _entered = handle.enter();
        block_on(async { 1 }).unwrap_err()
    });
    assert!(err.is_would_deadlock());
    drop(mt);
}

#[test]
fn the_fix_the_message_gives_works_even_when_the_future_needs_that_runtime() {
    let out = on_current_thread(async {
        // A task only the current_thread runtime can run feeds the facade's future.
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move { tx.send(7).unwrap() });
        unblock(move || block_on(async { rx.await.unwrap() }).unwrap()).await
    });
    assert_eq!(out, 7);
}

#[test]
fn a_panic_in_the_future_resumes_in_the_caller_with_its_payload() {
    let payload = within_a_minute(|| {
        panic::catch_unwind(AssertUnwindSafe(|| {
            block_on(async { std::panic::panic_any(String::from("broken")) })
        }))
        .unwrap_err()
    });
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "broken");
    // The same from a multi-thread worker, where the future runs inside block_in_place.
    let payload = within_a_minute(|| {
        multi_thread(1).block_on(async {
            tokio::spawn(async { block_on(async { panic!("from a worker") }) })
                .await
                .unwrap_err()
                .into_panic()
        })
    });
    assert_eq!(panic_text(&*payload), "from a worker");
}

#[test]
fn the_caller_thread_is_fine_after_a_panic_and_after_a_refusal() {
    within_a_minute(|| {
        let _ = panic::catch_unwind(|| block_on(async { panic!("once") }));
        assert_eq!(block_on(async { 1 }).unwrap(), 1);
        let rt = current_thread();
        assert!(rt.block_on(async { block_on(async { 2 }) }).is_err());
        assert_eq!(block_on(async { 3 }).unwrap(), 3);
        assert!(Handle::try_current().is_err(), "no runtime context leaks");
    });
}

#[test]
fn the_error_is_send_sync_and_converts_to_io_error() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<BlockOnError>();
    let err = on_current_thread(async { block_on(async {}).unwrap_err() });
    let text = err.to_string();
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Deadlock);
    assert_eq!(io.to_string(), text);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(io);
    assert!(boxed.to_string().contains("refused to block"));
}

#[test]
fn into_panic_on_an_error_that_is_not_a_panic_gives_it_back() {
    let err = on_current_thread(async { block_on(async {}).unwrap_err() });
    let err = err.try_into_panic().unwrap_err();
    assert!(err.is_would_deadlock());
    let payload = panic::catch_unwind(AssertUnwindSafe(|| err.into_panic())).unwrap_err();
    assert!(panic_text(&*payload).contains("not a panic"));
}

/// Runs `body` on a second thread inside `rt`'s `Runtime::block_on` while another thread
/// holds the scheduler, and returns what it returned.
fn on_a_second_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = std::sync::Arc::new(current_thread());
    let held = SchedulerHeld::new(&rt);
    let second = within_a_minute(move || rt.block_on(async move { body() }));
    held.release();
    second
}

/// Promise 3 (it runs, or it is refused; it never hangs): a second thread inside a
/// current_thread `Runtime::block_on` blocks in the facade on a task of that runtime,
/// and the thread that drove the runtime leaves its `block_on`. In tokio alone the second
/// thread would take the scheduler over and run the task; blocked in the facade, it
/// could not, and nothing would drive the runtime again: a hang (seen when the facade
/// polled this thread's future directly). Refused instead.
#[test]
fn current_thread_other_hangs_when_the_driver_leaves() {
    let rt = std::sync::Arc::new(current_thread());
    let held = SchedulerHeld::new(&rt);
    let (go, gone) = oneshot::channel::<()>();
    let (blocking_tx, blocking) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    {
        let rt = std::sync::Arc::clone(&rt);
        std::thread::spawn(move || {
            let out = rt.block_on(async move {
                // A task of the current_thread runtime, that finishes after `go`.
                let task = tokio::spawn(async move {
                    gone.await.unwrap();
                    42
                });
                blocking_tx.send(()).unwrap();
                block_on(task)
            });
            let _ = done_tx.send(out);
        });
    }
    blocking.recv_timeout(Duration::from_secs(30)).unwrap();
    // The driver leaves; then the task may finish.
    held.release();
    go.send(()).unwrap();
    let out = done
        .recv_timeout(Duration::from_secs(20))
        .expect("hung: the second thread blocks on a runtime nobody drives");
    assert!(matches!(out, Ok(Ok(42))) || matches!(out, Err(ref e) if e.is_would_deadlock()));
}

/// The future of a facade is sync code's future: on a plain thread and on a multi-thread
/// worker (after `block_in_place`), tokio does not count the thread as inside a runtime,
/// so sync code inside it may use tokio's `blocking_*` calls (or drop a runtime, as
/// `reqwest::blocking` does). On a second thread inside a current_thread
/// `Runtime::block_on`, tokio still does, and no public API leaves that state: polled
/// there, tokio panicked ("Cannot block the current thread from within a runtime").
/// The facade refuses that thread instead.
#[test]
fn current_thread_other_sync_code_in_the_future_may_block_like_elsewhere() {
    let sync_code_inside = || {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        tx.try_send(5).unwrap();
        rx.blocking_recv()
    };
    // Elsewhere it works.
    assert_eq!(block_on(async { sync_code_inside() }).unwrap(), Some(5));
    let result = on_a_second_thread(move || {
        panic::catch_unwind(AssertUnwindSafe(|| block_on(async { sync_code_inside() })))
            .map_err(|payload| panic_text(&*payload))
    });
    match result {
        Ok(Ok(value)) => assert_eq!(value, Some(5)),
        Ok(Err(err)) => assert!(err.is_would_deadlock(), "{err}"),
        Err(panic) => panic!("tokio panicked inside the facade: {panic}"),
    }
}

/// A `LocalSet` polled on a second thread inside a current_thread `Runtime::block_on`:
/// the facade's table says a `LocalSet` is refused, but this thread drives no scheduler,
/// so it is `CurrentThreadOther`; polled directly, it blocked the `LocalSet`, and a
/// future that waits for one of its local tasks never finished. No public query tells a
/// `LocalSet` here from a blocking pool thread (both: no scheduler, a task id); tokio's
/// `block_in_place` does, and the facade refuses.
#[test]
fn current_thread_other_a_local_set_on_a_second_thread_is_refused() {
    let rt = std::sync::Arc::new(current_thread());
    let _held = SchedulerHeld::new(&rt);
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let out = rt.block_on(tokio::task::LocalSet::new().run_until(async {
            let (tx, rx) = oneshot::channel();
            // The waiting task first: the local task that answers it runs after it.
            let waiting = tokio::task::spawn_local(async move { block_on(rx) });
            tokio::task::spawn_local(async move { tx.send(42).unwrap() });
            waiting.await.unwrap()
        }));
        let _ = done_tx
            .send(matches!(out, Ok(Ok(42))) || matches!(out, Err(ref e) if e.is_would_deadlock()));
    });
    let fine = done
        .recv_timeout(Duration::from_secs(20))
        .expect("hung: the facade blocks the LocalSet whose task it waits for");
    assert!(fine);
}
