//! Whole files, as a form upload sends them: each streams into its own file in the staging
//! folder, is fsynced, and gets its final name only when the caller publishes it (after the
//! whole request was read), so a refused request publishes nothing. Dropped unpublished, it
//! leaves nothing behind.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::chunk::copy_bounded;
use super::publish::{self, Destination};
use super::{fsutil, layout, FsStore, IncomingFile, Received, Result, StoreError};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// One whole file in the staging folder.
pub(super) struct StagedFile {
    store: FsStore,
    staging_dir: OwnedFd,
    /// Emptied once the staging name is gone (published, or removed).
    name: String,
    file: Option<File>,
    received: Option<u64>,
}

impl FsStore {
    /// A new, empty staging file under a name no other request (on this host or another one
    /// sharing the directory) can pick.
    pub(super) fn begin_whole_file(&self) -> Result<StagedFile> {
        let root = self.upload_root()?;
        let staging_dir = publish::staging_dir(&root)?;
        let mut attempt = 0;
        loop {
            let name = unique_name();
            match fsutil::create_new(staging_dir.as_fd(), &name) {
                Ok(file) => {
                    return Ok(StagedFile {
                        store: self.clone(),
                        staging_dir,
                        name,
                        file: Some(file),
                        received: None,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
                Err(e) => {
                    return Err(StoreError::io("creating a file in the staging directory")(
                        e,
                    ))
                }
            }
        }
    }
}

/// The process, a per-process sequence, the time and the OS's per-process random seed
/// (through std's hasher), hashed into one staging name.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let random = RandomState::new().hash_one(nanos);
    layout::staging_name(&[
        "whole file",
        &std::process::id().to_string(),
        &SEQUENCE.fetch_add(1, Ordering::Relaxed).to_string(),
        &nanos.to_string(),
        &random.to_string(),
    ])
}

impl StagedFile {
    fn remove(&mut self) {
        self.file.take();
        if !self.name.is_empty() {
            let _ = fsutil::remove_file(self.staging_dir.as_fd(), &self.name);
            self.name.clear();
        }
    }
}

impl IncomingFile for StagedFile {
    fn receive(&mut self, body: &mut dyn Read, max: u64) -> Result<Received> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Io {
                op: "receiving a file",
                source: io::Error::other("the file was already received"),
            });
        };
        let received = copy_bounded(body, file, max, "writing a file")?;
        if received > max {
            // Its bytes are not kept: the space is free again for the files after it.
            self.remove();
            return Ok(Received::TooLarge);
        }
        file.flush()
            .and_then(|()| file.sync_all())
            .map_err(StoreError::io("syncing a received file"))?;
        // Closed now: a form may carry many files, and only the name is needed from here.
        self.file.take();
        self.received = Some(received);
        Ok(Received::Whole(received))
    }

    fn publish(mut self: Box<Self>, filename: &str, relative_path: Option<&str>) -> Result<String> {
        if self.received.is_none() || self.name.is_empty() {
            return Err(StoreError::Io {
                op: "publishing a file",
                source: io::Error::other("the file was not received whole"),
            });
        }
        let destination = Destination::open(self.store.upload_root()?, filename, relative_path)?;
        let published = destination.link_free_name(self.staging_dir.as_fd(), &self.name)?;
        // The published name holds the file now; the staging name is only a second link.
        self.remove();
        destination.sync()?;
        Ok(published)
    }

    fn path(&self) -> Result<std::path::PathBuf> {
        let upload_dir = std::fs::canonicalize(&self.store.upload_dir).map_err(StoreError::io(
            "finding the absolute path of the upload directory",
        ))?;
        Ok(upload_dir
            .join(super::complete::STAGING_DIR)
            .join(&self.name))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UploadStore;

    fn staging_files(upload_dir: &std::path::Path) -> usize {
        std::fs::read_dir(upload_dir.join(super::super::complete::STAGING_DIR))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn received_published_refused_and_dropped() {
        let temp = tempfile::tempdir().unwrap();
        let uploads = tempfile::tempdir().unwrap();
        let store = FsStore::new(temp.path(), uploads.path());

        // Whole, then published twice under the same name: the second gets a free one.
        for expected in ["dir/a.txt", "dir/a (1).txt"] {
            let mut file = store.begin_file().unwrap();
            assert_eq!(
                file.receive(&mut &b"hello"[..], 5).unwrap(),
                Received::Whole(5)
            );
            assert_eq!(file.publish("a.txt", Some("dir/a.txt")).unwrap(), expected);
            assert_eq!(
                std::fs::read(uploads.path().join(expected)).unwrap(),
                b"hello"
            );
        }
        assert_eq!(staging_files(uploads.path()), 0);

        // One byte too many: nothing kept, and it cannot be published.
        let mut file = store.begin_file().unwrap();
        assert_eq!(
            file.receive(&mut &b"hello!"[..], 5).unwrap(),
            Received::TooLarge
        );
        assert_eq!(staging_files(uploads.path()), 0);
        assert!(file.publish("b.txt", None).is_err());

        // Received but dropped (the request turned out malformed): gone too.
        let mut file = store.begin_file().unwrap();
        file.receive(&mut &b"x"[..], 5).unwrap();
        assert_eq!(staging_files(uploads.path()), 1);
        drop(file);
        assert_eq!(staging_files(uploads.path()), 0);
        assert!(!uploads.path().join("b.txt").exists());
    }
}
