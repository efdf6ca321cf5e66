//! What a watchdog found: slow polls and blocking facades by call site, and the
//! executor-lag histogram.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use parking_lot::Mutex;

use crate::origin::Site;

/// What kind of blocking a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A watched future's poll ran longer than the `slow_poll` threshold.
    SlowPoll,
    /// A blocking facade (`block_on`, `Blocking<T>`, `Worker::call_blocking`) was entered
    /// from async code, blocking that runtime thread for the time recorded.
    BlockingFacade,
}

/// Blocking found at one call site; see [`Report::findings`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::watchdog::{WatchExt, Watchdog};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dog = Watchdog::builder().slow_poll(Duration::from_millis(1)).start()?;
/// async { std::thread::sleep(Duration::from_millis(5)) }.watched().await;
/// let finding = dog.report().findings()[0].clone();
/// assert_eq!(finding.count(), 1);
/// assert!(finding.total() >= Duration::from_millis(5));
/// assert!(finding.to_string().contains("blocked 1 poll"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    kind: Kind,
    site: Site,
    count: u64,
    total: Duration,
    worst: Duration,
}

impl Finding {
    /// Slow poll or blocking facade.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where the watched future was created, or where the facade was called.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// How many times it blocked.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The time it blocked in all.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The longest single block.
    pub fn worst(&self) -> Duration {
        self.worst
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::SlowPoll => "poll",
            Kind::BlockingFacade => "blocking facade call",
        };
        let plural = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "{} blocked {} {what}{plural}, {} ms total, worst {} ms",
            self.site,
            self.count,
            self.total.as_millis(),
            self.worst.as_millis()
        )
    }
}

/// The executor-lag histogram: how late the probe's timer fired, each tick.
///
/// A worker thread stalled by blocking code nobody wrapped shows up here as lag.
/// Buckets (upper bounds): 1, 5, 10, 50, 100, 500 ms and above.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::watchdog::Watchdog;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dog = Watchdog::builder().lag_probe(Duration::from_millis(1)).start()?;
/// while dog.report().lag().samples() < 3 {
///     tokio::time::sleep(Duration::from_millis(1)).await;
/// }
/// assert!(dog.report().lag().samples() >= 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    buckets: [u64; 7],
    worst: Duration,
}

const BOUNDS_MS: [u64; 6] = [1, 5, 10, 50, 100, 500];

impl Lag {
    fn record(&mut self, lag: Duration) {
        let ms = lag.as_millis();
        let bucket = BOUNDS_MS
            .iter()
            .position(|&b| ms < u128::from(b))
            .unwrap_or(BOUNDS_MS.len());
        self.buckets[bucket] += 1;
        self.worst = self.worst.max(lag);
    }

    /// How many ticks the probe measured.
    pub fn samples(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The largest lag seen.
    pub fn worst(&self) -> Duration {
        self.worst
    }

    /// How many ticks were at least `lag` late (rounded to the histogram's buckets: the
    /// count of every bucket whose lower bound is at least `lag`).
    pub fn at_least(&self, lag: Duration) -> u64 {
        let ms = lag.as_millis();
        let lower = |i: usize| {
            if i == 0 {
                0
            } else {
                u128::from(BOUNDS_MS[i - 1])
            }
        };
        (0..self.buckets.len())
            .filter(|&i| lower(i) >= ms)
            .map(|i| self.buckets[i])
            .sum()
    }
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "executor lag over {} ticks:", self.samples())?;
        let mut lower = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            match BOUNDS_MS.get(i) {
                Some(upper) => write!(f, " [{lower}-{upper} ms) {count}")?,
                None => write!(f, " [{lower} ms+) {count}")?,
            }
            lower = BOUNDS_MS.get(i).copied().unwrap_or(lower);
        }
        write!(f, "; worst {} ms", self.worst.as_millis())
    }
}

/// A snapshot of a watchdog's findings; see [`Watchdog::report`](super::Watchdog::report).
///
/// # Examples
///
/// ```
/// use async_bridge::watchdog::Watchdog;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dog = Watchdog::builder().start()?;
/// let report = dog.report();
/// assert!(report.findings().is_empty());
/// report.assert_clean(); // passes: nothing blocked
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Report {
    findings: Vec<Finding>,
    lag: Lag,
}

impl Report {
    /// The findings, most total blocked time first.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The executor-lag histogram.
    pub fn lag(&self) -> &Lag {
        &self.lag
    }

    /// The findings at `file` (a suffix of the path, e.g. `"src/api.rs"`).
    pub fn at(&self, file: &str) -> impl Iterator<Item = &Finding> {
        let file = file.to_owned();
        self.findings
            .iter()
            .filter(move |f| f.site.file().ends_with(&file))
    }

    /// Fails a test when anything blocked: panics with the findings.
    ///
    /// # Panics
    ///
    /// When the report has any finding.
    #[track_caller]
    pub fn assert_clean(&self) {
        if !self.findings.is_empty() {
            panic!("the executor was blocked:\n{self}");
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(f, "{}", self.lag)
    }
}

/// The store a running watchdog records into.
#[derive(Debug)]
pub(super) struct Findings {
    slow_poll: Duration,
    by_site: Mutex<HashMap<(Kind, Site), Finding>>,
    lag: Mutex<Lag>,
}

impl Findings {
    pub(super) fn new(slow_poll: Duration) -> Self {
        Findings {
            slow_poll,
            by_site: Mutex::new(HashMap::new()),
            lag: Mutex::new(Lag::default()),
        }
    }

    pub(super) fn slow_poll(&self) -> Duration {
        self.slow_poll
    }

    pub(super) fn record(&self, kind: Kind, site: Site, took: Duration) {
        {
            let mut by_site = self.by_site.lock();
            let finding = by_site.entry((kind, site)).or_insert(Finding {
                kind,
                site,
                count: 0,
                total: Duration::ZERO,
                worst: Duration::ZERO,
            });
            finding.count += 1;
            finding.total += took;
            finding.worst = finding.worst.max(took);
        }
        crate::trace::blocked(&kind, site, took);
    }

    pub(super) fn record_lag(&self, lag: Duration) {
        self.lag.lock().record(lag);
    }

    pub(super) fn report(&self) -> Report {
        let mut findings: Vec<Finding> = self.by_site.lock().values().cloned().collect();
        findings.sort_by(|a, b| b.total.cmp(&a.total).then(b.count.cmp(&a.count)));
        Report {
            findings,
            lag: self.lag.lock().clone(),
        }
    }
}
