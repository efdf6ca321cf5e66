//! `BlockOnError`: why a blocking facade did not return the future's output.

use std::error::Error;
use std::fmt;
use std::io;
use std::panic::Location;

use crate::error::PanicPayload;
use crate::job::Panic;
use crate::origin::Origin;

/// Why [`block_on`](crate::block_on), a [`Portal`](crate::Portal) or a
/// [`Blocking<T>`](crate::Blocking) call did not return the future's output.
///
/// One opaque type with a predicate per cause, like tokio's `JoinError`. The message is
/// lowercase, names the caller's location (the facade functions are
/// `#[track_caller]`) and, for [`is_would_deadlock`](Self::is_would_deadlock), says what
/// to do instead.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The only thread of a current_thread runtime must not block.
/// let err = async_bridge::block_on(async { 1 }).unwrap_err();
/// assert!(err.is_would_deadlock());
/// assert_eq!(err.location().line(), line!() - 2);
/// assert!(err.to_string().contains("async_bridge::unblock"));
///
/// // What the message recommends: move the sync caller onto a blocking thread.
/// let two = async_bridge::unblock(|| async_bridge::block_on(async { 2 })).await;
/// assert_eq!(two.unwrap(), 2);
/// # }
/// ```
pub struct BlockOnError {
    // Boxed: errors are rare, and a facade's `Result<T, BlockOnError>` stays the size of
    // `T` and a pointer, which the success path moves for free (inline, the error made
    // every call copy 72 bytes through the stack).
    inner: Box<Inner>,
}

struct Inner {
    origin: Origin,
    repr: Repr,
}

enum Repr {
    /// Blocking this thread could deadlock; the text says why.
    WouldDeadlock(&'static str),
    Shutdown,
    NoRuntime(String),
    /// In a mutex only so that the error is `Sync` (a payload is `Send` only).
    Panic(PanicPayload),
}

/// The caller is the thread that drives a current_thread runtime.
pub(crate) const CURRENT_THREAD: &str =
    "this thread drives a current_thread tokio runtime (such as #[tokio::test]'s or \
     #[tokio::main(flavor = \"current_thread\")]'s), and blocking it would stall every \
     task of that runtime: if the future needs one of them, it never finishes";

/// tokio refused `block_in_place` here: a `LocalSet` polled inside a multi-thread
/// runtime's `Runtime::block_on`, or a second thread inside a current_thread runtime's
/// `Runtime::block_on` (the cases not told beforehand; see `blocking/context.rs`).
pub(crate) const NO_BLOCKING_HERE: &str =
    "this thread polls a tokio LocalSet, or waits inside a current_thread runtime's \
     block_on while another thread drives it: tokio does not allow blocking it there (it \
     may have to run that runtime's tasks), and if the future needs one of them, it never \
     finishes";

impl BlockOnError {
    fn new(origin: Origin, repr: Repr) -> Self {
        BlockOnError {
            inner: Box::new(Inner { origin, repr }),
        }
    }

    pub(crate) fn would_deadlock(origin: Origin, why: &'static str) -> Self {
        BlockOnError::new(origin, Repr::WouldDeadlock(why))
    }

    pub(crate) fn shutdown(origin: Origin) -> Self {
        BlockOnError::new(origin, Repr::Shutdown)
    }

    pub(crate) fn no_runtime(origin: Origin, why: String) -> Self {
        BlockOnError::new(origin, Repr::NoRuntime(why))
    }

    pub(crate) fn panic(origin: Origin, payload: Panic) -> Self {
        BlockOnError::new(origin, Repr::Panic(PanicPayload::new(payload)))
    }

    /// Blocking the calling thread could deadlock, so the future was not run (it was
    /// dropped unpolled).
    ///
    /// The caller is the thread of a current_thread tokio runtime (the default of
    /// `#[tokio::test]`), or polls a `LocalSet`: the future might need a task that only
    /// this thread can run. Move the sync caller onto a blocking thread with
    /// [`unblock`](crate::unblock), or use a multi-thread runtime.
    pub fn is_would_deadlock(&self) -> bool {
        matches!(self.inner.repr, Repr::WouldDeadlock(_))
    }

    /// The portal was shut down with [`Portal::shutdown`](crate::Portal::shutdown)
    /// before the call; the future was not run.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.inner.repr, Repr::Shutdown)
    }

    /// The global portal's runtime could not be started (the OS refused its threads).
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.inner.repr, Repr::NoRuntime(_))
    }

    /// The future panicked (only [`Portal::block_on`](crate::Portal::block_on) reports
    /// panics as errors; the other facades resume them in the caller).
    /// [`into_panic`](Self::into_panic) gives the payload.
    pub fn is_panic(&self) -> bool {
        matches!(self.inner.repr, Repr::Panic(_))
    }

    /// Where the facade was called from.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.origin.site
    }

    /// The name of the portal the call went through (`None` for the global portal).
    pub fn portal_name(&self) -> Option<&str> {
        self.inner.origin.name.as_deref()
    }

    /// The panic payload of a future that panicked.
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
    pub fn try_into_panic(self) -> Result<Box<dyn std::any::Any + Send + 'static>, BlockOnError> {
        match self.inner.repr {
            Repr::Panic(payload) => Ok(payload.into_inner()),
            repr => Err(BlockOnError::new(self.inner.origin, repr)),
        }
    }
}

impl fmt::Display for BlockOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.inner.origin)?;
        match &self.inner.repr {
            Repr::WouldDeadlock(why) => write!(
                f,
                "refused to block: {why}. Move the sync caller onto a blocking thread with \
                 `async_bridge::unblock(move || ...).await` (or `spawn_blocking`), or run it \
                 on a multi-thread runtime"
            ),
            Repr::Shutdown => f.write_str("the portal is shut down"),
            Repr::NoRuntime(why) => write!(f, "the global portal could not start: {why}"),
            Repr::Panic(payload) => payload.describe(f, "future"),
        }
    }
}

impl fmt::Debug for BlockOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockOnError")
            .field("origin", &self.inner.origin)
            .field("error", &format_args!("{self}"))
            .finish()
    }
}

impl Error for BlockOnError {}

impl BlockOnError {
    /// The kind of the `io::Error` this becomes: never one that std's loops retry.
    pub(crate) fn io_kind(&self) -> io::ErrorKind {
        match self.inner.repr {
            Repr::WouldDeadlock(_) => io::ErrorKind::Deadlock,
            // The crate's one kind for "shut down" (see `OffloadError`'s conversion).
            Repr::Shutdown => io::ErrorKind::BrokenPipe,
            Repr::NoRuntime(_) | Repr::Panic(_) => io::ErrorKind::Other,
        }
    }
}

/// Kinds: `Deadlock` (would deadlock), `BrokenPipe` (shut down: the crate's one kind for
/// it), `Other`; never `Interrupted` or `WouldBlock`, which std's loops retry.
impl From<BlockOnError> for io::Error {
    fn from(err: BlockOnError) -> Self {
        io::Error::new(err.io_kind(), err)
    }
}
