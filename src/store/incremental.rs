//! Assembling as chunks arrive: under the upload lock, every stored part that continues the
//! upload's staging file is appended to it (the kernel's copy), the writeback of what lags
//! behind started, and the part removed, so that the request completing the upload only has its
//! own chunk left to add.
//!
//! The staging file's size is the progress, and nothing else records it: part `n` starts at
//! `(n − 1) · chunk size`, and a part is removed only after all of its bytes were appended. So
//! whatever was interrupted, the next holder of the lock knows where to go on (see
//! [`resume_point`] and complete.rs's header for every interleaving).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::lock::UploadLock;
use super::publish;
use super::{fsutil, layout, naming, FsStore, Result, StoreError, UploadDir};

/// How far behind the end of the staging file its writeback may lag: an append waits for the
/// bytes older than this to be on disk, so that a client sending faster than the disk writes
/// is slowed down chunk by chunk rather than all at once in the completing request's fsync.
pub(super) const WRITE_WINDOW: u64 = 64 << 20;

/// How far behind the end writeback starts: the newest bytes stay in the page cache for the
/// kernel (an upload smaller than this is written back by the completing request's fsync
/// alone), so a chunk's request does not spend its time submitting its own bytes to the disk;
/// the completing request's fsync has at most this much, and what is in flight, left to write.
pub(super) const WRITE_LAG: u64 = WRITE_WINDOW / 2;

/// What the upload's parts are known to look like.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub chunk_size: u64,
    /// `None` while a counted upload's last chunk has not come.
    pub total_size: Option<u64>,
}

/// Where an upload's staging file stands after [`advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Staged {
    /// This many bytes, every one of them from a whole part.
    Bytes(u64),
    /// A publish of this staging file may already have happened (it has a second name, a note
    /// of a rename, or it is kept for a hook that did not decide): nothing is appended, and the
    /// completion finds out.
    Publishing,
    /// A request is writing this chunk straight into the staging file (direct.rs): nothing is
    /// appended or removed until it ends.
    Writing(u64),
}

/// Opens the upload dir's staging folder.
pub(super) fn staging_folder(store: &FsStore) -> Result<OwnedFd> {
    publish::staging_dir(&store.upload_root()?)
}

/// How often appending is tried when the filesystem reports a transient error.
const ATTEMPTS: u32 = 5;

/// Appends to the staging file `staging` every stored part that continues it, and removes
/// them, unless they complete the upload: the completing request keeps its parts until its
/// record is written, like every part before this design, and its cleanup removes them all.
/// `arriving` is the number of the part this request stored, if any: a re-sent chunk whose
/// bytes the staging file already holds is removed again at once. Under the upload lock.
pub(super) fn advance(
    store: &FsStore,
    upload: &UploadDir,
    lock: &UploadLock,
    staging: &str,
    geometry: Geometry,
    arriving: Option<u64>,
) -> Result<Staged> {
    let writer = lock.direct_writer();
    if let Some(number) = writer.map_err(StoreError::io("looking for a chunk being written"))? {
        return Ok(Staged::Writing(number));
    }
    // A network filesystem may call a part another client just renamed into place a stale
    // handle for a moment (GlusterFS does): appending starts again, from the staging file's
    // size.
    let mut attempt = 1;
    loop {
        match advance_once(store, upload, staging, geometry, arriving) {
            Err(StoreError::Io { source, .. })
                if fsutil::is_transient(&source) && attempt < ATTEMPTS =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn advance_once(
    store: &FsStore,
    upload: &UploadDir,
    staging: &str,
    geometry: Geometry,
    arriving: Option<u64>,
) -> Result<Staged> {
    let chunk = geometry.chunk_size.max(1);
    let folder = staging_folder(store)?;
    if publishing(folder.as_fd(), staging, geometry.total_size)? {
        return Ok(Staged::Publishing);
    }
    let part_size = |number: u64| part_size(upload, number);
    let found = fsutil::fresh_regular_file_size(folder.as_fd(), staging)
        .map_err(StoreError::io("looking at the staging file"))?;
    let size = found.unwrap_or(0);
    if geometry.total_size == Some(size) && found.is_some() {
        return Ok(Staged::Bytes(size));
    }
    let (keep, first) = resume_point(size, chunk, &part_size)?;
    let mut next = first;
    // A staging file is only ever created to take part 1.
    if found.is_none() && part_size(1)?.is_none() {
        return Ok(Staged::Bytes(0));
    }
    let mut out = None::<File>;
    let mut end = keep;
    let mut appended = Vec::new();
    loop {
        if geometry.total_size.is_some_and(|total| end >= total) {
            break;
        }
        let name = layout::part_name(&upload.file_key, next);
        let Some(len) = part_size(next)? else { break };
        // Every part but the last is exactly the chunk size; the last ends at the total. A
        // part of any other size waits (a counted upload's last part, before its total is
        // recorded).
        let reaches = end.saturating_add(len);
        let fits = len == chunk && geometry.total_size.is_none_or(|t| reaches <= t)
            || geometry.total_size == Some(reaches);
        if !fits || len == 0 {
            break;
        }
        let file = match out.as_mut() {
            Some(file) => file,
            None => out.insert(open_at(folder.as_fd(), staging, keep)?),
        };
        let mut input = fsutil::open_read(upload.dir.as_fd(), &name)
            .map_err(StoreError::io("opening a part to assemble"))?;
        // std copies File to File with copy_file_range (a reflink where the filesystem has
        // them), falling back to read/write across filesystems.
        let copied = io::copy(&mut (&mut input).take(len), file)
            .map_err(StoreError::io("appending a part to the staging file"))?;
        if copied != len {
            return Err(StoreError::Io {
                op: "appending a part to the staging file",
                source: io::Error::other(format!("part {next} ended after {copied} bytes")),
            });
        }
        appended.push(name);
        end += len;
        next += 1;
    }
    let complete = geometry.total_size == Some(end);
    if complete && out.is_none() && found.is_none() {
        // An empty file: its one part has nothing to append.
        out = Some(open_at(folder.as_fd(), staging, 0)?);
    }
    if let Some(file) = &out {
        if !complete {
            write_behind(file, keep, end);
        }
    } else if found.is_some() && !complete {
        // Nothing continued it (a gap before this chunk): the staging file is still marked as
        // in use, so that `cleanup` does not take it for an abandoned one while the chunks
        // after the gap keep coming.
        touch(folder.as_fd(), staging);
    }
    if !complete {
        // Parts appended whole by a request killed before it removed them, then this
        // request's. Removed in order, so the ones a killed removal left end just below
        // `first`.
        let mut covered = Vec::new();
        for earlier in (1..first).rev() {
            if part_size(earlier)?.is_none() {
                break;
            }
            covered.push(layout::part_name(&upload.file_key, earlier));
        }
        // A re-sent chunk further down, which the staging file already holds: left there, it
        // would wait for the completion's cleanup, and removing it once the disk has written
        // it costs a wait on the disk.
        if let Some(resent) = arriving.filter(|&n| n + (covered.len() as u64) < first) {
            if part_size(resent)?.is_some() {
                covered.push(layout::part_name(&upload.file_key, resent));
            }
        }
        for name in covered.iter().rev().chain(&appended) {
            fsutil::remove_file(upload.dir.as_fd(), name)
                .map_err(StoreError::io("removing an appended part"))?;
        }
    }
    Ok(Staged::Bytes(end))
}

/// The size of part `number`, if stored. From the server: another host may have appended, or
/// removed parts, a moment ago.
pub(super) fn part_size(upload: &UploadDir, number: u64) -> Result<Option<u64>> {
    fsutil::fresh_regular_file_size(
        upload.dir.as_fd(),
        &layout::part_name(&upload.file_key, number),
    )
    .map_err(StoreError::io("checking which parts are stored"))
}

/// Where appending goes on in a staging file of `size` bytes: the bytes to keep and the
/// number of the next part. A request killed while appending part `n` leaves a size inside
/// part `n`'s range with part `n` still stored (it is removed only once appended whole): the
/// staging file goes back to part `n`'s start. The part holding byte `size` is part
/// `size / chunk + 1`, or the one before it: a file chunked in floor mode (resumable.js's
/// default) has a last part up to `2 · chunk − 1` bytes long.
pub(super) fn resume_point(
    size: u64,
    chunk: u64,
    mut part_size: impl FnMut(u64) -> Result<Option<u64>>,
) -> Result<(u64, u64)> {
    let number = size / chunk + 1;
    for candidate in [number, number - 1] {
        if candidate == 0 {
            continue;
        }
        let start = (candidate - 1) * chunk;
        if start < size && part_size(candidate)?.is_some_and(|len| size < start + len) {
            return Ok((start, candidate));
        }
    }
    // Otherwise `size` ends a whole part (bytes past the last chunk boundary with no part
    // to finish them cannot be whole parts, and go).
    Ok(((number - 1) * chunk, number))
}

/// A publish of this staging file may have begun: it has a second name (link), its inode
/// was noted for a rename, or the whole file is kept for a hook that did not decide (a kept
/// file of another size is an earlier upload's, which the completion removes).
pub(super) fn publishing(
    folder: BorrowedFd<'_>,
    staging: &str,
    total_size: Option<u64>,
) -> Result<bool> {
    let probe = StoreError::io("looking at the staging file");
    if fsutil::identity(folder, staging)
        .map_err(probe)?
        .is_some_and(|found| found.links >= 2)
    {
        return Ok(true);
    }
    let probe = StoreError::io("looking at the staging file");
    if naming::renamed_inode(folder, staging)
        .map_err(probe)?
        .is_some()
    {
        return Ok(true);
    }
    let probe = StoreError::io("looking at the staging file");
    Ok(
        fsutil::identity(folder, &super::complete::kept_name(staging))
            .map_err(probe)?
            .is_some_and(|kept| Some(kept.size) == total_size),
    )
}

/// Sets the file's modification time to now. Only a hint for `cleanup`: an error changes
/// nothing else.
fn touch(folder: BorrowedFd<'_>, name: &str) {
    let now = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    };
    let _ = rustix::fs::utimensat(folder, name, &now, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
}

/// The staging file opened for writing at `at`, cut there first (a killed append's bytes).
fn open_at(folder: BorrowedFd<'_>, staging: &str, at: u64) -> Result<File> {
    let mut file = fsutil::open_or_create(folder, staging)
        .map_err(StoreError::io("opening the staging file"))?;
    file.set_len(at)
        .and_then(|()| file.seek(SeekFrom::Start(at)).map(drop))
        .map_err(StoreError::io("opening the staging file"))?;
    Ok(file)
}

/// Bytes `from..to` were just written: starts writeback of the bytes that this moved more than
/// [`WRITE_LAG`] behind the end, and waits for that of the bytes more than [`WRITE_WINDOW`]
/// behind. Only a hint to the kernel: an error (a filesystem without sync_file_range) changes
/// nothing, and the completing request's fsync makes the file durable.
pub(super) fn write_behind(file: &File, from: u64, to: u64) {
    let fd = file.as_raw_fd();
    let start = libc::SYNC_FILE_RANGE_WRITE;
    let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let (begin, end) = (from.saturating_sub(WRITE_LAG), to.saturating_sub(WRITE_LAG));
    // SAFETY: plain syscalls on a descriptor open for the duration of the calls.
    unsafe {
        if end > begin {
            libc::sync_file_range(fd, begin as i64, (end - begin) as i64, start);
        }
        if let Some(old) = to.checked_sub(WRITE_WINDOW).filter(|&old| old > 0) {
            libc::sync_file_range(fd, 0, old as i64, wait);
        }
    }
}

/// How many bytes of the upload the staging file holds (or the assembled file kept for a hook
/// that did not decide; 0 when there is neither), without the lock: for answering which
/// chunks are stored.
pub(super) fn staged_bytes(store: &FsStore, staging: &str) -> Result<u64> {
    let root = store.upload_root()?;
    let folder = match fsutil::open_dir(root.as_fd(), super::complete::STAGING_DIR) {
        Ok(folder) => folder,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("opening the staging directory")(e)),
    };
    for name in [staging.to_string(), super::complete::kept_name(staging)] {
        if let Some(size) = fsutil::fresh_regular_file_size(folder.as_fd(), &name)
            .map_err(StoreError::io("looking at the staging file"))?
        {
            return Ok(size);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A temp dir holding upload `f`'s parts, an upload dir, and the store over both.
    fn fixture() -> (tempfile::TempDir, tempfile::TempDir, FsStore, UploadDir) {
        let temp = tempfile::tempdir().unwrap();
        let uploads = tempfile::tempdir().unwrap();
        let store = FsStore::new(temp.path(), uploads.path());
        let upload = UploadDir {
            dir: fsutil::open_root(temp.path()).unwrap(),
            file_key: "f".into(),
        };
        (temp, uploads, store, upload)
    }

    fn point(size: u64, chunk: u64, parts: &[(u64, u64)]) -> (u64, u64) {
        resume_point(size, chunk, |n| {
            Ok(parts.iter().find(|(m, _)| *m == n).map(|(_, len)| *len))
        })
        .unwrap()
    }

    #[test]
    fn parts_join_the_staging_file_in_order_whatever_order_they_come_in_and_a_killed_append_is_redone(
    ) {
        let (temp, uploads, store, upload) = fixture();
        let bytes: Vec<u8> = (0..35u8).collect();
        // floor mode: parts of 10, 10, 15
        let part = |n: u64, range: std::ops::Range<usize>| {
            std::fs::write(temp.path().join(format!("f.part{n}")), &bytes[range]).unwrap()
        };
        let geometry = Geometry {
            chunk_size: 10,
            total_size: Some(35),
        };
        let staged =
            |name: &str| std::fs::read(uploads.path().join(".resumable-staging").join(name));
        let lock = UploadLock::acquire(&upload.dir).unwrap();
        let advance = || advance(&store, &upload, &lock, "s", geometry, None).unwrap();
        // part 2 first: it waits
        part(2, 10..20);
        assert_eq!(advance(), Staged::Bytes(0));
        assert!(staged("s").is_err(), "no staging file before part 1");
        // part 1 fills the gap: both join, both go
        part(1, 0..10);
        assert_eq!(advance(), Staged::Bytes(20));
        assert_eq!(staged("s").unwrap(), &bytes[..20]);
        assert!(!temp.path().join("f.part1").exists() && !temp.path().join("f.part2").exists());
        // a request killed inside part 3 left 4 of its bytes; the retry cuts back and completes,
        // keeping the part for the completion's cleanup
        part(3, 20..35);
        std::fs::OpenOptions::new()
            .append(true)
            .open(uploads.path().join(".resumable-staging/s"))
            .unwrap()
            .write_all(&bytes[20..24])
            .unwrap();
        assert_eq!(advance(), Staged::Bytes(35));
        assert_eq!(staged("s").unwrap(), bytes);
        assert!(temp.path().join("f.part3").exists());
        // a second name (published, record not written yet): nothing is touched
        std::fs::hard_link(
            uploads.path().join(".resumable-staging/s"),
            uploads.path().join("published"),
        )
        .unwrap();
        assert_eq!(advance(), Staged::Publishing);
    }

    #[test]
    fn a_staging_file_waiting_for_a_gap_is_not_taken_for_abandoned_while_chunks_come() {
        let (temp, uploads, store, upload) = fixture();
        let geometry = Geometry {
            chunk_size: 10,
            total_size: Some(40),
        };
        std::fs::write(temp.path().join("f.part1"), [1u8; 10]).unwrap();
        let lock = UploadLock::acquire(&upload.dir).unwrap();
        assert_eq!(
            advance(&store, &upload, &lock, "s", geometry, None).unwrap(),
            Staged::Bytes(10)
        );
        let staging = uploads.path().join(".resumable-staging/s");
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&staging)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        // chunk 2 is missing; chunk 3 comes (its part waits) and keeps the staging file in use
        std::fs::write(temp.path().join("f.part3"), [3u8; 10]).unwrap();
        assert_eq!(
            advance(&store, &upload, &lock, "s", geometry, None).unwrap(),
            Staged::Bytes(10)
        );
        let report = store
            .remove_abandoned(std::time::Duration::from_secs(3600))
            .unwrap();
        assert_eq!(report.staging_removed, 0);
        assert_eq!(std::fs::read(&staging).unwrap(), [1u8; 10]);
    }

    #[test]
    fn nothing_is_appended_or_removed_while_a_chunk_is_written_straight_in() {
        let (temp, uploads, store, upload) = fixture();
        let geometry = Geometry {
            chunk_size: 10,
            total_size: Some(30),
        };
        std::fs::write(temp.path().join("f.part1"), [1u8; 10]).unwrap();
        let lock = UploadLock::acquire(&upload.dir).unwrap();
        let advance = || advance(&store, &upload, &lock, "s", geometry, None).unwrap();
        assert_eq!(advance(), Staged::Bytes(10));
        // chunk 2 is being written in (4 bytes so far) while part 3 arrives
        let staging = uploads.path().join(".resumable-staging/s");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&staging)
            .unwrap();
        file.write_all(&[2u8; 4]).unwrap();
        std::fs::write(temp.path().join("f.part3"), [3u8; 10]).unwrap();
        let claim = super::super::lock::DirectClaim::try_take(&upload.dir, 2)
            .unwrap()
            .unwrap();
        assert_eq!(advance(), Staged::Writing(2));
        assert_eq!(std::fs::metadata(&staging).unwrap().len(), 14);
        assert!(temp.path().join("f.part3").exists());
        // the writer fails and cuts its bytes; its retry comes as a part
        file.set_len(10).unwrap();
        drop(claim);
        std::fs::write(temp.path().join("f.part2"), [2u8; 10]).unwrap();
        assert_eq!(advance(), Staged::Bytes(30));
        let mut expected = vec![1u8; 10];
        expected.extend([2u8; 10]);
        expected.extend([3u8; 10]);
        assert_eq!(std::fs::read(&staging).unwrap(), expected);
    }

    #[test]
    fn appending_goes_on_at_the_start_of_the_part_a_killed_request_was_appending() {
        // nothing yet
        assert_eq!(point(0, 10, &[(1, 10)]), (0, 1));
        // two whole parts appended; part 2 still there (killed before removing it)
        assert_eq!(point(20, 10, &[(2, 10), (3, 10)]), (20, 3));
        // killed inside part 3
        assert_eq!(point(27, 10, &[(3, 10)]), (20, 3));
        // killed inside a floor-mode last part (15 bytes) past its first 10
        assert_eq!(point(33, 10, &[(3, 15)]), (20, 3));
        assert_eq!(point(30, 10, &[(3, 15)]), (20, 3));
        // odd bytes with no part to finish them go
        assert_eq!(point(27, 10, &[]), (20, 3));
    }
}
