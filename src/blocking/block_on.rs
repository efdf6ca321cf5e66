//! `block_on`: run a future to completion from sync code, on the global portal.

use std::future::Future;
use std::panic::Location;

use super::entry;
use super::BlockOnError;

/// Runs a future to completion from sync code and returns its output.
///
/// The blocking facade for old sync callers of new async code. The future is polled on
/// the calling thread (so it may borrow locals and need not be `Send`) with the global
/// [`Portal`](crate::Portal)'s runtime context entered: tokio timers, IO and
/// `tokio::spawn` inside it work, driven by the portal's worker threads. The portal is a
/// small multi-thread runtime started on first use. From a plain thread, a call of a
/// ready future costs tens of nanoseconds, 0.93–0.96× the time of tokio's
/// `Handle::block_on` on a kept runtime (README's performance table,
/// `cargo bench --bench facade`).
///
/// Unlike `Runtime::block_on`, it is safe to call from anywhere it can work:
///
/// | called from | result |
/// |---|---|
/// | a plain thread, a rayon thread, a dedicated thread | runs |
/// | a task on a multi-thread runtime's worker | runs inside `block_in_place`: the worker's other tasks move to another thread and keep running |
/// | a blocking pool thread (`spawn_blocking`, [`unblock`](crate::unblock)), of any runtime | runs |
/// | a future inside another `block_on` (nested, any depth) | runs |
/// | the thread of a current_thread runtime (`#[tokio::test]`, `#[tokio::main(flavor = "current_thread")]`, a `LocalSet`), a second thread inside such a runtime's `Runtime::block_on`, or a `LocalSet` inside a multi-thread runtime's `block_on` | refused with [`is_would_deadlock`](BlockOnError::is_would_deadlock), the future unpolled |
///
/// Why the last case cannot work: that thread is the only one that runs its runtime's
/// tasks. Blocking it stalls all of them, and if the future waits for any of them (a
/// channel fed by a spawned task, a response its server task must send), it never
/// finishes. Whether it would cannot be known from outside, so the call is refused,
/// with a message that names the caller's location. The fix is to move the sync caller
/// onto a blocking thread: `async_bridge::unblock(move || legacy_sync_code()).await`
/// (there, the current_thread runtime keeps running its tasks while the facade blocks).
///
/// A second thread inside a current_thread runtime's `Runtime::block_on` (while another
/// thread holds its scheduler) is refused too: it must stay free to take the scheduler
/// over when that thread leaves, and tokio itself forbids blocking there (its
/// `blocking_*` calls panic).
///
/// Refusals are decided beforehand, with tokio's public queries, and need no unwinding:
/// they hold under `panic = "abort"` — with two exceptions. A `LocalSet` polled inside a
/// multi-thread runtime's `Runtime::block_on` (`LocalSet::block_on(&runtime, ..)`), and
/// a second thread inside a current_thread runtime's `Runtime::block_on`, are marked
/// only in a private flag of tokio's thread context, read by nothing public but
/// `tokio::task::block_in_place`, which panics there (so does the rarer thread of a
/// current_thread runtime that entered a multi-thread runtime's handle with
/// `Handle::enter` inside its own task); the facade catches that panic
/// before polling the future and returns the same refusal, but under `panic = "abort"`
/// the process aborts (and a custom panic hook sees the panic). On a multi-thread
/// runtime, run a `LocalSet` on a worker or a blocking thread instead, or call the
/// facade from a thread the `LocalSet` does not poll.
///
/// # When not to use it
///
/// - In async code, `.await` the future instead.
/// - To call one async object many times from sync code, wrap it in a
///   [`Blocking<T>`](crate::Blocking).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// // A sync function in a legacy codebase, calling new async code.
/// fn legacy_report(ids: &[u32]) -> Result<u32, async_bridge::BlockOnError> {
///     async_bridge::block_on(async {
///         tokio::time::sleep(Duration::from_millis(1)).await;
///         ids.iter().sum()   // the future borrows `ids`: no 'static bound
///     })
/// }
///
/// assert_eq!(legacy_report(&[1, 2, 3]).unwrap(), 6);
/// ```
///
/// Nested inside itself, and from inside a multi-thread runtime:
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let outer = async_bridge::block_on(async {
///     async_bridge::block_on(async { 20 }).unwrap() + 22
/// });
/// assert_eq!(outer.unwrap(), 42);
/// # }
/// ```
///
/// # Errors
///
/// - [`is_would_deadlock`](BlockOnError::is_would_deadlock): the caller is the thread of
///   a current_thread runtime (see above).
/// - [`is_no_runtime`](BlockOnError::is_no_runtime): the global portal could not start.
///
/// # Panics
///
/// A panic in the future resumes in the caller with its payload, as a panic in the sync
/// code it replaces would. ([`Portal::block_on`](crate::Portal::block_on) returns it as
/// an error instead.)
#[track_caller]
pub fn block_on<F: Future>(future: F) -> Result<F::Output, BlockOnError> {
    entry::enter(None, Location::caller(), future, entry::Panics::Resume)
}
