//! Helpers shared by the integration tests. Nothing here sleeps to synchronise.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

/// A multi-thread runtime with two workers (the CI machine has two cores).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread runtime with two workers whose blocking pool has one thread, to hold
/// with [`hold_blocking_pool`].
pub fn one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Takes the only blocking thread of `rt` (see [`one_blocking_thread`]) until the
/// returned sender is dropped.
pub fn hold_blocking_pool(rt: &tokio::runtime::Runtime) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel::<()>();
    let (taken, is_taken) = mpsc::channel();
    rt.spawn_blocking(move || {
        taken.send(()).unwrap();
        let _ = released.recv();
    });
    is_taken.recv().unwrap();
    release
}

/// A file of `data` in `dir`, named after `prefix` (the test file), this process and
/// `name`; deleted on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(dir: &std::path::Path, prefix: &str, name: &str, data: &[u8]) -> Self {
        let path = dir.join(format!("{prefix}-{}-{name}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `len` bytes of a pattern that repeats every 251 bytes (a prime: no read size lines up
/// with it).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads until `n` bytes or the end, so that short reads (allowed) compare equal to
/// std's full ones.
pub async fn read_up_to<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = vec![0; n];
    let mut filled = 0;
    while filled < n {
        let k = r.read(&mut out[filled..]).await?;
        if k == 0 {
            break;
        }
        filled += k;
    }
    out.truncate(filled);
    Ok(out)
}

/// [`read_up_to`] for a std reader.
pub fn std_read_up_to<R: std::io::Read>(r: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0; n];
    let mut filled = 0;
    while filled < n {
        let k = r.read(&mut out[filled..])?;
        if k == 0 {
            break;
        }
        filled += k;
    }
    out.truncate(filled);
    Ok(out)
}

/// The same result, or errors of the same kind, on our side and on std's.
pub fn same<T: PartialEq + std::fmt::Debug>(
    ours: std::io::Result<T>,
    std: std::io::Result<T>,
    what: &str,
) {
    match (ours, std) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{what}: {a} vs {b}"),
        (a, b) => panic!("{what}: ours {a:?}, std {b:?}"),
    }
}

/// Every call a handle's `stats()` counted as submitted is in exactly one outcome, and
/// none is left queued or running.
pub fn assert_settled(stats: &async_bridge::Stats) {
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.withdrawn + stats.rejected,
        "{stats:?}"
    );
}

/// The widest window of a worker's look (`look::MAX` inside the crate).
pub const LOOK_WINDOW: Duration = Duration::from_micros(50);

/// Holds the calling thread for longer than a look's window (a lower bound only: a
/// loaded machine makes it longer, never shorter).
pub fn past_the_window() {
    let start = std::time::Instant::now();
    while start.elapsed() <= 2 * LOOK_WINDOW {
        std::hint::spin_loop();
    }
}

/// A gate that blocked closures wait on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

/// A runtime for a value to own, as legacy sync clients often do: dropped where blocking
/// is not allowed (in async code), it panics, which the tests that hold one check the
/// library never makes it do.
pub fn a_runtime_to_own() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Opens a gate when dropped: a test that fails while closures wait on the gate ends
/// instead of hanging in its runtime's shutdown, which waits for them.
pub struct OpenOnDrop(pub Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Polls a future once with a waker that does nothing.
pub fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor with no tokio in it: parks the thread between polls.
pub fn block_on_plain<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Runs `f` on its own thread and fails the test (instead of hanging) if it has not
/// finished after a generous limit. This is a bound on a hang, not a timing assertion.
/// A panic of `f` is resumed here with its payload.
pub fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within("the call", Duration::from_secs(60), f)
}

/// As [`within_a_minute`], within 30 s, naming `what` hung.
pub fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within(what, Duration::from_secs(30), f)
}

fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("hung: {what} did not finish within {limit:?}"),
    }
}

/// Reports the name of the thread it is dropped on.
pub struct DropProbe(pub mpsc::Sender<String>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        let name = thread::current().name().unwrap_or("<unnamed>").to_owned();
        let _ = self.0.send(name);
    }
}

/// A value whose `Drop` panics: an answer whose caller gave up on it, dropped where the
/// work ran.
pub struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("dropping an answer nobody took");
    }
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// A thread inside a current_thread runtime's `Runtime::block_on`, holding its scheduler
/// until released: another thread's `Runtime::block_on` on that runtime then polls its
/// own future without driving the runtime (a "second thread").
pub struct SchedulerHeld {
    release: Option<tokio::sync::oneshot::Sender<()>>,
    holder: Option<thread::JoinHandle<()>>,
}

impl SchedulerHeld {
    /// Starts the holder and returns once it holds the scheduler.
    pub fn new(rt: &Arc<tokio::runtime::Runtime>) -> Self {
        let (holding_tx, holding) = mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let rt = Arc::clone(rt);
        let holder = thread::spawn(move || {
            rt.block_on(async move {
                holding_tx.send(()).unwrap();
                let _ = released.await;
            })
        });
        holding.recv_timeout(Duration::from_secs(30)).unwrap();
        SchedulerHeld {
            release: Some(release),
            holder: Some(holder),
        }
    }

    /// Lets the holder leave its `block_on` (the driver leaves), and waits for it.
    pub fn release(mut self) {
        self.leave();
    }

    fn leave(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(holder) = self.holder.take() {
            holder.join().unwrap();
        }
    }
}

impl Drop for SchedulerHeld {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A worker whose interrupter ignores its first fire (as SQLite's does when it comes just
/// before the blocking part): true when a re-fire stopped its call, whose caller went away.
pub fn missed_first_interrupt_is_refired(rt: &tokio::runtime::Runtime) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const GUARD: Duration = Duration::from_secs(30);
    let (b_stop_tx, b_stop_rx) = mpsc::channel::<()>();
    let b_stop_tx = Arc::new(Mutex::new(b_stop_tx));
    let b = async_bridge::Worker::builder("good-interrupter")
        .interrupter(move |_: &u32| {
            let fires = Arc::new(AtomicUsize::new(0));
            let tx = Arc::clone(&b_stop_tx);
            move || {
                if fires.fetch_add(1, Ordering::SeqCst) >= 1 {
                    let _ = tx.lock().unwrap().send(());
                }
            }
        })
        .spawn(|| Ok::<_, std::io::Error>(0u32))
        .unwrap();
    let (b_in_tx, b_in_rx) = mpsc::channel::<()>();
    let (b_done_tx, b_done_rx) = mpsc::channel::<bool>();
    let b_call = rt.spawn(b.call(move |_| {
        b_in_tx.send(()).unwrap();
        let stopped = b_stop_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        b_done_tx.send(stopped).unwrap();
    }));
    b_in_rx.recv_timeout(GUARD).unwrap();
    b_call.abort();
    b_done_rx.recv_timeout(GUARD).unwrap()
}

/// Counts its wakes and reports each on a channel.
pub struct Counting {
    pub wakes: std::sync::atomic::AtomicUsize,
    woken: Mutex<mpsc::Sender<()>>,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self.woken.lock().unwrap().send(());
    }
}

pub fn counting() -> (Arc<Counting>, Waker, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let counter = Arc::new(Counting {
        wakes: std::sync::atomic::AtomicUsize::new(0),
        woken: Mutex::new(tx),
    });
    let waker = Waker::from(Arc::clone(&counter));
    (counter, waker, rx)
}

/// Polls `call` until it stops waking itself (it stopped looking), with a counting waker;
/// returns how many times it woke itself, and the waker's counter and channel.
pub fn poll_until_it_sleeps<F: Future + Unpin>(
    call: &mut F,
) -> (usize, Arc<Counting>, mpsc::Receiver<()>, Waker) {
    let (counter, waker, woken) = counting();
    let mut cx = Context::from_waker(&waker);
    loop {
        let before = counter.wakes.load(std::sync::atomic::Ordering::SeqCst);
        assert!(std::pin::Pin::new(&mut *call).poll(&mut cx).is_pending());
        if counter.wakes.load(std::sync::atomic::Ordering::SeqCst) == before {
            let looks = before;
            while woken.try_recv().is_ok() {}
            return (looks, counter, woken, waker);
        }
    }
}

/// True when the process may run on more than one core: only then does a caller look for
/// its reply (`look::cores_to_spare` inside the crate).
pub fn many_cores() -> bool {
    thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// Polls `call` once with a counting waker (it must stay pending): true when it asked
/// to be polled again at once (it looks for its reply).
pub fn first_poll_looks<F: Future + Unpin>(call: &mut F) -> bool {
    let (counter, waker, _woken) = counting();
    assert!(std::pin::Pin::new(&mut *call)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    counter.wakes.load(std::sync::atomic::Ordering::SeqCst) > 0
}

/// A lane of `slots` drainers on `rt`'s blocking pool.
pub fn lane_on(name: &str, rt: &tokio::runtime::Runtime, slots: usize) -> async_bridge::Offloader {
    async_bridge::Offloader::builder(name)
        .max_concurrency(slots)
        .handle(rt.handle().clone())
        .build()
        .unwrap()
}
