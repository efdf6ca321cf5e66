//! The migration ledger (issue 14): every crossing counted by kind and call site, facades
//! entered from async code told apart, a stable text form and a baseline check; twin
//! calls as their own kind.
#![allow(async_fn_in_trait)]

use std::panic::Location;

use std::sync::Arc;

use async_bridge::{
    block_on, bridge, compute, ledger, unblock, Blocking, ComputePool, Offloaded, Offloader,
    Worker, WorkerPool,
};

/// The crossing of `kind` at `site`, in a fresh snapshot.
fn at(kind: &str, site: &Location<'_>) -> Option<async_bridge::Crossing> {
    async_bridge::ledger()
        .crossings()
        .iter()
        .find(|c| {
            c.kind() == kind && c.site().file() == site.file() && c.site().line() == site.line()
        })
        .cloned()
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_counted_at_its_call_site() {
    ledger::enable();
    let lane = Offloader::builder("lane").build().unwrap();
    let pool = ComputePool::builder("pool").threads(1).build().unwrap();
    let worker = Worker::builder("worker")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let mut sites = Vec::new();
    for _ in 0..3 {
        let (s, f) = (here(), unblock(|| ()));
        f.await;
        sites.push(("unblock", s));
        let (s, f) = (here(), lane.run(|| ()));
        f.await.unwrap();
        sites.push(("offload", s));
        let (s, f) = (here(), compute(|| ()));
        f.await;
        sites.push(("compute", s));
        let (s, f) = (here(), pool.run(|| ()));
        f.await.unwrap();
        sites.push(("compute", s));
        let (s, f) = (here(), worker.call(|_| ()));
        f.await.unwrap();
        sites.push(("worker", s));
    }
    for (kind, site) in &sites[..5] {
        let crossing = at(kind, site).unwrap_or_else(|| panic!("no {kind} at {site}"));
        assert_eq!(crossing.count(), 3, "{kind} at {site}");
        assert!(crossing.run_time().1 <= crossing.run_time().0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facade_entered_from_async_code_is_told_apart() {
    ledger::enable();
    // From a task on a runtime worker: blocks that executor thread.
    let from_task = tokio::spawn(async {
        let site = here();
        block_on(async {}).unwrap();
        site
    })
    .await
    .unwrap();
    // From a blocking-pool thread: what facades are for.
    let from_blocking = unblock(|| {
        let site = here();
        block_on(async {}).unwrap();
        site
    })
    .await;
    // From a plain thread.
    let from_plain = std::thread::spawn(|| {
        let site = here();
        block_on(async {}).unwrap();
        site
    })
    .join()
    .unwrap();
    let line_after = |site: &'static Location<'static>| {
        // The facade call is on the line after `here()`.
        async_bridge::ledger()
            .crossings()
            .iter()
            .find(|c| {
                c.kind() == "facade"
                    && c.site().file() == site.file()
                    && c.site().line() == site.line() + 1
            })
            .cloned()
            .unwrap_or_else(|| panic!("no facade after {site}"))
    };
    assert_eq!(line_after(from_task).from_async(), 1);
    assert_eq!(line_after(from_blocking).from_async(), 0);
    assert_eq!(line_after(from_plain).from_async(), 0);
}

#[test]
fn a_run_is_checked_against_a_committed_baseline() {
    ledger::enable();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..2 {
        rt.block_on(unblock(|| ()));
    }
    let run = async_bridge::ledger();
    let text = run.to_text();
    // The stable form: kind, file:line, count; sorted.
    let line = text
        .lines()
        .find(|l| l.starts_with("unblock\ttests/ledger.rs:"))
        .expect("the unblock line");
    assert_eq!(line.split('\t').count(), 3);
    let mut sorted: Vec<&str> = text.lines().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, text.lines().collect::<Vec<_>>());
    // Against its own text: no change. Against a baseline that had fewer crossings there:
    // it grew. Against one without that site: it is new. Shrinking is progress.
    assert!(run.check_against(&text).is_ok());
    let (key, count) = line.rsplit_once('\t').unwrap();
    let count: u64 = count.parse().unwrap();
    let fewer = text.replace(line, &format!("{key}\t{}", count - 1));
    let err = run.check_against(&fewer).unwrap_err();
    assert!(
        err.contains("grown crossing: unblock at tests/ledger.rs:"),
        "{err}"
    );
    let without = text.replace(&format!("{line}\n"), "");
    let err = run.check_against(&without).unwrap_err();
    assert!(
        err.contains("new crossing: unblock at tests/ledger.rs:"),
        "{err}"
    );
    let more = text.replace(line, &format!("{key}\t{}", count + 100));
    assert!(run.check_against(&format!("# baseline\n\n{more}")).is_ok());
    // The table names every site; the from-async column is a dash for kinds other than
    // facades (they are entered from async code by design).
    let table = run.to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with("unblock ") && l.contains("tests/ledger.rs:"))
        .unwrap_or_else(|| panic!("no unblock row in\n{table}"));
    assert_eq!(row.split_whitespace().nth(2), Some("-"), "{table}");
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

#[bridge(blocking = BlockingRates)]
pub trait Rates {
    async fn rate(&self, key: u32) -> u64;
}

struct Native;

impl Rates for Native {
    async fn rate(&self, key: u32) -> u64 {
        u64::from(key) * 2
    }
}

/// Issue 14: the ledger counts twin calls as their own kind, `twin`, at the caller's
/// site, with the twin's method, over every carrier and through `dyn`; the hand-written
/// carrier calls beside them keep their kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_calls_are_counted_as_twins_at_their_callers_sites() {
    ledger::enable();
    let worker = Worker::builder("twin-worker")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap();
    let pool = WorkerPool::builder("twin-pool")
        .workers(2)
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap();
    let lane = Offloaded::new(Legacy(1), Offloader::builder("twin-lane").build().unwrap());
    let shared: Arc<dyn AsyncStore> = Arc::new(worker.clone());
    let mut sites = Vec::new();
    for _ in 0..3 {
        let (s, f) = (here(), worker.get(1));
        f.await.unwrap();
        sites.push(("twin", Some("AsyncStore::get"), s));
        let (s, f) = (here(), pool.put(2));
        f.await.unwrap();
        sites.push(("twin", Some("AsyncStore::put"), s));
        let (s, f) = (here(), lane.get(3));
        f.await.unwrap();
        sites.push(("twin", Some("AsyncStore::get"), s));
        let (s, f) = (here(), shared.get(4));
        f.await.unwrap();
        sites.push(("twin", Some("AsyncStore::get"), s));
        // The hand-written call the twin expands to: still a worker crossing.
        let (s, f) = (here(), worker.call(|o| o.get(5)));
        f.await.unwrap();
        sites.push(("worker", None, s));
    }
    // The blocking twin, from a blocking thread (where facades are for).
    let blocking = unblock(|| {
        let rates = Blocking::new(Native);
        let mut sites = Vec::new();
        for _ in 0..3 {
            let (s, r) = (here(), rates.rate(21));
            assert_eq!(r.unwrap(), 42);
            sites.push(("twin", Some("BlockingRates::rate"), s));
            let (s, r) = (here(), rates.call(async |n| n.rate(1).await));
            assert_eq!(r.unwrap(), 2);
            sites.push(("facade", None, s));
        }
        sites
    })
    .await;
    sites.extend(blocking);
    for &(kind, twin, site) in sites.iter().take(5).chain(&sites[15..17]) {
        let crossing = at(kind, site)
            .unwrap_or_else(|| panic!("no {kind} at {site}: {}", async_bridge::ledger()));
        assert_eq!(crossing.count(), 3, "{kind} at {site}");
        assert_eq!(crossing.twin(), twin, "{kind} at {site}");
        // No second crossing of another kind at the same site.
        let at_site = async_bridge::ledger()
            .crossings()
            .iter()
            .filter(|c| c.site().file() == site.file() && c.site().line() == site.line())
            .count();
        assert_eq!(at_site, 1, "{site}");
    }
    let table = async_bridge::ledger().to_string();
    assert!(table.contains("(AsyncStore::put)"), "{table}");
    assert!(async_bridge::ledger()
        .to_text()
        .lines()
        .any(|l| l.starts_with("twin\ttests/ledger.rs:")));
}

/// Twin kind: two twin calls on one line (two columns, so two crossings that share the
/// `twin<TAB>file:line` key of the stable text). `to_text` printed a line for each, and
/// `check_against` kept only the last one per key: a run failed against its own text
/// when the line sorted last had the smaller count (and passed when a crossing grew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_two_calls_on_one_line_check_against_their_own_text() {
    ledger::enable();
    let worker = Worker::builder("twin-one-line")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap();
    let mut site = None;
    for i in 0..10 {
        #[rustfmt::skip]
        let (s, a, b) = (here(), worker.get(1).await.unwrap(), if i > 0 { worker.get(2).await.unwrap() } else { 3 });
        assert_eq!((a, b), (2, 3));
        site = Some(s);
    }
    let site = site.unwrap();
    let run = async_bridge::ledger();
    let key = format!("twin\t{}:{}\t", site.file(), site.line());
    let text = run.to_text();
    let ours: Vec<&str> = text.lines().filter(|l| l.starts_with(&key)).collect();
    assert!(
        run.check_against(&text).is_ok(),
        "{:?}",
        run.check_against(&text)
    );
    // One line per key, with the sum of the crossings it names.
    assert_eq!(ours, [format!("{key}19")], "{text}");
    // One more call at either column is growth.
    let fewer = text.replace(&format!("{key}19"), &format!("{key}18"));
    assert!(run.check_against(&fewer).is_err());
}

/// A `#[track_caller]` helper that calls a twin and a hand-written lane call: both get
/// its caller's `Location`, one site.
#[track_caller]
fn twin_and_lane<'a>(
    worker: &'a Worker<Legacy>,
    lane: &'a Offloader,
) -> (
    impl std::future::Future<Output = Result<u64, async_bridge::CallError>> + 'a,
    impl std::future::Future<Output = Result<u64, async_bridge::OffloadError>> + 'a,
) {
    (worker.get(1), lane.run(|| 7))
}

/// Twin kind: a twin call and a hand-written call of another carrier at one site (a
/// `#[track_caller]` helper, or a macro's body, gives both the same `Location`). The
/// snapshot relabelled every crossing at a twin's site as `twin`, so the lane's call
/// vanished into the twin's count; only the twin's own carrier kind is relabelled now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_and_a_hand_written_call_at_one_site_keep_their_kinds() {
    ledger::enable();
    let worker = Worker::builder("twin-and-lane")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap();
    let lane = Offloader::builder("twin-and-lane").build().unwrap();
    let mut site = None;
    for _ in 0..3 {
        let (s, (twin, hand)) = (here(), twin_and_lane(&worker, &lane));
        assert_eq!((twin.await.unwrap(), hand.await.unwrap()), (2, 7));
        site = Some(s);
    }
    let site = site.unwrap();
    let twin = at("twin", site).unwrap_or_else(|| panic!("{}", async_bridge::ledger()));
    assert_eq!((twin.count(), twin.twin()), (3, Some("AsyncStore::get")));
    let hand = at("offload", site).unwrap_or_else(|| panic!("{}", async_bridge::ledger()));
    assert_eq!((hand.count(), hand.twin()), (3, None));
}

/// Twin kind: the blocking twin through `dyn`, from several plain threads at once: every
/// call is a `twin` at the caller's site (through the vtable too), none a `facade`.
#[test]
fn twin_blocking_through_dyn_from_many_threads() {
    ledger::enable();
    let rates: Arc<dyn BlockingRates + Send + Sync> = Arc::new(Blocking::new(Native));
    let site = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let rates = Arc::clone(&rates);
                scope.spawn(move || {
                    let mut site = None;
                    for _ in 0..5 {
                        let (s, r) = (here(), rates.rate(21));
                        assert_eq!(r.unwrap(), 42);
                        site = Some(s);
                    }
                    site.unwrap()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).last().unwrap()
    });
    let twin = at("twin", site).unwrap_or_else(|| panic!("{}", async_bridge::ledger()));
    assert_eq!(
        (twin.count(), twin.twin()),
        (20, Some("BlockingRates::rate"))
    );
    assert!(at("facade", site).is_none());
    assert_eq!(twin.from_async(), 0);
}

/// Twin kind in the table: `from async` is a number for a blocking twin (a facade
/// underneath, which can block an executor) and a dash for an async twin (entered from
/// async code by design), as `Crossing::from_async` documents; it printed 0 for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_table_from_async_column_is_a_dash_for_async_twins() {
    ledger::enable();
    let worker = Worker::builder("twin-table")
        .spawn(|| Ok::<_, std::io::Error>(Legacy(1)))
        .unwrap();
    let (async_site, f) = (here(), worker.get(1));
    f.await.unwrap();
    let blocking_site = unblock(|| {
        let (s, r) = (here(), Blocking::new(Native).rate(1));
        r.unwrap();
        s
    })
    .await;
    let table = async_bridge::ledger().to_string();
    let row = |site: &Location<'_>| {
        let at = format!("{}:{}:", site.file(), site.line());
        table
            .lines()
            .find(|l| l.starts_with("twin ") && l.contains(&at))
            .unwrap_or_else(|| panic!("no twin row at {at} in\n{table}"))
            .to_owned()
    };
    assert_eq!(
        row(async_site).split_whitespace().nth(2),
        Some("-"),
        "{table}"
    );
    assert_eq!(
        row(blocking_site).split_whitespace().nth(2),
        Some("0"),
        "{table}"
    );
}
