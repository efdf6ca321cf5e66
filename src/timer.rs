//! Timers that fail with `None` instead of a panic from inside tokio, and a grace-period
//! deadline that holds on any executor.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::time::Sleep;

/// A tokio sleep of `after` on `handle`'s timer, or `None` when that runtime was built
/// without timers (where tokio itself would panic).
pub(crate) fn sleep_on(handle: &Handle, after: Duration) -> Option<Sleep> {
    let _entered = handle.enter();
    has_timers(handle).then(|| tokio::time::sleep(after))
}

/// Whether `handle`'s runtime was built with timers.
///
/// tokio has no public query for this (tokio-rs/tokio#8361), so the first question
/// about a runtime creates a timer under `catch_unwind` and the answer is kept by runtime
/// id: tokio's panic, and the panic hook's report of it, happen at most once per runtime
/// without timers, never per call. Under `panic = "abort"` that one probe aborts the
/// process: build runtimes that this crate times with `enable_time` (or `enable_all`).
pub(crate) fn has_timers(handle: &Handle) -> bool {
    /// Runtimes asked about, newest last; a few dozen at most are alive at once.
    static KNOWN: Mutex<Vec<(tokio::runtime::Id, bool)>> = Mutex::new(Vec::new());
    const REMEMBERED: usize = 64;
    let id = handle.id();
    if let Some(&(_, known)) = KNOWN.lock().iter().find(|(i, _)| *i == id) {
        return known;
    }
    let _entered = handle.enter();
    let answer = panic::catch_unwind(AssertUnwindSafe(|| {
        drop(tokio::time::sleep(Duration::ZERO))
    }))
    .is_ok();
    let mut known = KNOWN.lock();
    if known.len() >= REMEMBERED {
        known.remove(0);
    }
    known.push((id, answer));
    answer
}

/// The end of a grace period: a tokio timer when the caller is in a runtime with timers,
/// otherwise a helper thread that waits it out (and ends early once the deadline is
/// dropped), so that the bound holds on any executor.
pub(crate) enum Deadline {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Thread {
        fired: oneshot::Receiver<()>,
        /// Dropped with the deadline: wakes the helper thread so it ends at once.
        _dropped: mpsc::Sender<()>,
    },
    Now,
}

impl Deadline {
    pub(crate) fn new(grace: Duration) -> Self {
        if grace.is_zero() {
            return Deadline::Now;
        }
        if let Some(sleep) = Handle::try_current()
            .ok()
            .and_then(|handle| sleep_on(&handle, grace))
        {
            return Deadline::Tokio(Box::pin(sleep));
        }
        Deadline::thread(grace)
    }

    /// A deadline on a tokio timer.
    pub(crate) fn tokio(sleep: Sleep) -> Self {
        Deadline::Tokio(Box::pin(sleep))
    }

    /// A deadline timed by a helper thread, in real time: it holds on any executor and
    /// outlives any runtime. Fires at once if no thread can be started.
    pub(crate) fn thread(grace: Duration) -> Self {
        let (fire, fired) = oneshot::channel();
        let (dropped, wait) = mpsc::channel::<()>();
        let helper = std::thread::Builder::new()
            .name("async-bridge-grace-timer".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(grace) {
                    let _ = fire.send(());
                }
            });
        match helper {
            Ok(_) => Deadline::Thread {
                fired,
                _dropped: dropped,
            },
            // No thread to time the grace with: do not wait at all rather than unbounded.
            Err(_) => Deadline::Now,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Deadline::Tokio(sleep) => sleep.as_mut().poll(cx),
            Deadline::Thread { fired, .. } => Pin::new(fired).poll(cx).map(drop),
            Deadline::Now => Poll::Ready(()),
        }
    }
}
