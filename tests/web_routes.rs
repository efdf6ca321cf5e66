//! examples/web: the migrated service (axum, legacy routes through the bridge) answers
//! every route as the legacy one (tiny_http) does, under concurrency, and turns a
//! legacy panic into a 500, a legacy handler that runs too long into a 503 from tower's
//! timeout (its token cancelled), and a full lane into a 503 from load shedding.
#![cfg(feature = "tower")]

#[allow(dead_code)] // the load driver is the example's
#[path = "../examples/web/client.rs"]
mod client;
#[path = "../examples/web/legacy.rs"]
mod legacy;
#[allow(dead_code)]
#[path = "../examples/web/migrated.rs"]
mod migrated;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use client::{send, HttpClient, Reply};
use legacy::Legacy;
use migrated::Limits;

/// A hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

const LIMITS: Limits = Limits {
    max_concurrency: 4,
    max_queue: 64,
    timeout: Duration::from_secs(60),
};

/// Both servers, each over its own fresh state.
async fn both(limits: Limits, native: &[&str]) -> (u16, u16, Arc<Legacy>, async_bridge::Offloader) {
    let legacy_port = legacy::serve(Legacy::open(), 4, limits.timeout);
    let state = Legacy::open();
    let (router, lane) = migrated::router_with(Arc::clone(&state), limits, native);
    (legacy_port, migrated::serve(router).await, state, lane)
}

async fn get(http: &HttpClient, port: u16, path: &str) -> Reply {
    tokio::time::timeout(GUARD, send(http, port, "GET", path, ""))
        .await
        .expect("hung")
}

/// Every route, in an order where the writes matter.
const SCRIPT: &[(&str, &str, &str)] = &[
    ("GET", "/health", ""),
    ("GET", "/orders/1", ""),
    ("GET", "/orders/2", ""),
    ("GET", "/orders/99", ""),
    ("GET", "/orders/x", ""),
    ("GET", "/orders", ""),
    ("POST", "/orders", "10"),
    ("POST", "/orders", "ten"),
    ("GET", "/orders/3", ""),
    ("GET", "/digest/20", ""),
    ("GET", "/digest/99999", ""),
    ("GET", "/nowhere", ""),
    ("DELETE", "/health", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrated_service_answers_every_route_as_the_legacy_one() {
    let http = client::client();
    for native in [migrated::NATIVE, &["/health", "/digest/{n}"][..]] {
        let (legacy_port, migrated_port, _, _) = both(LIMITS, native).await;
        for &(method, path, body) in SCRIPT {
            let old = send(&http, legacy_port, method, path, body).await;
            let new = send(&http, migrated_port, method, path, body).await;
            assert_eq!(new, old, "{method} {path} (native routes {native:?})");
            assert_eq!(old.content_type.as_deref(), Some(legacy::CONTENT_TYPE));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_agree_under_concurrency() {
    let http = client::client();
    let (legacy_port, migrated_port, _, lane) = both(LIMITS, migrated::NATIVE).await;
    let paths = [
        "/health",
        "/orders/1",
        "/orders/2",
        "/orders/404",
        "/digest/30",
    ];
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let http = http.clone();
            let path = paths[i % paths.len()];
            tokio::spawn(async move {
                let (old, new) = tokio::join!(
                    get(&http, legacy_port, path),
                    get(&http, migrated_port, path)
                );
                assert_eq!(new, old, "GET {path}");
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(lane.stats().rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_panic_is_a_500_and_the_server_keeps_serving() {
    let http = client::client();
    let (legacy_port, migrated_port, _, lane) = both(LIMITS, migrated::NATIVE).await;
    for port in [legacy_port, migrated_port] {
        let reply = get(&http, port, "/panic").await;
        assert_eq!((reply.status, reply.body.as_str()), (500, "internal error"));
        assert_eq!(get(&http, port, "/orders/1").await.status, 200);
        assert_eq!(get(&http, port, "/health").await.status, 200);
    }
    assert_eq!(lane.stats().panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_handler_that_runs_too_long_is_a_503_and_its_token_is_cancelled() {
    let http = client::client();
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let (legacy_port, migrated_port, state, lane) = both(limits, migrated::NATIVE).await;
    let old = get(&http, legacy_port, "/slow").await;
    let new = get(&http, migrated_port, "/slow").await;
    assert_eq!((new.status, new.body.as_str()), (503, "timed out"));
    assert_eq!(new, old);
    // The legacy handler behind the bridge saw its token cancelled and returned.
    tokio::time::timeout(GUARD, state.slow.cancelled.notified())
        .await
        .expect("the handler's token was never cancelled");
    assert_eq!(state.slow.cancelled_count.load(Ordering::SeqCst), 1);
    assert_eq!(get(&http, migrated_port, "/orders/1").await.status, 200);
    assert_eq!(lane.stats().cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lane_sheds_load_with_a_503_before_calling_the_handler() {
    let http = client::client();
    let limits = Limits {
        max_concurrency: 1,
        max_queue: 0,
        ..LIMITS
    };
    let (_, migrated_port, state, lane) = both(limits, migrated::NATIVE).await;
    let slow = {
        let http = http.clone();
        tokio::spawn(async move { get(&http, migrated_port, "/slow").await })
    };
    tokio::time::timeout(GUARD, state.slow.started.notified())
        .await
        .expect("/slow never started");
    // The lane's one place is taken: shed above the lane, not rejected by it.
    let shed = get(&http, migrated_port, "/orders/1").await;
    assert_eq!((shed.status, shed.body.as_str()), (503, "overloaded"));
    // Native routes do not go through the lane.
    assert_eq!(get(&http, migrated_port, "/health").await.status, 200);
    state.slow.release.store(true, Ordering::SeqCst);
    let released = slow.await.unwrap();
    assert_eq!((released.status, released.body.as_str()), (200, "released"));
    assert_eq!(get(&http, migrated_port, "/orders/1").await.status, 200);
    assert_eq!(lane.stats().rejected, 0);
}
