//! Adversarial review of the worker's looks (3a10dd4: `src/look.rs`, `Mailbox::next`'s
//! look for the next call, `Call::poll`'s look for the reply).
//!
//! A caller whose call finds the worker free looks for its reply (its future wakes itself
//! through tokio's `yield_now`) for up to 50 µs; the worker's thread looks for its next
//! call for up to 50 µs before it sleeps. Calls made one right after another's answer land
//! in both looks, so no sleep is needed to hit them: the tests make many rounds of calls
//! back to back. Nothing here asserts a duration; every wait is bounded by a hang guard.
#![cfg(all(feature = "test-util", feature = "tower"))]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_bridge::{clock, testing, Portal, Worker, WorkerPool};
use support::{assert_settled, guarded, past_the_window, Gate};
use tower::{Service, ServiceExt};

type Io<T> = std::io::Result<T>;

const ROUNDS: u64 = 300;

fn worker(name: &str) -> Worker<u64> {
    Worker::builder(name).spawn(|| Io::Ok(0)).unwrap()
}

/// Back-to-back calls, each of which the worker answers at once: both sides look.
async fn rounds(worker: &Worker<u64>, n: u64) {
    for i in 0..n {
        let got = worker
            .call(move |count| {
                *count += 1;
                i
            })
            .await
            .unwrap();
        assert_eq!(got, i);
    }
}

/// Promise: a looking caller gets its answer on every executor it can be awaited on
/// (tokio current_thread and multi_thread, from `block_on` and from spawned tasks, a
/// `LocalSet`, futures' executor, the crate's `block_on`, a `Portal`, `call_blocking`),
/// and the worker's counters stay exact (every call completed, none left).
#[test]
fn a_looking_caller_is_answered_on_every_executor() {
    guarded("looks on every executor", || {
        let w = worker("every-executor");
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        current.block_on(rounds(&w, ROUNDS));
        current
            .block_on({
                let w = w.clone();
                async move { tokio::spawn(async move { rounds(&w, ROUNDS).await }).await }
            })
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&current, {
            let w = w.clone();
            async move {
                tokio::task::spawn_local(async move { rounds(&w, ROUNDS).await })
                    .await
                    .unwrap()
            }
        });
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        multi.block_on(rounds(&w, ROUNDS));
        // Several tasks at once: some calls find the worker busy and do not look.
        multi.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let w = w.clone();
                    tokio::spawn(async move { rounds(&w, ROUNDS).await })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        futures::executor::block_on(rounds(&w, ROUNDS));
        async_bridge::block_on(rounds(&w, ROUNDS)).unwrap();
        let portal = Portal::builder().worker_threads(1).build().unwrap();
        portal.block_on(rounds(&w, ROUNDS)).unwrap();
        for i in 0..ROUNDS {
            assert_eq!(w.call_blocking(move |_| i).unwrap(), i);
        }
        let calls = 12 * ROUNDS; // eleven counting runs of `rounds`, then `call_blocking`s
        assert_eq!(w.call_blocking(|count| *count).unwrap(), calls - ROUNDS);
        let stats = w.stats();
        assert_settled(&stats);
        assert_eq!(stats.submitted, calls + 1, "{stats:?}");
        assert_eq!(stats.completed, calls + 1, "{stats:?}");
        assert_eq!((stats.withdrawn, stats.cancelled), (0, 0), "{stats:?}");
    });
}

/// Promise: a pool's calls, a lease's holder and calls under it, and the tower service
/// answer with the looks in play, with exact counts.
#[test]
fn pools_leases_and_the_service_are_answered_with_exact_counts() {
    guarded("pool, lease and service", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool: WorkerPool<u64> = WorkerPool::builder("look-pool")
            .workers(2)
            .spawn(|| Io::Ok(0))
            .unwrap();
        let w = worker("look-lease");
        rt.block_on(async {
            for i in 0..ROUNDS {
                assert_eq!(pool.call(move |_| i).await.unwrap(), i);
            }
            for round in 0..ROUNDS {
                let mut lease = w.lease().await.unwrap();
                for i in 0..3 {
                    assert_eq!(lease.call(move |_| i).await.unwrap(), i);
                }
                if round % 2 == 0 {
                    lease.finish().await.unwrap();
                } else {
                    drop(lease); // released by its drop: the next lease must still come
                }
                assert_eq!(w.call(move |_| round).await.unwrap(), round);
            }
            let mut service = w.service(|n: &mut u64, req: u64| {
                *n += req;
                req
            });
            for i in 0..ROUNDS {
                let got = service.ready().await.unwrap().call(i).await.unwrap();
                assert_eq!(got, i);
            }
        });
        let stats = pool.stats();
        assert_settled(&stats);
        assert_eq!(stats.completed, ROUNDS, "{stats:?}");
        let stats = w.stats();
        // Per round: the lease (one call), three under it, one after it; then the service.
        assert_eq!(stats.completed, 5 * ROUNDS + ROUNDS, "{stats:?}");
        assert_settled(&stats);
    });
}

/// Promise: a call the caller looks for still times out (the builder's `timeout`), on a
/// current-thread runtime where nothing else would poll it: the look must not spin past
/// its window and must not swallow the timer's wake-up. The closure then finishes and the
/// call counts once as timed out, once as completed, and the worker answers the next call.
#[test]
fn a_timeout_fires_for_a_call_its_caller_looks_for() {
    guarded("timeout while looking", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let w: Worker<u64> = Worker::builder("look-timeout")
            // Long enough for the 100 calls that must succeed on a busy machine.
            .timeout(Duration::from_millis(250))
            .spawn(|| Io::Ok(0))
            .unwrap();
        rt.block_on(async {
            rounds(&w, 50).await; // the caller's window is open
            let gate = Gate::new();
            let held = gate.clone();
            let err = w.call(move |_| held.wait()).await.unwrap_err();
            assert!(err.is_timeout(), "{err}");
            gate.open();
            rounds(&w, 50).await;
        });
        let stats = w.stats();
        assert_eq!(stats.timed_out, 1, "{stats:?}");
        assert_eq!(stats.completed, 101, "{stats:?}");
        assert_settled(&stats);
    });
}

/// Promise: a panic in a call its caller looks for comes back as `is_panic`, and the
/// next calls (looked for again) are answered; counts exact.
#[test]
fn a_panicking_call_looked_for_comes_back_as_a_panic() {
    guarded("panic while looking", || {
        let w = worker("look-panic");
        futures::executor::block_on(async {
            for round in 0..100u64 {
                rounds(&w, 3).await;
                let err = w.call(|_| -> u64 { panic!("boom") }).await.unwrap_err();
                assert!(err.is_panic(), "round {round}: {err}");
            }
        });
        let stats = w.stats();
        assert_eq!((stats.completed, stats.panicked), (300, 100), "{stats:?}");
        assert_settled(&stats);
    });
}

/// Promise: a shutdown while a caller looks for its reply lets the call finish (queued
/// calls still run) and the caller is answered; a call made after it is refused.
#[test]
fn a_shutdown_while_a_caller_looks_lets_its_call_finish() {
    guarded("shutdown while looking", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for round in 0..50u64 {
            let w = worker("look-shutdown");
            rt.block_on(async {
                rounds(&w, 5).await;
                let (started_tx, started_rx) = tokio::sync::oneshot::channel();
                let call = tokio::spawn(w.call(move |_| {
                    started_tx.send(()).unwrap();
                    past_the_window();
                    round
                }));
                started_rx.await.unwrap();
                let report = w.shutdown(Duration::from_secs(20)).await;
                assert!(report.is_complete(), "round {round}: {report:?}");
                assert_eq!(call.await.unwrap().unwrap(), round);
                assert!(w.call(|_| ()).await.unwrap_err().is_shutdown());
            });
            let stats = w.stats();
            assert_eq!(stats.completed, 6, "{stats:?}");
            assert_settled(&stats);
        }
    });
}

/// The object of a worker whose drop tells the test on which thread it ran.
struct Probe(mpsc::Sender<String>);

impl Drop for Probe {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let _ = self.0.send(name);
    }
}

/// Promise: the worker's thread ends once its last handle is dropped, also when it was
/// looking for its next call then (it looks right after it answered: the handle is
/// dropped as soon as the answer arrives), and when a call is still alive.
#[test]
fn the_last_handle_dropped_while_the_worker_looks_ends_its_thread() {
    guarded("worker thread ends", || {
        for round in 0..200u64 {
            let (tx, rx) = mpsc::channel();
            let w = Worker::builder("look-last-handle")
                .spawn(move || Io::Ok(Probe(tx.clone())))
                .unwrap();
            futures::executor::block_on(async {
                for i in 0..3u64 {
                    assert_eq!(w.call(move |_| i).await.unwrap(), i);
                }
            });
            if round % 2 == 0 {
                drop(w);
            } else {
                // A call made, not yet polled, outlives the handle: it still runs.
                let call = w.call(move |_| round);
                drop(w);
                assert_eq!(futures::executor::block_on(call).unwrap(), round);
            }
            // The object is dropped on the worker's thread as it ends.
            let on = rx.recv().unwrap();
            assert!(!on.is_empty());
        }
    });
}

/// Promise (virtual time): the clock does not move while a caller looks for its reply nor
/// while the worker looks for its next call: a call made right after the previous answer
/// (the worker looking) holds the clock from its admission, and one the caller looks for
/// too. A one-hour timer is pending beside the calls the whole time.
#[test]
fn in_virtual_time_the_clock_holds_while_either_side_looks() {
    guarded("virtual-time looks", || {
        testing::run(async {
            let w = worker("look-virtual");
            let sleeper = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let start = clock::now();
            for i in 0..2000u32 {
                let at = w.call(|_| clock::now()).await.unwrap();
                assert_eq!(at, start, "round {i}: the clock moved before a call ran");
                assert_eq!(clock::now(), start, "round {i}: the clock moved after it");
            }
            // Three at once: the first is looked for, the others queue behind it.
            for i in 0..300u32 {
                let calls = (0..3).map(|_| w.call(|_| clock::now()));
                for at in futures::future::join_all(calls).await {
                    assert_eq!(at.unwrap(), start, "round {i}");
                }
            }
            sleeper.abort();
            assert_settled(&w.stats());
        });
    });
}

/// Promise (virtual time): time still passes as the test says while the looks are on:
/// each round sleeps one virtual second between two calls, the calls see exactly that,
/// and a worker call that sleeps on the clock past the worker's timeout times out at
/// exactly the timeout.
#[test]
fn in_virtual_time_sleeps_and_timeouts_pass_exactly_while_looking() {
    guarded("virtual-time sleeps", || {
        testing::run(async {
            let w: Worker<u64> = Worker::builder("look-virtual-timeout")
                .timeout(Duration::from_secs(10))
                .spawn(|| Io::Ok(0))
                .unwrap();
            let start = clock::now();
            for i in 0..50u32 {
                let at = w.call(|_| clock::now()).await.unwrap();
                assert_eq!(at, start + Duration::from_secs(i.into()), "round {i}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let before = clock::now();
            let err = w
                .call(|_| clock::sleep(Duration::from_secs(60)))
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert_eq!(clock::now() - before, Duration::from_secs(10));
            // The slow closure is still sleeping; let it finish.
            while w.stats().running > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let stats = w.stats();
            assert_eq!((stats.timed_out, stats.completed), (1, 51), "{stats:?}");
            assert_settled(&stats);
        });
    });
}

/// Promise: `queue_wait` is still admission to claim (a call that waited in line for
/// room is not charged for it there), `run_time` is counted once per call, and every
/// count stays exact when calls wait in line, are withdrawn from the queue or dropped
/// in line while other callers look.
#[test]
fn stats_stay_exact_with_calls_in_line_and_withdrawn_beside_looks() {
    guarded("stats beside looks", || {
        let w: Worker<u64> = Worker::builder("look-stats")
            .mailbox(1)
            .spawn(|| Io::Ok(0))
            .unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        for round in 0..100u64 {
            futures::executor::block_on(rounds(&w, 3));
            let gate = Gate::new();
            let (held, r) = (gate.clone(), ran.clone());
            let mut first = Box::pin(w.call(move |_| {
                held.wait();
                r.fetch_add(1, Ordering::SeqCst);
            }));
            assert!(support::poll_once(first.as_mut()).is_pending());
            // Queued (the mailbox holds one), then in line, then withdrawn ones.
            let r = ran.clone();
            let mut queued = Box::pin(w.call(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            }));
            let r = ran.clone();
            let mut in_line = Box::pin(w.call(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            }));
            let r = ran.clone();
            let mut dropped_in_line = Box::pin(w.call(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            }));
            let _ = support::poll_once(queued.as_mut());
            let _ = support::poll_once(in_line.as_mut());
            let _ = support::poll_once(dropped_in_line.as_mut());
            drop(dropped_in_line);
            if round % 2 == 0 {
                drop(queued); // withdrawn (or in line still if the worker had not claimed)
            } else {
                futures::executor::block_on(async {
                    gate.open();
                    queued.await.unwrap();
                });
            }
            gate.open();
            futures::executor::block_on(async {
                first.await.unwrap();
                in_line.await.unwrap();
            });
        }
        futures::executor::block_on(rounds(&w, 1));
        let stats = w.stats();
        assert_settled(&stats);
        // Per round: 3 + first + in_line, and queued on odd rounds; then one.
        assert_eq!(stats.completed, 100 * 5 + 50 + 1, "{stats:?}");
        assert_eq!(
            stats.completed,
            ran.load(Ordering::SeqCst) + 301,
            "{stats:?}"
        );
        assert_eq!(stats.cancelled, 100 + 50, "{stats:?}");
    });
}

/// Promise (no hang): a call awaited by a foreign executor that itself runs inside a
/// tokio task (futures' `block_on` called from a task, which a runtime would flag, but
/// which must not hang) is answered: the look's yield hands its wake-up to tokio's
/// deferred list, which nobody runs while that task blocks, so the answer's own wake-up
/// must still reach the foreign executor. The closure outlasts the look's window.
#[test]
fn a_foreign_executor_inside_a_tokio_task_is_answered() {
    guarded("foreign executor in a task", || {
        let w = worker("look-foreign");
        for flavour in ["current", "multi"] {
            let rt = if flavour == "current" {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            }
            .enable_all()
            .build()
            .unwrap();
            let w = w.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    for i in 0..100u64 {
                        let slow = futures::executor::block_on(w.call(move |_| {
                            past_the_window();
                            i
                        }));
                        assert_eq!(slow.unwrap(), i);
                        let quick = futures::executor::block_on(w.call(move |_| i));
                        assert_eq!(quick.unwrap(), i);
                    }
                })
                .await
                .unwrap();
            });
        }
        let stats = w.stats();
        assert_eq!(stats.completed, 400, "{stats:?}");
        assert_settled(&stats);
    });
}
