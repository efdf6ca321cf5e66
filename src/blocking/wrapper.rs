//! `Blocking<T>`: an async value with a blocking face — `call`, `Read`, `Write`,
//! `BufRead`, `Seek`, `Iterator`.

use std::fmt;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::panic::Location;
use std::pin::Pin;

use futures::stream::{Stream, StreamExt};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite,
    AsyncWriteExt,
};

use super::entry::{self, Panics};
use super::portal::{self, Portal};
use super::BlockOnError;

/// An async value with a blocking face.
///
/// The mirror of `Unblock<T>`: old sync code keeps calling methods, reading, writing and
/// iterating while the value underneath has become async. [`call`](Self::call) runs one
/// async method to completion; `Blocking<T>` also implements [`Read`], [`BufRead`],
/// [`Write`] and [`Seek`] over tokio's `AsyncRead`, `AsyncBufRead`, `AsyncWrite` and
/// `AsyncSeek`, and [`Iterator`] over a futures `Stream`. Each call is one
/// [`block_on`](crate::block_on) through the value's [`Portal`] (the global one for
/// [`new`](Self::new)), polled on the calling thread: it works from the same places
/// `block_on` works, and returns [`is_would_deadlock`](BlockOnError::is_would_deadlock)
/// (as an `io::Error` of kind `Deadlock` from the IO traits) on the thread of a
/// current_thread runtime.
///
/// IO errors of `T` pass through unchanged. There is no buffering or read-ahead: each
/// `read` is one `poll_read` of `T` driven to completion, each `write` one `poll_write`;
/// bytes written are where `T` put them, and durable in `T`'s sink after
/// [`flush`](Write::flush) (or after `call_mut(async |w| w.shutdown().await)`).
/// Dropping a `Blocking<T>` does not flush: flush first, as with any `Write`.
///
/// `T` is dropped with the portal's runtime context entered (when that portal has
/// started: a `Blocking<T>` on the global portal that never ran a call has none), so a
/// `T` whose `Drop` spawns a cleanup task works. Dropping a `Blocking<T>` never blocks,
/// and never panics, even from a thread-local destructor after tokio's own are gone.
///
/// # When not to use it
///
/// - Async callers should use `T` directly: a facade blocks its thread.
/// - To adapt an async reader for a sync parser *inside* async code, run the parser on
///   a blocking thread ([`unblock`](crate::unblock)) and give it a `Blocking<T>` there.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use async_bridge::Blocking;
///
/// // An in-memory async pipe; a real program would have a TcpStream or a client.
/// let (a, b) = tokio::io::duplex(64);
/// let mut a = Blocking::new(a);
/// let mut b = Blocking::new(b);
/// a.write_all(b"hello")?;
/// a.flush()?;
/// let mut buf = [0; 5];
/// b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a Blocking<T> does nothing unless called"]
pub struct Blocking<T> {
    /// `Some` until `into_inner` or `drop` takes it.
    inner: Option<T>,
    /// `None` for the global portal.
    portal: Option<Portal>,
    /// The stream returned `None`: `next` is not polled again.
    ended: bool,
}

const TAKEN: &str = "a Blocking<T> always holds its value until into_inner or drop";

impl<T> Blocking<T> {
    /// Wraps `value`; its futures run through the global portal (started on first use,
    /// not here).
    ///
    /// # Examples
    ///
    /// ```
    /// let numbers = async_bridge::Blocking::new(futures::stream::iter([1, 2, 3]));
    /// assert_eq!(numbers.collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn new(value: T) -> Self {
        Blocking {
            inner: Some(value),
            portal: None,
            ended: false,
        }
    }

    /// Wraps `value`; its futures run through `portal`, which the `Blocking<T>` keeps
    /// alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::{Blocking, Portal};
    ///
    /// let portal = Portal::builder().worker_threads(1).thread_name("io-facade").build().unwrap();
    /// let (a, _b) = tokio::io::duplex(8);
    /// let pipe = Blocking::with_portal(a, &portal);
    /// # drop(pipe);
    /// ```
    pub fn with_portal(value: T, portal: &Portal) -> Self {
        Blocking {
            inner: Some(value),
            portal: Some(portal.clone()),
            ended: false,
        }
    }

    /// Runs an async method of the value to completion and returns its output.
    ///
    /// `f` is an async closure (`async |c| c.method().await`) or an async method path
    /// (`Client::ping`): the future it returns may borrow the value. (A plain closure
    /// returning a borrowing future cannot be written on stable Rust; that is what async
    /// closures are for.)
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Blocking;
    ///
    /// struct Client { base: u32 }
    /// impl Client {
    ///     async fn get_user(&self, id: u32) -> String {
    ///         tokio::task::yield_now().await;
    ///         format!("user-{}", self.base + id)
    ///     }
    /// }
    ///
    /// let client = Blocking::new(Client { base: 100 });
    /// let user = client.call(async |c| c.get_user(42).await)?;
    /// assert_eq!(user, "user-142");
    /// # Ok::<(), async_bridge::BlockOnError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`block_on`](crate::block_on): [`is_would_deadlock`](BlockOnError::is_would_deadlock)
    /// on the thread of a current_thread runtime, [`is_shutdown`](BlockOnError::is_shutdown)
    /// when the portal was shut down.
    ///
    /// # Panics
    ///
    /// A panic in the future resumes in the caller, as if the method had been called
    /// directly.
    #[track_caller]
    pub fn call<R>(&self, f: impl AsyncFnOnce(&T) -> R) -> Result<R, BlockOnError> {
        let value = self.inner.as_ref().expect(TAKEN);
        entry::enter(
            self.portal.as_ref(),
            Location::caller(),
            f(value),
            Panics::Resume,
        )
    }

    /// Runs an async method that needs `&mut T` to completion and returns its output.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Blocking;
    ///
    /// struct Session { reconnects: u32 }
    /// impl Session {
    ///     async fn reconnect(&mut self) -> u32 {
    ///         self.reconnects += 1;
    ///         self.reconnects
    ///     }
    /// }
    ///
    /// let mut session = Blocking::new(Session { reconnects: 0 });
    /// session.call_mut(Session::reconnect)?;
    /// assert_eq!(session.call_mut(async |s| s.reconnect().await)?, 2);
    /// # Ok::<(), async_bridge::BlockOnError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Panics
    ///
    /// As [`call`](Self::call).
    #[track_caller]
    pub fn call_mut<R>(&mut self, f: impl AsyncFnOnce(&mut T) -> R) -> Result<R, BlockOnError> {
        let (value, portal) = self.parts();
        entry::enter(portal, Location::caller(), f(value), Panics::Resume)
    }

    /// The wrapped value.
    ///
    /// # Examples
    ///
    /// ```
    /// let wrapped = async_bridge::Blocking::new(7);
    /// assert_eq!(*wrapped.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect(TAKEN)
    }

    /// The wrapped value, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut wrapped = async_bridge::Blocking::new(vec![1]);
    /// wrapped.get_mut().push(2);
    /// assert_eq!(wrapped.get_ref(), &[1, 2]);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect(TAKEN)
    }

    /// Unwraps the value. Nothing is flushed: flush a writer first.
    ///
    /// # Examples
    ///
    /// ```
    /// let wrapped = async_bridge::Blocking::new(String::from("conn"));
    /// assert_eq!(wrapped.into_inner(), "conn");
    /// ```
    pub fn into_inner(mut self) -> T {
        self.inner.take().expect(TAKEN)
    }

    /// The next item of the stream, or `Ok(None)` once it has ended (it is not polled
    /// again after that). [`Iterator::next`] is this without the error.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut numbers = async_bridge::Blocking::new(futures::stream::iter([1]));
    /// assert_eq!(numbers.try_next()?, Some(1));
    /// assert_eq!(numbers.try_next()?, None);
    /// assert_eq!(numbers.try_next()?, None);
    /// # Ok::<(), async_bridge::BlockOnError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Panics
    ///
    /// A panic in the stream resumes in the caller.
    #[track_caller]
    pub fn try_next(&mut self) -> Result<Option<T::Item>, BlockOnError>
    where
        T: Stream + Unpin,
    {
        if self.ended {
            return Ok(None);
        }
        let site = Location::caller();
        let (stream, portal) = self.parts();
        let item = entry::enter(portal, site, stream.next(), Panics::Resume)?;
        self.ended = item.is_none();
        Ok(item)
    }

    fn parts(&mut self) -> (&mut T, Option<&Portal>) {
        (self.inner.as_mut().expect(TAKEN), self.portal.as_ref())
    }

    /// One IO call through the facade: the facade's error becomes an `io::Error`, the
    /// inner one passes through unchanged.
    #[track_caller]
    fn io<R>(&mut self, op: impl AsyncFnOnce(&mut T) -> io::Result<R>) -> io::Result<R> {
        let (value, portal) = self.parts();
        entry::enter(portal, Location::caller(), op(value), Panics::Resume)?
    }
}

impl<T> Blocking<T> {
    /// As [`call`](Self::call), with a panic of the future returned as an
    /// [`is_panic`](BlockOnError::is_panic) error at `site` (for `#[bridge]`'s blocking
    /// twins, which turn it into a `CallError`).
    pub(crate) fn call_caught<R>(
        &self,
        site: &'static Location<'static>,
        f: impl AsyncFnOnce(&T) -> R,
    ) -> Result<R, BlockOnError> {
        let value = self.inner.as_ref().expect(TAKEN);
        entry::enter(self.portal.as_ref(), site, f(value), Panics::Return)
    }

    /// As [`call_caught`](Self::call_caught), through `&mut T`.
    pub(crate) fn call_mut_caught<R>(
        &mut self,
        site: &'static Location<'static>,
        f: impl AsyncFnOnce(&mut T) -> R,
    ) -> Result<R, BlockOnError> {
        let (value, portal) = self.parts();
        entry::enter(portal, site, f(value), Panics::Return)
    }
}

impl<T> Drop for Blocking<T> {
    fn drop(&mut self) {
        if let Some(value) = self.inner.take() {
            let portal: Option<&Portal> = match &self.portal {
                Some(portal) => Some(portal),
                None => portal::global_if_started(),
            };
            // `Handle::enter` panics once tokio's thread-locals are destroyed (a
            // `Blocking<T>` kept in a `thread_local!`): a panic there would abort.
            let tokio_alive = !matches!(
                tokio::runtime::Handle::try_current(),
                Err(err) if err.is_thread_local_destroyed()
            );
            let _entered = portal
                .filter(|_| tokio_alive)
                .map(|portal| portal.handle().enter());
            drop(value);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocking")
            .field("inner", &self.inner)
            .field(
                "portal",
                &self
                    .portal
                    .as_ref()
                    .map_or("async-bridge-portal", Portal::name),
            )
            .finish()
    }
}

/// Each `read` is one `poll_read` of `T`, driven to completion; no read-ahead.
impl<T: AsyncRead + Unpin> Read for Blocking<T> {
    #[track_caller]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(async |r| r.read(buf).await)
    }

    #[track_caller]
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.io(async |r| r.read_exact(buf).await.map(drop))
    }

    #[track_caller]
    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.io(async |r| r.read_to_end(buf).await)
    }
}

/// `fill_buf` fills `T`'s own buffer (a `tokio::io::BufReader`, say); nothing is added.
impl<T: AsyncBufRead + Unpin> BufRead for Blocking<T> {
    #[track_caller]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let site = Location::caller();
        let (value, portal) = self.parts();
        entry::enter(portal, site, value.fill_buf(), Panics::Resume)?
    }

    fn consume(&mut self, amt: usize) {
        Pin::new(self.get_mut()).consume(amt);
    }
}

/// Each `write` is one `poll_write` of `T`; bytes are durable in `T`'s sink after
/// `flush`.
impl<T: AsyncWrite + Unpin> Write for Blocking<T> {
    #[track_caller]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io(async |w| w.write(buf).await)
    }

    #[track_caller]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.io(async |w| w.write_all(buf).await)
    }

    #[track_caller]
    fn flush(&mut self) -> io::Result<()> {
        self.io(async |w| w.flush().await)
    }
}

impl<T: AsyncSeek + Unpin> Seek for Blocking<T> {
    #[track_caller]
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.io(async |s| s.seek(pos).await)
    }
}

/// Ends (returns `None`, for good) when the stream ends. A stream of `Result`s yields
/// its errors as items, like any other.
///
/// # Panics
///
/// `next` panics, with the [`BlockOnError`]'s message, where the facade cannot run (the
/// thread of a current_thread runtime): an `Iterator` has no way to return the error,
/// and ending early would pass for an empty stream. Use
/// [`try_next`](Blocking::try_next) to handle it. A panic in the stream resumes in the
/// caller.
impl<T: Stream + Unpin> Iterator for Blocking<T> {
    type Item = T::Item;

    #[track_caller]
    fn next(&mut self) -> Option<T::Item> {
        self.try_next().unwrap_or_else(|err| panic!("{err}"))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            (0, Some(0))
        } else {
            self.get_ref().size_hint()
        }
    }
}
