//! The page-aligned buffer every body is read through.
//!
//! The kernel fills it from pipe or socket pages with `rep movsb`, which on AMD Zen runs several
//! times slower when source and destination page offsets differ (malloc's 16-byte header
//! skews them); `cat` aligns its buffer the same way.

const PAGE: usize = 4096;

/// `len` bytes starting on a page boundary.
pub struct AlignedBuffer {
    storage: Vec<u8>,
    skew: usize,
    len: usize,
}

impl AlignedBuffer {
    pub fn new(len: usize) -> AlignedBuffer {
        let storage = vec![0u8; len + PAGE];
        let skew = (PAGE - storage.as_ptr() as usize % PAGE) % PAGE;
        AlignedBuffer { storage, skew, len }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.skew..self.skew + self.len]
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.skew..self.skew + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_page() {
        for len in [1, 4096, 256 * 1024] {
            let mut buffer = AlignedBuffer::new(len);
            let slice = buffer.as_mut_slice();
            assert_eq!(slice.len(), len);
            assert_eq!(slice.as_ptr() as usize % PAGE, 0);
        }
    }
}
