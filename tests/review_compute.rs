//! Adversarial review of ComputePool as a lane: nested calls from its own jobs.

mod support;

use support::guarded;

use async_bridge::ComputePool;

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
                .run(move || {
                    async_bridge::block_on(inner.run(|| 7)).map(|r| r.map_err(|e| e.to_string()))
                })
                .await
                .unwrap();
            match r {
                Ok(Err(e)) => assert!(
                    e.contains("deadlock") || e.contains("wait for itself"),
                    "{e}"
                ),
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
                .run(move || {
                    async_bridge::block_on(inner.run(|| 7)).map(|r| r.map_err(|e| e.to_string()))
                })
                .await
                .unwrap();
            assert_eq!(r.map_err(|e| e.to_string()), Ok(Ok(7)));
        })
    });
}

/// Promise (Stats docs): "A call is counted once by how it ended for its closure
/// (completed, panicked, or never run: withdrawn, rejected, abandoned by a shutdown)".
/// A nested call refused with would_deadlock is submitted: it must end in some counter.
#[test]
fn a_would_deadlock_refusal_is_counted_by_how_it_ended() {
    guarded("nested compute stats", || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = ComputePool::builder("nested-stats")
                .threads(1)
                .build()
                .unwrap();
            let inner = pool.clone();
            let r = pool
                .run(move || async_bridge::block_on(inner.run(|| 7)).map(|r| r.is_err()))
                .await
                .unwrap();
            assert_eq!(r.ok(), Some(true));
            let s = pool.stats();
            let ended = s.completed + s.panicked + s.withdrawn + s.rejected;
            assert_eq!(
                s.submitted, ended,
                "submitted calls not accounted for by any outcome: {s:?}"
            );
        })
    });
}
