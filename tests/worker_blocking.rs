//! `call_blocking`: sync callers share the mailbox, and follow `block_on`'s rules —
//! works wherever waiting can end, refuses (without running the closure) where it
//! could not.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_bridge::{Worker, WorkerPool};
use support::{within_a_minute, Gate};

type Io<T> = std::io::Result<T>;

fn counter(name: &str) -> Worker<u32> {
    Worker::builder(name).spawn(|| Io::Ok(0)).unwrap()
}

#[test]
fn from_a_plain_thread() {
    within_a_minute(|| {
        let w = counter("plain");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        w.call_blocking(|n| *n += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.call_blocking(|n| *n).unwrap(), 200);
    });
}

#[test]
fn from_a_multi_thread_runtime_worker() {
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let w = counter("multi");
        let sync_caller = w.clone();
        rt.block_on(async move {
            tokio::spawn(async move { sync_caller.call_blocking(|n| *n + 7) })
                .await
                .unwrap()
        })
        .map(|seven| assert_eq!(seven, 7))
        .unwrap();
    });
}

#[test]
fn from_a_blocking_pool_thread_of_a_current_thread_runtime() {
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let w = counter("blocking-pool");
        let caller = w.clone();
        let n = rt.block_on(async move {
            tokio::task::spawn_blocking(move || caller.call_blocking(|n| *n + 3))
                .await
                .unwrap()
        });
        assert_eq!(n.unwrap(), 3);
    });
}

#[test]
fn on_a_current_thread_runtime_it_refuses_without_running() {
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let w = counter("refused");
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let err = rt.block_on(async {
            w.call_blocking(move |_| flag.store(true, Ordering::SeqCst))
                .unwrap_err()
        });
        assert!(err.is_would_deadlock(), "{err}");
        assert!(err.to_string().contains("current_thread"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::Deadlock);
        // The worker is unharmed and the refused closure never ran.
        assert_eq!(w.call_blocking(|n| *n).unwrap(), 0);
        assert!(!ran.load(Ordering::SeqCst));
    });
}

#[test]
fn sync_and_async_callers_share_one_queue() {
    within_a_minute(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let w = Worker::builder("mixed")
            .mailbox(4)
            .spawn(|| Io::Ok(Vec::<&'static str>::new()))
            .unwrap();
        let gate = Gate::new();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let blocker = w.clone();
        let blocker = std::thread::spawn(move || {
            blocker.call_blocking(move |_| {
                started_tx.send(()).unwrap();
                g.wait();
            })
        });
        started_rx.recv().unwrap();
        // While the worker is busy: async callers queue, then a sync caller joins them.
        let asyncs: Vec<_> = (0..10)
            .map(|_| rt.spawn(w.call(|log: &mut Vec<&str>| log.push("async"))))
            .collect();
        let sync_caller = w.clone();
        let sync = std::thread::spawn(move || sync_caller.call_blocking(|log| log.push("sync")));
        gate.open();
        blocker.join().unwrap().unwrap();
        sync.join().unwrap().unwrap();
        for a in asyncs {
            rt.block_on(a).unwrap().unwrap();
        }
        let log = w.call_blocking(|log| log.clone()).unwrap();
        assert_eq!(log.len(), 11);
        assert_eq!(log.iter().filter(|&&s| s == "sync").count(), 1);
    });
}

#[test]
fn a_pool_refuses_calls_from_its_own_threads() {
    within_a_minute(|| {
        let pool = WorkerPool::builder("self-calling")
            .workers(2)
            .spawn(|| Io::Ok(5u32))
            .unwrap();
        let inner = pool.clone();
        let err = pool
            .call_blocking(move |_| inner.call_blocking(|n| *n))
            .unwrap()
            .unwrap_err();
        assert!(err.is_would_deadlock(), "{err}");
        assert_eq!(pool.call_blocking(|n| *n).unwrap(), 5);
        // Another worker's thread is fine: it is not this pool's.
        let other = counter("other");
        let pool2 = pool.clone();
        assert_eq!(
            other
                .call_blocking(move |_| pool2.call_blocking(|n| *n))
                .unwrap()
                .unwrap(),
            5
        );
    });
}
