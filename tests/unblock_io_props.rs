//! Property tests: random sequences of read / write / seek / flush / `call` on an
//! `Unblock<T>` against the same sequence on the std value, on a `Cursor<Vec<u8>>`, on a
//! `File`, and on a reader that cannot seek: same bytes, same positions, same errors.

mod support;

use support::{read_up_to, same, std_read_up_to, within_a_minute};

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use async_bridge::Unblock;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

#[derive(Clone, Debug)]
enum Op {
    Read(usize),
    Write(Vec<u8>),
    Seek(SeekFrom),
    Flush,
    Position,
    ZeroRead,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Op::Read),
        3 => proptest::collection::vec(any::<u8>(), 0..700).prop_map(Op::Write),
        1 => (0u64..4000).prop_map(|p| Op::Seek(SeekFrom::Start(p))),
        1 => (-3000i64..3000).prop_map(|p| Op::Seek(SeekFrom::Current(p))),
        1 => (-3000i64..200).prop_map(|p| Op::Seek(SeekFrom::End(p))),
        1 => Just(Op::Flush),
        1 => Just(Op::Position),
        1 => Just(Op::ZeroRead),
    ]
}

/// Capacities from one byte (every step a hop) to the default.
fn capacity() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        Just(Some(1)),
        Just(Some(7)),
        Just(Some(100)),
        Just(Some(4096)),
        Just(None)
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn wrap<T: Send + 'static>(capacity: Option<usize>, value: T) -> Unblock<T> {
    match capacity {
        Some(capacity) => Unblock::with_capacity(capacity, value),
        None => Unblock::new(value),
    }
}

/// Applies `ops` to both and compares every result; `T` and `S` are the same type.
async fn compare<T>(ours: &mut Unblock<T>, std: &mut T, ops: &[Op])
where
    T: Read + Write + Seek + Send + 'static,
{
    for (i, op) in ops.iter().enumerate() {
        let what = format!("op {i}: {op:?}");
        match op {
            Op::Read(n) => same(read_up_to(ours, *n).await, std_read_up_to(std, *n), &what),
            // An empty `write_all` writes nothing, and tokio's does not even poll; std's
            // `Cursor<Vec<u8>>::write_all` still pads the vector with zeros up to its
            // position (a quirk of that one type, not of `Write`), so the model skips it.
            Op::Write(bytes) if bytes.is_empty() => {
                same(ours.write_all(bytes).await, Ok(()), &what)
            }
            Op::Write(bytes) => same(
                ours.write_all(bytes).await,
                Write::write_all(std, bytes),
                &what,
            ),
            Op::Seek(pos) => same(ours.seek(*pos).await, Seek::seek(std, *pos), &what),
            Op::Flush => same(ours.flush().await, Write::flush(std), &what),
            Op::Position => same(
                ours.call(|value| value.stream_position())
                    .await
                    .and_then(|pos| pos),
                Seek::stream_position(std),
                &what,
            ),
            Op::ZeroRead => same(ours.read(&mut []).await, Read::read(std, &mut []), &what),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cursor_matches_std(
        initial in proptest::collection::vec(any::<u8>(), 0..5000),
        ops in proptest::collection::vec(op(), 1..40),
        capacity in capacity(),
    ) {
        within_a_minute(move || {
            support::rt().block_on(async move {
                let mut std = Cursor::new(initial.clone());
                let mut ours = wrap(capacity, Cursor::new(initial));
                compare(&mut ours, &mut std, &ops).await;
                // get_mut sees the logical position; into_inner the same bytes.
                assert_eq!(ours.get_mut().await.position(), std.position());
                let inner = ours.into_inner().await;
                assert_eq!(inner.position(), std.position());
                assert_eq!(inner.into_inner(), std.into_inner());
            })
        });
    }

    #[test]
    fn file_matches_std(
        initial in proptest::collection::vec(any::<u8>(), 0..5000),
        ops in proptest::collection::vec(op(), 1..30),
        capacity in capacity(),
        case in any::<u64>(),
    ) {
        within_a_minute(move || {
            let dir = std::env::temp_dir();
            let pid = std::process::id();
            let ours_path = dir.join(format!("unblock-prop-ours-{pid}-{case}"));
            let std_path = dir.join(format!("unblock-prop-std-{pid}-{case}"));
            let open = |path: &std::path::Path| {
                std::fs::write(path, &initial).unwrap();
                File::options().read(true).write(true).open(path).unwrap()
            };
            let mut std = open(&std_path);
            let ours_file = open(&ours_path);
            support::rt().block_on(async {
                let mut ours = wrap(capacity, ours_file);
                compare(&mut ours, &mut std, &ops).await;
                let mut file = ours.into_inner().await;
                assert_eq!(Seek::stream_position(&mut file).unwrap(), Seek::stream_position(&mut std).unwrap());
            });
            let (a, b) = (std::fs::read(&ours_path).unwrap(), std::fs::read(&std_path).unwrap());
            let _ = std::fs::remove_file(&ours_path);
            let _ = std::fs::remove_file(&std_path);
            assert_eq!(a, b);
        });
    }

    /// A reader that cannot seek is never read ahead: after any reads, the value handed
    /// back has consumed exactly what the reads returned.
    #[test]
    fn unseekable_reader_loses_nothing(
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        reads in proptest::collection::vec(0usize..900, 0..12),
        capacity in capacity(),
    ) {
        within_a_minute(move || {
            support::rt().block_on(async move {
                let mut ours = wrap(capacity, NoSeek(Cursor::new(data.clone())));
                let mut got = Vec::new();
                for n in reads {
                    got.extend(read_up_to(&mut ours, n).await.unwrap());
                }
                let mut rest = ours.into_inner().await;
                let consumed = rest.0.position() as usize;
                assert_eq!(consumed, got.len());
                let mut tail = Vec::new();
                Read::read_to_end(&mut rest, &mut tail).unwrap();
                got.extend(tail);
                assert_eq!(got, data);
            })
        });
    }
}

/// Read and write, but no `Seek`.
struct NoSeek(Cursor<Vec<u8>>);

impl Read for NoSeek {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut self.0, buf)
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection: in-flight futures dropped after their first poll, inner errors, short
// reads and writes, values that seek and values that cannot, and every exit path. The
// property: the bytes a user gets out (reads, then whatever the exit hands back, then
// what the value reads next) are the source's, in order; writes that a flush reported
// done are all in the inner writer, in order.

#[derive(Clone, Debug)]
enum ReadOp {
    /// One `read` of up to `n` bytes, awaited.
    Read(usize),
    /// One `read`, polled once and dropped (as in a `select!` or a timeout).
    DroppedRead(usize),
    /// `fill_buf`, then `consume` of up to `n` bytes of it.
    FillConsume(usize),
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        3 => (1usize..700).prop_map(ReadOp::Read),
        3 => (1usize..700).prop_map(ReadOp::DroppedRead),
        2 => (0usize..700).prop_map(ReadOp::FillConsume),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Exit {
    IntoParts,
    IntoInner,
    GetMut,
    Call,
    Drop,
}

fn exit() -> impl Strategy<Value = Exit> {
    prop_oneof![
        Just(Exit::IntoParts),
        Just(Exit::IntoInner),
        Just(Exit::GetMut),
        Just(Exit::Call),
        Just(Exit::Drop),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Cursor,
    File,
    /// A reader that cannot seek, with short reads and injected errors.
    Source,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Cursor), Just(Kind::File), Just(Kind::Source)]
}

/// A reader that cannot seek: at most `max` bytes per `read`, an error (consuming
/// nothing) at the `read` calls numbered in `fail_at`. Its bytes are shared, so what it
/// has not given out can be read after the `Unblock` is gone.
struct Source {
    data: std::sync::Arc<std::sync::Mutex<Cursor<Vec<u8>>>>,
    max: usize,
    fail_at: Vec<usize>,
    calls: usize,
    started: Started,
}

/// Counts the `read` calls that have started, for a test to wait on.
#[derive(Clone, Default)]
struct Started(std::sync::Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>);

impl Started {
    fn count(&self) -> usize {
        *self.0 .0.lock().unwrap()
    }

    fn bump(&self) {
        *self.0 .0.lock().unwrap() += 1;
        self.0 .1.notify_all();
    }

    /// Waits for a `read` to start after the first `n`, for a while. Only for coverage:
    /// the property holds whether or not it starts (a dropped read whose `read` has not
    /// started is withdrawn by the next step), and a dropped read that found the previous
    /// one's hop still finishing starts none, so this must not wait forever.
    fn wait_past(&self, n: usize) {
        let count = self.0 .0.lock().unwrap();
        let _ = self
            .0
             .1
            .wait_timeout_while(count, std::time::Duration::from_millis(100), |c| *c <= n)
            .unwrap();
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let call = self.calls;
        self.calls += 1;
        self.started.bump();
        if self.fail_at.contains(&call) {
            return Err(io::Error::other("injected"));
        }
        let n = buf.len().min(self.max);
        Read::read(&mut *self.data.lock().unwrap(), &mut buf[..n])
    }
}

/// The rest of a value, read directly (no injected faults).
trait Rest {
    fn rest(&mut self) -> Vec<u8>;
}

impl Rest for Cursor<Vec<u8>> {
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        Read::read_to_end(self, &mut out).unwrap();
        out
    }
}

impl Rest for File {
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        Read::read_to_end(self, &mut out).unwrap();
        out
    }
}

impl Rest for Source {
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        Read::read_to_end(&mut *self.data.lock().unwrap(), &mut out).unwrap();
        out
    }
}

/// Applies the reads; returns the bytes they got (errors, injected, get nothing). With
/// `started`, a dropped read's blocking `read` is let start before the test goes on (so
/// that its bytes are really in flight, not withdrawn by the next step).
async fn faulty_reads<T: Read + Send + 'static>(
    ours: &mut Unblock<T>,
    ops: &[ReadOp],
    started: Option<&Started>,
) -> Vec<u8> {
    use tokio::io::AsyncBufReadExt;
    let mut got = Vec::new();
    // A dropped read's hop is still out (the next read waits for it, starting none).
    let mut outstanding = false;
    for op in ops {
        let before = started.map(Started::count);
        let dropped = matches!(op, ReadOp::DroppedRead(_));
        match *op {
            ReadOp::Read(n) => {
                let mut buf = vec![0; n];
                if let Ok(k) = ours.read(&mut buf).await {
                    got.extend_from_slice(&buf[..k]);
                }
            }
            ReadOp::DroppedRead(n) => {
                let mut buf = vec![0; n];
                match support::poll_once(ours.read(&mut buf)) {
                    std::task::Poll::Ready(Ok(k)) => got.extend_from_slice(&buf[..k]),
                    std::task::Poll::Ready(Err(_)) => {}
                    std::task::Poll::Pending => {
                        if let (Some(started), Some(before), false) = (started, before, outstanding)
                        {
                            started.wait_past(before);
                        }
                        outstanding = true;
                    }
                }
            }
            ReadOp::FillConsume(n) => {
                if let Ok(buf) = ours.fill_buf().await {
                    let k = n.min(buf.len());
                    got.extend_from_slice(&buf[..k]);
                    ours.consume(k);
                }
            }
        }
        if !dropped {
            outstanding = false;
        }
    }
    got
}

/// Takes the value out through `exit` and returns what the user gets: the bytes the exit
/// hands back and then the value's rest. `None` when the exit documents that it drops
/// bytes it cannot give back (`into_inner` or a drop, on a value that cannot seek); then
/// `rest` is what the value still had.
async fn exit_with<T: Read + Rest + Send + 'static>(
    mut ours: Unblock<T>,
    exit: Exit,
    seeks: bool,
) -> (Option<Vec<u8>>, Option<T>) {
    match exit {
        Exit::IntoParts => {
            let (mut value, unread) = ours.into_parts().await;
            if seeks {
                assert!(unread.is_empty(), "a value that seeks takes its bytes back");
            }
            (Some([unread, value.rest()].concat()), Some(value))
        }
        Exit::IntoInner => {
            let mut value = ours.into_inner().await;
            let rest = value.rest();
            (seeks.then_some(rest), Some(value))
        }
        Exit::GetMut => {
            // `&mut T` is where the async reads left it; what it cannot take back stays
            // in front, for the next async read.
            let _ = ours.get_mut().await;
            let mut out = Vec::new();
            let mut buf = vec![0; 4096];
            // Injected errors are finite: the reads get past them.
            loop {
                match ours.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(k) => out.extend_from_slice(&buf[..k]),
                    Err(_) => {}
                }
            }
            (Some(out), Some(ours.into_inner().await))
        }
        Exit::Call => {
            let mut out = Vec::new();
            let rest = match ours.call(|value| value.rest()).await {
                Ok(rest) => rest,
                Err(err) => {
                    assert!(!seeks, "{err}");
                    // Refused: bytes are buffered in front; take them, then it runs.
                    out = ours.take_buffered().await;
                    assert!(!out.is_empty());
                    ours.call(|value| value.rest()).await.unwrap()
                }
            };
            out.extend(rest);
            (Some(out), Some(ours.into_inner().await))
        }
        Exit::Drop => {
            drop(ours);
            (None, None)
        }
    }
}

fn check_reads(data: &[u8], got: &[u8], out: Option<Vec<u8>>, rest_if_lossy: Option<Vec<u8>>) {
    match out {
        Some(out) => {
            let all = [got, &out].concat();
            let first = all.iter().zip(data).position(|(a, b)| a != b);
            assert!(
                all == data,
                "lost or reordered bytes: got {} + {} out of {}, first difference at {first:?}",
                got.len(),
                out.len(),
                data.len()
            );
        }
        None => {
            // Documented loss of bytes that cannot be given back: still nothing
            // reordered, and what is left is the source's tail.
            assert!(data.starts_with(got), "reordered bytes");
            if let Some(rest) = rest_if_lossy {
                assert!(data.ends_with(&rest), "reordered bytes");
                assert!(got.len() + rest.len() <= data.len());
            }
        }
    }
}

fn fault_config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fault_config())]

    #[test]
    fn faulty_reads_lose_nothing_through_every_exit(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        ops in proptest::collection::vec(read_op(), 0..12),
        kind in kind(),
        exit in exit(),
        capacity in capacity(),
        max in 1usize..800,
        fail_at in proptest::collection::vec(0usize..12, 0..3),
        case in any::<u64>(),
    ) {
        within_a_minute(move || match kind {
            Kind::Cursor => {
                support::rt().block_on(async {
                    let mut ours = wrap(capacity, Cursor::new(data.clone()));
                    let got = faulty_reads(&mut ours, &ops, None).await;
                    let exit = if matches!(exit, Exit::Drop) { Exit::IntoInner } else { exit };
                    let (out, _) = exit_with(ours, exit, true).await;
                    check_reads(&data, &got, out, None);
                });
            }
            Kind::File => {
                let path = std::env::temp_dir()
                    .join(format!("unblock-fault-{}-{case}", std::process::id()));
                std::fs::write(&path, &data).unwrap();
                let file = File::open(&path).unwrap();
                let mut twin = file.try_clone().unwrap();
                let rt = support::rt();
                let (got, out) = rt.block_on(async {
                    let mut ours = wrap(capacity, file);
                    let got = faulty_reads(&mut ours, &ops, None).await;
                    (got, exit_with(ours, exit, true).await.0)
                });
                drop(rt); // a drop's cleanup is done
                let out = out.unwrap_or_else(|| twin.rest());
                let _ = std::fs::remove_file(&path);
                check_reads(&data, &got, Some(out), None);
            }
            Kind::Source => {
                let shared = std::sync::Arc::new(std::sync::Mutex::new(Cursor::new(data.clone())));
                let started = Started::default();
                let source = Source { data: shared.clone(), max, fail_at, calls: 0, started: started.clone() };
                let rt = support::rt();
                let (got, out) = rt.block_on(async {
                    let mut ours = wrap(capacity, source);
                    let got = faulty_reads(&mut ours, &ops, Some(&started)).await;
                    (got, exit_with(ours, exit, false).await.0)
                });
                drop(rt);
                let mut rest = Vec::new();
                Read::read_to_end(&mut *shared.lock().unwrap(), &mut rest).unwrap();
                check_reads(&data, &got, out, Some(rest));
            }
        });
    }
}

#[derive(Clone, Debug)]
enum WriteOp {
    Write(Vec<u8>),
    /// A write polled once and dropped.
    DroppedWrite(Vec<u8>),
    Flush,
    /// A flush polled once and dropped.
    DroppedFlush,
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..500).prop_map(WriteOp::Write),
        2 => proptest::collection::vec(any::<u8>(), 0..500).prop_map(WriteOp::DroppedWrite),
        2 => Just(WriteOp::Flush),
        1 => Just(WriteOp::DroppedFlush),
    ]
}

/// A writer that records what it got (shared, to be read after a drop): at most `max`
/// bytes per `write`, an error (writing nothing) at the `write` calls in `fail_at`.
struct Sink {
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    max: usize,
    fail_at: Vec<usize>,
    calls: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let call = self.calls;
        self.calls += 1;
        if self.fail_at.contains(&call) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "injected"));
        }
        let n = buf.len().min(self.max);
        self.got.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(fault_config())]

    /// Writes accepted (a write's `Ok(n)`, awaited or not) and then flushed with `Ok`
    /// are all in the writer, in order; in the end the writer holds a prefix of what was
    /// accepted, at least what was flushed, whatever the exit.
    #[test]
    fn faulty_writes_flushed_are_in_the_writer_in_order(
        ops in proptest::collection::vec(write_op(), 0..14),
        exit in exit(),
        capacity in capacity(),
        max in 1usize..600,
        fail_at in proptest::collection::vec(0usize..16, 0..3),
    ) {
        within_a_minute(move || {
            let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = Sink { got: got.clone(), max, fail_at, calls: 0 };
            let mut accepted = Vec::new();
            let mut flushed = 0;
            let rt = support::rt();
            rt.block_on(async {
                let mut ours = wrap(capacity, sink);
                for op in &ops {
                    match op {
                        WriteOp::Write(bytes) => {
                            let mut rest = &bytes[..];
                            while !rest.is_empty() {
                                match ours.write(rest).await {
                                    Ok(n) => {
                                        accepted.extend_from_slice(&rest[..n]);
                                        rest = &rest[n..];
                                    }
                                    // The error of an earlier write; its bytes stay
                                    // buffered for the next flush.
                                    Err(_) => break,
                                }
                            }
                        }
                        WriteOp::DroppedWrite(bytes) => {
                            if let std::task::Poll::Ready(Ok(n)) = support::poll_once(ours.write(bytes)) {
                                accepted.extend_from_slice(&bytes[..n]);
                            }
                        }
                        WriteOp::Flush => {
                            if ours.flush().await.is_ok() {
                                assert_eq!(*got.lock().unwrap(), accepted, "a flush returned Ok");
                                flushed = accepted.len();
                            }
                        }
                        WriteOp::DroppedFlush => {
                            let _ = support::poll_once(ours.flush());
                        }
                    }
                }
                match exit {
                    Exit::IntoParts | Exit::IntoInner => drop(ours.into_inner().await),
                    Exit::GetMut => {
                        let _ = ours.get_mut().await;
                        // Another flush gets the rest in (the injected errors are finite).
                        for _ in 0..20 {
                            if ours.flush().await.is_ok() {
                                assert_eq!(*got.lock().unwrap(), accepted);
                                flushed = accepted.len();
                                break;
                            }
                        }
                    }
                    Exit::Call => {
                        let _ = ours.call(|sink| sink.calls).await;
                    }
                    Exit::Drop => drop(ours),
                }
            });
            drop(rt); // a drop's cleanup is done
            let got = got.lock().unwrap();
            assert!(accepted.starts_with(&got), "reordered or invented bytes");
            assert!(got.len() >= flushed, "flushed bytes lost");
        });
    }
}

#[derive(Clone, Debug)]
enum MixedOp {
    Plain(Op),
    /// A read polled once and dropped.
    DroppedRead(usize),
    /// A write polled once and dropped.
    DroppedWrite(Vec<u8>),
    /// A flush polled once and dropped.
    DroppedFlush,
    /// A seek (to a `SeekFrom::Start`) polled once and dropped.
    DroppedSeek(SeekFrom),
}

fn mixed_op() -> impl Strategy<Value = MixedOp> {
    prop_oneof![
        6 => op().prop_map(MixedOp::Plain),
        2 => (1usize..3000).prop_map(MixedOp::DroppedRead),
        2 => proptest::collection::vec(any::<u8>(), 1..700).prop_map(MixedOp::DroppedWrite),
        1 => Just(MixedOp::DroppedFlush),
        1 => (0u64..4000).prop_map(|p| MixedOp::DroppedSeek(SeekFrom::Start(p))),
    ]
}

/// As [`compare`], with futures polled once and dropped in between: what such a future
/// returned at its one poll is applied to the model too; a future left pending must
/// leave no trace (a read's read-ahead is given back, a write not accepted is not
/// written), except a seek, which may have started.
async fn compare_mixed<T>(ours: &mut Unblock<T>, std: &mut T, ops: &[MixedOp])
where
    T: Read + Write + Seek + Send + 'static,
{
    use std::task::Poll;
    for (i, op) in ops.iter().enumerate() {
        let what = format!("op {i}: {op:?}");
        match op {
            MixedOp::Plain(op) => compare(ours, std, std::slice::from_ref(op)).await,
            MixedOp::DroppedRead(n) => {
                let mut buf = vec![0; *n];
                if let Poll::Ready(got) = support::poll_once(ours.read(&mut buf)) {
                    let got = got.map(|k| buf[..k].to_vec());
                    let model = got.as_ref().map_or(0, Vec::len);
                    same(got, std_read_up_to(std, model), &what);
                }
            }
            MixedOp::DroppedWrite(bytes) => {
                if let Poll::Ready(Ok(n)) = support::poll_once(ours.write(bytes)) {
                    Write::write_all(std, &bytes[..n]).unwrap();
                }
            }
            MixedOp::DroppedFlush => {
                let _ = support::poll_once(ours.flush());
            }
            MixedOp::DroppedSeek(pos) => {
                if let Poll::Ready(moved) = support::poll_once(ours.seek(*pos)) {
                    same(moved, Seek::seek(std, *pos), &what);
                    continue;
                }
                // Left pending: tokio's `seek` first waits for any seek in progress, then
                // starts its own; whether it got that far at its one poll is up to the
                // threads. Either it did not move or it moved to `pos`, and nothing else.
                let now = ours
                    .call(|value| value.stream_position())
                    .await
                    .unwrap()
                    .unwrap();
                let SeekFrom::Start(target) = *pos else {
                    unreachable!()
                };
                if now == target {
                    Seek::seek(std, *pos).unwrap();
                }
                assert_eq!(
                    now,
                    Seek::stream_position(std).unwrap(),
                    "{what}: moved elsewhere"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(fault_config())]

    /// Seekable values (a `Cursor`, a `File`) with in-flight futures dropped after their
    /// first poll: same bytes, same positions, same contents as std, through `into_inner`
    /// or a drop.
    #[test]
    fn dropped_futures_on_seekable_values_match_std(
        initial in proptest::collection::vec(any::<u8>(), 0..4000),
        ops in proptest::collection::vec(mixed_op(), 1..30),
        capacity in capacity(),
        file in any::<bool>(),
        by_drop in any::<bool>(),
        case in any::<u64>(),
    ) {
        within_a_minute(move || {
            if !file {
                support::rt().block_on(async move {
                    let mut std = Cursor::new(initial.clone());
                    let mut ours = wrap(capacity, Cursor::new(initial));
                    compare_mixed(&mut ours, &mut std, &ops).await;
                    let inner = ours.into_inner().await;
                    assert_eq!(inner.position(), std.position());
                    assert_eq!(inner.into_inner(), std.into_inner());
                });
                return;
            }
            let dir = std::env::temp_dir();
            let pid = std::process::id();
            let ours_path = dir.join(format!("unblock-mixed-ours-{pid}-{case}"));
            let std_path = dir.join(format!("unblock-mixed-std-{pid}-{case}"));
            let open = |path: &std::path::Path| {
                std::fs::write(path, &initial).unwrap();
                File::options().read(true).write(true).open(path).unwrap()
            };
            let mut std = open(&std_path);
            let ours_file = open(&ours_path);
            let mut twin = ours_file.try_clone().unwrap(); // shares the offset
            let rt = support::rt();
            rt.block_on(async {
                let mut ours = wrap(capacity, ours_file);
                compare_mixed(&mut ours, &mut std, &ops).await;
                if by_drop {
                    drop(ours);
                } else {
                    drop(ours.into_inner().await);
                }
            });
            drop(rt); // a drop's cleanup is done
            assert_eq!(
                Seek::stream_position(&mut twin).unwrap(),
                Seek::stream_position(&mut std).unwrap(),
                "position"
            );
            let (a, b) = (std::fs::read(&ours_path).unwrap(), std::fs::read(&std_path).unwrap());
            let _ = std::fs::remove_file(&ours_path);
            let _ = std::fs::remove_file(&std_path);
            assert_eq!(a, b, "contents");
        });
    }
}
