//! A lane's caller whose call an idle drainer takes looks for a quick reply before its
//! thread sleeps, and stops looking when the replies are slow (`Offloader::run`'s docs,
//! "Waiting for the reply"). Nothing here asserts a duration: a look's end is a lower
//! bound of time (the test holds a call past it), and a look is only expected where the
//! test itself saw less than its window pass.

mod support;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use support::{
    block_on_plain, first_poll_looks, lane_on, many_cores, past_the_window, poll_until_it_sleeps,
    within_a_minute, Gate, LOOK_WINDOW as WINDOW,
};

/// How long an idle drainer keeps its thread (`LINGER` inside the crate): a call admitted
/// within it of the lane's last call finds the drainer idle.
const LINGER: Duration = Duration::from_millis(20);

#[test]
fn a_call_an_idle_drainer_takes_is_looked_for_then_its_caller_sleeps_until_the_reply() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("look", &rt, 1);
        block_on_plain(lane.run(|| ())).unwrap(); // starts the drainer
        let mut asserted = false;
        for round in 0..200 {
            // A call answered within a window, as its caller saw it: the drainer saw a
            // wait no longer, and opened the window to its full width.
            let before = Instant::now();
            block_on_plain(lane.run(|| ())).unwrap();
            let quick = before.elapsed() < WINDOW;
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(lane.run(move || {
                held.wait();
                round
            }));
            let polled = Instant::now();
            let looked = first_poll_looks(&mut call);
            // It was taken at once by a drainer still idle (within its linger of the
            // quick call's admission) and its first poll returned within the window:
            // then it must have asked to be polled again. (A single core has no looks.)
            if quick && polled.elapsed() < WINDOW && before.elapsed() < LINGER && many_cores() {
                assert!(looked, "the caller did not look for its reply");
                asserted = true;
            }
            // The look ends by itself (the test would hang otherwise); then the caller
            // sleeps until the reply wakes it.
            let (looks, counter, woken, waker) = poll_until_it_sleeps(&mut call);
            gate.open();
            woken.recv().unwrap();
            assert!(counter.wakes.load(Ordering::SeqCst) > looks);
            let mut cx = Context::from_waker(&waker);
            assert_eq!(
                call.as_mut().poll(&mut cx).map(Result::unwrap),
                Poll::Ready(round)
            );
            if asserted {
                break;
            }
        }
        support::assert_settled(&lane.stats());
    });
}

#[test]
fn after_four_slow_calls_a_caller_no_longer_looks_for_the_reply() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("slow", &rt, 1);
        for _ in 0..4 {
            // Each runs for longer than a look's window.
            block_on_plain(lane.run(past_the_window)).unwrap();
        }
        let gate = Gate::new();
        let held = gate.clone();
        let mut call = Box::pin(lane.run(move || held.wait()));
        let (looks, _counter, woken, waker) = poll_until_it_sleeps(&mut call);
        assert_eq!(
            looks, 0,
            "the caller looked though the last replies were slow"
        );
        gate.open();
        woken.recv().unwrap();
        let mut cx = Context::from_waker(&waker);
        assert!(call.as_mut().poll(&mut cx).is_ready());
        assert_eq!(lane.stats().completed, 5);
    });
}

#[test]
fn a_caller_looking_for_its_reply_lets_its_runtime_run_the_task_that_answers_it() {
    // One thread for the caller and the task its call waits for: while the caller looks,
    // the task must run (a look that held the thread would keep it from running).
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lane = lane_on("answered", &rt, 1);
        rt.block_on(async {
            for round in 0..200u32 {
                let (tx, rx) = mpsc::channel();
                let task = tokio::spawn(async move { tx.send(round).unwrap() });
                let got = lane.run(move || rx.recv().unwrap()).await.unwrap();
                assert_eq!(got, round);
                task.await.unwrap();
            }
        });
        assert_eq!(lane.stats().completed, 200);
    });
}

#[test]
fn a_caller_that_drops_its_call_while_looking_leaves_exact_counts() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("dropped", &rt, 1);
        let rounds = 300;
        for _ in 0..rounds {
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(lane.run(move || held.wait()));
            let (counter, waker, _woken) = support::counting();
            let _ = call.as_mut().poll(&mut Context::from_waker(&waker));
            drop(counter);
            drop(call); // while it looks (or just after): withdrawn, or cancelled running
            gate.open();
        }
        // Every call either ran or was withdrawn before it started.
        block_on_plain(lane.run(|| ())).unwrap();
        let stats = lane.stats();
        assert_eq!(stats.submitted, rounds + 1);
        assert_eq!(stats.completed + stats.withdrawn, rounds + 1);
        assert_eq!(stats.cancelled, rounds);
        support::assert_settled(&stats);
    });
}
