//! Giving a staged file its final name: the folders of its relative path are created, then
//! link(2) gives it the first free name (`name`, `name (1).ext`, ...), never replacing a file.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::complete::STAGING_DIR;
use super::{fsutil, layout, naming, Result, StoreError};

/// How many `name (n).ext` variants are tried before giving up.
pub(super) const MAX_NAME_ATTEMPTS: u32 = 10_000;

/// Opens (creating it when missing) the upload dir's staging folder, where files are completed
/// before they get their name: inside the upload dir, so that naming them is a link within one
/// filesystem.
pub(super) fn staging_dir(upload_root: &OwnedFd) -> Result<OwnedFd> {
    fsutil::ensure_dir(upload_root.as_fd(), STAGING_DIR, 0o700)
        .map_err(StoreError::io("opening the staging directory"))
}

/// Where a finished file goes: its folders under the upload dir (created) and its sanitised
/// name.
pub(super) struct Destination {
    dir: OwnedFd,
    folders: Vec<String>,
    pub(super) name: String,
}

impl Destination {
    /// The folders of `relative_path` (all but its last component) and the name from
    /// `filename`, both made safe by [`layout::published_path`].
    pub(super) fn open(
        upload_root: OwnedFd,
        filename: &str,
        relative_path: Option<&str>,
    ) -> Result<Destination> {
        let (wanted, name) = layout::published_path(filename, relative_path);
        let mut dir = upload_root;
        let mut folders = Vec::with_capacity(wanted.len());
        for folder in &wanted {
            let (opened, used) = free_folder(dir.as_fd(), folder)?;
            dir = opened;
            folders.push(used);
        }
        Ok(Destination { dir, folders, name })
    }

    /// The folder the file is published in.
    pub(super) fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// `candidate` in this destination's folders, relative to the upload dir.
    pub(super) fn relative(&self, candidate: &str) -> String {
        let mut path = self.folders.join("/");
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(candidate);
        path
    }

    /// Gives the staged file `staging` a second name, the first free one, and answers it
    /// relative to the upload dir. link(2) fails rather than replace, so a file that was there
    /// is never touched and two requests never get the same name. The folder is not synced
    /// yet ([`Destination::sync`]): the caller first decides what becomes of the staging name.
    pub(super) fn link_free_name(
        &self,
        staging_dir: BorrowedFd<'_>,
        staging: &str,
    ) -> Result<String> {
        for attempt in 0..MAX_NAME_ATTEMPTS {
            let candidate = layout::clash_candidate(&self.name, attempt);
            match naming::give_name(staging_dir, staging, self.dir.as_fd(), &candidate) {
                Ok(()) => return Ok(self.relative(&candidate)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("publishing the finished file")(e)),
            }
        }
        Err(StoreError::NoFreeName(self.relative(&self.name)))
    }

    /// Makes the new name durable.
    pub(super) fn sync(&self) -> Result<()> {
        fsutil::sync_dir(&self.dir).map_err(StoreError::io("syncing the upload directory"))
    }
}

/// Opens (creating it when missing) the folder `folder` of a published path, or, when a file
/// already has that name, the first `folder (n)` that is a folder or free: a folder upload
/// never fails, or touches what is there, because an earlier file took its folder's name. A
/// symlink at the name is not a clash but a planted link, refused (never followed).
fn free_folder(parent: BorrowedFd<'_>, folder: &str) -> Result<(OwnedFd, String)> {
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let candidate = if attempt == 0 {
            folder.to_string()
        } else {
            format!("{folder} ({attempt})")
        };
        match fsutil::ensure_dir(parent, &candidate, 0o777) {
            Ok(dir) => return Ok((dir, candidate)),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTDIR)
                    && !fsutil::is_symlink(parent, &candidate) =>
            {
                continue
            }
            Err(e) => return Err(StoreError::io("creating the folders of the published file")(e)),
        }
    }
    Err(StoreError::NoFreeName(folder.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fsutil::open_root;

    #[test]
    fn a_folder_whose_name_a_file_took_becomes_the_next_free_folder() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("album"), b"an earlier upload").unwrap();
        std::fs::write(root.path().join("album (1)"), b"another one").unwrap();
        std::fs::create_dir(root.path().join("album (2)")).unwrap();
        let dest = Destination::open(
            open_root(root.path()).unwrap(),
            "b.jpg",
            Some("album/b.jpg"),
        )
        .unwrap();
        assert_eq!(dest.relative(&dest.name), "album (2)/b.jpg");
        assert_eq!(
            std::fs::read(root.path().join("album")).unwrap(),
            b"an earlier upload"
        );
        // A folder that is there is used as it is.
        let dest = Destination::open(
            open_root(root.path()).unwrap(),
            "c.jpg",
            Some("album (2)/c.jpg"),
        )
        .unwrap();
        assert_eq!(dest.relative(&dest.name), "album (2)/c.jpg");
    }
}
