//! With the `tracing` feature: a twin call's job span names the caller's line, not the
//! generated code, over a `Worker`, through `dyn`, and over the `Offloaded` lane carrier.
#![cfg(feature = "tracing")]

use std::sync::Arc;

use async_bridge::{bridge, Offloaded, Offloader, Worker};
#[path = "support/recorder.rs"]
mod recorder;
use recorder::Recorder;

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
