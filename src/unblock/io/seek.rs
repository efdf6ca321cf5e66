//! Seeking: tokio's `AsyncSeek` for `Unblock<T: Seek>`.

use std::io::{self, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncSeek;

use super::{HopKind, Payload, Unblock};

/// A seek asked for and not completed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seeking {
    pub(super) pos: SeekFrom,
    /// It was sent to a thread: its result will be in the `pos` slot.
    pub(super) sent: bool,
}

impl<T: Send + 'static> Unblock<T> {
    /// Sends a seek that was started (`start_seek`) and not sent yet to a thread, before
    /// anything else is done with the value: a read, a write or a `call` that comes after
    /// `start_seek` sees `T` where the seek put it, even if the future that started it
    /// was dropped before `poll_complete` sent it. Its result is kept for `poll_complete`.
    pub(super) fn poll_send_seek(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(Seeking { pos, sent: false }) = self.seeking else {
            return Poll::Ready(Ok(()));
        };
        let seek = self.fns.seek.expect("start_seek keeps Seek::seek");
        ready!(self.poll_idle(cx))?;
        self.slots().pos = None;
        self.give_back();
        self.submit(HopKind::Other, true, move |value, _, ready| {
            Payload::Pos(ready.and_then(|()| seek(value, pos)))
        })?;
        self.seeking = Some(Seeking { pos, sent: true });
        Poll::Ready(Ok(()))
    }
}

impl<T: Seek + Send + 'static> Unblock<T> {
    pub(super) fn start_seek_inner(&mut self, pos: SeekFrom) -> io::Result<()> {
        if self.seeking.is_some() {
            return Err(io::Error::other(
                "a seek is in progress: call poll_complete before start_seek",
            ));
        }
        self.fns.seek = Some(<T as Seek>::seek);
        self.seeking = Some(Seeking { pos, sent: false });
        Ok(())
    }

    pub(super) fn poll_seek_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        self.fns.seek = Some(<T as Seek>::seek);
        loop {
            self.resume_panic();
            match self.seeking {
                // Without `start_seek`: the current position.
                None => {
                    self.seeking = Some(Seeking {
                        pos: SeekFrom::Current(0),
                        sent: false,
                    })
                }
                Some(Seeking { sent: false, .. }) => {
                    let sent = match ready!(self.poll_idle(cx)) {
                        Ok(()) => match self.shared.lock().deferred.take() {
                            // An error of a blocking step before: the seek's result.
                            Some(err) => Err(err),
                            None => Ok(()),
                        },
                        Err(err) => Err(err),
                    };
                    // The value is at hand: sending does not wait.
                    let sent = match sent {
                        Ok(()) => ready!(self.poll_send_seek(cx)),
                        Err(err) => Err(err),
                    };
                    if let Err(err) = sent {
                        self.seeking = None;
                        return Poll::Ready(Err(err));
                    }
                }
                Some(Seeking { sent: true, .. }) => {
                    let idle = ready!(self.poll_idle(cx));
                    self.seeking = None;
                    idle?;
                    self.resume_panic();
                    return Poll::Ready(self.slots().pos.take().unwrap_or_else(|| {
                        Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "async_bridge::Unblock: the runtime shut down before the seek ran",
                        ))
                    }));
                }
            }
        }
    }
}

/// Seeks from the logical position: read-ahead is given back and buffered writes are
/// written first. `poll_complete` without `start_seek` returns the current position.
///
/// A seek started is done before anything that comes after it, even when the future
/// that started it was dropped before it completed (reads, writes and
/// [`call`](Unblock::call) see `T` where it put it); a seek not yet sent to a thread when
/// the `Unblock` is dropped is not done.
impl<T: Seek + Send + 'static> AsyncSeek for Unblock<T> {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        self.get_mut().start_seek_inner(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        self.get_mut().poll_seek_inner(cx)
    }
}
