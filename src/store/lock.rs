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
            record_lock(&file, true)?;
            Ok(file)
        })?;
        Ok(UploadLock { file, legacy })
    }

    /// The lock if nobody holds it now, else `None` (the upload is busy).
    pub fn try_acquire(dir: &OwnedFd) -> io::Result<Option<UploadLock>> {
        let Some(legacy) = legacy_dir_lock(dir, false)? else {
            return Ok(None);
        };
        let file = open_lock_file(dir)?;
        if !record_lock(&file, false)? {
            return Ok(None);
        }
        Ok(Some(UploadLock { file, legacy }))
    }
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        // Closing the last descriptor of a description releases its locks too, but a thread
        // that forks (a hook, a CGI test) gives the child a descriptor of each until it execs:
        // unlock both explicitly, in the reverse order of taking them.
        let _ = set_record_lock(&self.file, libc::F_UNLCK, libc::F_OFD_SETLK);
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

/// Takes the exclusive record lock over the whole file: waiting for it when `wait`, else
/// answering `false` when someone else holds it.
fn record_lock(file: &File, wait: bool) -> io::Result<bool> {
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        match set_record_lock(file, libc::F_WRLCK, command) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !wait && is_contended(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

fn set_record_lock(file: &File, kind: libc::c_int, command: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero `flock` is valid: start 0 and length 0 cover the whole file however
    // it grows, and an OFD lock requires l_pid to be 0.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: the descriptor is open for the duration of the call and `request` outlives it.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), command, &request) };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
        assert!(!record_lock(&other, false).unwrap());
        drop(held);
        assert!(record_lock(&other, false).unwrap());
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
    fn a_lock_file_left_behind_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), b"").unwrap();
        let fd = open_root(dir.path()).unwrap();
        assert!(UploadLock::try_acquire(&fd).unwrap().is_some());
    }
}
