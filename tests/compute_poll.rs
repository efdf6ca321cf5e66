//! How a `compute` future is polled: its first poll hands the job to rayon and asks to
//! be polled again before it registers to be woken (so that a `join_all` of many submits
//! every job before it waits for any); it is no larger than its closure, a call site
//! and a tag.

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};

use async_bridge::compute;
use support::{block_on_plain, counting, guarded, Gate};

/// Opens its gate when dropped, so that a failing test never leaves a rayon thread
/// blocked for the tests after it.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[test]
fn the_first_poll_submits_and_asks_to_be_polled_again_before_it_registers() {
    guarded("the compute poll protocol", || {
        let gate = Gate::new();
        let _open = OpenOnDrop(gate.clone());
        let (started_tx, started_rx) = mpsc::channel();
        let job = {
            let gate = gate.clone();
            compute(move || {
                started_tx.send(()).unwrap();
                gate.wait();
                7
            })
        };
        let mut job = pin!(job);
        let (counter, waker, woken) = counting();
        let mut cx = Context::from_waker(&waker);

        // First poll: the job is handed to rayon, and the future wakes itself at once
        // (it has registered nothing yet).
        assert!(job.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 1, "no self-wake");
        woken.recv().unwrap();
        started_rx.recv().unwrap(); // it was submitted: rayon runs it

        // Second poll, the job still running: now it registers, and does not wake itself.
        assert!(job.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 1);

        // The job ends: the registered waker is woken (once), and the value is there.
        gate.open();
        woken.recv().unwrap();
        assert_eq!(job.as_mut().poll(&mut cx), Poll::Ready(7));
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_job_already_done_at_the_first_poll_costs_no_self_wake() {
    // On a rayon thread the job runs right there, so its first poll finds it done.
    let (counter, waker, _woken) = counting();
    let polled = rayon::scope(|_| {
        let mut job = pin!(compute(|| 5));
        job.as_mut().poll(&mut Context::from_waker(&waker))
    });
    assert_eq!(polled, Poll::Ready(5));
    assert_eq!(counter.wakes.load(Ordering::SeqCst), 0);
}

#[test]
fn the_future_is_as_small_as_its_closure_and_a_call_site() {
    let x = 3_u64;
    let job = compute(move || x + 1);
    // The closure (8 bytes), the call site (8) and the state's tag. (The `async` block
    // it replaced took 48.)
    assert!(
        std::mem::size_of_val(&job) <= 24,
        "a compute future of a one-word closure takes {} bytes",
        std::mem::size_of_val(&job)
    );
}

#[test]
fn dropped_after_its_first_poll_while_queued_it_never_runs() {
    guarded("a withdrawn compute job", || {
        // Every rayon thread busy: a job submitted now waits in rayon's queue; its future
        // dropped after the first poll (before the poll its self-wake asked for)
        // withdraws it.
        let threads = rayon::current_num_threads();
        let gate = Gate::new();
        let open = OpenOnDrop(gate.clone());
        let (busy_tx, busy_rx) = mpsc::channel();
        for _ in 0..threads {
            let (gate, busy_tx) = (gate.clone(), busy_tx.clone());
            rayon::spawn(move || {
                busy_tx.send(()).unwrap();
                gate.wait();
            });
        }
        for _ in 0..threads {
            busy_rx.recv().unwrap();
        }
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let ran = Arc::clone(&ran);
            let mut job = pin!(compute(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }));
            assert!(job
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending());
        }
        drop(open);
        // Jobs behind it on every thread: once they have run, it had its turn.
        block_on_plain(compute(|| ()));
        rayon::broadcast(|_| ());
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn job ran");
    });
}
