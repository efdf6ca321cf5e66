//! `WorkerPool<T>`: one object per worker thread, least-loaded routing, panics,
//! failing makers, bad configuration.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use async_bridge::{AfterPanic, WorkerPool};
use futures::future::join_all;
use support::{panic_text, rt, within_a_minute, Gate};

type Io<T> = std::io::Result<T>;

#[test]
fn each_worker_has_its_own_object_on_its_own_named_thread() {
    within_a_minute(|| {
        let made = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&made);
        let pool = WorkerPool::builder("objects")
            .workers(3)
            .spawn(move || {
                let id = counted.fetch_add(1, Ordering::SeqCst);
                Io::Ok((id, std::thread::current().name().unwrap().to_owned()))
            })
            .unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3);
        let seen: HashSet<(usize, String, String)> = (0..30)
            .map(|_| {
                pool.call_blocking(|(id, made_on)| {
                    let now_on = std::thread::current().name().unwrap().to_owned();
                    (*id, made_on.clone(), now_on)
                })
                .unwrap()
            })
            .collect();
        for (_, made_on, now_on) in &seen {
            assert_eq!(made_on, now_on); // an object is only ever used on its own thread
            assert!(made_on.starts_with("objects-"));
        }
        assert!(seen.len() >= 2, "idle workers take turns: {seen:?}");
    });
}

#[test]
fn calls_go_to_the_least_loaded_worker() {
    within_a_minute(|| {
        rt().block_on(async {
            let pool = WorkerPool::builder("routing")
                .workers(2)
                .spawn(|| Io::Ok(()))
                .unwrap();
            let gate = Gate::new();
            let (started_tx, started_rx) = mpsc::channel();
            let g = gate.clone();
            let busy = pool.call(move |_| {
                started_tx
                    .send(std::thread::current().name().unwrap().to_owned())
                    .unwrap();
                g.wait();
            });
            let busy = tokio::spawn(busy);
            let busy_thread = started_rx.recv().unwrap();
            // While one worker is held, every call goes to the other and completes.
            for _ in 0..20 {
                let thread = pool
                    .call(|_| std::thread::current().name().unwrap().to_owned())
                    .await
                    .unwrap();
                assert_ne!(thread, busy_thread);
            }
            gate.open();
            busy.await.unwrap().unwrap();
        })
    });
}

#[test]
fn a_panic_in_one_worker_reaches_its_caller_and_the_pool_keeps_serving() {
    within_a_minute(|| {
        rt().block_on(async {
            let pool = WorkerPool::builder("panicky")
                .workers(2)
                .after_panic(AfterPanic::Rebuild)
                .spawn(|| Io::Ok(0u32))
                .unwrap();
            let err = pool
                .call(|_| -> u32 { panic!("bad row") })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            assert_eq!(err.name(), "panicky");
            assert_eq!(panic_text(&*err.into_panic()), "bad row");
            let calls = (0..100).map(|_| pool.call(|n| *n += 1));
            for r in join_all(calls).await {
                r.unwrap();
            }
        })
    });
}

#[test]
fn a_failing_maker_fails_spawn_and_stops_the_other_workers() {
    within_a_minute(|| {
        let (tx, dropped) = mpsc::channel::<()>();
        let tx = std::sync::Mutex::new(tx);
        let made = AtomicUsize::new(0);
        let err = WorkerPool::builder("half")
            .workers(3)
            .spawn(move || {
                if made.fetch_add(1, Ordering::SeqCst) == 1 {
                    return Err("second connection refused".into());
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Probe(tx.lock().unwrap().clone()))
            })
            .unwrap_err();
        assert!(err.is_maker_error());
        assert!(
            err.to_string().contains("second connection refused"),
            "{err}"
        );
        // The two objects that were made are dropped: their workers stopped.
        assert!(dropped.recv().is_ok() && dropped.recv().is_ok());
    });
}

struct Probe(mpsc::Sender<()>);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let err = WorkerPool::builder("none")
        .workers(0)
        .spawn(|| Io::Ok(()))
        .unwrap_err();
    assert!(err.is_config());
    assert_eq!(
        err.to_string(),
        "worker `none`: cannot start: invalid configuration for `none`: workers must be at least 1"
    );
    let err = WorkerPool::builder("m")
        .mailbox(0)
        .spawn(|| Io::Ok(()))
        .unwrap_err();
    assert!(err.to_string().contains("mailbox must be at least 1"));
}

#[test]
fn a_burst_spreads_over_the_workers() {
    within_a_minute(|| {
        rt().block_on(async {
            let pool = WorkerPool::builder("spread")
                .workers(2)
                .mailbox(8)
                .spawn(|| Io::Ok(0usize))
                .unwrap();
            let calls = (0..2_000).map(|i| pool.call(move |sum: &mut usize| *sum += i));
            for r in join_all(calls).await {
                r.unwrap();
            }
            let a = pool.call(|sum| *sum).await.unwrap();
            let b = pool.call(|sum| *sum).await.unwrap();
            // Two idle workers take turns, so these two calls read both sums.
            assert_eq!(a + b, (0..2_000).sum::<usize>());
            assert!(format!("{pool:?}").contains("spread"));
        })
    });
}

#[test]
fn a_worker_that_stopped_is_routed_around() {
    within_a_minute(|| {
        let made = AtomicUsize::new(0);
        let pool = WorkerPool::builder("degraded")
            .workers(2)
            .after_panic(AfterPanic::Rebuild)
            .spawn(move || match made.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Ok(()),
                _ => Err(std::io::Error::other("no more licences")),
            })
            .unwrap();
        // The panicking call's worker cannot rebuild its object, so it stops.
        let err = pool
            .call_blocking(|_| -> () { panic!("bad row") })
            .unwrap_err();
        assert!(err.is_panic());
        // Its sibling serves every later call.
        for _ in 0..20 {
            pool.call_blocking(|_| ()).unwrap();
        }
    });
}
