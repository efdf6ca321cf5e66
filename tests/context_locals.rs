//! Task-locals cross the bridge only when declared, captured at submission, readable
//! from the sync code inside; shared cells carry changes back; the facade direction needs
//! nothing (issue 14).

use std::sync::{Arc, Mutex};

use async_bridge::{
    block_on, compute, context, unblock, ComputePool, Offloader, Worker, WorkerPool,
};

tokio::task_local! {
    static REQUEST_ID: u64;
    static TENANT: &'static str;
    static NOT_DECLARED: u32;
    static TRAIL: Arc<Mutex<Vec<String>>>;
}

fn declare() {
    context::carry(&REQUEST_ID);
    context::carry(&TENANT);
    context::carry(&TRAIL);
    context::carry(&REQUEST_ID); // twice: no effect
}

/// What legacy sync code sees.
fn seen() -> (u64, &'static str) {
    (REQUEST_ID.get(), TENANT.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_task_locals_reach_every_offload_kind() {
    declare();
    let lane = Offloader::builder("lane").build().unwrap();
    let pool = ComputePool::builder("pool").threads(1).build().unwrap();
    let worker = Worker::builder("worker")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let workers = WorkerPool::builder("workers")
        .workers(2)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let all = REQUEST_ID
        .scope(
            7,
            TENANT.scope("acme", async {
                vec![
                    unblock(seen).await,
                    lane.run(seen).await.unwrap(),
                    compute(seen).await,
                    pool.run(seen).await.unwrap(),
                    worker.call(|_| seen()).await.unwrap(),
                    workers.call(|_| seen()).await.unwrap(),
                    {
                        let mut lease = worker.lease().await.unwrap();
                        let v = lease.call(|_| seen()).await.unwrap();
                        lease.finish().await.unwrap();
                        v
                    },
                ]
            }),
        )
        .await;
    assert_eq!(all, vec![(7, "acme"); 7]);
}

#[tokio::test]
async fn values_are_captured_at_submission_per_caller() {
    declare();
    let lane = Offloader::builder("lane")
        .max_concurrency(1)
        .build()
        .unwrap();
    let calls = (0..20u64).map(|i| {
        let lane = lane.clone();
        REQUEST_ID.scope(
            i,
            TENANT.scope(
                "t",
                async move { lane.run(|| REQUEST_ID.get()).await.unwrap() },
            ),
        )
    });
    let ids = futures::future::join_all(calls).await;
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_undeclared_key_does_not_cross() {
    declare();
    let inside = NOT_DECLARED
        .scope(1, async {
            unblock(|| NOT_DECLARED.try_with(|v| *v).is_ok()).await
        })
        .await;
    assert!(!inside, "an undeclared task-local crossed");
}

#[tokio::test]
async fn a_caller_without_a_value_submits_without_it() {
    declare();
    let inside = unblock(|| REQUEST_ID.try_with(|v| *v).is_err()).await;
    assert!(inside);
}

#[tokio::test]
async fn a_shared_cell_carries_changes_back_to_the_caller() {
    declare();
    let trail = Arc::new(Mutex::new(Vec::new()));
    TRAIL
        .scope(Arc::clone(&trail), async {
            unblock(|| TRAIL.with(|t| t.lock().unwrap().push("legacy".into()))).await;
            TRAIL.with(|t| t.lock().unwrap().push("async".into()));
        })
        .await;
    assert_eq!(*trail.lock().unwrap(), ["legacy", "async"]);
}

#[test]
fn a_value_set_by_a_sync_caller_is_visible_to_the_async_code_block_on_runs() {
    // Nothing to declare: the future is polled on the caller's thread.
    let id = REQUEST_ID.sync_scope(99, || block_on(async { REQUEST_ID.get() }).unwrap());
    assert_eq!(id, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facade_nested_in_offloaded_work_sees_the_carried_value() {
    declare();
    let id = REQUEST_ID
        .scope(
            5,
            TENANT.scope("t", async {
                unblock(|| block_on(async { REQUEST_ID.get() }).unwrap()).await
            }),
        )
        .await;
    assert_eq!(id, 5);
}

#[test]
#[cfg(feature = "test-util")]
fn carried_context_holds_under_virtual_time() {
    declare();
    async_bridge::testing::run(async {
        let start = tokio::time::Instant::now();
        let id = REQUEST_ID
            .scope(
                11,
                TENANT.scope("t", async {
                    unblock(|| {
                        async_bridge::clock::sleep(std::time::Duration::from_secs(3600));
                        REQUEST_ID.get()
                    })
                    .await
                }),
            )
            .await;
        assert_eq!(id, 11);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(3600));
    });
}
