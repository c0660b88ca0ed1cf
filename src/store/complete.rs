//! Completion: coverage check, assembly with the kernel's copy, fsync, publishing under a free
//! name without ever replacing a file, the completion record, and cleanup of the parts.
//!
//! Crash safety, step by step (all under the upload lock):
//! 1. the staging file is assembled and fsynced: a crash leaves a staging file with one link,
//!    which the next attempt truncates and rebuilds;
//! 2. it is hard-linked to a free final name (link fails rather than replace): the final name
//!    only ever shows a complete file;
//! 3. the completion record is written (temp + rename): a crash between 2 and 3 leaves the
//!    staging file with two links, and the next attempt finds the published name by inode
//!    instead of publishing a second copy. So the staging file must outlive the record: it is
//!    the only trace of the publish until the record exists;
//! 4. the staging file and the parts are removed: a crash here leaves a record, and the next
//!    request finishes the cleanup (the staging file's second link included).

use std::io::{self, Read, Write};
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::lock::UploadLock;
use super::naming;
use super::shape::Shape;
use super::{fsutil, layout, FsStore, PendingChunk, Progress, Result, StoreError, UploadKey};

/// Folder of the upload dir where files are assembled before they get their final name.
pub const STAGING_DIR: &str = ".resumable-staging";
/// How many `name (n).ext` variants are tried before giving up.
const MAX_NAME_ATTEMPTS: u32 = 10_000;
const MAX_RECORD_SIZE: u64 = 64 * 1024;
/// How often an assembly is tried when the filesystem reports a transient error.
const ASSEMBLY_ATTEMPTS: u32 = 5;

/// A finished upload: where it was published, relative to the upload dir, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub file: String,
    pub size: u64,
    /// The object key, once published to the object store (RESUMABLE_PUBLISH_URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

pub(super) fn commit_and_complete(
    store: &FsStore,
    key: &UploadKey,
    pending: Option<PendingChunk>,
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
    let _lock = UploadLock::acquire(&dir).map_err(StoreError::io("locking the upload"))?;
    let upload = super::UploadDir { dir, file_key };
    if let Some(done) = read_record(&upload, key)? {
        // A late duplicate: nothing is recreated, and a cleanup a crash interrupted is finished.
        drop(pending);
        remove_staging(store, key)?;
        remove_parts(&upload)?;
        let done = super::publish::finish(store, &upload, done)?;
        return Ok(Progress::AlreadyComplete(done));
    }
    match (super::shape::recorded(&upload)?, pending) {
        (Some(shape), Some(pending)) if shape == Shape::of(key) => pending.publish()?,
        (Some(_), Some(pending)) => {
            // The client now chunks this file differently (the site changed chunkSize): the
            // old parts cannot be combined with the new ones, so the upload starts afresh.
            // Chunks still arriving keep their temporary files; only stored parts go.
            remove_stored_parts(&upload)?;
            pending.publish()?;
            super::shape::record(&upload, key)?;
        }
        (None, Some(pending)) => {
            // The chunk first, so that its rename stays the request's first: a part stored
            // without a geometry file is taken as it is, like the PHP script's parts.
            pending.publish()?;
            super::shape::record(&upload, key)?;
        }
        (Some(shape), None) if shape != Shape::of(key) => {
            return Ok(Progress::Incomplete);
        }
        (_, None) => {}
    }
    let Some(parts) = covered_parts(&upload, key)? else {
        return Ok(Progress::Incomplete);
    };
    let completion = assemble_and_publish(store, &upload, key, parts)?;
    write_record(&upload, &completion)?;
    remove_staging(store, key)?;
    remove_parts(&upload)?;
    let completion = super::publish::finish(store, &upload, completion)?;
    Ok(Progress::Completed(completion))
}

/// The number of parts when parts 1..=n are all stored and together cover exactly
/// `total_size`: every part but the last exactly `chunk_size`, the last ending at the total.
/// Each part's size was checked against its position when it was stored.
fn covered_parts(upload: &super::UploadDir, key: &UploadKey) -> Result<Option<u64>> {
    let mut offset: u64 = 0;
    let mut number: u64 = 1;
    loop {
        let part = layout::part_name(&upload.file_key, number);
        let Some(size) = fsutil::regular_file_size(upload.dir.as_fd(), &part)
            .map_err(StoreError::io("checking which parts are stored"))?
        else {
            return Ok(None);
        };
        let remaining = key.total_size - offset;
        if size == remaining {
            return Ok(Some(number));
        }
        if size != key.chunk_size || size > remaining || size == 0 {
            return Ok(None);
        }
        offset += size;
        number += 1;
    }
}

fn assemble_and_publish(
    store: &FsStore,
    upload: &super::UploadDir,
    key: &UploadKey,
    parts: u64,
) -> Result<Completion> {
    let root = store.upload_root()?;
    let staging_dir = fsutil::ensure_dir(root.as_fd(), STAGING_DIR, 0o700)
        .map_err(StoreError::io("opening the staging directory"))?;
    let staging = staging_name(key);
    let (folders, name) = layout::published_path(&key.filename, key.relative_path.as_deref());
    let mut target = root;
    for folder in &folders {
        target = fsutil::ensure_dir(target.as_fd(), folder, 0o777)
            .map_err(StoreError::io("creating the folders of the published file"))?;
    }
    let relative = |candidate: &str| {
        let mut path = folders.join("/");
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(candidate);
        path
    };

    // The staging file stays until the record is written (see the header): removed by
    // remove_staging after write_record.
    if let Some(published) =
        find_earlier_publish(&staging_dir, &staging, &target, &name, key.total_size)?
    {
        return Ok(Completion {
            file: relative(&published),
            size: key.total_size,
            object: None,
        });
    }

    let mut guard = StagingGuard {
        dir: staging_dir.as_fd(),
        name: &staging,
        armed: true,
    };
    // A network filesystem may call a part another client just renamed into place a stale
    // handle for a moment (GlusterFS does): the assembly starts again.
    let mut attempt = 1;
    loop {
        match assemble(upload, parts, key.total_size, staging_dir.as_fd(), &staging) {
            Err(StoreError::Io { source, .. })
                if fsutil::is_transient(&source) && attempt < ASSEMBLY_ATTEMPTS =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            other => break other?,
        }
    }
    let mut published = None;
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let candidate = layout::clash_candidate(&name, attempt);
        match naming::give_name(staging_dir.as_fd(), &staging, target.as_fd(), &candidate) {
            Ok(()) => {
                published = Some(candidate);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::io("publishing the finished file")(e)),
        }
    }
    let published = published.ok_or_else(|| StoreError::NoFreeName(relative(&name)))?;
    // Published: from here the staging file is the second link that lets a retry find the
    // published name if this process dies before the record is written.
    guard.armed = false;
    fsutil::sync_dir(&target).map_err(StoreError::io("syncing the upload directory"))?;
    Ok(Completion {
        file: relative(&published),
        size: key.total_size,
        object: None,
    })
}

/// How much of the staging file is copied before its writeback is started (see [`assemble`]).
const WRITE_BEHIND: u64 = 8 << 20;

/// Concatenates the parts into the staging file with the kernel's copy (copy_file_range from
/// std::io::copy between files; no part is read into memory) and fsyncs it.
///
/// Every WRITE_BEHIND bytes, writeback of what was just copied is started
/// (`posix_fadvise(DONTNEED)`, which on Linux submits the range's dirty pages without waiting;
/// pages under writeback stay cached). The disk then writes while the copy goes on, instead of
/// all of it inside the final fsync (BENCHMARKS.md, assembly, measures the difference). Only
/// a hint: its failure changes nothing, and the fsync below is what makes the file durable.
fn assemble(
    upload: &super::UploadDir,
    parts: u64,
    total_size: u64,
    staging_dir: BorrowedFd<'_>,
    staging: &str,
) -> Result<()> {
    let mut out = fsutil::create_truncate(staging_dir, staging)
        .map_err(StoreError::io("creating the staging file"))?;
    let mut written: u64 = 0;
    let mut submitted: u64 = 0;
    for number in 1..=parts {
        let part = layout::part_name(&upload.file_key, number);
        let mut input = fsutil::open_read(upload.dir.as_fd(), &part)
            .map_err(StoreError::io("opening a part to assemble"))?;
        written += io::copy(&mut input, &mut out).map_err(StoreError::io("assembling the file"))?;
        if let Some(len) = NonZeroU64::new(written - submitted).filter(|n| n.get() >= WRITE_BEHIND)
        {
            let _ = rustix::fs::fadvise(&out, submitted, Some(len), rustix::fs::Advice::DontNeed);
            submitted = written;
        }
    }
    if written != total_size {
        return Err(StoreError::Io {
            op: "assembling the file",
            source: io::Error::other(format!(
                "the parts hold {written} bytes, expected {total_size}"
            )),
        });
    }
    out.flush().map_err(StoreError::io("assembling the file"))?;
    out.sync_all()
        .map_err(StoreError::io("syncing the assembled file"))
}

/// When a previous attempt published the staging file but died before writing the record, the
/// staging file has a second link somewhere among the candidate names (or, where it was
/// renamed, its inode number was noted): find it by inode.
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
struct StagingGuard<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    /// Cleared once the file is published.
    armed: bool,
}

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fsutil::remove_file(self.dir, self.name);
        }
    }
}

fn staging_name(key: &UploadKey) -> String {
    layout::staging_name(&[
        key.user.as_deref().unwrap_or(""),
        &key.identifier,
        &key.filename,
    ])
}

/// Removes the staging name of a published upload (the published name keeps the file), once
/// the record exists. Nothing to do when there is none.
fn remove_staging(store: &FsStore, key: &UploadKey) -> Result<()> {
    let root = store.upload_root()?;
    let staging_dir = match fsutil::open_dir(root.as_fd(), STAGING_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("opening the staging directory")(e)),
    };
    let staging = staging_name(key);
    fsutil::remove_file(staging_dir.as_fd(), &staging)
        .and_then(|()| naming::forget(staging_dir.as_fd(), &staging))
        .map_err(StoreError::io("removing the staging file"))
}

pub(super) fn read_record(
    upload: &super::UploadDir,
    key: &UploadKey,
) -> Result<Option<Completion>> {
    let name = layout::record_name(&upload.file_key);
    let file = match fsutil::open_read(upload.dir.as_fd(), &name) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("reading the completion record")(e)),
    };
    let mut text = Vec::new();
    file.take(MAX_RECORD_SIZE)
        .read_to_end(&mut text)
        .map_err(StoreError::io("reading the completion record"))?;
    // A record for another file of the same identifier and name (a different size) is stale:
    // that upload starts afresh and replaces the record when it completes.
    Ok(serde_json::from_slice::<Completion>(&text)
        .ok()
        .filter(|record| record.size == key.total_size))
}

pub(super) fn write_record(upload: &super::UploadDir, completion: &Completion) -> Result<()> {
    let name = layout::record_name(&upload.file_key);
    let temp = format!(".{name}.tmp");
    let mut file = fsutil::create_truncate(upload.dir.as_fd(), &temp)
        .map_err(StoreError::io("writing the completion record"))?;
    let text = serde_json::to_vec(completion).unwrap_or_default();
    file.write_all(&text)
        .and_then(|_| file.sync_all())
        .map_err(StoreError::io("writing the completion record"))?;
    fsutil::rename(upload.dir.as_fd(), &temp, upload.dir.as_fd(), &name)
        .map_err(StoreError::io("writing the completion record"))
}

/// Removes this upload's parts and any temporary chunk files left by killed requests.
fn remove_parts(upload: &super::UploadDir) -> Result<()> {
    remove_named(upload, |name| {
        is_part_of(name, &upload.file_key) || is_chunk_temp_of(name, &upload.file_key)
    })?;
    super::shape::forget(upload)
}

/// Removes this upload's stored parts only (not chunks still arriving).
fn remove_stored_parts(upload: &super::UploadDir) -> Result<()> {
    remove_named(upload, |name| is_part_of(name, &upload.file_key))
}

fn remove_named(upload: &super::UploadDir, wanted: impl Fn(&str) -> bool) -> Result<()> {
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
}
