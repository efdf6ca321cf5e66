//! Adversarial review of context::carry: a carried value does not leak past a panicking
//! closure to the next call on the same thread; an unset key is unset inside.

use std::time::Duration;

use async_bridge::{Offloader, Worker};

tokio::task_local! {
    static TENANT: u32;
}

#[test]
fn a_carried_value_does_not_outlive_a_panicking_closure() {
    async_bridge::context::carry(&TENANT);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lane = Offloader::builder("ctx")
            .max_concurrency(1)
            .build()
            .unwrap();
        let w = Worker::builder("ctx-w")
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        let r = TENANT
            .scope(7, async {
                let a = lane
                    .run(|| -> u32 { panic!("tenant {}", TENANT.get()) })
                    .await;
                let b = w
                    .call(|_| -> u32 { panic!("tenant {}", TENANT.get()) })
                    .await;
                let mut lease = w.lease().await.unwrap();
                let c = lease.call(|_| TENANT.get()).await;
                drop(lease);
                (a.is_err(), b.is_err(), c.ok())
            })
            .await;
        assert_eq!(
            r,
            (true, true, Some(7)),
            "the value is carried into lane, worker and lease"
        );
        // Same threads, no value on the caller now: inside it is unset.
        let seen_lane = tokio::time::timeout(
            Duration::from_secs(30),
            lane.run(|| TENANT.try_with(|t| *t).ok()),
        )
        .await
        .unwrap()
        .unwrap();
        let seen_worker = tokio::time::timeout(
            Duration::from_secs(30),
            w.call(|_| TENANT.try_with(|t| *t).ok()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((seen_lane, seen_worker), (None, None));
        // Nested facades: a carried value through block_on inside the closure.
        let nested = TENANT
            .scope(9, async {
                lane.run(|| {
                    let outer = TENANT.try_with(|t| *t).ok();
                    let inner =
                        async_bridge::block_on(async { TENANT.try_with(|t| *t).ok() }).unwrap();
                    (outer, inner)
                })
                .await
                .unwrap()
            })
            .await;
        eprintln!("nested facade sees {nested:?}");
        assert_eq!(nested.0, Some(9));
    });
}
