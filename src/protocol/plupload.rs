//! Plupload 2.3 with `chunk_size` set: `name`, `chunk` (0-based), `chunks`, and the file part
//! `file` (named `blob`), or with `multipart: false` the same fields in the query and the chunk
//! as the raw body. Nothing else: no upload id, no chunk size, no file size.
//!
//! The upload is identified by its name and chunk count (and `REMOTE_USER`, as every upload
//! is). Chunks are counted: the first chunk's length is the chunk size, and the last chunk
//! tells the total. Plupload 2.x sends a file's chunks strictly in order, starting with chunk 0
//! every time a file is uploaded, so chunk 0 begins a new upload: parts an abandoned upload of
//! the same name left are set aside, and so is the record of a finished one (the new file is
//! published beside it, as `name (1).ext`). The exception is a single-chunk file
//! (`chunk=0&chunks=1`) sent again with the same size after it completed: that is the retry of
//! a request whose answer was lost, answered as complete and never published twice.
//!
//! An empty file (sent only with `prevent_empty: false`) comes as `chunk=0&chunks=0`: one chunk
//! that must be empty.
//!
//! Without `chunk` and `chunks` (Plupload with chunking off) the request is a plain form upload:
//! the `name` field and the `file` part with the real file name. It is not recognized here.
// TODO(issue 11, plain form uploads): that flow should prefer Plupload's `name` field, the name
// Plupload wants the file stored under (`unique_names` makes it differ from the part's), to the
// file part's filename when both are present.

use super::dropzone::counted_place;
use super::params::{ParamError, Params};
use super::{ChunkDialect, CountedChunk, Intent};
use crate::request::Head;

pub struct Plupload;

pub static PLUPLOAD: Plupload = Plupload;

impl ChunkDialect for Plupload {
    fn name(&self) -> &'static str {
        "plupload"
    }

    /// `name`, `chunk` and `chunks`, and not simple-uploader's `chunkNumber` (a page may add
    /// fields of these common names to that client's requests).
    fn recognizes(&self, params: &Params, _head: &Head) -> bool {
        ["name", "chunk", "chunks"]
            .iter()
            .all(|field| params.contains(field))
            && !params.contains("chunkNumber")
    }

    fn intent(&self, params: &Params, _head: &Head) -> Result<Intent, ParamError> {
        let name = params.text("name", true)?.unwrap_or_default();
        let index = params.number("chunk", true)?.unwrap_or_default();
        let count = params.number("chunks", true)?.unwrap_or_default();
        // `ceil(size / chunk_size)` chunks: none for an empty file, which is sent as chunk 0.
        let (count, chunk_size) = match (index, count) {
            (0, 0) => (1, Some(0)),
            _ => (count, None),
        };
        let number = counted_place(index, count)?;
        Ok(Intent::Counted(CountedChunk {
            dialect: self.name(),
            identifier: format!("plupload-{count}-{name}"),
            filename: name,
            number,
            count,
            chunk_size,
            first_begins: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(query: &str) -> Result<Intent, ParamError> {
        PLUPLOAD.intent(&Params::from_query(query), &Head::default())
    }

    #[test]
    fn name_and_count_identify_the_upload() {
        let Intent::Counted(chunk) = read("name=Zo%C3%AB.jpg&chunk=0&chunks=3").unwrap() else {
            panic!("a counted chunk")
        };
        assert_eq!(chunk.identifier, "plupload-3-Zoë.jpg");
        assert_eq!(chunk.filename, "Zoë.jpg");
        assert_eq!((chunk.number, chunk.count), (1, 3));
        assert_eq!(chunk.chunk_size, None);
        assert!(chunk.first_begins);
        let Intent::Counted(single) = read("name=a.txt&chunk=0&chunks=1").unwrap() else {
            panic!("a counted chunk")
        };
        assert_eq!((single.number, single.count), (1, 1));
        let Intent::Counted(empty) = read("name=e.txt&chunk=0&chunks=0").unwrap() else {
            panic!("a counted chunk")
        };
        assert_eq!(
            (empty.number, empty.count, empty.chunk_size),
            (1, 1, Some(0))
        );
    }

    #[test]
    fn recognized_only_with_all_three_fields_and_without_simple_uploaders() {
        let head = Head::default();
        let yes = |q: &str| PLUPLOAD.recognizes(&Params::from_query(q), &head);
        assert!(yes("name=a&chunk=0&chunks=1"));
        assert!(!yes("name=a"));
        assert!(!yes("name=a&chunk=0"));
        assert!(!yes("name=a&chunk=0&chunks=1&chunkNumber=1"));
    }

    #[test]
    fn lies_are_refused() {
        for query in [
            "name=a&chunk=1&chunks=1",
            "name=a&chunk=1&chunks=0",
            "name=a&chunk=-1&chunks=2",
            "name=&chunk=0&chunks=2",
            "name=a&chunk=18446744073709551615&chunks=18446744073709551615",
            "name=a&chunk=0&chunks=2&chunk=1",
        ] {
            assert!(read(query).is_err(), "{query}");
        }
    }
}
