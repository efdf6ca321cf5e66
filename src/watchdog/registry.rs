//! The process-wide list of running watchdogs, and the threshold every watched poll
//! reads with one atomic load.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::report::{Findings, Kind};

/// The smallest `slow_poll` threshold of the running watchdogs, in nanoseconds;
/// `u64::MAX` when none runs.
static THRESHOLD: AtomicU64 = AtomicU64::new(u64::MAX);
static RUNNING: Mutex<Vec<Weak<Findings>>> = Mutex::new(Vec::new());

#[inline]
pub(super) fn threshold() -> Option<Duration> {
    match THRESHOLD.load(Ordering::Relaxed) {
        u64::MAX => None,
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

pub(super) fn register(findings: &Arc<Findings>) {
    let mut running = RUNNING.lock();
    running.push(Arc::downgrade(findings));
    update(&mut running);
}

pub(super) fn unregister(findings: &Arc<Findings>) {
    let mut running = RUNNING.lock();
    running.retain(|w| w.upgrade().is_some_and(|f| !Arc::ptr_eq(&f, findings)));
    update(&mut running);
}

fn update(running: &mut Vec<Weak<Findings>>) {
    running.retain(|w| w.strong_count() > 0);
    let min = running
        .iter()
        .filter_map(Weak::upgrade)
        .map(|f| u64::try_from(f.slow_poll().as_nanos()).unwrap_or(u64::MAX - 1))
        .min()
        .unwrap_or(u64::MAX);
    THRESHOLD.store(min, Ordering::Relaxed);
}

fn each(f: impl Fn(&Findings)) {
    let running: Vec<_> = RUNNING.lock().iter().filter_map(Weak::upgrade).collect();
    running.iter().for_each(|findings| f(findings));
}

pub(super) fn record_slow_poll(site: &'static Location<'static>, took: Duration) {
    each(|findings| {
        if took >= findings.slow_poll() {
            findings.record(Kind::SlowPoll, site, took);
        }
    });
}

/// A blocking facade was entered from an async context: a finding for every running
/// watchdog, whether or not the facade could run there.
pub(crate) fn record_blocking_facade(site: &'static Location<'static>, took: Duration) {
    each(|findings| findings.record(Kind::BlockingFacade, site, took));
}
