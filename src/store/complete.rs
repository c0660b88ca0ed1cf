//! Completion: coverage check, the last appends, fsync, publishing under a free name without
//! ever replacing a file, the completion record, and cleanup of the parts.
//!
//! Before completion, as each chunk arrives (incremental.rs, under the upload lock, after the
//! chunk's part is renamed into place), the parts that continue the upload's staging file are
//! appended to it, the writeback of what lags behind started, and then removed. Part `n` starts at
//! `(n − 1) · chunk size`, and its bytes are always in the staging file or in the part:
//! a. a request killed before or in the middle of a copy leaves part `n` stored and the staging
//!    file's size at or inside part `n`'s range: the next holder cuts it back to part `n`'s start
//!    and appends part `n` again;
//! b. killed after the copies, before or while removing the appended parts (in order): those
//!    left are whole in the staging file, just below the next part, and the next holder removes
//!    them;
//! c. a chunk that does not continue the staging file (out of order) stays a part until the
//!    request that fills the gap appends it, whichever process that is;
//! d. a staging file that may be published already (a second link, a rename note, a file kept
//!    for a hook that did not decide) is never appended to: step 2 or 3 below finds it;
//! e. a staging file with no geometry file beside the parts is an earlier upload's under this
//!    key: the first chunk of the new one removes it (a changed chunk size removes it too).
//!    A power loss can only shorten the staging file (no filesystem shows a size beyond the
//!    data written back); the chunks it loses are missing for the test request, and sent again.
//! f. a chunk that continues the staging file once the geometry is recorded is written
//!    straight into it and is never a part: direct.rs has its rules (its last byte, written
//!    under the lock, is what makes it count; until then nobody else touches the staging file).
//!
//! Crash safety, step by step (all under the upload lock):
//! 1. the request whose appends reach the total keeps its parts, and fsyncs the staging file
//!    (the appends started the writeback of all but its newest bytes): a crash leaves a
//!    staging file with one link and its size, which the next attempt takes as it is; only the
//!    completion hook's refusal removes it, never an error (a full disk), since the parts
//!    before it are gone;
//! 2. it is hard-linked to a free final name (link fails rather than replace): the final name
//!    only ever shows a complete file;
//! 3. the completion record is written (temp + rename): a crash between 2 and 3 leaves the
//!    staging file with two links, and the next attempt finds the published name by inode
//!    instead of publishing a second copy. So the staging file must outlive the record: it is
//!    the only trace of the publish until the record exists;
//! 4. the staging file and the parts are removed: a crash here leaves a record, and the next
//!    request finishes the cleanup (the staging file's second link included).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::incremental::{self, Geometry, Staged};
use super::lock::UploadLock;
use super::naming;
use super::publish::{self, Destination, MAX_NAME_ATTEMPTS};
use super::shape::Shape;
use super::{
    fsutil, layout, Approval, Approve, AssembledFile, Finish, FsStore, PendingChunk, Progress,
    Result, StoreError, UploadDir, UploadKey, MISSING_LISTED,
};

/// Folder of the upload dir where files are assembled before they get their final name.
pub const STAGING_DIR: &str = ".resumable-staging";
const MAX_RECORD_SIZE: u64 = 64 * 1024;

/// A finished upload: where it was published, relative to the upload dir, its size, and what
/// the approval step (the completion hook) gave back for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub file: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The object key, once published to the object store (RESUMABLE_PUBLISH_URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// What assembling and publishing came to.
pub(super) enum Published {
    Done(Completion),
    Rejected(String),
}

pub(super) fn commit_and_complete(
    store: &FsStore,
    key: &UploadKey,
    pending: Option<PendingChunk>,
    approve: &Approve<'_>,
) -> Result<Progress> {
    let (dir, file_key) = match &pending {
        Some(p) => (
            p.dir
                .try_clone()
                .map_err(StoreError::io("reopening the upload's temp directory"))?,
            layout::file_key(&key.filename),
        ),
        None => match store.upload_dir(key)? {
            Some(upload) => (upload.dir, upload.file_key),
            None => return Ok(Progress::Incomplete),
        },
    };
    let arriving = pending.as_ref().map(|p| p.number);
    let lock = loop {
        let lock = UploadLock::acquire(&dir).map_err(StoreError::io("locking the upload"))?;
        let Some(number) = arriving else { break lock };
        let writer = lock.direct_writer();
        let writer = writer.map_err(StoreError::io("looking for a chunk being written"))?;
        match writer {
            // A duplicate of the chunk another request is writing straight into the staging
            // file: answered once that one has ended (direct.rs), so that its answer is never
            // a success for a chunk the other request then fails to store.
            Some(writing) if writing == number => {
                drop(lock);
                UploadLock::wait_for_direct_writer(&dir, number)
                    .map_err(StoreError::io("locking the upload"))?;
            }
            _ => break lock,
        }
    };
    let upload = UploadDir { dir, file_key };
    if let Some(done) = read_record(&upload, key)? {
        // A late duplicate: nothing is recreated, and a cleanup a crash interrupted is finished
        // (a copy to the object store that a crash or an outage left undone included).
        drop(pending);
        let done = super::remote::finish(store, &upload, done)?;
        clean_finished(store, &upload, key)?;
        return Ok(Progress::AlreadyComplete(done));
    }
    match (super::shape::recorded(&upload)?, pending) {
        (Some(shape), Some(pending)) if shape == Shape::of(key) => pending.publish()?,
        (Some(_), Some(pending)) => {
            // The client now chunks this file differently (the site changed chunkSize): the
            // old parts cannot be combined with the new ones, so the upload starts afresh.
            // Chunks still arriving keep their temporary files; only stored parts go.
            remove_stored_parts(&upload)?;
            remove_staging(store, &staging_name(key))?;
            pending.publish()?;
            super::shape::record(&upload, key)?;
        }
        (None, Some(pending)) => {
            // The chunk first, so that its rename stays the request's first: a part stored
            // without a geometry file is taken as it is, like the PHP script's parts. A staging
            // file without a geometry is no upload's under way (both go together): an earlier
            // upload's under this name, and it goes.
            pending.publish()?;
            if incremental::staged_bytes(store, &staging_name(key))? > 0 {
                remove_staging(store, &staging_name(key))?;
            }
            super::shape::record(&upload, key)?;
        }
        (Some(shape), None) if shape != Shape::of(key) => {
            return Ok(Progress::Incomplete);
        }
        (_, None) => {}
    }
    complete_locked(store, &upload, key, approve, &lock, arriving)
}

/// Under the upload lock, with the parts in place: assembles, publishes and records the upload
/// if the parts cover it. `arriving`: the part this request stored, if any.
pub(super) fn complete_locked(
    store: &FsStore,
    upload: &UploadDir,
    key: &UploadKey,
    approve: &Approve<'_>,
    lock: &UploadLock,
    arriving: Option<u64>,
) -> Result<Progress> {
    let geometry = Geometry {
        chunk_size: key.chunk_size,
        total_size: Some(key.total_size),
    };
    match incremental::advance(store, upload, lock, &staging_name(key), geometry, arriving)? {
        Staged::Bytes(bytes) if bytes != key.total_size => return Ok(Progress::Incomplete),
        Staged::Writing(_) => return Ok(Progress::Incomplete),
        Staged::Bytes(_) | Staged::Publishing => {}
    }
    match assemble_and_publish(store, key, approve)? {
        Published::Done(completion) => {
            write_record(upload, &completion)?;
            let completion = super::remote::finish(store, upload, completion)?;
            clean_finished(store, upload, key)?;
            Ok(Progress::Completed(completion))
        }
        Published::Rejected(reason) => {
            remove_parts(upload)?;
            Ok(Progress::Rejected { reason })
        }
    }
}

/// Removes what a completed upload no longer needs: its staging name and its parts (also
/// finishing a cleanup a crash interrupted).
pub(super) fn clean_finished(store: &FsStore, upload: &UploadDir, key: &UploadKey) -> Result<()> {
    remove_staging(store, &staging_name(key))?;
    remove_parts(upload)
}

/// Sets aside what an earlier upload under this key left (its completion record, its stored
/// parts and their shape), so that a new one begins. The published file stays. Under the lock.
pub(super) fn discard(store: &FsStore, upload: &UploadDir, key: &UploadKey) -> Result<()> {
    fsutil::remove_file(upload.dir.as_fd(), &layout::record_name(&upload.file_key))
        .map_err(StoreError::io("removing an earlier completion record"))?;
    remove_stored_parts(upload)?;
    remove_staging(store, &staging_name(key))?;
    super::shape::forget(upload)
}

/// The client says all `count` chunks were sent: completes the upload when they are stored,
/// else names the first missing ones. The chunk size is the one recorded with the parts.
pub(super) fn finish(
    store: &FsStore,
    key: &UploadKey,
    count: u64,
    approve: &Approve<'_>,
) -> Result<Finish> {
    let nothing = || Finish::Missing {
        first: (1..=count.min(MISSING_LISTED as u64)).collect(),
        more: count > MISSING_LISTED as u64,
    };
    let Some(upload) = store.upload_dir(key)? else {
        return Ok(nothing());
    };
    let lock = UploadLock::acquire(&upload.dir).map_err(StoreError::io("locking the upload"))?;
    if let Some(done) = read_record(&upload, key)? {
        clean_finished(store, &upload, key)?;
        return Ok(Finish::AlreadyComplete(done));
    }
    let chunk_size = match super::shape::recorded(&upload)? {
        Some(shape) if shape.total_size == Some(key.total_size) => shape.chunk_size,
        _ => return Ok(nothing()),
    };
    if key.total_size.div_ceil(chunk_size).max(1) != count {
        return Err(StoreError::Contradicts(format!(
            "the client counts {count} chunks, but chunks of {chunk_size} bytes (as stored) \
             make {} of a {}-byte file",
            key.total_size.div_ceil(chunk_size).max(1),
            key.total_size
        )));
    }
    let key = UploadKey {
        chunk_size,
        ..key.clone()
    };
    match complete_locked(store, &upload, &key, approve, &lock, None)? {
        Progress::Completed(done) => return Ok(Finish::Completed(done)),
        Progress::Rejected { reason } => return Ok(Finish::Rejected { reason }),
        Progress::Incomplete | Progress::AlreadyComplete(_) => {}
    }
    let mut first = Vec::new();
    let staged = incremental::staged_bytes(store, &staging_name(&key))?;
    for number in 1..=count {
        let start = (number - 1) * chunk_size;
        let expected = chunk_size.min(key.total_size - start);
        let part = layout::part_name(&upload.file_key, number);
        let found = fsutil::regular_file_size(upload.dir.as_fd(), &part)
            .map_err(StoreError::io("checking which parts are stored"))?;
        if found != Some(expected) && start + expected > staged {
            if first.len() == MISSING_LISTED {
                return Ok(Finish::Missing { first, more: true });
            }
            first.push(number);
        }
    }
    Ok(Finish::Missing { first, more: false })
}

fn assemble_and_publish(
    store: &FsStore,
    key: &UploadKey,
    approve: &Approve<'_>,
) -> Result<Published> {
    let target = Target {
        staging: staging_name(key),
        filename: &key.filename,
        relative_path: key.relative_path.as_deref(),
        size: key.total_size,
        appended: true,
    };
    // The parts were appended as they came (incremental.rs): what is left is to make the
    // staging file durable.
    let fill = |dir: BorrowedFd<'_>, name: &str| sync_staged(dir, name, key.total_size);
    publish(store, &target, fill, approve)
}

/// Where a finished upload is published, and the staging name its bytes are gathered under.
pub(super) struct Target<'a> {
    /// Unique to the upload: a retry after a crash finds an earlier publish through it.
    pub staging: String,
    pub filename: &'a str,
    pub relative_path: Option<&'a str>,
    pub size: u64,
    /// The staging file was assembled before this publish (incremental.rs): it holds parts
    /// that no longer exist, so only the completion hook's refusal removes it, never a
    /// failure (a full disk) that a retry gets past.
    pub appended: bool,
}

/// Publishes an upload exactly once: `fill` writes (and fsyncs) its bytes into the staging
/// file, `approve` decides on it (the completion hook), and it is then linked to a free name
/// (`name (1).ext` on a clash); a publish that a crash interrupted before its record was
/// written is found again by inode instead of repeated. The caller holds the upload's lock,
/// writes its record next, then removes the staging name ([`remove_staging`]).
pub(super) fn publish(
    store: &FsStore,
    target: &Target<'_>,
    fill: impl FnOnce(BorrowedFd<'_>, &str) -> Result<()>,
    approve: &Approve<'_>,
) -> Result<Published> {
    let root = store.upload_root()?;
    let staging_dir = publish::staging_dir(&root)?;
    let staging = &target.staging;
    let destination = Destination::open(root, target.filename, target.relative_path)?;

    // The staging file stays until the record is written (see the header): removed by
    // remove_staging after the record.
    if let Some(published) = find_earlier_publish(
        &staging_dir,
        staging,
        destination.dir(),
        &destination.name,
        target.size,
    )? {
        return Ok(Published::Done(Completion {
            file: destination.relative(&published),
            size: target.size,
            data: None,
            object: None,
        }));
    }

    let mut guard = StagingGuard {
        dir: staging_dir.as_fd(),
        name: staging,
        armed: !target.appended,
    };
    let kept = kept_name(staging);
    if !take_kept(staging_dir.as_fd(), &kept, staging, target.size)? {
        fill(staging_dir.as_fd(), staging)?;
    }
    let intended = destination.relative(&first_free_name(destination.dir(), &destination.name)?);
    let path = fs::canonicalize(&store.upload_dir)
        .map_err(StoreError::io(
            "finding the absolute path of the upload directory",
        ))?
        .join(STAGING_DIR)
        .join(staging);
    let assembled = AssembledFile {
        path: &path,
        name: &intended,
        size: target.size,
    };
    let data = match approve(&assembled) {
        Ok(Approval::Publish { data }) => data,
        // The guard removes the file; the caller removes the parts.
        Ok(Approval::Reject { reason }) => {
            guard.armed = true;
            return Ok(Published::Rejected(reason));
        }
        Err(e) => {
            // No decision: the server's fault, not the file's. The synced file is kept under a
            // name that says so, for the next attempt to take instead of assembling again.
            if fsutil::rename_within(staging_dir.as_fd(), staging, &kept).is_ok() {
                guard.armed = false;
            }
            return Err(e);
        }
    };
    let file = destination.link_free_name(staging_dir.as_fd(), staging)?;
    // Published: from here the staging file is the second link that lets a retry find the
    // published name if this process dies before the record is written.
    guard.armed = false;
    destination.sync()?;
    Ok(Published::Done(Completion {
        file,
        size: target.size,
        data,
        object: None,
    }))
}

pub(super) fn kept_name(staging: &str) -> String {
    let stem = staging.strip_suffix(".assembling").unwrap_or(staging);
    format!("{stem}.assembled")
}

/// Takes a file an earlier attempt assembled and synced but could not get approved, when it is
/// whole (the parts under one key hold the same bytes, so it is the file they make). A kept
/// file of another size is stale and goes.
fn take_kept(dir: BorrowedFd<'_>, kept: &str, staging: &str, size: u64) -> Result<bool> {
    let probe = StoreError::io("looking for an assembled file kept by an earlier attempt");
    match fsutil::identity(dir, kept).map_err(probe)? {
        None => return Ok(false),
        Some(found) if found.links == 1 => {
            let probe = StoreError::io("looking for an assembled file kept by an earlier attempt");
            if fsutil::regular_file_size(dir, kept).map_err(probe)? == Some(size) {
                fsutil::rename_within(dir, kept, staging)
                    .map_err(StoreError::io("taking a kept assembled file"))?;
                return Ok(true);
            }
        }
        Some(_) => {}
    }
    fsutil::remove_file(dir, kept).map_err(StoreError::io("removing a stale assembled file"))?;
    Ok(false)
}

/// The first of `name`, `name (1).ext`, ... that is free now: what the approval step is told
/// the file will be called (publishing itself still never replaces a file that appears meanwhile).
fn first_free_name(target: &OwnedFd, name: &str) -> Result<String> {
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let candidate = layout::clash_candidate(name, attempt);
        let probe = StoreError::io("looking for a free name");
        if fsutil::identity(target.as_fd(), &candidate)
            .map_err(probe)?
            .is_none()
        {
            return Ok(candidate);
        }
    }
    Ok(name.to_string())
}

/// Checks that the staging file holds the whole upload, and fsyncs it: at most the newest
/// `WRITE_LAG` bytes and what is in flight are left to write (incremental.rs's write-behind).
fn sync_staged(staging_dir: BorrowedFd<'_>, staging: &str, total_size: u64) -> Result<()> {
    let out = fsutil::open_write(staging_dir, staging)
        .map_err(StoreError::io("opening the assembled file"))?;
    let size = fsutil::fresh_regular_file_size(staging_dir, staging)
        .map_err(StoreError::io("opening the assembled file"))?
        .unwrap_or(0);
    if size != total_size {
        return Err(StoreError::Io {
            op: "assembling the file",
            source: io::Error::other(format!(
                "the staging file holds {size} bytes, expected {total_size}"
            )),
        });
    }
    out.sync_all()
        .map_err(StoreError::io("syncing the assembled file"))
}

/// When a previous attempt published the staging file but died before writing the record, the
/// staging file has a second link somewhere among the candidate names: find it by inode.
fn find_earlier_publish(
    staging_dir: &OwnedFd,
    staging: &str,
    target: &OwnedFd,
    name: &str,
    size: u64,
) -> Result<Option<String>> {
    let probe = StoreError::io("recovering an interrupted publish");
    let published: Box<dyn Fn(&fsutil::FileIdentity) -> bool> =
        match fsutil::identity(staging_dir.as_fd(), staging).map_err(probe)? {
            Some(staged) if staged.links >= 2 => Box::new(move |found| found.same_file(&staged)),
            Some(_) => return Ok(None),
            None => match naming::renamed_inode(staging_dir.as_fd(), staging)
                .map_err(StoreError::io("recovering an interrupted publish"))?
            {
                Some(inode) => Box::new(move |found| found.inode == inode && found.size == size),
                None => return Ok(None),
            },
        };
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let candidate = layout::clash_candidate(name, attempt);
        match fsutil::identity(target.as_fd(), &candidate) {
            Ok(Some(found)) if published(&found) => return Ok(Some(candidate)),
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(None),
            Err(e) => return Err(StoreError::io("recovering an interrupted publish")(e)),
        }
    }
    Ok(None)
}

/// Removes a staging file that did not get published (a failed or full-disk assembly).
pub(super) struct StagingGuard<'a> {
    pub(super) dir: BorrowedFd<'a>,
    pub(super) name: &'a str,
    /// Cleared once the file is published.
    pub(super) armed: bool,
}

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fsutil::remove_file(self.dir, self.name);
        }
    }
}

pub(super) fn staging_name(key: &UploadKey) -> String {
    layout::staging_name(&[
        key.user.as_deref().unwrap_or(""),
        &key.identifier,
        &key.filename,
    ])
}

/// Removes the staging name of a published upload (the published name keeps the file), once
/// the record exists. Nothing to do when there is none.
pub(super) fn remove_staging(store: &FsStore, staging: &str) -> Result<()> {
    let root = store.upload_root()?;
    let staging_dir = match fsutil::open_dir(root.as_fd(), STAGING_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("opening the staging directory")(e)),
    };
    // A file an unapproved attempt kept goes too: the upload it was assembled for is finished
    // or gone, and another upload under the same key may bring other bytes of the same size.
    fsutil::remove_file(staging_dir.as_fd(), staging)
        .and_then(|()| fsutil::remove_file(staging_dir.as_fd(), &kept_name(staging)))
        .and_then(|()| naming::forget(staging_dir.as_fd(), staging))
        .map_err(StoreError::io("removing the staging file"))
}

pub(super) fn read_record(upload: &UploadDir, key: &UploadKey) -> Result<Option<Completion>> {
    // A record for another file of the same identifier and name (a different size) is stale:
    // that upload starts afresh and replaces the record when it completes.
    Ok(load_record(upload)?.filter(|record| record.size == key.total_size))
}

/// The completion record, whatever size it names (a counted upload's size is not known before
/// its last chunk).
pub(super) fn load_record(upload: &UploadDir) -> Result<Option<Completion>> {
    read_completion(upload.dir.as_fd(), &layout::record_name(&upload.file_key))
}

/// The completion record `name` in `dir`, if there is a readable one.
pub(super) fn read_completion(dir: BorrowedFd<'_>, name: &str) -> Result<Option<Completion>> {
    let text = read_small(dir, name, MAX_RECORD_SIZE, "reading the completion record")?;
    Ok(text.and_then(|text| serde_json::from_slice::<Completion>(&text).ok()))
}

/// The first `max` bytes of a small file of the store's own; `None` when it is absent.
pub(super) fn read_small(
    dir: BorrowedFd<'_>,
    name: &str,
    max: u64,
    op: &'static str,
) -> Result<Option<Vec<u8>>> {
    let file = match fsutil::open_read(dir, name) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(op)(e)),
    };
    let mut text = Vec::new();
    file.take(max)
        .read_to_end(&mut text)
        .map_err(StoreError::io(op))?;
    Ok(Some(text))
}

pub(super) fn write_record(upload: &UploadDir, completion: &Completion) -> Result<()> {
    let name = layout::record_name(&upload.file_key);
    write_completion(upload.dir.as_fd(), &name, completion)
}

/// Writes a completion record atomically (temp file, fsync, rename).
pub(super) fn write_completion(
    dir: BorrowedFd<'_>,
    name: &str,
    completion: &Completion,
) -> Result<()> {
    let text = serde_json::to_vec(completion).unwrap_or_default();
    write_atomically(dir, name, &text).map_err(StoreError::io("writing the completion record"))
}

/// Replaces `name` in `dir` with `bytes` all at once: a temp file beside it, fsynced, renamed
/// over it. A reader sees the old content or the new, never a part.
pub(super) fn write_atomically(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = format!(".{name}.tmp");
    let mut file = fsutil::create_truncate(dir, &temp)?;
    file.write_all(bytes).and_then(|_| file.sync_all())?;
    fsutil::rename_within(dir, &temp, name)
}

/// Removes this upload's parts and any temporary chunk files left by killed requests.
fn remove_parts(upload: &UploadDir) -> Result<()> {
    remove_named(upload, |name| {
        is_part_of(name, &upload.file_key) || is_chunk_temp_of(name, &upload.file_key)
    })?;
    super::shape::forget(upload)
}

/// Removes this upload's stored parts only (not chunks still arriving).
fn remove_stored_parts(upload: &UploadDir) -> Result<()> {
    remove_named(upload, |name| is_part_of(name, &upload.file_key))
}

fn remove_named(upload: &UploadDir, wanted: impl Fn(&str) -> bool) -> Result<()> {
    let mut names = fsutil::list(upload.dir.as_fd()).map_err(StoreError::io("listing parts"))?;
    names.retain(|name| wanted(name));
    remove_all(upload.dir.as_fd(), &names).map_err(StoreError::io("removing a part"))
}

/// Most threads removing parts at once.
const REMOVERS: usize = 8;
/// Below this many files one thread removes them all.
const PARALLEL_REMOVAL_FROM: usize = 32;

/// Removes `names` from `dir`, several at a time for a large upload. Removing a file frees its
/// blocks in the unlink call itself, and on ext4 mounted with `discard` (without a journal,
/// as on the benchmark machine) that waits for the device's discard, part after part when done
/// one by one. The wait happens
/// after the kernel releases the directory inode's lock (our upload lock is still held), so
/// parallel unlinks overlap it (BENCHMARKS.md,
/// assembly). Only called once the completion record exists, when the order of removal no
/// longer matters. The first error is returned, after every thread has stopped.
fn remove_all(dir: BorrowedFd<'_>, names: &[String]) -> io::Result<()> {
    let threads = REMOVERS.min(names.len() / (PARALLEL_REMOVAL_FROM / REMOVERS));
    if names.len() < PARALLEL_REMOVAL_FROM || threads < 2 {
        return names
            .iter()
            .try_for_each(|name| fsutil::remove_file(dir, name));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> io::Result<()> {
        while !failed.load(Ordering::Relaxed) {
            let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            if let Err(e) = fsutil::remove_file(dir, name) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        // A thread that cannot be started (EAGAIN under a process limit) only means less
        // parallelism: this thread works through the list too.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mine = work();
        helpers
            .into_iter()
            .map(|helper| {
                helper
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a removal thread panicked")))
            })
            .fold(mine, |first, result| first.and(result))
    })
}

/// `<key>.part<digits>`, exactly.
fn is_part_of(name: &str, file_key: &str) -> bool {
    name.strip_prefix(file_key)
        .and_then(|rest| rest.strip_prefix(".part"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// `.<key>.part<digits>.<pid>-<seq>.tmp`, exactly.
fn is_chunk_temp_of(name: &str, file_key: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.strip_prefix(file_key))
        .and_then(|n| n.strip_prefix(".part"))
    else {
        return false;
    };
    let mut pieces = rest.splitn(2, '.');
    let digits = pieces.next().unwrap_or_default();
    let tag = pieces.next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    numeric(digits)
        && tag
            .split_once('-')
            .is_some_and(|(a, b)| numeric(a) && numeric(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_of_one_upload_only() {
        assert!(is_part_of("a.part1", "a"));
        assert!(is_part_of("a.part12", "a"));
        assert!(!is_part_of("a.part1.part1", "a"));
        assert!(!is_part_of("a.part", "a"));
        assert!(!is_part_of("a.complete", "a"));
        assert!(is_chunk_temp_of(".a.part3.123-4.tmp", "a"));
        assert!(!is_chunk_temp_of(".a.part1.part1.123-4.tmp", "a"));
        assert!(!is_chunk_temp_of(".a.complete.tmp", "a"));
    }

    #[test]
    fn remove_all_in_parallel_removes_every_name_and_reports_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let fd = fsutil::open_root(dir.path()).unwrap();
        let names: Vec<String> = (0..100).map(|n| format!("a.part{n}")).collect();
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_all(fd.as_fd(), &names).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Already gone is fine; a name that cannot be unlinked (a directory) is an error.
        let mut names = names;
        std::fs::create_dir(dir.path().join("a.part50")).unwrap();
        names.push("a.part50".into());
        assert!(remove_all(fd.as_fd(), &names).is_err());
    }

    #[test]
    fn a_publish_by_rename_is_found_after_a_crash_by_its_noted_inode() {
        let dir = tempfile::tempdir().unwrap();
        let fd = fsutil::open_root(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.txt"), b"other").unwrap();
        std::fs::write(dir.path().join("s.assembling"), b"12345").unwrap();
        // published as the second candidate, then the process died before the record
        naming::rename_with_note(fd.as_fd(), "s.assembling", fd.as_fd(), "a (1).txt").unwrap();
        let found = find_earlier_publish(&fd, "s.assembling", &fd, "a.txt", 5).unwrap();
        assert_eq!(found.as_deref(), Some("a (1).txt"));
        // a file of another size at that inode is not it
        assert_eq!(
            find_earlier_publish(&fd, "s.assembling", &fd, "a.txt", 6).unwrap(),
            None
        );
    }
}
