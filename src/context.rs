//! Context that follows work across the bridge: tokio task-locals the user declares
//! (opt-in per key) and, with the `tracing` feature, the caller's span.
//!
//! asgiref copies every contextvar into and out of the thread; asyncio's
//! `run_in_executor` copies none (cpython #78195). Copying every task-local blindly
//! would ship bugs (a per-task cache, a connection handle), so here nothing crosses
//! unless its key is declared with [`carry`]. A declared key's value is captured when
//! work is submitted, on the caller's task, and set for the duration of the offloaded
//! closure with tokio's `LocalKey::sync_scope`, so sync code inside reads it with
//! `KEY.get()` or `KEY.with(..)` like async code does.
//!
//! - **Which work:** every kind that goes through the job layer: [`unblock`](crate::unblock),
//!   [`Offloader`](crate::Offloader), [`compute`](crate::compute),
//!   [`ComputePool`](crate::ComputePool), [`Worker`](crate::Worker) and
//!   [`WorkerPool`](crate::WorkerPool) calls (and leases), `Unblock<T>` hops, twin calls.
//! - **Back to the caller:** task-locals are immutable; to see changes made inside the
//!   closure, carry a shared cell (`Arc<Mutex<T>>`, an atomic): both sides hold the same
//!   one.
//! - **Facades:** [`block_on`](crate::block_on) polls its future on the calling thread,
//!   so a value the sync caller set (a `sync_scope`, a thread-local) is visible to the
//!   async code it runs, with nothing to declare. (asgiref's `async_to_sync` runs the
//!   coroutine on another thread, which is why it must copy.)
//! - **Cost:** with nothing declared and no `tracing` span, one relaxed atomic load per
//!   submission.
//!
//! # Examples
//!
//! ```
//! tokio::task_local! {
//!     static REQUEST_ID: u64;
//! }
//!
//! async_bridge::context::carry(&REQUEST_ID);
//!
//! // Legacy sync code that logs the request id it runs for.
//! fn legacy_lookup(sku: u32) -> String {
//!     format!("request {} looked up sku {sku}", REQUEST_ID.get())
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let line = REQUEST_ID
//!     .scope(42, async { async_bridge::unblock(|| legacy_lookup(7)).await })
//!     .await;
//! assert_eq!(line, "request 42 looked up sku 7");
//! # });
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use tokio::task::LocalKey;

use crate::trace;

/// Declares that `key`'s value crosses the bridge with every piece of work submitted
/// from now on, process-wide: captured on the submitting task, set (with
/// `LocalKey::sync_scope`) while the closure runs. Declaring a key twice has no further
/// effect. See the [module docs](self).
///
/// A task that has no value for the key submits work without it (reading it inside
/// the closure then panics, as it would in the task).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// tokio::task_local! {
///     static AUDIT: Arc<Mutex<Vec<String>>>;
/// }
/// async_bridge::context::carry(&AUDIT);
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let audit = Arc::new(Mutex::new(Vec::new()));
/// AUDIT
///     .scope(Arc::clone(&audit), async {
///         // The legacy code appends to the caller's audit trail: a shared cell carries
///         // its changes back.
///         async_bridge::unblock(|| AUDIT.with(|a| a.lock().unwrap().push("legacy write".into())))
///             .await;
///     })
///     .await;
/// assert_eq!(*audit.lock().unwrap(), ["legacy write"]);
/// # });
/// ```
pub fn carry<T: Clone + Send + 'static>(key: &'static LocalKey<T>) {
    let key: &'static dyn Key = key;
    let mut keys = KEYS.write();
    if !keys.iter().any(|k| k.addr() == key.addr()) {
        keys.push(key);
    }
    ANY.store(true, Ordering::Release);
}

/// Keys declared with [`carry`].
static KEYS: RwLock<Vec<&'static dyn Key>> = RwLock::new(Vec::new());
/// Set once any key is declared: the fast path checks only this.
static ANY: AtomicBool = AtomicBool::new(false);

/// A declared key, type-erased.
trait Key: Sync {
    /// Its value on the current task, if it has one.
    fn capture(&'static self) -> Option<Box<dyn Value>>;
    /// Its identity.
    fn addr(&self) -> usize;
}

impl<T: Clone + Send + 'static> Key for LocalKey<T> {
    fn capture(&'static self) -> Option<Box<dyn Value>> {
        let value = self.try_with(T::clone).ok()?;
        Some(Box::new(Captured { key: self, value }))
    }

    fn addr(&self) -> usize {
        self as *const LocalKey<T> as usize
    }
}

/// A captured value, ready to be set around the closure.
trait Value: Send {
    fn enter(self: Box<Self>, f: &mut dyn FnMut());
}

struct Captured<T: 'static> {
    key: &'static LocalKey<T>,
    value: T,
}

impl<T: Send + 'static> Value for Captured<T> {
    fn enter(self: Box<Self>, f: &mut dyn FnMut()) {
        let Captured { key, value } = *self;
        key.sync_scope(value, f);
    }
}

/// What a piece of work carries from its submitter: declared task-locals and the
/// caller's span.
pub(crate) struct Context {
    values: Vec<Box<dyn Value>>,
    span: Option<trace::Parent>,
}

impl Context {
    /// Captures the submitting task's context; `None` when there is nothing to carry.
    #[inline]
    pub(crate) fn capture() -> Option<Box<Context>> {
        let span = trace::Parent::current();
        let values = if ANY.load(Ordering::Acquire) {
            KEYS.read().iter().filter_map(|key| key.capture()).collect()
        } else {
            Vec::new()
        };
        if values.is_empty() && span.is_none() {
            return None;
        }
        Some(Box::new(Context { values, span }))
    }

    /// The caller's span, the parent of the work's own.
    pub(crate) fn span(&self) -> Option<&trace::Parent> {
        self.span.as_ref()
    }

    /// Runs `f` with the carried task-locals set.
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        let mut values = self.values;
        if values.is_empty() {
            return f();
        }
        let mut f = Some(f);
        let mut out = None;
        enter_all(&mut values, &mut || out = f.take().map(|f| f()));
        out.expect("the closure ran")
    }
}

fn enter_all(values: &mut Vec<Box<dyn Value>>, f: &mut dyn FnMut()) {
    match values.pop() {
        None => f(),
        Some(value) => value.enter(&mut || enter_all(values, f)),
    }
}
