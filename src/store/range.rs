//! Byte-range uploads (tus, blueimp): one data file per upload that grows by appending at its
//! end, a small state record beside it, and completion through the shared publish.
//!
//! ```text
//! TEMP_DIR/[~user-<hash>/]~tus-<id>/            a tus upload (~range-<hash>/ for blueimp)
//!     state      JSON: length, file name, relative path, metadata, user
//!     data       the bytes received so far: the upload's offset IS this file's size
//!     complete   completion record (published name, size), once published
//!     .stage.<pid>-<seq>.tmp   a body held aside until it is checked (checksum, multipart)
//! ```
//!
//! The offset is the data file's size and nothing else, so it can never disagree with the
//! bytes: appends only ever write at the end, and a process killed mid-write leaves exactly the
//! bytes it wrote (the kernel keeps them), which the next HEAD reports. An answer is given only
//! after fsync, so every byte an answer counts survives a power loss too (ext4, XFS and btrfs
//! never show a size beyond the data written back).
//!
//! Every change happens under the upload's lock (the record lock on its folder's lock file, lock.rs), taken without waiting:
//! a second request for a busy upload is refused ([`StoreError::Busy`]) rather than queued, so
//! two bodies never interleave. Completion (all under that lock, each step safe to interrupt,
//! see complete.rs): the data gets the staging name (a second link, when the temp and upload
//! dirs share a filesystem: no byte is copied; else a copy, fsynced), the approval step (the
//! completion hook) is asked, the file linked to a free name, the record written, then the
//! staging name and the data removed. A refused file goes with the whole upload folder; an
//! approval that did not decide keeps the data and the assembled file for the next request to
//! ask again.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::complete::{self, Completion, Target};
use super::lock::UploadLock;
use super::{fsutil, layout, Approve, FsStore, Progress, Result, StoreError};
use crate::buffer::AlignedBuffer;

const STATE: &str = "state";
const DATA: &str = "data";
const COMPLETE: &str = "complete";
const MAX_STATE_SIZE: u64 = 64 * 1024;
const BUFFER: usize = 256 * 1024;

/// Which byte-range upload, as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeKey {
    /// The authenticated user, when the web server named one: uploads are scoped by it.
    pub user: Option<String>,
    pub upload: RangeId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeId {
    /// A tus upload, by the id this server issued.
    Tus(String),
    /// An upload known only by its file name (blueimp).
    Named(String),
}

impl RangeKey {
    fn dir_name(&self) -> Result<String> {
        match &self.upload {
            RangeId::Tus(id) => layout::tus_dir_name(id).ok_or(StoreError::UnknownUpload),
            RangeId::Named(name) => Ok(layout::named_range_dir_name(name)),
        }
    }
}

/// What is known about a range upload from its start: fixed until it starts over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeState {
    /// Size of the whole file.
    pub length: u64,
    pub filename: String,
    pub relative_path: Option<String>,
    /// The client's metadata, as it is answered back (tus `Upload-Metadata`).
    pub metadata: Option<String>,
    pub user: Option<String>,
}

/// A range upload as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeInfo {
    pub state: RangeState,
    /// Bytes stored from the start (the length once complete).
    pub offset: u64,
    pub completion: Option<Completion>,
    /// When anything of it last changed: it expires that long after.
    pub modified: SystemTime,
}

/// What an append achieved.
#[derive(Debug)]
pub struct Appended {
    /// Bytes stored from the start after this request.
    pub offset: u64,
    /// Bytes this request added.
    pub received: u64,
    pub progress: Progress,
    /// The body ended in an error (the client went away): what arrived before it is kept.
    pub cut: Option<io::Error>,
    /// The body carried more bytes than the upload has room for; those were not read.
    pub overflow: bool,
}

/// How a body held aside is checked before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageLen {
    /// Exactly this many bytes (a blueimp chunk declares its range).
    Exact(u64),
    /// Any number up to this (what is left of a tus upload).
    AtMost(u64),
}

/// Where a staged body goes when it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitAt {
    /// Appended at `offset`, which must be where the stored bytes end; when `length` is given
    /// the upload must have that length.
    Append { offset: u64, length: Option<u64> },
    /// The upload starts over with this state (created if absent), the body at byte 0.
    StartOver(RangeState),
}

/// A body that arrived whole, held aside, not yet counted.
pub trait StagedRange: Send {
    /// Appends it under the upload's lock, and completes the upload when it is then full
    /// (asking `approve` first).
    fn commit(self: Box<Self>, at: CommitAt, approve: &Approve<'_>) -> Result<Appended>;
}

/// An upload's folder, open, with the folder it lives in (to remove it).
struct RangeDir {
    scope: OwnedFd,
    name: String,
    dir: OwnedFd,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl FsStore {
    /// Opens the upload's folder; `None` when it does not exist. With `create`, it (and the
    /// user's folder) is made when missing; `exclusive` insists on making it.
    fn range_dir(&self, key: &RangeKey, create: bool, exclusive: bool) -> Result<Option<RangeDir>> {
        let name = key.dir_name()?;
        let root = self.temp_root()?;
        let scope = match &key.user {
            Some(user) => {
                match self.temp_subdir_maybe(&root, &layout::user_dir_name(user), create)? {
                    Some(fd) => fd,
                    None => return Ok(None),
                }
            }
            None => root,
        };
        let dir = if exclusive {
            Some(
                fsutil::create_dir(scope.as_fd(), &name, 0o777)
                    .map_err(StoreError::io("creating the upload's temp directory"))?,
            )
        } else {
            self.temp_subdir_maybe(&scope, &name, create)?
        };
        Ok(dir.map(|dir| RangeDir { scope, name, dir }))
    }

    fn existing_range_dir(&self, key: &RangeKey) -> Result<RangeDir> {
        self.range_dir(key, false, false)?
            .ok_or(StoreError::UnknownUpload)
    }

    pub(super) fn create_range(&self, key: &RangeKey, state: &RangeState) -> Result<()> {
        self.upload_root()?;
        let upload = self
            .range_dir(key, true, true)?
            .ok_or(StoreError::UnknownUpload)?;
        // The data file first: the state's existence is what makes the upload exist.
        fsutil::create_new(upload.dir.as_fd(), DATA)
            .and_then(|file| file.sync_all())
            .map_err(StoreError::io("creating the upload's data file"))?;
        write_state(upload.dir.as_fd(), state)?;
        fsutil::sync_dir(&upload.dir).map_err(StoreError::io("syncing the upload's directory"))
    }

    pub(super) fn range_info(&self, key: &RangeKey) -> Result<Option<RangeInfo>> {
        let Some(upload) = self.range_dir(key, false, false)? else {
            return Ok(None);
        };
        let dir = upload.dir.as_fd();
        let Some(state) = read_state(dir, key)? else {
            return Ok(None);
        };
        let modified = [STATE, DATA, COMPLETE]
            .iter()
            .filter_map(|name| fsutil::modified(dir, name).ok().flatten())
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let completion = complete::read_completion(dir, COMPLETE)?;
        let offset = match &completion {
            Some(done) => done.size,
            None => match data_size(dir)? {
                Some(size) => size,
                // Completed (and its data removed) between the two reads above.
                None => match complete::read_completion(dir, COMPLETE)? {
                    Some(done) => {
                        return Ok(Some(RangeInfo {
                            offset: done.size,
                            completion: Some(done),
                            state,
                            modified,
                        }))
                    }
                    None => return Ok(None),
                },
            },
        };
        Ok(Some(RangeInfo {
            state,
            offset,
            completion,
            modified,
        }))
    }

    pub(super) fn append_range(
        &self,
        key: &RangeKey,
        at: u64,
        body: &mut dyn Read,
        approve: &Approve<'_>,
    ) -> Result<Appended> {
        let upload = self.existing_range_dir(key)?;
        let _lock = try_lock(&upload.dir)?;
        let dir = upload.dir.as_fd();
        let state = read_state(dir, key)?.ok_or(StoreError::UnknownUpload)?;
        if let Some(done) = self.finished(&upload, key)? {
            return already_complete(at, done);
        }
        let mut data = open_data(dir)?;
        let offset = file_size(&data)?;
        if at != offset {
            return Err(StoreError::OffsetMismatch { offset });
        }
        data.seek(SeekFrom::Start(offset))
            .map_err(StoreError::io("appending to the upload"))?;
        // A data file longer than its upload (never written so) only gets nothing more.
        let copied = copy_limited(body, &mut data, state.length.saturating_sub(offset));
        // Whatever was written is kept, also after a failed write: durable before answering.
        let synced = data
            .sync_data()
            .map_err(StoreError::io("syncing the upload's data"));
        let copied = copied?;
        synced?;
        let offset = offset + copied.bytes;
        let progress = self.complete_if_full(&upload, key, &state, offset, approve)?;
        Ok(Appended {
            offset,
            received: copied.bytes,
            progress,
            cut: copied.read_error,
            overflow: copied.more,
        })
    }

    pub(super) fn stage_range(
        &self,
        key: &RangeKey,
        create: bool,
        body: &mut dyn Read,
        len: StageLen,
    ) -> Result<Box<dyn StagedRange>> {
        self.upload_root()?;
        let upload = self
            .range_dir(key, create, false)?
            .ok_or(StoreError::UnknownUpload)?;
        let name = format!(
            ".stage.{}-{}.tmp",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let file = fsutil::create_new(upload.dir.as_fd(), &name)
            .map_err(StoreError::io("creating a temporary file for the body"))?;
        let mut staged = FsStagedRange {
            store: self.clone(),
            key: key.clone(),
            upload,
            name,
            file: Some(file),
            len: 0,
        };
        let limit = match len {
            StageLen::Exact(n) | StageLen::AtMost(n) => n,
        };
        let Some(file) = staged.file.as_mut() else {
            return Err(StoreError::UnknownUpload);
        };
        let copied = copy_limited(body, file, limit)?;
        if let Some(e) = copied.read_error {
            return Err(StoreError::BodyRead(e));
        }
        match len {
            StageLen::Exact(n) if copied.bytes != n || copied.more => {
                return Err(StoreError::BodyLength {
                    expected: n,
                    received: copied.bytes + u64::from(copied.more),
                })
            }
            StageLen::AtMost(n) if copied.more => {
                return Err(StoreError::BeyondLength { room: n });
            }
            _ => {}
        }
        staged.len = copied.bytes;
        Ok(Box::new(staged))
    }

    pub(super) fn complete_range(
        &self,
        key: &RangeKey,
        approve: &Approve<'_>,
    ) -> Result<Option<Progress>> {
        let upload = self.existing_range_dir(key)?;
        let Some(_lock) =
            UploadLock::try_acquire(&upload.dir).map_err(StoreError::io("locking the upload"))?
        else {
            return Ok(None);
        };
        let dir = upload.dir.as_fd();
        let state = read_state(dir, key)?.ok_or(StoreError::UnknownUpload)?;
        if let Some(done) = self.finished(&upload, key)? {
            return Ok(Some(Progress::AlreadyComplete(done)));
        }
        let Some(offset) = data_size(dir)? else {
            return Err(StoreError::UnknownUpload);
        };
        self.complete_if_full(&upload, key, &state, offset, approve)
            .map(Some)
    }

    pub(super) fn remove_range(&self, key: &RangeKey) -> Result<()> {
        let upload = self.existing_range_dir(key)?;
        let _lock = try_lock(&upload.dir)?;
        read_state(upload.dir.as_fd(), key)?.ok_or(StoreError::UnknownUpload)?;
        self.discard(key, &upload)
    }

    /// Removes every stored byte of the upload and its folder. Called under the lock.
    fn discard(&self, key: &RangeKey, upload: &RangeDir) -> Result<()> {
        let dir = upload.dir.as_fd();
        // An interrupted publish may have left the staging file (or an unapproved one its kept
        // file); the published name (if any) keeps the finished file.
        complete::remove_staging(self, &staging_name(key, upload))?;
        let fail = StoreError::io("removing the upload");
        let mut names = fsutil::list(dir).map_err(StoreError::io("removing the upload"))?;
        // The state last: until it is gone, the folder is still an upload.
        names.sort_by_key(|name| name == STATE);
        for name in names {
            fsutil::remove_file(dir, &name).map_err(StoreError::io("removing the upload"))?;
        }
        fsutil::remove_dir(upload.scope.as_fd(), &upload.name).map_err(fail)
    }

    /// The completion record, when the upload was completed; a cleanup that a crash
    /// interrupted is finished first. Called under the lock.
    fn finished(&self, upload: &RangeDir, key: &RangeKey) -> Result<Option<Completion>> {
        let Some(done) = complete::read_completion(upload.dir.as_fd(), COMPLETE)? else {
            return Ok(None);
        };
        complete::remove_staging(self, &staging_name(key, upload))?;
        remove_leftovers(upload.dir.as_fd())?;
        Ok(Some(done))
    }

    /// Publishes the upload once its bytes reach its length and `approve` accepts it; a refused
    /// upload is removed whole. Called under the lock.
    fn complete_if_full(
        &self,
        upload: &RangeDir,
        key: &RangeKey,
        state: &RangeState,
        offset: u64,
        approve: &Approve<'_>,
    ) -> Result<Progress> {
        if offset != state.length {
            return Ok(Progress::Incomplete);
        }
        let dir = upload.dir.as_fd();
        let target = Target {
            staging: staging_name(key, upload),
            filename: &state.filename,
            relative_path: state.relative_path.as_deref(),
            size: state.length,
            appended: false,
        };
        let published = complete::publish(
            self,
            &target,
            |staging_dir, staging| copy_data(dir, staging_dir, staging, state.length),
            approve,
        )?;
        let completion = match published {
            complete::Published::Done(completion) => completion,
            complete::Published::Rejected(reason) => {
                self.discard(key, upload)?;
                return Ok(Progress::Rejected { reason });
            }
        };
        complete::write_completion(dir, COMPLETE, &completion)?;
        complete::remove_staging(self, &target.staging)?;
        remove_leftovers(dir)?;
        Ok(Progress::Completed(completion))
    }
}

/// The answer to an append for an upload already completed: a no-op at its end, a conflict
/// anywhere else.
fn already_complete(at: u64, done: Completion) -> Result<Appended> {
    if at != done.size {
        return Err(StoreError::OffsetMismatch { offset: done.size });
    }
    Ok(Appended {
        offset: done.size,
        received: 0,
        progress: Progress::AlreadyComplete(done),
        cut: None,
        overflow: false,
    })
}

/// A staged body of the filesystem store: a temporary file in the upload's folder.
struct FsStagedRange {
    store: FsStore,
    key: RangeKey,
    upload: RangeDir,
    name: String,
    file: Option<File>,
    len: u64,
}

impl StagedRange for FsStagedRange {
    fn commit(mut self: Box<Self>, at: CommitAt, approve: &Approve<'_>) -> Result<Appended> {
        self.file.take();
        let upload = &self.upload;
        let dir = upload.dir.as_fd();
        let _lock = try_lock(&upload.dir)?;
        let (state, offset) = match at {
            CommitAt::StartOver(state) => {
                // The stored bytes of an earlier upload of this name go, and its record with
                // them (its published file stays): this is another upload of the name.
                complete::remove_staging(&self.store, &staging_name(&self.key, upload))?;
                fsutil::remove_file(dir, COMPLETE)
                    .map_err(StoreError::io("starting the upload over"))?;
                fsutil::create_truncate(dir, DATA)
                    .and_then(|file| file.sync_all())
                    .map_err(StoreError::io("starting the upload over"))?;
                write_state(dir, &state)?;
                (state, 0)
            }
            CommitAt::Append { offset: at, length } => {
                let state = read_state(dir, &self.key)?.ok_or(StoreError::UnknownUpload)?;
                if length.is_some_and(|length| length != state.length) {
                    return Err(StoreError::LengthMismatch {
                        length: state.length,
                    });
                }
                if let Some(done) = self.store.finished(upload, &self.key)? {
                    if self.len == 0 {
                        return already_complete(at, done);
                    }
                    return Err(StoreError::OffsetMismatch { offset: done.size });
                }
                let Some(offset) = data_size(dir)? else {
                    return Err(StoreError::UnknownUpload);
                };
                if at != offset {
                    return Err(StoreError::OffsetMismatch { offset });
                }
                (state, offset)
            }
        };
        let room = state.length.saturating_sub(offset);
        if self.len > room {
            return Err(StoreError::BeyondLength { room });
        }
        let mut data = open_data(dir)?;
        data.seek(SeekFrom::Start(offset))
            .map_err(StoreError::io("appending to the upload"))?;
        let mut staged = fsutil::open_read(dir, &self.name)
            .map_err(StoreError::io("reading the held body back"))?;
        let copied = io::copy(&mut staged, &mut data);
        let synced = data
            .sync_data()
            .map_err(StoreError::io("syncing the upload's data"));
        let copied = copied.map_err(StoreError::io("appending to the upload"))?;
        synced?;
        let offset = offset + copied;
        let progress = self
            .store
            .complete_if_full(upload, &self.key, &state, offset, approve)?;
        Ok(Appended {
            offset,
            received: copied,
            progress,
            cut: None,
            overflow: false,
        })
    }
}

impl Drop for FsStagedRange {
    fn drop(&mut self) {
        self.file.take();
        let _ = fsutil::remove_file(self.upload.dir.as_fd(), &self.name);
    }
}

/// Once the record exists: the data (published now) and bodies that killed requests held
/// aside. A body still arriving loses its file too; its commit is refused anyway (the upload is
/// complete) before it would read it.
fn remove_leftovers(dir: BorrowedFd<'_>) -> Result<()> {
    let fail = "removing a completed upload's data";
    let mut names = fsutil::list(dir).map_err(StoreError::io(fail))?;
    names.retain(|name| name == DATA || (name.starts_with(".stage.") && name.ends_with(".tmp")));
    for name in names {
        fsutil::remove_file(dir, &name).map_err(StoreError::io(fail))?;
    }
    Ok(())
}

fn staging_name(key: &RangeKey, upload: &RangeDir) -> String {
    layout::range_staging_name(key.user.as_deref(), &upload.name)
}

fn try_lock(dir: &OwnedFd) -> Result<UploadLock> {
    UploadLock::try_acquire(dir)
        .map_err(StoreError::io("locking the upload"))?
        .ok_or(StoreError::Busy)
}

fn write_state(dir: BorrowedFd<'_>, state: &RangeState) -> Result<()> {
    let text = serde_json::to_vec(state).unwrap_or_default();
    complete::write_atomically(dir, STATE, &text)
        .map_err(StoreError::io("writing the upload's state"))
}

/// The state, when there is one and it belongs to this key's user (the folder already does;
/// this is the second check).
fn read_state(dir: BorrowedFd<'_>, key: &RangeKey) -> Result<Option<RangeState>> {
    let op = "reading the upload's state";
    let Some(text) = complete::read_small(dir, STATE, MAX_STATE_SIZE, op)? else {
        return Ok(None);
    };
    let state: RangeState = serde_json::from_slice(&text).map_err(|e| StoreError::Io {
        op: "reading the upload's state",
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    Ok((state.user == key.user).then_some(state))
}

fn open_data(dir: BorrowedFd<'_>) -> Result<File> {
    fsutil::open_write(dir, DATA).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => StoreError::UnknownUpload,
        _ => StoreError::io("opening the upload's data")(e),
    })
}

fn data_size(dir: BorrowedFd<'_>) -> Result<Option<u64>> {
    fsutil::regular_file_size(dir, DATA).map_err(StoreError::io("reading the upload's offset"))
}

fn file_size(file: &File) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(StoreError::io("reading the upload's offset"))
}

/// Gives the finished data its staging name: a second link when the temp and upload dirs share
/// a filesystem (nothing copied, nothing to sync: every append was synced before its answer),
/// else a copy with the kernel's copy, fsynced. A link leaves the staging file with two names
/// before it is published; a retry after a crash there finds no published name with its inode
/// (complete.rs) and links again.
fn copy_data(
    dir: BorrowedFd<'_>,
    staging_dir: BorrowedFd<'_>,
    staging: &str,
    length: u64,
) -> Result<()> {
    let probe = StoreError::io("looking at the staging file");
    if fsutil::identity(staging_dir, staging)
        .map_err(probe)?
        .is_some()
    {
        fsutil::remove_file(staging_dir, staging)
            .map_err(StoreError::io("removing a stale staging file"))?;
    }
    let size = fsutil::regular_file_size(dir, DATA)
        .map_err(StoreError::io("opening the upload's data"))?;
    if size == Some(length) && fsutil::link_no_replace(dir, DATA, staging_dir, staging).is_ok() {
        return Ok(());
    }
    let mut out = fsutil::create_truncate(staging_dir, staging)
        .map_err(StoreError::io("creating the staging file"))?;
    let mut input =
        fsutil::open_read(dir, DATA).map_err(StoreError::io("opening the upload's data"))?;
    let copied = io::copy(&mut input, &mut out).map_err(StoreError::io("assembling the file"))?;
    if copied != length {
        return Err(StoreError::Io {
            op: "assembling the file",
            source: io::Error::other(format!("the data holds {copied} bytes, expected {length}")),
        });
    }
    out.sync_all()
        .map_err(StoreError::io("syncing the assembled file"))
}

/// What [`copy_limited`] moved.
struct Copied {
    bytes: u64,
    /// The body failed after `bytes` (those were written).
    read_error: Option<io::Error>,
    /// The body had more than the limit.
    more: bool,
}

/// Copies the body to `out` until it ends, fails, or `limit` bytes were copied; then tells
/// whether it had more. Only a failed write is an error: every byte read is written first.
fn copy_limited(body: &mut dyn Read, out: &mut File, limit: u64) -> Result<Copied> {
    let mut aligned = AlignedBuffer::new(BUFFER);
    let buffer = aligned.as_mut_slice();
    let mut copied = Copied {
        bytes: 0,
        read_error: None,
        more: false,
    };
    while copied.bytes < limit {
        let want = (limit - copied.bytes).min(BUFFER as u64) as usize;
        let n = match body.read(&mut buffer[..want]) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                copied.read_error = Some(e);
                return Ok(copied);
            }
        };
        out.write_all(&buffer[..n])
            .map_err(StoreError::io("writing the upload's data"))?;
        copied.bytes += n as u64;
    }
    loop {
        match body.read(&mut buffer[..1]) {
            Ok(n) => {
                copied.more = n > 0;
                return Ok(copied);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                copied.read_error = Some(e);
                return Ok(copied);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::publish_always;
    use std::fs;

    fn store() -> (tempfile::TempDir, FsStore) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("temp")).unwrap();
        fs::create_dir(root.path().join("uploads")).unwrap();
        let store = FsStore::new(&root.path().join("temp"), &root.path().join("uploads"));
        (root, store)
    }

    fn tus(id: &str) -> RangeKey {
        RangeKey {
            user: None,
            upload: RangeId::Tus(id.repeat(32)),
        }
    }

    fn state(length: u64) -> RangeState {
        RangeState {
            length,
            filename: "f.bin".into(),
            relative_path: None,
            metadata: None,
            user: None,
        }
    }

    #[test]
    fn appends_only_at_the_end_and_publishes_once() {
        let (root, store) = store();
        let key = tus("a");
        store.create_range(&key, &state(10)).unwrap();
        let a = store
            .append_range(&key, 0, &mut &b"hello"[..], &publish_always)
            .unwrap();
        assert_eq!((a.offset, a.received), (5, 5));
        assert!(matches!(
            store.append_range(&key, 3, &mut &b"xx"[..], &publish_always),
            Err(StoreError::OffsetMismatch { offset: 5 })
        ));
        let b = store
            .append_range(&key, 5, &mut &b"worldEXTRA"[..], &publish_always)
            .unwrap();
        assert!(b.overflow);
        assert!(matches!(b.progress, Progress::Completed(_)));
        assert_eq!(
            fs::read(root.path().join("uploads/f.bin")).unwrap(),
            b"helloworld"
        );
        let again = store
            .append_range(&key, 10, &mut &b""[..], &publish_always)
            .unwrap();
        assert!(matches!(again.progress, Progress::AlreadyComplete(_)));
        let info = store.range_info(&key).unwrap().unwrap();
        assert_eq!(info.offset, 10);
        store.remove_range(&key).unwrap();
        assert_eq!(store.range_info(&key).unwrap(), None);
        assert!(root.path().join("uploads/f.bin").exists());
    }

    #[test]
    fn a_busy_upload_refuses_a_second_writer() {
        let (_root, store) = store();
        let key = tus("b");
        store.create_range(&key, &state(10)).unwrap();
        let upload = store.existing_range_dir(&key).unwrap();
        let held = try_lock(&upload.dir).unwrap();
        assert!(matches!(
            store.append_range(&key, 0, &mut &b"x"[..], &publish_always),
            Err(StoreError::Busy)
        ));
        assert!(matches!(store.remove_range(&key), Err(StoreError::Busy)));
        drop(held);
        assert_eq!(
            store
                .append_range(&key, 0, &mut &b"x"[..], &publish_always)
                .unwrap()
                .offset,
            1
        );
    }

    #[test]
    fn staged_bodies_count_only_when_committed() {
        let (_root, store) = store();
        let key = RangeKey {
            user: Some("u".into()),
            upload: RangeId::Named("a b.txt".into()),
        };
        let short = store.stage_range(&key, true, &mut &b"abc"[..], StageLen::Exact(4));
        assert!(matches!(short, Err(StoreError::BodyLength { .. })));
        let staged = store
            .stage_range(&key, true, &mut &b"abcd"[..], StageLen::Exact(4))
            .unwrap();
        drop(staged);
        assert_eq!(store.range_info(&key).unwrap(), None);
        let staged = store
            .stage_range(&key, true, &mut &b"abcd"[..], StageLen::Exact(4))
            .unwrap();
        let done = staged.commit(
            CommitAt::StartOver(RangeState {
                user: Some("u".into()),
                ..state(6)
            }),
            &publish_always,
        );
        assert_eq!(done.unwrap().offset, 4);
        let other_user = RangeKey {
            user: None,
            ..key.clone()
        };
        assert_eq!(store.range_info(&other_user).unwrap(), None);
        let staged = store
            .stage_range(&key, false, &mut &b"ef"[..], StageLen::Exact(2))
            .unwrap();
        let wrong_length = CommitAt::Append {
            offset: 4,
            length: Some(7),
        };
        assert!(matches!(
            staged.commit(wrong_length, &publish_always),
            Err(StoreError::LengthMismatch { length: 6 })
        ));
        let staged = store
            .stage_range(&key, false, &mut &b"ef"[..], StageLen::Exact(2))
            .unwrap();
        let appended = staged
            .commit(
                CommitAt::Append {
                    offset: 4,
                    length: Some(6),
                },
                &publish_always,
            )
            .unwrap();
        assert!(matches!(appended.progress, Progress::Completed(_)));
        let mut leftovers: Vec<String> =
            fs::read_dir(store.temp_dir.join(layout::user_dir_name("u")))
                .unwrap()
                .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        leftovers.sort();
        assert_eq!(leftovers, [".resumable-lock", "complete", "state"]);
    }
}
