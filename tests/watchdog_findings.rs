//! The watchdog: slow polls by call site, aggregation, executor lag, reports, drop.
//!
//! The only sleeps here are the deliberate blocking under test (`thread::sleep` inside a
//! poll); assertions on their durations are "at least", never "at most".

use std::time::Duration;

use async_bridge::watchdog::{self, Kind, WatchExt, Watchdog};

const BLOCK: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_blocking_poll_is_reported_at_its_file_and_line() {
    let dog = Watchdog::builder()
        .slow_poll(Duration::from_millis(20))
        .start()
        .unwrap();
    let line = line!() + 1;
    async { std::thread::sleep(BLOCK) }.watched().await;

    let report = dog.report();
    let finding = report
        .findings()
        .iter()
        .find(|f| f.site().line() == line)
        .expect("the blocking poll was reported");
    assert!(finding.site().file().ends_with("watchdog_findings.rs"));
    assert_eq!(finding.kind(), Kind::SlowPoll);
    assert_eq!(finding.count(), 1);
    assert!(finding.worst() >= BLOCK);
    assert!(finding.total() >= BLOCK);
    let text = finding.to_string();
    assert!(
        text.contains(&format!("watchdog_findings.rs:{line}:")),
        "{text}"
    );
    assert!(text.contains("blocked 1 poll,"), "{text}");
}

#[tokio::test]
async fn a_well_behaved_future_is_not_reported() {
    let dog = Watchdog::builder()
        .slow_poll(Duration::from_millis(20))
        .start()
        .unwrap();
    let line = line!() + 1;
    let polite = watchdog::watch(async {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        "done"
    });
    assert_eq!(polite.await, "done");
    assert!(dog
        .report()
        .findings()
        .iter()
        .all(|f| f.site().line() != line));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_from_many_tasks_aggregate_per_call_site() {
    let dog = Watchdog::builder()
        .slow_poll(Duration::from_millis(5))
        .start()
        .unwrap();
    let mut line = 0;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        line = line!() + 1;
        let watched = async { std::thread::sleep(Duration::from_millis(10)) }.watched();
        tasks.push(tokio::spawn(watched));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = dog.report();
    let at_line: Vec<_> = report
        .findings()
        .iter()
        .filter(|f| f.site().line() == line)
        .collect();
    assert_eq!(at_line.len(), 1, "one finding per call site");
    assert_eq!(at_line[0].count(), 6);
    assert!(at_line[0].total() >= Duration::from_millis(60));
    assert!(report.at("watchdog_findings.rs").count() >= 1);
}

#[test]
fn the_lag_probe_sees_a_worker_stalled_by_unwrapped_blocking_code() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dog = Watchdog::builder()
            .lag_probe(Duration::from_millis(1))
            .start()
            .unwrap();
        while dog.report().lag().samples() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Nobody wrapped this: it blocks the only worker, and the probe's timer with it.
        std::thread::sleep(Duration::from_millis(120));
        let before = dog.report().lag().samples();
        while dog.report().lag().samples() == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lag = dog.report().lag().clone();
        assert!(lag.worst() >= Duration::from_millis(100), "{lag}");
        assert!(lag.at_least(Duration::from_millis(100)) >= 1, "{lag}");
        assert!(lag.to_string().starts_with("executor lag over"), "{lag}");
    });
}

#[test]
fn dropping_the_watchdog_stops_its_probe_inside_and_outside_a_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dog = rt.block_on(async {
        let before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let dog = Watchdog::builder().start().unwrap();
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            before + 1
        );
        drop(dog); // inside the runtime
        while tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            != before
        {
            tokio::task::yield_now().await;
        }
        Watchdog::builder().start().unwrap()
    });
    drop(dog); // outside the runtime
    drop(rt);
}

#[tokio::test]
async fn assert_clean_fails_a_test_that_blocked() {
    let dog = Watchdog::builder()
        .slow_poll(Duration::from_millis(20))
        .start()
        .unwrap();
    async { std::thread::sleep(BLOCK) }.watched().await;
    let report = dog.report();
    let payload = std::panic::catch_unwind(|| report.assert_clean()).unwrap_err();
    let msg = payload.downcast_ref::<String>().unwrap();
    assert!(msg.contains("the executor was blocked"), "{msg}");
    assert!(msg.contains("watchdog_findings.rs"), "{msg}");
}

#[test]
fn bad_configuration_is_an_error() {
    let err = Watchdog::builder()
        .slow_poll(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("slow_poll must not be zero"));
    let err = Watchdog::builder()
        .lag_probe(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("lag_probe must not be zero"));
    let err = Watchdog::builder().start().unwrap_err();
    assert!(err.to_string().contains("needs a tokio runtime"), "{err}");
}

#[test]
fn a_lag_probe_on_a_runtime_without_timers_is_a_config_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = Watchdog::builder()
        .handle(rt.handle().clone())
        .start()
        .unwrap_err();
    assert!(
        err.to_string().contains("needs a runtime with timers"),
        "{err}"
    );
    // Without the probe the watchdog needs no timers.
    let _inside = rt.enter();
    assert!(Watchdog::builder().without_lag_probe().start().is_ok());
}

#[test]
fn watchdog_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Watchdog>();
    send_sync::<watchdog::Report>();
    send_sync::<watchdog::Finding>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_facade_in_async_code_is_a_finding_even_where_it_runs() {
    let dog = Watchdog::builder().start().unwrap();
    // On a worker thread (a spawned task).
    let line = line!() + 1;
    let value = tokio::spawn(async { async_bridge::block_on(async { 7 }).unwrap() }).await;
    assert_eq!(value.unwrap(), 7);
    // From a blocking-pool thread the same call is what facades are for: no finding.
    let pool_line = line!() + 1;
    let from_pool = async_bridge::unblock(|| async_bridge::block_on(async { 8 }).unwrap()).await;
    assert_eq!(from_pool, 8);

    let report = dog.report();
    let finding = report
        .findings()
        .iter()
        .find(|f| f.site().line() == line)
        .expect("the facade call from a worker was reported");
    assert_eq!(finding.kind(), Kind::BlockingFacade);
    assert!(finding
        .to_string()
        .contains("blocked 1 blocking facade call"));
    assert!(report
        .findings()
        .iter()
        .all(|f| f.site().line() != pool_line));
}

#[tokio::test]
async fn a_refused_facade_on_a_current_thread_runtime_is_a_finding_too() {
    let dog = Watchdog::builder().start().unwrap();
    let line = line!() + 1;
    let err = async_bridge::block_on(async { 1 }).unwrap_err();
    assert!(err.is_would_deadlock());
    assert!(dog
        .report()
        .findings()
        .iter()
        .any(|f| f.site().line() == line));
}
