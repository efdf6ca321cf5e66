//! Reading: tokio's `AsyncRead` and `AsyncBufRead` for `Unblock<T: Read>`.

use std::any::Any;
use std::fs::File;
use std::io::{self, Read};
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::runtime::Handle;
use tokio::task::coop;

use super::direct::{self, Cached, Direct, DIRECT_CHUNK};
use super::pipe::{self, Chunk, Pipe, Shared};
use super::{HopKind, Payload, Unblock};

impl<T: Read + Send + 'static> Unblock<T> {
    /// Makes the consumer's chunk non-empty, or puts bytes straight into `into` (a read
    /// from the page cache, see [`direct`](super::direct)); `false` at end of file
    /// (reported once). `want` bounds the read when `T` cannot be read ahead.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        mut into: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<bool>> {
        ready!(self.poll_send_seek(cx))?;
        loop {
            self.resume_panic();
            if self.chunk.len() > 0 {
                return Poll::Ready(Ok(true));
            }
            {
                let mut pipe = self.shared.lock();
                if let Some(err) = pipe.deferred.take() {
                    return Poll::Ready(Err(err));
                }
                if take_ready(&mut self.chunk, &self.shared, &mut pipe) {
                    drop(pipe);
                    self.keep_reading(cx);
                    continue;
                }
                if let Some(err) = pipe.read_err.take() {
                    return Poll::Ready(Err(err));
                }
                if mem::take(&mut pipe.eof) {
                    return Poll::Ready(Ok(false));
                }
            }
            match self.hop.as_ref().map(|hop| hop.kind) {
                Some(HopKind::Read) => {
                    self.shared.waker.register(cx.waker());
                    {
                        let mut pipe = self.shared.lock();
                        if !pipe.ready.is_empty() || pipe.eof || pipe.read_err.is_some() {
                            continue;
                        }
                        pipe.consumer_waiting = true;
                    }
                    ready!(self.poll_hop(cx, false))?;
                }
                Some(_) => ready!(self.poll_idle(cx))?,
                None => {
                    ready!(self.poll_hop(cx, false))?;
                    if let Some(filled) = ready!(self.poll_cached(cx, into.as_deref_mut())) {
                        return Poll::Ready(Ok(filled));
                    }
                    self.start_read(want)?;
                }
            }
        }
    }

    /// Restarts read-ahead that stopped on a full pipe, once half of it is consumed, so
    /// the consumer does not wait for a thread hop when it runs dry.
    fn keep_reading(&mut self, cx: &mut Context<'_>) {
        if self.fns.rewind.is_none() || self.direct == Direct::Try {
            return;
        }
        {
            let pipe = self.shared.lock();
            if pipe.hop_running
                || pipe.eof
                || pipe.read_err.is_some()
                || pipe.ready_bytes > self.shared.cap / 2
            {
                return;
            }
        }
        match self.hop.as_ref().map(|hop| hop.kind) {
            Some(HopKind::Read) if self.poll_hop(cx, false).is_pending() => return,
            Some(HopKind::Read) | None => {}
            Some(_) => return,
        }
        if self.value.is_some() && self.slots().panic.is_none() {
            // An error here (no runtime) is reported by the read that needs the bytes.
            let _ = self.start_read(self.shared.chunk);
        }
    }

    /// Reads from the page cache on this thread, when `T` is a regular `File` at the
    /// position the caller believes (nothing read ahead, owed, queued or failed) and the
    /// kernel has the bytes in memory: `None` sends the read to a blocking thread.
    ///
    /// A read of at least [`DIRECT_CHUNK`] goes into `into`; a smaller one (or `into`
    /// absent: `AsyncBufRead`) fills the consumer's chunk. Each read counts against
    /// tokio's cooperative budget, as tokio's own IO does, so that a task reading a cached
    /// file to its end still lets its worker run other tasks.
    fn poll_cached(
        &mut self,
        cx: &mut Context<'_>,
        into: Option<&mut ReadBuf<'_>>,
    ) -> Poll<Option<bool>> {
        if self.direct == Direct::Off
            || !self.filling.is_empty()
            || self.slots().panic.is_some()
            || Handle::try_current().is_err()
        {
            return Poll::Ready(None);
        }
        {
            let pipe = self.shared.lock();
            if pipe.hop_running
                || pipe.rewind > 0
                || !pipe.queued.is_empty()
                || !pipe.ready.is_empty()
            {
                return Poll::Ready(None);
            }
        }
        let Some(file) = self
            .value
            .as_mut()
            .and_then(|value| (value as &mut dyn Any).downcast_mut::<File>())
        else {
            return Poll::Ready(None);
        };
        if self.direct == Direct::Check {
            if direct::bypasses_the_cache(file) {
                self.direct = Direct::Off;
                return Poll::Ready(None);
            }
            self.direct = Direct::Try;
        }
        let coop = ready!(coop::poll_proceed(cx));
        let straight = DIRECT_CHUNK.min(self.shared.chunk);
        let cached = match into {
            Some(into) if into.remaining() >= straight => {
                let len = into.remaining().min(self.shared.chunk);
                let cached = direct::read_cached(file, into.initialize_unfilled_to(len));
                if let Cached::Read(n) = cached {
                    into.advance(n);
                }
                cached
            }
            _ => {
                let fill = self.shared.chunk;
                if self.chunk.buf.len() < fill {
                    self.chunk.buf = self.shared.lock().buffer(fill);
                }
                let cached = direct::read_cached(file, &mut self.chunk.buf[..fill]);
                if let Cached::Read(n) = cached {
                    self.chunk.start = 0;
                    self.chunk.end = n;
                }
                cached
            }
        };
        Poll::Ready(match cached {
            Cached::Read(n) => {
                coop.made_progress();
                self.direct = Direct::Try;
                Some(n > 0)
            }
            Cached::Miss => {
                self.direct = Direct::Ahead;
                None
            }
            Cached::Unsupported => {
                self.direct = Direct::Off;
                None
            }
        })
    }

    fn start_read(&mut self, want: usize) -> io::Result<()> {
        let once = self.fns.rewind.is_none();
        let want = want.clamp(1, self.shared.cap);
        self.submit(HopKind::Read, true, move |value, shared, ready| {
            match ready {
                Ok(()) => pipe::read_ahead(value, shared, once, want),
                Err(err) => {
                    shared.lock().deferred.get_or_insert(err);
                }
            }
            Payload::Done
        })
    }

    /// Copies consumed bytes into `buf`, from as many chunks as are ready.
    fn copy_out(&mut self, buf: &mut ReadBuf<'_>) {
        loop {
            let n = self.chunk.len().min(buf.remaining());
            buf.put_slice(&self.chunk.bytes()[..n]);
            self.chunk.start += n;
            if buf.remaining() == 0 {
                return;
            }
            let mut pipe = self.shared.lock();
            if !take_ready(&mut self.chunk, &self.shared, &mut pipe) {
                return;
            }
        }
    }
}

/// Moves the next chunk of read-ahead into the consumer's hands, if there is one.
fn take_ready<T>(chunk: &mut Chunk, shared: &Shared<T>, pipe: &mut Pipe<T>) -> bool {
    let Some(next) = pipe.ready.pop_front() else {
        return false;
    };
    pipe.ready_bytes -= next.len();
    let old = mem::replace(chunk, next);
    pipe.recycle(old.buf);
    if pipe.hop_waiting && pipe.ready_bytes <= shared.cap / 2 {
        shared.hop_cv.notify_one();
    }
    true
}

/// Reads ahead when `T` can give the bytes back (see [`Unblock`]); otherwise each read is
/// one blocking `read` of at most `buf.remaining()` bytes.
impl<T: Read + Send + 'static> AsyncRead for Unblock<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // A read from the page cache may have gone straight into `buf`.
        if ready!(this.poll_fill(cx, buf.remaining(), Some(buf)))? && this.chunk.len() > 0 {
            this.copy_out(buf);
            this.keep_reading(cx);
        }
        Poll::Ready(Ok(()))
    }
}

/// The buffer is the chunk being consumed. On a reader that cannot seek, `poll_fill_buf`
/// reads up to 256 KiB; what is not consumed stays buffered and is served first, and
/// [`take_buffered`](Unblock::take_buffered) or [`into_parts`](Unblock::into_parts) hand
/// it out (`into_inner`, as `std::io::BufReader`'s, cannot give it back).
impl<T: Read + Send + 'static> AsyncBufRead for Unblock<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let want = this.shared.chunk;
        if ready!(this.poll_fill(cx, want, None))? {
            Poll::Ready(Ok(this.chunk.bytes()))
        } else {
            Poll::Ready(Ok(&[]))
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.chunk.start += amt.min(this.chunk.len());
    }
}
