//! `OffloadError`: why a call through a configured offload handle did not return a value.

use std::error::Error;
use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::error::PanicPayload;
use crate::job::Panic;
use crate::origin::Kind;

/// Why a call through an [`Offloader`](crate::Offloader) or a
/// [`ComputePool`](crate::ComputePool) did not return the closure's value.
///
/// One opaque type with a predicate per cause, like tokio's `JoinError`. The message is
/// lowercase and names the lane or pool. A panic keeps its payload intact:
/// [`into_panic`](Self::into_panic) returns it, to resume or inspect.
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("parser").build().unwrap();
/// let err = lane.run(|| -> u32 { panic!("bad input") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "lane `parser`: closure panicked: bad input");
/// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "bad input");
/// # });
/// ```
pub struct OffloadError {
    /// "lane" or "pool".
    what: &'static str,
    name: Arc<str>,
    repr: Repr,
}

enum Repr {
    Panic(PanicPayload),
    Timeout(Duration),
    Rejected(usize),
    Cancelled,
    Shutdown,
    NoRuntime(&'static str),
    WouldDeadlock(&'static Location<'static>),
}

impl OffloadError {
    /// What a handle of `kind` is called in messages.
    pub(crate) fn subject(kind: Kind) -> &'static str {
        match kind {
            Kind::Compute => "pool",
            _ => "lane",
        }
    }

    pub(crate) fn panic(kind: Kind, name: &Arc<str>, payload: Panic) -> Self {
        Self::new(kind, name, Repr::Panic(PanicPayload::new(payload)))
    }

    pub(crate) fn timeout(kind: Kind, name: &Arc<str>, after: Duration) -> Self {
        Self::new(kind, name, Repr::Timeout(after))
    }

    pub(crate) fn rejected(kind: Kind, name: &Arc<str>, max_queue: usize) -> Self {
        Self::new(kind, name, Repr::Rejected(max_queue))
    }

    pub(crate) fn cancelled(kind: Kind, name: &Arc<str>) -> Self {
        Self::new(kind, name, Repr::Cancelled)
    }

    pub(crate) fn shutdown(kind: Kind, name: &Arc<str>) -> Self {
        Self::new(kind, name, Repr::Shutdown)
    }

    pub(crate) fn no_runtime(kind: Kind, name: &Arc<str>, what: &'static str) -> Self {
        Self::new(kind, name, Repr::NoRuntime(what))
    }

    pub(crate) fn would_deadlock(
        kind: Kind,
        name: &Arc<str>,
        site: &'static Location<'static>,
    ) -> Self {
        Self::new(kind, name, Repr::WouldDeadlock(site))
    }

    fn new(kind: Kind, name: &Arc<str>, repr: Repr) -> Self {
        OffloadError {
            what: Self::subject(kind),
            name: Arc::clone(name),
            repr,
        }
    }

    /// The closure panicked. [`into_panic`](Self::into_panic) gives the payload.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The call did not finish within the lane's timeout (waiting plus running). The
    /// closure's cancellation token was cancelled; a closure that was running may still
    /// be running, holding its slot, until it returns.
    pub fn is_timeout(&self) -> bool {
        matches!(self.repr, Repr::Timeout(_))
    }

    /// The lane's queue was full, so the call was turned away at once without running.
    pub fn is_rejected(&self) -> bool {
        matches!(self.repr, Repr::Rejected(_))
    }

    /// The job was dropped before it ran because the runtime or pool that was to run it
    /// went away. (Not to be confused with [`Stats::cancelled`](crate::Stats::cancelled),
    /// which counts callers that dropped their own call: such a caller gets no error at
    /// all.)
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The lane was shut down before the call could run.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.repr, Repr::Shutdown)
    }

    /// The call needs a tokio runtime (or one with timers, for a lane with a timeout) and
    /// there was none.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.repr, Repr::NoRuntime(_))
    }

    /// The call was made from a closure running on this same lane or pool, with no slot
    /// left to run it: waiting could mean waiting for itself, so it is refused (the
    /// message names the call site). Run the inner work inline, or on another handle.
    pub fn is_would_deadlock(&self) -> bool {
        matches!(self.repr, Repr::WouldDeadlock(_))
    }

    /// The name of the lane or pool the call went through.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The panic payload of a closure that panicked.
    ///
    /// # Panics
    ///
    /// Panics if the error is not a panic; check [`is_panic`](Self::is_panic) first, or
    /// use [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.try_into_panic().unwrap_or_else(|err| {
            panic!("`into_panic` called on an error that is not a panic: {err}")
        })
    }

    /// The panic payload, or the error back when it is not a panic.
    pub fn try_into_panic(self) -> Result<Box<dyn std::any::Any + Send + 'static>, OffloadError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.into_inner()),
            repr => Err(OffloadError { repr, ..self }),
        }
    }
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`: ", self.what, self.name)?;
        match &self.repr {
            Repr::Panic(payload) => payload.describe(f, "closure"),
            Repr::Timeout(after) => write!(f, "call timed out after {after:?}"),
            Repr::Rejected(max) => write!(f, "call rejected: {max} callers already waiting"),
            Repr::Cancelled => {
                f.write_str("call dropped before it ran: its runtime or pool went away")
            }
            Repr::Shutdown => write!(f, "{} is shut down", self.what),
            Repr::NoRuntime(what) => f.write_str(what),
            Repr::WouldDeadlock(site) => write!(
                f,
                "call at {site} refused: it comes from a closure running on this {} and no \
                 slot is free, so it could wait for itself",
                self.what
            ),
        }
    }
}

impl fmt::Debug for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadError")
            .field("name", &self.name)
            .field("error", &format_args!("{self}"))
            .finish()
    }
}

impl Error for OffloadError {}

/// The error as an `io::Error` whose kind says what a caller can do about it; none of the
/// kinds is one that std's loops (`read_exact`, `write_all`, `io::copy`) retry
/// (`Interrupted`) or that means "try again when ready" (`WouldBlock`), so a call that
/// failed is never retried in a hot loop:
///
/// | cause | kind |
/// |---|---|
/// | shut down, or cancelled because its runtime or pool went away | `BrokenPipe` (the crate's one kind for "shut down") |
/// | timed out | `TimedOut` |
/// | rejected (queue full) | `ResourceBusy` |
/// | panic, no runtime | `Other` |
///
/// ```
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("db").build().unwrap();
/// lane.shutdown(std::time::Duration::ZERO).await;
/// let err: std::io::Error = lane.run(|| 1).await.unwrap_err().into();
/// assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
/// # });
/// ```
impl From<OffloadError> for io::Error {
    fn from(err: OffloadError) -> Self {
        let kind = match err.repr {
            Repr::Timeout(_) => io::ErrorKind::TimedOut,
            Repr::Rejected(_) => io::ErrorKind::ResourceBusy,
            Repr::WouldDeadlock(_) => io::ErrorKind::Deadlock,
            Repr::Cancelled | Repr::Shutdown => io::ErrorKind::BrokenPipe,
            Repr::Panic(_) | Repr::NoRuntime(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
