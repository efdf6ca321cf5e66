//! Leases: one caller holds a worker's object across several calls, with awaits in
//! between, and nobody slips in.
//!
//! A lease is one call of the worker's mailbox (the *holder*), queued in FIFO order like
//! any other. Once it runs, the worker's thread serves the lease's own channel instead
//! of its mailbox: the lease's calls run in order, other callers wait behind the holder.
//! The holder ends when the lease is finished (clean), dropped, one of its calls
//! panics, or its time limit passes; unless finished, the release hook runs on the
//! object's thread before the next caller gets the object (e.g. `ROLLBACK`).
//!
//! # Invariants
//!
//! 1. Only the worker's thread, inside the holder, takes jobs from the channel, in the
//!    order they were sent; `ended` is set once, by that thread, before the hook runs.
//! 2. After `ended` is set, nothing more runs under the lease: jobs still queued are
//!    dropped unrun (their callers get `is_lease_ended`), and a job sent later is refused
//!    at once.
//! 3. The lease's waiting thread lets go of the virtual clock while it waits for the next
//!    job and takes it back before it runs (seam rule 6, through `ClockWait`), so awaits
//!    between leased calls can sleep in virtual time.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use parking_lot::{Condvar, Mutex};

use super::mailbox::{Call, Mailbox, Sender};
use super::WorkerError;
use crate::job::{self, Outcome, Ran, Ticket};
use crate::origin::{Kind, Origin, Site};
use crate::seam;
use crate::stats::Counters;

/// Runs when a lease ends without being finished, on the object's thread.
pub(crate) type ReleaseHook<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// A leased call, boxed for the channel: runs against the object, false if it panicked;
/// given no object, it is turned away unrun (the lease ended with it still queued).
type Job<T> = Box<dyn FnOnce(Option<&mut T>) -> bool + Send>;

/// Why a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// `finish` was called: no hook.
    Finished,
    /// The lease was dropped without `finish`.
    Dropped,
    /// A leased call panicked.
    Panicked,
    /// It was held past its time limit.
    Expired,
    /// The worker shut down while it was held.
    ShutDown,
}

impl End {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            End::Finished => "it was finished",
            End::Dropped => "it was dropped without being finished",
            End::Panicked => "a call under it panicked",
            End::Expired => "it was held past its time limit",
            End::ShutDown => "the worker shut down",
        }
    }
}

/// The channel between a lease and the worker thread serving it.
pub(crate) struct Channel<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    waiting: seam::ClockWait,
}

struct State<T> {
    jobs: VecDeque<Job<T>>,
    /// Set by the lease's side (finished, or dropped) or by a shutdown: how it is to end.
    closing: Option<End>,
    /// Set by the worker thread when the lease is over.
    ended: Option<End>,
}

impl<T> Channel<T> {
    fn has_news(&self) -> bool {
        let state = self.state.lock();
        !state.jobs.is_empty() || state.closing.is_some()
    }

    /// Sends a job, or gives it back when the lease has ended.
    fn send(&self, job: Job<T>) -> Result<(), End> {
        let mut refused = None;
        self.waiting.wake(|| {
            let mut state = self.state.lock();
            match state.ended {
                Some(end) => refused = Some(end),
                None => state.jobs.push_back(job),
            }
        });
        self.ready.notify_one();
        refused.map_or(Ok(()), Err)
    }

    /// Asks the serving thread to end the lease (the first reason given wins).
    pub(crate) fn close(&self, how: End) {
        self.waiting.wake(|| {
            let mut state = self.state.lock();
            state.closing.get_or_insert(how);
        });
        self.ready.notify_one();
    }
}

/// Serves a lease on the worker's thread, until it ends; returns how it ended.
fn serve<T: 'static>(
    object: &mut T,
    channel: &Arc<Channel<T>>,
    started: oneshot::Sender<()>,
    limit: Option<Duration>,
    hook: Option<&ReleaseHook<T>>,
) -> End {
    let deadline = limit.map(|limit| crate::clock::now() + limit);
    // Under the virtual-time harness the limit is a virtual timer that ends the lease
    // (the idle wait below is in real time, which virtual time does not reach).
    let _virtual_limit = limit.and_then(|limit| {
        let handle = seam::harness_handle()?;
        let channel = Arc::clone(channel);
        let timer = handle.spawn(async move {
            tokio::time::sleep(limit).await;
            channel.close(End::Expired);
        });
        Some(AbortOnDrop(timer))
    });
    if started.send(()).is_err() {
        return finish_unclean(object, channel, End::Dropped, hook);
    }
    let end = loop {
        if deadline.is_some_and(|d| crate::clock::now() >= d) {
            break End::Expired;
        }
        let next = {
            let mut state = channel.state.lock();
            match state.jobs.pop_front() {
                Some(job) => Ok(job),
                None => Err(state.closing),
            }
        };
        match next {
            Ok(job) => {
                if !job(Some(object)) {
                    break End::Panicked;
                }
            }
            Err(Some(End::Finished)) => {
                channel.state.lock().ended = Some(End::Finished);
                return End::Finished;
            }
            Err(Some(end)) => break end,
            Err(None) => {
                // Nothing to do: let go of the virtual clock while waiting for the lease.
                channel.waiting.before_wait(|| channel.has_news());
                let mut state = channel.state.lock();
                if state.jobs.is_empty() && state.closing.is_none() {
                    let timed_out = match deadline {
                        None => {
                            channel.ready.wait(&mut state);
                            false
                        }
                        Some(d) => {
                            let left = d.saturating_duration_since(crate::clock::now());
                            channel.ready.wait_for(&mut state, left).timed_out()
                        }
                    };
                    if timed_out && state.jobs.is_empty() {
                        break End::Expired;
                    }
                }
            }
        }
    };
    let end = finish_unclean(object, channel, end, hook);
    if end == End::Panicked {
        // The holder panics in turn, after the hook: the worker applies its panic policy
        // (`AfterPanic::Rebuild` rebuilds the object) as for any call that panicked.
        panic::resume_unwind(Box::new("a call under a lease panicked"));
    }
    end
}

/// Ends a lease that was not finished: refuses what is queued, runs the hook.
fn finish_unclean<T>(
    object: &mut T,
    channel: &Channel<T>,
    end: End,
    hook: Option<&ReleaseHook<T>>,
) -> End {
    let dropped = {
        let mut state = channel.state.lock();
        state.ended = Some(end);
        std::mem::take(&mut state.jobs)
    };
    // Turned away after the lock: their callers learn the lease ended.
    for job in dropped {
        job(None);
    }
    if let Some(hook) = hook {
        // A panicking hook must not take the worker down; the next caller gets the
        // object as the hook left it.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| hook(object)));
    }
    end
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends the lease of a lease future that never produced a `Lease`.
struct CloseOnDrop<T>(Option<Arc<Channel<T>>>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        if let Some(channel) = self.0.take() {
            channel.close(End::Dropped);
        }
    }
}

/// Exclusive, ordered access to a worker's object across several calls, from
/// [`Worker::lease`](crate::Worker::lease) or [`WorkerPool::lease`](crate::WorkerPool::lease).
///
/// While it is held, the lease's calls run one after another on the object's thread and
/// every other caller waits behind it, in FIFO order and holding no thread. Between
/// calls the holder may await anything. End it with [`finish`](Self::finish); if it ends
/// any other way — dropped, a call under it panicked, held past the worker's
/// [`lease_limit`](crate::WorkerBuilder::lease_limit), the worker shut down — the
/// worker's [release hook](crate::WorkerBuilder::on_lease_abandoned) runs on the object's
/// thread first (a `ROLLBACK`, say), and later calls on the lease fail with
/// [`is_lease_ended`](WorkerError::is_lease_ended).
///
/// # When not to use it
///
/// For one call, use `call`: a lease holds the whole worker while the caller awaits other
/// things, so every other caller waits that long too. Keep leases short, and give the
/// worker a `lease_limit`.
///
/// # Examples
///
/// A transaction across awaits on a SQLite connection, rolled back if abandoned:
///
/// ```
/// use async_bridge::Worker;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = Worker::builder("orders-db")
///     .on_lease_abandoned(|conn: &mut rusqlite::Connection| {
///         let _ = conn.execute_batch("ROLLBACK");
///     })
///     .spawn(rusqlite::Connection::open_in_memory)?;
/// db.call(|c| c.execute_batch("CREATE TABLE stock (sku INTEGER, qty INTEGER)")).await??;
///
/// let mut tx = db.lease().await?;
/// tx.call(|c| c.execute_batch("BEGIN; INSERT INTO stock VALUES (7, 10)")).await??;
/// tokio::task::yield_now().await; // any async work between the calls
/// tx.call(|c| c.execute_batch("UPDATE stock SET qty = qty - 3 WHERE sku = 7")).await??;
/// tx.call(|c| c.execute_batch("COMMIT")).await??;
/// tx.finish().await?;
///
/// let qty: i64 = db.call(|c| c.query_row("SELECT qty FROM stock", [], |r| r.get(0))).await??;
/// assert_eq!(qty, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use = "a lease holds the worker until it is finished or dropped"]
pub struct Lease<T: 'static> {
    name: Arc<str>,
    /// The worker's mailbox: its counters count the lease's calls.
    mailbox: Arc<Mailbox<T>>,
    channel: Arc<Channel<T>>,
    /// The holder call; awaited by `finish`, detached on drop (a running holder must not
    /// be interrupted: its hook may be running).
    holder: Option<Call<T, End>>,
    site: Site,
}

/// Takes a lease on `shared`'s worker: queues the holder, resolves once it runs.
pub(crate) fn lease<T: 'static>(
    shared: &Arc<Mailbox<T>>,
    link: Sender<T>,
    site: Site,
    limit: Option<Duration>,
    hook: Option<ReleaseHook<T>>,
) -> impl Future<Output = Result<Lease<T>, WorkerError>> + Send {
    let channel = Arc::new(Channel {
        state: Mutex::new(State {
            jobs: VecDeque::new(),
            closing: None,
            ended: None,
        }),
        ready: Condvar::new(),
        waiting: seam::ClockWait::default(),
    });
    shared.register_lease(&channel);
    let (started_tx, started_rx) = oneshot::channel();
    let served = Arc::clone(&channel);
    let mut holder = shared.call_kind(link, site, Kind::Lease, move |object, _token| {
        serve(object, &served, started_tx, limit, hook.as_ref())
    });
    let name = Arc::clone(&shared.name);
    let mailbox = Arc::clone(shared);
    // Until a `Lease` owns the channel, a dropped or failed lease future must still end
    // a holder that started meanwhile: otherwise it would hold the worker forever.
    let unclaimed = CloseOnDrop(Some(Arc::clone(&channel)));
    async move {
        let mut unclaimed = unclaimed;
        // The holder must be polled to be admitted; it resolves only if it fails (or the
        // lease ends before anyone saw it start).
        let started = futures::future::select(started_rx, &mut holder).await;
        match started {
            futures::future::Either::Left((Ok(()), _)) => {
                unclaimed.0 = None;
                Ok(Lease {
                    name,
                    mailbox,
                    channel,
                    holder: Some(holder),
                    site,
                })
            }
            futures::future::Either::Left((Err(_), _)) => match holder.await {
                Ok(end) => Err(WorkerError::lease_ended(&name, end)),
                Err(err) => Err(err),
            },
            futures::future::Either::Right((result, _)) => match result {
                Ok(end) => Err(WorkerError::lease_ended(&name, end)),
                Err(err) => Err(err),
            },
        }
    }
}

impl<T: 'static> Lease<T> {
    /// Runs `f` with the object under the lease and awaits its value.
    ///
    /// Calls run in the order they are made (one at a time: `&mut self`). Nothing is
    /// sent until the future is first polled. A panic in `f` comes back as an
    /// [`is_panic`](WorkerError::is_panic) error and ends the lease (the release hook
    /// runs, then the worker's panic policy applies, so `AfterPanic::Rebuild` rebuilds
    /// the object). A future dropped before its call started withdraws it (it never
    /// runs); one dropped while it runs lets it finish. Leased calls count in
    /// the worker's [`stats`](crate::Worker::stats), each in one outcome (one withdrawn
    /// before it started as `withdrawn`; one refused, or still queued when the lease
    /// ended, as `rejected`), and the lease itself as one running call while it is held;
    /// the worker's `timeout` does not apply under a lease (its `lease_limit` does).
    ///
    /// # Errors
    ///
    /// [`is_panic`](WorkerError::is_panic), or
    /// [`is_lease_ended`](WorkerError::is_lease_ended) once the lease is over.
    #[track_caller]
    pub fn call<F, R>(&mut self, f: F) -> impl Future<Output = Result<R, WorkerError>> + Send + '_
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let origin = Origin::new(
            Kind::Worker,
            Some(Arc::clone(&self.name)),
            Location::caller(),
        );
        let (ticket, reply): (Ticket<R>, _) = job::pair(origin, None);
        let mailbox = Arc::clone(&self.mailbox);
        // Every submitted call lands in one outcome: run, withdrawn by its caller, or
        // turned away by the lease's end.
        let job: Job<T> = Box::new(move |object: Option<&mut T>| {
            let counters = &mailbox.counters;
            let Some(object) = object else {
                let refused = ticket.refuse();
                let outcome = if refused {
                    &counters.rejected
                } else {
                    &counters.withdrawn
                };
                Counters::bump(outcome);
                return true;
            };
            let started = Instant::now();
            let ran = ticket.run_and(
                |_| f(object),
                |ran| {
                    match ran {
                        Ran::Skipped => Counters::bump(&counters.withdrawn),
                        ran => mailbox.count(ran, started.elapsed()),
                    }
                    None // timed by the job layer
                },
            );
            ran != Ran::Panicked
        });
        async move {
            // Sent on the first poll, like every call: a future never polled never runs.
            Counters::bump(&self.mailbox.counters.submitted);
            if let Err(end) = self.channel.send(job) {
                Counters::bump(&self.mailbox.counters.rejected);
                return Err(WorkerError::lease_ended(&self.name, end));
            }
            match reply.await {
                Outcome::Completed(value) => Ok(value),
                Outcome::Panicked(payload) => Err(WorkerError::panic(&self.name, payload)),
                Outcome::Dropped => {
                    let end = self.channel.state.lock().ended.unwrap_or(End::Dropped);
                    Err(WorkerError::lease_ended(&self.name, end))
                }
            }
        }
    }

    /// Ends the lease cleanly: no release hook; the next caller gets the object.
    ///
    /// # Errors
    ///
    /// [`is_lease_ended`](WorkerError::is_lease_ended) when the lease had already ended
    /// another way (its hook ran), or the worker's error if it stopped.
    pub async fn finish(mut self) -> Result<(), WorkerError> {
        self.channel.close(End::Finished);
        let holder = self.holder.take().expect("a live lease has its holder");
        match holder.await {
            Ok(End::Finished) => Ok(()),
            Ok(end) => Err(WorkerError::lease_ended(&self.name, end)),
            // The holder panics on purpose after a call under it did (see `serve`).
            Err(err) if err.is_panic() => Err(WorkerError::lease_ended(&self.name, End::Panicked)),
            Err(err) => Err(err),
        }
    }
}

impl<T: 'static> Drop for Lease<T> {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.take() {
            self.channel.close(End::Dropped);
            holder.detach();
        }
    }
}

impl<T: 'static> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("worker", &self.name)
            .field("taken_at", &format_args!("{}", self.site))
            .field("ended", &self.channel.state.lock().ended)
            .finish()
    }
}
