//! `#[bridge(async = ..)]`: the async twin of a sync trait over every carrier — a `!Send`
//! object behind a `Worker`, a `WorkerPool` of four SQLite connections, a thread-safe
//! value on an `Offloader` lane (`Offloaded<T>`) with its limits, and a native async
//! implementation — all behind one `dyn AsyncInventory`. Panics, shutdown, virtual time
//! and the reported call sites too. Nothing here sleeps to synchronise: blocked calls
//! wait on gates and channels.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_bridge::{bridge, CallError, Offloaded, Offloader, Worker, WorkerPool};
use support::{panic_text, rt, Gate};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct OutOfStock;

/// The legacy interface: sync, some methods `&mut self`, a borrowed argument, a default.
#[bridge(async = AsyncInventory)]
pub trait Inventory {
    /// Units in stock.
    fn stock(&self, sku: u32) -> u32;
    /// Takes `qty` units; the units left, or the legacy error.
    fn reserve(&mut self, sku: u32, qty: u32) -> Result<u32, OutOfStock>;
    /// The SKUs whose name starts with `prefix`.
    fn find(&self, prefix: &str) -> Vec<u32>;
    /// A default method: forwarded.
    fn label(&self, sku: u32) -> String {
        format!("sku-{sku}")
    }
}

/// The SKU whose lookup panics in every implementation below.
const CURSED: u32 = 666;

// --- A `!Send` legacy implementation ---------------------------------------------------

/// Holds an `Rc` and a `RefCell`: it can never leave its thread.
struct Legacy {
    stock: RefCell<HashMap<u32, u32>>,
    names: Rc<Vec<(u32, &'static str)>>,
}

impl Legacy {
    fn open() -> io::Result<Self> {
        Ok(Legacy {
            stock: RefCell::new(HashMap::from([(7, 10), (8, 0), (9, 5)])),
            names: Rc::new(vec![(7, "bolt"), (8, "bracket"), (9, "nut")]),
        })
    }
}

impl Inventory for Legacy {
    fn stock(&self, sku: u32) -> u32 {
        assert_ne!(sku, CURSED, "cursed sku");
        self.stock.borrow().get(&sku).copied().unwrap_or(0)
    }
    fn reserve(&mut self, sku: u32, qty: u32) -> Result<u32, OutOfStock> {
        let mut stock = self.stock.borrow_mut();
        let left = stock.get_mut(&sku).ok_or(OutOfStock)?;
        *left = left.checked_sub(qty).ok_or(OutOfStock)?;
        Ok(*left)
    }
    fn find(&self, prefix: &str) -> Vec<u32> {
        let mut found: Vec<u32> = self
            .names
            .iter()
            .filter(|(_, name)| name.starts_with(prefix))
            .map(|(sku, _)| *sku)
            .collect();
        found.sort_unstable();
        found
    }
}

#[test]
fn a_not_send_legacy_object_behind_a_worker_serves_every_method() {
    rt().block_on(async {
        let db = Worker::builder("inventory").spawn(Legacy::open).unwrap();
        assert_eq!(db.stock(7).await.unwrap(), 10);
        assert_eq!(db.reserve(7, 3).await.unwrap(), Ok(7));
        // The method's own error is the Ok value, untouched.
        assert_eq!(db.reserve(7, 8).await.unwrap(), Err(OutOfStock));
        assert_eq!(db.reserve(1, 1).await.unwrap(), Err(OutOfStock));
        assert_eq!(db.stock(7).await.unwrap(), 7);
        // A borrowed argument, copied before it crosses.
        let prefix = String::from("b");
        assert_eq!(db.find(&prefix).await.unwrap(), [7, 8]);
        assert_eq!(db.label(9).await.unwrap(), "sku-9");
        // The object ran on the worker's own thread.
        let thread = db
            .call(|_| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("inventory"));
    });
}

// --- A pool of four over a real SQLite database ------------------------------------------

/// One connection to the shared database file.
struct Sqlite(rusqlite::Connection);

impl Inventory for Sqlite {
    fn stock(&self, sku: u32) -> u32 {
        assert_ne!(sku, CURSED, "cursed sku");
        self.0
            .query_row("SELECT qty FROM stock WHERE sku = ?1", [sku], |r| r.get(0))
            .unwrap_or(0)
    }
    fn reserve(&mut self, sku: u32, qty: u32) -> Result<u32, OutOfStock> {
        self.0
            .query_row(
                "UPDATE stock SET qty = qty - ?2 WHERE sku = ?1 AND qty >= ?2 RETURNING qty",
                [sku, qty],
                |r| r.get(0),
            )
            .map_err(|_| OutOfStock)
    }
    fn find(&self, prefix: &str) -> Vec<u32> {
        let mut statement = self
            .0
            .prepare_cached("SELECT sku FROM stock WHERE name LIKE ?1 || '%' ORDER BY sku")
            .unwrap();
        let rows = statement.query_map([prefix], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }
}

/// A database directory under the temp dir, unique to this test run, removed on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("async-bridge-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = TempDb(dir);
        let conn = rusqlite::Connection::open(db.file()).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "CREATE TABLE stock (sku INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL);
             INSERT INTO stock VALUES (7, 'bolt', 1000), (8, 'bracket', 0), (9, 'nut', 5);",
        )
        .unwrap();
        db
    }

    fn file(&self) -> PathBuf {
        self.0.join("inventory.db")
    }

    fn open(path: &std::path::Path) -> rusqlite::Result<Sqlite> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(Sqlite(conn))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_pool_of_four_serves_the_same_trait_over_a_real_sqlite_database() {
    let db = TempDb::new("bridge-pool");
    let path = db.file();
    rt().block_on(async {
        let pool = WorkerPool::builder("sqlite")
            .workers(4)
            .spawn(move || TempDb::open(&path))
            .unwrap();
        assert_eq!(pool.workers(), 4);
        // WAL mode is a property of the file: every connection sees it.
        let wal = pool.call(|c| {
            c.0.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        });
        assert_eq!(wal.await.unwrap().unwrap(), "wal");

        let pool: Arc<dyn AsyncInventory> = Arc::new(pool);
        // 100 reservations of 3 from many tasks at once, over four connections.
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.reserve(7, 3).await })
            })
            .collect();
        let mut left = Vec::new();
        for task in tasks {
            left.push(task.await.unwrap().unwrap().unwrap());
        }
        // Every reservation saw a distinct stock level: none was lost or doubled.
        left.sort_unstable();
        left.dedup();
        assert_eq!(left.len(), 100);
        assert_eq!(pool.stock(7).await.unwrap(), 1000 - 300);
        assert_eq!(pool.reserve(9, 6).await.unwrap(), Err(OutOfStock));
        assert_eq!(pool.find("b").await.unwrap(), [7, 8]);
        assert_eq!(pool.label(8).await.unwrap(), "sku-8");
    });
    let file = db.file();
    drop(db);
    assert!(!file.exists(), "the database directory is cleaned up");
}

// --- A thread-safe value on a lane ---------------------------------------------------------

/// `Send + Sync`: it can be shared, so it needs no thread of its own. `stock` waits on a
/// gate (a stalled legacy call) and says when it has started.
struct SharedStock {
    stock: Mutex<HashMap<u32, u32>>,
    gate: Gate,
    started: Mutex<mpsc::Sender<u32>>,
}

impl SharedStock {
    fn new(gate: Gate) -> (Self, mpsc::Receiver<u32>) {
        let (tx, rx) = mpsc::channel();
        let value = SharedStock {
            stock: Mutex::new(HashMap::from([(7, 10), (8, 0), (9, 5)])),
            gate,
            started: Mutex::new(tx),
        };
        (value, rx)
    }

    fn open() -> Self {
        let gate = Gate::new();
        gate.open();
        SharedStock::new(gate).0
    }
}

impl Inventory for SharedStock {
    fn stock(&self, sku: u32) -> u32 {
        assert_ne!(sku, CURSED, "cursed sku");
        let _ = self.started.lock().unwrap().send(sku);
        self.gate.wait();
        self.stock.lock().unwrap().get(&sku).copied().unwrap_or(0)
    }
    fn reserve(&mut self, sku: u32, qty: u32) -> Result<u32, OutOfStock> {
        // `&mut self`: the carrier took the write lock, so no `stock` call runs now.
        let stock = self.stock.get_mut().unwrap();
        let left = stock.get_mut(&sku).ok_or(OutOfStock)?;
        *left = left.checked_sub(qty).ok_or(OutOfStock)?;
        Ok(*left)
    }
    fn find(&self, prefix: &str) -> Vec<u32> {
        match prefix {
            "b" => vec![7, 8],
            "n" => vec![9],
            _ => vec![],
        }
    }
}

#[test]
fn the_lane_carrier_admits_up_to_its_bounds_and_rejects_beyond() {
    rt().block_on(async {
        let lane = Offloader::builder("shared-stock")
            .max_concurrency(1)
            .max_queue(1)
            .build()
            .unwrap();
        let gate = Gate::new();
        let (value, started) = SharedStock::new(gate.clone());
        let shared = Offloaded::new(value, lane);

        // One call runs (stalled on the gate), one waits in the queue.
        let running = tokio::spawn({
            let shared = shared.clone();
            async move { shared.stock(7).await }
        });
        let started = tokio::task::spawn_blocking(move || {
            assert_eq!(started.recv().unwrap(), 7);
            started
        })
        .await
        .unwrap();
        let queued = tokio::spawn({
            let shared = shared.clone();
            async move { shared.stock(9).await }
        });
        while shared.lane().stats().queued < 1 {
            tokio::task::yield_now().await;
        }
        // The third is turned away at once, without running.
        let err = shared.stock(8).await.unwrap_err();
        assert!(err.is_rejected(), "{err}");
        assert!(!err.is_panic() && !err.is_timeout() && !err.is_shutdown());
        assert_eq!(
            err.to_string(),
            "lane `shared-stock`: call rejected: 1 callers already waiting"
        );
        assert!(err.offload_error().unwrap().is_rejected());
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::ResourceBusy);

        gate.open();
        assert_eq!(running.await.unwrap().unwrap(), 10);
        assert_eq!(queued.await.unwrap().unwrap(), 5);
        assert_eq!(started.recv().unwrap(), 9);
        // `&mut self` methods take the write lock on the lane.
        assert_eq!(shared.reserve(7, 4).await.unwrap(), Ok(6));
        assert_eq!(shared.stock(7).await.unwrap(), 6);
        assert_eq!(shared.find("n").await.unwrap(), [9]);
        assert_eq!(shared.lane().stats().rejected, 1);
    });
}

#[test]
fn the_lane_carrier_times_out_a_stalled_call() {
    rt().block_on(async {
        let lane = Offloader::builder("stalled")
            // Long enough for the last call, which must succeed, on a busy machine.
            .timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        let gate = Gate::new();
        let (value, _started) = SharedStock::new(gate.clone());
        let shared = Offloaded::new(value, lane);
        // The gate stays shut until the timeout has fired: the call cannot finish first.
        let err = shared.stock(7).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(
            err.to_string(),
            "lane `stalled`: call timed out after 250ms"
        );
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        gate.open();
        assert_eq!(shared.find("b").await.unwrap(), [7, 8]);
    });
}

// --- `dyn` over every carrier and a native implementation ----------------------------------

/// The end of a migration: a native async implementation of the twin, written with
/// async-trait directly.
struct Native {
    stock: tokio::sync::Mutex<HashMap<u32, u32>>,
}

#[async_trait::async_trait]
impl AsyncInventory for Native {
    async fn stock(&self, sku: u32) -> Result<u32, CallError> {
        tokio::task::yield_now().await;
        if sku == CURSED {
            return Err(CallError::other("cursed sku"));
        }
        Ok(self.stock.lock().await.get(&sku).copied().unwrap_or(0))
    }
    async fn reserve(&self, sku: u32, qty: u32) -> Result<Result<u32, OutOfStock>, CallError> {
        let mut stock = self.stock.lock().await;
        Ok((|| {
            let left = stock.get_mut(&sku).ok_or(OutOfStock)?;
            *left = left.checked_sub(qty).ok_or(OutOfStock)?;
            Ok(*left)
        })())
    }
    async fn find(&self, prefix: &str) -> Result<Vec<u32>, CallError> {
        Ok(match prefix {
            "b" => vec![7, 8],
            _ => vec![],
        })
    }
    async fn label(&self, sku: u32) -> Result<String, CallError> {
        Ok(format!("sku-{sku}"))
    }
}

/// What every caller does, whatever is behind the `dyn`.
async fn caller(inventory: Arc<dyn AsyncInventory>) {
    assert_eq!(inventory.stock(7).await.unwrap(), 10);
    assert_eq!(inventory.reserve(7, 4).await.unwrap(), Ok(6));
    assert_eq!(inventory.reserve(8, 1).await.unwrap(), Err(OutOfStock));
    assert_eq!(inventory.find(&String::from("b")).await.unwrap(), [7, 8]);
    assert_eq!(inventory.label(7).await.unwrap(), "sku-7");
}

#[test]
fn one_dyn_twin_over_a_worker_a_pool_a_lane_and_a_native_implementation() {
    fn send_sync_static<T: Send + Sync + 'static>(_: &T) {}
    rt().block_on(async {
        let carriers: Vec<Arc<dyn AsyncInventory>> = vec![
            Arc::new(Worker::builder("w").spawn(Legacy::open).unwrap()),
            Arc::new(
                WorkerPool::builder("p")
                    .workers(1)
                    .spawn(Legacy::open)
                    .unwrap(),
            ),
            Arc::new(Offloaded::new(
                SharedStock::open(),
                Offloader::builder("l").build().unwrap(),
            )),
            Arc::new(Native {
                stock: tokio::sync::Mutex::new(HashMap::from([(7, 10), (8, 0)])),
            }),
        ];
        for inventory in carriers {
            send_sync_static(&inventory);
            // The twin's future is Send: it can be spawned.
            tokio::spawn(caller(inventory)).await.unwrap();
        }
    });
}

// --- Panics and shutdown --------------------------------------------------------------------

fn assert_panic(err: CallError) {
    assert!(err.is_panic(), "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(!err.is_shutdown() && !err.is_timeout() && !err.is_rejected());
    assert!(panic_text(&*err.into_panic()).contains("cursed sku"));
}

#[test]
fn a_panicking_legacy_method_is_an_error_and_every_carrier_keeps_serving() {
    rt().block_on(async {
        let worker = Worker::builder("w").spawn(Legacy::open).unwrap();
        assert_panic(worker.stock(CURSED).await.unwrap_err());
        assert_eq!(worker.stock(7).await.unwrap(), 10);

        let pool = WorkerPool::builder("p")
            .workers(2)
            .spawn(Legacy::open)
            .unwrap();
        assert_panic(pool.stock(CURSED).await.unwrap_err());
        assert_eq!(pool.stock(9).await.unwrap(), 5);

        let lane = Offloaded::new(
            SharedStock::open(),
            Offloader::builder("l").build().unwrap(),
        );
        assert_panic(lane.stock(CURSED).await.unwrap_err());
        assert_eq!(lane.stock(7).await.unwrap(), 10);
        // The lock is not poisoned: `&mut self` methods still run.
        assert_eq!(lane.reserve(7, 1).await.unwrap(), Ok(9));

        // Through `dyn` too.
        let shared: Arc<dyn AsyncInventory> = Arc::new(worker);
        assert_panic(shared.stock(CURSED).await.unwrap_err());
        assert_eq!(shared.stock(9).await.unwrap(), 5);
    });
}

#[test]
fn a_shut_down_carrier_gives_is_shutdown() {
    rt().block_on(async {
        let worker = Worker::builder("w").spawn(Legacy::open).unwrap();
        assert!(worker.shutdown(Duration::from_secs(30)).await.is_complete());
        let err = worker.stock(7).await.unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert_eq!(err.to_string(), "worker `w`: worker is shut down");
        assert!(err.worker_error().unwrap().is_shutdown());
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);

        let pool = WorkerPool::builder("p")
            .workers(2)
            .spawn(Legacy::open)
            .unwrap();
        pool.shutdown(Duration::from_secs(30)).await;
        assert!(pool.reserve(7, 1).await.unwrap_err().is_shutdown());

        let lane = Offloaded::new(
            SharedStock::open(),
            Offloader::builder("l").build().unwrap(),
        );
        lane.lane().shutdown(Duration::from_secs(30)).await;
        let err = lane.find("b").await.unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert!(lane.reserve(7, 1).await.unwrap_err().is_shutdown());
    });
}

// --- Call sites --------------------------------------------------------------------------

/// A legacy object whose `stock` waits on a gate: a call that is still running when its
/// carrier shuts down, so the shutdown report names its call site.
struct Stalling(Gate, mpsc::Sender<()>);

impl Inventory for Stalling {
    fn stock(&self, _: u32) -> u32 {
        self.1.send(()).unwrap();
        self.0.wait();
        1
    }
    fn reserve(&mut self, _: u32, _: u32) -> Result<u32, OutOfStock> {
        Err(OutOfStock)
    }
    fn find(&self, _: &str) -> Vec<u32> {
        Vec::new()
    }
}

/// Starts `call` (a twin call), waits until the legacy method runs,
/// shuts the carrier down with a short grace and returns the sites the report names.
async fn sites_still_running<S>(
    call: tokio::task::JoinHandle<Result<u32, CallError>>,
    started: mpsc::Receiver<()>,
    shutdown: S,
) -> Vec<(String, u32)>
where
    S: std::future::Future<Output = async_bridge::ShutdownReport>,
{
    tokio::task::spawn_blocking(move || started.recv().unwrap())
        .await
        .unwrap();
    let report = shutdown.await;
    let sites = report
        .still_running()
        .iter()
        .map(|site| (site.file().to_owned(), site.line()))
        .collect();
    drop(call);
    sites
}

#[test]
fn the_call_site_reported_is_the_callers_line_not_generated_code() {
    rt().block_on(async {
        // A worker, called directly.
        let gate = Gate::new();
        let (tx, started) = mpsc::channel();
        let worker = Worker::builder("w")
            .spawn({
                let gate = gate.clone();
                move || Ok::<_, io::Error>(Stalling(gate.clone(), tx.clone()))
            })
            .unwrap();
        let line = line!() + 3;
        let call = tokio::spawn({
            let worker = worker.clone();
            async move { worker.stock(1).await }
        });
        let sites =
            sites_still_running(call, started, worker.shutdown(Duration::from_millis(10))).await;
        assert_eq!(sites, [(file!().to_owned(), line)]);
        gate.open();

        // A worker through `dyn`.
        let gate = Gate::new();
        let (tx, started) = mpsc::channel();
        let worker = Worker::builder("w")
            .spawn({
                let gate = gate.clone();
                move || Ok::<_, io::Error>(Stalling(gate.clone(), tx.clone()))
            })
            .unwrap();
        let shared: Arc<dyn AsyncInventory> = Arc::new(worker.clone());
        let line = line!() + 1;
        let call = tokio::spawn(async move { shared.stock(1).await });
        let sites =
            sites_still_running(call, started, worker.shutdown(Duration::from_millis(10))).await;
        assert_eq!(sites, [(file!().to_owned(), line)]);
        gate.open();

        // A lane carrier.
        let gate = Gate::new();
        let (tx, started) = mpsc::channel();
        let lane = Offloader::builder("l").build().unwrap();
        let shared = Offloaded::new(Stalling(gate.clone(), tx), lane);
        let line = line!() + 3;
        let call = tokio::spawn({
            let shared = shared.clone();
            async move { shared.stock(1).await }
        });
        let sites = sites_still_running(
            call,
            started,
            shared.lane().shutdown(Duration::from_millis(10)),
        )
        .await;
        assert_eq!(sites, [(file!().to_owned(), line)]);
        gate.open();
    });
}

// --- Virtual time --------------------------------------------------------------------------

/// A legacy client that retries with a backoff on the crate's clock: three failures, 20
/// minutes apart, then an answer.
#[cfg(feature = "test-util")]
struct Flaky {
    attempts: u32,
}

#[cfg(feature = "test-util")]
impl Inventory for Flaky {
    fn stock(&self, _: u32) -> u32 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > 3 {
                return attempts;
            }
            async_bridge::clock::sleep(Duration::from_secs(20 * 60));
        }
    }
    fn reserve(&mut self, _: u32, _: u32) -> Result<u32, OutOfStock> {
        self.attempts += 1;
        async_bridge::clock::sleep(Duration::from_secs(60 * 60));
        Ok(self.attempts)
    }
    fn find(&self, _: &str) -> Vec<u32> {
        Vec::new()
    }
}

#[cfg(feature = "test-util")]
#[test]
fn a_legacy_retry_inside_a_twin_call_runs_in_virtual_time() {
    let wall = std::time::Instant::now();
    async_bridge::testing::run(async {
        let worker = Worker::builder("flaky")
            .spawn(|| Ok::<_, io::Error>(Flaky { attempts: 0 }))
            .unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(worker.stock(7).await.unwrap(), 4);
        assert_eq!(start.elapsed(), Duration::from_secs(60 * 60));

        // Through `dyn`, and on a lane carrier: the same hour, exactly.
        let shared: Arc<dyn AsyncInventory> = Arc::new(worker);
        let start = tokio::time::Instant::now();
        assert_eq!(shared.reserve(7, 1).await.unwrap(), Ok(1));
        assert_eq!(start.elapsed(), Duration::from_secs(60 * 60));

        let lane = Offloaded::new(
            SharedStock::open(),
            Offloader::builder("retry").build().unwrap(),
        );
        let start = tokio::time::Instant::now();
        let slow = lane.run(|_| {
            async_bridge::clock::sleep(Duration::from_secs(3600));
            7
        });
        assert_eq!(slow.await.unwrap(), 7);
        assert_eq!(start.elapsed(), Duration::from_secs(60 * 60));
    });
    // A hang guard, not a timing assertion: three virtual hours took no real hours.
    assert!(wall.elapsed() < Duration::from_secs(600));
}

// --- Other borrowed arguments ----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub name: String,
    pub qty: u32,
}

#[bridge(async = AsyncCatalog)]
pub trait Catalog {
    fn total(&self, skus: &[u32]) -> u32;
    fn describe(&self, item: &Item) -> String;
    fn rename(&mut self, item: Item, name: &'static str) -> Item;
}

struct Prices(Rc<HashMap<u32, u32>>);

impl Catalog for Prices {
    fn total(&self, skus: &[u32]) -> u32 {
        skus.iter()
            .map(|s| self.0.get(s).copied().unwrap_or(0))
            .sum()
    }
    fn describe(&self, item: &Item) -> String {
        format!("{} x{}", item.name, item.qty)
    }
    fn rename(&mut self, item: Item, name: &'static str) -> Item {
        Item {
            name: name.to_owned(),
            ..item
        }
    }
}

#[test]
fn slices_and_clone_values_are_copied_and_lent_back_as_borrows() {
    rt().block_on(async {
        let prices = Worker::builder("prices")
            .spawn(|| Ok::<_, io::Error>(Prices(Rc::new(HashMap::from([(1, 10), (2, 32)])))))
            .unwrap();
        let skus = vec![1, 2, 3];
        assert_eq!(prices.total(&skus).await.unwrap(), 42);
        let item = Item {
            name: "bolt".into(),
            qty: 3,
        };
        assert_eq!(prices.describe(&item).await.unwrap(), "bolt x3");
        assert_eq!(prices.rename(item, "nut").await.unwrap().name, "nut");
    });
}

#[test]
fn the_error_is_send_sync_static_and_converts_to_boxed_and_io_errors() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<CallError>();
    send_sync_static::<Offloaded<SharedStock>>();
    let err = CallError::other(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "replica down",
    ));
    assert!(err.is_other() && !err.is_panic() && err.location().is_none());
    assert_eq!(err.to_string(), "replica down");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert_eq!(boxed.to_string(), "replica down");
    // Not a panic: `try_into_panic` gives it back, `into_panic` says so.
    let err = CallError::other("x").try_into_panic().unwrap_err();
    let payload =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| err.into_panic())).unwrap_err();
    assert!(panic_text(&*payload).contains("not a panic"));
}

/// A twin's future is one allocation the size of the carrier's own call: the twin adds
/// no state of its own to what it boxes (an `async` wrapper kept the call twice, 248
/// bytes for a 120-byte worker call, past the allocator's fast bins).
#[test]
fn a_twin_boxes_no_more_than_the_carriers_call() {
    let rt = rt();
    let _enter = rt.enter();
    let worker = Worker::builder("twin-size").spawn(Legacy::open).unwrap();
    let twin = AsyncInventory::stock(&worker, 7);
    let call = worker.call(move |legacy: &mut Legacy| legacy.stock(7));
    assert!(
        std::mem::size_of_val(&*twin) <= std::mem::size_of_val(&call),
        "twin {} bytes, call {} bytes",
        std::mem::size_of_val(&*twin),
        std::mem::size_of_val(&call)
    );
    drop((twin, call));
    assert_eq!(rt.block_on(worker.stock(7)).unwrap(), 10);
}
