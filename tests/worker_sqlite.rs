//! A real legacy database: rusqlite (bundled SQLite) behind a `Worker` and a
//! `WorkerPool`, on a WAL-mode file under the temp dir.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_bridge::{AfterPanic, Worker, WorkerPool};
use futures::future::try_join_all;
use rusqlite::{params, Connection};
use support::{panic_text, rt, within_a_minute};

/// A database file with a unique name under the temp dir, removed (with its WAL files)
/// when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(test: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "async-bridge-{test}-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let db = TempDb(path);
        db.remove();
        let conn = Connection::open(&db.0).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE orders (id INTEGER PRIMARY KEY, task INTEGER NOT NULL, n INTEGER NOT NULL);
             CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL);
             INSERT INTO accounts VALUES ('alice', 100), ('bob', 0);",
        )
        .unwrap();
        db
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // In WAL mode, NORMAL syncs at checkpoints rather than at every commit: keeps the
    // 10,000 small transactions of these tests quick.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn count(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
        .unwrap()
}

const TASKS: i64 = 100;
const INSERTS: i64 = 100;

#[test]
fn a_hundred_tasks_insert_a_hundred_rows_each_through_one_worker() {
    let db = TempDb::new("worker-inserts");
    let path = db.path().to_owned();
    within_a_minute(move || {
        rt().block_on(async {
            let worker = Worker::builder("orders-db")
                .spawn(move || open(&path))
                .unwrap();
            let tasks = (0..TASKS).map(|task| {
                let worker = worker.clone();
                tokio::spawn(async move {
                    for n in 0..INSERTS {
                        worker
                            .call(move |conn| {
                                conn.prepare_cached("INSERT INTO orders (task, n) VALUES (?1, ?2)")?
                                    .execute(params![task, n])
                            })
                            .await??;
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            });
            for t in futures::future::join_all(tasks).await {
                t.unwrap().unwrap();
            }
            let per_task: Vec<i64> = worker
                .call(|conn| {
                    let mut stmt =
                        conn.prepare("SELECT COUNT(*) FROM orders GROUP BY task ORDER BY task")?;
                    let rows = stmt.query_map([], |r| r.get(0))?;
                    rows.collect::<rusqlite::Result<Vec<i64>>>()
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(per_task, vec![INSERTS; TASKS as usize]);
        })
    });
    assert_eq!(count(db.path()), TASKS * INSERTS);
}

#[test]
fn a_hundred_tasks_insert_a_hundred_rows_each_through_a_pool_of_four_in_wal_mode() {
    let db = TempDb::new("pool-inserts");
    let path = db.path().to_owned();
    within_a_minute(move || {
        rt().block_on(async {
            let pool = WorkerPool::builder("orders-pool")
                .workers(4)
                .spawn(move || open(&path))
                .unwrap();
            let wal: String = pool
                .call(|conn| conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(wal, "wal");
            let tasks = (0..TASKS).map(|task| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for n in 0..INSERTS {
                        pool.call(move |conn| {
                            conn.prepare_cached("INSERT INTO orders (task, n) VALUES (?1, ?2)")?
                                .execute(params![task, n])
                        })
                        .await??;
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            });
            for t in futures::future::join_all(tasks).await {
                t.unwrap().unwrap();
            }
            // Readers in parallel on the four connections see every row.
            let counts = try_join_all((0..4).map(|_| {
                pool.call(|conn| {
                    conn.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get::<_, i64>(0))
                })
            }))
            .await
            .unwrap();
            for c in counts {
                assert_eq!(c.unwrap(), TASKS * INSERTS);
            }
            let report = pool.shutdown(Duration::from_secs(30)).await;
            assert!(report.is_complete(), "{report}");
        })
    });
    assert_eq!(count(db.path()), TASKS * INSERTS);
}

fn transfer(conn: &mut Connection, amount: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE accounts SET balance = balance - ?1 WHERE name = 'alice'",
        [amount],
    )?;
    tx.execute(
        "UPDATE accounts SET balance = balance + ?1 WHERE name = 'bob'",
        [amount],
    )?;
    tx.commit()
}

fn balances(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT (SELECT balance FROM accounts WHERE name = 'alice'),
                (SELECT balance FROM accounts WHERE name = 'bob')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[test]
fn a_transaction_inside_one_call() {
    let db = TempDb::new("transaction");
    let path = db.path().to_owned();
    within_a_minute(move || {
        let worker = Worker::builder("bank").spawn(move || open(&path)).unwrap();
        worker
            .call_blocking(|conn| transfer(conn, 30))
            .unwrap()
            .unwrap();
        assert_eq!(
            worker
                .call_blocking(|conn| balances(conn))
                .unwrap()
                .unwrap(),
            (70, 30)
        );
    });
}

#[test]
fn a_panic_in_the_middle_of_a_transaction_leaves_the_database_consistent() {
    let db = TempDb::new("panic-mid-transaction");
    let path = db.path().to_owned();
    let reader = db.path().to_owned();
    within_a_minute(move || {
        rt().block_on(async {
            // The default policy keeps the connection: unwinding drops the
            // `Transaction`, which rolls back.
            let worker = Worker::builder("bank").spawn(move || open(&path)).unwrap();
            let err = worker
                .call(|conn| {
                    let tx = conn.transaction().unwrap();
                    tx.execute(
                        "UPDATE accounts SET balance = balance - 50 WHERE name = 'alice'",
                        [],
                    )
                    .unwrap();
                    panic!("crashed between the two updates");
                })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            assert_eq!(
                panic_text(&*err.into_panic()),
                "crashed between the two updates"
            );
            // Nothing of the half-done transfer is visible, on this connection or another.
            assert_eq!(
                worker.call(|c| balances(c)).await.unwrap().unwrap(),
                (100, 0)
            );
            assert_eq!(
                balances(&Connection::open(&reader).unwrap()).unwrap(),
                (100, 0)
            );
            // The next call works, transactions included.
            assert!(worker.call(|c| c.is_autocommit()).await.unwrap());
            worker.call(|c| transfer(c, 10)).await.unwrap().unwrap();
            assert_eq!(
                worker.call(|c| balances(c)).await.unwrap().unwrap(),
                (90, 10)
            );
        })
    });
}

#[test]
fn a_panic_after_a_raw_begin_is_repaired_by_the_rebuild_policy() {
    let db = TempDb::new("panic-raw-begin");
    let path = db.path().to_owned();
    let reader = db.path().to_owned();
    within_a_minute(move || {
        // A raw `BEGIN` has no guard to roll it back: the connection would stay inside
        // the transaction. Rebuilding drops it (SQLite rolls back) and opens a fresh one.
        let worker = Worker::builder("legacy-bank")
            .after_panic(AfterPanic::Rebuild)
            .spawn(move || open(&path))
            .unwrap();
        let err = worker
            .call_blocking(|conn| {
                conn.execute_batch(
                    "BEGIN; UPDATE accounts SET balance = balance - 50 WHERE name = 'alice';",
                )
                .unwrap();
                panic!("crashed inside a raw transaction");
            })
            .unwrap_err();
        assert!(err.is_panic());
        assert!(worker.call_blocking(|c| c.is_autocommit()).unwrap());
        assert_eq!(
            worker.call_blocking(|c| balances(c)).unwrap().unwrap(),
            (100, 0)
        );
        assert_eq!(
            balances(&Connection::open(&reader).unwrap()).unwrap(),
            (100, 0)
        );
        worker.call_blocking(|c| transfer(c, 25)).unwrap().unwrap();
        assert_eq!(
            worker.call_blocking(|c| balances(c)).unwrap().unwrap(),
            (75, 25)
        );
    });
}

#[test]
fn a_connection_that_cannot_open_fails_spawn_with_the_sqlite_error() {
    let dir = std::env::temp_dir().join(format!("async-bridge-missing-dir-{}", std::process::id()));
    let path = dir.join("orders.db");
    let err = Worker::builder("orders-db")
        .spawn(move || Connection::open(&path))
        .unwrap_err();
    assert!(err.is_maker_error());
    let source = std::error::Error::source(&err).unwrap();
    assert!(
        source.downcast_ref::<rusqlite::Error>().is_some(),
        "{source:?}"
    );
}
