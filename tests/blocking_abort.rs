//! The facade's refusals do not rely on unwinding (issue 11, item 9): under
//! `panic = "abort"` a refused `block_on` must come back as an error, not abort.
//!
//! No second build: each test runs this very test binary again as a child process, with
//! one test selected (`child`) and a panic hook that ends the process at once, which is
//! what `panic = "abort"` does with any panic — including one that `catch_unwind` would have
//! caught, or that tokio raises inside and that the facade would have turned into an
//! error. The child exits normally only if nothing panicked anywhere. Cost in CI: two
//! extra process starts of this binary (milliseconds), no extra compilation.
//!
//! Three cases are known to need unwinding, and are tested as such: a `LocalSet` polled
//! inside a multi-thread runtime's `Runtime::block_on` and a second thread inside a
//! current_thread runtime's `Runtime::block_on` (tokio refuses `block_in_place` there by
//! a flag that no public API reads, see `async_bridge`'s `block_on` docs, so the facade
//! can only catch tokio's panic), and the first timed call on a runtime built
//! without timers (tokio has no public query for that, tokio-rs/tokio#8361: the crate
//! asks once per runtime by creating a timer under `catch_unwind`). Under
//! `panic = "abort"` both end the process.

mod support;

use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use async_bridge::{block_on, unblock, Blocking, Offloader, Portal};
use tokio::runtime::{Builder, Runtime};

/// The scenario the child runs, by environment variable.
const CHILD: &str = "ASYNC_BRIDGE_ABORT_CHILD";

/// The child's exit code when a panic ended it (128 + SIGABRT, as a shell reports an
/// abort).
const ABORTED: i32 = 134;

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// Runs `scenario` in a child process where any panic aborts.
fn run_child(scenario: &str) -> (ExitStatus, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[test]
fn every_refusal_the_facade_decides_holds_when_panics_abort() {
    let (status, text) = run_child("refusals");
    assert!(status.success(), "the child aborted or failed:\n{text}");
    assert!(text.contains("all refusals returned errors"), "{text}");
}

#[test]
fn a_second_thread_inside_a_current_thread_block_on_needs_unwinding() {
    // With unwinding it is refused (tests/blocking_callers.rs); with panics aborting,
    // tokio's refusal of `block_in_place` there ends the process, as the docs say.
    let (status, text) = run_child("second_thread_in_current_thread_block_on");
    assert_eq!(status.code(), Some(ABORTED), "expected an abort:\n{text}");
    assert!(
        text.contains("can call blocking only when running on the multi-threaded runtime"),
        "{text}"
    );
}

#[test]
fn a_timed_call_on_a_runtime_without_timers_needs_unwinding_once() {
    // With unwinding the call is refused with a clear error (nothing can time it); with
    // panics aborting, tokio's panic at the one probe of that runtime ends the process.
    let (status, text) = run_child("timeout_without_timers");
    assert_eq!(status.code(), Some(ABORTED), "expected an abort:\n{text}");
    assert!(text.contains("timers are disabled"), "{text}");
    let rt = Builder::new_current_thread().enable_io().build().unwrap();
    let lane = Offloader::builder("untimed")
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let err = rt.block_on(lane.run(|| 5)).unwrap_err();
    assert!(
        err.to_string()
            .contains("a timeout needs a tokio runtime with timers"),
        "{err}"
    );
}

#[test]
fn a_local_set_inside_a_multi_thread_block_on_is_the_one_refusal_that_needs_unwinding() {
    // With unwinding it is refused (tests/blocking_callers.rs); with panics aborting,
    // tokio's refusal of `block_in_place` ends the process, as the docs say.
    let (status, text) = run_child("local_set_on_multi_thread");
    assert_eq!(status.code(), Some(ABORTED), "expected an abort:\n{text}");
    assert!(
        text.contains("can call blocking only when running on the multi-threaded runtime"),
        "{text}"
    );
}

/// The body of the child process; a plain pass when run as a normal test.
#[test]
fn child() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic (ending the process, as under panic = \"abort\"): {info}");
        // Ends the process without unwinding, as an abort does, but leaves no core
        // dump behind on machines that keep them.
        std::process::exit(ABORTED);
    }));
    match scenario.as_str() {
        "refusals" => refusals(),
        "local_set_on_multi_thread" => {
            let rt = Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let set = tokio::task::LocalSet::new();
            let _ = set.block_on(&rt, async { block_on(async { 1 }) });
        }
        "second_thread_in_current_thread_block_on" => {
            let rt = Arc::new(current_thread());
            let _held = support::SchedulerHeld::new(&rt);
            let _ = rt.block_on(async { block_on(async { 3 }) });
        }
        "timeout_without_timers" => {
            let rt = Builder::new_current_thread().enable_io().build().unwrap();
            let lane = Offloader::builder("untimed")
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let _ = rt.block_on(lane.run(|| 5));
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn refusals() {
    let portal = Portal::builder().worker_threads(1).build().unwrap();

    // The thread of a current_thread runtime: the free function, a portal, a
    // `Blocking<T>`, a task spawned there, a LocalSet there.
    let rt = current_thread();
    rt.block_on(async {
        assert!(block_on(async { 1 }).unwrap_err().is_would_deadlock());
        assert!(portal
            .block_on(async { 1 })
            .unwrap_err()
            .is_would_deadlock());
        let value = Blocking::with_portal(1u32, &portal);
        assert!(value.call(async |n| *n).unwrap_err().is_would_deadlock());
        let spawned = tokio::spawn(async { block_on(async { 1 }).unwrap_err() });
        assert!(spawned.await.unwrap().is_would_deadlock());
        // Shutting a portal down from there does not wait, and does not panic.
        let other = Portal::builder().worker_threads(1).build().unwrap();
        other.shutdown(Duration::from_secs(1));
        assert!(other.block_on(async { 1 }).unwrap_err().is_shutdown());
        // Dropping a portal inside async code.
        drop(Portal::builder().worker_threads(1).build().unwrap());
        // The fix the refusal's message gives.
        assert_eq!(unblock(|| block_on(async { 2 }).unwrap()).await, 2);
    });
    let set = tokio::task::LocalSet::new();
    let refused = set.block_on(&rt, async {
        tokio::task::spawn_local(async { block_on(async { 1 }).unwrap_err() })
            .await
            .unwrap()
    });
    assert!(refused.is_would_deadlock());

    // A multi-thread runtime: its workers and its `block_on` run facades.
    let mt = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(mt.block_on(async { block_on(async { 4 }) }).unwrap(), 4);
    let task = mt.spawn(async { block_on(async { 5 }).unwrap() });
    assert_eq!(mt.block_on(task).unwrap(), 5);

    // A shut-down portal.
    portal.shutdown(Duration::from_secs(1));
    assert!(portal.block_on(async { 1 }).unwrap_err().is_shutdown());
    println!("all refusals returned errors");
}
