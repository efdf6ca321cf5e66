//! `Offloaded<T>`: a shared, thread-safe legacy value whose methods run on an `Offloader`
//! lane.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{OffloadError, Offloader};

/// A thread-safe legacy value (`T: Send + Sync`) whose blocking methods run on an
/// [`Offloader`] lane, with the lane's limits, queue bound and timeout: the lane carrier
/// of the async twins that [`bridge`](crate::bridge) generates.
///
/// Where a [`Worker`](crate::Worker) gives a thread-affine object one thread of its own,
/// `Offloaded<T>` suits a value that is already safe to share (a connection pool, an SDK
/// client behind an `Arc`): its `&self` methods run in parallel, as many at once as the
/// lane admits; callers beyond the lane's queue bound are rejected at once
/// ([`is_rejected`](OffloadError::is_rejected)), and a call that outlasts the lane's
/// timeout fails with [`is_timeout`](OffloadError::is_timeout).
///
/// The value sits behind a read-write lock, taken on the lane's thread, never on the
/// executor: [`run`](Self::run) (a twin's `&self` methods) takes it shared, so those run in
/// parallel; [`run_mut`](Self::run_mut) (a twin's `&mut self` methods) takes it exclusive,
/// waiting on its lane thread for the running readers to finish. A method that panics
/// releases the lock (it is not poisoned) and the next calls go on.
///
/// Clones share the value and the lane.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::{Offloaded, Offloader};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("rates").max_concurrency(4).timeout(Duration::from_secs(5)).build()?;
/// let rates = Offloaded::new(vec![1.0_f64, 1.1, 0.9], lane);
/// let sum = rates.run(|r| r.iter().sum::<f64>()).await?;
/// assert!((sum - 3.0).abs() < 1e-9);
/// rates.run_mut(|r| r.push(1.0)).await?;
/// assert_eq!(rates.run(|r| r.len()).await?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Offloaded<T> {
    value: Arc<RwLock<T>>,
    lane: Offloader,
}

impl<T: Send + Sync + 'static> Offloaded<T> {
    /// Shares `value` with `lane`'s threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let lane = async_bridge::Offloader::builder("sdk").build().unwrap();
    /// let sdk = async_bridge::Offloaded::new(String::from("client"), lane);
    /// assert_eq!(sdk.lane().name(), "sdk");
    /// ```
    pub fn new(value: T, lane: Offloader) -> Self {
        Offloaded {
            value: Arc::new(RwLock::new(value)),
            lane,
        }
    }

    /// The lane the calls run on (for its [`stats`](Offloader::stats) and
    /// [`shutdown`](Offloader::shutdown)).
    ///
    /// # Examples
    ///
    /// ```
    /// let lane = async_bridge::Offloader::builder("sdk").build().unwrap();
    /// let sdk = async_bridge::Offloaded::new((), lane);
    /// assert_eq!(sdk.lane().stats().completed, 0);
    /// ```
    pub fn lane(&self) -> &Offloader {
        &self.lane
    }

    /// The shared value, for its `tower::Service` face.
    #[cfg(feature = "tower")]
    pub(crate) fn value(&self) -> &Arc<RwLock<T>> {
        &self.value
    }

    /// Runs `f` with a shared borrow of the value on the lane, and awaits its value.
    ///
    /// Everything is as in [`Offloader::run`]: nothing happens until the future is
    /// polled, a future dropped while waiting leaves no trace, and the call site recorded
    /// (for the watchdog, reports and tracing) is the caller's.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("words").build().unwrap();
    /// let words = async_bridge::Offloaded::new(vec!["a", "b"], lane);
    /// assert_eq!(words.run(|w| w.join("+")).await.unwrap(), "a+b");
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Offloader::run`]: a panic, the lane's timeout, a full queue, a shut-down
    /// lane, or no runtime.
    #[track_caller]
    pub fn run<F, R>(&self, f: F) -> impl Future<Output = Result<R, OffloadError>> + Send
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let value = Arc::clone(&self.value);
        self.lane.run(move || f(&value.read()))
    }

    /// Runs `f` with the value borrowed exclusively on the lane, and awaits its value.
    ///
    /// The lock is taken on the lane's thread: the call waits there (holding its lane
    /// slot) for running [`run`](Self::run) calls to finish.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("counter").build().unwrap();
    /// let counter = async_bridge::Offloaded::new(0u32, lane);
    /// counter.run_mut(|n| *n += 1).await.unwrap();
    /// assert_eq!(counter.run(|n| *n).await.unwrap(), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    #[track_caller]
    pub fn run_mut<F, R>(&self, f: F) -> impl Future<Output = Result<R, OffloadError>> + Send
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let value = Arc::clone(&self.value);
        self.lane.run(move || f(&mut value.write()))
    }
}

impl<T> Clone for Offloaded<T> {
    fn clone(&self) -> Self {
        Offloaded {
            value: Arc::clone(&self.value),
            lane: self.lane.clone(),
        }
    }
}

impl<T> fmt::Debug for Offloaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offloaded")
            .field("type", &std::any::type_name::<T>())
            .field("lane", &self.lane)
            .finish()
    }
}
