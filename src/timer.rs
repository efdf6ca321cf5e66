//! Timers that fail with `None` instead of a panic from inside tokio.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Sleep;

/// A tokio sleep of `after` on `handle`'s timer, or `None` when that runtime was built
/// without timers (where tokio itself would panic).
///
/// tokio offers no way to ask whether a runtime has timers, so this catches tokio's
/// panic; the panic hook still prints tokio's message once.
pub(crate) fn sleep_on(handle: &Handle, after: Duration) -> Option<Sleep> {
    let _entered = handle.enter();
    panic::catch_unwind(AssertUnwindSafe(|| tokio::time::sleep(after))).ok()
}
