//! Receiving one chunk: stream the body into a temporary file beside the part's final name;
//! only a chunk whose byte count matches its declaration is ever renamed into place.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{fsutil, layout, Result, StoreError};
use crate::buffer::AlignedBuffer;

const BUFFER: usize = 256 * 1024;
/// How often creating the temporary file is tried when the filesystem reports a transient error.
const CREATE_ATTEMPTS: u32 = 10;

/// A chunk being received. Dropping it without committing removes the temporary file.
pub struct PendingChunk {
    pub(super) dir: OwnedFd,
    pub(super) temp_name: String,
    pub(super) part_name: String,
    file: Option<File>,
    pub(super) received: u64,
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
        // In a folder another host created this instant, GlusterFS can refuse a moment longer.
        let file = fsutil::retry_transient(CREATE_ATTEMPTS, || {
            fsutil::create_new(dir.as_fd(), &temp_name)
        })
        .map_err(StoreError::io("creating a chunk's temporary file"))?;
        Ok(PendingChunk {
            dir,
            temp_name,
            part_name,
            file: Some(file),
            received: 0,
        })
    }

    /// Copies the body into the temporary file and checks that it carried exactly `expected`
    /// bytes: one more byte, or an early end, and the chunk is refused.
    pub fn write_from(&mut self, body: &mut dyn Read, expected: u64) -> Result<()> {
        // Only `publish` takes the file, and it consumes the chunk: it is always here.
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut aligned = AlignedBuffer::new(BUFFER);
        let buffer = aligned.as_mut_slice();
        let limit = expected.saturating_add(1);
        while self.received < limit {
            let want = (limit - self.received).min(BUFFER as u64) as usize;
            let n = match body.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::BodyRead(e)),
            };
            self.received += n as u64;
            if self.received > expected {
                break;
            }
            file.write_all(&buffer[..n])
                .map_err(StoreError::io("writing a chunk"))?;
        }
        if self.received != expected {
            return Err(StoreError::BodyLength {
                expected,
                received: self.received,
            });
        }
        Ok(())
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
        fsutil::rename(
            self.dir.as_fd(),
            &self.temp_name,
            self.dir.as_fd(),
            &self.part_name,
        )
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
