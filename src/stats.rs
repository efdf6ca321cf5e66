//! [`Stats`]: the one shape every handle reports, and the lock-free histogram behind its
//! percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of a handle's counters: the same shape for an
/// [`Offloader`](crate::Offloader), a [`ComputePool`](crate::ComputePool), a
/// [`Worker`](crate::Worker), a [`WorkerPool`](crate::WorkerPool) and a
/// [`Portal`](crate::Portal).
///
/// `queued` and `running` are the current numbers; the others count since the handle
/// was built. Counters are updated before the caller sees its answer, so they are exact
/// when the caller looks. A call is counted once by how it ended for its *closure*
/// (`completed`, `panicked`, or never run: `withdrawn`, `rejected`, abandoned by a
/// shutdown); `timed_out` and `cancelled` count what the *callers* did, so a call whose
/// caller timed out while it ran also counts as `completed` when it returns. (A
/// portal's caller is blocked in its call, so it never waits in a queue, gives up or
/// times out: see [`Portal::stats`](crate::Portal::stats).)
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("stats").build().unwrap();
/// lane.run(|| ()).await.unwrap();
/// let _ = lane.run(|| panic!("boom")).await;
/// let stats = lane.stats();
/// assert_eq!((stats.submitted, stats.completed, stats.panicked, stats.running), (2, 1, 1, 0));
/// assert!(stats.run_time.max >= stats.run_time.p50);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls submitted (admitted, or turned away at admission). A caller that gave up
    /// while it waited for room in a worker's mailbox was never submitted (it counts as
    /// `cancelled`, or as `timed_out` when its timeout ended the wait).
    pub submitted: u64,
    /// Callers waiting to start now.
    pub queued: usize,
    /// Closures running now.
    pub running: usize,
    /// Closures that returned.
    pub completed: u64,
    /// Closures that panicked.
    pub panicked: u64,
    /// Calls that left the queue before they started, because their caller gave up
    /// (dropped the future, or timed out): their closures never ran.
    pub withdrawn: u64,
    /// Calls turned away at once: the queue was full, the call came from the handle's
    /// own closure with no slot free (`is_would_deadlock`), or it was made on a
    /// [`Lease`](crate::Lease) that had ended, or was still queued on it when it ended
    /// (`is_lease_ended`).
    pub rejected: u64,
    /// Calls whose caller got a timeout, waiting or running.
    pub timed_out: u64,
    /// Calls whose caller went away (dropped the future) before they finished, waiting
    /// or running.
    pub cancelled: u64,
    /// How long calls waited to start (admission to claim). A thread that goes straight
    /// from one call to the next reads the clock once between them: the end of the one
    /// stands for the claim and the start of the next, so the next one's `run_time`
    /// also holds the hand-over of the previous answer to its caller (a wake-up: at most
    /// a few µs).
    pub queue_wait: Percentiles,
    /// How long closures ran (claim to end).
    pub run_time: Percentiles,
}

/// A distribution's p50, p90, p99 and maximum, from a log-scale histogram (each
/// percentile is the upper bound of its bucket: within a factor of 2, never below).
///
/// # Examples
///
/// ```
/// let p = async_bridge::Percentiles::default();
/// assert_eq!(p.max, std::time::Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// Half of the samples are at most this.
    pub p50: Duration,
    /// 90% of the samples are at most this.
    pub p90: Duration,
    /// 99% of the samples are at most this.
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

/// Buckets of powers of two nanoseconds: bucket `i` holds samples below `2^i` ns.
const BUCKETS: usize = 48;

/// A lock-free histogram of durations.
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max: AtomicU64::new(0),
        }
    }
}

/// Who writes a counter or a histogram: any thread (locked read-modify-writes), or one
/// thread alone, its owner (a worker's, written by its thread: a load and a store per
/// field; a concurrent reader sees each field before or after the write, and a second
/// writer would lose counts).
#[derive(Clone, Copy)]
pub(crate) enum Writers {
    Any,
    Owner,
}

impl Writers {
    /// Adds one to `counter`, with `order` on the write.
    #[inline]
    fn add_one(self, counter: &AtomicU64, order: Ordering) {
        match self {
            Writers::Any => {
                counter.fetch_add(1, order);
            }
            // On x86 every locked instruction is a full barrier, waiting for the stores
            // ahead of it: the owner needs none.
            Writers::Owner => counter.store(counter.load(Ordering::Relaxed) + 1, order),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        self.record_as(d, Writers::Any);
    }

    pub(crate) fn record_as(&self, d: Duration, writers: Writers) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (64 - nanos.leading_zeros() as usize).min(BUCKETS - 1);
        writers.add_one(&self.buckets[bucket], Ordering::Relaxed);
        // Most samples are not a new maximum: a load costs less than a read-modify-write.
        if nanos > self.max.load(Ordering::Relaxed) {
            match writers {
                Writers::Any => {
                    self.max.fetch_max(nanos, Ordering::Relaxed);
                }
                Writers::Owner => self.max.store(nanos, Ordering::Relaxed),
            }
        }
    }

    /// The number of samples.
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Adds `other`'s samples into `into` (a plain array), for merging several handles.
    pub(crate) fn add_to(&self, into: &mut [u64; BUCKETS], max: &mut u64) {
        for (sum, bucket) in into.iter_mut().zip(&self.buckets) {
            *sum += bucket.load(Ordering::Relaxed);
        }
        *max = (*max).max(self.max.load(Ordering::Relaxed));
    }
}

/// The percentiles of merged bucket counts.
pub(crate) fn percentiles(counts: &[u64; BUCKETS], max: u64) -> Percentiles {
    let total: u64 = counts.iter().sum();
    let at = |q: u64| -> Duration {
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = (total * q).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, &n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = if i == 0 { 0 } else { (1u64 << i) - 1 };
                return Duration::from_nanos(upper.min(max));
            }
        }
        Duration::from_nanos(max)
    };
    Percentiles {
        p50: at(50),
        p90: at(90),
        p99: at(99),
        max: Duration::from_nanos(max),
    }
}

/// A value alone on its cache lines (128 bytes: a line and the one the prefetcher pairs
/// with it), so that writes to it do not take the lines of its neighbours away from
/// another core.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The counters every handle keeps, updated before the caller sees its answer.
///
/// `submitted` is bumped by the caller's thread, everything else by the thread that runs
/// the call: apart, so that the two do not pass a cache line back and forth on every
/// call (in a burst of SQLite calls through a worker, that cost more than the query).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: Padded<AtomicU64>,
    pub(crate) completed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) withdrawn: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) queue_wait: Histogram,
    pub(crate) run_time: Histogram,
}

impl Counters {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        Self::bump_from(counter);
    }

    /// [`bump`](Self::bump), returning the count before it.
    #[inline]
    pub(crate) fn bump_from(counter: &AtomicU64) -> u64 {
        // Release: a snapshot that sees an outcome (Acquire) sees the same call's earlier
        // `submitted` too (free on x86, where every RMW is a full barrier).
        counter.fetch_add(1, Ordering::Release)
    }

    /// Closures that returned or panicked.
    pub(crate) fn finished(&self) -> u64 {
        self.completed.load(Ordering::Relaxed) + self.panicked.load(Ordering::Relaxed)
    }

    /// Counts a closure that ended after `took`, its `completed`, `panicked` and
    /// `run_time` written by `writers`: `Owner` for a worker's, whose calls all end on
    /// its one thread (its leases' calls too; its `queue_wait`, recorded as that thread
    /// claims a call, is its own too). Written before the caller sees its answer (the
    /// reply's release publishes them), so `Stats` stays exact when the caller looks.
    pub(crate) fn ran(&self, ran: crate::job::Ran, took: Duration, writers: Writers) {
        let outcome = match ran {
            crate::job::Ran::Completed => &self.completed,
            crate::job::Ran::Panicked => &self.panicked,
            crate::job::Ran::Skipped => return,
        };
        // Release, as `bump`.
        writers.add_one(outcome, Ordering::Release);
        self.run_time.record_as(took, writers);
    }

    /// The snapshot, with the current `queued` and `running` given.
    pub(crate) fn snapshot(&self, queued: usize, running: usize) -> Stats {
        Self::merged(&[self], queued, running)
    }

    /// The snapshot of a facade's counters (a [`Portal`](crate::Portal)'s), which keeps
    /// no `running` or `queued` number: a call runs on its caller's thread from the
    /// moment it is submitted (so `running` is the calls submitted and not yet ended), and
    /// only the calls that had to wait before their first poll record a queue wait; every
    /// other call that started waited zero, added here.
    pub(crate) fn facade_snapshot(&self) -> Stats {
        // The outcomes first: each call bumps `submitted` before its outcome, so reading
        // `submitted` last never sees an outcome without its submission.
        // Acquire pairs with `bump`'s Release, on weakly ordered CPUs too.
        let ended = self.completed.load(Ordering::Acquire)
            + self.panicked.load(Ordering::Acquire)
            + self.rejected.load(Ordering::Acquire);
        let waits = self.queue_wait.count();
        let submitted = self.submitted.load(Ordering::Relaxed);
        let running = usize::try_from(submitted.saturating_sub(ended)).unwrap_or(usize::MAX);
        let mut stats = self.snapshot(0, running);
        let (mut counts, mut max) = ([0; BUCKETS], 0);
        self.queue_wait.add_to(&mut counts, &mut max);
        let started = submitted.saturating_sub(self.rejected.load(Ordering::Relaxed));
        counts[0] += started.saturating_sub(waits);
        stats.queue_wait = percentiles(&counts, max);
        stats
    }

    /// The snapshot of several handles' counters together (a pool's workers).
    pub(crate) fn merged(all: &[&Counters], queued: usize, running: usize) -> Stats {
        let sum = |f: fn(&Counters) -> &AtomicU64| {
            all.iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let merge = |f: fn(&Counters) -> &Histogram| {
            let (mut counts, mut max) = ([0; BUCKETS], 0);
            for c in all {
                f(c).add_to(&mut counts, &mut max);
            }
            percentiles(&counts, max)
        };
        Stats {
            submitted: sum(|c| &c.submitted.0),
            queued,
            running,
            completed: sum(|c| &c.completed),
            panicked: sum(|c| &c.panicked),
            withdrawn: sum(|c| &c.withdrawn),
            rejected: sum(|c| &c.rejected),
            timed_out: sum(|c| &c.timed_out),
            cancelled: sum(|c| &c.cancelled),
            queue_wait: merge(|c| &c.queue_wait),
            run_time: merge(|c| &c.run_time),
        }
    }
}
