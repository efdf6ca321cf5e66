//! [`OffloadCall`]: the future a lane's caller awaits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::{Entry, Lane};
use crate::interrupt::Interrupter;
use crate::job::Reply;
use crate::look::ReplyLook;
use crate::origin::Site;
use crate::timer::Deadline;
use crate::unblock::OffloadError;

/// The future of a call on an [`Offloader`](crate::Offloader) lane or a
/// [`ComputePool`](crate::ComputePool), from their `run` or `run_cancellable`.
///
/// Nothing is admitted until it is first polled. Dropping it while the call waits frees
/// its queue place (the closure never runs); dropping it while the closure runs cancels
/// the closure's token, if it has one. A named type, so it can be stored in a struct or
/// returned as an associated `Future` type without boxing.
///
/// # Examples
///
/// ```
/// use async_bridge::{OffloadCall, OffloadError, Offloader};
///
/// struct Pending {
///     call: OffloadCall<u32>,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("parser").build().unwrap();
/// let pending = Pending { call: lane.run(|| 42) };
/// assert_eq!(pending.call.await.unwrap(), 42);
/// # Ok::<(), OffloadError>(())
/// # }).unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct OffloadCall<T> {
    lane: Arc<Lane>,
    /// The call's id, for its interrupter.
    id: u64,
    /// The call's job, until it is admitted on the first poll.
    entry: Option<Entry>,
    reply: Reply<T>,
    sleep: Option<Deadline>,
    /// Admitted to the lane (queued or running), and not yet settled.
    admitted: bool,
    /// Set once the caller has its answer (value, error or timeout).
    settled: bool,
    /// Holds a place reserved with `Lane::poll_reserve`, until admission uses it (or
    /// the drop gives it back).
    reserved: bool,
    /// Taken at once by a drainer that runs nothing, the call is looked for by its caller
    /// until the reply is in (`crate::look`).
    look: ReplyLook,
}

impl<T> OffloadCall<T> {
    pub(crate) fn new<F>(lane: &Arc<Lane>, site: Site, cancellable: bool, f: F) -> Self
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        Self::with_interrupter(lane, site, cancellable, None, f)
    }

    pub(crate) fn with_interrupter<F>(
        lane: &Arc<Lane>,
        site: Site,
        cancellable: bool,
        interrupter: Option<Interrupter>,
        f: F,
    ) -> Self
    where
        F: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (entry, reply, id) = lane.pair(site, cancellable, interrupter, f);
        OffloadCall {
            lane: Arc::clone(lane),
            id,
            entry: Some(entry),
            reply,
            sleep: None,
            admitted: false,
            settled: false,
            reserved: false,
            look: ReplyLook::default(),
        }
    }

    /// The call takes the place its caller reserved with `Lane::poll_reserve`.
    #[cfg(feature = "tower")]
    pub(crate) fn with_reservation(mut self) -> Self {
        self.reserved = true;
        self
    }

    /// Admits the call on its first poll: starts it on a drainer, queues it, or fails.
    fn admit(&mut self, entry: Entry) -> Result<(), OffloadError> {
        let lane = &self.lane;
        let handle = lane.blocking_handle()?;
        if let Some(after) = lane.timeout {
            let sleep = lane.timeout_timer(after).ok_or_else(|| {
                lane.error(|k, n| {
                    OffloadError::no_runtime(
                        k,
                        n,
                        "a timeout needs a tokio runtime with timers (`enable_time`) to time it",
                    )
                })
            })?;
            self.sleep = Some(sleep);
        }
        let reserved = std::mem::take(&mut self.reserved);
        lane.admit(entry, handle, reserved, &mut self.look)?;
        self.admitted = true;
        Ok(())
    }

    /// Gives up on the call: a queued job is withdrawn (it never runs and its place is
    /// freed), a running one has its token cancelled.
    fn give_up(&self) {
        if !self.lane.withdraw(&self.reply) {
            self.reply.cancel();
            self.lane.interrupt(self.id);
        }
    }
}

impl<T> Future for OffloadCall<T> {
    type Output = Result<T, OffloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(entry) = this.entry.take() {
            if let Err(err) = this.admit(entry) {
                this.settled = true;
                return Poll::Ready(Err(err));
            }
        }
        assert!(!this.settled, "`OffloadCall` polled after completion");
        if let Poll::Ready(outcome) = this.look.poll(&mut this.reply, cx) {
            this.settled = true;
            return Poll::Ready(this.lane.answer(outcome));
        }
        if let Some(sleep) = &mut this.sleep {
            if Pin::new(sleep).poll(cx).is_ready() {
                this.settled = true;
                this.give_up();
                let lane = &this.lane;
                lane.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                let after = lane.timeout.unwrap_or_default();
                return Poll::Ready(Err(lane.error(|k, n| OffloadError::timeout(k, n, after))));
            }
        }
        this.look.again(cx);
        Poll::Pending
    }
}

impl<T> Drop for OffloadCall<T> {
    fn drop(&mut self) {
        if self.reserved {
            self.lane.unreserve(); // never admitted: its reserved place is freed
        }
        if self.admitted && !self.settled {
            // Read before giving up: a withdrawn entry that a drainer drops right after
            // the withdrawal also marks the reply done, and it was still cancelled. Not
            // counted when the work had finished and only its reply was never read.
            let finished = self.reply.is_done();
            self.give_up();
            if !finished {
                self.lane.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<T> fmt::Debug for OffloadCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadCall")
            .field("lane", &self.lane.name)
            .field("admitted", &self.admitted)
            .field("settled", &self.settled)
            .finish()
    }
}
