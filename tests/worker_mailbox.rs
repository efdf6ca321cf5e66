//! The mailbox's corners: a caller waiting for room is admitted by the worker itself
//! (its task is not woken to admit itself), and a call withdrawn while it sits in the
//! batch the worker took from the queue never runs and frees its place at once.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_bridge::Worker;
use support::{within_a_minute, Gate};

/// Generous: only a hang guard, never a timing assertion.
const HANG: Duration = Duration::from_secs(30);

/// A waker that reports each wake on a channel.
struct Reporting(Mutex<mpsc::Sender<()>>);

impl Wake for Reporting {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

fn reporting_waker() -> (Waker, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Waker::from(Arc::new(Reporting(Mutex::new(tx)))), rx)
}

fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

type Log = Vec<&'static str>;

fn worker(mailbox: usize) -> Worker<Log> {
    Worker::builder("mailbox-corners")
        .mailbox(mailbox)
        .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
        .unwrap()
}

/// A call that logs `name`, says it started, and waits for `gate`.
fn blocking(
    w: &Worker<Log>,
    name: &'static str,
    gate: &Gate,
) -> (
    impl Future<Output = Result<(), async_bridge::WorkerError>> + Unpin,
    mpsc::Receiver<()>,
) {
    let (started_tx, started_rx) = mpsc::channel();
    let gate = gate.clone();
    let call = w.call(move |log: &mut Log| {
        log.push(name);
        started_tx.send(()).unwrap();
        gate.wait();
    });
    (Box::pin(call), started_rx)
}

#[test]
fn a_caller_waiting_for_room_is_admitted_and_run_without_being_polled_again() {
    within_a_minute(|| {
        let w = worker(1);
        let gate = Gate::new();
        let (waker, _) = reporting_waker();
        let (mut holder, started) = blocking(&w, "holder", &gate);
        assert!(poll_with(&mut holder, &waker).is_pending());
        started.recv_timeout(HANG).unwrap();
        // The one place is free (the holder runs): `queued` takes it.
        let mut queued = Box::pin(w.call(|log: &mut Log| log.push("queued")));
        assert!(poll_with(&mut queued, &waker).is_pending());
        // No room: `waiting` joins the line, polled once, never again before its answer.
        let (ran_tx, ran_rx) = mpsc::channel();
        let mut waiting = Box::pin(w.call(move |log: &mut Log| {
            log.push("waiting");
            ran_tx.send(()).unwrap();
        }));
        let (waiting_waker, wakes) = reporting_waker();
        assert!(poll_with(&mut waiting, &waiting_waker).is_pending());
        assert_eq!(
            w.stats().submitted,
            2,
            "the waiting call was admitted early"
        );
        gate.open();
        // The worker admits it when the place frees up, and runs it: no second poll.
        ran_rx
            .recv_timeout(HANG)
            .expect("a caller in line ran only once polled again");
        // Woken once, for its answer (not once more to admit itself).
        wakes.recv_timeout(HANG).unwrap();
        assert!(matches!(
            poll_with(&mut waiting, &waiting_waker),
            Poll::Ready(Ok(()))
        ));
        assert!(wakes.try_recv().is_err(), "woken more than once");
        futures::executor::block_on(async {
            holder.await.unwrap();
            queued.await.unwrap();
        });
        let log = futures::executor::block_on(w.call(|log: &mut Log| log.clone())).unwrap();
        assert_eq!(log, ["holder", "queued", "waiting"]);
        assert_eq!(w.stats().submitted, 4);
    });
}

#[test]
fn a_call_withdrawn_from_the_workers_batch_never_runs_and_frees_its_place() {
    within_a_minute(|| {
        let w = worker(2);
        let (waker, _) = reporting_waker();
        let first_gate = Gate::new();
        let (mut first, first_started) = blocking(&w, "first", &first_gate);
        assert!(poll_with(&mut first, &waker).is_pending());
        first_started.recv_timeout(HANG).unwrap();
        // Two calls queued behind the running one: the worker takes both as one batch
        // when `first` ends, and blocks in `second`, with `withdrawn` still in its batch.
        let second_gate = Gate::new();
        let (mut second, second_started) = blocking(&w, "second", &second_gate);
        assert!(poll_with(&mut second, &waker).is_pending());
        let mut withdrawn = Box::pin(w.call(|log: &mut Log| log.push("withdrawn")));
        assert!(poll_with(&mut withdrawn, &waker).is_pending());
        assert_eq!(w.stats().submitted, 3);
        first_gate.open();
        second_started.recv_timeout(HANG).unwrap();
        let stats = w.stats();
        assert_eq!((stats.queued, stats.running), (1, 1));
        drop(withdrawn);
        let stats = w.stats();
        assert_eq!((stats.queued, stats.running), (0, 1));
        assert_eq!((stats.withdrawn, stats.cancelled), (1, 1));
        // Its place is free at once: two calls are admitted (two places, one running
        // call), and a third waits in line.
        let calls: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let mut call = Box::pin(w.call(move |log: &mut Log| log.push(name)));
                assert!(poll_with(&mut call, &waker).is_pending());
                call
            })
            .collect();
        let stats = w.stats();
        assert_eq!(stats.submitted, 5, "a freed place was not reused");
        assert_eq!(stats.queued, 3);
        second_gate.open();
        futures::executor::block_on(async {
            first.await.unwrap();
            second.await.unwrap();
            for call in calls {
                call.await.unwrap();
            }
        });
        let log = futures::executor::block_on(w.call(|log: &mut Log| log.clone())).unwrap();
        assert_eq!(log, ["first", "second", "a", "b", "c"]);
        let stats = w.stats();
        assert_eq!(
            (stats.submitted, stats.completed, stats.withdrawn),
            (7, 6, 1)
        );
    });
}

/// Tells a channel its thread's name when dropped.
struct Probe(mpsc::Sender<Option<String>>);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self
            .0
            .send(std::thread::current().name().map(str::to_owned));
    }
}

#[test]
fn a_call_made_before_the_last_handle_is_dropped_runs_then_the_object_is_dropped() {
    within_a_minute(|| {
        let (tx, dropped) = mpsc::channel();
        let w = Worker::builder("kept-up")
            .spawn(move || Ok::<_, std::io::Error>((7u32, Probe(tx.clone()))))
            .unwrap();
        let call = w.call(|(n, _): &mut (u32, Probe)| *n);
        drop(w);
        // No handle is left, and the call was never polled: it still keeps the worker.
        assert!(dropped.try_recv().is_err());
        assert_eq!(futures::executor::block_on(call).unwrap(), 7);
        let on = dropped
            .recv_timeout(HANG)
            .expect("the object was not dropped");
        assert_eq!(on.as_deref(), Some("kept-up"));
    });
}
