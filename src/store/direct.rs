//! Writing a chunk that continues the staging file straight into it: no part, no copy into the
//! staging file, no removal, so that an upload sent in order costs what receiving its chunks
//! costs.
//!
//! What keeps this as safe as a part (complete.rs's header has the part's side):
//! a. it begins under the upload lock, and only where the chunk's part would be appended at
//!    once: the upload's geometry is recorded and agrees, the staging file ends where the chunk
//!    starts (a killed request's bytes past there are cut first, as incremental.rs does), no
//!    publish has begun, and nobody else writes into it. It then holds the chunk's byte of the
//!    lock file (lock.rs) and lets the upload lock go, so that the upload's other chunks go on
//!    as parts while this body streams in;
//! b. while that byte is held, whoever holds the upload lock leaves the staging file alone
//!    (`Staged::Writing`); a duplicate of this very chunk waits for it to end, then finds the
//!    chunk in the staging file (or appends its own part, if this one failed);
//! c. the chunk's last byte is held back until its request commits, under the upload lock:
//!    a body that ends early or runs on, a request refused after its body, or a process killed
//!    anywhere before that leaves the staging file short of the chunk's end, which never
//!    counts (the resume point cuts it); a request that fails and lives cuts it itself;
//! d. a staging file replaced meanwhile (another request re-chunked the upload) is never
//!    written to: the chunk's bytes are read back from the file this request wrote them into
//!    and stored as a part, as if it had not tried.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::chunk::copy_bounded;
use super::complete::{self, staging_name};
use super::incremental;
use super::lock::{DirectClaim, UploadLock};
use super::shape::Shape;
use super::{
    fsutil, Approve, BodySize, FsStore, PendingChunk, Progress, Result, StoreError, UploadDir,
    UploadKey,
};

/// A chunk being written into the upload's staging file. Dropped without committing, it cuts
/// the staging file back to where the chunk starts.
pub struct DirectChunk {
    upload: UploadDir,
    /// The staging folder and the staging file's name in it.
    folder: OwnedFd,
    staging: String,
    number: u64,
    /// Where the chunk starts in the file, and its length.
    start: u64,
    expected: u64,
    /// The staging file, positioned at `start`; taken by `commit`.
    file: Option<File>,
    /// The chunk's last byte, once received.
    held: Option<u8>,
    pub(super) received: u64,
    claim: Option<DirectClaim>,
}

/// Chunk `number` of `expected` bytes, to be written straight into the staging file, or `None`
/// when it must be stored as a part (see the module's rules). A filesystem error on the way
/// (a read-only upload dir, a symlink planted at the staging folder) is `None` too: the part
/// is stored in the temp dir as before this path existed, and the steps after it report the
/// error, keeping the chunk for the retry.
pub(super) fn begin(
    store: &FsStore,
    upload: &UploadDir,
    key: &UploadKey,
    number: u64,
    expected: u64,
) -> Option<DirectChunk> {
    try_begin(store, upload, key, number, expected)
        .ok()
        .flatten()
}

fn try_begin(
    store: &FsStore,
    upload: &UploadDir,
    key: &UploadKey,
    number: u64,
    expected: u64,
) -> Result<Option<DirectChunk>> {
    let chunk = key.chunk_size;
    let Some(start) = number.checked_sub(1).and_then(|n| n.checked_mul(chunk)) else {
        return Ok(None);
    };
    let Some(end) = start.checked_add(expected) else {
        return Ok(None);
    };
    // Only a chunk the appending step would take: every one but the last is the chunk size,
    // the last ends the file.
    let fits = expected == chunk && end <= key.total_size || end == key.total_size;
    if !fits || expected == 0 {
        return Ok(None);
    }
    let staging = staging_name(key);
    let folder = incremental::staging_folder(store)?;
    let staged = || {
        fsutil::fresh_regular_file_size(folder.as_fd(), &staging)
            .map_err(StoreError::io("looking at the staging file"))
    };
    // A look without the lock first: most chunks that cannot go in straight are seen here.
    // (The first chunk of an upload has no geometry yet, and leaves no lock file behind.)
    match staged()? {
        Some(size) if size >= start && size < end => {}
        None if number == 1 && super::shape::recorded(upload)? == Some(Shape::of(key)) => {}
        _ => return Ok(None),
    }
    let lock = UploadLock::acquire(&upload.dir).map_err(StoreError::io("locking the upload"))?;
    if lock
        .direct_writer()
        .map_err(StoreError::io("locking the upload"))?
        .is_some()
        || complete::read_record(upload, key)?.is_some()
        || super::shape::recorded(upload)? != Some(Shape::of(key))
        || incremental::publishing(folder.as_fd(), &staging, Some(key.total_size))?
    {
        return Ok(None);
    }
    let found = staged()?;
    let size = match found {
        Some(size) => size,
        None if number == 1 => 0,
        None => return Ok(None),
    };
    let part_size = |n: u64| incremental::part_size(upload, n);
    if incremental::resume_point(size, chunk, part_size)? != (start, number) {
        return Ok(None);
    }
    let claim =
        DirectClaim::try_take(&upload.dir, number).map_err(StoreError::io("locking the upload"))?;
    let Some(claim) = claim else {
        return Ok(None);
    };
    let mut file = fsutil::open_or_create(folder.as_fd(), &staging)
        .map_err(StoreError::io("opening the staging file"))?;
    if size > start {
        file.set_len(start)
            .map_err(StoreError::io("opening the staging file"))?;
    }
    file.seek(SeekFrom::Start(start))
        .map_err(StoreError::io("opening the staging file"))?;
    drop(lock);
    let dir =
        (upload.dir.try_clone()).map_err(StoreError::io("reopening the upload's directory"))?;
    Ok(Some(DirectChunk {
        upload: UploadDir {
            dir,
            file_key: upload.file_key.clone(),
        },
        folder,
        staging,
        number,
        start,
        expected,
        file: Some(file),
        held: None,
        received: 0,
        claim: Some(claim),
    }))
}

impl DirectChunk {
    /// Copies the body into the staging file, all but its last byte, refusing a body of any
    /// other length than the chunk's.
    pub(super) fn write(&mut self, body: &mut dyn Read) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut out = HoldingLast {
            file,
            left: self.expected,
            held: &mut self.held,
        };
        self.received = copy_bounded(
            body,
            &mut out,
            self.expected,
            "writing a chunk into the staging file",
        )?;
        if self.received != self.expected {
            return Err(StoreError::BodyLength {
                expected: self.expected,
                received: self.received,
            });
        }
        Ok(())
    }

    /// Under the upload lock: writes the last byte, which makes the chunk count, and goes on as
    /// every chunk does (appending the parts after it, completing the upload).
    pub(super) fn commit(
        mut self,
        store: &FsStore,
        key: &UploadKey,
        approve: &Approve<'_>,
    ) -> Result<Progress> {
        let lock =
            UploadLock::acquire(&self.upload.dir).map_err(StoreError::io("locking the upload"))?;
        let Some(file) = self.file.take() else {
            return Ok(Progress::Incomplete);
        };
        let end = self.start + self.expected;
        if !self.still_written_into(&file)? {
            drop(lock);
            let part = self.into_part(file)?;
            return complete::commit_and_complete(store, key, Some(part), approve);
        }
        if let Some(last) = self.held {
            file.write_all_at(&[last], end - 1)
                .map_err(StoreError::io("writing a chunk into the staging file"))?;
        }
        incremental::write_behind(&file, self.start, end);
        // Closed before anyone else looks: a network filesystem writes back at close.
        drop(file);
        self.claim.take();
        complete::complete_locked(store, &self.upload, key, approve, &lock, Some(self.number))
    }

    /// The staging file is still the one this chunk is written into, holding all of it but
    /// its last byte.
    fn still_written_into(&self, file: &File) -> Result<bool> {
        let probe = StoreError::io("looking at the staging file");
        let ours = rustix::fs::fstat(file).map_err(|e| probe(e.into()))?;
        let probe = StoreError::io("looking at the staging file");
        let named = fsutil::identity(self.folder.as_fd(), &self.staging).map_err(probe)?;
        Ok(named.is_some_and(|named| {
            named.device == ours.st_dev
                && named.inode == ours.st_ino
                && named.size == self.start + self.expected - 1
        }))
    }

    /// The chunk as a part: its bytes read back from the file it was written into.
    fn into_part(mut self, mut file: File) -> Result<PendingChunk> {
        let dir = (self.upload.dir.try_clone())
            .map_err(StoreError::io("reopening the upload's directory"))?;
        let mut part = PendingChunk::create(dir, &self.upload.file_key, self.number)?;
        file.seek(SeekFrom::Start(self.start))
            .map_err(StoreError::io("reading back a chunk"))?;
        let last = self.held.take().map(|byte| vec![byte]).unwrap_or_default();
        let mut bytes = (&mut file).take(self.expected - 1).chain(&last[..]);
        part.write_sized(&mut bytes, BodySize::Exactly(self.expected))?;
        Ok(part)
    }
}

impl Drop for DirectChunk {
    fn drop(&mut self) {
        // Still holding the claim (released after this, as a field): nobody else writes here.
        if let Some(file) = self.file.take() {
            let _ = file.set_len(self.start);
        }
    }
}

/// Writes everything but the last of `left` bytes, which it keeps.
struct HoldingLast<'a> {
    file: &'a mut File,
    left: u64,
    held: &'a mut Option<u8>,
}

impl Write for HoldingLast<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((&last, before)) = buf.split_last() else {
            return Ok(0);
        };
        if buf.len() as u64 >= self.left {
            self.file.write_all(before)?;
            *self.held = Some(last);
            self.left = 0;
        } else {
            self.file.write_all(buf)?;
            self.left -= buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{publish_always, ChunkSlot, UploadStore};
    use super::*;
    use std::io::Cursor;
    use std::path::Path;

    const DATA: &[u8; 25] = b"0123456789abcdefghijKLMNO";

    /// A store over two temp dirs, and the key of a 25-byte file in chunks of 10.
    fn fixture() -> (tempfile::TempDir, tempfile::TempDir, FsStore, UploadKey) {
        let temp = tempfile::tempdir().unwrap();
        let uploads = tempfile::tempdir().unwrap();
        let store = FsStore::new(temp.path(), uploads.path());
        let key = UploadKey {
            client: "resumable",
            user: None,
            identifier: "id".into(),
            filename: "f.bin".into(),
            relative_path: None,
            total_size: 25,
            chunk_size: 10,
        };
        (temp, uploads, store, key)
    }

    fn slot(number: u64) -> ChunkSlot {
        let start = (number - 1) * 10;
        ChunkSlot {
            number,
            size: (25 - start).min(10),
        }
    }

    fn body(number: u64) -> Cursor<Vec<u8>> {
        let start = (number as usize - 1) * 10;
        Cursor::new(DATA[start..(start + 10).min(25)].to_vec())
    }

    fn receive(
        store: &FsStore,
        key: &UploadKey,
        number: u64,
    ) -> Box<dyn super::super::ReceivedChunk> {
        store
            .receive_chunk(key, slot(number), &mut body(number))
            .unwrap()
    }

    fn send(store: &FsStore, key: &UploadKey, number: u64) -> Progress {
        receive(store, key, number).commit(&publish_always).unwrap()
    }

    fn staged(uploads: &Path) -> Vec<u8> {
        std::fs::read(
            uploads
                .join(".resumable-staging")
                .join(staging_name(&fixture().3)),
        )
        .unwrap()
    }

    /// Every file under the temp dir but the lock and geometry files.
    fn temp_files(temp: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in walk(temp) {
            let name = entry.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with(".resumable-lock") && !name.ends_with(".geometry") {
                found.push(name);
            }
        }
        found
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn chunks_sent_in_order_go_straight_into_the_staging_file_and_count_at_commit() {
        let (temp, uploads, store, key) = fixture();
        assert!(matches!(send(&store, &key, 1), Progress::Incomplete));
        assert_eq!(staged(uploads.path()), &DATA[..10]);
        let second = receive(&store, &key, 2);
        // no temporary file: the body is in the staging file, all but its last byte
        assert_eq!(temp_files(temp.path()), Vec::<String>::new());
        assert_eq!(staged(uploads.path()), &DATA[..19]);
        assert!(!store.has_chunk(&key, slot(2)).unwrap());
        assert!(matches!(
            second.commit(&publish_always).unwrap(),
            Progress::Incomplete
        ));
        assert!(store.has_chunk(&key, slot(2)).unwrap());
        match send(&store, &key, 3) {
            Progress::Completed(done) => assert_eq!(done.file, "f.bin"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(uploads.path().join("f.bin")).unwrap(), DATA);
    }

    #[test]
    fn a_chunk_cut_short_or_never_committed_leaves_the_staging_file_where_it_starts() {
        let (_temp, uploads, store, key) = fixture();
        send(&store, &key, 1);
        let mut short = Cursor::new(DATA[10..15].to_vec());
        match store.receive_chunk(&key, slot(2), &mut short) {
            Err(StoreError::BodyLength {
                expected: 10,
                received: 5,
            }) => {}
            other => panic!("{:?}", other.map(|c| c.size())),
        }
        assert_eq!(staged(uploads.path()), &DATA[..10]);
        // received whole, then refused by the service (its framing after the bytes was wrong)
        drop(receive(&store, &key, 2));
        assert_eq!(staged(uploads.path()), &DATA[..10]);
        assert!(!store.has_chunk(&key, slot(2)).unwrap());
        send(&store, &key, 2);
        assert!(matches!(send(&store, &key, 3), Progress::Completed(_)));
        assert_eq!(std::fs::read(uploads.path().join("f.bin")).unwrap(), DATA);
    }

    #[test]
    fn a_duplicate_of_a_chunk_being_written_in_is_answered_once_that_one_ends() {
        let (temp, uploads, store, key) = fixture();
        send(&store, &key, 1);
        send(&store, &key, 3);
        let first = receive(&store, &key, 2);
        // the same chunk again, while the first is still under way: stored as a part
        let duplicate = receive(&store, &key, 2);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let progress = duplicate.commit(&publish_always).unwrap();
                tx.send(progress).unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                rx.try_recv().is_err(),
                "answered while chunk 2 was being written"
            );
            assert!(matches!(
                first.commit(&publish_always).unwrap(),
                Progress::Completed(_)
            ));
            assert!(matches!(rx.recv().unwrap(), Progress::AlreadyComplete(_)));
        });
        assert_eq!(std::fs::read(uploads.path().join("f.bin")).unwrap(), DATA);
        // no part left: only the completion record
        assert_eq!(temp_files(temp.path()), ["f.bin.complete"]);
    }

    #[test]
    fn a_staging_file_replaced_meanwhile_gets_the_chunk_as_a_part() {
        let (temp, uploads, store, key) = fixture();
        send(&store, &key, 1);
        let second = receive(&store, &key, 2);
        // another request took the upload over and put another staging file in place
        let path = uploads
            .path()
            .join(".resumable-staging")
            .join(staging_name(&key));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &DATA[..10]).unwrap();
        assert!(matches!(
            second.commit(&publish_always).unwrap(),
            Progress::Incomplete
        ));
        assert_eq!(staged(uploads.path()), &DATA[..20]);
        assert_eq!(temp_files(temp.path()), Vec::<String>::new());
        assert!(matches!(send(&store, &key, 3), Progress::Completed(_)));
        assert_eq!(std::fs::read(uploads.path().join("f.bin")).unwrap(), DATA);
    }
}
