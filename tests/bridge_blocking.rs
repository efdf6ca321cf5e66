//! `#[bridge(blocking = ..)]`: the blocking twin of an async trait, over `Blocking<T>`,
//! called from the seven places the facades promise (see tests/blocking_callers.rs): a
//! plain thread, a multi-thread runtime worker, inside `unblock`, inside a `Worker` call,
//! on rayon, nested inside another `block_on`, and — refused with `is_would_deadlock`
//! instead of hanging — the thread of a current_thread runtime. Panics and a shut-down
//! portal too. Every case that could hang is bounded by `within_a_minute`.
#![allow(async_fn_in_trait)]

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_bridge::{block_on, bridge, unblock, Blocking, CallError, Portal, Worker};
use support::{panic_text, within_a_minute};
use tokio::runtime::{Builder, Runtime};

/// The new async interface; old sync callers get `BlockingAccounts`.
#[bridge(blocking = BlockingAccounts)]
pub trait Accounts {
    /// A balance, in cents.
    async fn balance(&self, id: u32) -> u64;
    /// Borrowed arguments are lent to the future as they are.
    async fn rename(&self, id: u32, name: &str) -> String;
    /// `&mut self` stays `&mut self` in the twin.
    async fn deposit(&mut self, id: u32, cents: u64) -> u64;
    /// A `&mut` argument is fine: nothing crosses a thread.
    async fn statement(&self, id: u32, out: &mut Vec<String>) -> usize;
    /// The `impl Future` form of an async method, with a `Send` bound.
    fn ids(&self) -> impl Future<Output = Vec<u32>> + Send;
    /// A generic method is forwarded as it is.
    async fn parse<T: FromStr + Send>(&self, text: &str) -> Option<T>;
}

/// The id whose balance panics.
const CURSED: u32 = 666;

#[derive(Default)]
struct NewAccounts {
    balances: Mutex<HashMap<u32, u64>>,
    /// Set when a method's future is first polled.
    polled: Arc<AtomicBool>,
}

impl NewAccounts {
    fn open() -> Self {
        NewAccounts {
            balances: Mutex::new(HashMap::from([(3, 300), (4, 400)])),
            polled: Arc::default(),
        }
    }
}

/// Uses what the runtime underneath offers: its timer and its spawner.
async fn uses_tokio() -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::spawn(async { 0 }).await.unwrap()
}

impl Accounts for NewAccounts {
    async fn balance(&self, id: u32) -> u64 {
        self.polled.store(true, Ordering::SeqCst);
        if id == CURSED {
            panic!("cursed account");
        }
        let zero = uses_tokio().await;
        self.balances.lock().unwrap().get(&id).copied().unwrap_or(0) + zero
    }
    async fn rename(&self, id: u32, name: &str) -> String {
        tokio::task::yield_now().await;
        format!("{id}:{name}")
    }
    async fn deposit(&mut self, id: u32, cents: u64) -> u64 {
        uses_tokio().await;
        let balances = self.balances.get_mut().unwrap();
        let balance = balances.entry(id).or_default();
        *balance += cents;
        *balance
    }
    async fn statement(&self, id: u32, out: &mut Vec<String>) -> usize {
        tokio::task::yield_now().await;
        out.push(format!("{id}: opening"));
        out.push(format!("{id}: closing"));
        out.len()
    }
    fn ids(&self) -> impl Future<Output = Vec<u32>> + Send {
        let mut ids: Vec<u32> = self.balances.lock().unwrap().keys().copied().collect();
        ids.sort_unstable();
        async move {
            tokio::task::yield_now().await;
            ids
        }
    }
    async fn parse<T: FromStr + Send>(&self, text: &str) -> Option<T> {
        text.trim().parse().ok()
    }
}

fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn shared() -> Arc<Blocking<NewAccounts>> {
    Arc::new(Blocking::new(NewAccounts::open()))
}

#[test]
fn every_method_of_the_twin_from_a_plain_thread() {
    within_a_minute(|| {
        let mut accounts = Blocking::new(NewAccounts::open());
        assert_eq!(accounts.balance(3).unwrap(), 300);
        let name = String::from("ada");
        assert_eq!(accounts.rename(3, &name).unwrap(), "3:ada");
        assert_eq!(accounts.deposit(3, 50).unwrap(), 350);
        assert_eq!(accounts.balance(3).unwrap(), 350);
        let mut lines = Vec::new();
        assert_eq!(accounts.statement(3, &mut lines).unwrap(), 2);
        assert_eq!(lines, ["3: opening", "3: closing"]);
        assert_eq!(accounts.ids().unwrap(), [3, 4]);
        assert_eq!(accounts.parse::<u32>(" 42 ").unwrap(), Some(42));
        assert_eq!(accounts.parse::<u32>("x").unwrap(), None);
        // Old code written against the twin, generically (`parse` is generic, so this
        // twin is not `dyn`-compatible; one without generic methods is).
        fn generic(accounts: &impl BlockingAccounts) -> u64 {
            accounts.balance(4).unwrap()
        }
        assert_eq!(generic(&accounts), 400);
    });
}

#[test]
fn from_a_multi_thread_runtime_worker_whose_other_tasks_keep_running() {
    let out = within_a_minute(|| {
        // One worker: the facade must use `block_in_place` so that the spawned task that
        // the future waits for can run.
        multi_thread(1).block_on(async {
            let accounts = shared();
            tokio::spawn(async move { accounts.balance(3).unwrap() })
                .await
                .unwrap()
        })
    });
    assert_eq!(out, 300);
}

#[test]
fn inside_unblock() {
    let out = within_a_minute(|| {
        multi_thread(1).block_on(async {
            let accounts = shared();
            unblock(move || accounts.balance(4).unwrap()).await
        })
    });
    assert_eq!(out, 400);
}

#[test]
fn inside_a_worker_call() {
    let out = within_a_minute(|| {
        multi_thread(1).block_on(async {
            let worker = Worker::builder("legacy")
                .spawn(|| Ok::<_, io::Error>(shared()))
                .unwrap();
            worker
                .call(|accounts| accounts.balance(3).unwrap())
                .await
                .unwrap()
        })
    });
    assert_eq!(out, 300);
}

#[test]
fn on_rayon_and_on_the_compute_pool() {
    let out = within_a_minute(|| {
        let (tx, rx) = mpsc::channel();
        let accounts = shared();
        let on_rayon = Arc::clone(&accounts);
        rayon::spawn(move || tx.send(on_rayon.balance(3).unwrap()).unwrap());
        let from_rayon = rx.recv().unwrap();
        let from_compute =
            block_on(async_bridge::compute(move || accounts.balance(4).unwrap())).unwrap();
        (from_rayon, from_compute)
    });
    assert_eq!(out, (300, 400));
}

#[test]
fn nested_inside_another_block_on() {
    let out = within_a_minute(|| {
        let accounts = shared();
        block_on(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let inner = Arc::clone(&accounts);
            // A twin call inside a facade's future, itself inside a twin call's thread.
            block_on(async move { inner.balance(3).unwrap() }).unwrap()
                + accounts.balance(4).unwrap()
        })
        .unwrap()
    });
    assert_eq!(out, 700);
}

#[test]
fn the_thread_of_a_current_thread_runtime_is_refused_with_the_callers_line() {
    let accounts = NewAccounts::open();
    let polled = Arc::clone(&accounts.polled);
    let accounts = Blocking::new(accounts);
    let (err, line) = within_a_minute(move || {
        let rt = Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let line = line!() + 1;
            let err = accounts.balance(3).unwrap_err();
            (err, line)
        })
    });
    assert!(err.is_would_deadlock(), "{err}");
    assert!(
        !polled.load(Ordering::SeqCst),
        "a refused method is never polled"
    );
    assert!(!err.is_panic() && !err.is_shutdown());
    let site = err.location().unwrap();
    assert_eq!((site.file(), site.line()), (file!(), line));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("facade called at {}:{line}:", file!())),
        "{message}"
    );
    assert!(message.contains("async_bridge::unblock"), "{message}");
    assert!(err.block_on_error().unwrap().is_would_deadlock());
    let io: io::Error = err.into();
    assert_eq!(io.kind(), io::ErrorKind::Deadlock);
}

#[test]
fn a_panicking_method_is_an_error_with_its_payload_and_the_next_call_works() {
    within_a_minute(|| {
        let accounts = Blocking::new(NewAccounts::open());
        let line = line!() + 1;
        let err: CallError = accounts.balance(CURSED).unwrap_err();
        assert!(err.is_panic(), "{err}");
        let site = err.location().unwrap();
        assert_eq!((site.file(), site.line()), (file!(), line));
        assert_eq!(
            err.to_string(),
            format!(
                "`BlockingAccounts::balance` called at {}:{line}:{}: method panicked: cursed account",
                file!(),
                site.column()
            )
        );
        assert_eq!(panic_text(&*err.into_panic()), "cursed account");
        assert_eq!(accounts.balance(3).unwrap(), 300);

        // The same from a runtime worker, where the future runs inside block_in_place.
        let accounts = Arc::new(accounts);
        let err = multi_thread(1).block_on(async move {
            tokio::spawn(async move { accounts.balance(CURSED).unwrap_err() })
                .await
                .unwrap()
        });
        assert!(err.is_panic());
    });
}

#[test]
fn a_shut_down_portal_gives_is_shutdown() {
    within_a_minute(|| {
        let portal = Portal::builder().worker_threads(1).build().unwrap();
        let accounts = Blocking::with_portal(NewAccounts::open(), &portal);
        assert_eq!(accounts.balance(3).unwrap(), 300);
        portal.shutdown(Duration::from_secs(30));
        let err = accounts.balance(3).unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert!(!err.is_would_deadlock() && !err.is_panic());
        assert!(err.to_string().contains("the portal is shut down"), "{err}");
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
    });
}
