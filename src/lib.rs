//! Move a codebase from blocking to async one piece at a time: offload blocking and
//! CPU-bound calls, blocking facades that are safe anywhere, thread-affine workers, IO
//! adapters and virtual time across both sides.
//!
//! A large codebase cannot switch from blocking to async code in one go. For months, new
//! async code calls old blocking code, and old sync callers call new async code. Each
//! crossing has a trap: a blocking call on the executor stalls every task on that
//! thread, a burst of `spawn_blocking` calls takes hundreds of threads, panics in
//! offloaded code vanish, and a sync facade over async code panics inside a runtime.
//! This crate makes each crossing one call, with limits, timeouts, cancellation and
//! panics handled, measured beside the raw tokio and rayon calls it builds on.
//!
//! # Examples
//!
//! Blocking code behind an async API, on tokio's blocking pool:
//!
//! ```
//! use async_bridge::unblock;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let listing = unblock(|| std::fs::read_dir(".").map(|dir| dir.count())).await;
//! assert!(listing.unwrap() > 0);
//! # });
//! ```
//!
//! Many calls into one legacy system, bounded, with a timeout:
//!
//! ```
//! use std::time::Duration;
//! use async_bridge::Offloader;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let db = Offloader::builder("legacy-db")
//!     .max_concurrency(8)
//!     .max_queue(1_000)
//!     .timeout(Duration::from_secs(2))
//!     .build()?;
//! let answer = db.run(|| 6 * 7).await?;
//! assert_eq!(answer, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! CPU-bound work on rayon:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let checksum = async_bridge::compute(|| (0u32..10_000).fold(0u32, |h, x| h.rotate_left(5) ^ x)).await;
//! # let _ = checksum;
//! # });
//! ```
//!
//! A std file (or any `Read`, `Write`, `Seek` or `Iterator`) with an async face, as fast
//! as `std`, positions exact:
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncSeekExt};
//! use async_bridge::Unblock;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut manifest = Unblock::new(std::fs::File::open("Cargo.toml")?);
//! let mut head = [0; 9];
//! manifest.read_exact(&mut head).await?;
//! assert_eq!(&head, b"[package]");
//! assert_eq!(manifest.stream_position().await?, 9);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! A legacy object that must stay on one thread (here a SQLite connection), owned by a
//! worker thread and called from async code (old sync callers use `call_blocking`):
//!
//! ```
//! use async_bridge::Worker;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let db = Worker::builder("orders-db").spawn(rusqlite::Connection::open_in_memory)?;
//! db.call(|conn| conn.execute_batch("CREATE TABLE orders (total INTEGER)")).await??;
//! db.call(|conn| conn.execute("INSERT INTO orders VALUES (42)", [])).await??;
//! let total: i64 = db.call(|c| c.query_row("SELECT SUM(total) FROM orders", [], |r| r.get(0))).await??;
//! assert_eq!(total, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Old sync code calling new async code, safe from any thread (inside a runtime too):
//!
//! ```
//! async fn fetch_user(id: u32) -> String {
//!     tokio::task::yield_now().await;
//!     format!("user-{id}")
//! }
//!
//! fn legacy_handler(id: u32) -> Result<String, async_bridge::BlockOnError> {
//!     async_bridge::block_on(fetch_user(id))
//! }
//! assert_eq!(legacy_handler(7).unwrap(), "user-7");
//! ```
//!
//! # One vocabulary
//!
//! - **Builders** finish with `build()` when they only construct
//!   ([`Offloader`], [`ComputePool`],
//!   [`Portal`]), `spawn()` when they start a thread and run your maker on
//!   it ([`Worker`], [`WorkerPool`]: it can fail as your
//!   maker does, so it returns a [`WorkerError`]), and `start()` for
//!   the watchdog, which begins watching at once. Every builder is reached by
//!   `Type::builder(..)` (taking a name where the handle names threads or a lane); the
//!   worker builders also carry the object's type
//!   (`WorkerBuilder<T>`, inferred from the maker), so the closures that take the object
//!   (`interrupter`, `on_lease_abandoned`) are checked against it when compiling.
//! - **Shut down** is `is_shutdown()` on every error, and `io::ErrorKind::BrokenPipe` when
//!   an error becomes an `io::Error`; no error of the crate maps to `Interrupted` or
//!   `WouldBlock`, which std's loops retry.
//! - **Panics**: free functions resume them in the caller, handles return them as
//!   `is_panic()` errors (README's "which tool?" table).
//! - **Stats** have one shape, [`Stats`], for every handle that has them.
//!
//! # Features
//!
//! - `tracing`: every offloaded job runs inside a `tracing` span naming its kind, lane and
//!   call site.
//! - `test-util`: the virtual-time test harness.
//! - `futures-io`: futures' IO traits (`futures::io::AsyncRead`, …) on `Unblock<T>`
//!   (`Blocking<T>` keeps tokio's: implementing both for one generic type would conflict).
//! - `tower`: lanes, compute pools and workers as `tower::Service`s whose `poll_ready`
//!   is admission (`Offloader::service` and the other carriers'), and a blocking face over any
//!   `tower::Service` (`BlockingService`).

#![forbid(unsafe_code)]
// The loom models swap some pieces for stand-ins (`sync`): what they leave unused is expected.
#![cfg_attr(all(test, async_bridge_loom), allow(dead_code, unused_imports))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod blocking;
mod bridge;
pub mod clock;
mod compute;
pub mod context;
mod error;
mod interrupt;
mod job;
mod lane;
pub mod ledger;
mod look;
mod origin;
mod seam;
#[cfg(feature = "tower")]
mod service;
mod shutdown;
mod stats;
mod sync;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod timer;
mod trace;
mod unblock;
pub mod watchdog;
mod worker;

#[doc = include_str!("bridge/bridge.md")]
pub use async_bridge_macros::bridge;
pub use blocking::{block_on, BlockOnError, Blocking, Portal, PortalBuilder};
#[doc(hidden)]
pub use bridge::private as __private;
pub use bridge::{CallError, Offloaded};
pub use compute::{compute, ComputePool, ComputePoolBuilder};
pub use error::ConfigError;
pub use lane::OffloadCall;
pub use ledger::{Crossing, Ledger};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service::{BlockingService, Cancellable, LaneService, WorkerCall, WorkerService};
pub use shutdown::{InterruptedCall, ShutdownReport};
pub use stats::{Percentiles, Stats};
/// The token handed to `run_cancellable`/`call_cancellable` closures, re-exported so that
/// users need no direct `tokio-util` dependency to name it.
pub use tokio_util::sync::CancellationToken;
pub use unblock::{unblock, OffloadError, Offloader, OffloaderBuilder, Unblock};
pub use worker::{
    AfterPanic, Lease, Worker, WorkerBuilder, WorkerError, WorkerPool, WorkerPoolBuilder,
};

/// A snapshot of the migration ledger: every crossing of the bridge by call site, while
/// [`ledger::enable`] is on. See [`ledger`](mod@ledger).
///
/// # Examples
///
/// ```
/// async_bridge::ledger::enable();
/// async_bridge::block_on(async {}).unwrap();
/// assert!(async_bridge::ledger().total() >= 1);
/// ```
pub fn ledger() -> Ledger {
    ledger::snapshot()
}

/// The code blocks of README.md and MIGRATION.md, compiled and run as doc tests (they
/// use the `test-util` harness and the `tower` services, so they run with
/// `--all-features`).
#[cfg(all(doctest, feature = "test-util", feature = "tower"))]
#[doc = include_str!("../README.md")]
#[doc = include_str!("../MIGRATION.md")]
pub struct GuideDoctests;
