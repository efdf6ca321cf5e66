//! `WorkerError`: why a call into a worker (or starting one) did not return a value.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConfigError, PanicPayload};
use crate::job::Panic;
use crate::BlockOnError;

/// A shareable error value: the reason a worker stopped is stored once and seen by every
/// caller that finds it stopped.
pub(crate) type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// Why a worker stopped after a panic: the maker could not build a fresh object. The
/// maker's error (or panic message) is its source.
#[derive(Debug)]
pub(crate) struct RebuildFailed(pub(crate) Cause);

impl fmt::Display for RebuildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rebuilding its object after a panic failed: {}", self.0)
    }
}

impl Error for RebuildFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// A cause given as text.
pub(crate) fn cause(text: impl Into<String>) -> Cause {
    Arc::from(Box::<dyn Error + Send + Sync>::from(text.into()))
}

/// Why a [`Worker`](crate::Worker) or [`WorkerPool`](crate::WorkerPool) call did not
/// return the closure's value, or why `spawn` did not start the worker.
///
/// One opaque type with a predicate per cause, like tokio's `JoinError`. The message is
/// lowercase and names the worker. A panic keeps its payload intact:
/// [`into_panic`](Self::into_panic) returns it, to resume or inspect. The error of a
/// maker that failed is the [`source`](Error::source), to downcast.
///
/// # Examples
///
/// ```
/// use async_bridge::Worker;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let parser = Worker::builder("parser").spawn(|| Ok::<_, std::io::Error>(Vec::<u8>::new()))?;
/// let err = parser.call(|_| -> u32 { panic!("bad input") }).await.unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "worker `parser`: closure panicked: bad input");
/// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "bad input");
///
/// // The worker survived the panic.
/// assert_eq!(parser.call(|buf| buf.len()).await?, 0);
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
pub struct WorkerError {
    name: Arc<str>,
    repr: Repr,
}

enum Repr {
    Panic(PanicPayload),
    /// The worker was shut down, or stopped for the reason given.
    Closed(Option<Cause>),
    /// Waiting here would never end.
    WouldDeadlock(WhyDeadlock),
    /// The maker returned an error (at `spawn`, or when rebuilding after a panic).
    Maker(Cause),
    /// The builder's settings cannot work, or the thread could not start.
    Config(ConfigError),
    /// The blocking facade under `call_blocking` could not run for another reason.
    Facade(BlockOnError),
    /// The call did not finish within the worker's timeout.
    Timeout(Duration),
    /// The worker has a timeout and the caller has no runtime with timers to time it.
    NoTimer,
    /// The lease this call was made under is over.
    LeaseEnded(&'static str),
}

enum WhyDeadlock {
    /// The caller is a thread of the very worker (or pool) it calls.
    OwnThread,
    /// The facade refused to block this thread.
    Facade(BlockOnError),
}

/// The caller is one of the worker's own threads.
const OWN_THREAD: &str = "called from the worker's own thread, which would wait for itself \
     forever: call the object directly (the closure already has it), or call from another thread";

impl WorkerError {
    pub(crate) fn panic(name: &Arc<str>, payload: Panic) -> Self {
        Self::new(name, Repr::Panic(PanicPayload::new(payload)))
    }

    pub(crate) fn closed(name: &Arc<str>, cause: Option<Cause>) -> Self {
        Self::new(name, Repr::Closed(cause))
    }

    pub(crate) fn own_thread(name: &Arc<str>) -> Self {
        Self::new(name, Repr::WouldDeadlock(WhyDeadlock::OwnThread))
    }

    pub(crate) fn maker(name: &Arc<str>, cause: Cause) -> Self {
        Self::new(name, Repr::Maker(cause))
    }

    pub(crate) fn config(name: &Arc<str>, err: ConfigError) -> Self {
        Self::new(name, Repr::Config(err))
    }

    pub(crate) fn facade(name: &Arc<str>, err: BlockOnError) -> Self {
        if err.is_would_deadlock() {
            Self::new(name, Repr::WouldDeadlock(WhyDeadlock::Facade(err)))
        } else {
            Self::new(name, Repr::Facade(err))
        }
    }

    pub(crate) fn timeout(name: &Arc<str>, after: Duration) -> Self {
        Self::new(name, Repr::Timeout(after))
    }

    pub(crate) fn no_timer(name: &Arc<str>) -> Self {
        Self::new(name, Repr::NoTimer)
    }

    pub(crate) fn lease_ended(name: &Arc<str>, end: super::lease::End) -> Self {
        Self::new(name, Repr::LeaseEnded(end.describe()))
    }

    fn new(name: &Arc<str>, repr: Repr) -> Self {
        WorkerError {
            name: Arc::clone(name),
            repr,
        }
    }

    /// The closure panicked. [`into_panic`](Self::into_panic) gives the payload. The
    /// worker keeps serving the next calls (see [`AfterPanic`](crate::AfterPanic) for
    /// what happens to its object).
    ///
    /// Also returned by `spawn` when the maker panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The worker is shut down, or has stopped, and the call did not run: it was shut
    /// down, or its object could not be rebuilt after a panic (then
    /// [`source`](Error::source) is the maker's error). The same word as
    /// [`OffloadError::is_shutdown`](crate::OffloadError::is_shutdown) and
    /// [`BlockOnError::is_shutdown`](crate::BlockOnError::is_shutdown).
    pub fn is_shutdown(&self) -> bool {
        matches!(self.repr, Repr::Closed(_))
    }

    /// The old name of [`is_shutdown`](Self::is_shutdown).
    #[deprecated(
        since = "0.1.1",
        note = "use `is_shutdown`, the word every error of the crate uses"
    )]
    pub fn is_closed(&self) -> bool {
        self.is_shutdown()
    }

    /// `call_blocking` refused to block because the wait could never end: the caller is
    /// the thread of a current_thread runtime (see [`block_on`](crate::block_on)), or the
    /// worker's own thread calling itself. The call did not run.
    pub fn is_would_deadlock(&self) -> bool {
        matches!(self.repr, Repr::WouldDeadlock(_))
    }

    /// `spawn` failed because the maker returned an error; [`source`](Error::source) is
    /// that error.
    pub fn is_maker_error(&self) -> bool {
        matches!(self.repr, Repr::Maker(_))
    }

    /// `spawn` failed because a setting of the builder cannot work, or the thread could
    /// not be started; [`source`](Error::source) is the [`ConfigError`].
    pub fn is_config(&self) -> bool {
        matches!(self.repr, Repr::Config(_))
    }

    /// The call did not finish within the worker's
    /// [`timeout`](crate::WorkerBuilder::timeout), waiting plus running. A call that had
    /// started had its token cancelled and, if the worker has an
    /// [`interrupter`](crate::WorkerBuilder::interrupter), was interrupted.
    pub fn is_timeout(&self) -> bool {
        matches!(self.repr, Repr::Timeout(_))
    }

    /// The [`Lease`](crate::Lease) the call was made under is over: it was finished,
    /// dropped, a call under it panicked, or it was held past its limit (the message
    /// says which). Its release hook has run; take a new lease.
    pub fn is_lease_ended(&self) -> bool {
        matches!(self.repr, Repr::LeaseEnded(_))
    }

    /// The worker has a timeout, and the call was awaited outside any tokio runtime with
    /// timers, so nothing could time it.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.repr, Repr::NoTimer)
    }

    /// The name of the worker or pool.
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
    pub fn try_into_panic(self) -> Result<Box<dyn std::any::Any + Send + 'static>, WorkerError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.into_inner()),
            repr => Err(WorkerError { repr, ..self }),
        }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker `{}`: ", self.name)?;
        match &self.repr {
            Repr::Panic(payload) => payload.describe(f, "closure"),
            Repr::Closed(None) => f.write_str("worker is shut down"),
            Repr::Closed(Some(cause)) => write!(f, "worker has stopped: {cause}"),
            Repr::WouldDeadlock(WhyDeadlock::OwnThread) => {
                write!(f, "call_blocking would deadlock: {OWN_THREAD}")
            }
            Repr::WouldDeadlock(WhyDeadlock::Facade(err)) => {
                write!(f, "call_blocking would deadlock: {err}")
            }
            Repr::Maker(cause) => write!(f, "the maker failed: {cause}"),
            Repr::Config(err) => write!(f, "cannot start: {err}"),
            Repr::Facade(err) => write!(f, "call_blocking failed: {err}"),
            Repr::Timeout(after) => write!(f, "call timed out after {after:?}"),
            Repr::LeaseEnded(why) => write!(f, "the lease is over: {why}"),
            Repr::NoTimer => f.write_str(
                "the worker has a timeout, and the call was awaited outside a tokio runtime \
                 with timers: await it inside one",
            ),
        }
    }
}

impl fmt::Debug for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerError")
            .field("name", &self.name)
            .field("error", &format_args!("{self}"))
            .finish()
    }
}

impl Error for WorkerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.repr {
            Repr::Closed(Some(cause)) | Repr::Maker(cause) => Some(&**cause),
            Repr::Config(err) => Some(err),
            Repr::WouldDeadlock(WhyDeadlock::Facade(err)) | Repr::Facade(err) => Some(err),
            _ => None,
        }
    }
}

/// Kinds: `BrokenPipe` (shut down or stopped: the crate's one kind for "shut down"),
/// `Deadlock`, `TimedOut`, `InvalidInput` (configuration), the facade's own kind for a
/// `call_blocking` that could not run, `Other`; never `Interrupted` or `WouldBlock`,
/// which std's loops retry.
impl From<WorkerError> for io::Error {
    fn from(err: WorkerError) -> Self {
        let kind = match &err.repr {
            Repr::Closed(_) => io::ErrorKind::BrokenPipe,
            Repr::WouldDeadlock(_) => io::ErrorKind::Deadlock,
            Repr::Timeout(_) => io::ErrorKind::TimedOut,
            Repr::Config(_) => io::ErrorKind::InvalidInput,
            Repr::Facade(facade) => facade.io_kind(),
            Repr::Panic(_) | Repr::Maker(_) | Repr::NoTimer | Repr::LeaseEnded(_) => {
                io::ErrorKind::Other
            }
        };
        io::Error::new(kind, err)
    }
}
