//! The migration ledger: every crossing of the bridge, counted by call site.
//!
//! A team migrating a codebase wants to know how many crossings remain and where. With
//! the ledger on ([`enable`]), every piece of work that goes through the job layer
//! (`unblock`, lanes, `compute` and pools, worker calls and leases, `Unblock<T>` hops,
//! twin calls at their callers' sites) and every facade entry (`block_on`, `Portal`,
//! `Blocking<T>`) is counted under its kind and call site, with the total and worst
//! time it waited to start and ran, and, for facades, how often it was entered from
//! async code (the crossing that blocks an executor thread).
//! [`ledger()`](crate::ledger()) takes a snapshot: sorted, printable as a table, and
//! exportable as stable text ([`Ledger::to_text`]) to commit next to the code, so CI can
//! hold the migration's progress with [`Ledger::check_against`].
//!
//! Off by default: when off, each crossing costs one relaxed atomic load.
//!
//! # Examples
//!
//! ```
//! use async_bridge::{ledger, unblock};
//!
//! ledger::enable();
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! for _ in 0..3 {
//!     unblock(|| std::fs::metadata("Cargo.toml").map(|m| m.len())).await.unwrap();
//! }
//! # });
//! let now = async_bridge::ledger();
//! let unblocks = now.crossings().iter().find(|c| c.kind() == "unblock" && c.site().file().ends_with(".rs"));
//! assert!(unblocks.unwrap().count() >= 3);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::origin::{Kind, Site};

static ON: AtomicBool = AtomicBool::new(false);
/// The tally of each kind and call site.
type Sites = HashMap<(Kind, Site), Arc<Tally>>;
static SITES: RwLock<Option<Sites>> = RwLock::new(None);

/// Starts counting crossings, process-wide.
///
/// # Examples
///
/// ```
/// async_bridge::ledger::enable();
/// assert!(async_bridge::ledger::is_enabled());
/// ```
pub fn enable() {
    ON.store(true, Ordering::Release);
}

/// Stops counting (what was counted stays until [`reset`]).
///
/// # Examples
///
/// ```
/// async_bridge::ledger::disable();
/// assert!(!async_bridge::ledger::is_enabled());
/// ```
pub fn disable() {
    ON.store(false, Ordering::Release);
}

/// Whether crossings are being counted.
///
/// # Examples
///
/// ```
/// async_bridge::ledger::enable();
/// assert!(async_bridge::ledger::is_enabled());
/// ```
#[inline]
pub fn is_enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Forgets every crossing counted so far.
///
/// # Examples
///
/// ```
/// async_bridge::ledger::reset();
/// ```
pub fn reset() {
    *SITES.write() = None;
}

/// The counts of one call site.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    from_async: AtomicU64,
    wait_total: AtomicU64,
    wait_max: AtomicU64,
    run_total: AtomicU64,
    run_max: AtomicU64,
}

/// Counts one crossing (called by the job layer and the facade entry when enabled).
pub(crate) fn record(kind: Kind, site: Site, waited: Duration, ran: Duration, from_async: bool) {
    let key = (kind, site);
    let tally = SITES
        .read()
        .as_ref()
        .and_then(|sites| sites.get(&key).cloned());
    let tally = tally.unwrap_or_else(|| {
        let mut sites = SITES.write();
        Arc::clone(
            sites
                .get_or_insert_with(HashMap::new)
                .entry(key)
                .or_default(),
        )
    });
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    tally.count.fetch_add(1, Ordering::Relaxed);
    if from_async {
        tally.from_async.fetch_add(1, Ordering::Relaxed);
    }
    tally.wait_total.fetch_add(nanos(waited), Ordering::Relaxed);
    tally.wait_max.fetch_max(nanos(waited), Ordering::Relaxed);
    tally.run_total.fetch_add(nanos(ran), Ordering::Relaxed);
    tally.run_max.fetch_max(nanos(ran), Ordering::Relaxed);
}

/// A snapshot of the ledger, from [`ledger()`](crate::ledger()): one [`Crossing`] per
/// kind and call site, the most used first.
///
/// `Display` prints a table; [`to_text`](Self::to_text) a stable line per crossing to
/// commit as a baseline.
///
/// # Examples
///
/// ```
/// let snapshot = async_bridge::ledger();
/// let table = snapshot.to_string();
/// assert!(table.starts_with("kind"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    crossings: Vec<Crossing>,
}

/// The crossings of one kind at one call site.
///
/// # Examples
///
/// ```
/// use async_bridge::ledger;
///
/// ledger::enable();
/// async_bridge::block_on(async {}).unwrap();
/// let snapshot = async_bridge::ledger();
/// let facade = snapshot.crossings().iter().find(|c| c.kind() == "facade").unwrap();
/// assert!(facade.count() >= 1);
/// assert!(facade.site().file().ends_with(".rs"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing {
    kind: &'static str,
    site: Site,
    count: u64,
    from_async: u64,
    wait_total: Duration,
    wait_max: Duration,
    run_total: Duration,
    run_max: Duration,
}

impl Crossing {
    /// The kind: `unblock`, `offload` (a lane), `compute`, `worker`, `lease`, `io`, `facade`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Where the crossing is in the code.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// How many times it was crossed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// For facades: how many of those entries came from async code (a runtime thread),
    /// blocking it.
    pub fn from_async(&self) -> u64 {
        self.from_async
    }

    /// Total and worst time waiting to start (queued in a lane or mailbox, or for a thread).
    pub fn queue_wait(&self) -> (Duration, Duration) {
        (self.wait_total, self.wait_max)
    }

    /// Total and worst time running.
    pub fn run_time(&self) -> (Duration, Duration) {
        (self.run_total, self.run_max)
    }

    fn key(&self) -> String {
        format!("{}\t{}:{}", self.kind, self.site.file(), self.site.line())
    }
}

/// Takes a snapshot of the ledger (empty unless [`enable`] was called).
pub(crate) fn snapshot() -> Ledger {
    let from = |d: &AtomicU64| Duration::from_nanos(d.load(Ordering::Relaxed));
    let mut crossings: Vec<Crossing> = SITES
        .read()
        .iter()
        .flatten()
        .map(|(&(kind, site), t)| Crossing {
            kind: kind.as_str(),
            site,
            count: t.count.load(Ordering::Relaxed),
            from_async: t.from_async.load(Ordering::Relaxed),
            wait_total: from(&t.wait_total),
            wait_max: from(&t.wait_max),
            run_total: from(&t.run_total),
            run_max: from(&t.run_max),
        })
        .collect();
    crossings.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.site.file().cmp(b.site.file()))
            .then_with(|| a.site.line().cmp(&b.site.line()))
            .then_with(|| a.kind.cmp(b.kind))
    });
    Ledger { crossings }
}

impl Ledger {
    /// The crossings, the most used first.
    pub fn crossings(&self) -> &[Crossing] {
        &self.crossings
    }

    /// How many times the bridge was crossed, over every site.
    pub fn total(&self) -> u64 {
        self.crossings.iter().map(|c| c.count).sum()
    }

    /// A stable text form, one line per crossing: `kind<TAB>file:line<TAB>count`, sorted
    /// by kind and site. Commit it as the migration's baseline.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = async_bridge::ledger().to_text();
    /// assert!(text.lines().all(|line| line.split('\t').count() == 3));
    /// ```
    pub fn to_text(&self) -> String {
        let mut lines: Vec<String> = self
            .crossings
            .iter()
            .map(|c| format!("{}\t{}\n", c.key(), c.count))
            .collect();
        lines.sort();
        lines.concat()
    }

    /// Compares this run with a baseline in [`to_text`](Self::to_text)'s form: an error
    /// listing every crossing that is new (a call site the baseline does not have) or
    /// grew (crossed more often), so CI can hold a migration's progress. Crossings that
    /// shrank or went away are progress and pass. Blank lines and lines starting with `#`
    /// are ignored.
    ///
    /// # Errors
    ///
    /// A message with one line per new or grown crossing.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::ledger;
    ///
    /// ledger::enable();
    /// ledger::reset();
    /// async_bridge::block_on(async {}).unwrap();
    /// let run = async_bridge::ledger();
    /// // Against its own text it passes; against an empty baseline the facade is new.
    /// assert!(run.check_against(&run.to_text()).is_ok());
    /// let err = run.check_against("# nothing yet\n").unwrap_err();
    /// assert!(err.contains("new crossing: facade"));
    /// ```
    pub fn check_against(&self, baseline: &str) -> Result<(), String> {
        let mut allowed: HashMap<&str, u64> = HashMap::new();
        for line in baseline
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some((key, count)) = line.rsplit_once('\t') {
                allowed.insert(key, count.trim().parse().unwrap_or(0));
            }
        }
        let mut problems = Vec::new();
        for crossing in &self.crossings {
            let key = crossing.key();
            match allowed.get(key.as_str()) {
                None => problems.push(format!(
                    "new crossing: {} ({} times)",
                    key.replace('\t', " at "),
                    crossing.count
                )),
                Some(&was) if crossing.count > was => problems.push(format!(
                    "grown crossing: {} ({} times, baseline {was})",
                    key.replace('\t', " at "),
                    crossing.count
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<8} {:>8} {:>10} {:>12} {:>12} {:>12}  site",
            "kind", "count", "from async", "wait total", "wait max", "run total"
        )?;
        for c in &self.crossings {
            writeln!(
                f,
                "{:<8} {:>8} {:>10} {:>12} {:>12} {:>12}  {}",
                c.kind,
                c.count,
                c.from_async,
                format!("{:.1?}", c.wait_total),
                format!("{:.1?}", c.wait_max),
                format!("{:.1?}", c.run_total),
                c.site
            )?;
        }
        write!(
            f,
            "{} crossings at {} sites",
            self.total(),
            self.crossings.len()
        )
    }
}
