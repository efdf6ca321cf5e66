//! How long a worker's thread looks for its next call, and a worker's or a lane's caller
//! for its reply, before sleeping: a window that follows the waits it would have covered.
//!
//! A thread that sleeps lets its core go idle, and on a virtual machine an idle vCPU
//! halts: waking it again is an exit to the host and back, 20–25 µs on this project's
//! 2-core VM, against 3–5 µs for a wake-up on a core that is awake (`perf sched`, an
//! awaited call into a worker from `Runtime::block_on`). An awaited call whose caller and
//! worker both slept paid that twice, 45 µs for a call that runs in 1 µs and 36 µs of CPU
//! (the host's exits count as the guest's time), 5× `spawn_blocking`, whose pool of
//! threads lands on the caller's core half the time. Keeping both sides awake for a short
//! while instead costs a few µs of CPU per call, less than the wake-ups it saves, and an
//! awaited call takes 1–2 µs.
//!
//! Neither side looks where the process has a single core ([`cores_to_spare`]): there a
//! looking caller keeps the worker from running the call it waits for (pinned to one
//! core, an awaited call took 20 µs so, against 4.6 µs with no look), and a caller that
//! gave its core away between looks (`sched_yield`) made an awaited call from a tokio
//! task 3–4× slower on two (1.4–3.7 µs → 6–11 µs). With no looks one core is as before:
//! 4.5 µs from `block_on`, 8.3 µs from a task.
//!
//! Both sides look, or the hop still pays one halted wake-up: a look of the worker's
//! thread alone (tried before) left the caller asleep, a round trip of about 17 µs
//! against its 20 µs window, and whatever lengthened a call (the ledger on) made the
//! worker sleep again; a 50 µs spin of the worker alone that did not yield took the core
//! its caller needed when the two shared one.
//!
//! But looking only pays while the waits are short: a caller whose calls run for 200 µs
//! would spend a look's whole window on each of them for nothing. So the window follows
//! the waits, as Linux's haltpoll cpuidle governor follows a CPU's idle periods: a wait
//! that a window of [`MAX`] would have covered opens it to `MAX`, a longer one halves it,
//! and below [`MIN`] it closes. Four long waits in a row and a thread no longer looks;
//! one short wait and it looks again. What a wait lasted is known without a clock read of
//! its own: the worker's thread stamps each call when it is admitted and when it is
//! claimed, and reads the clock when it ends (for `Stats`); it alone writes both windows.
//! A lane's drainers keep the same stamps, and write its callers' window (several may:
//! a lost update only delays the window's move by one call).
//!
//! A lane's caller looks only when a drainer that runs nothing takes its call at once:
//! an awaited `Offloader::run` of a quick closure took 13 µs through a drainer that was
//! already looking at its queue (`offloader_per_call` level with `spawn_blocking`), and
//! 2–3 µs with the caller looking too (0.09× of `spawn_blocking`, 4.4 µs of CPU a call
//! against its 24 µs; benches/offload.rs).
//!
//! A caller and its runner on one CPU: the scheduler often puts the two threads on the
//! same core (a drainer or a worker thread woken by the caller, or a caller woken by the
//! answer, placed beside the thread that woke it) and leaves them there for tens of
//! milliseconds (40–75 ms here) while the other core is idle. Then a caller that looks
//! keeps the runner from running the very call it waits for: every such call took the
//! look's whole window (p99 56–58 µs) instead of 2 (a probe of serial calls recording
//! both threads' CPUs: of the calls over 10 µs, 98–99% had both threads on one CPU), and
//! `sqlite_awaited` read 0.15–0.38× of its peer whenever the pair stayed so for a run. So
//! the runner notes the CPU it answers on (`sched_getcpu`, on Linux x86 and x86_64 a vDSO
//! read of about 2 ns here; elsewhere not known, and nothing changes), and a caller armed
//! on that CPU gives its core away (`sched_yield`) at each look after the first: the
//! runner runs the call at once, and its own look, which gives the core away too, hands
//! it back. Such a call takes 4–5 µs, against 1.7–2.5 µs when the threads are apart. Not
//! looking at all there measured worse (5–6 µs a call, and the pair never moved apart:
//! neither thread was runnable for long), and so did a caller that gave its core away at
//! every look, also in a burst (20 times the `sched_yield`s of the burst's own threads in
//! a 10k burst through a `tower::Service`): so only a look that is its thread's latest on
//! a runner's CPU (no other such look armed on the thread since) gives the core away.
//! Where the CPU noted is stale (the runner has moved since, or the lane's drainer that
//! answered last is not the one that takes the call), a gift finds nobody who wants the
//! core and costs about 0.5 µs, a few of the look's own rounds.

// std's atomic even under loom: a window is a heuristic of real time, not a state the
// models explore (under loom a worker looks once whatever its window, and a caller not
// at all), and loom's would make a model's steps depend on the clock.
use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::job::{Outcome, Reply};

/// The widest window, and the longest wait that opens it: twice the wake-up of a halted
/// vCPU, so that one side's look covers the other side's return from a sleep. With
/// 20 µs, about one such wake-up, a pair whose threads had both slept often stayed so:
/// each wait was the other side's wake-up, just longer than the window, which kept both
/// windows closed. Measured with `sqlite_awaited` (benches/peers.rs), builds run
/// alternately: with 20 µs the worker took 2.7–7.6 µs a call and met its target in 3 of 8
/// runs; with 40 µs, 12 of 16; with 50 µs, 7 of 8 (1.8–5.5 µs); with 80 µs, 14 of 16.
pub(crate) const MAX: Duration = Duration::from_micros(50);

/// Below this a window closes (at the fourth halving from `MAX`): a look this short
/// catches nearly nothing.
const MIN: Duration = Duration::from_micros(5);

/// True when the process may run on more than one core (`available_parallelism`, which
/// reads the affinity mask and the cgroup's quota; asked once): only then can a caller
/// look for a reply while another thread makes it. Never under loom, whose models must
/// not depend on the clock.
pub(crate) fn cores_to_spare() -> bool {
    static CORES: OnceLock<bool> = OnceLock::new();
    let many = || std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    !cfg!(all(test, async_bridge_loom)) && *CORES.get_or_init(many)
}

/// A look's window, in nanoseconds, written by the runner's threads, read by any.
#[derive(Debug)]
pub(crate) struct Look {
    window: AtomicUsize,
    /// The CPU the runner's thread answered its last call on (`NO_CPU`: not known).
    cpu: AtomicUsize,
}

const NO_CPU: usize = usize::MAX;

/// The CPU this thread runs on, where asking costs no system call: Linux on x86 and
/// x86_64, where rustix reads it through the vDSO (about 2 ns here); elsewhere (on arm64
/// it would be a `getcpu` system call on both sides of every call) and under loom, whose
/// threads share one OS thread, not known.
fn current_cpu() -> usize {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "x86"),
        not(all(test, async_bridge_loom))
    ))]
    let cpu = rustix::thread::sched_getcpu();
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "x86"),
        not(all(test, async_bridge_loom))
    )))]
    let cpu = NO_CPU;
    cpu
}

impl Look {
    /// Open: the first waits are looked for.
    pub(crate) fn new() -> Self {
        Look {
            window: AtomicUsize::new(nanos(MAX)),
            cpu: AtomicUsize::new(NO_CPU),
        }
    }

    /// How long to look for the next wait's end: zero once the waits were long.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_nanos(self.window.load(Ordering::Relaxed) as u64)
    }

    /// A wait ended after `waited`: one `MAX` covers opens the window, a longer one
    /// halves it. A load and, when it changes, a store: two runners that call it at once
    /// may lose one's update, which the next wait makes up for.
    pub(crate) fn saw(&self, waited: Duration) {
        let now = self.window.load(Ordering::Relaxed);
        let next = if waited <= MAX {
            nanos(MAX)
        } else if now / 2 < nanos(MIN) {
            0
        } else {
            now / 2
        };
        if next != now {
            self.window.store(next, Ordering::Relaxed);
        }
    }

    /// The runner answered a call that its caller waited `waited` for: [`saw`](Self::saw),
    /// and it notes the CPU its thread runs on (a store only when that changed).
    pub(crate) fn answered(&self, waited: Duration) {
        self.saw(waited);
        let cpu = current_cpu();
        if self.cpu.load(Ordering::Relaxed) != cpu {
            self.cpu.store(cpu, Ordering::Relaxed);
        }
    }

    /// True when this thread runs on the CPU the runner last answered on.
    fn shares_runner_cpu(&self) -> bool {
        let cpu = current_cpu();
        cpu != NO_CPU && self.cpu.load(Ordering::Relaxed) == cpu
    }
}

fn nanos(d: Duration) -> usize {
    d.as_nanos() as usize
}

/// A caller's look for its reply: armed at admission when its call runs at once, it has
/// the caller's task polled again after each yield, rather than let its thread sleep,
/// until the reply is in or the window has passed.
#[derive(Debug, Default)]
pub(crate) struct ReplyLook {
    /// When the look ends; `None` when it is not armed or has ended.
    until: Option<Instant>,
    /// The waker the reply holds from the look's first poll.
    waker: Option<Waker>,
}

thread_local! {
    /// The latest look armed on this thread whose runner last answered on this thread's
    /// CPU: the look's address, with its low bit set until its first `again` (the poll
    /// that armed it); 0 for none. Kept here rather than in each look, whose calls'
    /// futures a burst moves into tasks of their own (they stay small).
    static LATEST: Cell<usize> = const { Cell::new(0) };
}

/// Gives this thread's core to any other thread that wants it (when none does, a
/// `sched_yield` costs about 0.5 µs here, as long as a few of the look's own rounds).
fn give_core_away() {
    #[cfg(all(test, not(async_bridge_loom)))]
    tests::GIFTS.set(tests::GIFTS.get() + 1);
    std::thread::yield_now();
}

impl ReplyLook {
    /// Where this look is, to tell it from the thread's other looks (a look moved between
    /// two polls is a look armed elsewhere: it keeps its core). Never odd: the look holds
    /// pointers, so its alignment is at least 2.
    fn address(&self) -> usize {
        self as *const ReplyLook as usize
    }

    /// Arms the look for a call admitted at `admitted` that runs at once, for as long as
    /// `look`'s window says (not at all on a single core).
    pub(crate) fn arm(&mut self, look: &Look, admitted: Instant) {
        let window = look.window();
        if !window.is_zero() && cores_to_spare() {
            self.until = Some(admitted + window);
            let me = self.address();
            if look.shares_runner_cpu() {
                LATEST.set(me | 1);
            } else if LATEST.get() & !1 == me {
                LATEST.set(0); // a look that ended here before, not this one
            }
        }
    }

    /// Polls the reply. While the caller looks, a reply not given yet is seen with one
    /// load, without the lock its runner takes to give it, once the reply holds this
    /// poll's waker: a look's yield may never wake the task (a foreign executor blocking a
    /// tokio worker thread holds the runtime's deferred wake-ups), so the reply's must be
    /// there.
    pub(crate) fn poll<T>(
        &mut self,
        reply: &mut Reply<T>,
        cx: &mut Context<'_>,
    ) -> Poll<Outcome<T>> {
        let holds_waker = (self.waker.as_ref()).is_some_and(|w| w.will_wake(cx.waker()));
        if holds_waker && !reply.is_done() {
            return Poll::Pending;
        }
        let polled = Pin::new(reply).poll(cx);
        if polled.is_pending() && self.until.is_some() {
            self.waker = Some(cx.waker().clone());
        }
        polled
    }

    /// After a poll that stays pending: while the look lasts, the task is polled again
    /// soon, through tokio's yield, which on a runtime's worker wakes it once the worker's
    /// other tasks ran, without waking a sibling worker to steal it (a plain wake-up of
    /// itself would); elsewhere at once. It keeps its core (see the module docs for why,
    /// and why a single core has no looks), but for a caller armed on the CPU its runner
    /// last answered on, whose look is still the latest such look of its thread: from its
    /// second look on it gives the core away first (a burst, which arms one look after
    /// another, nearly never).
    pub(crate) fn again(&mut self, cx: &mut Context<'_>) {
        match self.until {
            Some(until) if Instant::now() < until => {
                let me = self.address();
                match LATEST.get() {
                    latest if latest == me | 1 => LATEST.set(me), // the poll that armed it
                    latest if latest == me => give_core_away(),
                    _ => {} // not on the runner's CPU, or another such look was armed since
                }
                let yielded = pin!(tokio::task::yield_now()).poll(cx);
                debug_assert!(yielded.is_pending());
            }
            _ => self.until = None,
        }
    }
}

#[cfg(all(test, not(async_bridge_loom)))]
mod tests {
    use super::*;

    thread_local! {
        /// How many times this thread gave its core away from a look.
        pub(super) static GIFTS: Cell<usize> = const { Cell::new(0) };
    }

    /// This thread pinned to one CPU, until dropped (its old CPUs restored: libtest may
    /// run a test on its main thread, whose mask later tests' threads would inherit).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    struct Pinned(rustix::thread::CpuSet);

    #[cfg(any(target_os = "linux", target_os = "android"))]
    impl Pinned {
        /// Pins this thread to `cpu`, after `cores_to_spare` has read the process's cores
        /// (it asks once, and a pinned thread has one). `None` where a test cannot pin,
        /// or where this build knows no thread's CPU.
        fn to(cpu: usize) -> Option<Pinned> {
            if !cores_to_spare() || current_cpu() == NO_CPU {
                eprintln!("no looks, or no CPU numbers, here: nothing to test");
                return None;
            }
            let old = rustix::thread::sched_getaffinity(None).ok()?;
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            rustix::thread::sched_setaffinity(None, &set).ok()?;
            let pinned = Pinned(old);
            (current_cpu() == cpu).then_some(pinned)
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    impl Drop for Pinned {
        fn drop(&mut self) {
            let _ = rustix::thread::sched_setaffinity(None, &self.0);
        }
    }

    /// This thread pinned where it runs, and a look whose runner answered there.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn answered_here() -> Option<(Pinned, Look)> {
        let pinned = Pinned::to(current_cpu())?;
        let look = Look::new();
        look.answered(Duration::from_micros(2));
        Some((pinned, look))
    }

    /// An admission time whose look lasts as long as a test needs (a loaded machine may
    /// take longer than a window between two looks).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn lasting() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    /// Runs `looks` looks of `reply`; returns the gifts they made.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn gifts_of(reply: &mut ReplyLook, looks: usize) -> usize {
        let before = GIFTS.get();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        (0..looks).for_each(|_| reply.again(&mut cx));
        GIFTS.get() - before
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_caller_on_its_runners_cpu_gives_its_core_away_from_its_second_look() {
        let Some((_pinned, look)) = answered_here() else {
            return;
        };
        let mut reply = ReplyLook::default();
        reply.arm(&look, lasting());
        assert_eq!(
            gifts_of(&mut reply, 1),
            0,
            "the poll that armed it keeps its core"
        );
        assert_eq!(gifts_of(&mut reply, 3), 3);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_look_armed_before_another_on_its_thread_keeps_its_core() {
        let Some((_pinned, look)) = answered_here() else {
            return;
        };
        let (mut first, mut second) = (ReplyLook::default(), ReplyLook::default());
        first.arm(&look, lasting());
        second.arm(&look, lasting());
        assert_eq!(
            gifts_of(&mut first, 3),
            0,
            "a burst's earlier calls keep the core"
        );
        assert_eq!(gifts_of(&mut second, 3), 2);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_caller_on_another_cpu_than_its_runner_keeps_its_core() {
        let look = Look::new();
        let runner = std::thread::spawn(move || {
            let _pinned = Pinned::to(0)?;
            look.answered(Duration::from_micros(2));
            Some(look)
        });
        let Some(look) = runner.join().unwrap() else {
            return;
        };
        let Some(_pinned) = Pinned::to(1) else {
            return; // one CPU to run on
        };
        let mut reply = ReplyLook::default();
        reply.arm(&look, lasting());
        assert_eq!(gifts_of(&mut reply, 4), 0);
    }

    const LONG: Duration = Duration::from_micros(200);

    /// Serial awaited calls from a thread pinned to one CPU, to a runner whose thread
    /// it started there (a thread inherits its maker's CPUs): the runner notes where it
    /// answers, so the caller gives it the core.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn gifts_of_serial_calls<F: std::future::Future>(call: impl Fn() -> F) -> Option<usize> {
        let _pinned = Pinned::to(current_cpu())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let before = GIFTS.get();
        rt.block_on(async {
            for _ in 0..200 {
                call().await;
            }
        });
        Some(GIFTS.get() - before)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_workers_caller_on_its_cpu_gives_it_the_core() {
        let worker = std::cell::OnceCell::new();
        let gifts = gifts_of_serial_calls(|| {
            let worker = worker.get_or_init(|| {
                crate::Worker::builder("pinned")
                    .spawn(|| Ok::<_, std::io::Error>(()))
                    .unwrap()
            });
            let call = worker.call(|_| ());
            async move { call.await.unwrap() }
        });
        if let Some(gifts) = gifts {
            assert!(gifts > 0, "no look gave the core to the worker");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_lanes_caller_on_its_drainers_cpu_gives_it_the_core() {
        let lane = crate::Offloader::builder("pinned").build().unwrap();
        let gifts = gifts_of_serial_calls(|| {
            let call = lane.run(|| ());
            async move { call.await.unwrap() }
        });
        if let Some(gifts) = gifts {
            assert!(gifts > 0, "no look gave the core to the drainer");
        }
    }

    #[test]
    fn a_window_opens_full_and_halves_for_each_long_wait_until_it_closes() {
        let look = Look::new();
        assert_eq!(look.window(), MAX);
        let mut seen = vec![];
        for _ in 0..5 {
            look.saw(LONG);
            seen.push(look.window().as_micros());
        }
        assert_eq!(seen, [25, 12, 6, 0, 0]);
    }

    /// A wait that was the other side's wake-up from a halted vCPU (20–25 µs on this
    /// project's VM, `perf sched`) opens a closed window, and the window then covers the
    /// next one: otherwise two sides that both slept keep each other asleep.
    #[test]
    fn a_halted_wake_up_opens_a_window_that_covers_the_next_one() {
        const HALTED_WAKE_UP: Duration = Duration::from_micros(25);
        let look = Look::new();
        (0..4).for_each(|_| look.saw(LONG));
        assert_eq!(look.window(), Duration::ZERO);
        look.saw(HALTED_WAKE_UP);
        assert!(look.window() > HALTED_WAKE_UP, "{:?}", look.window());
    }

    #[test]
    fn one_short_wait_opens_a_closed_window_again() {
        let look = Look::new();
        (0..4).for_each(|_| look.saw(LONG));
        assert_eq!(look.window(), Duration::ZERO);
        look.saw(MAX); // the longest wait it covers
        assert_eq!(look.window(), MAX);
        look.saw(MAX + Duration::from_nanos(1));
        assert_eq!(look.window(), MAX / 2);
        look.saw(Duration::ZERO);
        assert_eq!(look.window(), MAX);
    }
}
