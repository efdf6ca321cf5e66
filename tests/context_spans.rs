//! With the `tracing` feature, every job and facade entry is a child of the span its
//! caller was in, and the caller's span is the job span's parent while the closure runs,
//! so the legacy code's own events land in the request's trace (issue 14).
#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_bridge::{block_on, compute, unblock, ComputePool, Offloader, Unblock, Worker};
use tokio::io::AsyncReadExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records each span's name, explicit or contextual parent, and which span each event
/// was emitted in.
#[derive(Clone, Default)]
struct Tree(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    names: Vec<String>,
    metadata: Vec<&'static Metadata<'static>>,
    parents: HashMap<u64, Option<u64>>,
    /// The spans entered, per thread.
    stacks: HashMap<std::thread::ThreadId, Vec<u64>>,
    /// (event message, the span it was in)
    events: Vec<(String, Option<u64>)>,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Tree {
    fn current(state: &State) -> Option<u64> {
        state
            .stacks
            .get(&std::thread::current().id())
            .and_then(|s| s.last().copied())
    }

    /// The names of `id`'s ancestors, nearest first, `id` included.
    fn chain(&self, id: Option<u64>) -> Vec<String> {
        let state = self.0.lock().unwrap();
        let mut out = Vec::new();
        let mut at = id;
        while let Some(i) = at {
            out.push(state.names[i as usize - 1].clone());
            at = state.parents.get(&i).copied().flatten();
        }
        out
    }

    fn event_chain(&self, message: &str) -> Vec<String> {
        let span = {
            let state = self.0.lock().unwrap();
            state
                .events
                .iter()
                .find(|(m, _)| m == message)
                .unwrap_or_else(|| panic!("no event {message:?}"))
                .1
        };
        self.chain(span)
    }
}

impl Subscriber for Tree {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut state = self.0.lock().unwrap();
        let parent = if span.is_root() {
            None
        } else if let Some(parent) = span.parent() {
            Some(parent.into_u64())
        } else {
            Tree::current(&state)
        };
        state.names.push(span.metadata().name().to_owned());
        state.metadata.push(span.metadata());
        let id = state.names.len() as u64;
        state.parents.insert(id, parent);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut state = self.0.lock().unwrap();
        let span = Tree::current(&state);
        state.events.push((message.0, span));
    }
    fn enter(&self, id: &Id) {
        let mut state = self.0.lock().unwrap();
        state
            .stacks
            .entry(std::thread::current().id())
            .or_default()
            .push(id.into_u64());
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let state = self.0.lock().unwrap();
        match Tree::current(&state) {
            Some(id) => {
                tracing_core::span::Current::new(Id::from_u64(id), state.metadata[id as usize - 1])
            }
            None => tracing_core::span::Current::none(),
        }
    }
    fn exit(&self, _: &Id) {
        let mut state = self.0.lock().unwrap();
        if let Some(stack) = state.stacks.get_mut(&std::thread::current().id()) {
            stack.pop();
        }
    }
}

/// One test: a global subscriber can be installed once per process.
#[test]
fn every_crossing_is_a_child_of_its_callers_span() {
    let tree = Tree::default();
    tracing::subscriber::set_global_default(tree.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lane = Offloader::builder("lane").build().unwrap();
    let pool = ComputePool::builder("pool").threads(1).build().unwrap();
    let worker = Worker::builder("worker")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    rt.block_on(async {
        let request = tracing::info_span!("request");
        let _entered = request.enter();
        unblock(|| tracing::info!("in unblock")).await;
        lane.run(|| tracing::info!("in lane")).await.unwrap();
        compute(|| tracing::info!("in compute")).await;
        pool.run(|| tracing::info!("in pool")).await.unwrap();
        worker.call(|_| tracing::info!("in worker")).await.unwrap();
        let mut file = Unblock::new(std::io::Cursor::new(vec![1u8; 4]));
        let mut buf = [0; 4];
        file.read_exact(&mut buf).await.unwrap();
    });
    for (message, kind) in [
        ("in unblock", "unblock"),
        ("in lane", "lane"),
        ("in compute", "compute"),
        ("in pool", "pool"),
        ("in worker", "worker"),
    ] {
        let chain = tree.event_chain(message);
        assert_eq!(chain, ["async_bridge::job", "request"], "{kind}: {chain:?}");
    }
    // A facade from a sync caller: the future runs inside the facade's span, a child of
    // the caller's.
    let sync_caller = tracing::info_span!("legacy handler");
    sync_caller.in_scope(|| {
        block_on(async { tracing::info!("in facade") }).unwrap();
    });
    assert_eq!(
        tree.event_chain("in facade"),
        ["async_bridge::facade", "legacy handler"]
    );
    // Work submitted with no span of the caller's is a root span, not a child of
    // whatever happened to be current on the pool thread.
    rt.block_on(unblock(|| tracing::info!("no caller span")));
    assert_eq!(tree.event_chain("no caller span"), ["async_bridge::job"]);
}
