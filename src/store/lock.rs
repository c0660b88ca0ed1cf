//! The per-upload exclusive lock: an open-file-description record lock on a lock file in the
//! upload's temp directory, the kind of lock network filesystems arbitrate between hosts.
//!
//! Why a record lock on a regular file opened read-write: NFSv4, CephFS, GlusterFS and JuiceFS
//! forward `fcntl` locks on regular files to their server, which arbitrates between every
//! client. A `flock` on a directory (what earlier builds took) is not: on JuiceFS and GlusterFS
//! one held through one mount is granted through another (tests/dfs.rs shows it), and Linux
//! NFS clients emulate `flock` as a write record lock, which a directory opened read-only
//! cannot take.
//!
//! Why open file description locks (`F_OFD_SETLKW`) and not classic `F_SETLKW`: classic record
//! locks belong to the process, so two threads of one FastCGI worker would both be granted
//! the lock, and closing any descriptor of the file would drop it. OFD locks belong to the open
//! file description, like `flock`: each holder opens the file itself and two holders in one
//! process exclude each other. The kernel (or the filesystem's server, when a client host
//! dies) drops the lock when the holder dies.
//!
//! The lock is the record lock, never the file's existence: the file is opened with `O_CREAT`
//! and without `O_EXCL`, so a lock file left behind (by a crash, or simply kept, as it is until
//! cleanup removes the upload's folder) never blocks anyone.
//!
//! Byte ranges: the upload lock is byte 0 of the lock file. A request writing chunk `n`
//! straight into the staging file (direct.rs) holds byte `n` for as long as its body streams
//! in, without the upload lock, so that the upload's other chunks are not held back by it;
//! whoever holds the upload lock asks who holds a byte from 1 on ([`UploadLock::direct_writer`])
//! and leaves the staging file alone meanwhile. [`UploadLock::try_acquire`] takes every byte:
//! `cleanup` never takes an upload that a chunk is being written into. Builds before this one
//! locked the whole file, so one of them waits for both kinds.
//!
//! Rolling upgrades: processes of earlier builds lock with `flock` on the directory only. So
//! that one of them and one of this build never assemble the same upload at once while both
//! run (on one host, where the earlier builds were correct), this build takes that `flock`
//! too, first, then the record lock. Where a directory `flock` cannot be taken (an NFS mount
//! refuses it) the earlier builds could not have run, and it is skipped.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::fsutil;

/// How often taking the lock is tried when the filesystem reports a transient error.
const LOCK_ATTEMPTS: u32 = 10;

/// The lock file of an upload's temp directory. A leading dot: never a part, a chunk being
/// received, a record or a geometry file (see layout.rs).
pub const LOCK_FILE: &str = ".resumable-lock";

pub struct UploadLock {
    file: File,
    /// The directory `flock` earlier builds take; `None` where the directory cannot be locked.
    legacy: Option<File>,
}

impl UploadLock {
    /// Blocks until this open file description holds the upload's lock.
    pub fn acquire(dir: &OwnedFd) -> io::Result<UploadLock> {
        let legacy = legacy_dir_lock(dir, true)?.flatten();
        // A lock file another host is creating this instant can be refused for a moment.
        let file = fsutil::retry_transient(LOCK_ATTEMPTS, || {
            let file = open_lock_file(dir)?;
            record_lock(&file, UPLOAD_BYTE, true)?;
            Ok(file)
        })?;
        Ok(UploadLock { file, legacy })
    }

    /// The lock if nobody holds it now and no chunk is being written into the staging file,
    /// else `None` (the upload is busy).
    pub fn try_acquire(dir: &OwnedFd) -> io::Result<Option<UploadLock>> {
        let Some(legacy) = legacy_dir_lock(dir, false)? else {
            return Ok(None);
        };
        let file = open_lock_file(dir)?;
        if !record_lock(&file, EVERY_BYTE, false)? {
            return Ok(None);
        }
        Ok(Some(UploadLock { file, legacy }))
    }

    /// The number of the chunk a request is writing straight into the staging file now, if
    /// any. Asked under the upload lock, which a writer takes to begin and to end.
    pub fn direct_writer(&self) -> io::Result<Option<u64>> {
        let found = record_fcntl(&self.file, libc::F_WRLCK, libc::F_OFD_GETLK, (1, 0))?;
        Ok((found.l_type != libc::F_UNLCK as libc::c_short).then_some(found.l_start as u64))
    }

    /// Waits until no request writes chunk `number` straight into the staging file. Called
    /// without the upload lock, which that request needs to finish.
    pub fn wait_for_direct_writer(dir: &OwnedFd, number: u64) -> io::Result<()> {
        let file = open_lock_file(dir)?;
        record_lock(&file, chunk_byte(number)?, true)?;
        set_record_lock(&file, libc::F_UNLCK, libc::F_OFD_SETLK, chunk_byte(number)?)
    }
}

/// A request's claim to write chunk `number` straight into the staging file: byte `number` of
/// the lock file, on its own open file description, released when dropped (or by the kernel,
/// or the filesystem's server, when its holder dies).
pub struct DirectClaim {
    file: File,
    range: (i64, i64),
}

impl DirectClaim {
    /// The claim, unless another request holds it. Taken under the upload lock, after
    /// [`UploadLock::direct_writer`] found nobody.
    pub fn try_take(dir: &OwnedFd, number: u64) -> io::Result<Option<DirectClaim>> {
        let range = chunk_byte(number)?;
        let file = open_lock_file(dir)?;
        if !record_lock(&file, range, false)? {
            return Ok(None);
        }
        Ok(Some(DirectClaim { file, range }))
    }
}

impl Drop for DirectClaim {
    fn drop(&mut self) {
        let _ = set_record_lock(&self.file, libc::F_UNLCK, libc::F_OFD_SETLK, self.range);
    }
}

/// Byte ranges of the lock file, as start and length (0: to the end, however it grows).
const UPLOAD_BYTE: (i64, i64) = (0, 1);
const EVERY_BYTE: (i64, i64) = (0, 0);

fn chunk_byte(number: u64) -> io::Result<(i64, i64)> {
    match i64::try_from(number) {
        Ok(start) if start >= 1 => Ok((start, 1)),
        _ => Err(io::Error::other(format!("no lock byte for chunk {number}"))),
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        // Closing the last descriptor of a description releases its locks too, but a thread
        // that forks (a hook, a CGI test) gives the child a descriptor of each until it execs:
        // unlock both explicitly, in the reverse order of taking them.
        let _ = set_record_lock(&self.file, libc::F_UNLCK, libc::F_OFD_SETLK, EVERY_BYTE);
        if let Some(legacy) = &self.legacy {
            let _ = legacy.unlock();
        }
    }
}

/// Opens (creating when absent) the lock file, read-write: a write lock needs a descriptor
/// open for writing, on NFS as everywhere. Each call is a new open file description.
fn open_lock_file(dir: &OwnedFd) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        LOCK_FILE,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    Ok(File::from(fd))
}

/// Takes the exclusive record lock over `range`: waiting for it when `wait`, else answering
/// `false` when someone else holds it.
fn record_lock(file: &File, range: (i64, i64), wait: bool) -> io::Result<bool> {
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        match set_record_lock(file, libc::F_WRLCK, command, range) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !wait && is_contended(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

fn set_record_lock(
    file: &File,
    kind: libc::c_int,
    command: libc::c_int,
    range: (i64, i64),
) -> io::Result<()> {
    record_fcntl(file, kind, command, range).map(drop)
}

/// One record-lock `fcntl` of `kind` over `range`; answers the request as the kernel left it
/// (for `F_OFD_GETLK`: the conflicting lock, or `F_UNLCK`).
fn record_fcntl(
    file: &File,
    kind: libc::c_int,
    command: libc::c_int,
    (start, len): (i64, i64),
) -> io::Result<libc::flock> {
    // SAFETY: an all-zero `flock` is valid (an OFD lock requires l_pid to be 0).
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    request.l_start = start;
    request.l_len = len;
    // SAFETY: the descriptor is open for the duration of the call and `request` outlives it.
    if unsafe { libc::fcntl(file.as_raw_fd(), command, &mut request) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(request)
}

/// A lock held by someone else (fcntl says EAGAIN or EACCES, flock EWOULDBLOCK).
fn is_contended(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EACCES)
    )
}

/// The `flock` on the directory that earlier builds take. `Ok(None)`: busy (only when not
/// waiting); `Ok(Some(None))`: this filesystem cannot lock a directory, so no earlier build
/// can be running on it.
fn legacy_dir_lock(dir: &OwnedFd, wait: bool) -> io::Result<Option<Option<File>>> {
    // Reopened: a dup would share the open file description, and two holders in one process
    // would then not exclude each other.
    let own = File::from(rustix::fs::openat(
        dir.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    let taken = if wait {
        own.lock()
    } else {
        match own.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    };
    match taken {
        Ok(()) => Ok(Some(Some(own))),
        Err(e) if cannot_lock_directories(&e) => Ok(Some(None)),
        Err(e) => Err(e),
    }
}

/// EBADF: NFS emulates flock as a write record lock, impossible on a read-only descriptor;
/// the others: no flock support at all.
fn cannot_lock_directories(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fsutil::open_root;

    #[test]
    fn two_holders_in_one_process_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        let held = UploadLock::acquire(&fd).unwrap();
        assert!(UploadLock::try_acquire(&fd).unwrap().is_none());
        // the record lock alone excludes a second description of this process
        let other = open_lock_file(&fd).unwrap();
        assert!(!record_lock(&other, UPLOAD_BYTE, false).unwrap());
        drop(held);
        assert!(record_lock(&other, UPLOAD_BYTE, false).unwrap());
        drop(other);
        assert!(UploadLock::try_acquire(&fd).unwrap().is_some());
    }

    #[test]
    fn a_waiting_thread_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        let held = UploadLock::acquire(&fd).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let lock = UploadLock::acquire(&fd).unwrap();
                tx.send(()).unwrap();
                drop(lock);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(rx.try_recv().is_err(), "granted while held");
            drop(held);
            rx.recv().unwrap();
        });
    }

    #[test]
    fn an_earlier_build_holding_the_directory_flock_excludes_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        let old_build = File::open(dir.path()).unwrap();
        old_build.lock().unwrap();
        assert!(UploadLock::try_acquire(&fd).unwrap().is_none());
        old_build.unlock().unwrap();
        let held = UploadLock::acquire(&fd).unwrap();
        assert!(old_build.try_lock().is_err(), "this build holds it too");
        drop(held);
        assert!(old_build.try_lock().is_ok());
    }

    #[test]
    fn a_chunk_written_straight_in_is_seen_under_the_lock_and_keeps_cleanup_away() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        let claim = DirectClaim::try_take(&fd, 7).unwrap().unwrap();
        assert!(DirectClaim::try_take(&fd, 7).unwrap().is_none());
        let held = UploadLock::acquire(&fd).unwrap();
        assert_eq!(held.direct_writer().unwrap(), Some(7));
        drop(held);
        assert!(UploadLock::try_acquire(&fd).unwrap().is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                UploadLock::wait_for_direct_writer(&fd, 7).unwrap();
                tx.send(()).unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                rx.try_recv().is_err(),
                "the wait ended while chunk 7 was written"
            );
            drop(claim);
            rx.recv().unwrap();
        });
        let held = UploadLock::try_acquire(&fd).unwrap().unwrap();
        assert_eq!(held.direct_writer().unwrap(), None);
    }

    #[test]
    fn a_lock_file_left_behind_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), b"").unwrap();
        let fd = open_root(dir.path()).unwrap();
        assert!(UploadLock::try_acquire(&fd).unwrap().is_some());
    }
}
