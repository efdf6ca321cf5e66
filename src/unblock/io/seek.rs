//! Seeking: tokio's `AsyncSeek` for `Unblock<T: Seek>`.

use std::io::{self, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncSeek;

use super::{HopKind, Payload, Unblock};

impl<T: Seek + Send + 'static> Unblock<T> {
    pub(super) fn start_seek_inner(&mut self, pos: SeekFrom) -> io::Result<()> {
        if self.seeking.is_some() {
            return Err(io::Error::other(
                "a seek is in progress: call poll_complete before start_seek",
            ));
        }
        self.seeking = Some(Some(pos));
        Ok(())
    }

    pub(super) fn poll_seek_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        loop {
            self.resume_panic();
            if let Some(pos) = self.slots().pos.take() {
                self.seeking = None;
                return Poll::Ready(pos);
            }
            if let Err(err) = ready!(self.poll_idle(cx)) {
                self.seeking = None;
                return Poll::Ready(Err(err));
            }
            self.resume_panic();
            if let Some(pos) = self.slots().pos.take() {
                self.seeking = None;
                return Poll::Ready(pos);
            }
            if let Some(err) = self.shared.lock().deferred.take() {
                self.seeking = None;
                return Poll::Ready(Err(err));
            }
            let pos = match self.seeking.take() {
                Some(Some(pos)) => pos,
                _ => SeekFrom::Current(0),
            };
            self.seeking = Some(None);
            self.give_back();
            if let Err(err) = self.submit(HopKind::Other, true, move |value, _, ready| {
                Payload::Pos(ready.and_then(|()| value.seek(pos)))
            }) {
                self.seeking = None;
                return Poll::Ready(Err(err));
            }
        }
    }
}

/// Seeks from the logical position: read-ahead is given back and buffered writes are
/// written first. `poll_complete` without `start_seek` returns the current position.
impl<T: Seek + Send + 'static> AsyncSeek for Unblock<T> {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        self.get_mut().start_seek_inner(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        self.get_mut().poll_seek_inner(cx)
    }
}
