//! Review of the hand-written `compute` future (first poll submits and wakes itself once,
//! the second registers) and of the job cell's waker kept under the outcome's lock:
//! panics, drops at every stage, wakers swapped between polls (also racing completion),
//! futures polled once and abandoned, the inline path on rayon threads, executors without
//! tokio, the virtual-time harness, tokio's coop budget, and exact `Stats` of the lanes
//! built on the same cell.

mod support;

use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_bridge::{compute, unblock, ComputePool, Offloader};
use support::{block_on_plain, counting, guarded, panic_text, within_a_minute, DropProbe, Gate};

/// Tests that occupy every thread of rayon's global pool run one at a time (two of them
/// each holding half the pool would wait for each other).
static GLOBAL_POOL: Mutex<()> = Mutex::new(());

fn hold_global_pool() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens its gate when dropped, so that a failing test never leaves rayon threads blocked.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Blocks every thread of rayon's global pool until the returned guard is dropped.
fn occupy_global_pool() -> OpenOnDrop {
    let threads = rayon::current_num_threads();
    let gate = Gate::new();
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
    OpenOnDrop(gate)
}

/// Waits (yielding, never sleeping) until `cond` holds; the caller's guard bounds it.
fn eventually(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// A `compute` job that says on the channel when it starts, then waits for `gate` and
/// returns `value`.
fn gated<T: Send + 'static>(
    gate: &Gate,
    value: T,
) -> (Pin<Box<impl Future<Output = T>>>, mpsc::Receiver<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let gate = gate.clone();
    let job = Box::pin(compute(move || {
        started_tx.send(()).unwrap();
        gate.wait();
        value
    }));
    (job, started_rx)
}

fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------------
// Panics

#[test]
fn a_compute_panic_resumes_in_the_caller_with_its_payload() {
    let payload = within_a_minute(|| {
        panic::catch_unwind(AssertUnwindSafe(|| {
            block_on_plain(compute(|| -> u32 { panic!("row {} is corrupt", 7) }))
        }))
        .unwrap_err()
    });
    assert_eq!(panic_text(&*payload), "row 7 is corrupt");

    // In a tokio task: the task panics with the same payload.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(async { tokio::spawn(compute(|| -> u8 { panic!("tokio {}", 1) })).await })
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(panic_text(&*err.into_panic()), "tokio 1");
}

#[test]
fn a_compute_panic_on_a_rayon_thread_resumes_there() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let payload = pool.install(|| {
        panic::catch_unwind(AssertUnwindSafe(|| {
            block_on_plain(compute(|| -> u8 { panic!("inline") }))
        }))
        .unwrap_err()
    });
    assert_eq!(panic_text(&*payload), "inline");
}

// ---------------------------------------------------------------------------------
// Drops

#[test]
fn never_polled_nothing_is_submitted_and_the_closure_is_dropped_here() {
    let (tx, rx) = mpsc::channel();
    let ran = Arc::new(AtomicUsize::new(0));
    let job = {
        let (probe, ran) = (DropProbe(tx), Arc::clone(&ran));
        compute(move || {
            let _probe = probe;
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    drop(job);
    // Dropped right here, on this thread, by the drop of the future: it never went to rayon.
    assert_eq!(
        rx.try_recv().unwrap(),
        std::thread::current().name().unwrap()
    );
    assert_eq!(Arc::strong_count(&ran), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn dropped_after_its_first_poll_before_the_job_starts_never_runs() {
    let _serial = hold_global_pool();
    guarded("a withdrawn compute job", || {
        let busy = occupy_global_pool();
        let (tx, rx) = mpsc::channel();
        let ran = Arc::new(AtomicUsize::new(0));
        let (counter, waker, _woken) = counting();
        {
            let (probe, ran) = (DropProbe(tx), Arc::clone(&ran));
            let mut job = Box::pin(compute(move || {
                let _probe = probe;
                ran.fetch_add(1, Ordering::SeqCst);
            }));
            assert!(poll_with(&mut job, &waker).is_pending());
            // The self-wake asked for the second poll; it is dropped instead.
            assert_eq!(counter.wakes.load(Ordering::SeqCst), 1);
        }
        drop(busy);
        // The closure is dropped unrun once rayon reaches the withdrawn job.
        rx.recv().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn job ran");
        eventually(|| Arc::strong_count(&ran) == 1);
        // Nothing kept the caller's waker (it registered none).
        assert_eq!(Arc::strong_count(&counter), 2); // `counter` and `waker`
    });
}

#[test]
fn dropped_after_its_second_poll_before_the_job_starts_never_runs_and_lets_its_waker_go() {
    let _serial = hold_global_pool();
    guarded("a withdrawn registered compute job", || {
        let busy = occupy_global_pool();
        let (tx, rx) = mpsc::channel();
        let ran = Arc::new(AtomicUsize::new(0));
        let (counter, waker, _woken) = counting();
        {
            let (probe, ran) = (DropProbe(tx), Arc::clone(&ran));
            let mut job = Box::pin(compute(move || {
                let _probe = probe;
                ran.fetch_add(1, Ordering::SeqCst);
            }));
            assert!(poll_with(&mut job, &waker).is_pending());
            assert!(poll_with(&mut job, &waker).is_pending()); // registers
            assert_eq!(Arc::strong_count(&counter), 3, "the cell holds the waker");
        }
        drop(busy);
        rx.recv().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn job ran");
        // The ticket, dropped unrun, takes the waker out of the cell (and wakes it).
        eventually(|| Arc::strong_count(&counter) == 2);
    });
}

/// A result that reports its drop.
struct Probed(#[allow(dead_code)] DropProbe);

#[test]
fn dropped_while_running_the_result_is_discarded_and_nothing_is_kept() {
    guarded("a compute job whose caller left", || {
        let gate = Gate::new();
        let _open = OpenOnDrop(gate.clone());
        let (result_tx, result_rx) = mpsc::channel();
        let (counter, waker, _woken) = counting();
        let (mut job, started_rx) = gated(&gate, Probed(DropProbe(result_tx)));
        assert!(poll_with(&mut job, &waker).is_pending());
        started_rx.recv().unwrap();
        assert!(poll_with(&mut job, &waker).is_pending()); // registers
        drop(job);
        gate.open();
        // The value is made, then dropped with the cell (on the rayon thread).
        result_rx.recv().unwrap();
        // The waker was taken from the cell by the reply (the future was gone).
        assert_eq!(Arc::strong_count(&counter), 2);
        // The pool is not stuck.
        assert_eq!(block_on_plain(compute(|| 3)), 3);
    });
}

#[test]
fn polled_once_then_never_again_the_job_runs_and_nothing_leaks() {
    guarded("a compute future polled once", || {
        let (closure_tx, closure_rx) = mpsc::channel();
        let (result_tx, result_rx) = mpsc::channel();
        let captured = Arc::new(());
        let (counter, waker, woken) = counting();
        // Shut until the first poll has returned, so that the poll finds the job running
        // (a job already done would be returned at once).
        let gate = Gate::new();
        let open = OpenOnDrop(gate.clone());
        let mut job = {
            let (probe, captured) = (DropProbe(closure_tx), Arc::clone(&captured));
            Box::pin(compute(move || {
                let _probe = probe;
                let _captured = captured;
                gate.wait();
                Probed(DropProbe(result_tx))
            }))
        };
        assert!(poll_with(&mut job, &waker).is_pending());
        woken.recv().unwrap(); // the self-wake
        drop(open);
        // The job runs without further polls: its closure is consumed on rayon.
        closure_rx.recv().unwrap();
        assert_eq!(Arc::strong_count(&captured), 1);
        // The rayon pool is free for others.
        assert_eq!(block_on_plain(compute(|| 4)), 4);
        // The cell holds the result, never the waker.
        assert_eq!(Arc::strong_count(&counter), 2);
        assert!(
            result_rx.try_recv().is_err(),
            "the finished value was dropped early"
        );
        drop(job);
        result_rx.recv().unwrap();
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 1);
    });
}

// ---------------------------------------------------------------------------------
// Wakers

#[test]
fn a_future_registered_with_one_waker_then_polled_with_another_wakes_the_last() {
    guarded("a compute future moved between wakers", || {
        let gate = Gate::new();
        let _open = OpenOnDrop(gate.clone());
        let (mut job, started_rx) = gated(&gate, 11);
        let (a, waker_a, _woken_a) = counting();
        let (b, waker_b, woken_b) = counting();
        assert!(poll_with(&mut job, &waker_a).is_pending()); // submits, wakes A
        started_rx.recv().unwrap();
        assert!(poll_with(&mut job, &waker_a).is_pending()); // registers A
        assert!(poll_with(&mut job, &waker_b).is_pending()); // B replaces A
        assert_eq!(Arc::strong_count(&a), 2, "A still kept after B replaced it");
        gate.open();
        woken_b.recv().unwrap();
        assert_eq!(poll_with(&mut job, &waker_b), Poll::Ready(11));
        assert_eq!(a.wakes.load(Ordering::SeqCst), 1, "only A's self-wake");
        assert_eq!(b.wakes.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_future_first_polled_with_one_waker_and_registered_with_another_wakes_the_second() {
    guarded("a compute future's second poll on another waker", || {
        let gate = Gate::new();
        let _open = OpenOnDrop(gate.clone());
        let (mut job, started_rx) = gated(&gate, 12);
        let (_a, waker_a, _woken_a) = counting();
        let (_b, waker_b, woken_b) = counting();
        assert!(poll_with(&mut job, &waker_a).is_pending());
        started_rx.recv().unwrap();
        assert!(poll_with(&mut job, &waker_b).is_pending());
        gate.open();
        woken_b.recv().unwrap();
        assert_eq!(poll_with(&mut job, &waker_b), Poll::Ready(12));
    });
}

#[test]
fn a_future_moved_from_one_task_to_another_through_select_completes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let value = within_a_minute(move || {
        rt.block_on(async {
            let gate = Gate::new();
            let _open = OpenOnDrop(gate.clone());
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let job = {
                let gate = gate.clone();
                Box::pin(compute(move || {
                    started_tx.send(()).unwrap();
                    gate.wait();
                    13
                }))
            };
            // Task 1 polls it (through `select`, against a ready branch) until it has
            // registered task 1's waker, then hands it over and ends (the task's output
            // is the future itself, on purpose).
            #[allow(clippy::async_yields_async)]
            let job = tokio::spawn(async move {
                let job = match futures::future::select(job, std::future::ready(())).await {
                    futures::future::Either::Right(((), job)) => job,
                    futures::future::Either::Left(_) => unreachable!("the job is gated"),
                };
                started_rx.await.unwrap();
                let mut job = job;
                poll_fn(|cx| {
                    assert!(job.as_mut().poll(cx).is_pending());
                    Poll::Ready(())
                })
                .await;
                job
            })
            .await
            .unwrap();
            // Task 2 awaits it; only task 2's waker can bring it back. The gate opens
            // once task 2 has polled it (and registered).
            let (polled_tx, polled_rx) = tokio::sync::oneshot::channel();
            let awaited = tokio::spawn(async move {
                let mut job = job;
                let mut polled_tx = Some(polled_tx);
                poll_fn(|cx| {
                    let polled = job.as_mut().poll(cx);
                    if let Some(tx) = polled_tx.take() {
                        assert!(polled.is_pending());
                        tx.send(()).unwrap();
                    }
                    polled
                })
                .await
            });
            polled_rx.await.unwrap();
            gate.open();
            awaited.await.unwrap()
        })
    });
    assert_eq!(value, 13);
}

/// The waker swap racing completion: a reply registered with waker A, then polled with
/// waker B just as the job completes on another thread. B must get the value at once or
/// be woken.
fn swap_races_completion<J, M>(rounds: usize, make: M)
where
    J: Future<Output = usize> + Unpin,
    M: Fn(Arc<Barrier>, mpsc::Sender<()>, usize) -> J,
{
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(2));
        let (arrived_tx, arrived) = mpsc::channel();
        let mut job = make(Arc::clone(&barrier), arrived_tx, round);
        let (_a, waker_a, _woken_a) = counting();
        let (b, waker_b, woken_b) = counting();
        // Poll until registered with A (the job waits at the barrier meanwhile).
        assert!(poll_with(&mut job, &waker_a).is_pending());
        assert!(poll_with(&mut job, &waker_a).is_pending());
        // The job waits at the barrier first, so that this thread, arriving last, goes
        // on at once and polls with B while the job's thread is being woken to return.
        arrived.recv().unwrap();
        barrier.wait();
        match poll_with(&mut job, &waker_b) {
            Poll::Ready(v) => assert_eq!(v, round),
            Poll::Pending => {
                // Until the reply's wake-up, B may also be woken by a look for the reply
                // (a lane's caller looks: `crate::look`), and then polled to no avail:
                // what must not happen is a reply that never wakes B.
                loop {
                    woken_b
                        .recv_timeout(Duration::from_secs(30))
                        .unwrap_or_else(|_| panic!("round {round}: B was never woken"));
                    if let Poll::Ready(v) = poll_with(&mut job, &waker_b) {
                        assert_eq!(v, round);
                        break;
                    }
                }
                assert!(b.wakes.load(Ordering::SeqCst) >= 1);
            }
        }
    }
}

#[test]
fn compute_waker_swap_racing_completion_wakes_the_last_waker() {
    within_a_minute(|| {
        swap_races_completion(500, |barrier, arrived, round| {
            Box::pin(compute(move || {
                arrived.send(()).unwrap();
                barrier.wait();
                round
            }))
        })
    });
}

#[test]
fn unblock_waker_swap_racing_completion_wakes_the_last_waker() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        swap_races_completion(300, |barrier, arrived, round| {
            Box::pin(unblock(move || {
                arrived.send(()).unwrap();
                barrier.wait();
                round
            }))
        })
    });
}

#[test]
fn offloader_waker_swap_racing_completion_wakes_the_last_waker() {
    within_a_minute(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        let lane = Offloader::builder("swap").build().unwrap();
        swap_races_completion(300, |barrier, arrived, round| {
            let call = lane.run(move || {
                arrived.send(()).unwrap();
                barrier.wait();
                round
            });
            Box::pin(async move { call.await.unwrap() })
        })
    });
}

#[test]
fn compute_pool_waker_swap_racing_completion_wakes_the_last_waker() {
    within_a_minute(|| {
        let pool = ComputePool::builder("swap").threads(1).build().unwrap();
        swap_races_completion(300, |barrier, arrived, round| {
            let call = pool.run(move || {
                arrived.send(()).unwrap();
                barrier.wait();
                round
            });
            Box::pin(async move { call.await.unwrap() })
        })
    });
}

// ---------------------------------------------------------------------------------
// Where it is called from

#[test]
fn compute_inside_a_one_thread_rayon_pool_runs_inline_even_nested() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let value = within_a_minute(move || {
        pool.install(|| block_on_plain(compute(|| block_on_plain(compute(|| 20)) + 1)))
    });
    assert_eq!(value, 21);
    // On the global pool too, from inside a compute job.
    let value = within_a_minute(|| block_on_plain(compute(|| block_on_plain(compute(|| 5)) * 2)));
    assert_eq!(value, 10);
}

#[test]
fn compute_from_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let total = within_a_minute(move || {
        rt.block_on(async {
            let one = compute(|| 1u64).await;
            let spawned: Vec<_> = (0..100u64)
                .map(|i| tokio::spawn(compute(move || i)))
                .collect();
            let mut sum = one;
            for handle in spawned {
                sum += handle.await.unwrap();
            }
            sum
        })
    });
    assert_eq!(total, 1 + 4950);
}

#[test]
fn compute_from_a_plain_thread_with_futures_block_on() {
    let value = within_a_minute(|| futures::executor::block_on(compute(|| 6 * 7)));
    assert_eq!(value, 42);
    let values = within_a_minute(|| {
        futures::executor::block_on(futures::future::join_all(
            (0..1000u32).map(|i| compute(move || i)),
        ))
    });
    assert_eq!(values, (0..1000).collect::<Vec<_>>());
}

#[test]
fn compute_under_the_virtual_time_harness() {
    within_a_minute(|| {
        async_bridge::testing::run(async {
            assert_eq!(compute(|| 2 + 2).await, 4);
            // The running job holds the clock: a virtual sleep beside it cannot win,
            // however long the job takes in real time.
            let gate = Gate::new();
            let opener = {
                let gate = gate.clone();
                std::thread::spawn(move || gate.open())
            };
            let job = compute(move || {
                gate.wait();
                9
            });
            let value = tokio::select! {
                v = job => v,
                () = tokio::time::sleep(Duration::from_secs(1)) => panic!("time passed while compute ran"),
            };
            assert_eq!(value, 9);
            opener.join().unwrap();
            // A panic resumes in the caller.
            let caught = futures::FutureExt::catch_unwind(AssertUnwindSafe(compute(|| -> u8 {
                panic!("virtual")
            })))
            .await
            .unwrap_err();
            assert_eq!(panic_text(&*caught), "virtual");
            // A future polled once and dropped does not hold the clock.
            let mut dropped = Box::pin(compute(|| 1));
            poll_fn(|cx| {
                let _ = dropped.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            drop(dropped);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
    });
}

// ---------------------------------------------------------------------------------
// tokio's coop budget

#[test]
fn compute_completes_with_the_coop_budget_spent() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let value = within_a_minute(move || {
        rt.block_on(async {
            // Spend the budget on ready messages, then await compute without yielding.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
            for _ in 0..1000 {
                rx.recv().await.unwrap();
            }
            let a = compute(|| 1).await;
            // Against a branch that always spends budget and yields.
            let b = tokio::select! {
                v = compute(|| 2) => v,
                () = async {
                    loop {
                        tokio::task::consume_budget().await;
                    }
                } => unreachable!(),
            };
            // The same, biased towards the busy branch.
            let c = tokio::select! {
                biased;
                () = async {
                    loop {
                        tokio::task::consume_budget().await;
                    }
                } => unreachable!(),
                v = compute(|| 3) => v,
            };
            a + b + c
        })
    });
    assert_eq!(value, 6);
}

#[test]
fn ten_thousand_in_futures_unordered_and_join_all() {
    use futures::stream::{FuturesUnordered, StreamExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (sum, joined) = within_a_minute(move || {
        rt.block_on(async {
            let mut all: FuturesUnordered<_> = (0..10_000u64).map(|i| compute(move || i)).collect();
            let mut sum = 0;
            while let Some(v) = all.next().await {
                sum += v;
            }
            let joined: u64 = futures::future::join_all((0..10_000u64).map(|i| compute(move || i)))
                .await
                .into_iter()
                .sum();
            (sum, joined)
        })
    });
    assert_eq!(sum, 49_995_000);
    assert_eq!(joined, 49_995_000);
}

// ---------------------------------------------------------------------------------
// Exact stats of the lanes on the same cell

#[test]
fn compute_pool_admission_timeout_and_withdrawal_are_exact_in_stats() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    within_a_minute(move || {
        rt.block_on(async {
            let pool = ComputePool::builder("review-admission")
                .threads(1)
                .max_queue(2)
                .timeout(Duration::from_secs(3600))
                .build()
                .unwrap();
            let gate = Gate::new();
            let _open = OpenOnDrop(gate.clone());
            let g = gate.clone();
            let held = tokio::spawn(pool.run(move || g.wait()));
            while pool.stats().running == 0 {
                tokio::task::yield_now().await;
            }
            let ran = Arc::new(AtomicUsize::new(0));
            // Two wait, a third is rejected at once.
            let mut first = {
                let ran = Arc::clone(&ran);
                Box::pin(pool.run(move || ran.fetch_add(1, Ordering::SeqCst)))
            };
            let mut second = {
                let ran = Arc::clone(&ran);
                Box::pin(pool.run(move || ran.fetch_add(1, Ordering::SeqCst)))
            };
            let (_a, waker_a, _wa) = counting();
            let (_b, waker_b, woken_b) = counting();
            assert!(poll_with(&mut first, &waker_a).is_pending());
            assert!(poll_with(&mut second, &waker_a).is_pending());
            assert!(pool.run(|| 0).await.unwrap_err().is_rejected());
            // The first is withdrawn by a drop; the second is re-polled with another waker.
            drop(first);
            assert!(poll_with(&mut second, &waker_b).is_pending());
            let stats = pool.stats();
            assert_eq!(
                (stats.submitted, stats.queued, stats.running, stats.rejected),
                (4, 1, 1, 1)
            );
            assert_eq!((stats.withdrawn, stats.cancelled), (1, 1));
            gate.open();
            held.await.unwrap().unwrap();
            woken_b.recv().unwrap();
            match poll_with(&mut second, &waker_b) {
                Poll::Ready(Ok(0)) => {}
                other => panic!("the second call: {other:?}"),
            }
            assert_eq!(ran.load(Ordering::SeqCst), 1, "the withdrawn job ran");
            let stats = pool.stats();
            assert_eq!(
                (
                    stats.completed,
                    stats.withdrawn,
                    stats.cancelled,
                    stats.timed_out
                ),
                (2, 1, 1, 0)
            );
            assert_eq!((stats.queued, stats.running), (0, 0));
        })
    });
}

#[test]
fn offloader_timeouts_and_cancellations_are_exact_in_stats() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    within_a_minute(move || {
        rt.block_on(async {
            let lane = Offloader::builder("review-exact")
                .max_concurrency(1)
                .max_queue(4)
                // Long enough for the last call, which must succeed, on a busy machine.
                .timeout(Duration::from_millis(250))
                .build()
                .unwrap();
            let gate = Gate::new();
            let _open = OpenOnDrop(gate.clone());
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let g = gate.clone();
            // The holder times out while it runs (the gate stays shut until after).
            let holder = lane.run(move || {
                started_tx.send(()).unwrap();
                g.wait();
            });
            let holder = tokio::spawn(holder);
            started_rx.await.unwrap();
            let ran = Arc::new(AtomicUsize::new(0));
            // One waits and times out: withdrawn, timed out, never run.
            let waiter = {
                let ran = Arc::clone(&ran);
                lane.run(move || ran.fetch_add(1, Ordering::SeqCst))
            };
            assert!(waiter.await.unwrap_err().is_timeout());
            assert!(holder.await.unwrap().unwrap_err().is_timeout());
            // One waits and is dropped: withdrawn, cancelled, never run.
            let mut dropped = {
                let ran = Arc::clone(&ran);
                Box::pin(lane.run(move || ran.fetch_add(1, Ordering::SeqCst)))
            };
            assert!(poll_with(&mut dropped, Waker::noop()).is_pending());
            drop(dropped);
            let stats = lane.stats();
            assert_eq!(
                (
                    stats.submitted,
                    stats.timed_out,
                    stats.withdrawn,
                    stats.cancelled
                ),
                (3, 2, 2, 1)
            );
            assert_eq!((stats.running, stats.queued), (1, 0));
            gate.open();
            // Next in line after the holder: once it has run, the withdrawn ones were passed.
            lane.run(|| ()).await.unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn call ran");
            let stats = lane.stats();
            assert_eq!(
                (
                    stats.submitted,
                    stats.completed,
                    stats.timed_out,
                    stats.withdrawn,
                    stats.cancelled
                ),
                (4, 2, 2, 2, 1)
            );
            assert_eq!((stats.running, stats.queued), (0, 0));
        })
    });
}

#[test]
fn unblock_dropped_before_and_while_running_never_hangs_or_runs_withdrawn() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    within_a_minute(move || {
        rt.block_on(async {
            let gate = Gate::new();
            let _open = OpenOnDrop(gate.clone());
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let (done_tx, done_rx) = mpsc::channel();
            let g = gate.clone();
            let mut running = Box::pin(unblock(move || {
                started_tx.send(()).unwrap();
                g.wait();
                Probed(DropProbe(done_tx))
            }));
            assert!(poll_with(&mut running, Waker::noop()).is_pending());
            started_rx.await.unwrap();
            // The only blocking thread is taken: this one waits, and is dropped.
            let ran = Arc::new(AtomicUsize::new(0));
            let mut waiting = {
                let ran = Arc::clone(&ran);
                Box::pin(unblock(move || ran.fetch_add(1, Ordering::SeqCst)))
            };
            assert!(poll_with(&mut waiting, Waker::noop()).is_pending());
            drop(waiting);
            drop(running);
            gate.open();
            done_rx.recv().unwrap();
            assert_eq!(unblock(|| 5).await, 5);
            assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn unblock ran");
        })
    });
}

/// A waker whose drop opens the job's gate and then drops the runtime the job runs on
/// (the last handle on it), which waits for the runtime's blocking threads: the job
/// then ends and delivers its outcome. Stands for any waker whose drop runs code that
/// waits for the job (the last reference to a task whose future owns such things).
struct DropsRuntime {
    gate: Gate,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Wake for DropsRuntime {
    fn wake(self: Arc<Self>) {}
}

impl Drop for DropsRuntime {
    fn drop(&mut self) {
        self.gate.open();
        drop(self.rt.lock().unwrap().take());
    }
}

/// A reply re-polled with a new waker drops the waker it replaces: that drop must not
/// run under the cell's lock, which the job's runner needs to deliver the outcome (an
/// `AtomicWaker` never held the runner up while a waker was swapped).
#[test]
fn a_replaced_waker_is_dropped_outside_the_cells_lock() {
    guarded("a waker dropped while the job delivers", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let gate = Gate::new();
        let _open = OpenOnDrop(gate.clone());
        let (started_tx, started_rx) = mpsc::channel();
        let mut job = {
            let _entered = rt.handle().clone();
            let _entered = _entered.enter();
            let gate = gate.clone();
            let mut job = Box::pin(unblock(move || {
                started_tx.send(()).unwrap();
                gate.wait();
                8
            }));
            assert!(poll_with(&mut job, Waker::noop()).is_pending()); // submits
            job
        };
        started_rx.recv().unwrap();
        let a = Waker::from(Arc::new(DropsRuntime {
            gate,
            rt: Mutex::new(Some(rt)),
        }));
        assert!(poll_with(&mut job, &a).is_pending()); // registers A
        drop(a); // the cell holds the last reference to A
        let (_b, waker_b, woken_b) = counting();
        // Replaces A: A's drop lets the job end and waits for it.
        match poll_with(&mut job, &waker_b) {
            Poll::Ready(v) => assert_eq!(v, 8),
            Poll::Pending => {
                woken_b.recv().unwrap();
                assert_eq!(poll_with(&mut job, &waker_b), Poll::Ready(8));
            }
        }
    });
}
