//! loom models of an `Offloader` lane: admission, drainers, linger, queue accounting
//! and shutdown (the `# Invariants` of `lane/mod.rs`), driven through the real call future
//! (`OffloadCall`) and the real shutdown step (`close`).
//!
//! Not modelled, and why:
//! - tokio's blocking pool: a drainer runs on a loom thread (`sync::spawn_blocking`)
//!   instead of `spawn_blocking`. A drainer dropped unrun by a runtime shutting down
//!   (`Drainer::drop`) is therefore not modelled.
//! - time: the linger (`Condvar::wait_for(LINGER)`) is either a wait that always times
//!   out after letting every other thread run (`TimedWait::TimesOut`: the linger ending
//!   at the worst moment, racing an admission to the idle drainer), or an untimed wait
//!   that only a notification ends (`TimedWait::Untimed`: a lost notification is a
//!   deadlock); each model runs under both. The lane's `timeout` needs tokio's timer and
//!   is not modelled (a timed-out call gives up exactly as a dropped one, which is).
//! - shutdown's wait for running closures (tokio's `Notify` and a deadline): the model
//!   joins the drainers instead and then checks the counts.
//! - a drainer's spin (invariant 9) is one look at the queue, any other thread's steps
//!   before it, and an admission always counts on a spinning drainer (the real spin
//!   looks for up to `SPIN`; the model's look is the spin ending at the worst moment).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::loom::future::block_on;
use ::loom::thread;
use tokio::runtime::Handle;

use super::call::OffloadCall;
use super::{Lane, Runner};
use crate::sync::model::{check, join_spawned, set_timed_waits, TimedWait};
use crate::sync::{Condvar, Mutex};

/// What ran, in order.
type Log = Arc<std::sync::Mutex<Vec<u32>>>;

fn lane(handle: &Handle, max_concurrency: usize, max_queue: usize) -> Arc<Lane> {
    let name = Arc::from("model");
    let lane = Lane::new(
        name,
        max_concurrency,
        max_queue,
        None,
        Runner::Blocking(Some(handle.clone())),
    );
    Arc::new(lane)
}

/// A call that appends `n` to the log and returns it.
fn call(lane: &Arc<Lane>, log: &Log, n: u32) -> OffloadCall<u32> {
    let log = Arc::clone(log);
    OffloadCall::new(lane, Location::caller(), false, move |_| {
        log.lock().unwrap().push(n);
        n
    })
}

/// Polls once (admission, and the reply if it is already in) with a waker that does
/// nothing.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

/// After every drainer has left: nothing queued, running or held, every slot free, no
/// drainer spinning.
fn assert_settled(lane: &Lane) {
    let state = lane.state.lock();
    assert_eq!(state.queued, 0, "queued did not return to 0");
    assert_eq!(state.running, 0, "running did not return to 0");
    assert_eq!(state.drainers, 0, "a drainer slot was not given back");
    assert_eq!(state.idle, 0);
    assert_eq!(state.starting, 0, "a drainer never started");
    assert!(!state.spinning, "a drainer left spinning");
    assert!(state.queue.is_empty(), "entries left in the queue");
    assert!(
        state.sites.iter().all(Option::is_none),
        "a slot still names a site"
    );
}

/// The answer of a call polled once already: the one it gave, or the one awaited now.
fn finish<F: Future + Unpin>(fut: F, first: Poll<F::Output>) -> F::Output {
    match first {
        Poll::Ready(answer) => answer,
        Poll::Pending => block_on(fut),
    }
}

/// Checks `f` under loom with the linger `how`, handing it the handle of a runtime that
/// its lanes are given (nothing is spawned on it in the models).
fn model(name: &'static str, how: TimedWait, f: impl Fn(&Handle) + Send + Sync + 'static) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    set_timed_waits(how);
    check(name, move || f(&handle));
    set_timed_waits(TimedWait::TimesOut);
}

/// One drainer slot, room for two queued calls; a caller that submits `a` then `b`
/// without waiting and then awaits both, a third call polled once (admitted) and
/// dropped by the main thread (withdrawn while queued, or its closure already claimed),
/// then a shutdown once the caller has its answers: `a` runs before `b` (FIFO), both
/// complete with their own value, each closure runs at
/// most once and the dropped one never runs after its withdrawal, no call is lost or
/// left waiting (loom reports a deadlock), the completed count is exactly the closures
/// that ran, and `queued` returns to 0 with every entry counted once (a double count
/// underflows, a missed one stays above 0), every drainer slot given back.
fn callers_withdraw_then_shutdown(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 1, 2);
        let log: Log = Arc::default();
        let caller = {
            let (mut a, mut b) = (call(&lane, &log, 1), call(&lane, &log, 2));
            thread::spawn(move || {
                let a_now = poll_once(&mut a);
                let b_now = poll_once(&mut b);
                (finish(a, a_now).unwrap(), finish(b, b_now).unwrap())
            })
        };
        let mut dropped = call(&lane, &log, 3);
        let answered = poll_once(&mut dropped).is_ready();
        thread::yield_now(); // gives up later, whatever ran meanwhile
        drop(dropped);
        assert_eq!(caller.join().unwrap(), (1, 2));
        assert_eq!(
            lane.close(),
            0,
            "nothing is queued once the callers have answers"
        );
        join_spawned();
        let log = log.lock().unwrap().clone();
        let at = |n| log.iter().position(|&x| x == n);
        assert!(at(1) < at(2), "b ran before a: {log:?}");
        for n in [1, 2, 3] {
            assert!(
                log.iter().filter(|&&x| x == n).count() <= 1,
                "ran twice: {log:?}"
            );
        }
        if answered {
            assert!(log.contains(&3), "answered without running");
        }
        let completed = lane.counters.completed.load(Ordering::Relaxed);
        assert_eq!(completed, log.len() as u64, "completed miscounted");
        assert_settled(&lane);
    });
}

#[test]
fn callers_withdraw_then_shutdown_linger_times_out() {
    callers_withdraw_then_shutdown(
        "lane::callers_withdraw_then_shutdown (linger times out)",
        TimedWait::TimesOut,
    );
}

#[test]
fn callers_withdraw_then_shutdown_linger_untimed() {
    callers_withdraw_then_shutdown(
        "lane::callers_withdraw_then_shutdown (linger untimed)",
        TimedWait::Untimed,
    );
}

/// One drainer slot, room for one queued call; two callers each awaiting a call while
/// the main thread shuts the lane down at any moment: each caller is answered exactly
/// once, `Ok` with its value exactly when its closure ran, otherwise `is_shutdown` (not
/// admitted, or abandoned in the queue) and its closure never runs; the shutdown's
/// abandoned count is exactly the queued calls it failed; after the drainers leave,
/// `queued` and `running` are 0 and every slot is free.
fn callers_vs_shutdown(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 1, 1);
        let log: Log = Arc::default();
        let callers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let call = call(&lane, &log, n);
                thread::spawn(move || block_on(call))
            })
            .collect();
        let abandoned = lane.close();
        let answers: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        join_spawned();
        let log = log.lock().unwrap().clone();
        let mut failed = 0;
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
                    failed += 1;
                }
            }
        }
        assert!(
            abandoned <= failed,
            "abandoned {abandoned}, failed {failed}"
        );
        let completed = lane.counters.completed.load(Ordering::Relaxed);
        assert_eq!(completed, log.len() as u64, "completed miscounted");
        assert_settled(&lane);
    });
}

#[test]
fn callers_vs_shutdown_linger_times_out() {
    callers_vs_shutdown(
        "lane::callers_vs_shutdown (linger times out)",
        TimedWait::TimesOut,
    );
}

#[test]
fn callers_vs_shutdown_linger_untimed() {
    callers_vs_shutdown(
        "lane::callers_vs_shutdown (linger untimed)",
        TimedWait::Untimed,
    );
}

/// One drainer slot, the drainer made idle by a first call; then the main thread's call
/// `c`, admitted and given up after a moment, against another caller's `b`, submitted
/// meanwhile and awaited: the idle drainer runs `b`. The race it checks: `c` withdrawn
/// (its claim lost) but its place not yet freed while the drainer skips it and goes
/// idle, and `b` admitted in that window: `queued` still counts `c`, so `b` sees no
/// drainer free and is queued without waking one; freeing `c`'s place must then wake
/// the idle drainer for `b` (with the linger untimed, a missed wake-up is a deadlock;
/// with a real timed linger it is a call left waiting for a whole `LINGER`).
fn withdraw_vs_idle_drainer(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 1, 2);
        let log: Log = Arc::default();
        assert_eq!(block_on(call(&lane, &log, 0)).unwrap(), 0);
        let mut c = call(&lane, &log, 3);
        let c_answered = poll_once(&mut c).is_ready();
        let caller = {
            let b = call(&lane, &log, 2);
            thread::spawn(move || block_on(b))
        };
        thread::yield_now(); // gives up later, whatever ran meanwhile
        drop(c);
        assert_eq!(caller.join().unwrap().unwrap(), 2);
        assert_eq!(lane.close(), 0);
        join_spawned();
        let log = log.lock().unwrap().clone();
        assert!(
            log.iter().filter(|&&x| x == 3).count() <= 1,
            "ran twice: {log:?}"
        );
        if c_answered {
            assert!(log.contains(&3), "answered without running");
        }
        let completed = lane.counters.completed.load(Ordering::Relaxed);
        assert_eq!(completed, log.len() as u64, "completed miscounted");
        assert_settled(&lane);
    });
}

#[test]
fn withdraw_vs_idle_drainer_linger_times_out() {
    withdraw_vs_idle_drainer(
        "lane::withdraw_vs_idle_drainer (linger times out)",
        TimedWait::TimesOut,
    );
}

#[test]
fn withdraw_vs_idle_drainer_linger_untimed() {
    withdraw_vs_idle_drainer(
        "lane::withdraw_vs_idle_drainer (linger untimed)",
        TimedWait::Untimed,
    );
}

/// A call that waits until `gate` is open.
fn waits_for(lane: &Arc<Lane>, gate: &Gate, n: u32) -> OffloadCall<u32> {
    let gate = Arc::clone(gate);
    OffloadCall::new(lane, Location::caller(), false, move |_| {
        let mut open = gate.0.lock();
        while !*open {
            gate.1.wait(&mut open);
        }
        n
    })
}

/// A call that opens `gate`.
fn opens(lane: &Arc<Lane>, gate: &Gate, n: u32) -> OffloadCall<u32> {
    let gate = Arc::clone(gate);
    OffloadCall::new(lane, Location::caller(), false, move |_| {
        *gate.0.lock() = true;
        gate.1.notify_all();
        n
    })
}

/// A gate a call waits on: loom's lock and condition variable (a closure blocked on it
/// with nothing left to open it is a deadlock loom reports).
type Gate = Arc<(Mutex<bool>, Condvar)>;

/// Two drainer slots, the drainers made idle by two first calls (one of them may be
/// spinning, invariant 9, at any moment of what follows); then the caller submits `c`,
/// which waits until `d` has run, and `d`, and awaits both. Checks that admissions made
/// while a drainer spins, which notify no one, are not left waiting: the spinner takes
/// `c` and, taking it, must wake the other drainer for `d` queued behind it (otherwise
/// `c` holds the only running drainer until `d` runs, and `d` waits for a notification
/// that never comes: with the linger untimed, a deadlock loom reports). Then a
/// shutdown: every count back to 0, every slot given back, no drainer left spinning.
///
/// Only with the linger untimed: with lingers that time out, drainers leave and new
/// ones are started, more threads than loom models (and a missed notification is then a
/// call waiting for a linger, not a deadlock).
fn burst_behind_a_spinner(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 2, 2);
        let log: Log = Arc::default();
        let (mut a, mut b) = (call(&lane, &log, 1), call(&lane, &log, 2));
        let (a_now, b_now) = (poll_once(&mut a), poll_once(&mut b));
        assert_eq!(finish(a, a_now).unwrap(), 1);
        assert_eq!(finish(b, b_now).unwrap(), 2);
        let gate: Gate = Arc::default();
        let (mut c, mut d) = (waits_for(&lane, &gate, 3), opens(&lane, &gate, 4));
        let (c_now, d_now) = (poll_once(&mut c), poll_once(&mut d));
        assert_eq!(finish(c, c_now).unwrap(), 3);
        assert_eq!(finish(d, d_now).unwrap(), 4);
        assert_eq!(lane.close(), 0);
        join_spawned();
        let completed = lane.counters.completed.load(Ordering::Relaxed);
        assert_eq!(completed, 4, "completed miscounted");
        assert_settled(&lane);
    });
}

#[test]
fn burst_behind_a_spinner_linger_untimed() {
    burst_behind_a_spinner(
        "lane::burst_behind_a_spinner (linger untimed)",
        TimedWait::Untimed,
    );
}

/// Two drainer slots; the main thread submits `a` (a plain call) and `x`, whose closure
/// calls the lane again and blocks on that nested call (`block_on` on its drainer's
/// thread). A nested call with no slot left and every drainer running is refused as a
/// would-deadlock (it could be waiting for itself), but one admitted once `a` was
/// answered finds `a`'s drainer not running (idle, spinning or on its way back to the
/// queue) and must be taken by it: answered, never refused (before 86d43b8 a drainer on
/// its way back counted for nothing, and the nested call was refused with a drainer
/// free). Whatever the interleaving: no call lost or left waiting (loom reports a
/// deadlock), every count back to 0 and every slot given back after the shutdown.
///
/// Only with the linger untimed (as `burst_behind_a_spinner`).
fn nested_call_behind_a_drainer_on_its_way_back(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 2, 1);
        let log: Log = Arc::default();
        let a_answered = Arc::new(::loom::sync::atomic::AtomicBool::new(false));
        let mut a = call(&lane, &log, 1);
        let mut x = {
            let (lane, log, a_answered) =
                (Arc::clone(&lane), Arc::clone(&log), Arc::clone(&a_answered));
            OffloadCall::new(&Arc::clone(&lane), Location::caller(), false, move |_| {
                let after_a = a_answered.load(Ordering::SeqCst);
                let nested = block_on(call(&lane, &log, 3));
                (after_a, nested.map_err(|err| err.is_would_deadlock()))
            })
        };
        let a_now = poll_once(&mut a);
        let x_now = poll_once(&mut x);
        assert_eq!(finish(a, a_now).unwrap(), 1);
        a_answered.store(true, Ordering::SeqCst);
        let (after_a, nested) = finish(x, x_now).unwrap();
        match nested {
            Ok(n) => assert_eq!(n, 3),
            Err(would_deadlock) => {
                assert!(would_deadlock, "a nested call failed otherwise");
                assert!(!after_a, "refused as a deadlock with `a`'s drainer free");
            }
        }
        assert_eq!(lane.close(), 0);
        join_spawned();
        let ran = log.lock().unwrap().len() as u64;
        let completed = lane.counters.completed.load(Ordering::Relaxed);
        assert_eq!(completed, ran + 1, "completed miscounted"); // `x` too
        assert_settled(&lane);
    });
}

#[test]
fn nested_call_behind_a_drainer_on_its_way_back_linger_untimed() {
    nested_call_behind_a_drainer_on_its_way_back(
        "lane::nested_call_behind_a_drainer_on_its_way_back (linger untimed)",
        TimedWait::Untimed,
    );
}

/// Two drainer slots; one caller awaits `a`, then submits `b` and awaits it, as a task
/// awaiting one call after another does. `b` may come while `a`'s drainer is still on
/// its way back to the queue (its answer given, its next look not yet taken), idle or
/// spinning: whatever the interleaving, that drainer takes it, and no second drainer is
/// started (before, a call admitted while the drainer was on its way back started one;
/// from then on the next such call woke the idle one, which found nothing: a futex wake
/// on the caller's thread, and on 2 cores an awaited `Offloader::run` took 3-4 µs
/// instead of 2). No call is lost or left waiting (loom reports a deadlock), and every
/// count returns to 0 after the shutdown.
///
/// Only with the linger untimed (as `burst_behind_a_spinner`): a linger that times out
/// lets the drainer leave, and then `b` rightly starts another.
fn serial_calls_keep_one_drainer(name: &'static str, how: TimedWait) {
    model(name, how, move |handle| {
        let lane = lane(handle, 2, 1);
        let log: Log = Arc::default();
        assert_eq!(block_on(call(&lane, &log, 1)).unwrap(), 1);
        assert_eq!(block_on(call(&lane, &log, 2)).unwrap(), 2);
        assert_eq!(
            lane.state.lock().sites.len(),
            1,
            "a second drainer was started"
        );
        assert_eq!(lane.close(), 0);
        join_spawned();
        assert_eq!(*log.lock().unwrap(), [1, 2]);
        assert_settled(&lane);
    });
}

#[test]
fn serial_calls_keep_one_drainer_linger_untimed() {
    serial_calls_keep_one_drainer(
        "lane::serial_calls_keep_one_drainer (linger untimed)",
        TimedWait::Untimed,
    );
}
