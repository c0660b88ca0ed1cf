//! Receiving one chunk: stream the body into a temporary file beside the part's final name;
//! only a chunk whose byte count matches its declaration is ever renamed into place.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{fsutil, layout, BodySize, Result, StoreError};
use crate::buffer::AlignedBuffer;

const BUFFER: usize = 256 * 1024;
/// How often creating the temporary file is tried when the filesystem reports a transient error.
const CREATE_ATTEMPTS: u32 = 10;

/// A chunk being received. Dropping it without committing removes the temporary file.
pub struct PendingChunk {
    pub(super) dir: OwnedFd,
    pub(super) temp_name: String,
    pub(super) part_name: String,
    /// The chunk's number, 1-based.
    pub(super) number: u64,
    file: Option<File>,
    pub(super) received: u64,
    /// Removes the temporary file if a CGI process is ended by a signal mid-body.
    _on_signal: crate::interrupt::Registration,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl PendingChunk {
    pub(super) fn create(dir: OwnedFd, file_key: &str, number: u64) -> Result<PendingChunk> {
        let part_name = layout::part_name(file_key, number);
        // Leading dot: never mistaken for a part, unique per process and request.
        let temp_name = format!(
            ".{part_name}.{}-{}.tmp",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        // Registered first, so that no moment exists where the file is there and unregistered.
        let on_signal = crate::interrupt::remove_on_signal(&dir, &temp_name);
        // In a folder another host created this instant, GlusterFS can refuse a moment longer.
        let file = fsutil::retry_transient(CREATE_ATTEMPTS, || {
            fsutil::create_new(dir.as_fd(), &temp_name)
        })
        .map_err(StoreError::io("creating a chunk's temporary file"))?;
        Ok(PendingChunk {
            dir,
            temp_name,
            part_name,
            number,
            file: Some(file),
            received: 0,
            _on_signal: on_signal,
        })
    }

    /// Copies the body into the temporary file, checking its length against `size`: one byte
    /// more than declared, or an early end, and the chunk is refused; a body that says nothing
    /// of its length (a counted chunk's multipart part) is read to its end, and refused once
    /// it passes the limit.
    pub fn write_sized(&mut self, body: &mut dyn Read, size: BodySize) -> Result<()> {
        // Only `publish` takes the file, and it consumes the chunk: it is always here.
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let (BodySize::Exactly(bound) | BodySize::AtMost(bound)) = size;
        self.received = copy_bounded(body, file, bound, "writing a chunk")?;
        match size {
            BodySize::Exactly(expected) if self.received != expected => {
                Err(StoreError::BodyLength {
                    expected,
                    received: self.received,
                })
            }
            BodySize::AtMost(max) if self.received > max => Err(StoreError::OverLimit(format!(
                "the chunk is larger than the maximum chunk size of {max} bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Closes the temporary file and renames it to the part name (atomically replacing a part
    /// of another size; a duplicate of a stored part is dropped). Called under the upload lock.
    pub(super) fn publish(mut self) -> Result<()> {
        // Closing first: a close error (NFS) must not leave a short part under the part name.
        if let Some(file) = self.file.take() {
            drop(file);
        }
        // A duplicate of a part already stored with its full size is dropped rather than
        // renamed over it: the bytes are the same, and replacing the part's inode would leave
        // other hosts of a network filesystem holding a stale handle to the one they cached
        // (GlusterFS answers ESTALE to a host assembling from it). Dropping `self` removes the
        // temporary file.
        let stored = fsutil::regular_file_size(self.dir.as_fd(), &self.part_name)
            .map_err(StoreError::io("looking for a part"))?;
        if stored == Some(self.received) {
            return Ok(());
        }
        fsutil::rename_within(self.dir.as_fd(), &self.temp_name, &self.part_name)
            .map_err(StoreError::io("renaming a chunk into place"))?;
        self.temp_name.clear();
        Ok(())
    }
}

impl Drop for PendingChunk {
    fn drop(&mut self) {
        self.file.take();
        if !self.temp_name.is_empty() {
            let _ = fsutil::remove_file(self.dir.as_fd(), &self.temp_name);
        }
    }
}

/// Copies `body` into `file` until it ends or carries more than `max` bytes, and answers how
/// many bytes it read: `max + 1` means "more than `max`" (that last read is not written).
/// Reading stops there, so a body that lies about its size costs at most one buffer more.
pub(super) fn copy_bounded(
    body: &mut dyn Read,
    file: &mut dyn Write,
    max: u64,
    op: &'static str,
) -> Result<u64> {
    let mut aligned = AlignedBuffer::new(BUFFER);
    let buffer = aligned.as_mut_slice();
    let limit = max.saturating_add(1);
    let mut received: u64 = 0;
    while received < limit {
        let want = (limit - received).min(BUFFER as u64) as usize;
        let n = match body.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::BodyRead(e)),
        };
        received += n as u64;
        if received > max {
            // Too much: whatever was written is refused as a whole by the caller.
            break;
        }
        file.write_all(&buffer[..n]).map_err(StoreError::io(op))?;
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn dir() -> (tempfile::TempDir, OwnedFd) {
        let root = tempfile::tempdir().unwrap();
        let fd = fsutil::open_root(root.path()).unwrap();
        (root, fd)
    }

    fn names(root: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_exact_body_is_published_under_the_part_name() {
        let (root, fd) = dir();
        let mut chunk = PendingChunk::create(fd, "f.bin", 3).unwrap();
        assert_eq!(
            names(&root).len(),
            1,
            "a hidden temporary file while receiving"
        );
        assert!(names(&root)[0].starts_with(".f.bin.part3."));
        chunk
            .write_sized(&mut Cursor::new(b"hello"), BodySize::Exactly(5))
            .unwrap();
        chunk.publish().unwrap();
        assert_eq!(names(&root), ["f.bin.part3"]);
        assert_eq!(
            std::fs::read(root.path().join("f.bin.part3")).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_short_or_long_body_is_refused_and_leaves_nothing() {
        for (body, expected, received) in [(&b"hell"[..], 5, 4), (&b"hello!"[..], 5, 6)] {
            let (root, fd) = dir();
            let mut chunk = PendingChunk::create(fd, "f.bin", 1).unwrap();
            match chunk.write_sized(&mut Cursor::new(body), BodySize::Exactly(expected)) {
                Err(StoreError::BodyLength {
                    expected: e,
                    received: r,
                }) => assert_eq!((e, r), (expected, received)),
                other => panic!("{other:?}"),
            }
            drop(chunk);
            assert!(names(&root).is_empty(), "{:?}", names(&root));
        }
    }

    #[test]
    fn a_failing_body_is_a_read_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            }
        }
        let (root, fd) = dir();
        let mut chunk = PendingChunk::create(fd, "f.bin", 1).unwrap();
        assert!(matches!(
            chunk.write_sized(&mut Broken, BodySize::Exactly(5)),
            Err(StoreError::BodyRead(_))
        ));
        drop(chunk);
        assert!(names(&root).is_empty());
    }

    #[test]
    fn a_duplicate_replaces_an_identical_part() {
        let (root, fd) = dir();
        for _ in 0..2 {
            let fd = fd.try_clone().unwrap();
            let mut chunk = PendingChunk::create(fd, "f.bin", 1).unwrap();
            chunk
                .write_sized(&mut Cursor::new(b"abc"), BodySize::Exactly(3))
                .unwrap();
            chunk.publish().unwrap();
        }
        assert_eq!(names(&root), ["f.bin.part1"]);
    }
}
