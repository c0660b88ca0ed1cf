//! Dropzone 5 and 6 (`chunking: true`): `dzuuid`, `dzchunkindex` (0-based), `dzchunksize` (the
//! configured chunk size, not this chunk's), `dztotalchunkcount`, `dzchunkbyteoffset`,
//! `dztotalfilesize`, and the file part `file` carrying the real file name. No test request and
//! no final request: the upload completes with whichever chunk is the last one missing.
//!
//! Chunks are counted, not sized: Dropzone slices the file it uploads, which its
//! `resizeWidth`/`transformFile` options may have changed, while `dztotalfilesize` is the
//! original file's size. So the chunk count and the bytes received decide the total (every chunk
//! but the last is `dzchunksize` bytes), and `dztotalfilesize` is only checked to be a number.

use super::params::{ParamError, Params};
use super::{ChunkDialect, CountedChunk, GeometryError, Intent};
use crate::request::Head;

pub struct Dropzone;

pub static DROPZONE: Dropzone = Dropzone;

impl ChunkDialect for Dropzone {
    fn name(&self) -> &'static str {
        "dropzone"
    }

    fn recognizes(&self, params: &Params, _head: &Head) -> bool {
        params.contains("dzuuid")
    }

    fn intent(&self, params: &Params, _head: &Head) -> Result<Intent, ParamError> {
        let number = |name: &str| params.number(name, true).map(Option::unwrap_or_default);
        let uuid = params.text("dzuuid", true)?.unwrap_or_default();
        let index = number("dzchunkindex")?;
        let count = number("dztotalchunkcount")?;
        let chunk_size = number("dzchunksize")?;
        let offset = number("dzchunkbyteoffset")?;
        number("dztotalfilesize")?;
        if chunk_size == 0 {
            return Err(ParamError::Geometry(GeometryError::ChunkSizeZero));
        }
        let chunk = counted_place(index, count)?;
        if index.checked_mul(chunk_size) != Some(offset) {
            return Err(ParamError::Geometry(GeometryError::OffsetContradicts {
                offset,
                number: chunk,
            }));
        }
        let filename = params
            .file_name()
            .ok_or_else(|| ParamError::Missing("the file part's filename".into()))?
            .to_string();
        Ok(Intent::Counted(CountedChunk {
            dialect: self.name(),
            // Apart from other clients' identifiers: a counted upload's completion record is
            // found by identifier and name alone.
            identifier: format!("dropzone-{uuid}"),
            filename,
            number: chunk,
            count,
            chunk_size: Some(chunk_size),
            first_begins: false,
        }))
    }
}

/// The 1-based number of chunk `index` (0-based) of `count`, checked.
pub(super) fn counted_place(index: u64, count: u64) -> Result<u64, ParamError> {
    if index >= count {
        return Err(ParamError::Geometry(
            GeometryError::TotalChunksContradicts {
                number: index.saturating_add(1),
                total_chunks: count,
            },
        ));
    }
    Ok(index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = "dzuuid=6c2b0b1e-4f0a-4c1d-9a57-0e3f4b1a2c3d&dzchunkindex=2&dztotalfilesize=5000000&dzchunksize=2000000&dztotalchunkcount=3&dzchunkbyteoffset=4000000";

    fn read(query: &str, file_name: Option<&str>) -> Result<Intent, ParamError> {
        let mut params = Params::from_query(query);
        params.set_file_name(file_name);
        DROPZONE.intent(&params, &Head::default())
    }

    #[test]
    fn the_fields_of_the_last_chunk() {
        let params = Params::from_query(FIELDS);
        assert!(DROPZONE.recognizes(&params, &Head::default()));
        let Intent::Counted(chunk) = read(FIELDS, Some("Grüße.bin")).unwrap() else {
            panic!("a counted chunk");
        };
        assert_eq!(
            chunk.identifier,
            "dropzone-6c2b0b1e-4f0a-4c1d-9a57-0e3f4b1a2c3d"
        );
        assert_eq!(chunk.filename, "Grüße.bin");
        assert_eq!((chunk.number, chunk.count), (3, 3));
        assert_eq!(chunk.chunk_size, Some(2_000_000));
        assert!(!chunk.first_begins);
    }

    #[test]
    fn lies_are_refused() {
        for (from, to) in [
            ("dzchunkbyteoffset=4000000", "dzchunkbyteoffset=3999999"),
            ("dzchunkindex=2", "dzchunkindex=3"),
            ("dzchunkindex=2", "dzchunkindex=18446744073709551615"),
            ("dzchunksize=2000000", "dzchunksize=0"),
            ("dztotalchunkcount=3", "dztotalchunkcount=0"),
            ("dztotalfilesize=5000000", "dztotalfilesize=-1"),
            ("dzchunkindex=2&", ""),
        ] {
            let query = FIELDS.replace(from, to);
            assert!(read(&query, Some("a.bin")).is_err(), "{query}");
        }
        assert_eq!(
            read(FIELDS, None).unwrap_err(),
            ParamError::Missing("the file part's filename".into())
        );
        // An overflowing offset is a lie too, not a panic.
        let query = FIELDS
            .replace("dzchunkindex=2", "dzchunkindex=4")
            .replace("dztotalchunkcount=3", "dztotalchunkcount=5")
            .replace("dzchunksize=2000000", "dzchunksize=9223372036854775807");
        assert!(read(&query, Some("a.bin")).is_err());
    }
}
