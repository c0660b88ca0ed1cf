//! Receiving one chunk: stream the body into a temporary file beside the part's final name;
//! only a chunk whose byte count matches its declaration is ever renamed into place.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{fsutil, layout, BodySize, Result, StoreError};
use crate::buffer::AlignedBuffer;

const BUFFER: usize = 256 * 1024;

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
        let file = fsutil::create_new(dir.as_fd(), &temp_name)
            .map_err(StoreError::io("creating a chunk's temporary file"))?;
        Ok(PendingChunk {
            dir,
            temp_name,
            part_name,
            file: Some(file),
            received: 0,
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
        let mut aligned = AlignedBuffer::new(BUFFER);
        let buffer = aligned.as_mut_slice();
        let limit = bound.saturating_add(1);
        while self.received < limit {
            let want = (limit - self.received).min(BUFFER as u64) as usize;
            let n = match body.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::BodyRead(e)),
            };
            self.received += n as u64;
            if self.received > bound {
                break;
            }
            file.write_all(&buffer[..n])
                .map_err(StoreError::io("writing a chunk"))?;
        }
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

    /// Closes the temporary file and renames it to the part name (atomically replacing an
    /// identical duplicate). Called under the upload lock.
    pub(super) fn publish(mut self) -> Result<()> {
        // Closing first: a close error (NFS) must not leave a short part under the part name.
        if let Some(file) = self.file.take() {
            drop(file);
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
