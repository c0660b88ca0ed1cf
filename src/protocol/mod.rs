//! Turning a request into a validated, transport-neutral intent: which client dialect it speaks
//! (the registry below), what chunk it describes, and the answer body that client needs.

pub mod blueimp;
pub mod dropzone;
pub mod fine_uploader;
pub mod flow;
pub mod form;
pub mod geometry;
pub mod multipart;
mod named_fields;
pub mod params;
pub mod plupload;
pub mod resumable;
pub mod tus;
pub mod unprefixed;

use serde_json::json;

pub use geometry::{Geometry, GeometryError};
pub use params::{ParamError, Params};

use crate::error::Error;
use crate::request::{Head, Response};

/// Every chunked dialect the endpoint speaks, in the order they are tried. A request belongs to
/// the first whose [`ChunkDialect::recognizes`] says yes; a new client is one module and one
/// line here. Each is told by a field only its client sends (`resumableIdentifier`, `dzuuid`,
/// `qquuid`, ...); Plupload's `name`/`chunk`/`chunks` and the unprefixed `identifier` are
/// common words a page may add to another client's request as extra fields, so they come last.
pub static DIALECTS: &[&dyn ChunkDialect] = &[
    &resumable::RESUMABLE,
    &flow::FLOW,
    &dropzone::DROPZONE,
    &fine_uploader::FINE_UPLOADER,
    &plupload::PLUPLOAD,
    &unprefixed::UNPREFIXED,
];

/// The dialect of a request, from its parameters (query and the text fields before the file
/// part) and headers.
pub fn detect(params: &Params, head: &Head) -> Option<&'static dyn ChunkDialect> {
    DIALECTS
        .iter()
        .copied()
        .find(|dialect| dialect.recognizes(params, head))
}

/// One chunked-upload client's wire format.
pub trait ChunkDialect: Sync {
    /// Short name for logs (and, later, the completion hook).
    fn name(&self) -> &'static str;

    /// Whether these parameters and headers are this client's.
    fn recognizes(&self, params: &Params, head: &Head) -> bool;

    /// The chunk the request carries, or asks about, validated, for clients that declare their
    /// chunks' sizes (resumable.js, flow.js, Fine Uploader). Other clients describe their
    /// requests through [`ChunkDialect::intent`] alone.
    fn chunk(&self, _params: &Params, _head: &Head) -> Result<ChunkRequest, ParamError> {
        Err(ParamError::NotAChunk(self.name()))
    }

    /// What the request asks for, validated: by default, the chunk [`ChunkDialect::chunk`]
    /// reads.
    fn intent(&self, params: &Params, head: &Head) -> Result<Intent, ParamError> {
        self.chunk(params, head).map(Intent::Chunk)
    }

    /// The answer to a chunk or test request that succeeded, in the shape this client reads.
    fn answer(&self, outcome: &Outcome) -> Response {
        outcome.to_response()
    }

    /// The answer to a request that failed, in the shape this client reads.
    fn refuse(&self, error: &Error) -> Response {
        error.to_response()
    }
}

/// One chunk (or the chunk a test request asks about) as the client described it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Which dialect's names the request used, for logs.
    pub dialect: &'static str,
    pub identifier: String,
    pub filename: String,
    /// `dir/sub/file.txt` for files from a dropped folder; may equal the file name.
    pub relative_path: Option<String>,
    pub geometry: Geometry,
    pub total_chunks: Option<u64>,
    /// The client says earlier chunks of this upload are already stored (Fine Uploader's
    /// `qqresume` on the first request of a resumed upload).
    pub resumed: bool,
}

impl ChunkRequest {
    /// The chunk described by `params` in whichever registered dialect they are.
    pub fn from_params(params: &Params) -> Result<ChunkRequest, ParamError> {
        match Intent::from_params(params)? {
            Intent::Chunk(chunk) => Ok(chunk),
            Intent::Counted(CountedChunk { dialect, .. })
            | Intent::Finish(FinishRequest { dialect, .. }) => Err(ParamError::NotAChunk(dialect)),
        }
    }
}

/// What a request asks for, validated and transport-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Store a chunk whose sizes the client declared (or, without a file, test for it).
    Chunk(ChunkRequest),
    /// Store a chunk the client knows only by its place among the file's chunks.
    Counted(CountedChunk),
    /// The client says it sent every chunk (Fine Uploader's chunking success request).
    Finish(FinishRequest),
}

impl Intent {
    /// The intent of `params` in whichever registered dialect they are.
    pub fn from_params(params: &Params) -> Result<Intent, ParamError> {
        let head = Head::default();
        detect(params, &head)
            .ok_or(ParamError::NoDialect)?
            .intent(params, &head)
    }

    /// The identifier and file name the store derives names from.
    pub fn names(&self) -> (&str, &str) {
        match self {
            Intent::Chunk(c) => (&c.identifier, &c.filename),
            Intent::Counted(c) => (&c.identifier, &c.filename),
            Intent::Finish(f) => (&f.identifier, &f.filename),
        }
    }
}

/// A chunk known by its place among its file's chunks (Dropzone, Plupload): every chunk but
/// the last is exactly the chunk size, the last at most that; its size is the body's, and
/// the total is known once the last chunk is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedChunk {
    pub dialect: &'static str,
    pub identifier: String,
    pub filename: String,
    /// 1-based, at most `count`.
    pub number: u64,
    pub count: u64,
    /// The chunk size when the client sends it (Dropzone); otherwise the upload's first chunk
    /// tells it (Plupload).
    pub chunk_size: Option<u64>,
    /// Chunk 1 begins a new upload under this identifier and name, setting aside what an
    /// earlier one left: for a client with no upload id whose chunks arrive in order.
    pub first_begins: bool,
}

/// "Every chunk was sent": complete the upload if its chunks are stored, else name the missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishRequest {
    pub dialect: &'static str,
    pub identifier: String,
    pub filename: String,
    pub total_size: u64,
    pub total_chunks: u64,
}

/// A finished upload as the client is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The published path relative to the upload dir.
    pub file: String,
    pub size: u64,
    /// The object key, when published to the object store (RESUMABLE_PUBLISH_URL).
    pub object: Option<String>,
    /// Whether this request published it (false: an earlier one did).
    pub just_now: bool,
    /// Where it can be downloaded, when `RESUMABLE_PUBLIC_URL` says where the upload dir is
    /// served (Uppy and Dropzone show it on the page).
    pub url: Option<String>,
    /// What the completion hook gave back for the page, kept with the completion.
    pub data: Option<serde_json::Value>,
}

/// What a chunk or test request achieved, before a dialect shapes it into an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The chunk was stored; the upload still lacks others.
    Stored { chunk: u64 },
    /// A test request: the chunk is stored, the upload not yet complete.
    Present { chunk: u64 },
    /// A test request: the chunk is not stored; answer with `status` (204 by default).
    Missing { chunk: u64, status: u16 },
    /// The upload is complete (now or earlier).
    Complete(Finished),
}

impl Outcome {
    /// The answer every dialect gets unless it shapes its own: JSON that the resumable.js
    /// family hands to the page, with `success` as Fine Uploader-style clients read it.
    pub fn to_response(&self) -> Response {
        let response = match self {
            Outcome::Stored { chunk } => Response::json(
                200,
                &json!({"success": true, "complete": false, "chunk": chunk}),
            ),
            Outcome::Present { chunk } => Response::json(
                200,
                &json!({"success": true, "present": true, "complete": false, "chunk": chunk}),
            ),
            Outcome::Missing { status: 204, .. } => Response::new(204),
            Outcome::Missing { chunk, status } => Response::json(
                *status,
                &json!({"success": false, "present": false, "chunk": chunk}),
            ),
            // Every request that touches a finished upload gets this body, because the clients
            // hand the body of whichever request finished last to the page.
            Outcome::Complete(done) => {
                let mut body = json!({
                    "success": true,
                    "complete": true,
                    "file": done.file,
                    "size": done.size,
                    "completedNow": done.just_now,
                });
                if let Some(url) = &done.url {
                    body["url"] = json!(url);
                }
                if let (Some(data), Some(fields)) = (&done.data, body.as_object_mut()) {
                    fields.insert("data".into(), data.clone());
                }
                if let Some(object) = &done.object {
                    body["object"] = json!(object);
                }
                Response::json(200, &body)
            }
        };
        // Test answers change as chunks arrive: no cache may keep them.
        response.with_header("Cache-Control", "no-store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_is_told_by_its_identifier() {
        let base =
            "ChunkNumber=1&ChunkSize=10&CurrentChunkSize=5&TotalSize=5&Identifier=x&Filename=a";
        for (prefix, name) in [
            ("resumable", "resumable"),
            ("flow", "flow"),
            ("", "unprefixed"),
        ] {
            let query = base
                .split('&')
                .map(|pair| {
                    let field = if prefix.is_empty() {
                        let mut c = pair.chars();
                        c.next()
                            .map(|f| f.to_ascii_lowercase().to_string())
                            .unwrap_or_default()
                            + c.as_str()
                    } else {
                        format!("{prefix}{pair}")
                    };
                    field
                })
                .collect::<Vec<_>>()
                .join("&");
            let chunk = ChunkRequest::from_params(&Params::from_query(&query)).unwrap();
            assert_eq!(chunk.dialect, name, "{query}");
        }
        assert_eq!(
            ChunkRequest::from_params(&Params::from_query("a=b")).unwrap_err(),
            ParamError::NoDialect
        );
    }

    #[test]
    fn a_missing_chunk_answers_the_configured_status() {
        let plain = Outcome::Missing {
            chunk: 3,
            status: 204,
        }
        .to_response();
        assert_eq!(plain.status, 204);
        assert!(plain.bytes().is_empty());
        let php = Outcome::Missing {
            chunk: 3,
            status: 404,
        }
        .to_response();
        assert_eq!(php.status, 404);
        assert_eq!(php.header("Cache-Control"), Some("no-store"));
    }
}
