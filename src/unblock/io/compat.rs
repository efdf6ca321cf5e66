//! futures' IO traits for `Unblock<T>` (feature `futures-io`), over the tokio ones.
#![cfg(feature = "futures-io")]

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::ReadBuf;

use super::Unblock;

/// As the tokio `AsyncRead`.
impl<T: Read + Send + 'static> futures::io::AsyncRead for Unblock<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        ready!(tokio::io::AsyncRead::poll_read(self, cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

/// As the tokio `AsyncBufRead`.
impl<T: Read + Send + 'static> futures::io::AsyncBufRead for Unblock<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        tokio::io::AsyncBufRead::poll_fill_buf(self, cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        tokio::io::AsyncBufRead::consume(self, amt);
    }
}

/// As the tokio `AsyncWrite`; `poll_close` flushes.
impl<T: Write + Send + 'static> futures::io::AsyncWrite for Unblock<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(self, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(self, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(self, cx)
    }
}

/// As the tokio `AsyncSeek`. A `poll_seek` with another position than the seek in
/// progress (whose future was dropped) first lets that one finish; one with the same
/// position is taken for that seek, polled again (so `Current(n)` asked for twice, the
/// first future dropped after its first poll, moves once).
impl<T: Seek + Send + 'static> futures::io::AsyncSeek for Unblock<T> {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        match this.seeking {
            None => this.start_seek_inner(pos)?,
            Some(seeking) if seeking.pos == pos => {}
            Some(_) => {
                // Nobody is left for its result.
                let _ = ready!(this.poll_seek_inner(cx));
                this.start_seek_inner(pos)?;
            }
        }
        this.poll_seek_inner(cx)
    }
}
