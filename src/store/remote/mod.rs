//! Publishing a finished file beyond the upload dir (RESUMABLE_PUBLISH_URL): after the file is
//! complete in the upload dir and its completion record is written, it is copied to an
//! S3-compatible store under a name that did not exist there, the record is updated with the
//! object key, and the local copy goes (unless RESUMABLE_KEEP_LOCAL=1). Only then is the client
//! told the upload is complete.
//!
//! All of it runs under the upload's lock, so one request at a time publishes one upload; a
//! progress note in the upload's temp dir (`<file>.publishing`) names the key being written
//! and the multipart upload, so that the request after a crash either finds the object
//! written (its metadata carries the note's token) or aborts the unfinished multipart upload
//! and starts again: an object is written once, and no multipart upload is left behind.

mod s3;

use std::io;
use std::os::fd::AsFd;

use super::complete::{self, Completion};
use super::{fsutil, FsStore, Result, StoreError, UploadDir};

pub use s3::S3Target;

/// Where finished files go besides (or instead of) the upload dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    pub target: S3Target,
    /// Keep the file in the upload dir once it is in the store.
    pub keep_local: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store could not be reached or refused for a reason that may pass: retry later.
    #[error("publishing to {url} failed while {op}: {detail}")]
    Unavailable {
        url: String,
        op: &'static str,
        detail: String,
    },
    /// The settings cannot work (a malformed endpoint, no credentials).
    #[error("publishing to {url} is misconfigured: {detail}")]
    Misconfigured { url: String, detail: String },
}

/// Whether `done` still has to be published (the store cannot tell without its settings).
pub fn pending(config: Option<&PublishConfig>, done: &Completion) -> bool {
    config.is_some() && done.object.is_none()
}

/// Publishes a completed upload when that is still to be done, under the upload lock the
/// caller holds; answers the completion as the client is to be told it.
pub(super) fn finish(store: &FsStore, upload: &UploadDir, done: Completion) -> Result<Completion> {
    let Some(config) = store.publish.as_ref() else {
        return Ok(done);
    };
    if done.object.is_some() {
        return Ok(done);
    }
    let note = progress_note_name(&upload.file_key);
    let root = store.upload_root()?;
    let local = fsutil::open_read(root.as_fd(), &done.file)
        .map_err(StoreError::io("opening the finished file to publish it"))?;
    let key = s3::publish(&config.target, upload.dir.as_fd(), &note, &local, &done)
        .map_err(StoreError::Publish)?;
    let published = Completion {
        object: Some(key),
        ..done
    };
    complete::write_record(upload, &published)?;
    fsutil::remove_file(upload.dir.as_fd(), &note)
        .map_err(StoreError::io("removing the publishing note"))?;
    if !config.keep_local {
        remove_local(&root, &published.file)?;
    }
    log::info!(
        "published {:?} as {:?} in {}",
        published.file,
        published.object.as_deref().unwrap_or_default(),
        config.target
    );
    Ok(published)
}

/// Removes the local copy of a published file (`folders/name` relative to the upload dir).
fn remove_local(root: &std::os::fd::OwnedFd, file: &str) -> Result<()> {
    let fail = StoreError::io("removing the local copy of a published file");
    let (folders, name) = match file.rsplit_once('/') {
        Some((folders, name)) => (Some(folders), name),
        None => (None, file),
    };
    let removed = match folders {
        None => fsutil::remove_file(root.as_fd(), name),
        Some(folders) => folders
            .split('/')
            .try_fold(None::<std::os::fd::OwnedFd>, |dir, folder| {
                let parent = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
                fsutil::open_dir(parent, folder).map(Some)
            })
            .and_then(|dir| match dir {
                Some(dir) => fsutil::remove_file(dir.as_fd(), name),
                None => Ok(()),
            }),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(fail),
    }
}

fn progress_note_name(file_key: &str) -> String {
    format!("{file_key}.publishing")
}
