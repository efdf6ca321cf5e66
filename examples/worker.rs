//! A thread-affine legacy object behind an async API: a SQLite connection owned by a
//! `Worker`, called from many tasks and from an old sync caller.
//!
//! Run with: `cargo run --example worker`

use async_bridge::Worker;
use rusqlite::Connection;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The panics below are deliberate: print one line for each, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(deliberate panic: {info})")));

    // `spawn` blocks its caller until the maker has opened the database: from async
    // code, run it off the executor.
    let db =
        async_bridge::unblock(|| Worker::builder("orders-db").spawn(Connection::open_in_memory))
            .await?;
    db.call(|c| c.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
        .await??;

    // 100 tasks insert concurrently; the connection never leaves its thread.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.call(move |c| c.execute("INSERT INTO orders (total) VALUES (?1)", [i]))
                    .await
            })
        })
        .collect();
    for t in tasks {
        // Three layers, one `?` each: the task (`JoinError`), the worker (`WorkerError`:
        // a panic, shut down), then SQLite's own `rusqlite::Error`.
        t.await???;
    }

    // A panic in one call fails that call only.
    let err = db.call(|_| -> () { panic!("bad row") }).await.unwrap_err();
    println!("panic in a call: {err}");

    // An old sync caller, on a blocking thread, shares the same queue.
    let sync_db = db.clone();
    let count: i64 = tokio::task::spawn_blocking(move || {
        sync_db.call_blocking(|c| c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0)))
    })
    // The blocking task (`JoinError`), the worker (`WorkerError`), then SQLite.
    .await???;
    println!("orders: {count}");
    Ok(())
}
