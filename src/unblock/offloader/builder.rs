//! [`OffloaderBuilder`]: a lane's limits, timeout and runtime.

use std::time::Duration;

use tokio::runtime::Handle;

use super::Offloader;
use crate::error::ConfigError;
use crate::lane::{Lane, Runner};
use std::sync::Arc;

/// Builds an [`Offloader`]; see [`Offloader::builder`].
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// let lane = Offloader::builder("legacy-sdk").max_concurrency(4).max_queue(64).build().unwrap();
/// assert_eq!(lane.name(), "legacy-sdk");
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct OffloaderBuilder {
    pub(super) name: String,
    pub(super) max_concurrency: usize,
    pub(super) max_queue: usize,
    pub(super) timeout: Option<Duration>,
    pub(super) handle: Option<Handle>,
}

impl OffloaderBuilder {
    /// At most this many closures of the lane run at once (default 16). Must be at least 1.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// At most this many callers wait for a slot (default 1024); more are rejected at
    /// once. Zero means no waiting: a call that finds every slot busy is rejected.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// Fails a call that has not finished within `after`, waiting plus running, with
    /// [`is_timeout`](crate::OffloadError::is_timeout), and cancels its token. Must not be zero.
    /// The runtime must have timers enabled.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Runs the lane's closures on this runtime's blocking pool, wherever the calls come
    /// from (by default, the runtime current when a call is first polled).
    pub fn handle(mut self, handle: Handle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Builds the lane.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `max_concurrency` is zero or the timeout is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use async_bridge::Offloader;
    ///
    /// assert!(Offloader::builder("a").build().is_ok());
    /// let err = Offloader::builder("b").timeout(Duration::ZERO).build().unwrap_err();
    /// assert!(err.to_string().contains("timeout must not be zero"));
    /// ```
    pub fn build(self) -> Result<Offloader, ConfigError> {
        if self.max_concurrency == 0 {
            return Err(ConfigError::new(
                &self.name,
                "max_concurrency must be at least 1",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(&self.name, "timeout must not be zero"));
        }
        Ok(Offloader {
            lane: Arc::new(Lane::new(
                self.name.into(),
                self.max_concurrency,
                self.max_queue,
                self.timeout,
                Runner::Blocking(self.handle),
            )),
        })
    }
}
