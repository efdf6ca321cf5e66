//! The executor under every facade: polls one future on the calling thread, parking the
//! thread between polls.
//!
//! What `Handle::block_on` does, minus what a facade does not need: tokio's version
//! also marks the thread as inside a runtime (so nested blocking calls panic — the
//! facade decides about nesting itself, in [`super::context`]), seeds the thread's RNG
//! under a mutex, and sets a coop budget. Without them a call costs a fraction of
//! `Handle::block_on` (see benches/facade.rs), and the runtime context is still entered
//! by the caller ([`super::entry`]), so tokio timers, IO and `spawn` work in the future.
//!
//! Nesting: a future polled here may call a facade again, which runs its own loop on
//! the same thread. Each nesting level has its own wake flag (and a waker made once per
//! thread and level, so a call allocates nothing), so a wake meant for an outer level
//! that arrives while an inner loop is parked is not lost: the inner loop goes back to
//! sleep, and the outer one sees its flag when it next looks.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::seam;

/// Wakes one nesting level of one thread.
struct Signal {
    woken: AtomicBool,
    thread: Thread,
    /// Under the virtual-time harness: the participant of a thread that waits here,
    /// which lets go of the clock while it waits and takes it back when woken (seam
    /// rule 6).
    waiting: seam::ClockWait,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.waiting
            .wake(|| self.woken.store(true, Ordering::Release));
        self.thread.unpark();
    }
}

struct Level {
    signal: Arc<Signal>,
    waker: Waker,
}

impl Level {
    fn new() -> Rc<Level> {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            thread: thread::current(),
            waiting: seam::ClockWait::default(),
        });
        Rc::new(Level {
            waker: Waker::from(Arc::clone(&signal)),
            signal,
        })
    }
}

/// This thread's nesting depth and one waker per level, in one thread-local (one
/// thread-local access per call).
struct Levels {
    depth: Cell<usize>,
    levels: RefCell<Vec<Rc<Level>>>,
}

thread_local! {
    static LEVELS: Levels = const {
        Levels {
            depth: Cell::new(0),
            levels: RefCell::new(Vec::new()),
        }
    };
}

/// Leaves a nesting level, also when the future panics.
struct Leave<'a>(&'a Cell<usize>, usize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Polls `future` to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = Some(future);
    LEVELS
        .try_with(|levels| {
            let depth = levels.depth.replace(levels.depth.get() + 1);
            let _leave = Leave(&levels.depth, depth);
            let level = {
                let mut all = levels.levels.borrow_mut();
                if all.len() <= depth {
                    all.push(Level::new());
                }
                Rc::clone(&all[depth])
            };
            run(&level, future.take().expect("taken once"))
        })
        .unwrap_or_else(|_| {
            // The thread-locals are gone (a thread-local destructor is calling): one-off.
            run(&Level::new(), future.take().expect("taken once"))
        })
}

fn run<F: Future>(level: &Level, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(&level.waker);
    // A wake left over from an earlier call at this level costs one extra poll at most.
    level.signal.woken.store(false, Ordering::Relaxed);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let signal = &level.signal;
        signal
            .waiting
            .before_wait(|| signal.woken.load(Ordering::Acquire));
        while !signal.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}
