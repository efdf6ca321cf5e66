//! Leases (issue 13): one caller holds a worker's object across several calls with
//! awaits in between; a release hook rolls back whatever was not finished.

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_bridge::{Worker, WorkerPool};
use rusqlite::Connection;

/// A WAL database file of its own, removed when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "async-bridge-lease-{tag}-{}-{:?}.db",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
             INSERT INTO accounts VALUES (1, 100), (2, 100);",
        )
        .unwrap();
        TempDb(path)
    }

    fn open(&self) -> impl Fn() -> rusqlite::Result<Connection> + Send + Sync + 'static {
        let path = self.0.clone();
        move || {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            Ok(conn)
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn writer(db: &TempDb) -> Worker<Connection> {
    Worker::builder("writer")
        .on_lease_abandoned(|conn: &mut Connection| {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").unwrap();
            }
        })
        .spawn(db.open())
        .unwrap()
}

fn total(conn: &mut Connection) -> i64 {
    conn.query_row("SELECT SUM(balance) FROM accounts", [], |r| r.get(0))
        .unwrap()
}

fn move_money(
    from: i64,
    to: i64,
    amount: i64,
) -> impl FnOnce(&mut Connection) -> rusqlite::Result<usize> {
    move |c| {
        c.execute(
            "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1",
            [from, -amount],
        )?;
        c.execute(
            "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1",
            [to, amount],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_across_awaits_commits() {
    let db = TempDb::new("commit");
    let w = writer(&db);
    let mut tx = w.lease().await.unwrap();
    tx.call(|c| c.execute_batch("BEGIN IMMEDIATE"))
        .await
        .unwrap()
        .unwrap();
    tx.call(|c| {
        c.execute(
            "UPDATE accounts SET balance = balance - 30 WHERE id = 1",
            [],
        )
    })
    .await
    .unwrap()
    .unwrap();
    tokio::task::yield_now().await; // async work in the middle of the transaction
    tx.call(|c| {
        c.execute(
            "UPDATE accounts SET balance = balance + 30 WHERE id = 2",
            [],
        )
    })
    .await
    .unwrap()
    .unwrap();
    tx.call(|c| c.execute_batch("COMMIT"))
        .await
        .unwrap()
        .unwrap();
    tx.finish().await.unwrap();
    let balances: Vec<i64> = w
        .call(|c| {
            let mut stmt = c
                .prepare("SELECT balance FROM accounts ORDER BY id")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        })
        .await
        .unwrap();
    assert_eq!(balances, [70, 130]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_dropped_halfway_is_rolled_back_and_readers_never_see_partial_state() {
    let db = TempDb::new("drop");
    let w = writer(&db);
    let readers = WorkerPool::builder("readers")
        .workers(2)
        .spawn(db.open())
        .unwrap();
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let w = w.clone();
        async move {
            let mut tx = w.lease().await.unwrap();
            tx.call(|c| c.execute_batch("BEGIN IMMEDIATE"))
                .await
                .unwrap()
                .unwrap();
            tx.call(|c| {
                c.execute(
                    "UPDATE accounts SET balance = balance - 50 WHERE id = 1",
                    [],
                )
            })
            .await
            .unwrap()
            .unwrap();
            halfway_tx.send(()).unwrap();
            let _ = resume_rx.await; // never resumed: the task is aborted here
            unreachable!("the holder is aborted halfway");
        }
    });
    halfway_rx.await.unwrap();
    // Halfway: readers see the committed state, not the half-done transfer.
    for _ in 0..20 {
        assert_eq!(readers.call(total).await.unwrap(), 200);
    }
    holder.abort(); // the lease is dropped without finishing
    assert!(holder.await.unwrap_err().is_cancelled());
    drop(resume_tx);
    // The hook rolled back before the next caller got the connection.
    assert!(w.call(|c| c.is_autocommit()).await.unwrap());
    assert_eq!(w.call(total).await.unwrap(), 200);
    assert_eq!(readers.call(total).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_leased_call_rolls_back_ends_the_lease_and_the_worker_keeps_serving() {
    let db = TempDb::new("panic");
    let w = writer(&db);
    let mut tx = w.lease().await.unwrap();
    tx.call(|c| c.execute_batch("BEGIN IMMEDIATE"))
        .await
        .unwrap()
        .unwrap();
    tx.call(move_money(1, 2, 40)).await.unwrap().unwrap();
    let err = tx.call(|_| -> () { panic!("half-way") }).await.unwrap_err();
    assert!(err.is_panic(), "{err}");
    let err = tx.call(|c| c.execute_batch("COMMIT")).await.unwrap_err();
    assert!(err.is_lease_ended(), "{err}");
    assert!(
        err.to_string().contains("a call under it panicked"),
        "{err}"
    );
    assert!(tx.finish().await.unwrap_err().is_lease_ended());
    assert_eq!(w.call(total).await.unwrap(), 200);
    let first: i64 = w
        .call(|c| {
            c.query_row("SELECT balance FROM accounts WHERE id = 1", [], |r| {
                r.get(0)
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, 100, "the half-done transfer was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_holders_and_plain_callers_are_served_in_fifo_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let w = Worker::builder("fifo")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    // Hold the worker so everything below queues behind it, in a known order.
    let mut first = w.lease().await.unwrap();
    let mut queued = Vec::new();
    for i in 0..6u32 {
        let order = Arc::clone(&order);
        let w = w.clone();
        let (admitted_tx, admitted_rx) = tokio::sync::oneshot::channel();
        queued.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let lease = w.lease();
                let mut lease = std::pin::pin!(lease);
                // Admit it (first poll), then report, then wait for the lease.
                let mut admitted_tx = Some(admitted_tx);
                let mut lease = std::future::poll_fn(|cx| {
                    let poll = lease.as_mut().poll(cx);
                    if let Some(tx) = admitted_tx.take() {
                        let _ = tx.send(());
                    }
                    poll
                })
                .await
                .unwrap();
                let o = Arc::clone(&order);
                lease
                    .call(move |_| o.lock().unwrap().push(format!("lease {i}")))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
                lease
                    .call(move |_| order.lock().unwrap().push(format!("lease {i} again")))
                    .await
                    .unwrap();
                lease.finish().await.unwrap();
            } else {
                let call = w.call(move |_| order.lock().unwrap().push(format!("call {i}")));
                let mut call = std::pin::pin!(call);
                let mut admitted_tx = Some(admitted_tx);
                std::future::poll_fn(|cx| {
                    let poll = call.as_mut().poll(cx);
                    if let Some(tx) = admitted_tx.take() {
                        let _ = tx.send(());
                    }
                    poll
                })
                .await
                .unwrap();
            }
        }));
        admitted_rx.await.unwrap();
    }
    first.call(|_| ()).await.unwrap();
    first.finish().await.unwrap();
    for task in queued {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            "lease 0",
            "lease 0 again",
            "call 1",
            "lease 2",
            "lease 2 again",
            "call 3",
            "lease 4",
            "lease 4 again",
            "call 5"
        ]
    );
}

#[tokio::test]
async fn a_lease_held_past_its_limit_ends_and_its_hook_runs() {
    let log = Worker::builder("limited")
        .lease_limit(Duration::from_millis(20))
        .on_lease_abandoned(|entries: &mut Vec<&str>| entries.push("rolled back"))
        .spawn(|| Ok::<_, std::io::Error>(Vec::new()))
        .unwrap();
    let mut lease = log.lease().await.unwrap();
    lease.call(|entries| entries.push("begin")).await.unwrap();
    // Held, idle, past the limit: the worker ends it on its own.
    let entries = log.call(|entries| entries.clone()).await.unwrap();
    assert_eq!(entries, ["begin", "rolled back"]);
    let err = lease
        .call(|entries| entries.push("late"))
        .await
        .unwrap_err();
    assert!(err.is_lease_ended(), "{err}");
    assert!(err.to_string().contains("past its time limit"), "{err}");
}

#[tokio::test]
async fn a_lease_asked_for_inside_a_call_on_the_same_worker_is_refused() {
    let w = Worker::builder("self")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let inner = w.clone();
    let err = w
        .call(move |_| async_bridge::block_on(inner.lease()).unwrap().map(drop))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_would_deadlock(), "{err}");
    assert_eq!(w.call(|_| 1).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_lease_pins_one_member_while_the_others_serve() {
    let pool = WorkerPool::builder("members")
        .workers(2)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let name = || std::thread::current().name().unwrap().to_owned();
    let mut lease = pool.lease().await.unwrap();
    let pinned = lease.call(move |_| name()).await.unwrap();
    for _ in 0..10 {
        assert_ne!(pool.call(move |_| name()).await.unwrap(), pinned);
    }
    assert_eq!(lease.call(move |_| name()).await.unwrap(), pinned);
    lease.finish().await.unwrap();
}

#[test]
#[cfg(feature = "test-util")]
fn a_lease_across_an_hour_of_async_sleep_runs_in_virtual_time() {
    async_bridge::testing::run(async {
        let w = Worker::builder("vt")
            .spawn(|| Ok::<_, std::io::Error>(0u32))
            .unwrap();
        let start = tokio::time::Instant::now();
        let mut lease = w.lease().await.unwrap();
        lease.call(|n| *n += 1).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await; // the lease's thread waits
        lease.call(|n| *n += 1).await.unwrap();
        lease.finish().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
        assert_eq!(w.call(|n| *n).await.unwrap(), 2);
    });
}

#[tokio::test]
async fn shutdown_fails_callers_waiting_behind_a_lease() {
    let w = Worker::builder("closing")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let lease = w.lease().await.unwrap();
    let waiting = tokio::spawn(w.call(|_| ()));
    tokio::task::yield_now().await;
    drop(lease);
    let report = w.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    let _ = waiting.await.unwrap(); // ran after the lease or failed with the shutdown
    assert!(w.lease().await.unwrap_err().is_shutdown());
}

#[test]
fn bad_configuration_is_an_error() {
    let err = Worker::builder("zero")
        .lease_limit(Duration::ZERO)
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    // A hook for another type than the maker makes no longer reaches run time: the
    // builder carries the object's type (the `compile_fail` example on `WorkerBuilder`).
}
