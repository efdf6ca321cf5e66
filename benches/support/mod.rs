//! Helpers shared by the benches (each bench uses some of them).
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::future::join_all;
use tokio::runtime::Runtime;

/// The runtime every bench measures on: multi-thread, two workers, as on a 2-core box.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Times `iters` sequential awaits of `call()` inside the runtime.
pub fn awaited<F, Fut>(rt: &Runtime, iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(call().await);
        }
        start.elapsed()
    })
}

/// Times `iters` calls of `call` from the current (plain) thread.
pub fn plain<R>(iters: u64, mut call: impl FnMut() -> R) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(call());
    }
    start.elapsed()
}

/// Times `iters` bursts of `n` calls issued at once and joined.
pub fn burst<F, Fut>(rt: &Runtime, iters: u64, n: usize, call: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(join_all((0..n).map(&call)).await);
        }
        start.elapsed()
    })
}

/// Short runs (CI compiles the benches; people run them): `samples` samples over
/// `seconds` after half a second of warm-up.
pub fn config(samples: usize, seconds: u64) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(seconds))
        .configure_from_args()
}

/// True when the bench binary was started to measure (`cargo bench` passes `--bench`),
/// not to be listed or smoke-tested (`cargo test --benches`, `--list`).
pub fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// True unless `ABBA_ONLY` is set: then a bench skips its criterion rows and runs only
/// its interleaved pass (the figures that count), which takes a fraction of the time.
pub fn criterion_rows() -> bool {
    std::env::var_os("ABBA_ONLY").is_none()
}

/// True when the interleaved pair `name` is to be measured: always, unless
/// `ABBA_FILTER` is set and `name` does not contain it.
pub fn selected(name: &str) -> bool {
    std::env::var("ABBA_FILTER").map_or(true, |f| name.contains(&f))
}

/// Rounds of every interleaved pass, for batches of one op (one burst, one pass over a
/// file); a batch of more ops is split into [`SPLIT`] times as many rounds of a tenth of
/// it (see [`interleaved_many`]).
pub const ROUNDS: usize = 31;

/// How many rounds a batch of many ops is split into: 310 rounds of 200 awaited hops
/// instead of 31 rounds of 2,000, the same ops in all. An A/A control (the same
/// `spawn_blocking` call on both sides, `aa_spawn_blocking` in `benches/offload.rs`)
/// read 0.91-1.08x over 8 runs with 31 rounds and 0.95-1.03x with 310: a hop's cost
/// here moves with where the scheduler puts its two threads, and shorter batches, taken
/// in turn, see the same placements on both sides more often.
pub const SPLIT: u64 = 10;

/// Which way a ratio must go to meet its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The library's time over the baseline's: at most this.
    AtMost(f64),
    /// The library's speed (throughput) over the baseline's: at least this.
    AtLeast(f64),
}

/// The interleaved A/B pass: one untimed warm-up batch of each side, then `rounds`
/// rounds each timing a batch of `baseline` and a batch of `lib` in alternating order
/// (ABBA: A B, B A, A B, ...; a batch of many ops is split, see [`interleaved_many`]).
/// Returns the median time per op of each side, in
/// seconds (a batch closure gets the number of ops and returns the time they took).
pub fn interleaved(
    rounds: usize,
    batch: u64,
    mut baseline: impl FnMut(u64) -> Duration,
    mut lib: impl FnMut(u64) -> Duration,
) -> (f64, f64) {
    let mut both = interleaved_many(rounds, batch, &mut [&mut baseline, &mut lib]);
    let lib = both.pop().unwrap();
    (both.pop().unwrap(), lib)
}

/// [`interleaved`] over any number of sides: each round runs every side once, in
/// forward order on even rounds and reverse order on odd ones. A `batch` of at least
/// [`SPLIT`] ops is run as `SPLIT` times as many rounds of `batch / SPLIT` ops (the
/// warm-up batch stays whole). Returns the median time per op of each side in seconds,
/// in the order given.
pub fn interleaved_many(
    rounds: usize,
    batch: u64,
    sides: &mut [&mut dyn FnMut(u64) -> Duration],
) -> Vec<f64> {
    // `ABBA_SIDE=<i>` runs side `i` alone (0 is the baseline), for a profiler.
    let only: Option<usize> = std::env::var("ABBA_SIDE").ok().and_then(|s| s.parse().ok());
    let mut sides: Vec<&mut dyn FnMut(u64) -> Duration> = sides
        .iter_mut()
        .enumerate()
        .map(|(i, side)| -> &mut dyn FnMut(u64) -> Duration {
            if only.is_some_and(|o| o != i) {
                Box::leak(Box::new(|_| Duration::from_nanos(1)))
            } else {
                &mut **side
            }
        })
        .collect();
    for side in sides.iter_mut() {
        std::hint::black_box(side(batch)); // warm-up: threads started, caches and pages hot
    }
    let (rounds, batch) = if batch >= SPLIT {
        (rounds * SPLIT as usize, batch / SPLIT)
    } else {
        (rounds, batch)
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); sides.len()];
    let n = sides.len();
    for round in 0..rounds {
        for k in 0..n {
            let i = if round % 2 == 0 { k } else { n - 1 - k };
            times[i].push(sides[i](batch));
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort();
            // Seconds per op as an f64: a `Duration` per op would round 29.4 ns and
            // 29.6 ns alike.
            v[v.len() / 2].as_secs_f64() / batch as f64
        })
        .collect()
}

/// Prints one interleaved result: the two medians, then the line a script greps,
/// `ratio <name> <x.xx>× target ≤ <t>× ok|MISS` (or `≥` for a speed ratio). For
/// [`Target::AtMost`] the ratio is the library's time over the baseline's; for
/// [`Target::AtLeast`] it is the library's speed over the baseline's (the baseline's
/// time over the library's). Returns the ratio.
pub fn report(name: &str, baseline: f64, lib: f64, target: Target) -> f64 {
    let (b, l) = (baseline, lib);
    let (ratio, sign, t, met) = match target {
        Target::AtMost(t) => (l / b, '≤', t, l / b <= t),
        Target::AtLeast(t) => (b / l, '≥', t, b / l >= t),
    };
    print_medians(name, baseline, lib);
    println!(
        "ratio {name} {ratio:.2}× target {sign} {t}× {}",
        if met { "ok" } else { "MISS" }
    );
    ratio
}

/// Prints the medians per op of a pair's two sides.
fn print_medians(name: &str, baseline: f64, lib: f64) {
    let show = |d: f64| match d {
        s if s < 1e-6 => format!("{:.2} ns", s * 1e9),
        s if s < 1e-3 => format!("{:.2} µs", s * 1e6),
        s => format!("{:.2} ms", s * 1e3),
    };
    println!(
        "  {name}: baseline {}/op, library {}/op",
        show(baseline),
        show(lib)
    );
}

/// An interleaved pair without a target (a floor or a control), if [`selected`]:
/// measured as [`pair`] measures, printed as `ratio <name> <x.xx>× target none`, the
/// library's time over the baseline's.
pub fn untargeted(
    name: &str,
    batch: u64,
    baseline: impl FnMut(u64) -> Duration,
    lib: impl FnMut(u64) -> Duration,
) {
    if selected(name) {
        let (b, l) = interleaved(ROUNDS, batch, baseline, lib);
        print_medians(name, b, l);
        println!("ratio {name} {:.2}× target none", l / b);
    }
}

/// One interleaved pair with a target, if [`selected`]: measured with [`interleaved`]
/// ([`ROUNDS`] rounds of `batch` ops a side, split as [`interleaved_many`] says) and
/// printed with [`report`].
pub fn pair(
    name: &str,
    batch: u64,
    target: Target,
    baseline: impl FnMut(u64) -> Duration,
    lib: impl FnMut(u64) -> Duration,
) {
    if selected(name) {
        let (b, l) = interleaved(ROUNDS, batch, baseline, lib);
        report(name, b, l, target);
    }
}

/// An A/A control, if [`selected`]: the same `side` measured as both sides of an
/// interleaved pair, printed as `ratio <name> <x.xx>× target none`. It reads how far
/// apart two identical sides come out on this machine: the noise under the pairs
/// beside it.
pub fn control(name: &str, batch: u64, side: impl FnMut(u64) -> Duration + Copy) {
    if selected(name) {
        let (a, b) = interleaved(ROUNDS, batch, side, side);
        println!("  {name}: the same side twice");
        println!("ratio {name} {:.2}× target none", b / a);
    }
}

/// Prints the header of a bench's interleaved pass.
pub fn interleaved_header() {
    println!(
        "\ninterleaved A/B (ABBA, medians per op; {} rounds of a tenth of a batch, {ROUNDS} of a burst or a pass):",
        ROUNDS * SPLIT as usize
    );
}

/// The time thread `tid` of this process has spent on a CPU so far, in nanoseconds,
/// from `/proc/self/task/<tid>/schedstat` (its first field); `None` where that file
/// does not exist.
pub fn task_cpu_time(tid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    Some(Duration::from_nanos(
        stat.split_whitespace().next()?.parse().ok()?,
    ))
}

/// The ids and names of this process's threads.
pub fn threads() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
        Some((tid, name.trim().to_owned()))
    })
    .collect()
}
