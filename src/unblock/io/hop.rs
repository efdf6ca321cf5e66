//! Hops: how an `Unblock<T>` sends its value to a blocking thread, through the job
//! layer, and takes it back.

use std::any::Any;
use std::future::Future;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::runtime::Handle;

use super::pipe::{self, Carry, Chunk, Leftover, Shared};
use super::{Unblock, LOST};
use crate::job::{self, Outcome, Panic, Ticket};
use crate::origin::{Kind, Origin};

/// A hop in flight: the value is on a blocking thread.
pub(super) struct Hop {
    pub(super) reply: job::Reply<Payload>,
    pub(super) kind: HopKind,
    pub(super) stop_sent: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum HopKind {
    Read,
    Write,
    Next,
    Other,
}

/// What a hop hands back, besides the value (which goes through the pipe).
pub(super) enum Payload {
    Done,
    Pos(io::Result<u64>),
    Flushed(io::Result<()>),
    Answer(io::Result<Result<Box<dyn Any + Send>, Panic>>),
    Item(Result<Option<Box<dyn Any + Send>>, Panic>),
    Panicked(Panic),
}

#[derive(Default)]
pub(super) struct Slots {
    pub(super) pos: Option<io::Result<u64>>,
    pub(super) flushed: Option<io::Result<()>>,
    /// `Err` when the prelude failed and the closure did not run.
    pub(super) answer: Option<io::Result<Result<Box<dyn Any + Send>, Panic>>>,
    pub(super) item: Option<Result<Option<Box<dyn Any + Send>>, Panic>>,
    pub(super) panic: Option<Panic>,
}

/// The job one hop runs. Field order matters: if tokio drops the job unrun (its runtime
/// shut down), `carry` puts the value back before `ticket` tells the caller.
struct HopJob<T, F> {
    carry: Carry<T>,
    ticket: Ticket<Payload>,
    body: F,
    retry: bool,
}

impl<T, F> HopJob<T, F>
where
    F: FnOnce(&mut T, &Shared<T>, io::Result<()>) -> Payload,
{
    fn run(self) {
        let HopJob {
            mut carry,
            ticket,
            body,
            retry,
        } = self;
        ticket.run(move |_| {
            let shared = Arc::clone(&carry.shared);
            let fns = carry.fns;
            let value = carry.value.as_mut().expect(LOST);
            let payload = panic::catch_unwind(AssertUnwindSafe(|| {
                let ready = pipe::prelude(value, &shared, fns, retry);
                body(value, &shared, ready)
            }))
            .unwrap_or_else(Payload::Panicked);
            // The value goes home before the reply is delivered.
            drop(carry);
            payload
        });
    }
}

/// A hop that cannot report the error of its prelude keeps it for the caller.
pub(super) fn defer<T>(shared: &Shared<T>, ready: io::Result<()>) {
    if let Err(err) = ready {
        shared.lock().deferred.get_or_insert(err);
    }
}

impl<T: Send + 'static> Unblock<T> {
    pub(super) fn slots(&mut self) -> &mut Slots {
        self.slots.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn no_runtime(&self) -> io::Error {
        io::Error::other(format!(
            "async_bridge::Unblock created at {} was polled outside a tokio runtime: \
             use it inside one (e.g. #[tokio::main])",
            self.site
        ))
    }

    /// Sends the value to a blocking thread to run `body` (after the prelude: give back
    /// read-ahead, write what is queued).
    /// With `retry`, writes that failed before are tried again (flush, write-behind).
    pub(super) fn submit<F>(&mut self, kind: HopKind, retry: bool, body: F) -> io::Result<()>
    where
        F: FnOnce(&mut T, &Shared<T>, io::Result<()>) -> Payload + Send + 'static,
    {
        let handle = Handle::try_current().map_err(|_| self.no_runtime())?;
        self.stale_flush();
        let value = self.value.take().expect(LOST);
        self.queue_filling();
        {
            let mut pipe = self.shared.lock();
            pipe.hop_running = true;
            pipe.stop = false;
        }
        let (ticket, reply) = job::pair(Origin::new(Kind::Io, None, self.site), None);
        let job = HopJob {
            carry: Carry {
                value: Some(value),
                shared: Arc::clone(&self.shared),
                fns: self.fns,
            },
            ticket,
            body,
            retry,
        };
        job::spawn_blocking(&handle, move || job.run());
        self.hop = Some(Hop {
            reply,
            kind,
            stop_sent: false,
        });
        Ok(())
    }

    /// Polls the hop in flight, if any, to its end (asking it to stop early when `stop`),
    /// and takes the value back.
    pub(super) fn poll_hop(&mut self, cx: &mut Context<'_>, stop: bool) -> Poll<io::Result<()>> {
        if let Some(hop) = &mut self.hop {
            if stop && !hop.stop_sent {
                hop.stop_sent = true;
                let mut pipe = self.shared.lock();
                pipe.stop = true;
                if pipe.hop_waiting {
                    self.shared.hop_cv.notify_all();
                }
            }
            let outcome = ready!(Pin::new(&mut hop.reply).poll(cx));
            self.hop = None;
            match outcome {
                Outcome::Completed(payload) => self.stash(payload),
                Outcome::Panicked(payload) => job::resume(payload),
                Outcome::Dropped => {
                    let err = io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "async_bridge::Unblock: the runtime shut down before the blocking work ran",
                    );
                    self.shared.lock().deferred.get_or_insert(err);
                }
            }
        }
        if self.value.is_none() {
            match self.shared.lock().home.take() {
                Some(value) => self.value = Some(value),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "async_bridge::Unblock: the value was lost with its runtime",
                    )))
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Brings the value back from a blocking thread, stopping read-ahead and write-behind.
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_hop(cx, true)
    }

    pub(super) fn stash(&mut self, payload: Payload) {
        let slots = self.slots();
        match payload {
            Payload::Done => {}
            Payload::Pos(pos) => slots.pos = Some(pos),
            Payload::Flushed(flushed) => slots.flushed = Some(flushed),
            Payload::Answer(answer) => slots.answer = Some(answer),
            Payload::Item(item) => slots.item = Some(item),
            Payload::Panicked(payload) => slots.panic = Some(payload),
        }
    }

    /// Forgets the result of a flush nobody awaited (its future was dropped): it is
    /// stale once anything else happens. Its error is kept for the caller, not lost.
    pub(super) fn stale_flush(&mut self) {
        if let Some(Err(err)) = self.slots().flushed.take() {
            self.shared.lock().deferred.get_or_insert(err);
        }
    }

    /// Resumes a panic of `T`'s `read`, `write` or `seek` in the caller.
    pub(super) fn resume_panic(&mut self) {
        if let Some(payload) = self.slots().panic.take() {
            job::resume(payload);
        }
    }

    /// Moves the bytes written since the last hop into the queue.
    pub(super) fn queue_filling(&mut self) {
        if self.filling.is_empty() {
            return;
        }
        let buf = mem::take(&mut self.filling);
        let end = buf.len();
        let mut pipe = self.shared.lock();
        pipe.queued_bytes += end;
        pipe.queued.push_back(Chunk { buf, start: 0, end });
    }

    /// Drops the read-ahead not consumed and owes `T` a seek back over it, when `T` can
    /// seek; otherwise keeps it, to serve first (only a cancelled read leaves any).
    /// Call with the value at hand.
    pub(super) fn give_back(&mut self) {
        if self.fns.rewind.is_none() {
            return;
        }
        let mut pipe = self.shared.lock();
        let unread = self.chunk.len() + pipe.ready_bytes;
        self.chunk.start = self.chunk.end;
        while let Some(chunk) = pipe.ready.pop_front() {
            pipe.recycle(chunk.buf);
        }
        pipe.ready_bytes = 0;
        pipe.eof = false;
        pipe.read_err = None;
        // Owed in the pipe, not in a hop: a hop that never runs (its `Unblock` dropped
        // while it was queued, or its runtime gone) leaves it to the next hop or to the
        // cleanup.
        pipe.rewind += unread as u64;
    }

    /// Brings the value home and puts it where the caller believes it is; with `flush`,
    /// flushes it too when bytes went into it since its last flush.
    ///
    /// At most one settle hop is sent per call (`sent` remembers it across polls): its
    /// errors are deferred, and a writer that keeps failing must not keep it busy. Bytes
    /// whose write failed are not retried without `flush` (they stay queued).
    pub(super) fn poll_settle(
        &mut self,
        cx: &mut Context<'_>,
        flush: bool,
        sent: &mut bool,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send_seek(cx))?;
        ready!(self.poll_idle(cx))?;
        // The caller gets `&mut T` (or `T`): a flush result from before is stale.
        self.stale_flush();
        if *sent {
            return Poll::Ready(Ok(()));
        }
        self.give_back();
        let (queued, dirty, owed) = {
            let pipe = self.shared.lock();
            // Without `flush`, the prelude does not retry a failed write: nothing to do.
            let retried = flush || !pipe.failed;
            (!pipe.queued.is_empty() && retried, pipe.dirty, pipe.rewind)
        };
        let queued = queued || !self.filling.is_empty();
        if owed == 0 && !queued && !(flush && dirty) {
            return Poll::Ready(Ok(()));
        }
        let fns = self.fns;
        self.submit(HopKind::Other, flush, move |value, shared, ready| {
            let flushed = ready.and_then(|()| match fns.flush {
                Some(flush_fn) if flush && mem::take(&mut shared.lock().dirty) => flush_fn(value),
                _ => Ok(()),
            });
            defer(shared, flushed);
            Payload::Done
        })?;
        *sent = true;
        self.poll_settle(cx, flush, sent)
    }
}

/// Does a dropped value's leftover work on a blocking thread, through the job layer.
pub(super) fn clean_up<T: Send + 'static>(leftover: Leftover<T>, site: &'static Location<'static>) {
    match Handle::try_current() {
        Ok(handle) => {
            let (ticket, reply) = job::pair::<()>(Origin::new(Kind::Io, None, site), None);
            job::spawn_blocking(&handle, move || {
                // Kept alive so that the job is not withdrawn before it starts; if the job
                // is dropped unrun, dropping `leftover` still does the work.
                let _reply = reply;
                ticket.run(move |_| drop(leftover));
            });
        }
        // Outside any runtime: this thread may block.
        Err(_) => drop(leftover),
    }
}
