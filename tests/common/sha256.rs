//! The suite's one sha256: lowercase hex digests of bytes, of files (streamed) and of data fed
//! piece by piece.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The digest of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut hasher = Sha256Hex::default();
    hasher.update(data);
    hasher.hex()
}

/// The digest of the file at `path`, read in pieces (files here reach hundreds of MiB).
pub fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256Hex::default();
    std::io::copy(&mut file, &mut hasher).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hasher.hex()
}

/// A digest built up piece by piece (also as an [`std::io::Write`] sink).
#[derive(Default)]
pub struct Sha256Hex(Sha256);

impl Sha256Hex {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Write for Sha256Hex {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
