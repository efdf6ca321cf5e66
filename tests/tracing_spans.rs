//! With the `tracing` feature: offloaded jobs run in spans naming their kind, lane and
//! call site, and watchdog findings are warnings.
#![cfg(feature = "tracing")]

use std::time::Duration;

use async_bridge::watchdog::{WatchExt, Watchdog};
use async_bridge::{Offloader, Worker};
#[path = "support/recorder.rs"]
mod recorder;
use recorder::Recorder;

#[test]
fn offloads_carry_spans_and_findings_are_warnings() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lane = Offloader::builder("orders-lane").build().unwrap();
        lane.run(|| ()).await.unwrap();
        let worker = Worker::builder("orders-worker")
            .spawn(|| Ok::<_, std::io::Error>(()))
            .unwrap();
        worker.call(|_| ()).await.unwrap();
        let dog = Watchdog::builder()
            .slow_poll(Duration::from_millis(5))
            .start()
            .unwrap();
        async { std::thread::sleep(Duration::from_millis(10)) }
            .watched()
            .await;
        drop(dog);
    });
    let seen = recorder.0.lock().unwrap().clone();
    let has = |needle: &str| seen.iter().any(|s| s.contains(needle));
    assert!(
        has("span async_bridge::job kind=offload name=orders-lane site=tests/tracing_spans.rs"),
        "{seen:#?}"
    );
    assert!(has("kind=worker name=orders-worker"), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|s| s.starts_with("event WARN") && s.contains("tracing_spans.rs")),
        "{seen:#?}"
    );
}
