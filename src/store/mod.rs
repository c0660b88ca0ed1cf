//! Everything on disk and nothing about HTTP: where parts live, writing a chunk atomically,
//! the per-upload lock, completion, assembly and publishing.

mod chunk;
pub mod cleanup;
mod complete;
pub mod fsutil;
pub mod layout;
mod lock;
mod shape;

use std::fmt;
use std::io;
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

#[derive(Debug)]
pub enum StoreError {
    /// The temp or upload directory itself is missing or unusable.
    Root {
        which: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The disk (or quota) is full: the client may retry once space is freed.
    NoSpace { op: &'static str, source: io::Error },
    /// Any other filesystem failure, with what was being done.
    Io { op: &'static str, source: io::Error },
    /// The request body delivered a different number of bytes than the chunk declares.
    BodyLength { expected: u64, received: u64 },
    /// Reading the request body failed (the client went away, or a malformed stream).
    BodyRead(io::Error),
    /// Every candidate name for the finished file is taken.
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

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Root {
                which,
                path,
                source,
            } => write!(
                f,
                "the {which} directory {} cannot be used: {source} (it must exist and be writable by this process)",
                path.display()
            ),
            StoreError::NoSpace { op, source } => write!(f, "no space left while {op}: {source}"),
            StoreError::Io { op, source } => write!(f, "filesystem error while {op}: {source}"),
            StoreError::BodyLength { expected, received } => write!(
                f,
                "the body carried {received} bytes but the chunk declares {expected}"
            ),
            StoreError::BodyRead(e) => write!(f, "reading the request body failed: {e}"),
            StoreError::NoFreeName(name) => {
                write!(f, "no free name for {name:?} in the upload directory")
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

/// A temp dir and an upload dir; cheap to create per request.
pub struct Store {
    temp_dir: PathBuf,
    upload_dir: PathBuf,
}

/// The open directories and names of one upload's temp state.
struct UploadDir {
    dir: OwnedFd,
    file_key: String,
}

impl Store {
    pub fn new(temp_dir: &Path, upload_dir: &Path) -> Store {
        Store {
            temp_dir: temp_dir.to_path_buf(),
            upload_dir: upload_dir.to_path_buf(),
        }
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

    /// Opens (creating when `create`) `TEMP/[~user-…/]<identifier>/`. `None` when absent.
    fn upload_dir(&self, key: &UploadKey, create: bool) -> Result<Option<UploadDir>> {
        let root = self.temp_root()?;
        let open = |parent: &OwnedFd, name: &str| -> Result<Option<OwnedFd>> {
            let opened = if create {
                fsutil::ensure_dir(parent.as_fd(), name, 0o777)
            } else {
                fsutil::open_dir(parent.as_fd(), name)
            };
            match opened {
                Ok(fd) => Ok(Some(fd)),
                Err(e) if !create && e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io("opening the upload's temp directory")(e)),
            }
        };
        let scope = match &key.user {
            Some(user) => match open(&root, &layout::user_dir_name(user))? {
                Some(fd) => fd,
                None => return Ok(None),
            },
            None => root,
        };
        Ok(
            open(&scope, &layout::upload_dir_name(&key.identifier))?.map(|dir| UploadDir {
                dir,
                file_key: layout::file_key(&key.filename),
            }),
        )
    }

    /// The completion record of this upload, if it was completed and its record matches.
    pub fn completion(&self, key: &UploadKey) -> Result<Option<Completion>> {
        match self.upload_dir(key, false)? {
            None => Ok(None),
            Some(upload) => complete::read_record(&upload, key),
        }
    }

    /// Whether chunk `number` is stored with exactly `size` bytes.
    pub fn has_chunk(&self, key: &UploadKey, number: u64, size: u64) -> Result<bool> {
        let Some(upload) = self.upload_dir(key, false)? else {
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

    /// Starts receiving chunk `number`: a fresh temporary file beside its final name.
    pub fn begin_chunk(&self, key: &UploadKey, number: u64) -> Result<PendingChunk> {
        // The upload dir must exist too, checked now so that a missing one is reported before
        // the body is read.
        self.upload_root()?;
        let upload = self.upload_dir(key, true)?.ok_or_else(|| {
            StoreError::io("creating the upload's temp directory")(io::ErrorKind::NotFound.into())
        })?;
        PendingChunk::create(upload.dir, &upload.file_key, number)
    }

    /// Puts a fully received chunk in place and, when the upload is then complete, assembles
    /// and publishes it. Under the upload's lock, so exactly one request ever assembles.
    pub fn commit_chunk(&self, key: &UploadKey, pending: PendingChunk) -> Result<Progress> {
        complete::commit_and_complete(self, key, Some(pending))
    }

    /// Completes the upload if every chunk is already stored (a retry after a failed
    /// assembly, e.g. once a full disk has space again). Nothing is written otherwise.
    pub fn complete_if_covered(&self, key: &UploadKey) -> Result<Progress> {
        complete::commit_and_complete(self, key, None)
    }
}
