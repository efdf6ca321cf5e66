//! The harness seam without the `test-util` feature: no harness exists, so no thread
//! ever works for one. Every item mirrors the signature of its live counterpart in
//! `testing::scope`; the types are uninhabited or zero-sized, so the core's calls fold
//! away.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::origin::Origin;

/// A job's entry in the harness's ledger: there is never one.
pub(crate) struct Participant(Infallible);

/// Starts a queued participant: there is never one.
pub(crate) struct ParticipantRef(Infallible);

impl Participant {
    pub(crate) fn run<R>(&self, _f: impl FnOnce() -> R) -> R {
        match self.0 {}
    }

    pub(crate) fn starter(&self) -> ParticipantRef {
        match self.0 {}
    }
}

impl ParticipantRef {
    pub(crate) fn start(&self) {
        match self.0 {}
    }
}

/// No harness: no ledger entry.
#[inline(always)]
pub(crate) fn enter_job(_origin: &Origin, _queued: bool) -> Option<Participant> {
    None
}

/// No harness: real time.
#[inline(always)]
pub(crate) fn now() -> Option<Instant> {
    None
}

/// No harness: the caller sleeps for real.
#[inline(always)]
pub(crate) fn sleep(_duration: Duration) -> bool {
    false
}

/// No harness: facades run on their portal's runtime.
#[inline(always)]
pub(crate) fn harness_handle() -> Option<Handle> {
    None
}

/// Blocking work goes to `handle`'s blocking pool.
#[inline(always)]
pub(crate) fn spawn_blocking(handle: &Handle, f: impl FnOnce() + Send + 'static) {
    drop(handle.spawn_blocking(f));
}

/// A facade's wait, with no harness to tell.
#[derive(Default)]
pub(crate) struct ClockWait {
    _none: (),
}

impl ClockWait {
    #[inline(always)]
    pub(crate) fn before_wait(&self, _woken: impl FnOnce() -> bool) {}

    #[inline(always)]
    pub(crate) fn wake(&self, mark_woken: impl FnOnce()) {
        mark_woken();
    }
}

/// No harness: `compute` uses rayon's global pool.
#[inline(always)]
pub(crate) fn compute_pool() -> Option<crate::ComputePool> {
    None
}
