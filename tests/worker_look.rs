//! A worker's caller looks for a quick reply before its thread sleeps, and stops looking
//! when the replies are slow (`Worker::call`'s docs, "Waiting for the reply"). Nothing
//! here asserts a duration: a look's end is a lower bound of time (the test holds a call
//! past it), and a look is only expected where the test itself saw less than its window
//! pass.

mod support;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_bridge::Worker;
use support::{
    past_the_window, poll_until_it_sleeps, within_a_minute, Gate, LOOK_WINDOW as WINDOW,
};

type Io<T> = std::io::Result<T>;

#[test]
fn a_call_to_an_idle_worker_is_looked_for_then_its_caller_sleeps_until_the_reply() {
    within_a_minute(|| {
        let worker = Worker::builder("look").spawn(|| Io::Ok(())).unwrap();
        let gate = Gate::new();
        let held = gate.clone();
        let start = Instant::now();
        let mut call = Box::pin(worker.call(move |_| {
            held.wait();
            7
        }));
        let (looks, counter, woken, waker) = poll_until_it_sleeps(&mut call);
        // The look ends by itself (the test would hang otherwise), and it happened if
        // less than its window passed before the first poll returned (and the process
        // has a core to spare: on one, a caller does not look).
        if start.elapsed() < WINDOW && support::many_cores() {
            assert!(
                looks > 0,
                "the caller of a fresh worker did not look for its reply"
            );
        }
        gate.open();
        woken.recv().unwrap(); // the reply's wake-up
        assert!(counter.wakes.load(Ordering::SeqCst) > looks);
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            call.as_mut().poll(&mut cx).map(Result::unwrap),
            Poll::Ready(7)
        );
    });
}

#[test]
fn after_four_slow_calls_a_caller_no_longer_looks_for_the_reply() {
    within_a_minute(|| {
        let worker = Worker::builder("slow").spawn(|| Io::Ok(())).unwrap();
        for _ in 0..4 {
            // Each runs for longer than a look's window.
            support::block_on_plain(worker.call(|_| past_the_window())).unwrap();
        }
        let gate = Gate::new();
        let held = gate.clone();
        let mut call = Box::pin(worker.call(move |_| held.wait()));
        let (looks, _counter, woken, waker) = poll_until_it_sleeps(&mut call);
        assert_eq!(
            looks, 0,
            "the caller looked though the last replies were slow"
        );
        gate.open();
        woken.recv().unwrap();
        let mut cx = Context::from_waker(&waker);
        assert!(call.as_mut().poll(&mut cx).is_ready());
        assert_eq!(worker.stats().completed, 5);
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
        let worker = Worker::builder("answered").spawn(|| Io::Ok(())).unwrap();
        rt.block_on(async {
            for round in 0..200u32 {
                let (tx, rx) = mpsc::channel();
                let task = tokio::spawn(async move { tx.send(round).unwrap() });
                let got = worker.call(move |_| rx.recv().unwrap()).await.unwrap();
                assert_eq!(got, round);
                task.await.unwrap();
            }
        });
        assert_eq!(worker.stats().completed, 200);
    });
}

#[test]
fn a_caller_that_drops_its_call_while_looking_leaves_exact_counts() {
    within_a_minute(|| {
        let worker = Worker::builder("dropped").spawn(|| Io::Ok(())).unwrap();
        let rounds = 300;
        for _ in 0..rounds {
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(worker.call(move |_| held.wait()));
            let (counter, waker, _woken) = support::counting();
            let _ = call.as_mut().poll(&mut Context::from_waker(&waker));
            drop(counter);
            drop(call); // while it looks (or just after): withdrawn, or cancelled running
            gate.open();
        }
        // Every call either ran or was withdrawn before it started.
        support::block_on_plain(worker.call(|_| ())).unwrap();
        let stats = worker.stats();
        assert_eq!(stats.submitted, rounds + 1);
        assert_eq!(stats.completed + stats.withdrawn, rounds + 1);
        assert_eq!(stats.cancelled, rounds);
        assert_eq!((stats.queued, stats.running), (0, 0));
    });
}
