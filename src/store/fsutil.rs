//! Directory-relative file operations that never follow a symlink planted by someone else.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens a configured root directory (a symlink there is the administrator's choice).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `name` inside `parent` as a directory, refusing a symlink (ELOOP) or a non-directory.
pub fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(rfs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// How often [`ensure_dir`] tries again when the directory vanished between mkdir and open.
const ENSURE_DIR_ATTEMPTS: u32 = 20;

/// Like [`open_dir`], creating the directory first when it does not exist.
///
/// When several GlusterFS clients race to create one name, every one of them can be told
/// EEXIST and yet no directory is left (seen with GlusterFS 10.3), so "mkdir, ignore EEXIST,
/// open" then fails with ENOENT: that case is tried again, a bounded number of times.
pub fn ensure_dir(parent: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<OwnedFd> {
    let mut attempt = 0;
    loop {
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match open_dir(parent, name) {
            Err(e)
                if (e.kind() == io::ErrorKind::NotFound || is_transient(&e))
                    && attempt < ENSURE_DIR_ATTEMPTS =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
            }
            opened => return opened,
        }
    }
}

/// Creates a new file that must not exist yet (O_EXCL: never through a symlink).
pub fn create_new(parent: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    create(parent, name, OFlags::WRONLY | OFlags::EXCL)
}

/// Creates or truncates a regular file, refusing a symlink at the name.
pub fn create_truncate(parent: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    create(parent, name, OFlags::RDWR | OFlags::TRUNC)
}

fn create(parent: BorrowedFd<'_>, name: &str, how: OFlags) -> io::Result<File> {
    let flags = how | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(parent, name, flags, Mode::from_raw_mode(0o666))?;
    Ok(File::from(fd))
}

/// Opens a regular file read-write as it is, creating it when missing, refusing a symlink.
pub fn open_or_create(parent: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    create(parent, name, OFlags::RDWR)
}

/// Opens a regular file for reading, refusing a symlink.
pub fn open_read(parent: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rfs::openat(parent, name, flags, Mode::empty())?))
}

/// Opens an existing regular file for writing, as it is (no truncation), refusing a symlink.
pub fn open_write(parent: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rfs::openat(parent, name, flags, Mode::empty())?))
}

/// Creates a directory that must not exist yet, and opens it.
pub fn create_dir(parent: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<OwnedFd> {
    rfs::mkdirat(parent, name, Mode::from_raw_mode(mode))?;
    open_dir(parent, name)
}

/// Removes an empty directory; one that is already gone is not an error.
pub fn remove_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Last modification time of `name` (never followed), or `None` when absent.
pub fn modified(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<std::time::SystemTime>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let secs = u64::try_from(stat.st_mtime).unwrap_or(0);
            Ok(Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            ))
        }
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Size of `name` if it is a regular file; `None` when absent (a symlink or anything else
/// counts as absent, so it is never used).
pub fn regular_file_size(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<u64>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if rfs::FileType::from_raw_mode(stat.st_mode) == rfs::FileType::RegularFile => {
            Ok(Some(stat.st_size as u64))
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Like [`regular_file_size`], asking the filesystem's server rather than this host's cache
/// (`AT_STATX_FORCE_SYNC`: FUSE and NFS clients cache attributes for a while, so a file another
/// host appended to can show its old size; local filesystems answer as usual).
pub fn fresh_regular_file_size(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<u64>> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_FORCE_SYNC;
    match rfs::statx(
        parent,
        name,
        flags,
        rfs::StatxFlags::TYPE | rfs::StatxFlags::SIZE,
    ) {
        Ok(stat)
            if rfs::FileType::from_raw_mode(u32::from(stat.stx_mode))
                == rfs::FileType::RegularFile =>
        {
            Ok(Some(stat.stx_size))
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Which file a name points at, and how many names it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub links: u64,
    pub size: u64,
}

impl FileIdentity {
    /// Whether two names are the same file.
    pub fn same_file(&self, other: &FileIdentity) -> bool {
        self.device == other.device && self.inode == other.inode
    }
}

/// Whether `name` in `parent` is a symbolic link (false when it cannot be examined).
pub fn is_symlink(parent: BorrowedFd<'_>, name: &str) -> bool {
    rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| rfs::FileType::from_raw_mode(stat.st_mode) == rfs::FileType::Symlink)
}

/// The identity of whatever `name` is (never followed), or `None` when absent.
pub fn identity(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<FileIdentity>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileIdentity {
            device: stat.st_dev,
            inode: stat.st_ino,
            links: stat.st_nlink,
            size: stat.st_size as u64,
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Renames `from` to `to` inside one directory, atomically replacing `to`.
pub fn rename_within(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    Ok(rfs::renameat(dir, from, dir, to)?)
}

/// Moves `from` to `to`; fails with `AlreadyExists` rather than replace (renameat2 with
/// RENAME_NOREPLACE; `InvalidInput` where the filesystem does not offer it).
pub fn rename_no_replace(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        from_dir,
        from,
        to_dir,
        to,
        rfs::RenameFlags::NOREPLACE,
    )?)
}

/// Gives the file at `from` a second name `to`; fails with `AlreadyExists` rather than replace.
pub fn link_no_replace(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    Ok(rfs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?)
}

/// Removes a file; one that is already gone is not an error.
pub fn remove_file(parent: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn sync_dir(dir: &OwnedFd) -> io::Result<()> {
    Ok(rfs::fsync(dir.as_fd())?)
}

/// Names in a directory (not `.` or `..`).
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let fd = rfs::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Errors a network filesystem may give for a moment while another client changes the same
/// names (seen with GlusterFS 10.3 when several clients race): a stale file handle, and a file
/// another client is creating, briefly without its permissions. Worth trying again, a few
/// times, before reporting.
pub fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::STALE.raw_os_error()
            || code == rustix::io::Errno::ACCESS.raw_os_error()
    )
}

/// Runs `op` again while it fails with a transient error (see [`is_transient`]), at most
/// `attempts` times in all, waiting a little longer each time.
pub fn retry_transient<T>(attempts: u32, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut attempt = 1;
    loop {
        match op() {
            Err(e) if is_transient(&e) && attempt < attempts => {
                std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
            || code == rustix::io::Errno::DQUOT.raw_os_error()
    )
}
