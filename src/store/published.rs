//! Read-only access to the published files: listing them and opening one for download,
//! never following a symlink and never showing the store's own hidden folders.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::fsutil;

/// One published file: its path below the upload dir and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedFile {
    pub components: Vec<String>,
    pub size: u64,
}

/// What a listing found, and whether it stopped at its bounds.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<PublishedFile>,
    pub truncated: bool,
}

/// Every regular file below the upload dir, skipping hidden entries (the staging folder) and
/// symlinks, at most `max_depth` folders deep and `max_entries` files.
pub fn list(upload_dir: &Path, max_depth: usize, max_entries: usize) -> io::Result<Listing> {
    let root = fsutil::open_root(upload_dir)?;
    let mut listing = Listing::default();
    let mut pending: Vec<(OwnedFd, Vec<String>)> = vec![(root, Vec::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let mut names = fsutil::list(dir.as_fd())?;
        names.sort();
        for name in names {
            if name.starts_with('.') {
                continue;
            }
            if listing.files.len() >= max_entries {
                listing.truncated = true;
                break;
            }
            let Ok(stat) = rfs::statat(dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let mut components = prefix.clone();
            components.push(name.clone());
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => listing.files.push(PublishedFile {
                    components,
                    size: stat.st_size as u64,
                }),
                FileType::Directory if prefix.len() < max_depth => {
                    if let Ok(sub) = fsutil::open_dir(dir.as_fd(), &name) {
                        pending.push((sub, components));
                    }
                }
                _ => {}
            }
        }
    }
    listing
        .files
        .sort_by(|a, b| a.components.cmp(&b.components));
    Ok(listing)
}

/// Opens a published file one component at a time from the upload dir, refusing a symlink at
/// every step (O_NOFOLLOW), so nothing outside the upload dir is ever reached. Answers the
/// file and its size.
pub fn open(upload_dir: &Path, components: &[String]) -> io::Result<(File, u64)> {
    let mut dir: OwnedFd = fsutil::open_root(upload_dir)?;
    let (name, folders) = components
        .split_last()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    for folder in folders {
        dir = fsutil::open_dir(dir.as_fd(), folder)?;
    }
    // O_NONBLOCK: a FIFO planted in the upload dir must not hang the request on open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir.as_fd(), name.as_str(), flags, Mode::empty())?;
    let stat = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok((File::from(fd), stat.st_size as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lists_and_opens_published_files_only() {
        let root = tempfile::tempdir().unwrap();
        let up = root.path();
        fs::create_dir_all(up.join("d/e")).unwrap();
        fs::create_dir_all(up.join(".resumable-staging")).unwrap();
        fs::write(up.join("a.txt"), b"abc").unwrap();
        fs::write(up.join("d/e/b.bin"), b"12345").unwrap();
        fs::write(up.join(".resumable-staging/x.assembling"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", up.join("link")).unwrap();
        let listing = list(up, 20, 100).unwrap();
        let names: Vec<String> = listing
            .files
            .iter()
            .map(|f| f.components.join("/"))
            .collect();
        assert_eq!(names, ["a.txt", "d/e/b.bin"]);
        assert_eq!(listing.files[1].size, 5);
        assert!(!listing.truncated);
        assert!(list(up, 20, 1).unwrap().truncated);
        let (_, size) = open(up, &["d".into(), "e".into(), "b.bin".into()]).unwrap();
        assert_eq!(size, 5);
        assert!(open(up, &["link".into()]).is_err());
        assert!(open(up, &["d".into()]).is_err());
    }
}
