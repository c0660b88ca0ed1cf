//! Everything on disk and nothing about HTTP: where parts live, writing a chunk atomically,
//! the per-upload lock, completion, assembly and publishing, and whole files (form uploads).

mod chunk;
pub mod cleanup;
mod complete;
mod counted;
mod direct;
pub mod fsutil;
mod incremental;
pub mod layout;
pub mod listing;
mod lock;
mod naming;
mod publish;
pub mod published;
mod range;
pub mod remote;
mod shape;
pub mod space;
mod whole;

use std::io;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use chunk::PendingChunk;
pub use complete::Completion;
pub use range::{
    Appended, CommitAt, RangeId, RangeInfo, RangeKey, RangeState, StageLen, StagedRange,
};
pub use space::MinFreeSpace;

/// Which upload a chunk belongs to, as the store sees it.
#[derive(Debug, Clone)]
pub struct UploadKey {
    /// The client dialect that sends it (for `resumable-cgi list` and the completion hook).
    pub client: &'static str,
    /// The authenticated user, when the web server named one.
    pub user: Option<String>,
    pub identifier: String,
    pub filename: String,
    pub relative_path: Option<String>,
    pub total_size: u64,
    pub chunk_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The temp or upload directory itself is missing or unusable.
    #[error(
        "the {which} directory {} cannot be used: {source} (it must exist and be writable by this process)",
        path.display()
    )]
    Root {
        which: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Something planted a symlink where the store keeps its own directories; it is never
    /// followed.
    #[error("{} is a symlink; refusing to follow it (remove it, or point the {which} setting at the real directory)", path.display())]
    Symlink { which: &'static str, path: PathBuf },
    /// The disk (or quota) is full: the client may retry once space is freed.
    #[error("no space left while {op}: {source}")]
    NoSpace { op: &'static str, source: io::Error },
    /// Any other filesystem failure, with what was being done.
    #[error("filesystem error while {op}: {source}")]
    Io { op: &'static str, source: io::Error },
    /// The request body delivered a different number of bytes than the chunk declares.
    #[error("the body carried {received} bytes but the chunk declares {expected}")]
    BodyLength { expected: u64, received: u64 },
    /// Reading the request body failed (the client went away, or a malformed stream).
    #[error("reading the request body failed: {0}")]
    BodyRead(#[source] io::Error),
    /// Copying the finished file to the object store failed (it stays in the upload dir).
    #[error(transparent)]
    Publish(#[from] remote::PublishError),
    /// Every candidate name for the finished file is taken.
    #[error("no free name for {0:?} in the upload directory")]
    NoFreeName(String),
    /// A chunk contradicts what the upload's stored chunks established (its size, the chunk
    /// count, the file's end): it is refused and nothing is stored.
    #[error("{0}")]
    Contradicts(String),
    /// A chunk whose length only its body tells, or the file it completes, is over a limit.
    #[error("{0}")]
    OverLimit(String),
    /// A byte-range upload that does not exist (never created, removed, or another user's).
    #[error("no such upload")]
    UnknownUpload,
    /// Another request holds the upload's lock right now (a second writer is refused, never
    /// queued, so bodies never interleave).
    #[error("another request is writing to this upload")]
    Busy,
    /// A byte range that does not start where the stored bytes end.
    #[error("the upload holds {offset} bytes; a body must start there")]
    OffsetMismatch { offset: u64 },
    /// A byte range for a file of another size than the upload's.
    #[error("the upload is {length} bytes long")]
    LengthMismatch { length: u64 },
    /// More bytes than the upload has room for.
    #[error("the body is longer than the {room} bytes left in the upload")]
    BeyondLength { room: u64 },
    /// A new upload would leave less free space than `RESUMABLE_MIN_FREE_SPACE` asks for.
    #[error(
        "the {which} directory {} has {available} bytes available; a new upload needs {needed} \
         and {keep} must stay free (RESUMABLE_MIN_FREE_SPACE)",
        path.display()
    )]
    LowSpace {
        which: &'static str,
        path: PathBuf,
        available: u64,
        needed: u64,
        keep: u64,
    },
    /// The completion hook did not decide (could not start, ran too long, was killed): the
    /// assembled file and the parts are kept for the next attempt.
    #[error(transparent)]
    Hook(#[from] crate::hook::HookError),
}

impl StoreError {
    fn io(op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| {
            if fsutil::is_no_space(&source) {
                StoreError::NoSpace { op, source }
            } else {
                StoreError::Io { op, source }
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What storing a chunk (or asking about completion) achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not every chunk is stored yet (the one just received, if any, is).
    Incomplete,
    /// This request completed the upload: the file was just published.
    Completed(Completion),
    /// The upload had already been completed earlier; nothing was written.
    AlreadyComplete(Completion),
    /// The approval step refused the finished file: it and its parts are gone.
    Rejected { reason: String },
}

/// A finished file, assembled and synced, that does not have its name yet: what the approval
/// step (the completion hook) decides on.
#[derive(Debug, Clone, Copy)]
pub struct AssembledFile<'a> {
    /// Absolute path of the assembled file, readable by this process's user.
    pub path: &'a Path,
    /// The path it is to be published under, relative to the upload dir (another file may
    /// still take it first; then it gets `name (1).ext`).
    pub name: &'a str,
    pub size: u64,
}

/// What the approval step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Give the file its name; `data` goes into the completion record and every answer about it.
    Publish { data: Option<serde_json::Value> },
    /// Discard the file and its parts; `reason` is for the client.
    Reject { reason: String },
}

/// The approval step every completion runs between assembly and publishing. An error means
/// "no decision now" ([`StoreError::Hook`]): the file is kept and the next attempt asks again.
/// It runs under the upload's lock, so once per completion however many requests race.
pub type Approve<'a> = dyn Fn(&AssembledFile<'_>) -> Result<Approval> + 'a;

/// The approval step when nothing is configured: publish.
pub fn publish_always(_: &AssembledFile<'_>) -> Result<Approval> {
    Ok(Approval::Publish { data: None })
}

/// One chunk of an upload: its 1-based number and the bytes it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSlot {
    pub number: u64,
    pub size: u64,
}

/// A received chunk, or why it could not be received.
pub type ChunkReceipt = Result<Box<dyn ReceivedChunk>>;

/// How long a chunk's body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    Exactly(u64),
    /// The body says when it ends (a multipart part); more than this many bytes is refused.
    AtMost(u64),
}

/// A counted chunk's place among its file's chunks (Dropzone, Plupload): every chunk but the
/// last is exactly the chunk size, the last at most that and at least one byte (unless it is
/// the only chunk), and the total is known once the last chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// 1-based, at most `count`.
    pub number: u64,
    pub count: u64,
    /// The chunk size when the client sends it; otherwise the upload's first stored chunk
    /// that is not the last establishes it.
    pub chunk_size: Option<u64>,
    /// Chunk 1 begins a new upload under this key: whatever an earlier one left (parts, its
    /// completion) is set aside. For clients with no upload id that send chunks in order.
    pub first_begins: bool,
    /// Largest total size accepted.
    pub max_total: u64,
}

/// What the client's "every chunk was sent" achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// This request completed the upload.
    Completed(Completion),
    AlreadyComplete(Completion),
    /// Not complete: the first missing chunk numbers (1-based, at most
    /// [`MISSING_LISTED`]), and whether more are missing.
    Missing {
        first: Vec<u64>,
        more: bool,
    },
    /// The approval step refused the finished file: it and its parts are gone.
    Rejected {
        reason: String,
    },
}

/// How many missing chunks a [`Finish::Missing`] names.
pub const MISSING_LISTED: usize = 20;

/// What the service needs from storage, whatever keeps the bytes. Every method is safe to call
/// from many processes and hosts at once for the same upload: implementations serialise what
/// must be serialised (the filesystem store with a per-upload lock).
pub trait UploadStore: Send + Sync {
    /// The finished upload, if this one was completed (and its record matches the key).
    fn completion(&self, key: &UploadKey) -> Result<Option<Completion>>;

    /// Whether the chunk is stored with exactly its size, under this key's geometry.
    fn has_chunk(&self, key: &UploadKey, slot: ChunkSlot) -> Result<bool>;

    /// Receives chunk `slot.number` from `body`, which must carry exactly `slot.size` bytes. The chunk
    /// does not count until [`ReceivedChunk::commit`]: the caller first checks whatever framing
    /// follows the bytes (a multipart trailer), and dropping it discards the chunk.
    fn receive_chunk(&self, key: &UploadKey, slot: ChunkSlot, body: &mut dyn Read) -> ChunkReceipt;

    /// Starts receiving one whole file. An error here means no file could be created at all
    /// (the upload dir or its staging folder is missing or unwritable, or out of inodes).
    fn begin_file(&self) -> Result<Box<dyn IncomingFile>>;

    /// Completes the upload if every chunk is already stored (a retry after a failed assembly,
    /// e.g. once a full disk has space again, or a hook that did not decide). Nothing is
    /// written otherwise.
    fn complete_if_covered(&self, key: &UploadKey, approve: &Approve<'_>) -> Result<Progress>;

    /// Whether anything of this upload is stored already (a part, or its recorded geometry):
    /// false for the first chunk of a new upload.
    fn has_upload(&self, key: &UploadKey) -> Result<bool>;

    /// Refuses ([`StoreError::LowSpace`]) to start an upload that will put `temp_bytes` in the
    /// temp dir and `upload_bytes` in the upload dir if that would leave less than `reserve`
    /// free on either filesystem.
    fn ensure_room(&self, temp_bytes: u64, upload_bytes: u64, reserve: MinFreeSpace) -> Result<()>;

    /// Receives a counted chunk, whose size is its body's (`size`). `key`'s sizes are not
    /// used: when the chunk is committed, its size is checked against the shape the upload's
    /// earlier chunks recorded, and the chunk size and total come from there.
    fn receive_counted_chunk(
        &self,
        key: &UploadKey,
        place: Place,
        size: BodySize,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>>;

    /// The client says it sent all `count` chunks: completes the upload if they are stored,
    /// else names the missing ones. `key.chunk_size` is not used; the recorded one is.
    fn finish(&self, key: &UploadKey, count: u64, approve: &Approve<'_>) -> Result<Finish>;

    /// Whether anything of this upload is stored: parts under this key's geometry, or its
    /// completion.
    fn knows(&self, key: &UploadKey) -> Result<bool>;

    /// Creates a byte-range upload with nothing stored yet; it must not exist.
    fn create_range(&self, key: &RangeKey, state: &RangeState) -> Result<()>;

    /// A byte-range upload as it stands (no lock taken), `None` when there is none.
    fn range_info(&self, key: &RangeKey) -> Result<Option<RangeInfo>>;

    /// Appends `body` at `at`, which must be where the stored bytes end, under the upload's
    /// lock (refused with [`StoreError::Busy`] while another request holds it). Bytes that
    /// arrived are kept and durable even when the body is cut off; at most the bytes left are
    /// read. Completes the upload when it is then full and `approve` accepts it (a refused
    /// upload is removed whole).
    fn append_range(
        &self,
        key: &RangeKey,
        at: u64,
        body: &mut dyn Read,
        approve: &Approve<'_>,
    ) -> Result<Appended>;

    /// Receives a body that must be checked before it counts (a checksum, a multipart trailer,
    /// an exact length); `create` makes the upload's folder when missing.
    fn stage_range(
        &self,
        key: &RangeKey,
        create: bool,
        body: &mut dyn Read,
        len: StageLen,
    ) -> Result<Box<dyn StagedRange>>;

    /// Publishes an upload whose bytes are all stored but which is not complete (the request
    /// that filled it was killed mid-completion, or its approval did not decide), asking
    /// `approve` first. `None` while another request holds its lock.
    fn complete_range(&self, key: &RangeKey, approve: &Approve<'_>) -> Result<Option<Progress>>;

    /// Removes every stored byte of a byte-range upload (its published file, if any, stays).
    fn remove_range(&self, key: &RangeKey) -> Result<()>;
}

/// What receiving a whole file achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The file ended within the limit: this many bytes, fsynced.
    Whole(u64),
    /// More bytes than the limit came: reading stopped there and nothing was kept.
    TooLarge,
}

/// A whole file (a form upload's file part) on its way in: not visible under any final name
/// until [`IncomingFile::publish`]; dropping it removes what was received.
pub trait IncomingFile: Send {
    /// Copies `body` into the file until it ends, and fsyncs it; or stops as soon as more than
    /// `max` bytes arrived, answering [`Received::TooLarge`] with nothing kept (the rest of
    /// `body` is left unread).
    fn receive(&mut self, body: &mut dyn Read, max: u64) -> Result<Received>;

    /// Gives the received file its name in the upload dir: `filename` made safe, in the
    /// folders of `relative_path`, the first free name (`name (1).ext`, ...). Answers the path
    /// relative to the upload dir.
    fn publish(self: Box<Self>, filename: &str, relative_path: Option<&str>) -> Result<String>;

    /// The absolute path of the received file, for the completion hook to read.
    fn path(&self) -> Result<std::path::PathBuf>;
}

/// A chunk whose bytes all arrived, not yet counted.
pub trait ReceivedChunk: Send {
    /// How many bytes arrived.
    fn size(&self) -> u64;

    /// Counts the chunk and, when the upload is then complete, assembles it, asks `approve`
    /// and publishes it, exactly once however many requests race here.
    fn commit(self: Box<Self>, approve: &Approve<'_>) -> Result<Progress>;
}

/// A temp dir and an upload dir; cheap to create per request.
#[derive(Debug, Clone)]
pub struct FsStore {
    temp_dir: PathBuf,
    upload_dir: PathBuf,
    /// Where finished files are published besides the upload dir, if anywhere.
    publish: Option<remote::PublishConfig>,
}

/// The open directories and names of one upload's temp state.
struct UploadDir {
    dir: OwnedFd,
    file_key: String,
}

impl FsStore {
    pub fn new(temp_dir: &Path, upload_dir: &Path) -> FsStore {
        FsStore {
            temp_dir: temp_dir.to_path_buf(),
            upload_dir: upload_dir.to_path_buf(),
            publish: None,
        }
    }

    /// The same store, publishing finished files to `publish` too.
    pub fn publishing(self, publish: Option<remote::PublishConfig>) -> FsStore {
        FsStore { publish, ..self }
    }

    fn temp_root(&self) -> Result<OwnedFd> {
        fsutil::open_root(&self.temp_dir).map_err(|source| StoreError::Root {
            which: "temp",
            path: self.temp_dir.clone(),
            source,
        })
    }

    fn upload_root(&self) -> Result<OwnedFd> {
        fsutil::open_root(&self.upload_dir).map_err(|source| StoreError::Root {
            which: "upload",
            path: self.upload_dir.clone(),
            source,
        })
    }

    /// Opens `TEMP/[~user-…/]<identifier>/`; `None` when it does not exist.
    fn upload_dir(&self, key: &UploadKey) -> Result<Option<UploadDir>> {
        let root = self.temp_root()?;
        let scope = match &key.user {
            Some(user) => match self.temp_subdir(&root, &layout::user_dir_name(user))? {
                Some(fd) => fd,
                None => return Ok(None),
            },
            None => root,
        };
        let dir = self.temp_subdir(&scope, &layout::upload_dir_name(&key.identifier))?;
        Ok(dir.map(|dir| UploadDir {
            dir,
            file_key: layout::file_key(&key.filename),
        }))
    }

    /// Like [`FsStore::upload_dir`], creating the directories that do not exist yet.
    fn create_upload_dir(&self, key: &UploadKey) -> Result<UploadDir> {
        let root = self.temp_root()?;
        let scope = match &key.user {
            Some(user) => self.ensure_temp_subdir(&root, &layout::user_dir_name(user))?,
            None => root,
        };
        Ok(UploadDir {
            dir: self.ensure_temp_subdir(&scope, &layout::upload_dir_name(&key.identifier))?,
            file_key: layout::file_key(&key.filename),
        })
    }

    /// Opens one directory of the temp dir's tree; `None` when it does not exist.
    fn temp_subdir(&self, parent: &OwnedFd, name: &str) -> Result<Option<OwnedFd>> {
        match fsutil::open_dir(parent.as_fd(), name) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.temp_subdir_error(parent, name, e)),
        }
    }

    /// [`FsStore::temp_subdir`], or [`FsStore::ensure_temp_subdir`] when `create`.
    fn temp_subdir_maybe(
        &self,
        parent: &OwnedFd,
        name: &str,
        create: bool,
    ) -> Result<Option<OwnedFd>> {
        if create {
            self.ensure_temp_subdir(parent, name).map(Some)
        } else {
            self.temp_subdir(parent, name)
        }
    }

    /// Opens one directory of the temp dir's tree, creating it first when needed.
    fn ensure_temp_subdir(&self, parent: &OwnedFd, name: &str) -> Result<OwnedFd> {
        fsutil::ensure_dir(parent.as_fd(), name, 0o777)
            .map_err(|e| self.temp_subdir_error(parent, name, e))
    }

    /// A symlink planted in the temp dir's tree is refused by name, not reported as the
    /// kernel's "Not a directory".
    fn temp_subdir_error(&self, parent: &OwnedFd, name: &str, error: io::Error) -> StoreError {
        if fsutil::is_symlink(parent.as_fd(), name) {
            return StoreError::Symlink {
                which: "RESUMABLE_TEMP_DIR",
                path: self.temp_dir.join(name),
            };
        }
        StoreError::io("opening the upload's temp directory")(error)
    }

    /// Streams chunk `number` into a fresh temporary file beside its final name.
    fn receive(
        &self,
        key: &UploadKey,
        number: u64,
        size: BodySize,
        place: Option<Place>,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>> {
        // The upload dir must exist too, checked now so that a missing one is reported before
        // the body is read.
        self.upload_root()?;
        let upload = self.create_upload_dir(key)?;
        let direct = match (place, size) {
            (None, BodySize::Exactly(expected)) => {
                direct::begin(self, &upload, key, number, expected)
            }
            _ => None,
        };
        let pending = match direct {
            Some(mut chunk) => {
                chunk.write(body)?;
                Pending::Direct(chunk)
            }
            None => {
                let mut part = PendingChunk::create(upload.dir, &upload.file_key, number)?;
                part.write_sized(body, size)?;
                Pending::Part(part)
            }
        };
        Ok(Box::new(FsReceivedChunk {
            store: self.clone(),
            key: key.clone(),
            pending,
            place,
        }))
    }
}

/// A chunk of the filesystem store, received but not yet counted.
struct FsReceivedChunk {
    store: FsStore,
    key: UploadKey,
    pending: Pending,
    /// Set for a counted chunk.
    place: Option<Place>,
}

/// Where a received chunk's bytes are: in the temporary file beside its part's final name, or
/// (a chunk that continues the staging file) in the staging file already.
enum Pending {
    Part(PendingChunk),
    Direct(direct::DirectChunk),
}

impl ReceivedChunk for FsReceivedChunk {
    fn size(&self) -> u64 {
        match &self.pending {
            Pending::Part(part) => part.received,
            Pending::Direct(chunk) => chunk.received,
        }
    }

    fn commit(self: Box<Self>, approve: &Approve<'_>) -> Result<Progress> {
        let FsReceivedChunk {
            store,
            key,
            pending,
            place,
        } = *self;
        match (pending, place) {
            (Pending::Direct(chunk), _) => chunk.commit(&store, &key, approve),
            (Pending::Part(part), None) => {
                complete::commit_and_complete(&store, &key, Some(part), approve)
            }
            (Pending::Part(part), Some(place)) => {
                counted::commit(&store, &key, part, place, approve)
            }
        }
    }
}

impl UploadStore for FsStore {
    fn completion(&self, key: &UploadKey) -> Result<Option<Completion>> {
        match self.upload_dir(key)? {
            None => Ok(None),
            Some(upload) => match complete::read_record(&upload, key)? {
                // complete here but not yet in the object store: publish it now (a test
                // request after the store was unreachable), or answer why not
                Some(done) if remote::pending(self.publish.as_ref(), &done) => {
                    // Already approved when it was published here: nothing is asked again.
                    match complete::commit_and_complete(self, key, None, &publish_always)? {
                        Progress::Completed(done) | Progress::AlreadyComplete(done) => {
                            Ok(Some(done))
                        }
                        Progress::Incomplete | Progress::Rejected { .. } => Ok(None),
                    }
                }
                other => Ok(other),
            },
        }
    }

    fn has_chunk(&self, key: &UploadKey, slot: ChunkSlot) -> Result<bool> {
        let Some(upload) = self.upload_dir(key)? else {
            return Ok(false);
        };
        // A part stored under another chunk size may have the right size and the wrong bytes.
        if !shape::agrees(&upload, key)? {
            return Ok(false);
        }
        let part = layout::part_name(&upload.file_key, slot.number);
        let found = fsutil::regular_file_size(upload.dir.as_fd(), &part)
            .map_err(StoreError::io("looking for a part"))?;
        if found == Some(slot.size) {
            return Ok(true);
        }
        // Appended to the staging file already (its part is gone).
        let end = (slot.number.checked_sub(1))
            .and_then(|before| before.checked_mul(key.chunk_size))
            .and_then(|start| start.checked_add(slot.size));
        let staged = incremental::staged_bytes(self, &complete::staging_name(key))?;
        Ok(shape::recorded(&upload)?.is_some() && end.is_some_and(|end| end <= staged))
    }

    fn receive_chunk(&self, key: &UploadKey, slot: ChunkSlot, body: &mut dyn Read) -> ChunkReceipt {
        self.receive(key, slot.number, BodySize::Exactly(slot.size), None, body)
    }

    fn complete_if_covered(&self, key: &UploadKey, approve: &Approve<'_>) -> Result<Progress> {
        complete::commit_and_complete(self, key, None, approve)
    }

    fn has_upload(&self, key: &UploadKey) -> Result<bool> {
        let Some(upload) = self.upload_dir(key)? else {
            return Ok(false);
        };
        let probe = |name: String| {
            fsutil::identity(upload.dir.as_fd(), &name)
                .map(|found| found.is_some())
                .map_err(StoreError::io("looking for an upload's parts"))
        };
        Ok(probe(layout::geometry_name(&upload.file_key))?
            || probe(layout::part_name(&upload.file_key, 1))?)
    }

    fn ensure_room(&self, temp_bytes: u64, upload_bytes: u64, reserve: MinFreeSpace) -> Result<()> {
        space::ensure_room(self, temp_bytes, upload_bytes, reserve)
    }

    fn begin_file(&self) -> Result<Box<dyn IncomingFile>> {
        Ok(Box::new(self.begin_whole_file()?))
    }

    fn receive_counted_chunk(
        &self,
        key: &UploadKey,
        place: Place,
        size: BodySize,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>> {
        self.receive(key, place.number, size, Some(place), body)
    }

    fn finish(&self, key: &UploadKey, count: u64, approve: &Approve<'_>) -> Result<Finish> {
        complete::finish(self, key, count, approve)
    }

    fn knows(&self, key: &UploadKey) -> Result<bool> {
        let Some(upload) = self.upload_dir(key)? else {
            return Ok(false);
        };
        Ok(complete::read_record(&upload, key)?.is_some()
            || shape::recorded(&upload)? == Some(shape::Shape::of(key)))
    }

    fn create_range(&self, key: &RangeKey, state: &RangeState) -> Result<()> {
        FsStore::create_range(self, key, state)
    }

    fn range_info(&self, key: &RangeKey) -> Result<Option<RangeInfo>> {
        FsStore::range_info(self, key)
    }

    fn append_range(
        &self,
        key: &RangeKey,
        at: u64,
        body: &mut dyn Read,
        approve: &Approve<'_>,
    ) -> Result<Appended> {
        FsStore::append_range(self, key, at, body, approve)
    }

    fn stage_range(
        &self,
        key: &RangeKey,
        create: bool,
        body: &mut dyn Read,
        len: StageLen,
    ) -> Result<Box<dyn StagedRange>> {
        FsStore::stage_range(self, key, create, body, len)
    }

    fn complete_range(&self, key: &RangeKey, approve: &Approve<'_>) -> Result<Option<Progress>> {
        FsStore::complete_range(self, key, approve)
    }

    fn remove_range(&self, key: &RangeKey) -> Result<()> {
        FsStore::remove_range(self, key)
    }
}
