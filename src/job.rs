//! The one layer under every offload.
//!
//! Every path that runs work off the executor (`unblock`, `Offloader`, `compute`,
//! `ComputePool`, and the kinds that come later) submits it here and gets two halves back:
//! a [`Ticket`] that travels to the thread that runs the work, and a [`Reply`] future
//! that the caller awaits. The layer owns what every offload must get right the same way:
//!
//! - **cancel before start**: a [`Ticket`] whose [`Reply`] was dropped never runs its
//!   closure;
//! - **cancellation after start**: the optional `CancellationToken` handed to the closure
//!   is cancelled when the [`Reply`] is dropped (a caller that gave up or timed out);
//! - **panics are never lost**: the closure runs under `catch_unwind` and the payload is
//!   delivered to the caller as [`Outcome::Panicked`];
//! - **ordering**: the result is delivered *before* the ticket is let go of, which is the
//!   rule the virtual-time harness depends on;
//! - **who and where**: the [`Origin`] (kind, lane or worker name, call site) of each job,
//!   used in errors, reports and tracing spans.
//!
//! The reply channel is `futures`' oneshot on purpose: unlike tokio's, it does not take
//! from tokio's cooperative budget, so ten thousand replies awaited in one `join_all` are
//! not re-polled over and over (the reason naive rayon bridges run 5x slower).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use tokio_util::sync::CancellationToken;

/// A panic payload, as `std::panic::catch_unwind` returns it.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// Which kind of offload a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `unblock` on tokio's blocking pool.
    Unblock,
    /// An `Offloader` lane.
    Offload,
    /// `compute` or a `ComputePool`, on rayon.
    Compute,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Unblock => "unblock",
            Kind::Offload => "offload",
            Kind::Compute => "compute",
        }
    }
}

/// Who submitted a job: its kind, its lane (or worker, or pool) name and its call site.
#[derive(Clone)]
pub(crate) struct Origin {
    pub(crate) kind: Kind,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) site: &'static Location<'static>,
}

impl Origin {
    pub(crate) fn new(
        kind: Kind,
        name: Option<Arc<str>>,
        site: &'static Location<'static>,
    ) -> Self {
        Origin { kind, name, site }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(
                f,
                "{} `{}` called at {}",
                self.kind.as_str(),
                name,
                self.site
            ),
            None => write!(f, "{} called at {}", self.kind.as_str(), self.site),
        }
    }
}

/// How a job ended, as its caller sees it.
pub(crate) enum Outcome<T> {
    /// The closure returned.
    Done(T),
    /// The closure panicked; the payload is intact.
    Panicked(Panic),
    /// The ticket was dropped without running: the queue it sat in was cleared, or the
    /// pool or runtime that was to run it went away.
    Dropped,
}

/// What a [`Ticket`] did with its closure, for the counters of the handle that ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The caller had gone away before the start: the closure was not run.
    Skipped,
    /// The closure returned.
    Completed,
    /// The closure panicked.
    Panicked,
}

/// Submits a job: the ticket goes to the thread that runs it, the reply to the caller.
///
/// With `cancel` set, the closure is handed a token that is cancelled when the reply is
/// dropped; pass a child of a lane's token to have shutdown cancel it too.
pub(crate) fn submit<T>(
    origin: Origin,
    cancel: Option<CancellationToken>,
) -> (Ticket<T>, Reply<T>) {
    let (tx, rx) = oneshot::channel();
    let ticket = Ticket {
        tx,
        cancel: cancel.clone(),
        origin,
    };
    (ticket, Reply { rx, cancel })
}

/// The runner's half of a job.
pub(crate) struct Ticket<T> {
    tx: oneshot::Sender<Outcome<T>>,
    cancel: Option<CancellationToken>,
    origin: Origin,
}

impl<T> Ticket<T> {
    /// Runs `f` on this thread unless the caller has already gone away, and delivers the
    /// outcome to the caller before returning.
    ///
    /// `f` gets the job's cancellation token when the job was submitted with one.
    pub(crate) fn run<F>(self, f: F) -> Ran
    where
        F: FnOnce(Option<&CancellationToken>) -> T,
    {
        self.run_and(f, |_| {})
    }

    /// As [`run`](Self::run), calling `before_reply` once `f` has returned or panicked
    /// (or was skipped) and before the caller can see the outcome, so that a handle's own bookkeeping is
    /// up to date by the time its caller looks.
    pub(crate) fn run_and<F>(self, f: F, before_reply: impl FnOnce(Ran)) -> Ran
    where
        F: FnOnce(Option<&CancellationToken>) -> T,
    {
        if self.tx.is_canceled() {
            before_reply(Ran::Skipped);
            return Ran::Skipped;
        }
        #[cfg(feature = "tracing")]
        let _span = tracing::debug_span!(
            "async_bridge::job",
            kind = self.origin.kind.as_str(),
            name = self.origin.name.as_deref().unwrap_or(""),
            site = %self.origin.site,
        )
        .entered();
        let cancel = self.cancel.as_ref();
        let (ran, outcome) = match panic::catch_unwind(AssertUnwindSafe(|| f(cancel))) {
            Ok(value) => (Ran::Completed, Outcome::Done(value)),
            Err(payload) => (Ran::Panicked, Outcome::Panicked(payload)),
        };
        before_reply(ran);
        // The caller may have gone away meanwhile; then the value is dropped here.
        let _ = self.tx.send(outcome);
        ran
    }
}

impl<T> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("origin", &self.origin)
            .finish()
    }
}

/// The caller's half of a job: resolves to its [`Outcome`].
///
/// Dropping it before the job starts means the job never starts; dropping it after
/// cancels the job's token, if it has one.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Reply<T> {
    rx: oneshot::Receiver<Outcome<T>>,
    cancel: Option<CancellationToken>,
}

impl<T> Future for Reply<T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Outcome::Dropped))
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(token) = &self.cancel {
            token.cancel();
        }
    }
}

/// Resumes a panic payload in the current thread, as the sync code would have panicked.
pub(crate) fn resume(payload: Panic) -> ! {
    panic::resume_unwind(payload)
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &Panic) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
