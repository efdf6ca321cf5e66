//! `Unblock<T>`: std IO and iterators with an async face.

mod compat;
mod direct;
mod hop;
mod pipe;
mod read;
mod seek;
mod stream;
mod write;

use std::any::{Any, TypeId};
use std::fmt;
use std::fs::File;
use std::future::{poll_fn, Future};
use std::io::{self, BufReader, Cursor, Seek, SeekFrom};
use std::mem;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};

use self::hop::{clean_up, defer, Hop, HopKind, Payload, Slots};
use self::pipe::{Chunk, Fns, Leftover, RewindFn, Shared};
use crate::job;

/// Bytes buffered in each direction by [`Unblock::new`]: 8 MiB.
const DEFAULT_CAPACITY: usize = 8 * 1024 * 1024;

/// A blocking reader, writer or iterator with an async face: `std::fs::File`,
/// `std::process::ChildStdout`, a parser's `Read`, `BufRead::lines()`.
///
/// The mirror image of [`Blocking<T>`](crate::Blocking). `Unblock<T>` implements tokio's
/// `AsyncRead` and `AsyncBufRead` (for `T: Read`), `AsyncWrite` (`T: Write`), `AsyncSeek`
/// (`T: Seek`) and futures' `Stream` (`T: Iterator`); with the `futures-io` feature, the
/// futures IO traits too. The blocking calls run on tokio's blocking pool, never on the
/// executor (a read of a `File` that the page cache can answer needs no thread: see
/// below), and any method of `T` is one [`call`](Self::call) away. IO errors of `T` pass
/// through unchanged.
///
/// # Read-ahead, write-behind and positions
///
/// A blocking thread reads ahead and writes behind in chunks of up to 256 KiB, up to the
/// capacity (8 MiB, or [`with_capacity`](Self::with_capacity)) in each direction, and
/// keeps going while the async side consumes, so that one thread hop serves many reads
/// and writes. That is what makes it as fast as `std` and much faster than
/// `tokio::fs::File`, which pays a hop per call. The rules:
///
/// - **No byte is lost, no position drifts.** Read-ahead happens only on values that can
///   give it back: `File` and `BufReader<File>` over a regular file (not a FIFO, a tty,
///   `/dev/stdin` or another device), `Cursor` over `Vec<u8>`, `Box<[u8]>` or
///   `&'static [u8]`, and any `Seek` type marked with
///   [`with_read_ahead`](Self::with_read_ahead). Before a write, a seek,
///   [`call`](Self::call), [`get_mut`](Self::get_mut), [`into_inner`](Self::into_inner)
///   or a drop hands the value on, the bytes read ahead and not consumed are given back
///   (the value seeks back by their count), so `T` is exactly where the caller's reads
///   left it. Any other reader (a pipe, stdin, a socket) is never read ahead: each read
///   asks `T` for at most what it asked for, one blocking hop per read, and an iterator
///   is asked for one item per `next`.
/// - **Bytes that cannot be given back are never reordered, and can always be had.**
///   Two things leave bytes read from a value that cannot seek and not consumed: a read
///   future dropped after its first poll (in a `select!` or a timeout: the blocking
///   `read` it started cannot be stopped), and an `AsyncBufRead` buffer not fully
///   consumed. The next async read returns them first.
///   [`take_buffered`](Self::take_buffered) and [`into_parts`](Self::into_parts) hand
///   them out; [`call`](Self::call) refuses to run a closure behind them (it returns an
///   error: the closure would see `T` past them); [`get_mut`](Self::get_mut) leaves them
///   buffered, in front of what `&mut T` reads; [`into_inner`](Self::into_inner) and a
///   drop drop them with the value ([`buffered`](Self::buffered) counts them;
///   `into_parts` keeps them). The same holds for the item a `next()` dropped after its
///   first poll fetched, which [`take_fetched`](Self::take_fetched) hands out (see the
///   `Stream` implementation).
/// - **Writes are in `T` after `flush`** (or `shutdown`, or [`into_inner`](Self::into_inner),
///   which also flush `T`). Before a read, a seek or a `call`, the buffered writes are
///   written to `T` first.
/// - **Write errors are never dropped.** A write that fails on the blocking thread is
///   reported by the next read, write, flush, shutdown or seek; the bytes not written stay
///   buffered, and the next flush tries them again.
/// - **Drop.** Dropping an `Unblock<T>` with unflushed writes writes and flushes them *in
///   the background*, on a blocking thread, and gives read-ahead back; errors there reach
///   nobody. To see them, `flush().await` (or `into_inner().await`) before dropping. A
///   blocking step that was submitted and is still queued (tokio's blocking pool busy)
///   is not withdrawn: it runs when it gets a thread, and the cleanup runs after it. A
///   queued `call` closure runs; a queued read or `next` does nothing (nobody is left
///   for its bytes or item, and on a value that cannot seek they could not be given
///   back). With nothing left to do, `T` itself is dropped in place, where the
///   `Unblock` is, as a `tokio::fs::File` drops its file: a `T` whose drop blocks, or
///   that owns a tokio runtime (which panics if dropped in async code), should be taken
///   back with `into_inner().await` and dropped where blocking is allowed.
///
/// Every blocking step goes through the crate's job layer, so it holds the paused clock of
/// the [`testing`](crate::testing) harness while it runs.
///
/// # Reads from memory
///
/// On Linux, a read of a regular `File` first asks the page cache, on the caller's thread
/// (`preadv2` with `RWF_NOWAIT`, as io_uring tries buffered reads before it hands them to
/// a worker thread): the kernel copies what it has in memory and never waits for the
/// disk. Only when it would wait does the read go to a blocking thread, which then reads
/// ahead as above until the consumer has taken all it read; then the cache is tried
/// again. So a cached file reads at the speed of `std` (one copy, no hop), and even with
/// every blocking thread busy. Reads of 64 KiB or more go straight into the caller's
/// buffer (up to 256 KiB a call); smaller ones fill a 256 KiB chunk that serves the
/// reads after them. Each read counts against tokio's cooperative budget, so a task reading a
/// cached file to its end still lets its worker run other tasks. A file opened with
/// `O_DIRECT` (which has no page cache to ask), files on file systems that cannot read
/// without waiting (tmpfs), and every file elsewhere than Linux are read on a blocking
/// thread.
///
/// # When not to use it
///
/// - For one blocking call, [`unblock`](crate::unblock) is simpler.
/// - Sockets and pipes have native async versions in tokio (`TcpStream`,
///   `tokio::process`); use them when you can, they need no thread.
/// - A reader that blocks forever (stdin with no input) keeps one blocking thread for as
///   long as its read lasts, as `tokio::io::stdin` does.
/// - One value that reads and writes independently (a duplex socket or pipe, e.g.
///   `Unblock<std::net::TcpStream>` under `tokio::io::split`) does not read and write at
///   the same time: there is one value and one blocking thread at a time, so a write
///   waits for a read in flight to return (and with nothing to read, that can be
///   forever). Use tokio's `TcpStream`, or two values (`try_clone`) wrapped separately.
///
/// # Examples
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
/// use async_bridge::Unblock;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let path = std::env::temp_dir().join(format!("unblock-doc-{}", std::process::id()));
/// let mut out = Unblock::new(std::fs::File::create(&path)?);
/// out.write_all(b"hello, world").await?;
/// out.flush().await?; // the bytes are in the file now
/// let len = out.call(|f| f.metadata().map(|m| m.len())).await??;
/// assert_eq!(len, 12);
///
/// let mut file = Unblock::new(std::fs::File::open(&path)?);
/// let mut hello = [0; 5];
/// file.read_exact(&mut hello).await?;
/// assert_eq!(&hello, b"hello");
/// // Read-ahead is given back: the position is exactly where the reads left it.
/// assert_eq!(file.stream_position().await?, 5);
/// let file: std::fs::File = file.into_inner().await;
/// # drop(file);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// An iterator as a stream:
///
/// ```
/// use std::io::BufRead;
/// use futures::StreamExt;
/// use async_bridge::Unblock;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let text = std::io::Cursor::new("one\ntwo\n");
/// let mut lines = Unblock::new(text.lines());
/// let mut seen = Vec::new();
/// while let Some(line) = lines.next().await {
///     seen.push(line?);
/// }
/// assert_eq!(seen, ["one", "two"]);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Panics
///
/// A panic in `T` (in its `read`, `write`, `next`, or a [`call`](Self::call) closure)
/// resumes in the task that awaited it; `T` stays usable.
///
/// The IO traits return an error of kind `Other` that names the construction site when
/// polled outside a tokio runtime; the `Stream`, `call`, `get_mut` and `into_inner` panic
/// with that message instead (only when they have blocking work to do).
#[must_use = "an Unblock<T> does nothing unless read, written, polled or called"]
pub struct Unblock<T> {
    /// At hand between hops, once taken back from the pipe.
    value: Option<T>,
    /// The hop that has the value, if one does.
    hop: Option<Hop>,
    shared: Arc<Shared<T>>,
    fns: Fns<T>,
    /// The chunk of read-ahead being consumed.
    chunk: Chunk,
    /// Written, not yet queued for the blocking thread.
    filling: Vec<u8>,
    /// Results of finished hops. In a `Mutex` only so that `Unblock<T>` is `Sync`; only
    /// `get_mut` is used on it.
    slots: Mutex<Slots>,
    /// `start_seek` (or `poll_complete` alone) was called; `poll_complete` has not
    /// returned yet.
    seeking: Option<seek::Seeking>,
    /// Whether reads try the page cache on this thread first (a regular `File`).
    direct: direct::Direct,
    site: &'static Location<'static>,
}

const LOST: &str = "an Unblock<T> holds its value between hops";

/// Types known to seek, which `new` reads ahead on.
fn known_rewind<T: 'static>() -> Option<RewindFn<T>> {
    fn rewind_as<T: 'static, S: Seek + 'static>(value: &mut T, by: i64) -> io::Result<u64> {
        (value as &mut dyn Any)
            .downcast_mut::<S>()
            .expect("the type was checked")
            .seek(SeekFrom::Current(by))
    }
    let id = TypeId::of::<T>();
    let known: [(TypeId, RewindFn<T>); 5] = [
        (TypeId::of::<File>(), rewind_as::<T, File>),
        (
            TypeId::of::<BufReader<File>>(),
            rewind_as::<T, BufReader<File>>,
        ),
        (
            TypeId::of::<Cursor<Vec<u8>>>(),
            rewind_as::<T, Cursor<Vec<u8>>>,
        ),
        (
            TypeId::of::<Cursor<Box<[u8]>>>(),
            rewind_as::<T, Cursor<Box<[u8]>>>,
        ),
        (
            TypeId::of::<Cursor<&'static [u8]>>(),
            rewind_as::<T, Cursor<&'static [u8]>>,
        ),
    ];
    known
        .into_iter()
        .find_map(|(known, rewind)| (known == id).then_some(rewind))
}

/// A `File` (or `BufReader<File>`) is read ahead only when it is a regular file: a FIFO,
/// a tty or a device cannot seek back over what was read ahead. Other types pass.
fn regular_if_file<T: 'static>(value: &T) -> bool {
    let any = value as &dyn Any;
    let file = any.downcast_ref::<File>().or_else(|| {
        any.downcast_ref::<BufReader<File>>()
            .map(BufReader::get_ref)
    });
    file.is_none_or(|file| file.metadata().is_ok_and(|meta| meta.is_file()))
}

impl<T: Send + 'static> Unblock<T> {
    /// Wraps a blocking value, with up to 8 MiB of buffer in each direction (allocated as
    /// it fills).
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut reader = async_bridge::Unblock::new(std::io::Cursor::new(b"abc".to_vec()));
    /// let mut text = String::new();
    /// reader.read_to_string(&mut text).await?;
    /// assert_eq!(text, "abc");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    pub fn new(value: T) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, value)
    }

    /// Wraps a blocking value, buffering at most `capacity` bytes in each direction (a
    /// capacity of 0 counts as 1). A smaller capacity saves memory; below 8 MiB, sequential
    /// reads of files fall short of the speed of `std`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut out = async_bridge::Unblock::with_capacity(1 << 20, std::io::Cursor::new(Vec::new()));
    /// out.write_all(b"abc").await?;
    /// out.flush().await?;
    /// assert_eq!(out.into_inner().await.into_inner(), b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    pub fn with_capacity(capacity: usize, value: T) -> Self {
        let capacity = capacity.max(1);
        // One `fstat` for a `File`: cheap enough for the executor.
        let rewind = known_rewind::<T>().filter(|_| regular_if_file(&value));
        let direct = if rewind.is_some() && TypeId::of::<T>() == TypeId::of::<File>() {
            direct::Direct::Check
        } else {
            direct::Direct::Off
        };
        Unblock {
            value: Some(value),
            hop: None,
            shared: Shared::new(capacity),
            fns: Fns {
                rewind,
                write: None,
                flush: None,
                seek: None,
                clean_up: clean_up::<T>,
            },
            chunk: Chunk::default(),
            filling: Vec::new(),
            slots: Mutex::new(Slots::default()),
            seeking: None,
            direct,
            site: Location::caller(),
        }
    }

    /// Lets the blocking thread read ahead on a `Seek` type that `new` does not know
    /// (it knows `File` and `BufReader<File>` over a regular file, and `Cursor`):
    /// read-ahead not consumed is given
    /// back by seeking back over it, so the type must be able to seek relative to its
    /// current position. Without this, each read is one hop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Cursor, Read, Seek, SeekFrom};
    /// use tokio::io::{AsyncReadExt, AsyncSeekExt};
    ///
    /// // A legacy reader type that can seek.
    /// struct Archive(Cursor<Vec<u8>>);
    /// impl Read for Archive {
    ///     fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> { Read::read(&mut self.0, buf) }
    /// }
    /// impl Seek for Archive {
    ///     fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> { Seek::seek(&mut self.0, pos) }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let archive = Archive(Cursor::new(vec![7; 1000]));
    /// let mut archive = async_bridge::Unblock::new(archive).with_read_ahead();
    /// let mut head = [0; 10];
    /// archive.read_exact(&mut head).await?;
    /// assert_eq!(archive.stream_position().await?, 10);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn with_read_ahead(mut self) -> Self
    where
        T: Seek,
    {
        fn rewind<T: Seek>(value: &mut T, by: i64) -> io::Result<u64> {
            value.seek(SeekFrom::Current(by))
        }
        self.fns.rewind = Some(rewind::<T>);
        self
    }

    /// Runs `f` on the value, on a blocking thread, and returns its result: any method of
    /// `T`, off the executor.
    ///
    /// Buffered writes are written to `T` first and read-ahead is given back, so `f` sees
    /// `T` exactly where the async reads and writes left it. Once polled, `f` runs even
    /// if the future is dropped (the value stays with the `Unblock`), and even if the
    /// `Unblock` is dropped too before `f` got a thread (tokio's blocking pool was busy):
    /// the drop leaves the queued step to run, `f` and then the drop's cleanup. It is the
    /// caller's closure, submitted by the caller's poll: it is not withdrawn behind the
    /// caller's back. `f` does not run only when, before it got a thread, the runtime
    /// shut down (then the future, if still awaited, panics, see below) or putting `T`
    /// in place failed (see Errors).
    ///
    /// Bytes whose write already failed (the error was returned by a write or a flush)
    /// are the exception: `call` does not retry them behind the caller's back, they stay
    /// buffered for the next write or flush, and `f` runs without them (for instance to
    /// make room on the device).
    ///
    /// # Errors
    ///
    /// When `T` cannot be put where the caller believes it is, `f` does not run and the
    /// error is returned: writing the buffered bytes failed (they stay buffered, for the
    /// next flush to retry), or seeking back over read-ahead failed, or (kind `Other`)
    /// bytes read from a value that cannot seek are buffered and not consumed, or an item
    /// fetched by a dropped `next()` is kept (see [`take_buffered`](Self::take_buffered):
    /// `f` would see `T` past them; read them, or take them, first).
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut file = async_bridge::Unblock::new(std::fs::File::open("Cargo.toml")?);
    /// let mut first = [0; 9];
    /// file.read_exact(&mut first).await?;
    /// // The outer `?` is the `Unblock`'s (see Errors), the inner one `metadata`'s.
    /// let len = file.call(|f| f.metadata().map(|m| m.len())).await??;
    /// assert!(len > 9);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// A panic in `f` resumes in the caller with its payload; the value stays usable.
    /// Panics when polled outside a tokio runtime, or when the runtime shut down before
    /// `f` could run.
    #[track_caller]
    pub fn call<R, F>(&mut self, f: F) -> impl Future<Output = io::Result<R>> + Send + '_
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let site = Location::caller();
        let mut f = Some(f);
        poll_fn(move |cx| loop {
            if f.is_some() {
                let idle = match ready!(self.poll_send_seek(cx)) {
                    Ok(()) => ready!(self.poll_idle(cx)),
                    Err(err) => Err(err),
                };
                if let Err(err) = idle {
                    panic!("async_bridge::Unblock::call at {site}: {err}");
                }
                if let Some(err) = self.unmovable(site) {
                    return Poll::Ready(Err(err));
                }
                let f = f.take().expect("checked above");
                self.direct.recheck();
                self.slots().answer = None;
                self.give_back();
                let submitted = self.submit(HopKind::Other, false, move |value, _, ready| {
                    // `f` runs only on `T` where the caller believes it is.
                    Payload::Answer(ready.map(|()| {
                        panic::catch_unwind(AssertUnwindSafe(|| f(value)))
                            .map(|r| Box::new(r) as Box<dyn Any + Send>)
                    }))
                });
                if let Err(err) = submitted {
                    panic!("async_bridge::Unblock::call at {site}: {err}");
                }
            } else {
                let _ = ready!(self.poll_idle(cx));
                return Poll::Ready(match self.slots().answer.take() {
                    Some(Ok(Ok(answer))) => {
                        Ok(*answer.downcast::<R>().expect("the answer of this call"))
                    }
                    Some(Ok(Err(payload))) => job::resume(payload),
                    Some(Err(err)) => Err(err),
                    None => panic!(
                        "async_bridge::Unblock::call at {site}: the runtime shut down before \
                         the closure ran"
                    ),
                });
            }
        })
    }

    /// The value, with buffered writes written to it and read-ahead given back, so that
    /// it is exactly where the async reads and writes left it.
    ///
    /// Errors of writing the buffered bytes are kept for the next write, flush or
    /// shutdown. Bytes whose write already failed (an error a write or flush returned)
    /// are not tried again here: they stay buffered, for the next write or flush.
    ///
    /// On a value that cannot seek, bytes read from it and not consumed (see
    /// [`take_buffered`](Self::take_buffered)) stay buffered: the next async read
    /// returns them first, and a read through `&mut T` reads what comes after them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Cursor;
    /// use tokio::io::AsyncReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut reader = async_bridge::Unblock::new(Cursor::new(vec![1u8; 100_000]));
    /// let mut head = [0; 10];
    /// reader.read_exact(&mut head).await?;
    /// // Far more than 10 bytes were read ahead; the cursor was moved back.
    /// assert_eq!(reader.get_mut().await.position(), 10);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// Panics when it has blocking work to do outside a tokio runtime, or when the value
    /// was lost because its runtime shut down with the value on a blocking thread.
    pub async fn get_mut(&mut self) -> &mut T {
        let mut sent = false;
        if let Err(err) = poll_fn(|cx| self.poll_settle(cx, false, &mut sent)).await {
            panic!("async_bridge::Unblock::get_mut: {err}");
        }
        self.direct.recheck();
        self.value.as_mut().expect(LOST)
    }

    /// Unwraps the value, with buffered writes written and flushed and read-ahead given
    /// back.
    ///
    /// An error writing or flushing here has nobody to go to: `flush().await` first to
    /// see it. The buffered bytes are tried once more; those that still cannot be written
    /// are dropped (their error was, or would have been, returned by that `flush`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Cursor;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut out = async_bridge::Unblock::new(Cursor::new(Vec::new()));
    /// out.write_all(b"kept").await?;
    /// let cursor = out.into_inner().await;
    /// assert_eq!(cursor.into_inner(), b"kept");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// On a value that cannot seek, bytes read from it and not consumed (a read future
    /// dropped after its first poll, an `AsyncBufRead` buffer not consumed) cannot be put
    /// back: they are dropped with the `Unblock`. Use [`into_parts`](Self::into_parts)
    /// to get them. An item that a `next()` dropped after its first poll fetched from an
    /// iterator is dropped too (take it with `take_fetched` first).
    ///
    /// # Panics
    ///
    /// As [`get_mut`](Self::get_mut).
    pub async fn into_inner(self) -> T {
        self.unwrap_parts("into_inner").await.0
    }

    /// As [`into_inner`](Self::into_inner), and the bytes read from `T` and not consumed
    /// that `T` cannot take back: always empty on a value that seeks back over its
    /// read-ahead, and on a value that cannot seek, what a read future dropped after its
    /// first poll (or an `AsyncBufRead` buffer not consumed) left. The bytes come before
    /// whatever `T` reads next: nothing is lost, nothing is reordered.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use futures::FutureExt;
    /// use tokio::io::AsyncReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (mut tx, rx) = UnixStream::pair()?;
    /// let mut rx = async_bridge::Unblock::new(rx); // a socket: it cannot seek
    /// let mut buf = [0; 4];
    /// // Given up on after its first poll (as a `select!` or a timeout would): the
    /// // blocking `read` it started goes on.
    /// assert!(rx.read(&mut buf).now_or_never().is_none());
    /// tx.write_all(b"abcdef")?;
    /// drop(tx);
    /// let (mut rx, unread) = rx.into_parts().await;
    /// let mut rest = Vec::new();
    /// rx.read_to_end(&mut rest)?;
    /// // `unread` holds what the dropped read got (if it got there first): no byte is
    /// // lost or out of order.
    /// assert_eq!([unread, rest].concat(), b"abcdef");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get_mut`](Self::get_mut).
    pub async fn into_parts(self) -> (T, Vec<u8>) {
        self.unwrap_parts("into_parts").await
    }

    async fn unwrap_parts(mut self, what: &str) -> (T, Vec<u8>) {
        let mut sent = false;
        if let Err(err) = poll_fn(|cx| self.poll_settle(cx, true, &mut sent)).await {
            panic!("async_bridge::Unblock::{what}: {err}");
        }
        let unread = self.take_unread();
        (self.value.take().expect(LOST), unread)
    }

    /// Takes the bytes read from `T` and not consumed that `T` cannot take back (see
    /// [`into_parts`](Self::into_parts)), first bringing the value home (waiting for a
    /// blocking read in flight). Afterwards nothing is buffered in front of `T`:
    /// [`call`](Self::call) and [`get_mut`](Self::get_mut) see it exactly where the
    /// bytes handed out end. Always empty on a value that can seek back (its read-ahead
    /// is given back instead).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (mut tx, rx) = UnixStream::pair()?;
    /// tx.write_all(b"header\nbody")?;
    /// drop(tx);
    /// let mut rx = async_bridge::Unblock::new(rx);
    /// let mut header = String::new();
    /// rx.read_line(&mut header).await?; // reads more than the line, to find its end
    /// let body = rx.take_buffered().await;
    /// let rest = rx.call(|s| std::io::read_to_string(s)).await??;
    /// assert_eq!(header, "header\n");
    /// assert_eq!([body, rest.into_bytes()].concat(), b"body");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get_mut`](Self::get_mut).
    pub async fn take_buffered(&mut self) -> Vec<u8> {
        let idle = poll_fn(|cx| {
            ready!(self.poll_send_seek(cx))?;
            self.poll_idle(cx)
        });
        if let Err(err) = idle.await {
            panic!("async_bridge::Unblock::take_buffered: {err}");
        }
        self.take_unread()
    }

    /// How many bytes read from `T` and not consumed are buffered in front of a value
    /// that cannot seek (see [`take_buffered`](Self::take_buffered)); 0 on a value that
    /// can seek back. While a read is in flight, it can grow.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut cursor = async_bridge::Unblock::new(std::io::Cursor::new(b"ab".to_vec()));
    /// assert_eq!(cursor.fill_buf().await?, b"ab");
    /// assert_eq!(cursor.buffered(), 0); // a `Cursor` seeks back over its read-ahead
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn buffered(&self) -> usize {
        if self.fns.rewind.is_some() {
            return 0;
        }
        self.chunk.len() + self.shared.lock().ready_bytes
    }

    /// The bytes buffered in front of a value that cannot seek, taken; call with the
    /// value at hand.
    fn take_unread(&mut self) -> Vec<u8> {
        if self.fns.rewind.is_some() {
            return Vec::new();
        }
        let mut unread = self.chunk.bytes().to_vec();
        self.chunk.start = self.chunk.end;
        let mut pipe = self.shared.lock();
        while let Some(chunk) = pipe.ready.pop_front() {
            unread.extend_from_slice(chunk.bytes());
            pipe.recycle(chunk.buf);
        }
        pipe.ready_bytes = 0;
        unread
    }

    /// Why `call` must not run a closure on the value now: bytes, or an item, that the
    /// value cannot take back are held in front of it. Call with the value at hand.
    fn unmovable(&mut self, site: &Location<'_>) -> Option<io::Error> {
        let bytes = self.buffered();
        if bytes > 0 {
            return Some(io::Error::other(format!(
                "async_bridge::Unblock::call at {site}: {bytes} bytes read from the value are \
                 buffered and not consumed, and it cannot seek back over them: the closure \
                 would see the value past them; read them, or take them with \
                 `take_buffered`, first"
            )));
        }
        if matches!(self.slots().item, Some(Ok(Some(_)) | Err(_))) {
            return Some(io::Error::other(format!(
                "async_bridge::Unblock::call at {site}: an item fetched by a `next()` \
                 dropped after its first poll is kept: the closure would see the iterator \
                 past it; take it with `next` or `take_fetched` first"
            )));
        }
        None
    }
}

impl<T> Unpin for Unblock<T> {}

impl<T> Drop for Unblock<T> {
    fn drop(&mut self) {
        let filling = mem::take(&mut self.filling);
        let mut pipe = self.shared.lock();
        if !filling.is_empty() {
            let end = filling.len();
            pipe.queued_bytes += end;
            pipe.queued.push_back(Chunk {
                buf: filling,
                start: 0,
                end,
            });
        }
        if self.fns.rewind.is_some() {
            // Added to what is owed so far; the read-ahead in the pipe (and whatever a hop
            // still reading adds to it) is counted when the value is cleaned up.
            pipe.rewind += self.chunk.len() as u64;
        } else {
            pipe.rewind = 0;
        }
        if pipe.hop_running {
            // The hop cleans up on its way out (its `Carry` sees `dropped`). One still
            // queued (tokio's blocking pool is busy) must still run, for that cleanup and
            // for a `call` closure it carries: its reply is kept alive until then, so that
            // the job layer does not withdraw it.
            pipe.dropped = true;
            pipe.stop = true;
            pipe.orphan = self.hop.take().map(|hop| hop.reply);
            self.shared.hop_cv.notify_all();
            return;
        }
        let Some(value) = self.value.take().or_else(|| pipe.home.take()) else {
            return;
        };
        let leftover = Leftover::take(value, &mut pipe, self.fns);
        drop(pipe);
        if !leftover.has_work() {
            return;
        }
        (self.fns.clean_up)(leftover, self.site);
    }
}

impl<T: fmt::Debug> fmt::Debug for Unblock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Unblock");
        match &self.value {
            Some(value) => out.field("inner", value),
            None => out.field("inner", &format_args!("<on a blocking thread>")),
        };
        out.field("capacity", &self.shared.cap)
            .field("read_ahead", &self.fns.rewind.is_some())
            .finish()
    }
}
