//! Removing abandoned uploads: temp folders nobody has touched for a while, and staging files
//! an interrupted assembly left behind. Busy uploads (locked) are never touched.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, FileType};

use super::complete::STAGING_DIR;
use super::lock::{UploadLock, LOCK_FILE};
use super::{fsutil, FsStore, Result, StoreError};

/// What one cleanup pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Upload folders removed (with their parts, temporary chunks and completion record).
    pub uploads_removed: u64,
    /// Upload folders kept because a request holds their lock right now.
    pub uploads_busy: u64,
    /// Upload folders kept because something in them is newer than the cut-off.
    pub uploads_recent: u64,
    pub staging_removed: u64,
}

impl FsStore {
    /// Removes every upload whose newest file is older than `max_age`, and staging files as old.
    pub fn remove_abandoned(&self, max_age: Duration) -> Result<CleanupReport> {
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut report = CleanupReport::default();
        let root = self.temp_root()?;
        let fail = StoreError::io("cleaning up abandoned uploads");
        for name in fsutil::list(root.as_fd()).map_err(fail)? {
            if name.starts_with("~user-") {
                let Some(scope) = open_subdir(root.as_fd(), &name)? else {
                    continue;
                };
                for upload in fsutil::list(scope.as_fd())
                    .map_err(StoreError::io("cleaning up abandoned uploads"))?
                {
                    sweep_upload(scope.as_fd(), &upload, cutoff, &mut report)?;
                }
            } else {
                sweep_upload(root.as_fd(), &name, cutoff, &mut report)?;
            }
        }
        let uploads = self.upload_root()?;
        if let Some(staging) = open_subdir(uploads.as_fd(), STAGING_DIR)? {
            for name in fsutil::list(staging.as_fd())
                .map_err(StoreError::io("cleaning up staging files"))?
            {
                if newest_mtime(staging.as_fd(), &name)? < cutoff {
                    fsutil::remove_file(staging.as_fd(), &name)
                        .map_err(StoreError::io("removing a staging file"))?;
                    report.staging_removed += 1;
                }
            }
        }
        Ok(report)
    }
}

/// A directory entry that is a real directory (not a symlink), opened; `None` otherwise.
fn open_subdir(parent: BorrowedFd<'_>, name: &str) -> Result<Option<OwnedFd>> {
    match fsutil::open_dir(parent, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(code) if code == rustix::io::Errno::NOTDIR.raw_os_error()
                    || code == rustix::io::Errno::LOOP.raw_os_error()
                    || code == rustix::io::Errno::NOENT.raw_os_error()
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::io("cleaning up abandoned uploads")(e)),
    }
}

fn mtime(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<(i64, FileType)>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some((stat.st_mtime, FileType::from_raw_mode(stat.st_mode)))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn newest_mtime(parent: BorrowedFd<'_>, name: &str) -> Result<i64> {
    Ok(mtime(parent, name)
        .map_err(StoreError::io("cleaning up abandoned uploads"))?
        .map_or(i64::MAX, |(t, _)| t))
}

fn sweep_upload(
    parent: BorrowedFd<'_>,
    name: &str,
    cutoff: i64,
    report: &mut CleanupReport,
) -> Result<()> {
    let fail = || StoreError::io("cleaning up an abandoned upload");
    let Some(dir) = open_subdir(parent, name)? else {
        return Ok(());
    };
    // Read before locking: taking the lock may create the lock file, which touches the folder.
    let mut newest = newest_mtime(parent, name)?;
    let Some(_lock) = UploadLock::try_acquire(&dir).map_err(fail())? else {
        report.uploads_busy += 1;
        return Ok(());
    };
    let entries = fsutil::list(dir.as_fd()).map_err(fail())?;
    for entry in entries.iter().filter(|e| *e != LOCK_FILE) {
        newest = newest.max(newest_mtime(dir.as_fd(), entry)?);
    }
    if newest >= cutoff {
        report.uploads_recent += 1;
        return Ok(());
    }
    for entry in &entries {
        // Only files: a folder inside is not ours (the PHP script never makes one either).
        if let Some((_, FileType::RegularFile | FileType::Symlink)) =
            mtime(dir.as_fd(), entry).map_err(fail())?
        {
            fsutil::remove_file(dir.as_fd(), entry).map_err(fail())?;
        }
    }
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTEMPTY) => {}
        Err(e) => return Err(fail()(e.into())),
    }
    report.uploads_removed += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn backdate(path: &std::path::Path, seconds: u64) {
        let when = SystemTime::now() - Duration::from_secs(seconds);
        fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn old_uploads_go_recent_and_busy_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let (temp, uploads) = (root.path().join("temp"), root.path().join("uploads"));
        fs::create_dir_all(uploads.join(STAGING_DIR)).unwrap();
        for (id, age) in [("old", 10_000), ("recent", 10), ("busy", 10_000)] {
            let dir = temp.join(id);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f.part1"), b"x").unwrap();
            backdate(&dir.join("f.part1"), age);
            backdate(&dir, age);
        }
        let scoped = temp.join("~user-abc").join("old");
        fs::create_dir_all(&scoped).unwrap();
        backdate(&scoped, 10_000);
        fs::write(uploads.join(STAGING_DIR).join("x.assembling"), b"x").unwrap();
        backdate(&uploads.join(STAGING_DIR).join("x.assembling"), 10_000);

        let busy = fsutil::open_root(&temp.join("busy")).unwrap();
        let _held = UploadLock::acquire(&busy).unwrap();
        let report = FsStore::new(&temp, &uploads)
            .remove_abandoned(Duration::from_secs(3600))
            .unwrap();
        assert_eq!(report.uploads_removed, 2);
        assert_eq!(report.uploads_busy, 1);
        assert_eq!(report.uploads_recent, 1);
        assert_eq!(report.staging_removed, 1);
        assert!(!temp.join("old").exists() && !scoped.exists());
        assert!(temp.join("recent/f.part1").exists() && temp.join("busy/f.part1").exists());
    }
}
