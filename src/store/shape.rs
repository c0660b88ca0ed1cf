//! The chunk geometry an upload's parts were stored with, kept beside them, so that parts
//! stored under one chunk size are never combined with parts of another.
//!
//! A site that changes `chunkSize` while uploads are in flight would otherwise corrupt them:
//! a part stored under the old size can have exactly the size the new geometry expects at the
//! same number while holding other bytes (S=25: [10,10,5] in ceil mode vs five chunks of 5 —
//! part 3 is 5 bytes either way, from offset 20 or offset 10), and the test request would call
//! it present. Parts left by the PHP script have no geometry file; they are taken as they are.
//!
//! A counted upload (Dropzone, Plupload: chunks known by their place, sizes measured) learns its
//! total only when its last chunk arrives, and Plupload its chunk size only from its first: the
//! shape records what is known so far (`<chunk size> -` while the total is not), so that every
//! later chunk, in whichever process, is checked against it.
//!
//! A second line describes the upload (client, identifier, file name, user) in JSON for
//! `resumable-cgi list`, since hashed directory and file names do not say.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use super::{fsutil, layout, Result, StoreError, UploadDir, UploadKey};

/// How an upload is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub chunk_size: u64,
    /// `None` while a counted upload's last chunk has not arrived.
    pub total_size: Option<u64>,
}

impl Shape {
    pub fn of(key: &UploadKey) -> Shape {
        Shape {
            chunk_size: key.chunk_size,
            total_size: Some(key.total_size),
        }
    }

    pub(super) fn parse(text: &str) -> Option<Shape> {
        // Only the first line: a second one describes the upload for `list`.
        let mut words = text.lines().next().unwrap_or("").split_whitespace();
        let chunk_size = words.next()?.parse().ok()?;
        let total_size = match words.next()? {
            "-" => None,
            total => Some(total.parse().ok()?),
        };
        Some(Shape {
            chunk_size,
            total_size,
        })
    }

    fn render(&self) -> String {
        match self.total_size {
            Some(total) => format!("{} {total}\n", self.chunk_size),
            None => format!("{} -\n", self.chunk_size),
        }
    }
}

/// The geometry recorded for this upload, if any. An unreadable file counts as none.
pub(super) fn recorded(upload: &UploadDir) -> Result<Option<Shape>> {
    let name = layout::geometry_name(&upload.file_key);
    let file = match fsutil::open_read(upload.dir.as_fd(), &name) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("reading the upload's chunk geometry")(e)),
    };
    // The numbers only: the description after them may be cut anywhere, even mid-character.
    let mut bytes = Vec::new();
    file.take(64)
        .read_to_end(&mut bytes)
        .map_err(StoreError::io("reading the upload's chunk geometry"))?;
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Shape::parse(&String::from_utf8_lossy(first_line)))
}

/// True unless a different geometry is recorded for this upload.
pub(super) fn agrees(upload: &UploadDir, key: &UploadKey) -> Result<bool> {
    Ok(recorded(upload)?.is_none_or(|shape| shape == Shape::of(key)))
}

/// Records `key`'s geometry (temp file + rename). Called under the upload lock.
pub(super) fn record(upload: &UploadDir, key: &UploadKey) -> Result<()> {
    record_shape(upload, key, &Shape::of(key))
}

/// Records a shape, and what `key` says of the upload for `list` (temp file + rename). Called
/// under the upload lock.
pub(super) fn record_shape(upload: &UploadDir, key: &UploadKey, shape: &Shape) -> Result<()> {
    let name = layout::geometry_name(&upload.file_key);
    let temp = format!(".{name}.tmp");
    let mut file = fsutil::create_truncate(upload.dir.as_fd(), &temp)
        .map_err(StoreError::io("recording the upload's chunk geometry"))?;
    let about = serde_json::json!({
        "client": key.client,
        "identifier": key.identifier,
        "filename": key.filename,
        "relativePath": key.relative_path,
        "user": key.user,
    });
    file.write_all(format!("{}{about}\n", shape.render()).as_bytes())
        .map_err(StoreError::io("recording the upload's chunk geometry"))?;
    drop(file);
    fsutil::rename_within(upload.dir.as_fd(), &temp, &name)
        .map_err(StoreError::io("recording the upload's chunk geometry"))
}

/// Removes the geometry file (once the upload is complete).
pub(super) fn forget(upload: &UploadDir) -> Result<()> {
    fsutil::remove_file(upload.dir.as_fd(), &layout::geometry_name(&upload.file_key))
        .map_err(StoreError::io("removing the upload's chunk geometry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_garbage_is_none() {
        for total_size in [Some(25), None] {
            let shape = Shape {
                chunk_size: 1 << 20,
                total_size,
            };
            assert_eq!(Shape::parse(&shape.render()), Some(shape));
        }
        for bad in ["", "1", "a b", "1 -2", "99999999999999999999 1", "- 1"] {
            assert_eq!(Shape::parse(bad), None, "{bad:?}");
        }
    }
}
