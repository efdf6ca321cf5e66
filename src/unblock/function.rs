//! `unblock`: one blocking call on tokio's blocking pool, awaited.

use std::future::Future;
use std::panic::Location;

use tokio::runtime::Handle;

use crate::job::{self, Outcome};
use crate::origin::{Kind, Origin};

/// Runs blocking code on tokio's blocking pool and awaits its result.
///
/// The closure runs on a `spawn_blocking` thread, so tokio's paused clock and runtime
/// metrics see it, and the executor never blocks. (Under the
/// [`testing`](crate::testing) harness it runs on a thread of the harness instead, so
/// that it can sleep on the virtual clock.) Nothing happens until the future is
/// first polled; if it is dropped before `f` has started, `f` never runs.
///
/// Use it for the odd blocking call (a file read, a DNS lookup, a legacy SDK call). For
/// many calls into one legacy system, use an [`Offloader`](crate::Offloader) so that a
/// burst cannot take hundreds of threads; for CPU-heavy work, use
/// [`compute`](crate::compute).
///
/// # Examples
///
/// ```
/// use async_bridge::unblock;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A legacy, blocking function.
/// fn checksum(data: &[u8]) -> u32 {
///     data.iter().map(|&b| u32::from(b)).sum()
/// }
///
/// let data = vec![1u8, 2, 3];
/// let sum = unblock(move || checksum(&data)).await;
/// assert_eq!(sum, 6);
/// # });
/// ```
///
/// # Panics
///
/// A panic in `f` resumes in the caller when the future is awaited, with its payload,
/// just as it would have panicked in the sync code.
///
/// Polling the future outside a tokio runtime panics with a message that says so and
/// names the call site; run it inside one, or use [`compute`](crate::compute), which
/// needs no runtime.
#[track_caller]
pub fn unblock<F, T>(f: F) -> impl Future<Output = T> + Send
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let site = Location::caller();
    async move {
        let Ok(handle) = Handle::try_current() else {
            panic!(
                "async_bridge::unblock at {site} was polled outside a tokio runtime: \
                 await it inside one (e.g. #[tokio::main]), or use async_bridge::compute"
            );
        };
        let (ticket, reply) = job::pair(Origin::new(Kind::Unblock, None, site), None);
        // The JoinHandle is not needed: the reply carries the outcome, and a runtime that
        // shuts down drops the ticket, which the reply reports as `Dropped`.
        job::spawn_blocking(&handle, move || {
            ticket.run(|_| f());
        });
        match reply.await {
            Outcome::Completed(value) => value,
            Outcome::Panicked(payload) => job::resume(payload),
            Outcome::Dropped => panic!(
                "async_bridge::unblock at {site}: the runtime shut down before the closure ran"
            ),
        }
    }
}
