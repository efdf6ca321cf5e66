//! Poll overhead of a watched future beside the same future unwatched: a future that
//! returns `Pending` 1,000 times, polled to completion with a no-op waker. Measured with
//! no watchdog running (one atomic load per poll) and with one running (two clock reads
//! per poll). Target: at most 100 ns extra per poll.
//!
//! Run with: `cargo bench --bench watchdog`

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_bridge::watchdog::{WatchExt, Watchdog};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const POLLS: u64 = 1_000;

/// Returns `Pending` `n` times, then `Ready`.
struct Yields(u64);

impl Future for Yields {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 = std::hint::black_box(self.0 - 1);
        Poll::Pending
    }
}

fn drive<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    while fut.as_mut().poll(&mut cx).is_pending() {}
}

fn poll_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("poll_overhead");
    g.throughput(Throughput::Elements(POLLS + 1));
    g.bench_function("unwatched (baseline)", |b| {
        b.iter(|| drive(Yields(std::hint::black_box(POLLS))))
    });
    g.bench_function("watched, no watchdog running", |b| {
        b.iter(|| drive(Yields(std::hint::black_box(POLLS)).watched()))
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dog = {
        let _entered = rt.enter();
        Watchdog::builder()
            .slow_poll(Duration::from_millis(10))
            .start()
            .unwrap()
    };
    g.bench_function("watched, watchdog running", |b| {
        b.iter(|| drive(Yields(std::hint::black_box(POLLS)).watched()))
    });
    drop(dog);
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = poll_overhead
}
criterion_main!(benches);
