//! Everything on disk and nothing about HTTP: where parts live, writing a chunk atomically,
//! the per-upload lock, completion, assembly and publishing.

mod chunk;
pub mod cleanup;
mod complete;
pub mod fsutil;
pub mod layout;
mod lock;
mod naming;
pub mod publish;
pub mod published;
mod shape;

use std::io;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use chunk::PendingChunk;
pub use complete::Completion;

/// Which upload a chunk belongs to, as the store sees it.
#[derive(Debug, Clone)]
pub struct UploadKey {
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
    Publish(#[from] publish::PublishError),
    /// Every candidate name for the finished file is taken.
    #[error("no free name for {0:?} in the upload directory")]
    NoFreeName(String),
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
}

/// What the service needs from storage, whatever keeps the bytes. Every method is safe to call
/// from many processes and hosts at once for the same upload: implementations serialise what
/// must be serialised (the filesystem store with a per-upload lock).
pub trait UploadStore: Send + Sync {
    /// The finished upload, if this one was completed (and its record matches the key).
    fn completion(&self, key: &UploadKey) -> Result<Option<Completion>>;

    /// Whether chunk `number` is stored with exactly `size` bytes, under this key's geometry.
    fn has_chunk(&self, key: &UploadKey, number: u64, size: u64) -> Result<bool>;

    /// Receives chunk `number` from `body`, which must carry exactly `size` bytes. The chunk
    /// does not count until [`ReceivedChunk::commit`]: the caller first checks whatever framing
    /// follows the bytes (a multipart trailer), and dropping it discards the chunk.
    fn receive_chunk(
        &self,
        key: &UploadKey,
        number: u64,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>>;

    /// Completes the upload if every chunk is already stored (a retry after a failed assembly,
    /// e.g. once a full disk has space again). Nothing is written otherwise.
    fn complete_if_covered(&self, key: &UploadKey) -> Result<Progress>;
}

/// A chunk whose bytes all arrived, not yet counted.
pub trait ReceivedChunk: Send {
    /// Counts the chunk and, when the upload is then complete, assembles and publishes it,
    /// exactly once however many requests race here.
    fn commit(self: Box<Self>) -> Result<Progress>;
}

/// A temp dir and an upload dir; cheap to create per request.
#[derive(Debug, Clone)]
pub struct FsStore {
    temp_dir: PathBuf,
    upload_dir: PathBuf,
    /// Where finished files are published besides the upload dir, if anywhere.
    publish: Option<publish::PublishConfig>,
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
    pub fn publishing(self, publish: Option<publish::PublishConfig>) -> FsStore {
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
            Some(user) => match self.temp_subdir(&root, &layout::user_dir_name(user), false)? {
                Some(fd) => fd,
                None => return Ok(None),
            },
            None => root,
        };
        let dir = self.temp_subdir(&scope, &layout::upload_dir_name(&key.identifier), false)?;
        Ok(dir.map(|dir| UploadDir {
            dir,
            file_key: layout::file_key(&key.filename),
        }))
    }

    /// Like [`FsStore::upload_dir`], creating the directories that do not exist yet.
    fn create_upload_dir(&self, key: &UploadKey) -> Result<UploadDir> {
        let root = self.temp_root()?;
        let created = |parent: &OwnedFd, name: &str| -> Result<OwnedFd> {
            self.temp_subdir(parent, name, true)?
                .ok_or_else(|| StoreError::Io {
                    op: "creating the upload's temp directory",
                    source: io::ErrorKind::NotFound.into(),
                })
        };
        let scope = match &key.user {
            Some(user) => created(&root, &layout::user_dir_name(user))?,
            None => root,
        };
        Ok(UploadDir {
            dir: created(&scope, &layout::upload_dir_name(&key.identifier))?,
            file_key: layout::file_key(&key.filename),
        })
    }

    /// Opens (creating when `create`) one directory of the temp dir's tree. A symlink there is
    /// refused by name, not reported as the kernel's "Not a directory".
    fn temp_subdir(&self, parent: &OwnedFd, name: &str, create: bool) -> Result<Option<OwnedFd>> {
        let opened = if create {
            fsutil::ensure_dir(parent.as_fd(), name, 0o777)
        } else {
            fsutil::open_dir(parent.as_fd(), name)
        };
        match opened {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) if fsutil::is_symlink(parent.as_fd(), name) => Err(StoreError::Symlink {
                which: "RESUMABLE_TEMP_DIR",
                path: self.temp_dir.join(name),
            }),
            Err(e) => Err(StoreError::io("opening the upload's temp directory")(e)),
        }
    }

    /// Starts receiving chunk `number`: a fresh temporary file beside its final name.
    fn begin_chunk(&self, key: &UploadKey, number: u64) -> Result<PendingChunk> {
        // The upload dir must exist too, checked now so that a missing one is reported before
        // the body is read.
        self.upload_root()?;
        let upload = self.create_upload_dir(key)?;
        PendingChunk::create(upload.dir, &upload.file_key, number)
    }
}

/// A chunk of the filesystem store, in its temporary file beside the part's final name.
struct FsReceivedChunk {
    store: FsStore,
    key: UploadKey,
    pending: PendingChunk,
}

impl ReceivedChunk for FsReceivedChunk {
    fn commit(self: Box<Self>) -> Result<Progress> {
        let FsReceivedChunk {
            store,
            key,
            pending,
        } = *self;
        complete::commit_and_complete(&store, &key, Some(pending))
    }
}

impl UploadStore for FsStore {
    fn completion(&self, key: &UploadKey) -> Result<Option<Completion>> {
        match self.upload_dir(key)? {
            None => Ok(None),
            Some(upload) => match complete::read_record(&upload, key)? {
                // complete here but not yet in the object store: publish it now (a test
                // request after the store was unreachable), or answer why not
                Some(done) if publish::pending(self.publish.as_ref(), &done) => {
                    match complete::commit_and_complete(self, key, None)? {
                        Progress::Completed(done) | Progress::AlreadyComplete(done) => {
                            Ok(Some(done))
                        }
                        Progress::Incomplete => Ok(None),
                    }
                }
                other => Ok(other),
            },
        }
    }

    fn has_chunk(&self, key: &UploadKey, number: u64, size: u64) -> Result<bool> {
        let Some(upload) = self.upload_dir(key)? else {
            return Ok(false);
        };
        // A part stored under another chunk size may have the right size and the wrong bytes.
        if !shape::agrees(&upload, key)? {
            return Ok(false);
        }
        let part = layout::part_name(&upload.file_key, number);
        let found = fsutil::regular_file_size(upload.dir.as_fd(), &part)
            .map_err(StoreError::io("looking for a part"))?;
        Ok(found == Some(size))
    }

    fn receive_chunk(
        &self,
        key: &UploadKey,
        number: u64,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>> {
        let mut pending = self.begin_chunk(key, number)?;
        pending.write_from(body, size)?;
        Ok(Box::new(FsReceivedChunk {
            store: self.clone(),
            key: key.clone(),
            pending,
        }))
    }

    fn complete_if_covered(&self, key: &UploadKey) -> Result<Progress> {
        complete::commit_and_complete(self, key, None)
    }
}
