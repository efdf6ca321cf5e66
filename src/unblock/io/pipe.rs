//! The state an `Unblock<T>` shares with the blocking thread working for it, and what that
//! thread runs: read-ahead, write-behind, and the cleanup after a drop.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::task::AtomicWaker;
use parking_lot::{Condvar, Mutex, MutexGuard};

/// How long a hop waits for the async side (room to read into, bytes to write) before it
/// gives its thread back. Long enough to bridge the gaps of a busy consumer, short enough
/// that an idle `Unblock` holds no thread (and, under the virtual-time harness, holds the
/// clock only for this long in real time).
const LINGER: Duration = Duration::from_millis(2);

/// Largest chunk one blocking `read`/`write` call moves.
///
/// 256 KiB: the kernel copies into a buffer still in the core's cache, and the consumer
/// copies out of it while it still is. With 1 MiB chunks (as before) an `Unblock<File>`
/// read 64 KiB at a time ran at 0.3-0.55× of `std` on a loaded 2-core machine, at
/// 0.75-0.8× with 256 KiB (512 KiB: 0.2-0.7×; benches/io.rs, interleaved): the extra
/// hand-offs of smaller chunks cost less than the cache misses of larger ones.
pub(super) const MAX_CHUNK: usize = 256 * 1024;

/// A run of bytes: `buf[start..end]` is the live part.
#[derive(Default)]
pub(super) struct Chunk {
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Chunk {
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// Seeks relative to the current position.
pub(super) type RewindFn<T> = fn(&mut T, i64) -> io::Result<u64>;
/// `Write::write` of `T`.
pub(super) type WriteFn<T> = fn(&mut T, &[u8]) -> io::Result<usize>;
/// `Seek::seek` of `T`.
pub(super) type SeekFn<T> = fn(&mut T, io::SeekFrom) -> io::Result<u64>;

/// The methods of `T` the blocking side may need, captured where the bounds are known
/// (`Unblock<T>` itself has none), so that the cleanup after a drop can use them.
pub(super) struct Fns<T> {
    /// Seeks relative to the current position: present when `T` can give read-ahead back.
    pub(super) rewind: Option<RewindFn<T>>,
    pub(super) write: Option<WriteFn<T>>,
    pub(super) flush: Option<fn(&mut T) -> io::Result<()>>,
    /// `Seek::seek`, once a seek was started (so that any operation can send a seek that
    /// was started and not sent yet).
    pub(super) seek: Option<SeekFn<T>>,
    /// Hands a dropped value's leftover work to a blocking thread (captured where
    /// `T: Send + 'static` is known).
    pub(super) clean_up: fn(Leftover<T>, &'static std::panic::Location<'static>),
}

impl<T> Clone for Fns<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Fns<T> {}

/// Shared between the async side and the hop that is running.
pub(super) struct Shared<T> {
    pub(super) pipe: Mutex<Pipe<T>>,
    /// The hop waits here for room (read-ahead) or bytes (write-behind).
    pub(super) hop_cv: Condvar,
    /// The async side waits here for bytes (reads) or room (writes).
    pub(super) waker: AtomicWaker,
    pub(super) cap: usize,
    pub(super) chunk: usize,
}

pub(super) struct Pipe<T> {
    /// The value, between hops, when the async side has not taken it back yet.
    pub(super) home: Option<T>,
    pub(super) hop_running: bool,
    /// The hop is parked on `hop_cv`.
    pub(super) hop_waiting: bool,
    /// The async side wants the value back: finish the current step and return.
    pub(super) stop: bool,
    /// The `Unblock` was dropped: the hop cleans up on its way out.
    pub(super) dropped: bool,

    /// Read-ahead, in order, not yet taken by the async side.
    pub(super) ready: VecDeque<Chunk>,
    pub(super) ready_bytes: usize,
    pub(super) eof: bool,
    pub(super) read_err: Option<io::Error>,
    /// The consumer ran dry and registered its waker; it is woken when enough is ready.
    pub(super) consumer_waiting: bool,

    /// Written by the caller, not yet written to `T`.
    pub(super) queued: VecDeque<Chunk>,
    pub(super) queued_bytes: usize,
    /// An error of a blocking step the caller has not seen yet (a write, or the seek that
    /// gives read-ahead back); the next read, write, flush, shutdown or seek returns it.
    pub(super) deferred: Option<io::Error>,
    /// Bytes went into `T` since its last flush.
    pub(super) dirty: bool,
    /// Writing the queue failed; only a flush or a new write tries again (a `call` or a
    /// read does not retry it behind the caller's back).
    pub(super) failed: bool,
    /// Bytes read ahead and given back, for the next hop's prelude (or, after a drop, the
    /// cleanup) to seek back over; the read-ahead still in `ready` is counted when the
    /// cleanup takes it.
    pub(super) rewind: u64,
    /// The reply of a hop whose `Unblock` was dropped while it was queued, kept so that
    /// the hop still runs (it is not withdrawn); let go of once it ran.
    pub(super) orphan: Option<crate::job::Reply<super::hop::Payload>>,

    pub(super) spare: Vec<Vec<u8>>,
    pub(super) spare_limit: usize,
}

impl<T> Shared<T> {
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Shared {
            pipe: Mutex::new(Pipe {
                home: None,
                hop_running: false,
                hop_waiting: false,
                stop: false,
                dropped: false,
                ready: VecDeque::new(),
                ready_bytes: 0,
                eof: false,
                read_err: None,
                consumer_waiting: false,
                queued: VecDeque::new(),
                queued_bytes: 0,
                deferred: None,
                dirty: false,
                failed: false,
                rewind: 0,
                orphan: None,
                spare: Vec::new(),
                spare_limit: cap.div_ceil(cap.min(MAX_CHUNK)) + 2,
            }),
            hop_cv: Condvar::new(),
            waker: AtomicWaker::new(),
            cap,
            chunk: cap.min(MAX_CHUNK),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Pipe<T>> {
        self.pipe.lock()
    }
}

impl<T> Pipe<T> {
    /// A buffer of at least `len` bytes, recycled when possible.
    pub(super) fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    /// Keeps a buffer for reuse: enough of them to fill the pipe, so that a long read or
    /// write allocates (and faults in) its buffers once.
    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < self.spare_limit && !buf.is_empty() {
            self.spare.push(buf);
        }
    }
}

/// Reads from `T` into the pipe: one chunk of at most `want` bytes when `once`, else up to
/// the capacity ahead of the consumer, lingering while the pipe is full.
pub(super) fn read_ahead<T: io::Read>(value: &mut T, shared: &Shared<T>, once: bool, want: usize) {
    let mut lingered = false;
    let mut first = true;
    let wake_at = (shared.cap / 4).max(shared.chunk);
    loop {
        let mut buf = {
            let mut pipe = shared.lock();
            loop {
                if pipe.stop {
                    return;
                }
                if once || pipe.ready_bytes + shared.chunk <= shared.cap {
                    break;
                }
                if lingered {
                    return;
                }
                pipe.hop_waiting = true;
                lingered = shared.hop_cv.wait_for(&mut pipe, LINGER).timed_out();
                pipe.hop_waiting = false;
            }
            pipe.buffer(shared.chunk.max(want))
        };
        let len = if once { want } else { shared.chunk };
        let result = loop {
            match value.read(&mut buf[..len]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => break result,
            }
        };
        let mut pipe = shared.lock();
        let mut short = false;
        let more = match result {
            Ok(0) => {
                pipe.eof = true;
                pipe.recycle(buf);
                false
            }
            Ok(n) => {
                pipe.ready.push_back(Chunk {
                    buf,
                    start: 0,
                    end: n,
                });
                pipe.ready_bytes += n;
                short = n < len;
                !once
            }
            Err(err) => {
                pipe.read_err = Some(err);
                pipe.recycle(buf);
                false
            }
        };
        // A consumer that ran dry is woken by the first chunk of a hop, then only once a
        // quarter of the pipe is ready: a wake-up can cost a futex call on this thread,
        // and one per chunk would slow the reading down by a third. A short read wakes it
        // too: the source is slow (or at its end), and the next read may block for long.
        let wake = pipe.consumer_waiting
            && (!more
                || first
                || short
                || pipe.ready_bytes >= wake_at
                || pipe.ready_bytes + shared.chunk > shared.cap);
        if wake {
            pipe.consumer_waiting = false;
        }
        drop(pipe);
        if wake {
            shared.waker.wake();
        }
        if !more {
            return;
        }
        first = false;
        lingered = false;
    }
}

/// Writes queued chunks to `T` until the queue is empty and stays empty, or, once asked to
/// stop, until it is empty. On an error the unwritten rest stays queued, for the next
/// flush to retry, and the error is kept for the caller.
pub(super) fn write_behind<T>(value: &mut T, shared: &Shared<T>, fns: Fns<T>) {
    let mut lingered = false;
    loop {
        let mut pipe = shared.lock();
        // Wait for half the capacity (or a stop, or the linger to run out) so that a fast
        // writer thread is not woken once per chunk.
        while !pipe.stop && !lingered && pipe.queued_bytes < shared.cap / 2 {
            pipe.hop_waiting = true;
            lingered = shared.hop_cv.wait_for(&mut pipe, LINGER).timed_out();
            pipe.hop_waiting = false;
        }
        if pipe.queued.is_empty() {
            return;
        }
        drop(pipe);
        if let Err(err) = drain(value, shared, fns) {
            shared.lock().deferred.get_or_insert(err);
            return;
        }
        lingered = false;
    }
}

/// Writes everything queued to `T`; on an error, the unwritten rest stays queued and the
/// error is returned (and not kept).
pub(super) fn drain<T>(value: &mut T, shared: &Shared<T>, fns: Fns<T>) -> io::Result<()> {
    let Some(write) = fns.write else {
        return Ok(());
    };
    loop {
        let Some(mut chunk) = shared.lock().queued.pop_front() else {
            return Ok(());
        };
        let result = write_chunk(value, write, &mut chunk);
        let mut pipe = shared.lock();
        let written = chunk.start;
        pipe.dirty |= written > 0;
        match result {
            Ok(()) => {
                pipe.queued_bytes -= chunk.end;
                pipe.recycle(chunk.buf);
            }
            Err(err) => {
                pipe.failed = true;
                pipe.queued_bytes -= written;
                chunk.buf.truncate(chunk.end);
                chunk.buf.drain(..chunk.start);
                chunk.end -= chunk.start;
                chunk.start = 0;
                pipe.queued.push_front(chunk);
                drop(pipe);
                shared.waker.wake();
                return Err(err);
            }
        }
        let room = pipe.queued_bytes <= shared.cap / 2;
        drop(pipe);
        if room {
            shared.waker.wake();
        }
    }
}

/// Writes one chunk, advancing `chunk.start` past what was written.
fn write_chunk<T>(value: &mut T, write: WriteFn<T>, chunk: &mut Chunk) -> io::Result<()> {
    let len = chunk.end;
    chunk.start = 0;
    while chunk.start < len {
        match write(value, &chunk.buf[chunk.start..len]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write the buffered data",
                ))
            }
            Ok(n) => chunk.start += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Before any other work, a hop puts `T` where the caller believes it is: it gives back the
/// bytes read ahead and not consumed, then writes what is queued.
pub(super) fn prelude<T>(
    value: &mut T,
    shared: &Shared<T>,
    fns: Fns<T>,
    retry: bool,
) -> io::Result<()> {
    let rewind = std::mem::take(&mut shared.lock().rewind);
    if rewind > 0 {
        if let Some(seek) = fns.rewind {
            let back = i64::try_from(rewind).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "read-ahead too large to seek back",
                )
            })?;
            seek(value, -back)?;
        }
    }
    {
        let mut pipe = shared.lock();
        if pipe.failed && !retry {
            return Ok(());
        }
        pipe.failed = false;
    }
    drain(value, shared, fns)
}

/// What a dropped `Unblock<T>` still owes its value: read-ahead to give back, bytes to
/// write, a flush. Dropping a `Leftover` does that work, then drops the value, on whatever
/// thread drops it (a blocking thread, normally).
pub(super) struct Leftover<T> {
    value: Option<T>,
    fns: Fns<T>,
    rewind: u64,
    queued: VecDeque<Chunk>,
    dirty: bool,
}

impl<T> Leftover<T> {
    /// Takes the work left in the pipe: the read-ahead not consumed (all of it, including
    /// what a hop delivered after the drop) is added to what the drop owed.
    pub(super) fn take(value: T, pipe: &mut Pipe<T>, fns: Fns<T>) -> Self {
        pipe.queued_bytes = 0;
        let unread = std::mem::take(&mut pipe.ready_bytes) as u64;
        while let Some(chunk) = pipe.ready.pop_front() {
            pipe.recycle(chunk.buf);
        }
        Leftover {
            value: Some(value),
            fns,
            rewind: std::mem::take(&mut pipe.rewind) + unread,
            queued: std::mem::take(&mut pipe.queued),
            dirty: pipe.dirty,
        }
    }

    /// True when dropping it does blocking work beyond dropping the value.
    pub(super) fn has_work(&self) -> bool {
        (self.rewind > 0 && self.fns.rewind.is_some())
            || ((!self.queued.is_empty() || self.dirty) && self.fns.write.is_some())
    }
}

impl<T> Drop for Leftover<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.as_mut() else {
            return;
        };
        if self.rewind > 0 {
            if let (Some(seek), Ok(back)) = (self.fns.rewind, i64::try_from(self.rewind)) {
                let _ = seek(value, -back);
            }
        }
        if let Some(write) = self.fns.write {
            for mut chunk in self.queued.drain(..) {
                if write_chunk(value, write, &mut chunk).is_err() {
                    // Nobody is left to tell; the value's own drop (a file's close) is
                    // all that remains.
                    return;
                }
                self.dirty = true;
            }
        }
        if self.dirty {
            if let Some(flush) = self.fns.flush {
                let _ = flush(value);
            }
        }
    }
}

/// Carries the value through a hop: when dropped (the hop ended, or never ran because its
/// runtime went away) it puts the value back where the async side finds it, or, when the
/// `Unblock` was dropped meanwhile, does the cleanup the drop could not.
pub(super) struct Carry<T> {
    pub(super) value: Option<T>,
    pub(super) shared: Arc<Shared<T>>,
    pub(super) fns: Fns<T>,
}

impl<T> Drop for Carry<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        let mut pipe = self.shared.lock();
        pipe.hop_running = false;
        pipe.hop_waiting = false;
        if pipe.dropped {
            let orphan = pipe.orphan.take();
            let leftover = Leftover::take(value, &mut pipe, self.fns);
            drop(pipe);
            drop(orphan);
            drop(leftover);
        } else {
            pipe.home = Some(value);
            drop(pipe);
            self.shared.waker.wake();
        }
    }
}
