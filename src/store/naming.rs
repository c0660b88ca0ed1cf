//! Giving the assembled file its final name without ever replacing a file: `link(2)`, or, on a
//! filesystem without hard links, `renameat2(RENAME_NOREPLACE)`. Which one works is found at
//! the first publish of a process and logged once.
//!
//! With a link the staging name stays as a second name until the completion record exists,
//! which lets a retry after a crash find the published name by inode (complete.rs). A rename
//! leaves no second name, so before renaming, the staging file's inode number is written to
//! a note beside it (`<staging>.renamed`); the retry finds the published name by that number.
//! Only the inode number is kept: every node's mount of a shared filesystem has its own
//! device number, but the staging folder and the published name are on one filesystem.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU8, Ordering};

use super::fsutil;

/// What this process found works: not yet known, link, or rename.
static METHOD: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const LINK: u8 = 1;
const RENAME: u8 = 2;

/// Gives the staging file the name `to`; `AlreadyExists` when that name is taken.
pub fn give_name(
    staging_dir: BorrowedFd<'_>,
    staging: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    if METHOD.load(Ordering::Relaxed) != RENAME {
        match fsutil::link_no_replace(staging_dir, staging, to_dir, to) {
            Ok(()) => {
                if METHOD.swap(LINK, Ordering::Relaxed) == UNKNOWN {
                    log::info!("publishing finished files with link(2)");
                }
                return Ok(());
            }
            Err(e) if !lacks_hard_links(&e) => return Err(e),
            Err(e) => {
                if METHOD.swap(RENAME, Ordering::Relaxed) != RENAME {
                    log::info!(
                        "the upload directory has no hard links ({e}): publishing finished files with renameat2(RENAME_NOREPLACE)"
                    );
                }
            }
        }
    }
    rename_with_note(staging_dir, staging, to_dir, to)
}

/// Renames the staging file to `to` (never replacing), after noting its inode number.
pub(super) fn rename_with_note(
    staging_dir: BorrowedFd<'_>,
    staging: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    let identity = fsutil::identity(staging_dir, staging)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    let note = note_name(staging);
    if renamed_inode(staging_dir, staging)? != Some(identity.inode) {
        let temp = format!("{note}.tmp");
        let mut file = fsutil::create_truncate(staging_dir, &temp)?;
        file.write_all(identity.inode.to_string().as_bytes())?;
        file.sync_all()?;
        fsutil::rename_within(staging_dir, &temp, &note)?;
    }
    match fsutil::rename_no_replace(staging_dir, staging, to_dir, to) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(io::Error::other(format!(
            "this filesystem has neither hard links nor renameat2(RENAME_NOREPLACE), so a finished file cannot be named without risking replacing another: {e}"
        ))),
        other => other,
    }
}

/// The inode number a rename of this staging file published, when one may have happened.
pub fn renamed_inode(staging_dir: BorrowedFd<'_>, staging: &str) -> io::Result<Option<u64>> {
    let file = match fsutil::open_read(staging_dir, &note_name(staging)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(64).read_to_string(&mut text)?;
    Ok(text.trim().parse().ok())
}

/// Removes the note once the completion record exists.
pub fn forget(staging_dir: BorrowedFd<'_>, staging: &str) -> io::Result<()> {
    fsutil::remove_file(staging_dir, &note_name(staging))
}

fn note_name(staging: &str) -> String {
    format!("{staging}.renamed")
}

/// EPERM (vfat and most filesystems without links), EOPNOTSUPP, ENOSYS (a FUSE filesystem
/// without a link operation), EMLINK never: that is a full link count.
fn lacks_hard_links(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_rename_never_replaces_and_leaves_a_note_of_the_inode() {
        let dir = tempfile::tempdir().unwrap();
        let fd = fsutil::open_root(dir.path()).unwrap();
        std::fs::write(dir.path().join("s.assembling"), b"new").unwrap();
        std::fs::write(dir.path().join("taken.txt"), b"old").unwrap();
        let ino = fsutil::identity(fd.as_fd(), "s.assembling")
            .unwrap()
            .unwrap()
            .inode;
        let err = rename_with_note(fd.as_fd(), "s.assembling", fd.as_fd(), "taken.txt");
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("taken.txt")).unwrap(), b"old");
        rename_with_note(fd.as_fd(), "s.assembling", fd.as_fd(), "free.txt").unwrap();
        assert_eq!(std::fs::read(dir.path().join("free.txt")).unwrap(), b"new");
        assert_eq!(
            renamed_inode(fd.as_fd(), "s.assembling").unwrap(),
            Some(ino)
        );
        forget(fd.as_fd(), "s.assembling").unwrap();
        assert_eq!(renamed_inode(fd.as_fd(), "s.assembling").unwrap(), None);
    }
}
