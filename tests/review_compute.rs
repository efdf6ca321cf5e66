//! Adversarial review of ComputePool as a lane: nested calls from its own jobs.

use std::sync::mpsc;
use std::time::Duration;

use async_bridge::ComputePool;

const GUARD: Duration = Duration::from_secs(30);

fn guarded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(GUARD) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("HANG: {what} did not finish within {GUARD:?}"),
    }
}

/// Promise (ComputePool docs): work that calls back into the same pool and waits for it,
/// with every thread waiting, is refused with is_would_deadlock — even with queue room.
#[test]
fn a_pool_job_waiting_on_its_own_full_pool_is_refused() {
    guarded("nested compute call", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = ComputePool::builder("nested-1")
                .threads(1)
                .max_queue(8)
                .build()
                .unwrap();
            let inner = pool.clone();
            let r = pool
                .run(move || async_bridge::block_on(inner.run(|| 7)).map(|r| r.map_err(|e| e.to_string())))
                .await
                .unwrap();
            match r {
                Ok(Err(e)) => assert!(e.contains("deadlock") || e.contains("wait for itself"), "{e}"),
                Err(e) => panic!("the facade itself refused: {e}"),
                Ok(Ok(v)) => panic!("nested call on a one-thread pool returned {v}?"),
            }
        })
    });
}

/// With a thread free, a nested call runs (not refused).
#[test]
fn a_pool_job_calling_its_pool_with_a_thread_free_runs() {
    guarded("nested compute call with room", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = ComputePool::builder("nested-2").threads(2).build().unwrap();
            let inner = pool.clone();
            let r = pool
                .run(move || async_bridge::block_on(inner.run(|| 7)).map(|r| r.map_err(|e| e.to_string())))
                .await
                .unwrap();
            assert_eq!(r.map_err(|e| e.to_string()), Ok(Ok(7)));
        })
    });
}
