//! `CallError`: why a twin call (or any call through a bridged interface) did not return
//! the method's value.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::Mutex;

use crate::{BlockOnError, OffloadError, WorkerError};

/// A panic payload, as `catch_unwind` returns it.
type Payload = Box<dyn Any + Send + 'static>;

/// Why a call through a bridged trait did not return the method's value: the one error of
/// every twin that [`bridge`](crate::bridge) generates, whatever carries the call.
///
/// Because every carrier returns this same type, a `dyn` twin works over a
/// [`Worker`](crate::Worker), a [`WorkerPool`](crate::WorkerPool), an
/// [`Offloaded`](crate::Offloaded) lane carrier, a [`Blocking`](crate::Blocking) facade
/// and, at the end of a migration, a native implementation. It is an error *of the bridge*:
/// the method's own return value, its own `Result` included, is the `Ok` value, untouched.
///
/// One opaque type with a predicate per cause. It is converted `From` the per-handle
/// errors ([`WorkerError`], [`OffloadError`], [`BlockOnError`]) and is transparent over
/// them: its message (lowercase, naming the worker, lane or call site) and its
/// [`source`](Error::source) are theirs, and [`worker_error`](Self::worker_error) and its
/// siblings give the original back. A panic keeps its payload:
/// [`into_panic`](Self::into_panic) returns it, to resume or inspect.
///
/// # Examples
///
/// ```
/// use async_bridge::{CallError, Worker};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let parser = Worker::builder("parser").spawn(|| Ok::<_, std::io::Error>(()))?;
/// let err: CallError = parser.call(|_| -> u32 { panic!("bad input") }).await.unwrap_err().into();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "worker `parser`: closure panicked: bad input");
/// assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "bad input");
///
/// // A shut-down worker: the error converts into an `io::Error` of a kind no IO loop retries.
/// parser.shutdown(std::time::Duration::from_secs(5)).await;
/// let err: CallError = parser.call(|_| 1).await.unwrap_err().into();
/// assert!(err.is_shutdown());
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct CallError {
    // Boxed: errors are rare, and a twin's `Result<R, CallError>` stays the size of `R`
    // and a pointer (inline, every successful call moved the largest carrier error).
    repr: Box<Repr>,
}

enum Repr {
    Worker(WorkerError),
    Offload(OffloadError),
    BlockOn(BlockOnError),
    /// A method behind a blocking twin panicked (the facade would resume it; the twin
    /// reports it, as every other carrier does).
    Panic {
        method: &'static str,
        site: &'static Location<'static>,
        /// In a mutex only so that the error is `Sync` (a payload is `Send` only).
        payload: Mutex<Payload>,
    },
    /// An error of a native implementation.
    Other(Box<dyn Error + Send + Sync + 'static>),
}

impl CallError {
    /// Wraps an error of a native implementation of a twin (one that calls no carrier),
    /// so that it can fail the way the bridged implementations do.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = async_bridge::CallError::other("the replica is unreachable");
    /// assert!(err.is_other());
    /// assert_eq!(err.to_string(), "the replica is unreachable");
    /// ```
    pub fn other(err: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        CallError {
            repr: Box::new(Repr::Other(err.into())),
        }
    }

    #[doc(hidden)]
    pub fn __panic(
        method: &'static str,
        site: &'static Location<'static>,
        payload: Payload,
    ) -> Self {
        CallError {
            repr: Box::new(Repr::Panic {
                method,
                site,
                payload: Mutex::new(payload),
            }),
        }
    }

    /// The method panicked. [`into_panic`](Self::into_panic) gives the payload. The
    /// carrier goes on serving the next calls.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("lane").build().unwrap();
    /// let err = async_bridge::CallError::from(lane.run(|| panic!("boom")).await.unwrap_err());
    /// assert!(err.is_panic());
    /// # });
    /// ```
    pub fn is_panic(&self) -> bool {
        match &*self.repr {
            Repr::Worker(e) => e.is_panic(),
            Repr::Offload(e) => e.is_panic(),
            Repr::BlockOn(e) => e.is_panic(),
            Repr::Panic { .. } => true,
            Repr::Other(_) => false,
        }
    }

    /// The carrier was shut down (or, for a worker, has stopped) and the call did not
    /// run: [`WorkerError::is_shutdown`], [`OffloadError::is_shutdown`],
    /// [`BlockOnError::is_shutdown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("lane").build().unwrap();
    /// lane.shutdown(std::time::Duration::ZERO).await;
    /// let err = async_bridge::CallError::from(lane.run(|| 1).await.unwrap_err());
    /// assert!(err.is_shutdown());
    /// # });
    /// ```
    pub fn is_shutdown(&self) -> bool {
        match &*self.repr {
            Repr::Worker(e) => e.is_shutdown(),
            Repr::Offload(e) => e.is_shutdown(),
            Repr::BlockOn(e) => e.is_shutdown(),
            _ => false,
        }
    }

    /// The call did not finish within its lane's timeout ([`OffloadError::is_timeout`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("slow").timeout(Duration::from_millis(1)).build().unwrap();
    /// let (_hold, wait) = std::sync::mpsc::channel::<()>();
    /// let err = async_bridge::CallError::from(lane.run(move || wait.recv()).await.unwrap_err());
    /// assert!(err.is_timeout());
    /// # drop(_hold);
    /// # });
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(&*self.repr, Repr::Offload(e) if e.is_timeout())
    }

    /// The lane's queue was full and the call was turned away at once without running
    /// ([`OffloadError::is_rejected`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = async_bridge::CallError::other("not a lane error");
    /// assert!(!err.is_rejected());
    /// ```
    pub fn is_rejected(&self) -> bool {
        matches!(&*self.repr, Repr::Offload(e) if e.is_rejected())
    }

    /// Waiting would never end, so the call did not run: a blocking twin called on the
    /// thread of a current_thread runtime ([`BlockOnError::is_would_deadlock`]), or a
    /// worker called from its own thread ([`WorkerError::is_would_deadlock`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = async_bridge::CallError::from(async_bridge::block_on(async { 1 }).unwrap_err());
    /// assert!(err.is_would_deadlock());
    /// assert_eq!(err.location().unwrap().line(), line!() - 2);
    /// # }
    /// ```
    pub fn is_would_deadlock(&self) -> bool {
        match &*self.repr {
            Repr::Worker(e) => e.is_would_deadlock(),
            Repr::BlockOn(e) => e.is_would_deadlock(),
            _ => false,
        }
    }

    /// The job was dropped before it ran because the runtime or pool that was to run it
    /// went away ([`OffloadError::is_cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!async_bridge::CallError::other("x").is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(&*self.repr, Repr::Offload(e) if e.is_cancelled())
    }

    /// There was no runtime to run the call on ([`OffloadError::is_no_runtime`],
    /// [`BlockOnError::is_no_runtime`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!async_bridge::CallError::other("x").is_no_runtime());
    /// ```
    pub fn is_no_runtime(&self) -> bool {
        match &*self.repr {
            Repr::Offload(e) => e.is_no_runtime(),
            Repr::BlockOn(e) => e.is_no_runtime(),
            _ => false,
        }
    }

    /// An error of a native implementation, made with [`other`](Self::other).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(async_bridge::CallError::other("x").is_other());
    /// ```
    pub fn is_other(&self) -> bool {
        matches!(*self.repr, Repr::Other(_))
    }

    /// Where the call was made, when the error knows it: a blocking twin's errors (the
    /// blocking twins are `#[track_caller]`, so this is the caller's line).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(async_bridge::CallError::other("x").location().is_none());
    /// ```
    pub fn location(&self) -> Option<&'static Location<'static>> {
        match &*self.repr {
            Repr::BlockOn(e) => Some(e.location()),
            Repr::Panic { site, .. } => Some(site),
            _ => None,
        }
    }

    /// The worker's error, when a [`Worker`](crate::Worker) or
    /// [`WorkerPool`](crate::WorkerPool) carried the call.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(async_bridge::CallError::other("x").worker_error().is_none());
    /// ```
    pub fn worker_error(&self) -> Option<&WorkerError> {
        match &*self.repr {
            Repr::Worker(e) => Some(e),
            _ => None,
        }
    }

    /// The lane's error, when an [`Offloaded`](crate::Offloaded) carrier (or any
    /// [`Offloader`](crate::Offloader) call) carried the call.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(async_bridge::CallError::other("x").offload_error().is_none());
    /// ```
    pub fn offload_error(&self) -> Option<&OffloadError> {
        match &*self.repr {
            Repr::Offload(e) => Some(e),
            _ => None,
        }
    }

    /// The facade's error, when a [`Blocking`](crate::Blocking) twin refused or failed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(async_bridge::CallError::other("x").block_on_error().is_none());
    /// ```
    pub fn block_on_error(&self) -> Option<&BlockOnError> {
        match &*self.repr {
            Repr::BlockOn(e) => Some(e),
            _ => None,
        }
    }

    /// The panic payload of a method that panicked.
    ///
    /// # Panics
    ///
    /// Panics if the error is not a panic; check [`is_panic`](Self::is_panic) first, or
    /// use [`try_into_panic`](Self::try_into_panic).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = async_bridge::Offloader::builder("lane").build().unwrap();
    /// let err = async_bridge::CallError::from(lane.run(|| std::panic::panic_any(7u8)).await.unwrap_err());
    /// assert_eq!(*err.into_panic().downcast::<u8>().unwrap(), 7);
    /// # });
    /// ```
    pub fn into_panic(self) -> Payload {
        self.try_into_panic().unwrap_or_else(|err| {
            panic!("`into_panic` called on an error that is not a panic: {err}")
        })
    }

    /// The panic payload, or the error back when it is not a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = async_bridge::CallError::other("x").try_into_panic().unwrap_err();
    /// assert!(err.is_other());
    /// ```
    pub fn try_into_panic(self) -> Result<Payload, CallError> {
        let repr = match *self.repr {
            Repr::Worker(e) if e.is_panic() => return Ok(e.into_panic()),
            Repr::Offload(e) if e.is_panic() => return Ok(e.into_panic()),
            Repr::BlockOn(e) if e.is_panic() => return Ok(e.into_panic()),
            Repr::Panic { payload, .. } => {
                return Ok(payload
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner))
            }
            repr => repr,
        };
        Err(CallError {
            repr: Box::new(repr),
        })
    }
}

/// The message of a panic payload, when it has one.
fn panic_message(payload: &Payload) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl From<WorkerError> for CallError {
    fn from(err: WorkerError) -> Self {
        CallError {
            repr: Box::new(Repr::Worker(err)),
        }
    }
}

impl From<OffloadError> for CallError {
    fn from(err: OffloadError) -> Self {
        CallError {
            repr: Box::new(Repr::Offload(err)),
        }
    }
}

impl From<BlockOnError> for CallError {
    fn from(err: BlockOnError) -> Self {
        CallError {
            repr: Box::new(Repr::BlockOn(err)),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.repr {
            Repr::Worker(e) => e.fmt(f),
            Repr::Offload(e) => e.fmt(f),
            Repr::BlockOn(e) => e.fmt(f),
            Repr::Panic {
                method,
                site,
                payload,
            } => {
                write!(f, "`{method}` called at {site}: method panicked")?;
                let payload = payload
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match panic_message(&payload) {
                    Some(msg) => write!(f, ": {msg}"),
                    None => Ok(()),
                }
            }
            Repr::Other(e) => e.fmt(f),
        }
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallError")
            .field("error", &format_args!("{self}"))
            .finish()
    }
}

impl Error for CallError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &*self.repr {
            Repr::Worker(e) => e.source(),
            Repr::Offload(e) => e.source(),
            Repr::BlockOn(e) => e.source(),
            Repr::Panic { .. } => None,
            Repr::Other(e) => e.source(),
        }
    }
}

/// The kinds are chosen so that no IO loop retries by itself: never `Interrupted` (which
/// `read_exact` and friends retry) nor `WouldBlock` (which means "poll again").
impl From<CallError> for io::Error {
    fn from(err: CallError) -> Self {
        let kind = if err.is_shutdown() {
            io::ErrorKind::BrokenPipe
        } else if err.is_timeout() {
            io::ErrorKind::TimedOut
        } else if err.is_rejected() {
            io::ErrorKind::ResourceBusy
        } else if err.is_would_deadlock() {
            io::ErrorKind::Deadlock
        } else if err.worker_error().is_some_and(WorkerError::is_config) {
            io::ErrorKind::InvalidInput
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, err)
    }
}
