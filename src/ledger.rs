//! The migration ledger: every crossing of the bridge, counted by call site.
//!
//! A team migrating a codebase wants to know how many crossings remain and where. With
//! the ledger on ([`enable`]), every piece of work that goes through the job layer
//! (`unblock`, lanes, `compute` and pools, worker calls and leases, `Unblock<T>` hops,
//! and twin calls, counted as `twin` at their callers' sites) and every facade entry (`block_on`, `Portal`,
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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::origin::{Kind, Site};

static ON: AtomicBool = AtomicBool::new(false);
/// A call site's key: the address of its `Location`. `#[track_caller]` hands every call
/// from one site the same static, so the address finds it without hashing a file name;
/// should one site ever come with two addresses (a generic caller instantiated twice),
/// the snapshot merges them by value.
type Addr = usize;

fn addr(site: Site) -> Addr {
    std::ptr::from_ref(site) as Addr
}

/// A hasher for keys that are already well spread (addresses, a small discriminant): a
/// multiply and a rotate instead of SipHash over a file name.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fast<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// The tally of each kind and call site. Tallies are atomics, found under the read lock
/// (or in a thread's cache, [`LAST`]); the write lock is taken only to add a site.
static SITES: RwLock<Option<Sites>> = RwLock::new(None);
type Sites = Fast<Key, (Site, Arc<Tally>)>;
type Key = (Kind, Addr);
/// Bumped by [`reset`], after it emptied [`SITES`]: a tally a thread cached before is not
/// counted in again.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The tally this thread last counted a crossing in, under its key and generation. A
    /// thread that crosses at one site over and over (a worker's thread answering calls
    /// from one place, a loop) counts without the shared lock: taking the read lock is a
    /// write to a line every crossing thread shares, which cost a twin call on a worker a
    /// tenth of its time once the call took about a µs (`benches/ledger.rs`,
    /// `ledger_twin`).
    static LAST: RefCell<Option<(Key, u64, Arc<Tally>)>> = const { RefCell::new(None) };
    /// The twin site this thread last noted (twin sites are never forgotten).
    static LAST_TWIN: Cell<Addr> = const { Cell::new(0) };
}
/// The call sites of twin methods (`#[bridge]`), each with its method's name and its
/// carrier's kind, as the twins report them when called. A twin call crosses through its
/// carrier (a worker, a lane, a facade), which counts it under its own kind at the
/// caller's site; the snapshot names the crossings of that kind there `twin` (a
/// hand-written call of another kind at the same `Location`, from a `#[track_caller]`
/// helper or a macro's body, keeps its kind). Kept by [`reset`]: it says what code is at
/// a site, not how often it ran.
static TWINS: RwLock<Option<Fast<Addr, Twin>>> = RwLock::new(None);
/// A twin's site, method, and carrier kind (`Kind::as_str`).
type Twin = (Site, &'static str, &'static str);

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
    GENERATION.fetch_add(1, Ordering::Release);
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

/// Notes that the twin method `method` is called at `site` through a carrier that counts
/// under `carrier` (called by the code `#[bridge]` generates, before its carrier is
/// called; one relaxed load when the ledger is off).
#[inline]
pub(crate) fn twin_call(site: Site, method: &'static str, carrier: &'static str) {
    if is_enabled() {
        let key = addr(site);
        let noted = LAST_TWIN.try_with(|last| last.replace(key) == key);
        if !noted.unwrap_or(false) {
            note_twin(site, method, carrier);
        }
    }
}

#[cold]
fn note_twin(site: Site, method: &'static str, carrier: &'static str) {
    let key = addr(site);
    if TWINS
        .read()
        .as_ref()
        .is_some_and(|twins| twins.contains_key(&key))
    {
        return;
    }
    TWINS
        .write()
        .get_or_insert_with(Fast::default)
        .insert(key, (site, method, carrier));
}

/// Counts one crossing (called when enabled by the job layer, with its own times or a
/// worker thread's, and by the facade entry).
pub(crate) fn record(kind: Kind, site: Site, waited: Duration, ran: Duration, from_async: bool) {
    let key = (kind, addr(site));
    let generation = GENERATION.load(Ordering::Acquire);
    let add = |tally: &Tally| tally.add(waited, ran, from_async);
    let cached = LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((k, g, tally)) if *k == key && *g == generation => add(tally),
            _ => {
                let tally = shared_tally(key, site);
                add(&tally);
                *last = Some((key, generation, tally));
            }
        }
    });
    if cached.is_err() {
        add(&shared_tally(key, site)); // the thread's locals are gone (it is ending)
    }
}

/// The tally of `key` in [`SITES`], added if it is new.
fn shared_tally(key: Key, site: Site) -> Arc<Tally> {
    if let Some((_, tally)) = SITES.read().as_ref().and_then(|sites| sites.get(&key)) {
        return Arc::clone(tally);
    }
    let mut sites = SITES.write();
    let (_, tally) = sites
        .get_or_insert_with(Fast::default)
        .entry(key)
        .or_insert_with(|| (site, Arc::default()));
    Arc::clone(tally)
}

impl Tally {
    fn add(&self, waited: Duration, ran: Duration, from_async: bool) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let max = |slot: &AtomicU64, n: u64| {
            // Most crossings are not a new maximum: a load costs less than an RMW.
            if n > slot.load(Ordering::Relaxed) {
                slot.fetch_max(n, Ordering::Relaxed);
            }
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        if from_async {
            self.from_async.fetch_add(1, Ordering::Relaxed);
        }
        let (waited, ran) = (nanos(waited), nanos(ran));
        if waited > 0 {
            self.wait_total.fetch_add(waited, Ordering::Relaxed);
            max(&self.wait_max, waited);
        }
        self.run_total.fetch_add(ran, Ordering::Relaxed);
        max(&self.run_max, ran);
    }
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
    /// The kind its carrier counted it under (the same as `kind` but for twins).
    carrier: &'static str,
    site: Site,
    twin: Option<&'static str>,
    count: u64,
    from_async: u64,
    wait_total: Duration,
    wait_max: Duration,
    run_total: Duration,
    run_max: Duration,
}

impl Crossing {
    /// The kind: `unblock`, `offload` (a lane), `compute`, `worker`, `lease`, `io`,
    /// `facade`, or `twin`: a call of a `#[bridge]` twin's method (whatever its carrier:
    /// a worker, a pool, a lane, a `Blocking<T>`), at its caller's site.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// For a `twin` crossing, the twin method called there (`AsyncStore::get`).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::{bridge, ledger, Worker};
    ///
    /// #[bridge(async = AsyncStore)]
    /// pub trait Store {
    ///     fn get(&self, key: u32) -> u64;
    /// }
    /// struct Legacy;
    /// impl Store for Legacy {
    ///     fn get(&self, key: u32) -> u64 {
    ///         u64::from(key) * 2
    ///     }
    /// }
    ///
    /// ledger::enable();
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Worker::builder("store").spawn(|| Ok::<_, std::io::Error>(Legacy))?;
    /// let line = line!() + 1;
    /// assert_eq!(store.get(21).await?, 42);
    /// let snapshot = async_bridge::ledger();
    /// let twin = snapshot.crossings().iter().find(|c| c.site().line() == line).unwrap();
    /// assert_eq!((twin.kind(), twin.twin()), ("twin", Some("AsyncStore::get")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn twin(&self) -> Option<&'static str> {
        self.twin
    }

    /// Where the crossing is in the code.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// How many times it was crossed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// For facades (and blocking twins): how many of those entries came from async code
    /// (a runtime thread), blocking it. Always 0 for the other kinds, which the table
    /// prints as `-`.
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
    // Twin sites by value (a site's `Location` could come at two addresses).
    let twins: HashMap<(Site, &'static str), &'static str> = TWINS
        .read()
        .iter()
        .flatten()
        .map(|(_, &(site, method, carrier))| ((site, carrier), method))
        .collect();
    let mut merged: HashMap<(&'static str, Site), Crossing> = HashMap::new();
    for (&(kind, _), &(site, ref t)) in SITES.read().iter().flatten() {
        let carrier = kind.as_str();
        let twin = twins.get(&(site, carrier)).copied();
        let kind = twin.map_or(kind, |_| Kind::Twin).as_str();
        let crossing = merged.entry((kind, site)).or_insert_with(|| Crossing {
            kind,
            carrier,
            site,
            twin,
            count: 0,
            from_async: 0,
            wait_total: Duration::ZERO,
            wait_max: Duration::ZERO,
            run_total: Duration::ZERO,
            run_max: Duration::ZERO,
        });
        crossing.count += t.count.load(Ordering::Relaxed);
        crossing.from_async += t.from_async.load(Ordering::Relaxed);
        crossing.wait_total += from(&t.wait_total);
        crossing.wait_max = crossing.wait_max.max(from(&t.wait_max));
        crossing.run_total += from(&t.run_total);
        crossing.run_max = crossing.run_max.max(from(&t.run_max));
    }
    let mut crossings: Vec<Crossing> = merged.into_values().collect();
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

    /// A stable text form, one line per kind and line of code:
    /// `kind<TAB>file:line<TAB>count`, sorted by kind and site (crossings of one kind at
    /// two columns of a line are one line, their counts summed). Commit it as the
    /// migration's baseline.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = async_bridge::ledger().to_text();
    /// assert!(text.lines().all(|line| line.split('\t').count() == 3));
    /// ```
    pub fn to_text(&self) -> String {
        self.by_key()
            .into_iter()
            .map(|(key, count)| format!("{key}\t{count}\n"))
            .collect()
    }

    /// The counts by `kind<TAB>file:line`, sorted: crossings at two columns of one line
    /// (two calls of one kind on a line) share a key, so their counts are summed.
    fn by_key(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for crossing in &self.crossings {
            *counts.entry(crossing.key()).or_insert(0) += crossing.count;
        }
        counts
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
                // A key twice (a baseline written before `to_text` summed them): summed.
                *allowed.entry(key).or_insert(0) += count.trim().parse::<u64>().unwrap_or(0);
            }
        }
        let mut problems = Vec::new();
        for (key, count) in self.by_key() {
            match allowed.get(key.as_str()) {
                None => problems.push(format!(
                    "new crossing: {} ({count} times)",
                    key.replace('\t', " at "),
                )),
                Some(&was) if count > was => problems.push(format!(
                    "grown crossing: {} ({count} times, baseline {was})",
                    key.replace('\t', " at "),
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
            // Only a facade entry (a blocking twin's too) can come from async code (the
            // other kinds, async twins included, are entered from async code by design):
            // a dash, not a 0 that reads as "none of them".
            let from_async = match c.carrier {
                "facade" => c.from_async.to_string(),
                _ => "-".to_owned(),
            };
            write!(
                f,
                "{:<8} {:>8} {:>10} {:>12} {:>12} {:>12}  {}",
                c.kind,
                c.count,
                from_async,
                format!("{:.1?}", c.wait_total),
                format!("{:.1?}", c.wait_max),
                format!("{:.1?}", c.run_total),
                c.site
            )?;
            if let Some(method) = c.twin {
                write!(f, " ({method})")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} crossings at {} sites",
            self.total(),
            self.crossings.len()
        )
    }
}
