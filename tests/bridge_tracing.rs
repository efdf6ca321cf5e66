//! With the `tracing` feature: a twin call's job span names the caller's line, not the
//! generated code, over a `Worker`, through `dyn`, and over the `Offloaded` lane carrier.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};

use async_bridge::{bridge, Offloaded, Offloader, Worker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[bridge(async = AsyncPing)]
pub trait Ping {
    fn ping(&self, n: u32) -> u32;
}

struct Pong;

impl Ping for Pong {
    fn ping(&self, n: u32) -> u32 {
        n + 1
    }
}

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
fn a_twin_calls_span_names_the_callers_line() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lines = rt.block_on(async {
        let worker = Worker::builder("ping-worker")
            .spawn(|| Ok::<_, std::io::Error>(Pong))
            .unwrap();
        let direct = line!() + 1;
        assert_eq!(worker.ping(1).await.unwrap(), 2);
        let shared: Arc<dyn AsyncPing> = Arc::new(worker);
        let via_dyn = line!() + 1;
        assert_eq!(shared.ping(2).await.unwrap(), 3);
        let lane = Offloaded::new(Pong, Offloader::builder("ping-lane").build().unwrap());
        let on_lane = line!() + 1;
        assert_eq!(lane.ping(3).await.unwrap(), 4);
        [direct, via_dyn, on_lane]
    });
    let seen = recorder.0.lock().unwrap().clone();
    for (name, line) in ["ping-worker", "ping-worker", "ping-lane"]
        .into_iter()
        .zip(lines)
    {
        let needle = format!("name={name} site={}:{line}:", file!());
        assert!(
            seen.iter().any(|s| s.contains(&needle)),
            "{needle} in {seen:#?}"
        );
    }
}
