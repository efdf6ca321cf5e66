//! The one entry every blocking facade goes through.
//!
//! [`block_on`](crate::block_on), [`Portal::block_on`](crate::Portal::block_on) and every
//! [`Blocking<T>`](crate::Blocking) call end up in [`enter`], which resolves the portal,
//! builds the call's [`Origin`], finds out where it is called from
//! ([`context::caller`]) and then polls the future on the calling thread ([`park`]) with
//! the portal's runtime context entered (`Handle::enter`):
//!
//! | caller | what happens |
//! |---|---|
//! | plain, rayon or dedicated thread | polled directly |
//! | multi-thread worker, inside a task | `block_in_place`, then polled: the worker's other tasks move to another thread |
//! | inside a facade's future (nested, on any of these threads) | as the thread it runs on: `block_in_place` is a no-op where there is nothing to move |
//! | inside tokio's multi-thread `Runtime::block_on` | `block_in_place` leaves tokio's runtime context, then polled |
//! | blocking pool thread (`spawn_blocking`, `unblock`) of any runtime | `block_in_place` is a no-op there, then polled |
//! | blocking pool thread of a current_thread runtime, a thread that entered its handle | `block_in_place` is a no-op there, then polled |
//! | a second thread inside a current_thread runtime's `Runtime::block_on` (while another holds its scheduler), a `LocalSet` polled there | tokio refuses `block_in_place`: its panic is caught before the future ran, and becomes `is_would_deadlock` (see [`context`]: no public query tells these from a blocking pool thread) |
//! | the thread driving a current_thread runtime (a `LocalSet` on it too) | refused: [`is_would_deadlock`](BlockOnError::is_would_deadlock), decided beforehand |
//! | a `LocalSet` on a multi-thread runtime's `block_on` | tokio refuses `block_in_place`; its panic (printed by the panic hook) is caught before the future ran, and becomes `is_would_deadlock`. No public query tells this case beforehand (see [`context`]): the one refusal that needs unwinding |
//!
//! Nothing is handed to another thread, so no `job::Ticket` is needed: the future runs
//! where it was called, as the sync code it replaces did.

use std::cell::Cell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::time::{Duration, Instant};

use super::context::{self, Caller};
use super::error::{CURRENT_THREAD, NO_BLOCKING_HERE};
use super::park;
use super::portal::{self, Portal};
use super::BlockOnError;
use crate::origin::Kind;
use crate::stats::Counters;
use crate::{seam, trace};

/// Runs `future` to completion on the calling thread through `portal` (the global one
/// when `None`), or says why it cannot.
///
/// A panic of the future is counted, then resumed in the caller or returned as an
/// [`is_panic`](BlockOnError::is_panic) error, as `panics` says. Resumed here, not by a
/// `match` on the result in `block_on`: with that `match`, `block_on` was not inlined
/// where `Portal::block_on` was, and a call from a plain thread took about 10% longer
/// (medians of 300 batches of 2,000 calls: 47–53 ns against 43–47 ns; 46–49 against
/// 45–47 after, on the VM of README's set 22).
#[inline]
pub(crate) fn enter<F: Future>(
    portal: Option<&Portal>,
    site: &'static Location<'static>,
    future: F,
    panics: Panics,
) -> Result<F::Output, BlockOnError> {
    let is_global = portal.is_none();
    let portal = match portal {
        Some(portal) => portal,
        None => portal::global(site)?,
    };
    // The origin is built only for an error: a named portal's costs an `Arc` clone.
    let origin = || portal.origin(site);
    if portal.is_shut_down() {
        return Err(BlockOnError::shutdown(origin()));
    }
    let _span = trace::facade(portal.name(), site);
    // Under the virtual-time harness, a facade on the global portal runs its future on
    // the harness's runtime, so that its timers are virtual like everything else.
    let harness_handle = seam::harness_handle().filter(|_| is_global);
    let handle = harness_handle.as_ref().unwrap_or(portal.handle());
    let run = || {
        let _entered = handle.enter();
        park::block_on(future)
    };
    let caller = context::caller();
    // A facade entered from async code blocks that runtime thread: a watchdog finding,
    // even where it is allowed to run, and a ledger entry that says so.
    let counted = crate::ledger::is_enabled();
    let from_async = (counted || crate::watchdog::is_running())
        && match caller {
            Caller::Plain | Caller::CurrentThreadOther => false,
            Caller::Runtime => context::drives_a_scheduler(),
            Caller::CurrentThreadDriver => true,
        };
    let watched = from_async && crate::watchdog::is_running();
    // The portal's stats: counted before the caller sees its answer. A call that runs
    // at once (not through `block_in_place`) waited zero, which the snapshot adds rather
    // than each call recording it. Reading the clock costs about what a whole call from
    // a plain thread does, so there only sampled calls are timed (see `SAMPLE`).
    let counters = portal.counters();
    // The sample is drawn from the count itself: no second shared or thread-local access.
    let sampled = Counters::bump_from(&counters.submitted) % SAMPLE == 0;
    let runtime = matches!(caller, Caller::Runtime | Caller::CurrentThreadOther);
    let start = (counted || watched || runtime || sampled).then(Instant::now);
    let polled: Cell<Option<Instant>> = Cell::new(None);
    let result = match caller {
        Caller::Plain => panic::catch_unwind(AssertUnwindSafe(run))
            .map_err(|payload| BlockOnError::panic(origin(), payload)),
        // On a blocking pool thread (of either flavour) `block_in_place` is a no-op; on
        // a multi-thread worker it hands the worker's tasks away; where tokio forbids
        // blocking (see `context`) it panics before the future is touched.
        Caller::Runtime | Caller::CurrentThreadOther => {
            let started = Cell::new(false);
            let started_run = || {
                started.set(true);
                polled.set(Some(Instant::now()));
                run()
            };
            panic::catch_unwind(AssertUnwindSafe(|| {
                tokio::task::block_in_place(started_run)
            }))
            .map_err(|payload| {
                if started.get() {
                    BlockOnError::panic(origin(), payload)
                } else {
                    // tokio refused `block_in_place` before the future was touched.
                    BlockOnError::would_deadlock(origin(), NO_BLOCKING_HERE)
                }
            })
        }
        Caller::CurrentThreadDriver => Err(BlockOnError::would_deadlock(origin(), CURRENT_THREAD)),
    };
    let end = start.map(|_| Instant::now());
    match &result {
        Ok(_) => Counters::bump(&counters.completed),
        Err(err) if err.is_panic() => Counters::bump(&counters.panicked),
        Err(_) => Counters::bump(&counters.rejected),
    }
    let Some((start, end)) = start.zip(end) else {
        return panics.settle(result);
    };
    if watched {
        crate::watchdog::record_blocking_facade(site, end - start);
    }
    let refused = matches!(&result, Err(err) if !err.is_panic());
    let (waited, took) = if refused {
        (Duration::ZERO, Duration::ZERO)
    } else {
        let began = polled.get().unwrap_or(start);
        let waited = began - start;
        if polled.get().is_some() {
            counters.queue_wait.record(waited);
        }
        counters.run_time.record(end - began);
        (waited, end - began)
    };
    if counted {
        // A refusal is a crossing too: the call site still crosses the bridge.
        crate::ledger::record(Kind::Facade, site, waited, took, from_async);
    }
    panics.settle(result)
}

/// What a facade does with a panic of its future, once counted.
#[derive(Clone, Copy)]
pub(crate) enum Panics {
    /// Resumes it in the caller, as a panic in the sync code it replaces would.
    Resume,
    /// Returns it as an [`is_panic`](BlockOnError::is_panic) error.
    Return,
}

impl Panics {
    #[inline(always)]
    fn settle<T>(self, result: Result<T, BlockOnError>) -> Result<T, BlockOnError> {
        match (self, result) {
            (Panics::Resume, Err(err)) if err.is_panic() => resume(err),
            (_, result) => result,
        }
    }
}

#[cold]
#[inline(never)]
fn resume(err: BlockOnError) -> ! {
    crate::job::resume(err.into_panic())
}

/// One call in `SAMPLE` to a portal is timed for its percentiles from plain threads (its
/// first call is); every call is counted.
const SAMPLE: u64 = 64;
