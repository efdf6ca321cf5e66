//! Reads of a `File` that the page cache can answer, on the caller's thread.
//!
//! A sequential read of a cached file costs one copy in the kernel; sending it to a
//! blocking thread adds a hand-off, a wake-up and a second copy, and on two cores the
//! reader and the consumer compete for the same cache. On Linux, `preadv2` with
//! `RWF_NOWAIT` reads only what is already in memory and returns `EAGAIN` instead of
//! waiting for the disk (io_uring tries buffered reads the same way before it hands them
//! to a worker), so `Unblock<File>` tries it first and sends the read to a blocking
//! thread only when the kernel would have to wait.

use std::fs::File;

/// Reads of at least this go straight into the caller's buffer; smaller ones fill a
/// whole chunk (256 KiB, or the capacity) that serves the reads after them, as
/// `std::io::BufReader` does. Measured (`read_4k_vs_blocking` in benches/io.rs, builds
/// run alternately): 4 KiB reads served from 64 KiB fills ran at 0.87–1.27× of smol's
/// `blocking::Unblock`, which reads ahead on a second thread; from 256 KiB fills, at
/// 1.04–1.54×, one `preadv2` for 64 reads.
pub(super) const DIRECT_CHUNK: usize = 64 * 1024;

/// What a read with `RWF_NOWAIT` gave.
pub(super) enum Cached {
    /// Bytes from the page cache; 0 at the end of the file.
    Read(usize),
    /// The bytes are not in memory (or the read failed): read on a blocking thread, which
    /// reports the error if there is one.
    Miss,
    /// The kernel or the file system cannot read without waiting: never try again.
    Unsupported,
}

/// True when a read with `RWF_NOWAIT` may still wait for the disk: on a file opened
/// with `O_DIRECT` it skips the page cache and reads the device (Linux 6.18 answered
/// such reads of an evicted file in 100–200 µs, from the disk), so it is never tried.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn bypasses_the_cache(file: &File) -> bool {
    use rustix::fs::{fcntl_getfl, OFlags};
    fcntl_getfl(file).map_or(true, |flags| flags.contains(OFlags::DIRECT))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn bypasses_the_cache(_file: &File) -> bool {
    true
}

/// One read at the file's current position that never waits for the disk (on a file
/// that does not [bypass the cache](bypasses_the_cache)).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn read_cached(file: &File, dst: &mut [u8]) -> Cached {
    use rustix::io::{preadv2, Errno, ReadWriteFlags};
    // `u64::MAX`: at the current position, which the read moves (as `read` does).
    match preadv2(
        file,
        &mut [std::io::IoSliceMut::new(dst)],
        u64::MAX,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => Cached::Read(n),
        // Before Linux 4.14 (`EINVAL`), or a file system without it (`EOPNOTSUPP`).
        Err(Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS) => Cached::Unsupported,
        Err(_) => Cached::Miss,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn read_cached(_file: &File, _dst: &mut [u8]) -> Cached {
    Cached::Unsupported
}

/// Whether an `Unblock<T>`'s reads try the page cache first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Direct {
    /// `T` is not a regular `File`, or the kernel cannot read without waiting, or the
    /// file was opened with `O_DIRECT`.
    Off,
    /// The file's flags are checked before the next read tries the cache: at first, and
    /// after `get_mut` or `call` handed the file to code that may have changed them.
    Check,
    /// Reads try the cache first, and nothing reads ahead.
    Try,
    /// The last try missed: read-ahead runs on a blocking thread, and the cache is tried
    /// again once the pipe runs dry.
    Ahead,
}

impl Direct {
    /// The file went to the caller's code (`get_mut`, `call`): check its flags again.
    pub(super) fn recheck(&mut self) {
        if *self != Direct::Off {
            *self = Direct::Check;
        }
    }
}
