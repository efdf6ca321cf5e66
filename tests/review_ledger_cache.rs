//! Adversarial review of the ledger's per-thread cache (3a10dd4: `ledger::record` keeps
//! the tally it last counted in, `reset` retires it by a generation; `twin_call` keeps
//! the twin site it last noted) and of a worker's thread counting its own calls. The
//! ledger is process-global and these reset it: one test function, in order.

mod support;

use std::cell::RefCell;
use std::panic::Location;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use async_bridge::{bridge, ledger, ComputePool, Crossing, Offloader, Worker, WorkerPool};

type Io<T> = std::io::Result<T>;

/// A facade crossing at the caller's site, which it returns.
#[track_caller]
fn cross() -> &'static Location<'static> {
    let here = Location::caller();
    async_bridge::block_on(async {}).unwrap();
    here
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

fn at(kind: &str, site: &Location<'_>) -> Option<Crossing> {
    async_bridge::ledger()
        .crossings()
        .iter()
        .find(|c| {
            // By line: `(here(), call)` names the line, the crossing the call's column.
            c.kind() == kind && c.site().file() == site.file() && c.site().line() == site.line()
        })
        .cloned()
}

fn count(kind: &str, site: &Location<'_>) -> u64 {
    at(kind, site).map_or(0, |c| c.count())
}

#[bridge(async = AsyncStore)]
pub trait Store {
    fn get(&self, key: u32) -> u64;
    fn put(&mut self, key: u32);
}

struct Legacy(u64);

impl Store for Legacy {
    fn get(&self, key: u32) -> u64 {
        self.0 + u64::from(key)
    }
    fn put(&mut self, key: u32) {
        self.0 = u64::from(key);
    }
}

/// Records a facade crossing from its drop, registered on its thread before the ledger's
/// cache was first used there: it is dropped after the cache (thread-locals are dropped
/// in the reverse order of their first use), so it counts through the shared map.
struct LateCrossing(Option<mpsc::Sender<&'static Location<'static>>>);

impl Drop for LateCrossing {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(cross());
        }
    }
}

thread_local! {
    static LATE: RefCell<LateCrossing> = const { RefCell::new(LateCrossing(None)) };
}

#[test]
fn the_ledgers_thread_caches_count_exactly_across_resets_toggles_and_thread_exits() {
    const THREADS: usize = 4;
    const EACH: u64 = 200;
    let a = cross_at_a_site();
    ledger::enable();
    ledger::reset();

    // 1. Phases: every thread counts at one site, the main thread resets, then every
    // thread counts again there (its cached tally retired) and at three more sites in
    // turn (the cache thrashing): every count after the reset is exact.
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let (sites_tx, sites_rx) = mpsc::channel();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (barrier, sites_tx) = (barrier.clone(), sites_tx.clone());
            std::thread::spawn(move || {
                for _round in 0..3 {
                    for _ in 0..EACH {
                        cross_at_a();
                    }
                    barrier.wait(); // counted before the reset
                    barrier.wait(); // reset
                    let mut sites = Vec::new();
                    for _ in 0..EACH {
                        sites = vec![
                            cross_at_a(),
                            cross(),
                            cross(),
                            cross(), // four sites in turn
                        ];
                    }
                    sites_tx.send(sites).unwrap();
                    barrier.wait(); // counted
                    barrier.wait(); // checked
                }
            })
        })
        .collect();
    for round in 0..3 {
        barrier.wait();
        // After round 0, also the last round's crossings there since its reset.
        let since = if round == 0 { 1 } else { 2 };
        assert_eq!(count("facade", a), since * THREADS as u64 * EACH);
        ledger::reset();
        assert_eq!(count("facade", a), 0);
        barrier.wait();
        let sites: Vec<Vec<_>> = (0..THREADS).map(|_| sites_rx.recv().unwrap()).collect();
        barrier.wait();
        assert!(sites.windows(2).all(|w| w[0] == w[1]), "one set of sites");
        for site in &sites[0] {
            assert_eq!(
                count("facade", site),
                THREADS as u64 * EACH,
                "round {round}, {site}: {}",
                async_bridge::ledger()
            );
        }
        barrier.wait();
    }
    threads.into_iter().for_each(|t| t.join().unwrap());

    // 2. Resets from another thread while threads count: once the resets are over, what
    // the threads count next adds up exactly (no thread keeps counting in a retired
    // tally).
    let barrier = Arc::new(Barrier::new(THREADS + 2));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..EACH * 5 {
                    cross_at_a();
                }
                barrier.wait(); // the resets are over
                barrier.wait(); // the count before was read
                for _ in 0..EACH {
                    cross_at_a();
                }
                barrier.wait();
            })
        })
        .collect();
    let resetter = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            for _ in 0..500 {
                ledger::reset();
                std::thread::yield_now();
            }
            barrier.wait();
            barrier.wait();
            barrier.wait();
        })
    };
    barrier.wait();
    barrier.wait();
    let before = count("facade", a);
    assert!(before <= THREADS as u64 * EACH * 5);
    barrier.wait();
    barrier.wait();
    assert_eq!(count("facade", a), before + THREADS as u64 * EACH);
    threads.into_iter().for_each(|t| t.join().unwrap());
    resetter.join().unwrap();

    // 3. Off and on again: nothing counted while off, the cached tally counts again
    // once on (no reset in between), and a reset while off retires it.
    ledger::reset();
    let site = a;
    (0..5).for_each(|_| {
        cross_at_a();
    });
    ledger::disable();
    (0..5).for_each(|_| {
        cross_at_a();
    });
    assert_eq!(count("facade", site), 5);
    ledger::enable();
    (0..5).for_each(|_| {
        cross_at_a();
    });
    assert_eq!(count("facade", site), 10);
    ledger::disable();
    ledger::reset();
    ledger::enable();
    (0..5).for_each(|_| {
        cross_at_a();
    });
    assert_eq!(count("facade", site), 5);

    // 4. A crossing from a thread that is ending, after its cache is gone: counted once.
    ledger::disable();
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ending = std::thread::spawn(move || {
        // Everything a facade touches, first used while the ledger is off (so not the
        // cache), then the late crossing, then the cache.
        cross();
        LATE.with(|late| late.borrow_mut().0 = Some(tx));
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        cross_at_a(); // the cache's first use on this thread
    });
    ready_rx.recv().unwrap();
    ledger::reset();
    ledger::enable();
    go_tx.send(()).unwrap();
    ending.join().unwrap();
    let late = rx.recv().unwrap();
    assert_eq!(count("facade", a), 1);
    assert_eq!(count("facade", late), 1, "{}", async_bridge::ledger());

    // 5. Twins: named after a reset (their notes are kept, and so is a thread's note of
    // its last twin site), two methods at two sites in turn each named, and counted
    // exactly from two threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let worker = Worker::builder("cache-twin")
        .spawn(|| Io::Ok(Legacy(1)))
        .unwrap();
    let pool = WorkerPool::builder("cache-twin-pool")
        .workers(2)
        .spawn(|| Io::Ok(Legacy(1)))
        .unwrap();
    for round in 0..3 {
        ledger::reset();
        let sites = rt.block_on(async {
            let mut sites = Vec::new();
            for _ in 0..10 {
                let (get, f) = (here(), worker.get(1));
                f.await.unwrap();
                let (put, f) = (here(), pool.put(2));
                f.await.unwrap();
                sites = vec![(get, "AsyncStore::get"), (put, "AsyncStore::put")];
            }
            sites
        });
        for (site, method) in sites {
            let crossing = at("twin", site).unwrap_or_else(|| {
                panic!(
                    "round {round}: no twin at {site}: {}",
                    async_bridge::ledger()
                )
            });
            assert_eq!(crossing.count(), 10, "round {round}, {method}");
            assert_eq!(crossing.twin(), Some(method), "round {round}");
        }
    }

    // 6. A worker's thread counts its calls: once per call that ran (a panic included),
    // never one withdrawn or refused; a call that waited in line for room counts what it
    // waited there; a pool's and a lease's calls likewise.
    ledger::reset();
    let w: Worker<u64> = Worker::builder("cache-counts")
        .mailbox(1)
        .spawn(|| Io::Ok(0))
        .unwrap();
    let (ran_site, queued_site, line_site, withdrawn_site, panic_site, lease_site, leased_site) =
        rt.block_on(async {
            let mut sites = None;
            for _ in 0..20 {
                let (started_tx, started_rx) = tokio::sync::oneshot::channel();
                let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
                let gated = move |_: &mut u64| {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                };
                let (ran_site, first) = (here(), w.call(gated));
                let first = tokio::spawn(first);
                started_rx.await.unwrap();
                // With the first running: one queued, one in line, one withdrawn in line.
                let (queued_site, mut queued) = (here(), Box::pin(w.call(|_| ())));
                let (line_site, mut line) = (here(), Box::pin(w.call(|_| ())));
                let (withdrawn_site, mut withdrawn) = (here(), Box::pin(w.call(|_| ())));
                assert!(support::poll_once(queued.as_mut()).is_pending());
                assert!(support::poll_once(line.as_mut()).is_pending());
                assert!(support::poll_once(withdrawn.as_mut()).is_pending());
                drop(withdrawn);
                // The calls in line wait at least this long (a lower bound).
                let start = Instant::now();
                while start.elapsed() <= Duration::from_micros(40) {
                    std::hint::spin_loop();
                }
                release_tx.send(()).unwrap();
                first.await.unwrap().unwrap();
                queued.await.unwrap();
                line.await.unwrap();
                let (panic_site, f) = (here(), w.call(|_| -> () { panic!("boom") }));
                assert!(f.await.unwrap_err().is_panic());
                let (lease_site, lease) = (here(), w.lease());
                let mut lease = lease.await.unwrap();
                let (leased_site, f) = (here(), lease.call(|_| ()));
                f.await.unwrap();
                lease.finish().await.unwrap();
                sites = Some((
                    ran_site,
                    queued_site,
                    line_site,
                    withdrawn_site,
                    panic_site,
                    lease_site,
                    leased_site,
                ));
            }
            let shut = w.shutdown(Duration::from_secs(20)).await;
            assert!(shut.is_complete());
            sites.unwrap()
        });
    let refused_site = rt.block_on(async {
        let (site, f) = (here(), w.call(|_| ()));
        assert!(f.await.unwrap_err().is_shutdown());
        site
    });
    for (kind, site) in [
        ("worker", ran_site),
        ("worker", queued_site),
        ("worker", line_site),
        ("worker", panic_site),
        ("lease", lease_site),
        ("worker", leased_site),
    ] {
        assert_eq!(
            count(kind, site),
            20,
            "{kind} at {site}: {}",
            async_bridge::ledger()
        );
    }
    assert_eq!(
        count("worker", withdrawn_site),
        0,
        "{}",
        async_bridge::ledger()
    );
    assert_eq!(
        count("worker", refused_site),
        0,
        "{}",
        async_bridge::ledger()
    );
    let (_, line_wait_max) = at("worker", line_site).unwrap().queue_wait();
    assert!(
        line_wait_max >= Duration::from_micros(40),
        "{line_wait_max:?}"
    );
    let stats = w.stats();
    // Stats: the same calls (three each round, a panic, one under a lease and the lease).
    assert_eq!((stats.completed, stats.panicked), (20 * 5, 20), "{stats:?}");
    // The call dropped in line each round: never submitted, cancelled.
    assert_eq!((stats.withdrawn, stats.cancelled), (0, 20), "{stats:?}");

    // 7. A lane's drainers hand the ledger their own timing of each call (82a14fc):
    // counted once per call that ran (a panic included), never one withdrawn from the
    // queue or rejected; a queued call's wait and a call's run are what they were at
    // least, on an `Offloader` and on a `ComputePool` alike.
    ledger::reset();
    let lane = Offloader::builder("lane-counts")
        .max_concurrency(1)
        .max_queue(1)
        .build()
        .unwrap();
    let pool = ComputePool::builder("pool-counts")
        .threads(1)
        .max_queue(1)
        .build()
        .unwrap();
    let lane_sites = rt.block_on(lane_rounds(&lane));
    let pool_sites = rt.block_on(lane_rounds(&pool));
    for (kind, sites) in [("offload", lane_sites), ("compute", pool_sites)] {
        let [ran, queued, withdrawn, rejected, panicked] = sites;
        for site in [ran, queued, panicked] {
            assert_eq!(count(kind, site), 20, "{kind} at {site}: {}", ledger());
        }
        for site in [withdrawn, rejected] {
            assert_eq!(count(kind, site), 0, "{kind} at {site}: {}", ledger());
        }
        let (_, wait_max) = at(kind, queued).unwrap().queue_wait();
        assert!(
            wait_max >= Duration::from_micros(40),
            "{kind}: {wait_max:?}"
        );
        let (_, run_max) = at(kind, ran).unwrap().run_time();
        assert!(run_max >= Duration::from_micros(40), "{kind}: {run_max:?}");
    }
    ledger::disable();
}

/// `run` of an `Offloader` or a `ComputePool`, at its caller's site.
trait Lane {
    #[track_caller]
    fn go(&self, f: Box<dyn FnOnce() + Send>) -> async_bridge::OffloadCall<()>;
}

impl Lane for Offloader {
    #[track_caller]
    fn go(&self, f: Box<dyn FnOnce() + Send>) -> async_bridge::OffloadCall<()> {
        self.run(f)
    }
}

impl Lane for ComputePool {
    #[track_caller]
    fn go(&self, f: Box<dyn FnOnce() + Send>) -> async_bridge::OffloadCall<()> {
        self.run(f)
    }
}

/// Twenty rounds on a lane of one slot and one queue place: a call held running for at
/// least 40 µs, one withdrawn from the queue, one queued behind the first (the queue is
/// then full again), one rejected, and a panic. Returns their sites.
async fn lane_rounds(lane: &impl Lane) -> [&'static Location<'static>; 5] {
    let mut sites = None;
    for _ in 0..20 {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let held = Box::new(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            support::past_the_window();
        });
        let (ran, first) = (here(), lane.go(held));
        let first = tokio::spawn(first);
        started_rx.await.unwrap();
        let (withdrawn, mut gone) = (here(), Box::pin(lane.go(Box::new(|| ()))));
        assert!(support::poll_once(gone.as_mut()).is_pending());
        drop(gone); // withdrawn from the queue: its place is free again
        let (queued, mut waiting) = (here(), Box::pin(lane.go(Box::new(|| ()))));
        assert!(support::poll_once(waiting.as_mut()).is_pending());
        let (rejected, f) = (here(), lane.go(Box::new(|| ())));
        assert!(f.await.unwrap_err().is_rejected());
        // The queued call waits at least this long (a lower bound).
        support::past_the_window();
        release_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        waiting.await.unwrap();
        let (panicked, f) = (here(), lane.go(Box::new(|| panic!("boom"))));
        assert!(f.await.unwrap_err().is_panic());
        sites = Some([ran, queued, withdrawn, rejected, panicked]);
    }
    sites.unwrap()
}

fn cross_at_a() -> &'static Location<'static> {
    cross()
}

fn cross_at_a_site() -> &'static Location<'static> {
    // `cross_at_a` crosses at one site, inside it: find it by crossing while the ledger
    // is off.
    let on = ledger::is_enabled();
    ledger::disable();
    let site = cross_at_a();
    if on {
        ledger::enable();
    }
    site
}
