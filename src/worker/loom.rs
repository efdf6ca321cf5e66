//! loom models of the `Worker` mailbox: FIFO slots, the line of waiting callers,
//! withdrawals, close, driven by the worker thread's real loop (`thread::serve`).
//!
//! Not modelled: the object's maker and rebuild-after-panic (the
//! models use `AfterPanic::Keep` and closures that do not panic), the OS thread and its
//! start-up handshake (`thread::start`: the model starts the loop on a loom thread and
//! calls `mark_stopped` after it, as `StopOnExit` does), and tokio's `Notify` that tells
//! `shutdown` the thread ended (an opaque step).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::loom::future::block_on;
use ::loom::thread;

use super::mailbox::{Call, Closed, Mailbox, Sender};
use super::thread::serve;
use super::AfterPanic;
use crate::sync::model::check;

/// The worker's object: the log of the calls it ran, in order.
type Log = Arc<std::sync::Mutex<Vec<u32>>>;

fn mailbox(capacity: usize) -> Arc<Mailbox<Log>> {
    let settings = super::mailbox::Settings {
        timeout: None,
        lease_limit: None,
        release_hook: None,
    };
    Mailbox::new(
        Arc::from("model"),
        super::thread::new_group(),
        capacity,
        settings,
    )
}

/// A call that appends `n` to the log.
fn call(mb: &Arc<Mailbox<Log>>, n: u32) -> Call<Log, u32> {
    mb.call(Location::caller(), false, move |log: &mut Log, _| {
        log.lock().unwrap().push(n);
        n
    })
}

/// Polls once (admission, and the reply if it is already in) with a waker that does
/// nothing: a later `block_on` registers its own.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

/// The answer of a call polled once already: the one it gave, or the one awaited now.
fn finish<F: Future + Unpin>(fut: F, first: Poll<F::Output>) -> F::Output {
    match first {
        Poll::Ready(answer) => answer,
        Poll::Pending => block_on(fut),
    }
}

/// Starts the worker loop on a loom thread, as `thread::start` does on an OS thread.
/// A mailbox of `capacity` with its worker thread serving it and one handle (`Sender`).
struct Served {
    mb: Arc<Mailbox<Log>>,
    log: Log,
    handle: Sender<Log>,
    worker: thread::JoinHandle<()>,
}

fn serving(capacity: usize) -> Served {
    let mb = mailbox(capacity);
    let log: Log = Arc::default();
    let handle = Sender::new(&mb);
    let worker = start(&mb, &log);
    Served {
        mb,
        log,
        handle,
        worker,
    }
}

fn start(mb: &Arc<Mailbox<Log>>, log: &Log) -> thread::JoinHandle<()> {
    let (mb, log) = (Arc::clone(mb), Arc::clone(log));
    thread::spawn(move || {
        let maker = Box::new(|| unreachable!("no rebuild in the models"));
        serve(&mb, log, maker, AfterPanic::Keep, None);
        mb.mark_stopped();
    })
}

/// Capacity 1, the worker thread serving, a caller that submits two calls `a` then `b`
/// without waiting (so `b` waits in line, or both do), and the main thread, whose call
/// `c` is polled once and dropped (withdrawn: from the line, from the queue or from the
/// worker's batch, or its token cancelled if it had started), and the worker's handle
/// dropped at the end: `a` runs before `b` (FIFO admission, by the worker for a caller
/// in line, and running), `a` and `b` are each answered exactly once with their own
/// value, `c` runs at most once, nothing waits forever (loom reports a deadlock), the
/// worker ends, and the queue, the batch, the withdrawn counts and the line are all back
/// to empty.
#[test]
fn fifo_withdraw() {
    check("worker::fifo_withdraw", || fifo_withdraw_model(1));
}

/// As [`fifo_withdraw`], with capacity 2: the worker takes `a` and `b` (or `b` and `c`)
/// as one batch, so `c` can also be withdrawn from the batch, freeing its place there.
#[test]
fn batch_withdraw() {
    check("worker::batch_withdraw", || fifo_withdraw_model(2));
}

/// The body of [`fifo_withdraw`] and [`batch_withdraw`].
fn fifo_withdraw_model(capacity: usize) {
    let Served {
        mb,
        log,
        handle,
        worker,
    } = serving(capacity);
    let first = {
        let mb = Arc::clone(&mb);
        thread::spawn(move || {
            let mut a = call(&mb, 1);
            let mut b = call(&mb, 2);
            let a_now = poll_once(&mut a);
            let b_now = poll_once(&mut b);
            (finish(a, a_now).unwrap(), finish(b, b_now).unwrap())
        })
    };
    let mut c = call(&mb, 3);
    let c_answered = poll_once(&mut c).is_ready();
    thread::yield_now(); // gives up later, whatever ran meanwhile
    drop(c);
    assert_eq!(first.join().unwrap(), (1, 2));
    drop(handle);
    worker.join().unwrap();
    let log = log.lock().unwrap().clone();
    let at = |n| log.iter().position(|&x| x == n);
    assert!(at(1) < at(2), "b ran before a: {log:?}");
    for n in [1, 2, 3] {
        assert!(
            log.iter().filter(|&&x| x == n).count() <= 1,
            "ran twice: {log:?}"
        );
    }
    assert!(at(1).is_some() && at(2).is_some(), "a call lost: {log:?}");
    if c_answered {
        assert!(at(3).is_some(), "c answered without running");
    }
    assert_eq!(mb.finished(), log.len() as u64, "finished miscounted");
    mb.assert_drained();
}

/// Capacity 1, the worker serving, two callers each awaiting one call, and a shutdown
/// (`close`) at any moment: each call is answered exactly once, `Ok` exactly when it
/// ran (a queued call still runs after close; one not yet admitted, or waiting in line,
/// fails with `is_shutdown`), no caller waits forever, the worker ends, and the mailbox
/// is empty after.
#[test]
fn close_vs_callers() {
    check("worker::close_vs_callers", || {
        let Served {
            mb,
            log,
            handle,
            worker,
        } = serving(1);
        let callers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let mb = Arc::clone(&mb);
                thread::spawn(move || block_on(call(&mb, n)))
            })
            .collect();
        assert!(mb.close(Closed::ShutDown));
        let answers: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        drop(handle);
        worker.join().unwrap();
        let log = log.lock().unwrap().clone();
        for (n, answer) in (1..).zip(&answers) {
            let ran = log.iter().filter(|&&x| x == n).count();
            match answer {
                Ok(value) => {
                    assert_eq!(*value, n);
                    assert_eq!(ran, 1, "answered Ok but ran {ran} times");
                }
                Err(err) => {
                    assert!(err.is_shutdown(), "{err}");
                    assert_eq!(ran, 0, "failed but ran");
                }
            }
        }
        mb.assert_drained();
    });
}

/// One caller makes a call, awaits it, and at once makes another (through its own
/// handle), while the main thread drops the other handle: the second call is admitted
/// while the worker thread returns from the first, looks for its next call (without
/// being `idle`, so the caller does not notify it), or sleeps, or in between. It is never
/// left unserved with the worker asleep (loom reports a deadlock), both run in order,
/// and the worker ends once the caller's handle goes too.
#[test]
fn a_call_behind_the_workers_look() {
    check("worker::a_call_behind_the_workers_look", || {
        let Served {
            mb,
            log,
            handle,
            worker,
        } = serving(1);
        let caller = {
            let (mb, own) = (Arc::clone(&mb), handle.clone());
            thread::spawn(move || {
                let first = block_on(call(&mb, 1)).unwrap();
                let second = block_on(call(&mb, 2)).unwrap();
                drop(own);
                (first, second)
            })
        };
        drop(handle);
        assert_eq!(caller.join().unwrap(), (1, 2));
        worker.join().unwrap();
        assert_eq!(*log.lock().unwrap(), [1, 2]);
        mb.assert_drained();
    });
}

/// The last handle and the last call go away at the same time: a call made through the
/// handle (so it holds the worker up, through the load count, without a sender of its
/// own) is awaited and dropped on one thread while the handle is dropped on another.
/// The call runs, and the worker thread ends (whichever goes second wakes it; loom
/// reports a deadlock if neither does).
#[test]
fn last_handle_vs_last_call() {
    check("worker::last_handle_vs_last_call", || {
        let Served {
            mb,
            log,
            handle,
            worker,
        } = serving(1);
        let c = call(&mb, 1);
        let caller = thread::spawn(move || block_on(c).unwrap());
        drop(handle);
        assert_eq!(caller.join().unwrap(), 1);
        worker.join().unwrap();
        assert_eq!(*log.lock().unwrap(), [1]);
        mb.assert_drained();
    });
}

/// Capacity 1, the worker serving, `a` admitted and `b` polled once (in line while `a`
/// waits, queued once the worker claimed `a`), then `b`'s caller gives up while another
/// thread closes the mailbox (as shutdown does, dropping the line's calls after
/// unlocking): `b` never runs twice and is never counted as withdrawn unless it was
/// admitted (every call submitted either ran or was withdrawn: a caller leaving a line
/// that close had taken used to withdraw its call as if admitted), and the mailbox is
/// empty after.
#[test]
fn close_vs_leaving_the_line() {
    check("worker::close_vs_leaving_the_line", || {
        let Served {
            mb,
            log,
            handle,
            worker,
        } = serving(1);
        let mut a = call(&mb, 1);
        let a_now = poll_once(&mut a);
        let mut b = call(&mb, 2);
        let _ = poll_once(&mut b);
        let closer = {
            let mb = Arc::clone(&mb);
            thread::spawn(move || {
                mb.close(Closed::ShutDown);
            })
        };
        drop(b);
        closer.join().unwrap();
        assert_eq!(finish(a, a_now).unwrap(), 1);
        drop(handle);
        worker.join().unwrap();
        let log = log.lock().unwrap().clone();
        assert!(
            log.iter().filter(|&&x| x == 2).count() <= 1,
            "ran twice: {log:?}"
        );
        let submitted = mb
            .counters
            .submitted
            .load(std::sync::atomic::Ordering::Relaxed);
        let withdrawn = mb
            .counters
            .withdrawn
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            submitted,
            mb.finished() + withdrawn,
            "submitted {submitted}, ran {log:?}, withdrawn {withdrawn}"
        );
        mb.assert_drained();
    });
}

/// Capacity 2, the worker serving; one caller awaits `a` and `b`, the main thread polls
/// `c` once and gives it up while another thread shuts the mailbox down past its grace
/// (`close`, then `abandon_queue`, as `shutdown` does): the worker's claims from its
/// batch, the caller's withdrawal from the queue or the batch, and the abandoning of
/// both race. Each call is answered once, `Ok` exactly when it ran, every call submitted
/// ran, was withdrawn or was abandoned (each counted once), and the mailbox is empty
/// after.
#[test]
fn abandon_vs_batch_withdraw() {
    check("worker::abandon_vs_batch_withdraw", || {
        let Served {
            mb,
            log,
            handle,
            worker,
        } = serving(2);
        let first = {
            let mb = Arc::clone(&mb);
            thread::spawn(move || {
                let mut a = call(&mb, 1);
                let mut b = call(&mb, 2);
                let a_now = poll_once(&mut a);
                let b_now = poll_once(&mut b);
                (finish(a, a_now), finish(b, b_now))
            })
        };
        let mut c = call(&mb, 3);
        let _ = poll_once(&mut c);
        let closer = {
            let mb = Arc::clone(&mb);
            thread::spawn(move || {
                mb.close(Closed::ShutDown);
                mb.abandon_queue()
            })
        };
        drop(c);
        let abandoned = closer.join().unwrap() as u64;
        let (a, b) = first.join().unwrap();
        drop(handle);
        worker.join().unwrap();
        let log = log.lock().unwrap().clone();
        for (n, answer) in [(1, a), (2, b)] {
            let ran = log.iter().filter(|&&x| x == n).count();
            match answer {
                Ok(value) => assert_eq!((value, ran), (n, 1), "{log:?}"),
                Err(err) => {
                    assert!(err.is_shutdown(), "{err}");
                    assert_eq!(ran, 0, "failed but ran: {log:?}");
                }
            }
        }
        assert!(
            log.iter().filter(|&&x| x == 3).count() <= 1,
            "ran twice: {log:?}"
        );
        let submitted = mb
            .counters
            .submitted
            .load(std::sync::atomic::Ordering::Relaxed);
        let withdrawn = mb
            .counters
            .withdrawn
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            submitted,
            mb.finished() + withdrawn + abandoned,
            "submitted {submitted}, ran {log:?}, withdrawn {withdrawn}, abandoned {abandoned}"
        );
        mb.assert_drained();
    });
}
