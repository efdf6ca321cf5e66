//! Writing: tokio's `AsyncWrite` for `Unblock<T: Write>`.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

use super::{pipe, HopKind, Payload, Unblock};

impl<T: Write + Send + 'static> Unblock<T> {
    fn writes_enabled(&mut self) {
        if self.fns.write.is_none() {
            self.fns.write = Some(<T as Write>::write);
            self.fns.flush = Some(<T as Write>::flush);
        }
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        self.writes_enabled();
        ready!(self.poll_send_seek(cx))?;
        loop {
            self.resume_panic();
            // A flush whose future was dropped: new bytes make its result stale, and its
            // error is returned here rather than lost.
            self.stale_flush();
            if let Some(err) = self.shared.lock().deferred.take() {
                return Poll::Ready(Err(err));
            }
            if src.is_empty() {
                return Poll::Ready(Ok(0));
            }
            match self.hop.as_ref().map(|hop| hop.kind) {
                None | Some(HopKind::Write) => break,
                // Read-ahead (or anything else) must come home, to be given back.
                Some(_) => ready!(self.poll_idle(cx))?,
            }
        }
        if self.hop.is_none() {
            ready!(self.poll_hop(cx, false))?;
            self.give_back();
        }
        let cap = self.shared.cap;
        let chunk = self.shared.chunk;
        let mut buffered = self.shared.lock().queued_bytes + self.filling.len();
        if buffered >= cap {
            // Full: make sure the writer thread runs, and wait for room.
            self.shared.waker.register(cx.waker());
            ready!(self.ensure_writer(cx))?;
            buffered = self.shared.lock().queued_bytes + self.filling.len();
            if buffered >= cap {
                if let Some(err) = self.shared.lock().deferred.take() {
                    return Poll::Ready(Err(err));
                }
                return Poll::Pending;
            }
        }
        let n = src.len().min(cap - buffered);
        let mut rest = &src[..n];
        while !rest.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling = self.shared.lock().buffer(chunk);
                self.filling.clear();
            }
            let take = rest.len().min(chunk - self.filling.len());
            self.filling.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.filling.len() >= chunk {
                self.queue_filling();
                // An error here (no runtime) is reported by the flush.
                let _ = self.ensure_writer(cx);
            }
        }
        Poll::Ready(Ok(n))
    }

    /// Makes sure a hop is writing the queue (or will, once it wakes).
    fn ensure_writer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.hop.as_ref().map(|hop| hop.kind) {
            Some(HopKind::Write) => {
                let pipe = self.shared.lock();
                if pipe.hop_running {
                    if pipe.hop_waiting && pipe.queued_bytes >= self.shared.cap / 2 {
                        self.shared.hop_cv.notify_one();
                    }
                    return Poll::Ready(Ok(()));
                }
                drop(pipe);
                ready!(self.poll_hop(cx, false))?;
            }
            Some(_) => ready!(self.poll_idle(cx))?,
            None => ready!(self.poll_hop(cx, false))?,
        }
        if self.shared.lock().deferred.is_some() {
            return Poll::Ready(Ok(()));
        }
        let fns = self.fns;
        Poll::Ready(
            self.submit(HopKind::Write, true, move |value, shared, ready| {
                match ready {
                    Ok(()) => pipe::write_behind(value, shared, fns),
                    Err(err) => {
                        shared.lock().deferred.get_or_insert(err);
                    }
                }
                Payload::Done
            }),
        )
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writes_enabled();
        ready!(self.poll_send_seek(cx))?;
        loop {
            self.resume_panic();
            if let Some(flushed) = self.slots().flushed.take() {
                return Poll::Ready(flushed);
            }
            ready!(self.poll_idle(cx))?;
            self.resume_panic();
            if let Some(flushed) = self.slots().flushed.take() {
                return Poll::Ready(flushed);
            }
            if let Some(err) = self.shared.lock().deferred.take() {
                return Poll::Ready(Err(err));
            }
            let fns = self.fns;
            self.submit(HopKind::Other, true, move |value, shared, ready| {
                Payload::Flushed(ready.and_then(|()| {
                    shared.lock().dirty = false;
                    fns.flush.map_or(Ok(()), |flush| flush(value))
                }))
            })?;
        }
    }
}

/// Writes are buffered (up to the capacity) and written behind by a blocking thread; they
/// are in `T` after `flush` or `shutdown`. An error writing is returned by the next write,
/// flush or shutdown (or read or seek), and the bytes not written stay buffered.
impl<T: Write + Send + 'static> AsyncWrite for Unblock<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_inner(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    /// Flushes, writer and `T`; `T` itself is closed when dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }
}
