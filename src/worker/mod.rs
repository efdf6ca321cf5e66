//! Thread-affine legacy objects behind an async API: [`Worker<T>`] (one thread owns the
//! object) and [`WorkerPool<T>`] (several, each with its own object).
//!
//! - `builder`: the builders and the panic policy ([`AfterPanic`]);
//! - `mailbox`: the bounded FIFO queue between callers and a worker's thread, and the
//!   call future (every call is a job of the crate's job layer);
//! - `handle`: [`Worker`], the handle on one worker;
//! - `pool`: [`WorkerPool`];
//! - `thread`: the worker's thread (maker, calls, panic policy, the object's drop) and
//!   which worker group the current thread belongs to;
//! - `lease`: [`Lease`], several ordered calls on one object across awaits;
//! - `shutdown`: the bounded shutdown and its report;
//! - `error`: [`WorkerError`].

mod builder;
mod error;
mod handle;
mod lease;
#[cfg(all(test, async_bridge_loom))]
mod loom;
mod mailbox;
mod pool;
mod shutdown;
mod thread;

pub use builder::{AfterPanic, WorkerBuilder, WorkerPoolBuilder};
pub use error::WorkerError;
pub use handle::Worker;
pub use lease::Lease;
pub use pool::WorkerPool;

#[cfg(feature = "tower")]
pub(crate) use mailbox::Call;
