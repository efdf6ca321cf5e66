//! Adversarial review of the worker mailbox rewrite (the line of waiting callers admitted
//! by whoever frees a place, the worker's batch, calls holding the worker up through its
//! load count): strict FIFO admission, withdrawals from the line, the queue and the
//! batch, the capacity bound, shutdown at every stage of a call, the last handle, leases
//! in the line, a pool's routing, panics, sync callers, and exact `Stats` after each.
//!
//! Nothing here sleeps to synchronise: calls are polled by hand (a poll is admission),
//! gates hold the worker, channels say when a call started.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_bridge::{AfterPanic, Stats, Worker, WorkerError, WorkerPool};
use support::{block_on_plain, guarded, poll_once, within_a_minute, DropProbe, Gate};

/// Generous: only a hang guard, never a timing assertion.
const HANG: Duration = Duration::from_secs(30);

type Boxed<R> = Pin<Box<dyn Future<Output = Result<R, WorkerError>> + Send>>;

/// The worker's object: the numbers of the calls it ran, in order.
type Log = Vec<u32>;

fn worker(name: &str, mailbox: usize) -> Worker<Log> {
    Worker::builder(name)
        .mailbox(mailbox)
        .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
        .unwrap()
}

/// A call that logs `n` and returns it.
fn logged(w: &Worker<Log>, n: u32) -> Boxed<u32> {
    Box::pin(w.call(move |log: &mut Log| {
        log.push(n);
        n
    }))
}

/// A call that logs `n`, says it started, and waits for `gate`.
fn gated(w: &Worker<Log>, n: u32, gate: &Gate) -> (Boxed<u32>, mpsc::Receiver<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let gate = gate.clone();
    let call = w.call(move |log: &mut Log| {
        log.push(n);
        started_tx.send(()).unwrap();
        gate.wait();
        n
    });
    (Box::pin(call), started_rx)
}

/// Polls once: the call is admitted into the queue or joins the line.
fn admit<F: Future + Unpin>(fut: &mut F) {
    assert!(poll_once(fut).is_pending(), "answered on its first poll");
}

/// A running call that holds the worker until `gate` opens.
fn hold(w: &Worker<Log>, n: u32, gate: &Gate) -> Boxed<u32> {
    let (mut call, started) = gated(w, n, gate);
    admit(&mut call);
    started
        .recv_timeout(HANG)
        .expect("the holding call started");
    call
}

fn log_of(w: &Worker<Log>) -> Log {
    block_on_plain(w.call(|log: &mut Log| log.clone())).unwrap()
}

/// (submitted, completed, panicked, withdrawn, timed_out, cancelled)
fn counts(s: &Stats) -> (u64, u64, u64, u64, u64, u64) {
    (
        s.submitted,
        s.completed,
        s.panicked,
        s.withdrawn,
        s.timed_out,
        s.cancelled,
    )
}

#[test]
fn waiters_for_room_are_admitted_and_run_in_strict_fifo_order() {
    within_a_minute(|| {
        let w = worker("fifo", 2);
        let gate = Gate::new();
        let first = hold(&w, 0, &gate);
        let mut calls: Vec<_> = (1..=60).map(|n| logged(&w, n)).collect();
        for call in &mut calls {
            admit(call);
        }
        let s = w.stats();
        // The running call's place is free: two queued, 58 in line.
        assert_eq!((s.submitted, s.queued, s.running), (3, 60, 1), "{s:?}");
        gate.open();
        assert_eq!(block_on_plain(first).unwrap(), 0);
        for (n, call) in (1..).zip(calls) {
            assert_eq!(block_on_plain(call).unwrap(), n);
        }
        assert_eq!(log_of(&w), (0..=60).collect::<Vec<_>>());
        let s = w.stats();
        assert_eq!(counts(&s), (62, 62, 0, 0, 0, 0), "{s:?}");
        assert_eq!((s.queued, s.running), (0, 0));
    });
}

#[test]
fn dropped_waiters_never_run_and_their_places_go_to_the_next_in_line() {
    within_a_minute(|| {
        let w = worker("dropped-waiters", 1);
        let gate = Gate::new();
        let first = hold(&w, 0, &gate);
        let mut calls: Vec<Option<Boxed<u32>>> = (1..=10).map(|n| Some(logged(&w, n))).collect();
        for call in calls.iter_mut().flatten() {
            admit(call);
        }
        let mut drop_call = |n: usize| drop(calls[n - 1].take());
        let s = w.stats();
        assert_eq!((s.submitted, s.queued), (2, 10), "{s:?}");
        drop_call(3); // in line: leaves it
        let s = w.stats();
        assert_eq!(counts(&s), (2, 0, 0, 0, 0, 1), "{s:?}");
        assert_eq!(s.queued, 9);
        drop_call(1); // queued: withdrawn, and 2 is admitted into its place
        let s = w.stats();
        assert_eq!(counts(&s), (3, 0, 0, 1, 0, 2), "{s:?}");
        assert_eq!(s.queued, 8);
        drop_call(2); // just admitted from the line: withdrawn in turn, 4 goes in
        let s = w.stats();
        assert_eq!(counts(&s), (4, 0, 0, 2, 0, 3), "{s:?}");
        drop_call(5);
        drop_call(7);
        let s = w.stats();
        assert_eq!(counts(&s), (4, 0, 0, 2, 0, 5), "{s:?}");
        assert_eq!(s.queued, 5);
        gate.open();
        assert_eq!(block_on_plain(first).unwrap(), 0);
        for call in calls.into_iter().flatten() {
            block_on_plain(call).unwrap();
        }
        assert_eq!(log_of(&w), [0, 4, 6, 8, 9, 10]);
        let s = w.stats();
        assert_eq!(counts(&s), (9, 7, 0, 2, 0, 5), "{s:?}");
        assert_eq!((s.queued, s.running), (0, 0));
    });
}

/// Polls `fut` once with the current task's waker.
async fn poll_here<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn a_waiter_that_times_out_never_runs_and_its_place_goes_to_the_next_in_line() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let w = Worker::builder("timeouts")
                .mailbox(1)
                .timeout(Duration::from_secs(10))
                .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
                .unwrap();
            // A lease holds the worker (its holder is not timed) and lets the clock go.
            let mut lease = w.lease().await.unwrap();
            let mut a = logged(&w, 1);
            assert!(poll_here(&mut a).await.is_pending()); // queued, times out at 10 s
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (mut b, mut c) = (logged(&w, 2), logged(&w, 3));
            assert!(poll_here(&mut b).await.is_pending()); // in line, times out at 15 s
            assert!(poll_here(&mut c).await.is_pending());
            let s = w.stats();
            assert_eq!((s.submitted, s.queued), (2, 3), "{s:?}");
            assert!(a.await.unwrap_err().is_timeout());
            let s = w.stats();
            // b took a's place; c still waits.
            assert_eq!(counts(&s), (3, 0, 0, 1, 1, 0), "{s:?}");
            assert_eq!(s.queued, 2);
            assert_eq!(lease.call(|log| log.clone()).await.unwrap(), Log::new());
            lease.finish().await.unwrap();
            assert_eq!(b.await.unwrap(), 2);
            assert_eq!(c.await.unwrap(), 3);
            assert_eq!(w.call(|log| log.clone()).await.unwrap(), [2, 3]);
            let s = w.stats();
            // The lease's holder and its call, b, c and the log read; a never ran.
            assert_eq!(counts(&s), (6, 5, 0, 1, 1, 0), "{s:?}");
        })
    });
}

#[test]
fn a_waiter_in_line_that_times_out_leaves_the_line_and_never_runs() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let w = Worker::builder("line-timeout")
                .mailbox(1)
                .timeout(Duration::from_secs(10))
                .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
                .unwrap();
            let lease = w.lease().await.unwrap();
            let mut a = logged(&w, 1);
            assert!(poll_here(&mut a).await.is_pending()); // queued
            let mut b = logged(&w, 2);
            assert!(poll_here(&mut b).await.is_pending()); // in line
            let (a, b) = tokio::join!(a, b);
            assert!(a.unwrap_err().is_timeout());
            assert!(b.unwrap_err().is_timeout());
            let s = w.stats();
            // Both timed out at 10 s; which was polled first after the timer decides
            // whether b was admitted into a's place before it timed out.
            assert_eq!(s.timed_out, 2, "{s:?}");
            assert_eq!(s.queued, 0, "{s:?}");
            assert_eq!(s.submitted - 1, s.withdrawn, "{s:?}");
            lease.finish().await.unwrap();
            assert_eq!(w.call(|log| log.clone()).await.unwrap(), Log::new());
        })
    });
}

/// Four threads (two sync callers, two async ones with many calls outstanding each)
/// through a mailbox of `capacity`: inside the worker, calls admitted and not finished
/// (queued, in the batch, and the one running) never exceed `capacity + 1`, each thread's
/// calls run in the order they were made, and the counts are exact.
fn four_threads_through(capacity: usize) {
    const PER_THREAD: u32 = 300;
    let w = worker("four-threads", capacity);
    let most_live = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (w, most_live) = (w.clone(), Arc::clone(&most_live));
            std::thread::spawn(move || {
                let make = |k: u32| {
                    let (inner, most_live) = (w.clone(), Arc::clone(&most_live));
                    move |log: &mut Log| {
                        let s = inner.stats();
                        let live = s.submitted - s.completed - s.panicked;
                        most_live.fetch_max(live, Ordering::Relaxed);
                        log.push(t * 10_000 + k);
                    }
                };
                if t % 2 == 0 {
                    for k in 0..PER_THREAD {
                        w.call_blocking(make(k)).unwrap();
                    }
                } else {
                    let mut calls: Vec<_> =
                        (0..PER_THREAD).map(|k| Box::pin(w.call(make(k)))).collect();
                    // Each polled once (admitted, or in line); one that already finished
                    // is not polled again (a future must not be polled after `Ready`).
                    let done: Vec<bool> = calls
                        .iter_mut()
                        .map(|call| match poll_once(call) {
                            std::task::Poll::Ready(result) => {
                                result.unwrap();
                                true
                            }
                            std::task::Poll::Pending => false,
                        })
                        .collect();
                    for (call, done) in calls.into_iter().zip(done) {
                        if !done {
                            block_on_plain(call).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let most = most_live.load(Ordering::Relaxed);
    assert!(
        most <= capacity as u64 + 1,
        "{most} calls live at once through a mailbox of {capacity}"
    );
    let log = log_of(&w);
    assert_eq!(log.len(), 4 * PER_THREAD as usize);
    for t in 0..4 {
        let mine: Vec<_> = log.iter().filter(|&&n| n / 10_000 == t).collect();
        assert!(
            mine.windows(2).all(|p| p[0] < p[1]),
            "thread {t}'s calls out of order"
        );
    }
    let total = 4 * u64::from(PER_THREAD) + 1;
    let s = w.stats();
    assert_eq!(counts(&s), (total, total, 0, 0, 0, 0), "{s:?}");
    assert_eq!((s.queued, s.running), (0, 0));
}

#[test]
fn four_threads_through_a_mailbox_of_one_never_exceed_it() {
    guarded("four threads, mailbox 1", || four_threads_through(1));
}

#[test]
fn four_threads_through_a_mailbox_of_two_never_exceed_it() {
    guarded("four threads, mailbox 2", || four_threads_through(2));
}

#[test]
fn a_withdrawal_racing_the_workers_batch_take_is_exact() {
    within_a_minute(|| {
        for _ in 0..100 {
            let w = worker("withdraw-race", 2);
            let gate = Gate::new();
            let first = hold(&w, 0, &gate);
            let (mut a, mut b, mut c) = (logged(&w, 1), logged(&w, 2), logged(&w, 3));
            admit(&mut a); // queued
            admit(&mut b); // queued
            admit(&mut c); // in line
            let barrier = Arc::new(Barrier::new(2));
            let dropper = {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    drop(a); // withdrawn from the queue or the batch, or too late
                })
            };
            barrier.wait();
            gate.open(); // the worker takes its next batch
            assert_eq!(block_on_plain(first).unwrap(), 0);
            assert_eq!(block_on_plain(b).unwrap(), 2);
            assert_eq!(block_on_plain(c).unwrap(), 3);
            dropper.join().unwrap();
            let log = log_of(&w);
            let a_ran = log.contains(&1);
            let expected: Log = if a_ran {
                vec![0, 1, 2, 3]
            } else {
                vec![0, 2, 3]
            };
            assert_eq!(log, expected);
            let s = w.stats();
            let ran = u64::from(a_ran);
            assert_eq!(
                (s.submitted, s.completed, s.withdrawn),
                (5, 4 + ran, 1 - ran),
                "{s:?}"
            );
            assert!(a_ran || s.cancelled == 1, "{s:?}");
            assert_eq!((s.queued, s.running), (0, 0), "{s:?}");
        }
    });
}

/// A worker whose object reports the thread it is dropped on.
struct Probed {
    log: Log,
    _probe: DropProbe,
}

fn probed(name: &str, mailbox: usize) -> (Worker<Probed>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let w = Worker::builder(name)
        .mailbox(mailbox)
        .on_lease_abandoned(|p: &mut Probed| p.log.push(99))
        .spawn(move || {
            Ok::<_, std::io::Error>(Probed {
                log: Vec::new(),
                _probe: DropProbe(tx.lock().unwrap().clone()),
            })
        })
        .unwrap();
    (w, rx)
}

fn p_logged(w: &Worker<Probed>, n: u32) -> Boxed<u32> {
    Box::pin(w.call(move |p: &mut Probed| {
        p.log.push(n);
        n
    }))
}

fn p_gated(w: &Worker<Probed>, n: u32, gate: &Gate) -> Boxed<bool> {
    let (started_tx, started_rx) = mpsc::channel();
    let gate = gate.clone();
    let mut call: Boxed<bool> = Box::pin(w.call_cancellable(move |p: &mut Probed, token| {
        p.log.push(n);
        started_tx.send(()).unwrap();
        gate.wait();
        token.is_cancelled()
    }));
    admit(&mut call);
    started_rx.recv_timeout(HANG).unwrap();
    call
}

#[test]
fn shutdown_fails_the_line_at_once_abandons_the_batch_and_queue_and_lets_the_running_call_end() {
    within_a_minute(|| {
        let (w, dropped) = probed("shutdown-stages", 3);
        let g0 = Gate::new();
        let first = p_gated(&w, 0, &g0);
        let g1 = Gate::new();
        // Queued behind `first`: x (which will hold the worker), a, b.
        let (x_started_tx, x_started) = mpsc::channel();
        let g1c = g1.clone();
        let mut x: Boxed<bool> = Box::pin(w.call_cancellable(move |p: &mut Probed, token| {
            p.log.push(10);
            x_started_tx.send(()).unwrap();
            g1c.wait();
            token.is_cancelled()
        }));
        admit(&mut x);
        let (mut a, mut b) = (p_logged(&w, 1), p_logged(&w, 2));
        admit(&mut a);
        admit(&mut b);
        g0.open();
        assert!(!block_on_plain(first).unwrap());
        // The worker took x, a, b as its batch and runs x: a and b sit in the batch.
        x_started.recv_timeout(HANG).unwrap();
        let mut c = p_logged(&w, 3);
        admit(&mut c); // x's place: queued
        let mut d = p_logged(&w, 4);
        admit(&mut d); // in line
        let mut e = Box::pin(w.lease());
        assert!(poll_once(&mut e).is_pending()); // a lease, in line
        let s = w.stats();
        assert_eq!((s.submitted, s.completed), (5, 1), "{s:?}");
        assert_eq!((s.queued, s.running), (5, 1), "{s:?}");

        let report = block_on_plain(w.shutdown(Duration::from_millis(50)));
        assert!(!report.is_complete());
        assert_eq!(report.abandoned(), 3, "{report:?}"); // a, b, c
        assert_eq!(report.finished(), 0, "{report:?}");
        assert_eq!(report.still_running().len(), 1, "{report:?}");
        for call in [a, b, c, d] {
            assert!(block_on_plain(call).unwrap_err().is_shutdown());
        }
        assert!(block_on_plain(e).unwrap_err().is_shutdown());
        assert!(block_on_plain(p_logged(&w, 5)).unwrap_err().is_shutdown());
        assert!(
            dropped.try_recv().is_err(),
            "object dropped under a running call"
        );
        g1.open();
        assert!(
            block_on_plain(x).unwrap(),
            "the running call's token not cancelled"
        );
        assert_eq!(
            dropped.recv_timeout(HANG).unwrap(),
            "shutdown-stages",
            "object dropped off its thread"
        );
        let s = w.stats();
        assert_eq!(counts(&s), (5, 2, 0, 0, 0, 0), "{s:?}");
        assert_eq!((s.queued, s.running), (0, 0), "{s:?}");
    });
}

#[test]
fn shutdown_with_a_lease_held_runs_the_hook_on_the_worker_thread_then_the_queue() {
    within_a_minute(|| {
        let (hook_tx, hook_rx) = mpsc::channel();
        let hook_tx = Mutex::new(hook_tx);
        let (probe_tx, dropped) = mpsc::channel();
        let probe_tx = Mutex::new(probe_tx);
        let w = Worker::builder("shutdown-lease")
            .mailbox(1)
            .on_lease_abandoned(move |p: &mut Probed| {
                p.log.push(99);
                let name = std::thread::current().name().unwrap_or("").to_owned();
                hook_tx.lock().unwrap().send(name).unwrap();
            })
            .spawn(move || {
                Ok::<_, std::io::Error>(Probed {
                    log: Vec::new(),
                    _probe: DropProbe(probe_tx.lock().unwrap().clone()),
                })
            })
            .unwrap();
        let mut lease = block_on_plain(w.lease()).unwrap();
        let mut a = p_logged(&w, 1);
        admit(&mut a); // queued behind the lease
        let mut b = p_logged(&w, 2);
        admit(&mut b); // in line
        let report = block_on_plain(w.shutdown(HANG));
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.abandoned(), 0, "{report:?}");
        assert_eq!(report.finished(), 2, "{report:?}"); // the holder and a
        assert_eq!(hook_rx.recv_timeout(HANG).unwrap(), "shutdown-lease");
        assert_eq!(block_on_plain(a).unwrap(), 1);
        assert!(block_on_plain(b).unwrap_err().is_shutdown());
        let s = w.stats();
        assert_eq!(counts(&s), (2, 2, 0, 0, 0, 0), "{s:?}");
        assert!(block_on_plain(lease.call(|p| p.log.clone()))
            .unwrap_err()
            .is_lease_ended());
        assert!(block_on_plain(lease.finish()).unwrap_err().is_lease_ended());
        assert_eq!(dropped.recv_timeout(HANG).unwrap(), "shutdown-lease");
    });
}

#[test]
fn the_last_handle_dropped_with_calls_in_line_and_queued_lets_them_run_then_the_thread_ends() {
    within_a_minute(|| {
        let (w, dropped) = probed("last-handle", 1);
        let gate = Gate::new();
        let first = p_gated(&w, 0, &gate);
        let mut calls: Vec<_> = (1..=4).map(|n| p_logged(&w, n)).collect();
        for call in &mut calls {
            admit(call); // 1 queued, 2..4 in line
        }
        let unpolled = p_logged(&w, 5); // made before the handle goes, polled after
        let peek = w.clone();
        drop(w);
        gate.open();
        assert!(!block_on_plain(first).unwrap());
        for (n, call) in (1..).zip(calls) {
            assert_eq!(block_on_plain(call).unwrap(), n);
        }
        assert!(dropped.try_recv().is_err(), "ended with a call still made");
        let s = peek.stats();
        assert_eq!(counts(&s), (5, 5, 0, 0, 0, 0), "{s:?}");
        drop(peek);
        assert_eq!(block_on_plain(unpolled).unwrap(), 5);
        assert_eq!(dropped.recv_timeout(HANG).unwrap(), "last-handle");
    });
}

#[test]
fn a_lease_in_line_is_served_in_its_turn_and_one_dropped_in_line_never_holds_the_worker() {
    within_a_minute(|| {
        let (w, _dropped) = probed("lease-line", 1);
        let gate = Gate::new();
        let first = p_gated(&w, 0, &gate);
        let mut a = p_logged(&w, 1);
        admit(&mut a); // queued
        let mut gone = Box::pin(w.lease());
        assert!(poll_once(&mut gone).is_pending()); // in line
        let mut lease = Box::pin(w.lease());
        assert!(poll_once(&mut lease).is_pending()); // in line
        let mut b = p_logged(&w, 2);
        admit(&mut b); // in line, behind the lease
        drop(gone);
        gate.open();
        assert!(!block_on_plain(first).unwrap());
        let mut lease = block_on_plain(lease).unwrap();
        // Callers before it have run, the one after it has not.
        assert_eq!(
            block_on_plain(lease.call(|p| p.log.clone())).unwrap(),
            [0, 1]
        );
        assert_eq!(block_on_plain(a).unwrap(), 1);
        block_on_plain(lease.finish()).unwrap();
        assert_eq!(block_on_plain(b).unwrap(), 2);
        // No hook ran: the dropped lease never held the object.
        let log = block_on_plain(w.call(|p: &mut Probed| p.log.clone())).unwrap();
        assert_eq!(log, [0, 1, 2]);
        let s = w.stats();
        // first, a, the lease's holder and its call, b, the log read; the dropped lease
        // was never submitted.
        assert_eq!(counts(&s), (6, 6, 0, 0, 0, 1), "{s:?}");
    });
}

#[test]
fn a_pool_routes_by_load_with_lines_behind_full_mailboxes() {
    within_a_minute(|| {
        let pool = WorkerPool::builder("routed")
            .workers(2)
            .mailbox(1)
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        let gate = Gate::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = mpsc::channel();
        let started_tx = Mutex::new(started_tx);
        let started_tx = Arc::new(started_tx);
        // Six calls, made one after another: each goes to the less loaded worker, so each
        // gets three (one running, one queued, one in line).
        let mut calls: Vec<_> = (0..6u32)
            .map(|n| {
                let (gate, order) = (gate.clone(), Arc::clone(&order));
                let (started, started_tx) = (Arc::clone(&started), Arc::clone(&started_tx));
                Box::pin(pool.call(move |_: &mut ()| {
                    let me = std::thread::current().name().unwrap().to_owned();
                    if started.fetch_add(1, Ordering::SeqCst) < 2 {
                        started_tx.lock().unwrap().send(()).unwrap();
                    }
                    gate.wait();
                    order.lock().unwrap().push((me.clone(), n));
                    me
                }))
            })
            .collect();
        for call in &mut calls {
            admit(call);
        }
        started_rx.recv_timeout(HANG).unwrap();
        started_rx.recv_timeout(HANG).unwrap();
        let s = pool.stats();
        // Whether a worker admitted its next call before it claimed the first is a race;
        // what waits is not.
        assert_eq!((s.running, s.queued), (2, 4), "{s:?}");
        gate.open();
        let threads: Vec<String> = calls
            .into_iter()
            .map(|c| block_on_plain(c).unwrap())
            .collect();
        for name in ["routed-0", "routed-1"] {
            assert_eq!(
                threads.iter().filter(|t| *t == name).count(),
                3,
                "{threads:?}"
            );
            let mine: Vec<u32> = order
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _)| t == name)
                .map(|(_, n)| *n)
                .collect();
            assert!(mine.windows(2).all(|p| p[0] < p[1]), "{mine:?}");
        }
        let s = pool.stats();
        assert_eq!(counts(&s), (6, 6, 0, 0, 0, 0), "{s:?}");
    });
}

#[test]
fn a_panic_with_a_line_behind_it_fails_only_its_caller() {
    within_a_minute(|| {
        let w = worker("panic-line", 1);
        let gate = Gate::new();
        let (started_tx, started) = mpsc::channel();
        let g = gate.clone();
        let mut first: Boxed<()> = Box::pin(w.call(move |_: &mut Log| {
            started_tx.send(()).unwrap();
            g.wait();
            panic!("boom");
        }));
        admit(&mut first);
        started.recv_timeout(HANG).unwrap();
        let mut calls: Vec<_> = (1..=3).map(|n| logged(&w, n)).collect();
        for call in &mut calls {
            admit(call);
        }
        gate.open();
        assert!(block_on_plain(first).unwrap_err().is_panic());
        for (n, call) in (1..).zip(calls) {
            assert_eq!(block_on_plain(call).unwrap(), n);
        }
        assert_eq!(log_of(&w), [1, 2, 3]);
        let s = w.stats();
        assert_eq!(counts(&s), (5, 4, 1, 0, 0, 0), "{s:?}");
    });
}

#[test]
fn a_rebuild_that_fails_after_a_panic_fails_the_queue_and_the_line_unrun() {
    within_a_minute(|| {
        let made = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(Mutex::new(Vec::new()));
        let w = Worker::builder("rebuild-fails")
            .mailbox(1)
            .after_panic(AfterPanic::Rebuild)
            .spawn({
                let made = Arc::clone(&made);
                move || match made.fetch_add(1, Ordering::SeqCst) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::other("no second object")),
                }
            })
            .unwrap();
        let gate = Gate::new();
        let (started_tx, started) = mpsc::channel();
        let g = gate.clone();
        let mut first: Boxed<()> = Box::pin(w.call(move |_: &mut ()| {
            started_tx.send(()).unwrap();
            g.wait();
            panic!("boom");
        }));
        admit(&mut first);
        started.recv_timeout(HANG).unwrap();
        let mut calls: Vec<Boxed<()>> = (1..=3)
            .map(|n| {
                let ran = Arc::clone(&ran);
                let call: Boxed<()> =
                    Box::pin(w.call(move |_: &mut ()| ran.lock().unwrap().push(n)));
                call
            })
            .collect();
        for call in &mut calls {
            admit(call); // 1 queued, 2 and 3 in line
        }
        gate.open();
        assert!(block_on_plain(first).unwrap_err().is_panic());
        for call in calls {
            let err = block_on_plain(call).unwrap_err();
            assert!(err.is_shutdown(), "{err}");
        }
        assert!(ran.lock().unwrap().is_empty());
        assert!(block_on_plain(w.call(|_| ())).unwrap_err().is_shutdown());
        assert_eq!(made.load(Ordering::SeqCst), 2);
        let s = w.stats();
        assert_eq!(counts(&s), (2, 0, 1, 0, 0, 0), "{s:?}");
        // `running` may still name the panicked call until the thread has ended.
        assert_eq!(s.queued, 0, "{s:?}");
    });
}

#[test]
fn a_maker_that_fails_or_panics_gives_its_error_and_no_worker() {
    let err = Worker::<()>::builder("bad-maker")
        .mailbox(1)
        .spawn(|| Err::<(), _>(std::io::Error::other("no")))
        .unwrap_err();
    assert!(err.is_maker_error(), "{err}");
    let err = Worker::<()>::builder("panicking-maker")
        .mailbox(1)
        .spawn(|| -> Result<(), std::io::Error> { panic!("maker") })
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
}

#[test]
fn a_sync_caller_waits_in_the_line_in_its_turn() {
    within_a_minute(|| {
        let w = worker("sync-line", 1);
        let gate = Gate::new();
        let first = hold(&w, 0, &gate);
        let mut a = logged(&w, 1);
        admit(&mut a); // queued
        let sync = {
            let w = w.clone();
            std::thread::spawn(move || w.call_blocking(|log: &mut Log| log.push(2)))
        };
        // The sync caller joins the line; a spin on the counts, not a sleep.
        while w.stats().queued < 2 {
            std::thread::yield_now();
        }
        let mut c = logged(&w, 3);
        admit(&mut c); // in line behind the sync caller
        assert_eq!(w.stats().submitted, 2);
        gate.open();
        block_on_plain(first).unwrap();
        block_on_plain(a).unwrap();
        sync.join().unwrap().unwrap();
        block_on_plain(c).unwrap();
        assert_eq!(log_of(&w), [0, 1, 2, 3]);
        let s = w.stats();
        assert_eq!(counts(&s), (5, 5, 0, 0, 0, 0), "{s:?}");
    });
}

/// Shutdown closes the mailbox and drops the line's calls outside the lock; a caller in
/// line that gives up meanwhile must not find its call still "admitted" and withdraw it
/// (it was never submitted: counting a withdrawal, and a withdrawn entry in the queue
/// that is not there, broke the counts).
#[test]
fn callers_leaving_the_line_while_shutdown_drops_it_count_no_withdrawal() {
    within_a_minute(|| {
        for _ in 0..20 {
            let w = worker("close-vs-line", 1);
            let gate = Gate::new();
            let first = hold(&w, 0, &gate);
            let mut a = logged(&w, 1);
            admit(&mut a); // queued
            let mut line: Vec<_> = (2..2_000).map(|n| logged(&w, n)).collect();
            for call in &mut line {
                admit(call);
            }
            let barrier = Arc::new(Barrier::new(2));
            let leaver = {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    // From the back: shutdown drops the line from the front.
                    while let Some(call) = line.pop() {
                        drop(call);
                    }
                })
            };
            barrier.wait();
            let report = block_on_plain(w.shutdown(Duration::from_millis(1)));
            leaver.join().unwrap();
            let s = w.stats();
            assert_eq!(
                s.withdrawn, 0,
                "a call that was never admitted withdrawn: {s:?}"
            );
            assert_eq!(s.submitted, 2, "{s:?}");
            assert_eq!(s.queued, 0, "{s:?}");
            gate.open();
            assert_eq!(block_on_plain(first).unwrap(), 0);
            assert!(block_on_plain(a).unwrap_err().is_shutdown());
            assert_eq!(report.abandoned(), 1, "{report:?}");
        }
    });
}

#[test]
fn a_call_timing_out_in_the_workers_batch_never_runs_and_admits_the_next_in_line() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let w = Worker::builder("batch-timeout")
                .mailbox(3)
                .timeout(Duration::from_secs(10))
                .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
                .unwrap();
            let first = w.lease().await.unwrap(); // holds the worker, lets the clock go
            let mut second = Box::pin(w.lease());
            assert!(poll_here(&mut second).await.is_pending()); // queued, untimed
            let mut a = logged(&w, 1);
            assert!(poll_here(&mut a).await.is_pending()); // queued, times out at 10 s
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (mut b, mut c) = (logged(&w, 2), logged(&w, 3));
            assert!(poll_here(&mut b).await.is_pending()); // queued, times out at 15 s
            assert!(poll_here(&mut c).await.is_pending()); // in line
            first.finish().await.unwrap();
            // The worker took the second holder, a and b as its batch, and serves the
            // second lease: a and b sit in the batch, c in line.
            let second = second.await.unwrap();
            let s = w.stats();
            assert_eq!((s.submitted, s.queued, s.running), (4, 3, 1), "{s:?}");
            assert!(a.await.unwrap_err().is_timeout());
            let s = w.stats();
            // a's place in the batch went to c, admitted by a's own timing out.
            assert_eq!(counts(&s), (5, 1, 0, 1, 1, 0), "{s:?}");
            assert_eq!((s.queued, s.running), (2, 1), "{s:?}");
            second.finish().await.unwrap();
            assert_eq!(b.await.unwrap(), 2);
            assert_eq!(c.await.unwrap(), 3);
            assert_eq!(w.call(|log| log.clone()).await.unwrap(), [2, 3]);
            let s = w.stats();
            assert_eq!(counts(&s), (6, 5, 0, 1, 1, 0), "{s:?}");
        })
    });
}

#[test]
fn the_last_handle_dropped_with_calls_in_the_batch_lets_them_run_then_the_thread_ends() {
    within_a_minute(|| {
        let (w, dropped) = probed("last-handle-batch", 3);
        let g0 = Gate::new();
        let first = p_gated(&w, 0, &g0);
        let g1 = Gate::new();
        let (x_started_tx, x_started) = mpsc::channel();
        let g1c = g1.clone();
        let mut x: Boxed<u32> = Box::pin(w.call(move |p: &mut Probed| {
            p.log.push(10);
            x_started_tx.send(()).unwrap();
            g1c.wait();
            10
        }));
        admit(&mut x);
        let (mut a, mut b) = (p_logged(&w, 1), p_logged(&w, 2));
        admit(&mut a);
        admit(&mut b);
        g0.open();
        block_on_plain(first).unwrap();
        x_started.recv_timeout(HANG).unwrap(); // a and b in the batch
        let mut c = p_logged(&w, 3);
        admit(&mut c); // queued
        let mut d = p_logged(&w, 4);
        admit(&mut d); // in line
        let read = Box::pin(w.call(|p: &mut Probed| p.log.clone())); // made, not polled
        drop(w);
        g1.open();
        for (n, call) in [(10, x), (1, a), (2, b), (3, c), (4, d)] {
            assert_eq!(block_on_plain(call).unwrap(), n);
        }
        assert_eq!(block_on_plain(read).unwrap(), [0, 10, 1, 2, 3, 4]);
        assert_eq!(dropped.recv_timeout(HANG).unwrap(), "last-handle-batch");
    });
}

#[test]
fn a_lease_waiting_in_line_keeps_the_worker_up_after_its_last_handle() {
    within_a_minute(|| {
        let (w, dropped) = probed("lease-last-handle", 1);
        let gate = Gate::new();
        let first = p_gated(&w, 0, &gate);
        let mut a = p_logged(&w, 1);
        admit(&mut a); // queued
        let mut lease = Box::pin(w.lease());
        assert!(poll_once(&mut lease).is_pending()); // in line
        drop(w);
        gate.open();
        block_on_plain(first).unwrap();
        assert_eq!(block_on_plain(a).unwrap(), 1);
        let mut lease = block_on_plain(lease).unwrap();
        block_on_plain(lease.call(|p| p.log.push(5))).unwrap();
        assert!(
            dropped.try_recv().is_err(),
            "object dropped under a held lease"
        );
        drop(lease); // unfinished: the hook runs, then the thread ends
        assert_eq!(dropped.recv_timeout(HANG).unwrap(), "lease-last-handle");
    });
}

/// A withdrawn call's closure is dropped by whoever skips or clears it; if it holds the
/// worker's last handle, that drop wakes the worker, which takes the mailbox lock: it
/// must not happen under the lock (the worker thread used to deadlock on itself there,
/// and the call before never got its answer).
#[test]
fn a_withdrawn_call_holding_the_last_handle_is_dropped_outside_the_mailbox_lock() {
    guarded("the worker skipping a withdrawn call", || {
        let w = worker("drop-outside-lock", 1);
        let gate = Gate::new();
        let first = hold(&w, 0, &gate);
        let keep = w.clone();
        let mut a: Boxed<()> = Box::pin(w.call(move |_: &mut Log| drop(keep)));
        admit(&mut a); // queued
        drop(w); // a's closure holds the last handle
        drop(a); // withdrawn: the worker skips it when it takes its next batch
        gate.open();
        assert_eq!(block_on_plain(first).unwrap(), 0);
    });
}

/// As above, for the withdrawn calls a caller clears from the queue when they dominate it.
#[test]
fn withdrawn_calls_cleared_from_the_queue_are_dropped_outside_the_mailbox_lock() {
    guarded("a caller clearing withdrawn calls", || {
        let w = worker("compact-outside-lock", 100);
        let gate = Gate::new();
        let first = hold(&w, 0, &gate);
        let keep = w.clone();
        let mut calls: Vec<Boxed<()>> = vec![Box::pin(w.call(move |_: &mut Log| drop(keep)))];
        calls.extend((1..80).map(|_| -> Boxed<()> { Box::pin(w.call(|_: &mut Log| ())) }));
        for call in &mut calls {
            admit(call); // all queued
        }
        drop(w); // the first call's closure holds the last handle
        drop(calls); // withdrawn, one by one: the queue is cleared of them on the way
        gate.open();
        assert_eq!(block_on_plain(first).unwrap(), 0);
    });
}

#[test]
fn a_sync_caller_timing_out_in_line_never_runs() {
    within_a_minute(|| {
        let w = Worker::builder("sync-timeout")
            .mailbox(1)
            .timeout(Duration::from_millis(50))
            .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
            .unwrap();
        // The async calls are timed on this runtime; polled by hand once only, they never
        // see their own timeouts fire.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let entered = rt.enter();
        let gate = Gate::new();
        // Held until the sync caller has timed out: no race with the timeout.
        let first = hold(&w, 0, &gate);
        let mut a = logged(&w, 1);
        admit(&mut a); // queued
        drop(entered);
        let sync = w.clone();
        let err = std::thread::spawn(move || sync.call_blocking(|log: &mut Log| log.push(2)))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        let s = w.stats();
        assert_eq!(s.timed_out, 1, "{s:?}");
        assert_eq!(s.submitted, 2, "the timed-out caller was admitted: {s:?}");
        let mut b = logged(&w, 3);
        let _entered = rt.enter();
        admit(&mut b); // in line where the sync caller was
        assert_eq!(w.stats().queued, 2);
        gate.open();
        // Answered, or timed out (the gate was held past 50 ms): not asserted.
        let _ = block_on_plain(first);
        let _ = block_on_plain(a);
        let _ = block_on_plain(b);
        let log = loop {
            // Retried: the read itself has the worker's 50 ms timeout.
            if let Ok(log) = rt.block_on(w.call(|log: &mut Log| log.clone())) {
                break log;
            }
        };
        assert_eq!(log[0], 0);
        assert!(!log.contains(&2), "a timed-out caller ran: {log:?}");
    });
}

/// Under the virtual-time harness, a call admitted to an idle worker holds the clock until
/// it is claimed; withdrawn at once (from the queue, or from the line after a withdrawal
/// admitted it), it must let the clock go, or the next sleep stalls the harness.
#[test]
fn calls_withdrawn_at_once_under_virtual_time_do_not_hold_the_clock() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let w = Worker::builder("virtual-withdraw")
                .mailbox(1)
                .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
                .unwrap();
            let start = tokio::time::Instant::now();
            for round in 0..50u32 {
                let (mut a, mut b) = (logged(&w, round), logged(&w, 1_000 + round));
                let _ = poll_here(&mut a).await; // queued (the worker is idle)
                let _ = poll_here(&mut b).await; // in line, or queued once a was claimed
                drop(a); // withdrawn, or too late; b takes its place if it waited
                drop(b);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            assert_eq!(start.elapsed(), Duration::from_secs(50 * 60));
            let s = w.stats();
            assert_eq!(s.completed + s.withdrawn, s.submitted, "{s:?}");
        })
    });
}
