//! The seam between the core and the virtual-time harness.
//!
//! The core (the job layer, the facade entry and its park loop, the clock) calls the
//! harness only through the functions and types re-exported here, and carries no
//! conditional compilation of its own. With the `test-util` feature they are the
//! harness's ([`crate::testing`]); without it they are the shells of [`shell`], which
//! do nothing and cost nothing (zero-sized or uninhabited types, constant answers). So
//! every line of the core is compiled, and type-checked, in every build: an edit to the
//! job layer cannot break virtual time through code the default build does not see.
//!
//! # The ordering rules the harness depends on
//!
//! These are the only rules the rest of the crate must keep for virtual time to hold;
//! they are kept in the job layer (`job.rs`) and in the queues that feed it (a lane, a
//! mailbox), nowhere else:
//!
//! 1. A job enters the ledger when it is paired ([`enter_job`]), on the submitting
//!    thread, before anything can run it: time cannot pass between a caller handing work
//!    off and the work being counted.
//! 2. A job that waits only for a pool thread holds the clock from then on; a job that
//!    waits in a queue behind other work of its handle (`queued`) holds it only from the
//!    moment it is claimed ([`ParticipantRef::start`]), so that work ahead of it that
//!    sleeps on the clock lets the clock move.
//! 3. A runner claims the next queued job *before* it replies to the one that just ended:
//!    otherwise the clock could jump in the gap where neither holds it.
//! 4. A job delivers its result *before* it leaves the ledger (its [`Participant`] is
//!    dropped after the reply): the caller is runnable before the clock may move.
//! 5. Work runs with the harness's scope installed and its runtime entered
//!    ([`Participant::run`]), so that `clock::now`, `tokio::time` and nested offloads on
//!    that thread read virtual time.
//! 6. A thread that blocks waiting for a waker (a facade's park loop) lets go of the
//!    clock while it waits ([`ClockWait::before_wait`]) and takes it back in the waker,
//!    before its thread runs again ([`ClockWait::wake`]).
//! 7. Blocking work runs on threads the harness controls ([`spawn_blocking`]): a closure
//!    sleeping on the clock inside tokio's own `spawn_blocking` would hold tokio's paused
//!    clock forever. Likewise `compute` runs on the harness's own pool
//!    ([`compute_pool`]), a lane whose queued jobs hold the clock only once claimed:
//!    rayon's global pool cannot say which of its jobs wait behind a sleeping one.

#[cfg(not(feature = "test-util"))]
mod shell;

#[cfg(not(feature = "test-util"))]
pub(crate) use shell::*;

#[cfg(feature = "test-util")]
pub(crate) use crate::testing::scope::{
    compute_pool, enter_job, harness_handle, now, sleep, spawn_blocking, ClockWait, Participant,
    ParticipantRef,
};
