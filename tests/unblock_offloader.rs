//! `Offloader`: limits, FIFO admission, rejection, timeouts, cancellation, panics,
//! shutdown, drop, bad configuration.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_bridge::{Offloader, Stats};
use support::{panic_text, poll_once, within_a_minute, Gate, PanicsOnDrop};
use tokio_util::sync::CancellationToken;

/// Waits, yielding to the runtime, until the lane's stats satisfy `cond`.
async fn until(lane: &Offloader, cond: impl Fn(&Stats) -> bool) {
    while !cond(&lane.stats()) {
        tokio::task::yield_now().await;
    }
}

/// Occupies every slot of a lane with closures that wait on the returned gate.
async fn fill(lane: &Offloader, slots: usize) -> (Gate, Vec<tokio::task::JoinHandle<()>>) {
    let gate = Gate::new();
    let calls = (0..slots)
        .map(|_| {
            let g = gate.clone();
            tokio::spawn({
                let call = lane.run(move || g.wait());
                async move { call.await.unwrap() }
            })
        })
        .collect();
    until(lane, |s| s.running == slots).await;
    (gate, calls)
}

/// Opens the gate of `fill` and waits for the closures it held.
async fn release(gate: Gate, holders: Vec<tokio::task::JoinHandle<()>>) {
    gate.open();
    for h in holders {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn runs_closures_and_counts_them() {
    let lane = Offloader::builder("count").build().unwrap();
    for i in 0..10 {
        assert_eq!(lane.run(move || i * 2).await.unwrap(), i * 2);
    }
    let stats = lane.stats();
    assert_eq!(stats.completed, 10);
    assert_eq!((stats.running, stats.queued, stats.panicked), (0, 0, 0));
}

#[tokio::test]
async fn a_panic_is_an_error_with_its_payload_and_the_lane_keeps_working() {
    let lane = Offloader::builder("panicky").build().unwrap();
    let err = lane
        .run(|| -> u8 { panic!("row {} is corrupt", 7) })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert!(!err.is_timeout() && !err.is_rejected() && !err.is_shutdown());
    assert_eq!(err.name(), "panicky");
    assert_eq!(
        err.to_string(),
        "lane `panicky`: closure panicked: row 7 is corrupt"
    );
    assert_eq!(panic_text(&*err.into_panic()), "row 7 is corrupt");
    assert_eq!(lane.run(|| 5).await.unwrap(), 5);
    assert_eq!(lane.stats().panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_holds_under_a_10k_burst() {
    let lane = Offloader::builder("burst")
        .max_concurrency(4)
        .max_queue(10_000)
        .build()
        .unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = (0..10_000usize).map(|i| {
        let (now, peak) = (now.clone(), peak.clone());
        lane.run(move || {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            std::hint::black_box((0..100).sum::<usize>());
            now.fetch_sub(1, Ordering::SeqCst);
            i
        })
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i);
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak concurrency {peak}");
    assert_eq!(lane.stats().completed, 10_000);
}

#[tokio::test]
async fn waiting_callers_are_admitted_in_fifo_order() {
    let lane = Offloader::builder("fifo")
        .max_concurrency(1)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for i in 0..5 {
        let order = order.clone();
        waiting.push(tokio::spawn(
            lane.run(move || order.lock().unwrap().push(i)),
        ));
        until(&lane, |s| s.queued == i + 1).await;
    }
    gate.open();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    for h in holders {
        h.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_full_queue_rejects_at_once() {
    let lane = Offloader::builder("small")
        .max_concurrency(1)
        .max_queue(2)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let queued: Vec<_> = (0..2).map(|i| tokio::spawn(lane.run(move || i))).collect();
    until(&lane, |s| s.queued == 2).await;

    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let err = lane
        .run(move || r.store(true, Ordering::SeqCst))
        .await
        .unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert_eq!(
        err.to_string(),
        "lane `small`: call rejected: 2 callers already waiting"
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::ResourceBusy);

    release(gate, holders).await;
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(q.await.unwrap().unwrap(), i);
    }
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(lane.stats().rejected, 1);
}

#[tokio::test]
async fn zero_queue_means_no_waiting() {
    let lane = Offloader::builder("nowait")
        .max_concurrency(1)
        .max_queue(0)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    assert!(lane.run(|| ()).await.unwrap_err().is_rejected());
    release(gate, holders).await;
}

#[tokio::test]
async fn a_caller_that_gives_up_while_waiting_leaves_no_trace() {
    let lane = Offloader::builder("give-up")
        .max_concurrency(1)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let waiter = tokio::spawn(lane.run(move || r.store(true, Ordering::SeqCst)));
    until(&lane, |s| s.queued == 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(lane.stats().queued, 0, "the queue place was freed");

    release(gate, holders).await;
    lane.run(|| ()).await.unwrap(); // FIFO: the withdrawn entry had its turn before this
    assert!(!ran.load(Ordering::SeqCst), "a withdrawn call ran");
    assert_eq!(lane.stats().cancelled, 1);
}

#[tokio::test]
async fn a_future_dropped_unpolled_or_after_one_poll_never_runs_when_it_was_queued() {
    let lane = Offloader::builder("poll-once")
        .max_concurrency(1)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    assert!(poll_once(lane.run(move || r.store(true, Ordering::SeqCst))).is_pending());
    assert_eq!(lane.stats().queued, 0);
    release(gate, holders).await;
    lane.run(|| ()).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test]
async fn dropping_a_running_call_cancels_its_token() {
    let lane = Offloader::builder("cancel").build().unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let call = tokio::spawn(lane.run_cancellable(move |cancel: &CancellationToken| {
        started_tx.send(()).unwrap();
        while !cancel.is_cancelled() {
            std::thread::yield_now();
        }
        seen_tx.send(()).unwrap();
    }));
    started_rx.await.unwrap();
    call.abort();
    seen_rx.await.expect("the closure saw its token cancelled");
    until(&lane, |s| s.running == 0).await;
    assert_eq!(lane.stats().cancelled, 1);
}

#[tokio::test]
async fn a_timeout_while_running_returns_at_once_and_cancels_the_token() {
    let lane = Offloader::builder("slow")
        .timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let err = lane
        .run_cancellable(move |cancel: &CancellationToken| {
            while !cancel.is_cancelled() {
                std::thread::yield_now();
            }
            seen_tx.send(()).unwrap();
        })
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.to_string(), "lane `slow`: call timed out after 20ms");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );
    seen_rx.await.unwrap();
    assert_eq!(lane.stats().timed_out, 1);
}

#[tokio::test]
async fn a_timeout_while_waiting_frees_the_place_and_never_runs() {
    let lane = Offloader::builder("queue-timeout")
        .max_concurrency(1)
        // Long enough for the last call, which must succeed, on a busy machine.
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(lane.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
    }));
    started_rx.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let err = lane
        .run(move || r.store(true, Ordering::SeqCst))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(lane.stats().queued, 0);
    assert!(holder.await.unwrap().unwrap_err().is_timeout());
    gate.open();
    until(&lane, |s| s.running == 0).await;
    lane.run(|| ()).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(lane.stats().timed_out, 2);
}

#[tokio::test]
async fn shutdown_with_work_still_running_returns_within_grace_and_reports_it() {
    let lane = Offloader::builder("stubborn")
        .max_concurrency(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    // Ignores its token: shutdown cannot stop it, only report it.
    let running = tokio::spawn(lane.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
        "done anyway"
    }));
    started_rx.await.unwrap();
    let queued = tokio::spawn(lane.run(|| "never"));
    until(&lane, |s| s.queued == 1).await;

    let report = lane.shutdown(Duration::from_millis(20)).await;
    assert!(!report.is_complete());
    assert_eq!(report.abandoned(), 1);
    assert_eq!(report.finished(), 0);
    assert_eq!(report.still_running().len(), 1);
    assert!(report.still_running()[0]
        .file()
        .ends_with("unblock_offloader.rs"));
    assert!(report.to_string().contains("1 still running"), "{report}");

    assert!(queued.await.unwrap().unwrap_err().is_shutdown());
    let late = lane.run(|| ()).await.unwrap_err();
    assert!(late.is_shutdown());
    assert_eq!(late.to_string(), "lane `stubborn`: lane is shut down");

    gate.open();
    assert_eq!(running.await.unwrap().unwrap(), "done anyway");
}

#[tokio::test]
async fn clones_share_one_lane() {
    let a = Offloader::builder("shared")
        .max_concurrency(1)
        .build()
        .unwrap();
    let b = a.clone();
    let (gate, holders) = fill(&a, 1).await;
    let waiting = tokio::spawn(b.run(|| 1));
    until(&a, |s| s.queued == 1).await;
    gate.open();
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    for h in holders {
        h.await.unwrap();
    }
    b.shutdown(Duration::from_secs(1)).await;
    assert!(a.run(|| ()).await.unwrap_err().is_shutdown());
}

#[tokio::test]
async fn dropping_the_last_handle_inside_a_runtime_lets_queued_calls_finish() {
    let lane = Offloader::builder("dropped")
        .max_concurrency(1)
        .build()
        .unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let queued = tokio::spawn(lane.run(|| "still ran"));
    until(&lane, |s| s.queued == 1).await;
    drop(lane); // inside the runtime, with work running and queued: no panic, no block
    gate.open();
    assert_eq!(queued.await.unwrap().unwrap(), "still ran");
    for h in holders {
        h.await.unwrap();
    }
}

#[test]
fn build_and_drop_outside_a_runtime() {
    let lane = Offloader::builder("outside").build().unwrap();
    let clone = lane.clone();
    drop(lane);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(clone.run(|| 3)).unwrap(), 3);
    drop(rt);
    drop(clone);
}

#[test]
fn a_lane_with_an_explicit_handle_runs_from_any_thread() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lane = Offloader::builder("handle")
        .handle(rt.handle().clone())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Polled by an executor that is not tokio at all.
    let value = within_a_minute(move || support::block_on_plain(lane.run(|| 9)));
    assert_eq!(value.unwrap(), 9);
}

#[test]
fn without_a_runtime_a_call_is_an_error_not_a_panic() {
    let lane = Offloader::builder("nowhere").build().unwrap();
    let std::task::Poll::Ready(Err(err)) = poll_once(lane.run(|| 1)) else {
        panic!("expected an immediate error");
    };
    assert!(err.is_no_runtime());
    assert!(err.to_string().contains("no tokio runtime"), "{err}");
}

#[test]
fn a_timeout_on_a_runtime_without_timers_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lane = Offloader::builder("no-timers")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = rt.block_on(lane.run(|| 1)).unwrap_err();
    assert!(err.is_no_runtime());
    assert!(err.to_string().contains("enable_time"), "{err}");
    // Without a timeout the same runtime is fine.
    let plain = Offloader::builder("plain").build().unwrap();
    assert_eq!(rt.block_on(plain.run(|| 2)).unwrap(), 2);
}

#[test]
fn bad_configuration_is_an_error() {
    let err = Offloader::builder("zero")
        .max_concurrency(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration for `zero`: max_concurrency must be at least 1"
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    let err = Offloader::builder("t")
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("timeout must not be zero"));
}

#[test]
fn a_runtime_that_shuts_down_under_a_queued_call_still_runs_it_on_the_thread_it_had() {
    let (mut rt, lane, gate, caller) = held_lane("orphan");
    let mut queued = Box::pin(lane.run(|| 1));
    assert!(poll_once(queued.as_mut()).is_pending()); // admitted: queued behind the holder
    assert_eq!((lane.stats().queued, lane.stats().running), (1, 1));
    rt.0.take().unwrap().shutdown_background();
    gate.open();
    // A shutdown kills no thread: the drainer that ran the holder goes on with the queue.
    caller.join().unwrap();
    let result = within_a_minute(move || support::block_on_plain(queued));
    assert_eq!(result.unwrap(), 1);
}

#[test]
fn a_call_whose_drainer_the_shut_down_runtime_refuses_fails_instead_of_hanging() {
    // The orphan path: tokio drops the drainer's task without running it, so no thread
    // will ever run the lane's queue; the last drainer to leave fails what is queued.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let lane = Offloader::builder("orphan")
        .max_concurrency(1)
        .handle(rt.handle().clone())
        .build()
        .unwrap();
    rt.shutdown_background();
    let ran = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let ran = ran.clone();
            lane.run(move || ran.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    let results = within_a_minute(move || {
        calls
            .into_iter()
            .map(support::block_on_plain)
            .collect::<Vec<_>>()
    });
    for result in results {
        let err = result.unwrap_err();
        assert!(err.is_cancelled(), "{err}");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // Nothing left queued or running, nothing ran; both calls were submitted.
    let stats = lane.stats();
    assert_eq!(
        (stats.queued, stats.running, stats.completed),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.submitted, 2);
}

#[test]
fn shutdown_outside_a_runtime_still_waits_at_most_grace() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lane = Offloader::builder("outside-shutdown")
        .handle(rt.handle().clone())
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let call = lane.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
    });
    let caller = std::thread::spawn(move || support::block_on_plain(call));
    started_rx.recv().unwrap();
    // Polled by an executor with no tokio in it: a helper thread times the grace.
    let l = lane.clone();
    let report =
        within_a_minute(move || support::block_on_plain(l.shutdown(Duration::from_millis(20))));
    assert!(!report.is_complete());
    assert_eq!(report.still_running().len(), 1);
    gate.open();
    caller.join().unwrap().unwrap();
}

/// A runtime shut down in the background when dropped: a test that fails on a
/// deadlocked drainer must not then wait for that thread.
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A lane of one drainer on a runtime of its own (shut down in the background when
/// dropped), its drainer held by a call that waits for the gate; the holder's caller
/// runs on a thread of its own.
fn held_lane(name: &str) -> (Background, Offloader, Gate, std::thread::JoinHandle<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let lane = Offloader::builder(name)
        .max_concurrency(1)
        .handle(rt.handle().clone())
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let holder = lane.run(move || {
        started_tx.send(()).unwrap();
        g.wait();
    });
    let caller = std::thread::spawn(move || support::block_on_plain(holder).unwrap());
    started_rx.recv().unwrap();
    (Background(Some(rt)), lane, gate, caller)
}

/// [`held_lane`] with a withdrawn call queued whose closure owns another call of the
/// same lane, itself queued: dropping that closure withdraws the owned call, which takes
/// the lane's lock.
fn lane_with_a_withdrawn_call_owning_another(
    name: &str,
) -> (Background, Offloader, Gate, std::thread::JoinHandle<()>) {
    let (rt, lane, gate, caller) = held_lane(name);
    let mut owned = Box::pin(lane.run(|| 2));
    assert!(poll_once(owned.as_mut()).is_pending()); // queued behind the holder
    let mut owner = Box::pin(lane.run(move || drop(owned)));
    assert!(poll_once(owner.as_mut()).is_pending());
    drop(owner); // withdrawn: its entry, closure and all, stays queued until popped
    (rt, lane, gate, caller)
}

/// Queues `n` calls on `lane` behind its held drainer and withdraws each (its future
/// dropped after its first poll): their entries stay queued until popped or cleared.
fn withdraw_calls(lane: &Offloader, n: usize) {
    for _ in 0..n {
        let mut call = Box::pin(lane.run(|| 0));
        assert!(poll_once(call.as_mut()).is_pending());
    }
}

/// A drainer that skips a withdrawn entry drops it after the lane's lock: its closure
/// may own a call of this lane, whose drop takes that lock (it deadlocked the drainer,
/// and every later call of the lane waited for ever).
#[test]
fn a_withdrawn_entry_skipped_by_a_drainer_is_dropped_outside_the_lanes_lock() {
    let (_rt, lane, gate, caller) = lane_with_a_withdrawn_call_owning_another("skip-drop");
    gate.open();
    within_a_minute(move || caller.join().unwrap());
    let after = within_a_minute(move || support::block_on_plain(lane.run(|| 5)));
    assert_eq!(after.unwrap(), 5);
}

/// The same for the withdrawn entries a caller clears from the queue when they pile up
/// (more than twice the live ones, plus 64): it deadlocked the withdrawing caller.
#[test]
fn withdrawn_entries_cleared_from_the_queue_are_dropped_outside_the_lanes_lock() {
    let (_rt, lane, gate, caller) = lane_with_a_withdrawn_call_owning_another("clear-drop");
    let l = lane.clone();
    within_a_minute(move || {
        withdraw_calls(&l, 100);
    });
    gate.open();
    within_a_minute(move || caller.join().unwrap());
    let after = within_a_minute(move || support::block_on_plain(lane.run(|| 5)));
    assert_eq!(after.unwrap(), 5);
}

/// A task awaiting one call after another keeps one drainer: its next call often comes
/// while the drainer of the last is still on its way back to the queue (its answer
/// given, its next look not yet taken), and that drainer takes it. Such a call used to
/// start a second drainer, and from then on the two took calls in turn, the idle one
/// woken for each, which cost the caller a futex wake (`benches/tower.rs`, `tower_per_call`: `Offloader::run` took 3-4 µs a call where
/// it now takes 2). The model of this corner is `lane::loom::serial_calls_keep_one_drainer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaited_calls_one_after_another_run_on_one_drainer() {
    let lane = Offloader::builder("serial")
        .max_concurrency(4)
        .build()
        .unwrap();
    let mut threads = Vec::new();
    for _ in 0..2_000 {
        threads.push(lane.run(|| std::thread::current().id()).await.unwrap());
    }
    // One drainer: its thread ran every call, or, should it have lingered out (20 ms
    // without a call: a caller preempted that long) and its successor been given another
    // thread, each thread ran one stretch of calls. Two drainers alive at once take calls
    // in turn, and a thread comes back after another.
    threads.dedup();
    let mut seen = std::collections::HashSet::new();
    let returned = threads.iter().filter(|t| !seen.insert(**t)).count();
    assert_eq!(
        returned,
        0,
        "calls went back and forth between {} threads",
        seen.len()
    );
}

/// What a drainer drops after its answer can panic: here the answer itself, which its
/// caller gave up on. The drainer goes on to the call it claimed before that answer and
/// to the queue: the call behind it is answered (it was failed as cancelled, its drainer
/// unwinding with it), and the lane serves the calls after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_dropping_an_answer_nobody_took_loses_no_call() {
    let lane = Offloader::builder("drop-panics")
        .max_concurrency(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let mut first = Box::pin(lane.run(move || {
        g.wait();
        PanicsOnDrop
    }));
    assert!(poll_once(first.as_mut()).is_pending());
    until(&lane, |s| s.running == 1).await;
    let mut second = Box::pin(lane.run(|| 2));
    assert!(poll_once(second.as_mut()).is_pending()); // queued behind `first`
    drop(first); // its caller gives up while it runs
    gate.open();
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(lane.run(|| 3).await.unwrap(), 3);
    let stats = lane.stats();
    assert_eq!((stats.completed, stats.running, stats.queued), (3, 0, 0));
}

/// What a drainer drops after its answer may itself call the lane and block on it (a
/// `Drop` that hands a connection back through the lane): its call must not be left to
/// the drainer on its way back, which is that very thread. With a slot free it gets a
/// drainer of its own (left to its own thread, it waited for ever).
#[test]
fn a_lane_call_from_a_drop_after_the_answer_gets_a_drainer() {
    struct CallsBackOnDrop(Offloader, std::sync::mpsc::Sender<Result<u32, String>>);
    impl Drop for CallsBackOnDrop {
        fn drop(&mut self) {
            let answer = async_bridge::block_on(self.0.run(|| 5)).map_err(|e| e.to_string());
            let _ = self
                .1
                .send(answer.and_then(|r| r.map_err(|e| e.to_string())));
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lane = Offloader::builder("drop-calls-back")
        .max_concurrency(2)
        .handle(rt.handle().clone())
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let gate = Gate::new();
    let (g, l) = (gate.clone(), lane.clone());
    let mut first = Box::pin(lane.run(move || {
        g.wait();
        CallsBackOnDrop(l, tx)
    }));
    assert!(poll_once(first.as_mut()).is_pending());
    rt.block_on(until(&lane, |s| s.running == 1));
    drop(first); // its caller gives up: the answer is dropped on the drainer's thread
    gate.open();
    let answer = within_a_minute(move || rx.recv().unwrap());
    assert_eq!(answer, Ok(5));
}

/// A lane of one drainer, held by [`fill`] (its gate opened when the guard drops, so that
/// a failing test ends instead of hanging in its runtime's shutdown), and a call queued
/// behind it whose closure owns a runtime.
async fn queued_owning_a_runtime(
    name: &str,
) -> (
    Offloader,
    Gate,
    Vec<tokio::task::JoinHandle<()>>,
    support::OpenOnDrop,
    std::pin::Pin<Box<async_bridge::OffloadCall<()>>>,
) {
    let lane = Offloader::builder(name).max_concurrency(1).build().unwrap();
    let (gate, holders) = fill(&lane, 1).await;
    let open = support::OpenOnDrop(gate.clone());
    let runtime = support::a_runtime_to_own();
    let mut queued = Box::pin(lane.run(move || {
        let _legacy = &runtime;
    }));
    assert!(poll_once(queued.as_mut()).is_pending());
    (lane, gate, holders, open, queued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_queued_closure_that_owns_a_runtime_where_blocking_is_allowed() {
    // Legacy clients often own a tokio runtime, which panics if dropped where blocking is
    // not allowed. Shutdown gives the queued closure up unrun: it is dropped where
    // blocking is allowed, as tokio drops a queued `spawn_blocking` closure, not in the
    // shutdown's poll on this runtime (which panicked).
    let (lane, gate, holders, _open, queued) = queued_owning_a_runtime("release-queued").await;
    let report = lane.shutdown(Duration::ZERO).await;
    assert_eq!(report.abandoned(), 1, "{report}");
    assert!(queued.await.unwrap_err().is_shutdown());
    release(gate, holders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_entries_cleared_from_the_queue_are_dropped_off_the_executor() {
    // The caller whose withdrawal clears the queue of the withdrawn entries piled up in it
    // drops other callers' closures: they go off the executor (the runtime's blocking
    // pool), as a drainer would have dropped them on its thread, not in that caller's poll
    // here (where a closure owning a runtime panicked).
    let (lane, gate, holders, _open, owner) = queued_owning_a_runtime("clear-where-blocking").await;
    // Withdrawn: its entry, closure and all, stays queued.
    drop(owner);
    // Each withdrawn as it drops: the 65th withdrawal (the owner's and 64 of these)
    // clears the queue.
    withdraw_calls(&lane, 100);
    assert_eq!(lane.stats().withdrawn, 101);
    release(gate, holders).await;
}

/// The same inside a `LocalSet` on a multi-thread runtime's `block_on` (a `#[tokio::main]`
/// running `!Send` tasks), where tokio refuses `block_in_place`: the cleared closures
/// still go off the executor. Handed to `block_in_place`, tokio's refusal panicked
/// (caught, but seen by the panic hook, and an abort under `panic = "abort"`), and the
/// closure owning a runtime was then dropped in the caller's poll, which panicked.
#[test]
fn withdrawn_entries_cleared_inside_a_local_set_are_dropped_off_the_executor() {
    let (mut background, lane, gate, caller) = held_lane("clear-local-set");
    let _open = support::OpenOnDrop(gate.clone());
    let rt = background.0.take().unwrap();
    let l = lane.clone();
    let (rt, outcome) = within_a_minute(move || {
        let set = tokio::task::LocalSet::new();
        let outcome = set.block_on(&rt, async move {
            tokio::task::spawn_local(async move {
                let runtime = support::a_runtime_to_own();
                let mut owner = Box::pin(l.run(move || {
                    let _legacy = &runtime;
                }));
                assert!(poll_once(owner.as_mut()).is_pending());
                drop(owner);
                withdraw_calls(&l, 100);
            })
            .await
        });
        (rt, outcome) // shut down below, in the background: its drainer still waits
    });
    background.0 = Some(rt);
    outcome.unwrap();
    assert_eq!(lane.stats().withdrawn, 101);
    gate.open();
    within_a_minute(move || caller.join().unwrap());
}
