//! The per-upload exclusive lock: flock(2) on the upload's own temp directory.
//!
//! flock belongs to the open file description, so two threads of one FastCGI worker that each
//! open the directory exclude each other as two CGI processes do; the kernel drops it when the
//! holder dies, so a killed process never leaves a stale lock behind. Locking the directory
//! itself means there is no lock file to leave lying around.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

pub struct UploadLock {
    file: File,
}

impl UploadLock {
    /// Blocks until this process holds the upload's lock.
    pub fn acquire(dir: &OwnedFd) -> io::Result<UploadLock> {
        let file = own_description(dir)?;
        file.lock()?;
        Ok(UploadLock { file })
    }

    /// The lock if nobody holds it now, else `None` (the upload is busy).
    pub fn try_acquire(dir: &OwnedFd) -> io::Result<Option<UploadLock>> {
        let file = own_description(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(UploadLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Reopens the directory: a dup would share the open file description, and two holders in one
/// process would then not exclude each other.
fn own_description(dir: &OwnedFd) -> io::Result<File> {
    let own = rustix::fs::openat(
        dir.as_fd(),
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(File::from(own))
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
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
        let other = File::open(dir.path()).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
