//! Adversarial review of a lane's caller looking for its reply (82a14fc, 552d613:
//! `OffloadCall` arms a `ReplyLook` when a drainer that runs nothing takes its call; the
//! ledger's timing of lane calls comes from the drainer's stamps). Each test attacks one
//! promise: exact counts when the look is cut short (drop, timeout, shutdown, panic),
//! nested calls, every kind of caller (current-thread runtime, LocalSet, a foreign
//! executor inside a tokio task, `block_on`, a `Portal`, tower, a `ComputePool`), virtual
//! time, and the ledger. No timing assertions: only lower bounds, and a look expected only
//! where the test saw less than its window pass.

mod support;

use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_bridge::{ledger, ComputePool, OffloadCall, Offloader, Stats};
use support::{
    assert_settled, block_on_plain, counting, first_poll_looks, lane_on, many_cores,
    past_the_window, within_a_minute, Gate, LOOK_WINDOW as WINDOW,
};

const GUARD: Duration = Duration::from_secs(30);

/// Waits (yielding, not sleeping) until the lane runs nothing and has completed `n`.
fn until_idle(stats: impl Fn() -> Stats, completed: u64) {
    let start = Instant::now();
    loop {
        let s = stats();
        if s.running == 0 && s.queued == 0 && s.completed + s.panicked >= completed {
            return;
        }
        assert!(start.elapsed() < GUARD, "the lane never went idle: {s:?}");
        std::thread::yield_now();
    }
}

// 1. A call dropped mid-look.

#[test]
fn a_running_call_dropped_while_its_caller_looks_is_cancelled_once_and_its_token_fires() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("dropped-mid-look", &rt, 1);
        let rounds = 50;
        let mut looks = 0;
        for _ in 0..rounds {
            // A quick call opens the window again (each held call below closes it a bit).
            block_on_plain(lane.run(|| ())).unwrap();
            let (started_tx, started) = mpsc::channel();
            let (seen_tx, seen) = mpsc::channel();
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(lane.run_cancellable(move |token| {
                started_tx.send(()).unwrap();
                held.wait();
                seen_tx.send(token.is_cancelled()).unwrap();
            }));
            looks += usize::from(first_poll_looks(&mut call));
            started.recv_timeout(GUARD).unwrap(); // running: it can no longer be withdrawn
            drop(call);
            gate.open();
            assert!(
                seen.recv_timeout(GUARD).unwrap(),
                "the token was not cancelled"
            );
            until_idle(|| lane.stats(), 0);
        }
        if many_cores() {
            assert!(
                looks > 0,
                "no caller looked for its reply in {rounds} rounds"
            );
        }
        let stats = lane.stats();
        assert_eq!(stats.submitted, 2 * rounds as u64, "{stats:?}");
        assert_eq!(stats.completed, 2 * rounds as u64, "{stats:?}");
        assert_eq!(
            (stats.withdrawn, stats.cancelled),
            (0, rounds as u64),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}

#[test]
fn a_queued_call_is_not_looked_for_and_dropping_it_withdraws_it_unrun() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("dropped-queued", &rt, 1);
        let (started_tx, started) = mpsc::channel();
        let gate = Gate::new();
        let held = gate.clone();
        let mut first = Box::pin(lane.run(move || {
            started_tx.send(()).unwrap();
            held.wait();
        }));
        let _ = first_poll_looks(&mut first);
        started.recv_timeout(GUARD).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut queued = Box::pin(lane.run(move || flag.store(true, Ordering::SeqCst)));
        // Its drainer runs a call: nothing takes it at once, so its caller sleeps.
        assert!(
            !first_poll_looks(&mut queued),
            "a queued call was looked for"
        );
        assert_eq!(lane.stats().queued, 1);
        drop(queued);
        gate.open();
        block_on_plain(first).unwrap();
        block_on_plain(lane.run(|| ())).unwrap();
        assert!(!ran.load(Ordering::SeqCst), "a withdrawn call ran");
        let stats = lane.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.completed,
                stats.withdrawn,
                stats.cancelled
            ),
            (3, 2, 1, 1),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}

// 2. A timeout firing while the caller looks.

#[test]
fn a_timeout_that_fires_while_the_caller_looks_fails_the_call_and_cancels_its_token() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = Offloader::builder("timeout-look")
            .max_concurrency(1)
            .timeout(Duration::from_secs(1))
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        // The caller's clock is paused: the timeout (timed on the caller's runtime) fires
        // when the test advances it, within the look when the machine is quick enough.
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        // Until a few were looked for (at most 200 rounds).
        let mut rounds = 0u64;
        let (mut looked_for, mut during_look) = (0, 0);
        for round in 0..200u64 {
            // Two quick calls: the first may wake a drainer asleep (a wait longer than
            // the window), the second finds it awake and reopens the window.
            for _ in 0..2 {
                block_on_plain(lane.run(|| ())).unwrap();
            }
            let (started_tx, started) = mpsc::channel();
            let (seen_tx, seen) = mpsc::channel();
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(lane.run_cancellable(move |token| {
                started_tx.send(()).unwrap();
                held.wait();
                seen_tx.send(token.is_cancelled()).unwrap();
                round
            }));
            let (looked, polled, err) = {
                // In the paused runtime's context but outside its `block_on`, a look's
                // yield wakes at once (the counting waker sees it); the timeout is timed
                // on the paused clock.
                let _in_paused = paused.enter();
                let looked = first_poll_looks(&mut call);
                let polled = Instant::now();
                // Running (a timeout of a queued call withdraws it instead); spun for,
                // not parked on, so that the timeout may still fire within the look.
                while started.try_recv().is_err() {
                    assert!(polled.elapsed() < GUARD, "the call never started");
                    std::hint::spin_loop();
                }
                paused.block_on(tokio::time::advance(Duration::from_secs(1)));
                let (_counter, waker, _woken) = counting();
                let mut cx = Context::from_waker(&waker);
                let err = loop {
                    match call.as_mut().poll(&mut cx) {
                        Poll::Ready(out) => break out.unwrap_err(),
                        // The timer fires once the paused runtime's driver turns.
                        Poll::Pending => paused.block_on(tokio::task::yield_now()),
                    }
                };
                (looked, polled, err)
            };
            looked_for += usize::from(looked);
            if looked && polled.elapsed() < WINDOW {
                during_look += 1;
            }
            assert!(err.is_timeout(), "{err}");
            drop(call); // settled: not counted cancelled
            gate.open();
            assert!(
                seen.recv_timeout(GUARD).unwrap(),
                "the token was not cancelled"
            );
            until_idle(|| lane.stats(), 3 * (round + 1));
            rounds = round + 1;
            if looked_for >= 5 {
                break;
            }
        }
        eprintln!(
            "timed-out calls looked for: {looked_for} of {rounds}, \
             {during_look} timed out within the window"
        );
        if many_cores() {
            assert!(looked_for > 0, "no timed-out call was looked for");
        }
        let stats = lane.stats();
        assert_eq!(stats.submitted, 3 * rounds, "{stats:?}");
        assert_eq!(stats.completed, 3 * rounds, "{stats:?}");
        assert_eq!((stats.timed_out, stats.cancelled), (rounds, 0), "{stats:?}");
        assert_settled(&stats);
    });
}

#[test]
fn a_quick_call_under_a_timeout_is_looked_for_and_answered_not_timed_out() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = Offloader::builder("timeout-quick")
            .max_concurrency(1)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..500u32 {
                assert_eq!(lane.run(move || i).await.unwrap(), i);
            }
        });
        let stats = lane.stats();
        assert_eq!((stats.completed, stats.timed_out), (500, 0), "{stats:?}");
        assert_settled(&stats);
    });
}

// 3. Lane shutdown while a caller looks.

#[test]
fn a_lane_shut_down_while_a_caller_looks_answers_the_running_call_and_refuses_new_ones() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("shutdown-look", &rt, 1);
        block_on_plain(lane.run(|| ())).unwrap();
        let (started_tx, started) = mpsc::channel();
        let gate = Gate::new();
        let held = gate.clone();
        let mut call = Box::pin(lane.run_cancellable(move |token| {
            started_tx.send(()).unwrap();
            held.wait();
            token.is_cancelled()
        }));
        let looked = first_poll_looks(&mut call);
        started.recv_timeout(GUARD).unwrap();
        let report = rt.block_on(lane.shutdown(Duration::ZERO));
        assert_eq!(report.still_running().len(), 1, "{report:?}");
        gate.open();
        // It ran to the end: its caller gets the value (the token saw the shutdown).
        assert!(
            block_on_plain(call).unwrap(),
            "shutdown did not cancel the token"
        );
        let err = block_on_plain(lane.run(|| ())).unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        eprintln!("looked: {looked}");
        let stats = lane.stats();
        assert_eq!(
            (stats.submitted, stats.completed, stats.cancelled),
            (2, 2, 0),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}

#[test]
fn a_call_taken_by_an_idle_drainer_as_the_lane_shuts_down_is_answered_or_refused_never_lost() {
    within_a_minute(|| {
        let rt = support::rt();
        for round in 0..100u32 {
            let lane = lane_on("shutdown-race", &rt, 2);
            block_on_plain(lane.run(|| ())).unwrap(); // an idle drainer lingers
            let mut call = Box::pin(lane.run(move || round));
            // (A drainer spinning for its next call may answer it within this poll.)
            let (_counter, waker, _woken) = counting();
            let early = call.as_mut().poll(&mut Context::from_waker(&waker));
            let report = rt.block_on(lane.shutdown(Duration::from_secs(10)));
            assert!(report.still_running().is_empty(), "{report:?}");
            // Abandoned by the shutdown (counted in its report, in no `Stats` field), or
            // run to the end.
            let out = match early {
                Poll::Ready(out) => out,
                Poll::Pending => block_on_plain(call),
            };
            let abandoned = match out {
                Ok(got) => {
                    assert_eq!(got, round);
                    0
                }
                Err(err) => {
                    assert!(err.is_shutdown(), "{err}");
                    1
                }
            };
            assert_eq!(report.abandoned(), abandoned, "{report:?}");
            let stats = lane.stats();
            assert_eq!((stats.queued, stats.running, stats.cancelled), (0, 0, 0));
            assert_eq!(stats.submitted, 2, "{stats:?}");
            assert_eq!(stats.completed, 2 - abandoned as u64, "{stats:?}");
        }
    });
}

// 4. A panic in the closure while looked for.

#[test]
fn a_closure_that_panics_while_its_caller_looks_gives_the_panic_to_the_caller() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("panic-look", &rt, 1);
        rt.block_on(async {
            for i in 0..100u32 {
                let err = lane
                    .run(move || -> u32 { panic!("boom {i}") })
                    .await
                    .unwrap_err();
                assert!(err.is_panic(), "{err}");
                assert_eq!(support::panic_text(&*err.into_panic()), format!("boom {i}"));
                // The lane still answers, and the window was not closed by panics.
                assert_eq!(lane.run(move || i).await.unwrap(), i);
            }
        });
        // Polled by hand: the look (or the sleep after it) ends with the panic.
        let gate = Gate::new();
        let held = gate.clone();
        let mut call = Box::pin(lane.run(move || -> u32 {
            held.wait();
            panic!("held")
        }));
        let _ = first_poll_looks(&mut call);
        gate.open();
        let err = block_on_plain(call).unwrap_err();
        assert_eq!(support::panic_text(&*err.into_panic()), "held");
        let stats = lane.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.completed,
                stats.panicked,
                stats.cancelled
            ),
            (201, 100, 101, 0),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}

// 5. Nested calls: a closure that waits on another call of its own lane.

#[test]
fn a_closure_blocking_on_a_call_of_its_own_lane_is_answered_while_a_slot_is_free() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = Arc::new(lane_on("nested", &rt, 2));
        let rounds = 100u32;
        for i in 0..rounds {
            let inner = Arc::clone(&lane);
            let got = block_on_plain(lane.run(move || {
                // Both drainers are up after the first round: the inner call may find the
                // other one idle and be looked for from this drainer's thread.
                let a = async_bridge::block_on(inner.run(move || i))
                    .unwrap()
                    .unwrap();
                let b = futures::executor::block_on(inner.run(move || i + 1)).unwrap();
                a + b
            }))
            .unwrap();
            assert_eq!(got, 2 * i + 1);
        }
        let stats = lane.stats();
        assert_eq!(stats.completed, 3 * u64::from(rounds), "{stats:?}");
        assert_eq!(stats.rejected, 0, "{stats:?}");
        assert_settled(&stats);
    });
}

#[test]
fn a_nested_call_with_no_slot_left_is_refused_as_a_deadlock_not_looked_for_forever() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = Arc::new(
            Offloader::builder("nested-full")
                .max_concurrency(2)
                .max_queue(4)
                .handle(rt.handle().clone())
                .build()
                .unwrap(),
        );
        for _ in 0..20 {
            let mid = Arc::clone(&lane);
            let got = block_on_plain(lane.run(move || {
                let inner = Arc::clone(&mid);
                // The second slot takes this one; its own nested call has none left.
                futures::executor::block_on(mid.run(move || {
                    let err = futures::executor::block_on(inner.run(|| ())).unwrap_err();
                    err.is_would_deadlock()
                }))
                .unwrap()
            }))
            .unwrap();
            assert!(got, "a nested call with no slot left was not refused");
        }
        let stats = lane.stats();
        assert_eq!(
            (stats.submitted, stats.completed, stats.rejected),
            (60, 40, 20),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}

// 6. Callers of every kind.

#[test]
fn callers_on_a_current_thread_runtime_and_a_local_set_get_every_reply() {
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lane = Offloader::builder("current-thread").build().unwrap();
        rt.block_on(async {
            for i in 0..300u32 {
                assert_eq!(lane.run(move || i).await.unwrap(), i);
            }
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let tasks: Vec<_> = (0..4u32)
                        .map(|t| {
                            let lane = lane.clone();
                            tokio::task::spawn_local(async move {
                                for i in 0..100u32 {
                                    let v = t * 1000 + i;
                                    assert_eq!(lane.run(move || v).await.unwrap(), v);
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                })
                .await;
        });
        let stats = lane.stats();
        assert_eq!(stats.completed, 700, "{stats:?}");
        assert_settled(&stats);
    });
}

/// A foreign executor blocking a tokio worker thread holds the runtime's deferred
/// wake-ups (a look's yield): only the waker left in the reply wakes it.
#[test]
fn a_foreign_executor_inside_a_tokio_task_is_woken_by_the_reply_not_the_looks_yield() {
    within_a_minute(|| {
        for rt in [
            support::rt(),
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ] {
            let lane = Offloader::builder("foreign")
                .max_concurrency(1)
                .build()
                .unwrap();
            let done = rt.block_on(async move {
                tokio::spawn(async move {
                    for i in 0..300u32 {
                        let got = futures::executor::block_on(lane.run(move || i)).unwrap();
                        assert_eq!(got, i);
                    }
                    lane.stats()
                })
                .await
                .unwrap()
            });
            assert_eq!(done.completed, 300, "{done:?}");
            assert_settled(&done);
        }
    });
}

#[test]
fn callers_on_async_bridge_block_on_and_on_a_portal_get_every_reply() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("facades", &rt, 1);
        for i in 0..300u32 {
            assert_eq!(
                async_bridge::block_on(lane.run(move || i))
                    .unwrap()
                    .unwrap(),
                i
            );
        }
        let portal = async_bridge::Portal::builder()
            .worker_threads(1)
            .build()
            .unwrap();
        let own = Offloader::builder("portal-own").build().unwrap();
        for i in 0..300u32 {
            assert_eq!(portal.block_on(lane.run(move || i)).unwrap().unwrap(), i);
            // A lane with no runtime of its own runs on the portal's.
            assert_eq!(portal.block_on(own.run(move || i)).unwrap().unwrap(), i);
        }
        let (a, b) = (lane.stats(), own.stats());
        assert_eq!((a.completed, b.completed), (600, 300), "{a:?} {b:?}");
        assert_settled(&a);
        assert_settled(&b);
    });
}

#[test]
fn a_lanes_tower_service_and_a_compute_pool_get_every_reply_with_exact_counts() {
    use tower::{Service, ServiceExt};
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("tower-look", &rt, 1);
        let pool = ComputePool::builder("pool-look")
            .threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut svc = lane.service(|n: u32| n * 2);
            for n in 0..300u32 {
                assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n * 2);
            }
            let err = lane
                .service(|_: u32| -> u32 { panic!("svc") })
                .oneshot(1)
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err}");
            for n in 0..300u32 {
                assert_eq!(pool.run(move || n + 1).await.unwrap(), n + 1);
            }
            let err = pool.run(|| -> u32 { panic!("pool") }).await.unwrap_err();
            assert!(err.is_panic(), "{err}");
        });
        for n in 0..100u32 {
            assert_eq!(block_on_plain(pool.run(move || n)).unwrap(), n);
        }
        let (l, p) = (lane.stats(), pool.stats());
        assert_eq!(
            (l.submitted, l.completed, l.panicked),
            (301, 300, 1),
            "{l:?}"
        );
        assert_eq!(
            (p.submitted, p.completed, p.panicked),
            (401, 400, 1),
            "{p:?}"
        );
        assert_settled(&l);
        assert_settled(&p);
    });
}

// 7. Virtual time.

#[test]
fn under_virtual_time_a_looking_caller_moves_no_clock_and_sleeps_and_timeouts_are_exact() {
    use tokio::time::Instant as Virtual;
    within_a_minute(|| {
        async_bridge::testing::run(async {
            let lane = Offloader::builder("virtual")
                .max_concurrency(1)
                .build()
                .unwrap();
            let start = Virtual::now();
            for i in 0..300u32 {
                assert_eq!(lane.run(move || i).await.unwrap(), i);
            }
            assert_eq!(
                start.elapsed(),
                Duration::ZERO,
                "quick calls moved the clock"
            );
            // A sleeper beside a stream of quick calls wakes exactly on time.
            let sleeper = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                start.elapsed()
            });
            for i in 0..300u32 {
                assert_eq!(lane.run(move || i).await.unwrap(), i);
            }
            assert_eq!(
                start.elapsed(),
                Duration::ZERO,
                "quick calls moved the clock"
            );
            assert_eq!(sleeper.await.unwrap(), Duration::from_millis(5));
            // A call within a tokio timeout: answered at once.
            let t = Virtual::now();
            let got = tokio::time::timeout(Duration::from_millis(1), lane.run(|| 7))
                .await
                .unwrap()
                .unwrap();
            assert_eq!((got, t.elapsed()), (7, Duration::ZERO));
            // The lane's own timeout: exact whichever side wins.
            let timed = Offloader::builder("virtual-timeout")
                .max_concurrency(1)
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            for round in 0..20 {
                let t = Virtual::now();
                let quick = timed.run(|| 1).await;
                assert_eq!(t.elapsed(), Duration::ZERO, "round {round}: {quick:?}");
                assert_eq!(quick.unwrap(), 1);
                let t = Virtual::now();
                let got = timed
                    .run(|| async_bridge::clock::sleep(Duration::from_millis(500)))
                    .await;
                assert!(got.is_ok());
                assert_eq!(t.elapsed(), Duration::from_millis(500));
                let t = Virtual::now();
                let err = timed
                    .run(|| async_bridge::clock::sleep(Duration::from_secs(3)))
                    .await
                    .unwrap_err();
                assert!(err.is_timeout(), "{err}");
                assert_eq!(t.elapsed(), Duration::from_secs(1));
                // Its closure sleeps on until 3 s: the next round's calls must not queue
                // behind it.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let stats = timed.stats();
            assert_eq!((stats.timed_out, stats.cancelled), (20, 0), "{stats:?}");
        });
    });
}

// 8. The ledger's figures for lanes, from the drainers' stamps.

/// `lane.run(f)` and its site (`run` takes its caller's, through this).
#[track_caller]
fn sited<T: Send + 'static>(
    lane: &Offloader,
    f: impl FnOnce() -> T + Send + 'static,
) -> (&'static Location<'static>, OffloadCall<T>) {
    (Location::caller(), lane.run(f))
}

fn at(site: &Location<'_>) -> Option<async_bridge::Crossing> {
    async_bridge::ledger()
        .crossings()
        .iter()
        .find(|c| {
            c.kind() == "offload"
                && c.site().file() == site.file()
                && c.site().line() == site.line()
        })
        .cloned()
}

fn count(site: &Location<'_>) -> u64 {
    at(site).map_or(0, |c| c.count())
}

/// The ledger is process-global: its checks are in this one test, on sites of its own.
#[test]
fn the_ledger_counts_each_lane_call_that_ran_once_with_its_wait_and_run() {
    within_a_minute(|| {
        ledger::enable();
        let rt = support::rt();
        let lane = Offloader::builder("ledger-look")
            .max_concurrency(1)
            .max_queue(1)
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        // Quick calls, looked for by their callers.
        let quick = rt.block_on(async {
            let mut site = None;
            for i in 0..50u32 {
                let (s, call) = sited(&lane, move || i);
                assert_eq!(call.await.unwrap(), i);
                site = Some(s);
            }
            site.unwrap()
        });
        assert_eq!(count(quick), 50);
        // One held running, one queued behind it, one withdrawn, one rejected.
        let (started_tx, started) = mpsc::channel();
        let gate = Gate::new();
        let held = gate.clone();
        let (ran, first) = sited(&lane, move || {
            started_tx.send(()).unwrap();
            held.wait();
            past_the_window();
        });
        let mut first = Box::pin(first);
        let _ = first_poll_looks(&mut first);
        started.recv_timeout(GUARD).unwrap();
        let ran_from = Instant::now(); // after its claim
        let (withdrawn, gone) = sited(&lane, || ());
        let mut gone = Box::pin(gone);
        assert!(!first_poll_looks(&mut gone));
        drop(gone);
        let (queued, waiting) = sited(&lane, || ());
        let mut waiting = Box::pin(waiting);
        assert!(!first_poll_looks(&mut waiting));
        let queued_from = Instant::now(); // after its admission
        let (rejected, call) = sited(&lane, || ());
        assert!(block_on_plain(call).unwrap_err().is_rejected());
        past_the_window();
        let (waited_at_least, ran_at_least) = (queued_from.elapsed(), ran_from.elapsed());
        gate.open();
        block_on_plain(first).unwrap();
        block_on_plain(waiting).unwrap();
        for site in [ran, queued] {
            assert_eq!(count(site), 1, "at {site}: {}", ledger());
        }
        for site in [withdrawn, rejected] {
            assert_eq!(count(site), 0, "at {site}: {}", ledger());
        }
        let (_, wait_max) = at(queued).unwrap().queue_wait();
        assert!(
            wait_max >= waited_at_least,
            "{wait_max:?} < {waited_at_least:?}"
        );
        let (_, run_max) = at(ran).unwrap().run_time();
        assert!(run_max >= ran_at_least, "{run_max:?} < {ran_at_least:?}");
        assert_eq!(at(ran).unwrap().from_async(), 0);

        // Timed out: one while it runs (it ran: counted once, when it ends), one while
        // queued behind it (withdrawn: never counted).
        let timed = Offloader::builder("ledger-timeout")
            .max_concurrency(1)
            .timeout(Duration::from_millis(20))
            .handle(rt.handle().clone())
            .build()
            .unwrap();
        let (started_tx, started) = mpsc::channel();
        let gate = Gate::new();
        let held = gate.clone();
        let (running, first) = sited(&timed, move || {
            started_tx.send(()).unwrap();
            held.wait();
        });
        let (behind, second) = sited(&timed, || ());
        let ran_at_least = rt.block_on(async {
            let first = tokio::spawn(first);
            started.recv_timeout(GUARD).unwrap();
            let ran_from = Instant::now();
            assert!(second.await.unwrap_err().is_timeout());
            assert!(first.await.unwrap().unwrap_err().is_timeout());
            ran_from.elapsed()
        });
        gate.open();
        until_idle(|| timed.stats(), 1);
        // Its drainer records it after its bookkeeping (which `stats` shows), just
        // before its reply, which no caller awaits: wait for the record.
        let start = Instant::now();
        while count(running) == 0 {
            assert!(start.elapsed() < GUARD, "never recorded: {}", ledger());
            std::thread::yield_now();
        }
        assert_eq!(count(running), 1, "{}", ledger());
        assert_eq!(count(behind), 0, "{}", ledger());
        let (_, run_max) = at(running).unwrap().run_time();
        assert!(run_max >= ran_at_least, "{run_max:?} < {ran_at_least:?}");
        let stats = timed.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.completed,
                stats.withdrawn,
                stats.timed_out
            ),
            (2, 1, 1, 2),
            "{stats:?}"
        );
        assert_settled(&stats);

        // A panic is counted once too.
        let (panicked, call) = sited(&lane, || panic!("ledger"));
        assert!(block_on_plain(call).unwrap_err().is_panic());
        assert_eq!(count(panicked), 1, "{}", ledger());
        let stats = lane.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.completed,
                stats.withdrawn,
                stats.rejected
            ),
            (55, 52, 1, 1),
            "{stats:?}"
        );
        assert_settled(&stats);
        ledger::disable();
    });
}

// 9. A looking caller polled with another waker, and a compute pool's calls cut short.

#[test]
fn a_caller_polled_with_a_new_waker_while_it_looks_is_woken_through_the_new_one() {
    within_a_minute(|| {
        let rt = support::rt();
        let lane = lane_on("new-waker", &rt, 1);
        for round in 0..50u32 {
            block_on_plain(lane.run(|| ())).unwrap(); // reopens the window
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(lane.run(move || {
                held.wait();
                round
            }));
            // The first waker is left in the reply; then the task moves (a new waker).
            let (_first, first_waker, _first_woken) = counting();
            assert!(call
                .as_mut()
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending());
            let (_looks, counter, woken, waker) = support::poll_until_it_sleeps(&mut call);
            gate.open();
            woken
                .recv_timeout(GUARD)
                .expect("the new waker was not woken");
            assert!(counter.wakes.load(Ordering::SeqCst) > 0);
            let mut cx = Context::from_waker(&waker);
            assert_eq!(
                call.as_mut().poll(&mut cx).map(Result::unwrap),
                Poll::Ready(round)
            );
        }
        assert_settled(&lane.stats());
    });
}

#[test]
fn a_compute_pools_call_timed_out_or_dropped_while_looked_for_counts_exactly() {
    within_a_minute(|| {
        let rt = support::rt();
        let pool = ComputePool::builder("pool-cut")
            .threads(1)
            // Long enough for the calls that must succeed on a busy machine.
            .timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        let rounds = 10u64;
        for _ in 0..rounds {
            rt.block_on(pool.run(|| ())).unwrap();
            // Timed out while it runs: its token is cancelled, its closure completes.
            let (started_tx, started) = mpsc::channel();
            let (seen_tx, seen) = mpsc::channel();
            let gate = Gate::new();
            let held = gate.clone();
            let call = pool.run_cancellable(move |token| {
                started_tx.send(()).unwrap();
                held.wait();
                seen_tx.send(token.is_cancelled()).unwrap();
            });
            let err = rt.block_on(call).unwrap_err();
            assert!(err.is_timeout(), "{err}");
            started.recv_timeout(GUARD).unwrap();
            gate.open();
            assert!(seen.recv_timeout(GUARD).unwrap());
            // Dropped while it runs.
            let (started_tx, started) = mpsc::channel();
            let (seen_tx, seen) = mpsc::channel();
            let gate = Gate::new();
            let held = gate.clone();
            let mut call = Box::pin(pool.run_cancellable(move |token| {
                started_tx.send(()).unwrap();
                held.wait();
                seen_tx.send(token.is_cancelled()).unwrap();
            }));
            let _guard = rt.enter();
            let _ = first_poll_looks(&mut call);
            started.recv_timeout(GUARD).unwrap();
            drop(call);
            gate.open();
            assert!(seen.recv_timeout(GUARD).unwrap());
            until_idle(|| pool.stats(), 0);
        }
        let stats = pool.stats();
        assert_eq!(
            (stats.submitted, stats.completed, stats.withdrawn),
            (3 * rounds, 3 * rounds, 0),
            "{stats:?}"
        );
        assert_eq!(
            (stats.timed_out, stats.cancelled),
            (rounds, rounds),
            "{stats:?}"
        );
        assert_settled(&stats);
    });
}
