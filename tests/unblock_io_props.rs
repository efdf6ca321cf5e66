//! Property tests: random sequences of read / write / seek / flush / `call` on an
//! `Unblock<T>` against the same sequence on the std value, on a `Cursor<Vec<u8>>`, on a
//! `File`, and on a reader that cannot seek: same bytes, same positions, same errors.

mod support;

use support::within_a_minute;

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::panic;

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn wrap<T: Send + 'static>(capacity: Option<usize>, value: T) -> Unblock<T> {
    match capacity {
        Some(capacity) => Unblock::with_capacity(capacity, value),
        None => Unblock::new(value),
    }
}

/// A reads that returns `Ok(0)` only at the end: reads until `n` bytes or the end, so
/// that short reads (allowed) compare equal to std's full ones.
async fn read_up_to<R: tokio::io::AsyncRead + Unpin>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
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

fn std_read_up_to<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; n];
    let mut filled = 0;
    while filled < n {
        let k = Read::read(r, &mut out[filled..])?;
        if k == 0 {
            break;
        }
        filled += k;
    }
    out.truncate(filled);
    Ok(out)
}

fn same<T: PartialEq + std::fmt::Debug>(ours: io::Result<T>, std: io::Result<T>, what: &str) {
    match (ours, std) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{what}: {a} vs {b}"),
        (a, b) => panic!("{what}: ours {a:?}, std {b:?}"),
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
            runtime().block_on(async move {
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
            runtime().block_on(async {
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
            runtime().block_on(async move {
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
