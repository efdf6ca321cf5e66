//! `Portal`: building, `from_handle`, panics as errors, shutdown, and drop anywhere
//! without a panic or a blocked executor.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use async_bridge::{Blocking, Portal};
use support::within_a_minute;
use tokio::runtime::{Builder, Runtime, RuntimeFlavor};

fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn portal(name: &str) -> Portal {
    Portal::builder()
        .worker_threads(1)
        .thread_name(name)
        .build()
        .unwrap()
}

#[test]
fn a_built_portal_runs_futures_on_its_own_named_runtime() {
    let (flavor, thread) = within_a_minute(|| {
        let portal = portal("billing-facade");
        portal
            .block_on(async {
                let flavor = tokio::runtime::Handle::current().runtime_flavor();
                let thread =
                    tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                        .await
                        .unwrap();
                (flavor, thread)
            })
            .unwrap()
    });
    assert_eq!(flavor, RuntimeFlavor::MultiThread);
    assert_eq!(thread.as_deref(), Some("billing-facade"));
}

#[test]
fn bad_configuration_is_an_error_not_a_panic() {
    let err = Portal::builder().worker_threads(0).build().unwrap_err();
    assert!(err
        .to_string()
        .contains("worker_threads must be at least 1"));
    let err = Portal::builder()
        .thread_name("x")
        .max_blocking_threads(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration for `x`: max_blocking_threads must be at least 1"
    );
}

#[test]
fn a_panic_is_an_error_with_its_payload_and_names_the_portal() {
    let err = within_a_minute(|| {
        portal("panicky")
            .block_on(async { std::panic::panic_any(17_u32) })
            .unwrap_err()
    });
    assert!(err.is_panic());
    assert_eq!(err.portal_name(), Some("panicky"));
    assert!(err.to_string().starts_with("facade `panicky` called at "));
    assert_eq!(*err.into_panic().downcast::<u32>().unwrap(), 17);
}

#[test]
fn from_handle_uses_the_applications_multi_thread_runtime() {
    let rt = multi_thread(1);
    let portal = Portal::from_handle(rt.handle().clone());
    let expected = rt.handle().id();
    let id = within_a_minute(move || {
        portal
            .block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tokio::runtime::Handle::current().id()
            })
            .unwrap()
    });
    assert_eq!(id, expected);
    // Shutting down a borrowed runtime's portal leaves the runtime running.
    let portal = Portal::from_handle(rt.handle().clone());
    portal.shutdown(Duration::from_secs(1));
    assert!(portal.block_on(async {}).unwrap_err().is_shutdown());
    assert_eq!(rt.block_on(async { 5 }), 5);
}

#[test]
fn from_handle_over_a_current_thread_runtime_works_while_it_is_driven_elsewhere() {
    let out = within_a_minute(|| {
        let rt = current_thread();
        let portal = Portal::from_handle(rt.handle().clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let driver = std::thread::spawn(move || {
            rt.block_on(async move {
                // From the driving thread itself, the portal refuses.
                let refused = Portal::from_handle(tokio::runtime::Handle::current())
                    .block_on(async {})
                    .unwrap_err()
                    .is_would_deadlock();
                ready_tx.send(refused).unwrap();
                done_rx.await.unwrap();
            })
        });
        let refused_on_driver = ready_rx.recv().unwrap();
        // Its timers work from another thread while the driver is in block_on.
        let slept = portal
            .block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "slept"
            })
            .unwrap();
        done_tx.send(()).unwrap();
        driver.join().unwrap();
        (refused_on_driver, slept)
    });
    assert_eq!(out, (true, "slept"));
}

#[test]
fn shutdown_stops_every_clone_and_is_bounded() {
    within_a_minute(|| {
        let portal = portal("stopping");
        let clone = portal.clone();
        // A task that never ends does not hold shutdown past its grace.
        portal
            .handle()
            .spawn_blocking(|| std::thread::park_timeout(Duration::from_secs(3600)));
        portal.shutdown(Duration::from_millis(10));
        let err = clone.block_on(async { 1 }).unwrap_err();
        assert!(err.is_shutdown());
        assert!(err.to_string().ends_with("the portal is shut down"));
        portal.shutdown(Duration::from_secs(1)); // twice is fine
    });
}

#[test]
fn shutdown_inside_async_code_never_panics() {
    within_a_minute(|| {
        // On the thread of a current_thread runtime: no wait, no panic.
        current_thread().block_on(async {
            let portal = portal("ct");
            portal.shutdown(Duration::from_secs(1));
            assert!(portal.block_on(async {}).unwrap_err().is_shutdown());
        });
        // On a multi-thread worker: waits inside block_in_place.
        multi_thread(1).block_on(async {
            tokio::spawn(async {
                let portal = portal("mt");
                portal.shutdown(Duration::from_secs(1));
            })
            .await
            .unwrap();
        });
        // From a task of the portal's own runtime.
        let portal = portal("own");
        let clone = portal.clone();
        let (tx, rx) = mpsc::channel();
        portal.handle().spawn(async move {
            clone.shutdown(Duration::from_millis(10));
            tx.send(clone.block_on(async {}).unwrap_err().is_shutdown())
                .unwrap();
        });
        assert!(rx.recv().unwrap());
    });
}

#[test]
fn the_global_portal_ignores_shutdown() {
    within_a_minute(|| {
        let global = Portal::global().unwrap();
        assert_eq!(global.name(), "async-bridge-portal");
        global.shutdown(Duration::ZERO);
        assert_eq!(async_bridge::block_on(async { 1 }).unwrap(), 1);
    });
}

#[test]
fn dropping_portals_inside_async_code_never_panics_or_blocks() {
    within_a_minute(|| {
        // The last handle dropped on a current_thread runtime's thread (#[tokio::test]).
        current_thread().block_on(async {
            let portal = portal("drop-ct");
            assert!(portal
                .block_on(async { 1 })
                .unwrap_err()
                .is_would_deadlock());
            drop(portal);
        });
        // Inside a multi-thread worker.
        multi_thread(1).block_on(async {
            tokio::spawn(async { drop(portal("drop-mt")) })
                .await
                .unwrap();
        });
        // The last clone dropped by a task of the portal's own runtime.
        let portal = portal("drop-own");
        let (tx, rx) = mpsc::channel();
        let clone = portal.clone();
        portal.handle().spawn(async move {
            drop(clone);
            tx.send(()).unwrap();
        });
        drop(portal);
        rx.recv().unwrap();
    });
}

#[test]
fn dropping_a_blocking_value_inside_async_code_never_panics() {
    within_a_minute(|| {
        let portal = portal("values");
        let stream = {
            let portal = portal.clone();
            std::thread::spawn(move || {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let stream = portal
                    .block_on(tokio::net::TcpStream::connect(addr))
                    .unwrap()
                    .unwrap();
                Blocking::with_portal(stream, &portal)
            })
            .join()
            .unwrap()
        };
        // Dropped, with the last handle of its portal, on a current_thread runtime.
        drop(portal);
        current_thread().block_on(async move { drop(stream) });
    });
}

#[test]
fn portal_is_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + Unpin>() {}
    check::<Portal>();
    let portal = portal("dbg");
    let text = format!("{portal:?}");
    assert!(
        text.contains("\"dbg\"") && text.contains("owns_runtime: true"),
        "{text}"
    );
}

#[test]
fn a_blocking_value_in_a_thread_local_drops_without_aborting() {
    struct Noisy;
    thread_local! {
        static KEPT: std::cell::RefCell<Option<async_bridge::Blocking<Noisy>>> =
            const { std::cell::RefCell::new(None) };
    }
    let portal = Portal::builder().worker_threads(1).build().unwrap();
    let thread = std::thread::spawn(move || {
        // Ours is registered first, tokio's context afterwards (by the call below):
        // thread-locals are destroyed in reverse order, so tokio's goes first.
        KEPT.with(|_| {});
        let kept = async_bridge::Blocking::with_portal(Noisy, &portal);
        kept.call(async |_| ()).unwrap();
        KEPT.with(|k| *k.borrow_mut() = Some(kept));
    });
    // A panic in a thread-local destructor would abort the whole test process.
    thread.join().unwrap();
}

/// A facade's answer is the output and one pointer: the error is boxed, because an inline
/// error made every successful call copy it through the stack (a third of a plain-thread
/// `block_on`). The rest of the error's API is unchanged by the box.
#[test]
fn a_facade_result_is_no_bigger_than_its_output_and_a_pointer() {
    use std::mem::size_of;
    assert_eq!(size_of::<async_bridge::BlockOnError>(), size_of::<usize>());
    assert!(size_of::<Result<u64, async_bridge::BlockOnError>>() <= 2 * size_of::<u64>());
    let err = portal("boxed")
        .block_on(async { panic!("inside") })
        .unwrap_err();
    assert_eq!(err.portal_name(), Some("boxed"));
    assert_eq!(err.location().file(), file!());
    let err = err.try_into_panic().map(|p| *p.downcast::<&str>().unwrap());
    assert_eq!(err.unwrap(), "inside");
}
