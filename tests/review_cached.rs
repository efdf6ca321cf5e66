//! Review of `Unblock<File>`'s reads from the page cache (`preadv2` with `RWF_NOWAIT` on
//! the caller's thread): random sequences of small, large (>= 64 KiB), `read_buf`
//! (uninitialised spare capacity) and `AsyncBufRead` reads mixed with writes, seeks of
//! every kind, `call` and `get_mut`, against the same sequence on a `std::fs::File`, at
//! capacities from one byte to the default; then every way out (`into_inner`,
//! `into_parts`, drop inside and outside a runtime) must leave the file where std's is.
//! And the corners: write-only files, tmpfs, no runtime, appends and truncations by
//! another handle, a panic in `call`, an evicted file, drops on a current-thread runtime.
//!
//! And a bug this review found: a `File` with `O_DIRECT` (opened so, or set later through
//! `get_mut`) has no page cache to ask, and `preadv2(RWF_NOWAIT)` on it read the device
//! synchronously on the caller's thread; such a file is now always read on a blocking
//! thread (its two tests failed before the fix).

#![cfg(any(target_os = "linux", target_os = "android"))]

mod support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::task::Poll;

use async_bridge::Unblock;
use proptest::prelude::*;
use support::{
    hold_blocking_pool, one_blocking_thread, read_up_to, rt, same, std_read_up_to, within_a_minute,
    TempFile as Temp,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

impl Temp {
    /// A file under `dir`, deleted on drop.
    fn in_dir(dir: &Path, name: &str, data: &[u8]) -> Self {
        Temp::new(dir, "review-cached", name, data)
    }

    fn with(name: &str, data: &[u8]) -> Self {
        Self::in_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), name, data)
    }

    fn rw(&self) -> File {
        File::options()
            .read(true)
            .write(true)
            .open(&self.0)
            .unwrap()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `read` until `n` bytes or the end, into an initialised buffer.
    Read(usize),
    /// One `read_buf` into a `Vec` with `n` bytes of uninitialised spare capacity.
    ReadBuf(usize),
    /// `fill_buf`, then `consume` of up to `n` bytes of it.
    FillConsume(usize),
    Write(Vec<u8>),
    Seek(SeekFrom),
    Flush,
    /// The position as a `call` closure sees it.
    Position,
    /// The position as `get_mut` sees it.
    GetMut,
    ZeroRead,
}

/// Sizes scaled to the capacity: a one-byte capacity is one hop per byte.
fn op(big: bool) -> impl Strategy<Value = Op> {
    let (large, file) = if big {
        (300_000usize, 400_000i64)
    } else {
        (3000, 5000)
    };
    prop_oneof![
        3 => (0usize..2000).prop_map(Op::Read),
        2 => (0usize..large).prop_map(Op::Read),
        2 => (0usize..large).prop_map(Op::ReadBuf),
        3 => (0usize..large).prop_map(Op::FillConsume),
        2 => proptest::collection::vec(any::<u8>(), 0..700).prop_map(Op::Write),
        1 => (0u64..file as u64).prop_map(|p| Op::Seek(SeekFrom::Start(p))),
        1 => (-file..file).prop_map(|p| Op::Seek(SeekFrom::Current(p))),
        1 => (-file..200).prop_map(|p| Op::Seek(SeekFrom::End(p))),
        1 => Just(Op::Flush),
        1 => Just(Op::Position),
        1 => Just(Op::GetMut),
        1 => Just(Op::ZeroRead),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Exit {
    IntoInner,
    IntoParts,
    DropInside,
    DropOutside,
}

fn exit() -> impl Strategy<Value = Exit> {
    prop_oneof![
        Just(Exit::IntoInner),
        Just(Exit::IntoParts),
        Just(Exit::DropInside),
        Just(Exit::DropOutside),
    ]
}

fn wrap(capacity: Option<usize>, file: File) -> Unblock<File> {
    match capacity {
        Some(capacity) => Unblock::with_capacity(capacity, file),
        None => Unblock::new(file),
    }
}

async fn compare(ours: &mut Unblock<File>, std: &mut File, ops: &[Op]) {
    for (i, op) in ops.iter().enumerate() {
        let what = format!("op {i}: {op:?}");
        match op {
            Op::Read(n) => same(read_up_to(ours, *n).await, std_read_up_to(std, *n), &what),
            Op::ReadBuf(n) => {
                let mut buf = Vec::with_capacity(*n);
                let got = ours.read_buf(&mut buf).await.map(|k| {
                    assert_eq!(k, buf.len(), "{what}: read_buf's count");
                    buf
                });
                // One read may be short: std reads as many, then must be at the same place.
                let want = match &got {
                    Ok(bytes) => std_read_up_to(std, bytes.len()),
                    Err(_) => std_read_up_to(std, (*n).max(1)),
                };
                same(got, want, &what);
            }
            Op::FillConsume(n) => {
                let got = ours.fill_buf().await.map(|buf| buf.to_vec());
                match got {
                    Ok(buf) => {
                        let here = std.stream_position().unwrap();
                        let end = std.metadata().unwrap().len();
                        assert_eq!(
                            buf.is_empty(),
                            here >= end,
                            "{what}: fill_buf empty only at the end (std at {here} of {end})"
                        );
                        let k = (*n).min(buf.len());
                        let want = std_read_up_to(std, k).unwrap();
                        assert_eq!(&buf[..k], &want[..], "{what}: fill_buf's bytes");
                        ours.consume(k);
                    }
                    Err(err) => {
                        let want = std_read_up_to(std, 1);
                        same(Err::<Vec<u8>, _>(err), want, &what);
                    }
                }
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
            Op::GetMut => same(
                ours.get_mut().await.stream_position(),
                Seek::stream_position(std),
                &what,
            ),
            Op::ZeroRead => same(ours.read(&mut []).await, Read::read(std, &mut []), &what),
        }
    }
}

fn capacity() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        Just(Some(1)),
        Just(Some(7)),
        Just(Some(100)),
        Just(Some(4096)),
        Just(Some(65_535)),
        Just(Some(65_536)),
        Just(Some(65_537)),
        Just(Some(100_000)),
        Just(Some(300_000)),
        Just(None),
    ]
}

fn case() -> impl Strategy<Value = (Option<usize>, usize, Vec<Op>)> {
    capacity().prop_flat_map(|capacity| {
        let big = capacity.is_none_or(|c| c >= 4096);
        let len = if big { 0usize..400_000 } else { 0..5000 };
        (
            Just(capacity),
            len,
            proptest::collection::vec(op(big), 1..20),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn cached_file_matches_std(
        (capacity, len, ops) in case(),
        exit in exit(),
        case in any::<u64>(),
    ) {
        within_a_minute(move || {
            let initial = pattern(len, case as u8);
            let ours_temp = Temp::with(&format!("ours-{case}"), &initial);
            let std_temp = Temp::with(&format!("std-{case}"), &initial);
            let mut std = std_temp.rw();
            let ours_file = ours_temp.rw();
            // Shares the file description, so its position.
            let mut twin = ours_file.try_clone().unwrap();
            let rt = rt();
            let left = rt.block_on(async {
                let mut ours = wrap(capacity, ours_file);
                compare(&mut ours, &mut std, &ops).await;
                match exit {
                    Exit::IntoInner => {
                        let mut file = ours.into_inner().await;
                        assert_eq!(
                            file.stream_position().unwrap(),
                            std.stream_position().unwrap(),
                            "into_inner's position"
                        );
                        None
                    }
                    Exit::IntoParts => {
                        let (mut file, unread) = ours.into_parts().await;
                        assert!(unread.is_empty(), "a File is given back, not handed out");
                        assert_eq!(
                            file.stream_position().unwrap(),
                            std.stream_position().unwrap(),
                            "into_parts's position"
                        );
                        None
                    }
                    Exit::DropInside => {
                        // Writes must reach the file on drop: std's are already there.
                        drop(ours);
                        None
                    }
                    Exit::DropOutside => Some(ours),
                }
            });
            drop(left);
            // Waits for the blocking threads (a cleanup queued on the pool runs or is
            // dropped, which does its work too).
            drop(rt);
            assert_eq!(
                twin.stream_position().unwrap(),
                std.stream_position().unwrap(),
                "the file's position after {exit:?}"
            );
            let (a, b) = (std::fs::read(&ours_temp.0).unwrap(), std::fs::read(&std_temp.0).unwrap());
            assert!(a == b, "the files' contents differ after {exit:?} ({} vs {} bytes)", a.len(), b.len());
        });
    }
}

/// Reads of `sizes` (small and large, through `read` and `fill_buf`) on both, with a seek
/// of each kind between them, on a file of `len` bytes.
async fn mixed_reads(ours: &mut Unblock<File>, std: &mut File) {
    let ops = [
        Op::Read(10),
        Op::FillConsume(100),
        Op::Read(70_000),
        Op::ReadBuf(100_000),
        Op::Seek(SeekFrom::Current(-5000)),
        Op::Read(3),
        Op::Position,
        Op::Seek(SeekFrom::End(-70_000)),
        Op::FillConsume(1),
        Op::Read(300_000),
        Op::Read(1),
        Op::FillConsume(10),
        Op::Seek(SeekFrom::Start(1)),
        Op::GetMut,
        Op::ReadBuf(10),
        Op::Read(600_000),
        Op::Read(10),
        Op::ReadBuf(100),
        Op::FillConsume(10),
    ];
    compare(ours, std, &ops).await;
}

#[test]
fn a_file_on_tmpfs_reads_as_std_does() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    within_a_minute(|| {
        let data = pattern(500_000, 3);
        let ours_temp = Temp::in_dir(shm, "tmpfs-ours", &data);
        let std_temp = Temp::in_dir(shm, "tmpfs-std", &data);
        let mut std = std_temp.rw();
        rt().block_on(async {
            let mut ours = Unblock::new(ours_temp.rw());
            mixed_reads(&mut ours, &mut std).await;
            let mut file = ours.into_inner().await;
            assert_eq!(
                file.stream_position().unwrap(),
                std.stream_position().unwrap()
            );
        });
    });
}

#[test]
fn mixed_reads_on_a_cached_file_match_std() {
    within_a_minute(|| {
        for capacity in [Some(1000), Some(65_536), Some(100_000), None] {
            let data = pattern(500_000, 5);
            let ours_temp = Temp::with("mixed-ours", &data);
            let std_temp = Temp::with("mixed-std", &data);
            let mut std = std_temp.rw();
            rt().block_on(async {
                let mut ours = wrap(capacity, ours_temp.rw());
                mixed_reads(&mut ours, &mut std).await;
                let mut file = ours.into_inner().await;
                assert_eq!(
                    file.stream_position().unwrap(),
                    std.stream_position().unwrap(),
                    "capacity {capacity:?}"
                );
            });
        }
    });
}

#[test]
fn a_write_only_file_fails_its_reads_as_std_does() {
    within_a_minute(|| {
        let temp = Temp::with("write-only", &pattern(1000, 0));
        let open = || File::options().write(true).open(&temp.0).unwrap();
        let want = Read::read(&mut open(), &mut [0; 10]).unwrap_err();
        rt().block_on(async {
            let mut ours = Unblock::new(open());
            for n in [10, 100_000] {
                let err = ours.read(&mut vec![0; n]).await.unwrap_err();
                assert_eq!(err.raw_os_error(), want.raw_os_error(), "{err} vs {want}");
            }
            let err = ours.fill_buf().await.unwrap_err();
            assert_eq!(err.raw_os_error(), want.raw_os_error(), "{err} vs {want}");
            // The file still writes.
            ours.write_all(b"abc").await.unwrap();
            ours.flush().await.unwrap();
        });
        assert_eq!(&std::fs::read(&temp.0).unwrap()[..3], b"abc");
    });
}

#[test]
fn reads_outside_a_runtime_say_so() {
    let temp = Temp::with("no-runtime", &pattern(1000, 0));
    let mut ours = Unblock::new(temp.rw());
    for n in [10, 100_000] {
        let err = support::block_on_plain(ours.read(&mut vec![0; n])).unwrap_err();
        assert!(
            err.to_string().contains("outside a tokio runtime"),
            "read of {n}: {err}"
        );
    }
    let err = support::block_on_plain(ours.fill_buf()).unwrap_err();
    assert!(err.to_string().contains("outside a tokio runtime"), "{err}");
}

#[test]
fn a_small_read_then_drop_outside_a_runtime_leaves_the_file_where_it_was_read() {
    within_a_minute(|| {
        let temp = Temp::with("drop-outside", &pattern(500_000, 0));
        let file = temp.rw();
        let mut twin = file.try_clone().unwrap();
        let ours = rt().block_on(async {
            let mut ours = Unblock::new(file);
            let mut buf = [0; 10];
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf[..], pattern(10, 0)[..]);
            ours
        });
        drop(ours);
        assert_eq!(twin.stream_position().unwrap(), 10);
    });
}

#[test]
fn a_small_read_then_drop_inside_a_runtime_leaves_the_file_where_it_was_read() {
    within_a_minute(|| {
        let temp = Temp::with("drop-inside", &pattern(500_000, 0));
        let file = temp.rw();
        let mut twin = file.try_clone().unwrap();
        let rt = rt();
        rt.block_on(async {
            let mut ours = Unblock::new(file);
            assert_eq!(ours.fill_buf().await.unwrap().len(), 256 * 1024);
            ours.consume(7);
            drop(ours);
        });
        // Waits for the blocking pool, where the cleanup seeks back.
        drop(rt);
        assert_eq!(twin.stream_position().unwrap(), 7);
    });
}

#[test]
fn bytes_appended_or_cut_by_another_handle_are_seen_as_std_sees_them() {
    within_a_minute(|| {
        let temp = Temp::with("grow", &pattern(1000, 0));
        let mut other = temp.rw();
        let mut std = temp.rw();
        rt().block_on(async {
            let mut ours = Unblock::new(temp.rw());
            // To the end, twice.
            for _ in 0..2 {
                let mut all = Vec::new();
                assert_eq!(ours.read_to_end(&mut all).await.unwrap(), all.len());
                std_read_up_to(&mut std, 1 << 20).unwrap();
            }
            assert_eq!(ours.read(&mut [0; 10]).await.unwrap(), 0);
            assert!(ours.fill_buf().await.unwrap().is_empty());
            other.seek(SeekFrom::End(0)).unwrap();
            other.write_all(b"more").unwrap();
            let mut got = [0; 10];
            let n = ours.read(&mut got).await.unwrap();
            assert_eq!(&got[..n], b"more", "appended after the end");
            assert_eq!(ours.read(&mut got).await.unwrap(), 0);
            other.set_len(500).unwrap();
            assert_eq!(ours.read(&mut got).await.unwrap(), 0, "past a cut");
            ours.seek(SeekFrom::Start(490)).await.unwrap();
            let mut tail = Vec::new();
            ours.read_to_end(&mut tail).await.unwrap();
            assert_eq!(tail, pattern(1000, 0)[490..500]);
        });
    });
}

#[test]
fn a_panic_in_call_leaves_reads_in_place() {
    within_a_minute(|| {
        let data = pattern(400_000, 1);
        let temp = Temp::with("panic", &data);
        rt().block_on(async {
            let mut ours = Unblock::new(temp.rw());
            let mut buf = vec![0; 100];
            ours.read_exact(&mut buf).await.unwrap();
            let panicked = {
                let call = ours.call(|_file| -> () { panic!("in the closure") });
                futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(call)).await
            };
            assert!(panicked.is_err());
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf[..], data[100..200]);
            let mut big = vec![0; 100_000];
            ours.read_exact(&mut big).await.unwrap();
            assert_eq!(big[..], data[200..100_200]);
            assert_eq!(ours.stream_position().await.unwrap(), 100_200);
        });
    });
}

#[test]
fn an_append_only_file_reads_and_writes_as_std_does() {
    within_a_minute(|| {
        let data = pattern(300_000, 2);
        let ours_temp = Temp::with("append-ours", &data);
        let std_temp = Temp::with("append-std", &data);
        let open = |t: &Temp| File::options().read(true).append(true).open(&t.0).unwrap();
        let mut std = open(&std_temp);
        rt().block_on(async {
            let mut ours = Unblock::new(open(&ours_temp));
            let ops = [
                Op::Read(10),
                Op::Write(b"tail".to_vec()),
                Op::Read(10),
                Op::Position,
                Op::Seek(SeekFrom::Start(5)),
                Op::FillConsume(3),
                Op::Write(b"more".to_vec()),
                Op::Read(100),
                Op::Seek(SeekFrom::End(-8)),
                Op::Read(100),
                Op::Read(100_000),
            ];
            compare(&mut ours, &mut std, &ops).await;
            let mut file = ours.into_inner().await;
            assert_eq!(
                file.stream_position().unwrap(),
                std.stream_position().unwrap()
            );
        });
        assert_eq!(
            std::fs::read(&ours_temp.0).unwrap(),
            std::fs::read(&std_temp.0).unwrap()
        );
    });
}

#[test]
fn a_failed_write_surfaces_on_the_next_read() {
    within_a_minute(|| {
        let temp = Temp::with("read-only", &pattern(1000, 0));
        rt().block_on(async {
            let mut ours = Unblock::new(File::open(&temp.0).unwrap());
            let mut buf = [0; 10];
            ours.read_exact(&mut buf).await.unwrap();
            // Buffered: the error comes later.
            ours.write_all(b"x").await.unwrap();
            let got = ours.read(&mut buf).await;
            assert!(got.is_err(), "a read after a failed write: {got:?}");
            let got = ours.read(&mut vec![0; 100_000]).await;
            assert!(
                got.is_err() || ours.flush().await.is_err(),
                "the error is lost"
            );
        });
    });
}

#[test]
fn a_read_started_seek_then_poll_complete_reports_the_seek() {
    within_a_minute(|| {
        let data = pattern(400_000, 4);
        let temp = Temp::with("start-seek", &data);
        rt().block_on(async {
            use tokio::io::AsyncSeek;
            let mut ours = Unblock::new(temp.rw());
            let mut buf = [0; 10];
            ours.read_exact(&mut buf).await.unwrap();
            std::pin::Pin::new(&mut ours)
                .start_seek(SeekFrom::Current(1000))
                .unwrap();
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf[..], data[1010..1020]);
            let pos = std::future::poll_fn(|cx| std::pin::Pin::new(&mut ours).poll_complete(cx))
                .await
                .unwrap();
            assert_eq!(pos, 1010, "the seek's own result");
            assert_eq!(ours.stream_position().await.unwrap(), 1020);
        });
    });
}

/// `RWF_NOWAIT` promises no wait for the page cache, locks or block allocation, but on a
/// file opened with `O_DIRECT` there is no page cache: ext4 and xfs submit the read to
/// the device and the syscall waits for it. `Unblock<File>` must not read such a file on
/// the caller's thread ("never waits for the disk").
#[test]
fn a_file_opened_with_o_direct_is_not_read_from_the_disk_on_the_callers_thread() {
    use std::os::unix::fs::OpenOptionsExt;
    within_a_minute(|| {
        let data = pattern(1 << 20, 9);
        let temp = Temp::with("o-direct", &data);
        let open_direct = || {
            File::options()
                .read(true)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                .open(&temp.0)
        };
        let Ok(file) = open_direct() else {
            eprintln!("O_DIRECT is not supported here: nothing to check");
            return;
        };
        // Out of memory: only the device has the bytes.
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        // An aligned buffer, as O_DIRECT requires (a read into any other fails).
        let mut space = vec![0u8; 64 * 1024 + 4096];
        let skew = (4096 - space.as_ptr() as usize % 4096) % 4096;
        let buf = &mut space[skew..skew + 64 * 1024];
        let rt = one_blocking_thread();
        let held = hold_blocking_pool(&rt);
        let first = rt.block_on(async {
            let mut ours = Unblock::new(file);
            let polled = support::poll_once(ours.read(buf));
            (polled.map(|n| n.map_err(|err| err.to_string())), ours)
        });
        let (polled, ours) = first;
        drop(held);
        drop(ours);
        drop(rt);
        assert!(
            polled.is_pending(),
            "a 64 KiB read of an O_DIRECT file (no page cache: the bytes are on the device \
             only) completed on the caller's thread while the only blocking thread was \
             held: {polled:?}. preadv2(RWF_NOWAIT) on an O_DIRECT descriptor submits the \
             read to the device and waits for it; it does not answer EAGAIN. Expected \
             Pending (the read sent to a blocking thread)",
        );
    });
}

/// As above, with `O_DIRECT` set after construction (`fcntl(F_SETFL)` through `get_mut`,
/// which Linux allows): a check made once when the `Unblock` is built is not enough.
#[test]
fn o_direct_set_through_get_mut_is_not_read_from_the_disk_on_the_callers_thread() {
    within_a_minute(|| {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        let data = pattern(1 << 20, 10);
        let temp = Temp::with("o-direct-later", &data);
        let mut space = vec![0u8; 64 * 1024 + 4096];
        let skew = (4096 - space.as_ptr() as usize % 4096) % 4096;
        let buf = &mut space[skew..skew + 64 * 1024];
        let rt = one_blocking_thread();
        let mut ours = rt.block_on(async {
            let mut ours = Unblock::new(temp.rw());
            let mut first = vec![0; 100];
            ours.read_exact(&mut first).await.unwrap();
            assert_eq!(first[..], data[..100]);
            // Aligned, as O_DIRECT requires of the position too.
            ours.seek(SeekFrom::Start(64 * 1024)).await.unwrap();
            ours
        });
        let set = rt.block_on(async {
            let file = ours.get_mut().await;
            let flags = fcntl_getfl(&*file).unwrap();
            fcntl_setfl(&*file, flags | OFlags::DIRECT).is_ok()
                && fcntl_getfl(&*file).unwrap().contains(OFlags::DIRECT)
        });
        if !set {
            eprintln!("O_DIRECT cannot be set here: nothing to check");
            return;
        }
        {
            let file = File::open(&temp.0).unwrap();
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        }
        let held = hold_blocking_pool(&rt);
        let polled = rt.block_on(async {
            support::poll_once(ours.read(buf)).map(|n| n.map_err(|err| err.to_string()))
        });
        drop(held);
        drop(ours);
        drop(rt);
        assert!(
            polled.is_pending(),
            "with O_DIRECT set through get_mut, a 64 KiB read completed on the caller's \
             thread while the only blocking thread was held: {polled:?} (read from the \
             device, synchronously). Expected Pending (the read sent to a blocking thread)"
        );
    });
}

/// A file out of memory sends its reads to a blocking thread (mode `Ahead`), and one
/// dropped mid-way leaves its read-ahead in the pipe: positions and bytes stay std's,
/// then the cache is tried again.
#[test]
fn an_evicted_file_with_a_dropped_read_matches_std() {
    within_a_minute(|| {
        let data = pattern(3 << 20, 11);
        let ours_temp = Temp::with("evicted-ours", &data);
        let std_temp = Temp::with("evicted-std", &data);
        let mut std = std_temp.rw();
        let file = ours_temp.rw();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        rt().block_on(async {
            let mut ours = Unblock::new(file);
            // Polled once, then dropped (as in a `select!`): whatever it read stays
            // buffered, and the next read starts where std's does. (Eviction is a hint:
            // a page the kernel kept is read at the first poll, and that read is done.)
            let mut first = vec![0; 10];
            if let Poll::Ready(read) = support::poll_once(ours.read(&mut first)) {
                let n = read.unwrap();
                assert_eq!(first[..n], data[..n]);
                std.read_exact(&mut first[..n]).unwrap();
            }
            let ops = [
                Op::Read(10),
                Op::FillConsume(1000),
                Op::Read(100_000),
                Op::Position,
                Op::Seek(SeekFrom::Current(-50_000)),
                Op::ReadBuf(70_000),
                Op::Seek(SeekFrom::End(-100)),
                Op::Read(1000),
                Op::Read(10),
                Op::FillConsume(10),
            ];
            compare(&mut ours, &mut std, &ops).await;
            let mut file = ours.into_inner().await;
            assert_eq!(
                file.stream_position().unwrap(),
                std.stream_position().unwrap()
            );
        });
    });
}

/// The cleanup of a drop on a current-thread runtime is queued on its blocking pool; a
/// runtime dropped before it ran still leaves the file where the reads left it.
#[test]
fn a_small_read_then_drop_on_a_current_thread_runtime_dropped_at_once() {
    within_a_minute(|| {
        let temp = Temp::with("drop-current", &pattern(500_000, 0));
        let file = temp.rw();
        let mut twin = file.try_clone().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut ours = Unblock::new(file);
            let mut buf = vec![0; 100_000];
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(
                ours.fill_buf().await.unwrap()[0],
                pattern(100_001, 0)[100_000]
            );
            ours.consume(3);
            drop(ours);
        });
        drop(rt);
        assert_eq!(twin.stream_position().unwrap(), 100_003);
    });
}
