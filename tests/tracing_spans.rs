//! With the `tracing` feature: offloaded jobs run in spans naming their kind, lane and
//! call site, and watchdog findings are warnings.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_bridge::watchdog::{WatchExt, Watchdog};
use async_bridge::{Offloader, Worker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records span fields and event messages as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut fields);
        let mut all = self.0.lock().unwrap();
        all.push(fields.0);
        Id::from_u64(all.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(format!("event {}", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

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
