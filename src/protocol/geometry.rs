//! Pure chunk-geometry rules shared by floor mode and ceil mode (`forceChunkSize`).
//!
//! The client's chunk count is not trusted (resumable.js 1.1.0 can send a
//! `resumableTotalChunks` lower than the chunks it sends); these rules hold for every chunk k
//! in both modes:
//! start = (k-1)*chunkSize; a non-final chunk is exactly chunkSize; the final chunk ends at
//! totalSize; in floor mode the final chunk may be up to 2*chunkSize-1 bytes.

use std::fmt;

/// A chunk's place in its file, checked to be consistent and overflow-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// 1-based chunk number.
    pub number: u64,
    pub chunk_size: u64,
    /// The size of this chunk (`currentChunkSize`).
    pub size: u64,
    pub total_size: u64,
    pub start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeometryError {
    ChunkNumberZero,
    ChunkSizeZero,
    StartOverflows {
        number: u64,
        chunk_size: u64,
    },
    StartPastEnd {
        start: u64,
        total_size: u64,
    },
    EndPastTotal {
        end: u64,
        total_size: u64,
    },
    /// Not the last chunk, but not `chunkSize` long either.
    ShortInnerChunk {
        size: u64,
        chunk_size: u64,
    },
    /// The last chunk is longer than floor mode allows (2*chunkSize-1).
    OversizedLastChunk {
        size: u64,
        chunk_size: u64,
    },
    /// The chunk count the client sent contradicts this chunk's position.
    TotalChunksContradicts {
        number: u64,
        total_chunks: u64,
    },
    /// The byte offset the client sent is not where its chunk number starts.
    OffsetContradicts {
        offset: u64,
        number: u64,
    },
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryError::ChunkNumberZero => write!(f, "chunk numbers start at 1"),
            GeometryError::ChunkSizeZero => write!(f, "chunk size must be at least 1"),
            GeometryError::StartOverflows { number, chunk_size } => {
                write!(
                    f,
                    "chunk {number} of size {chunk_size} overflows a 64-bit offset"
                )
            }
            GeometryError::StartPastEnd { start, total_size } => {
                write!(
                    f,
                    "chunk starts at byte {start}, past the file size {total_size}"
                )
            }
            GeometryError::EndPastTotal { end, total_size } => {
                write!(
                    f,
                    "chunk ends at byte {end}, past the file size {total_size}"
                )
            }
            GeometryError::ShortInnerChunk { size, chunk_size } => write!(
                f,
                "chunk of {size} bytes is neither the last chunk nor the chunk size {chunk_size}"
            ),
            GeometryError::OversizedLastChunk { size, chunk_size } => write!(
                f,
                "last chunk of {size} bytes is larger than twice the chunk size {chunk_size} allows"
            ),
            GeometryError::TotalChunksContradicts {
                number,
                total_chunks,
            } => write!(
                f,
                "chunk {number} contradicts the declared chunk count {total_chunks}"
            ),
            GeometryError::OffsetContradicts { offset, number } => {
                write!(f, "byte offset {offset} is not where chunk {number} starts")
            }
        }
    }
}

impl std::error::Error for GeometryError {}

impl Geometry {
    /// Validates one chunk's declared numbers. `total_chunks`, when sent, is only used to reject
    /// a chunk number beyond it; it never decides completion.
    pub fn check(
        number: u64,
        chunk_size: u64,
        size: u64,
        total_size: u64,
        total_chunks: Option<u64>,
    ) -> Result<Geometry, GeometryError> {
        if number == 0 {
            return Err(GeometryError::ChunkNumberZero);
        }
        if chunk_size == 0 {
            return Err(GeometryError::ChunkSizeZero);
        }
        let start = (number - 1)
            .checked_mul(chunk_size)
            .ok_or(GeometryError::StartOverflows { number, chunk_size })?;
        // A 0-byte file is one 0-byte chunk starting at 0; otherwise a chunk starts inside the file.
        if start > total_size || (start == total_size && total_size > 0) {
            return Err(GeometryError::StartPastEnd { start, total_size });
        }
        let end = start.checked_add(size).ok_or(GeometryError::EndPastTotal {
            end: u64::MAX,
            total_size,
        })?;
        if end > total_size {
            return Err(GeometryError::EndPastTotal { end, total_size });
        }
        let is_last = end == total_size;
        if !is_last && size != chunk_size {
            return Err(GeometryError::ShortInnerChunk { size, chunk_size });
        }
        if is_last && size >= chunk_size.saturating_mul(2) {
            return Err(GeometryError::OversizedLastChunk { size, chunk_size });
        }
        // A declared count lower than this chunk's number is not refused: resumable.js 1.1.0
        // under-reports it. Only a count of zero is impossible.
        if let Some(total_chunks) = total_chunks {
            if total_chunks == 0 {
                return Err(GeometryError::TotalChunksContradicts {
                    number,
                    total_chunks,
                });
            }
        }
        Ok(Geometry {
            number,
            chunk_size,
            size,
            total_size,
            start,
        })
    }

    /// [`Geometry::check`] for clients whose last chunk is never longer than the chunk size
    /// (Fine Uploader): their chunk count is exact, `max(1, ceil(total / chunk size))`, and
    /// must be the one sent.
    pub fn check_ceil(
        number: u64,
        chunk_size: u64,
        size: u64,
        total_size: u64,
        total_chunks: u64,
    ) -> Result<Geometry, GeometryError> {
        let geometry = Geometry::check(number, chunk_size, size, total_size, Some(total_chunks))?;
        if total_size.div_ceil(chunk_size).max(1) != total_chunks || number > total_chunks {
            return Err(GeometryError::TotalChunksContradicts {
                number,
                total_chunks,
            });
        }
        Ok(geometry)
    }

    /// Checks a byte offset the client sent beside the chunk number.
    pub fn check_offset(&self, offset: u64) -> Result<(), GeometryError> {
        if offset == self.start {
            Ok(())
        } else {
            Err(GeometryError::OffsetContradicts {
                offset,
                number: self.number,
            })
        }
    }

    pub fn is_last(&self) -> bool {
        self.start + self.size == self.total_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The chunk sizes a client sends for a file of `total` bytes in chunks of `chunk`.
    fn client_chunks(total: u64, chunk: u64, force_chunk_size: bool) -> Vec<u64> {
        let count = if force_chunk_size {
            total.div_ceil(chunk)
        } else {
            total / chunk
        }
        .max(1);
        (0..count)
            .map(|offset| {
                let start = offset * chunk;
                let mut end = total.min((offset + 1) * chunk);
                if total - end < chunk && !force_chunk_size {
                    end = total;
                }
                end - start
            })
            .collect()
    }

    #[test]
    fn the_documented_examples_pass() {
        for (total, force, expected) in [
            (25, false, vec![10, 15]),
            (29, false, vec![10, 19]),
            (20, false, vec![10, 10]),
            (5, false, vec![5]),
            (0, false, vec![0]),
            (25, true, vec![10, 10, 5]),
            (29, true, vec![10, 10, 9]),
            (0, true, vec![0]),
        ] {
            let sizes = client_chunks(total, 10, force);
            assert_eq!(sizes, expected);
            for (i, size) in sizes.iter().enumerate() {
                let n = sizes.len() as u64;
                Geometry::check(i as u64 + 1, 10, *size, total, Some(n)).unwrap();
            }
        }
    }

    #[test]
    fn lies_are_rejected() {
        use std::mem::discriminant;
        use GeometryError::*;
        let (number, chunk_size) = (0, 0);
        let (size, total_size, start, end) = (0, 0, 0, 0);
        let (shape, total_chunks) = (ShortInnerChunk { size, chunk_size }, 0);
        let cases = [
            ((0, 10, 10, 25, None), ChunkNumberZero),
            ((1, 0, 0, 0, None), ChunkSizeZero),
            ((1, 10, 9, 25, None), shape),
            ((4, 10, 5, 25, None), StartPastEnd { start, total_size }),
            ((2, 10, 16, 25, None), EndPastTotal { end, total_size }),
            (
                (1, 10, 20, 20, None),
                OversizedLastChunk { size, chunk_size },
            ),
            (
                (u64::MAX, u64::MAX, 1, u64::MAX, None),
                StartOverflows { number, chunk_size },
            ),
            (
                (2, u64::MAX / 2, u64::MAX, u64::MAX, None),
                EndPastTotal { end, total_size },
            ),
            (
                (1, 10, 5, 5, Some(0)),
                TotalChunksContradicts {
                    number,
                    total_chunks,
                },
            ),
        ];
        for ((number, chunk, size, total, count), expected) in cases {
            let error = Geometry::check(number, chunk, size, total, count).unwrap_err();
            assert_eq!(discriminant(&error), discriminant(&expected), "{error:?}");
        }
    }

    #[test]
    fn ceil_mode_counts_are_exact() {
        // 25 bytes in parts of 10: 10, 10, 5.
        Geometry::check_ceil(3, 10, 5, 25, 3).unwrap();
        Geometry::check_ceil(1, 10, 0, 0, 1).unwrap();
        for (number, size, count) in [(3, 5, 4), (3, 5, 2), (2, 15, 2), (4, 5, 3)] {
            assert!(
                Geometry::check_ceil(number, 10, size, 25, count).is_err(),
                "{number} {size} {count}"
            );
        }
        let g = Geometry::check_ceil(2, 10, 10, 25, 3).unwrap();
        g.check_offset(10).unwrap();
        assert!(matches!(
            g.check_offset(9),
            Err(GeometryError::OffsetContradicts { .. })
        ));
    }

    #[test]
    fn a_wrong_total_chunks_from_resumable_1_1_0_is_tolerated() {
        // resumable.js 1.1.0 can send a count that is too small, and one that changes from
        // chunk to chunk of one file.
        Geometry::check(5, 10, 10, 100, Some(2)).unwrap();
    }

    proptest! {
        #[test]
        fn every_chunk_a_client_sends_is_accepted(total in 0u64..100_000, chunk in 1u64..5_000, force: bool) {
            let sizes = client_chunks(total, chunk, force);
            let mut covered = 0;
            for (i, size) in sizes.iter().enumerate() {
                let g = Geometry::check(i as u64 + 1, chunk, *size, total, Some(sizes.len() as u64)).unwrap();
                prop_assert_eq!(g.start, covered);
                covered += size;
                prop_assert_eq!(g.is_last(), i + 1 == sizes.len());
            }
            prop_assert_eq!(covered, total);
        }

        #[test]
        fn accepted_chunks_always_lie_inside_the_file(number: u64, chunk: u64, size: u64, total: u64) {
            if let Ok(g) = Geometry::check(number, chunk, size, total, None) {
                prop_assert!(g.start.checked_add(g.size).is_some_and(|end| end <= total));
                prop_assert!(g.size == chunk || g.is_last());
            }
        }
    }
}
