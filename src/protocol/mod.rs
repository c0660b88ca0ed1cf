//! Turning a request into a validated, transport-neutral intent: which client dialect it speaks
//! (the registry below), what chunk it describes, and the answer body that client needs.

pub mod flow;
pub mod geometry;
pub mod multipart;
mod named_fields;
pub mod params;
pub mod resumable;
pub mod unprefixed;

use serde_json::json;

pub use geometry::{Geometry, GeometryError};
pub use params::{ParamError, Params};

use crate::error::Error;
use crate::request::{Head, Response};

/// Every chunked dialect the endpoint speaks, in the order they are tried. A request belongs to
/// the first whose [`ChunkDialect::recognizes`] says yes; a new client is one module and one
/// line here.
pub static DIALECTS: &[&dyn ChunkDialect] =
    &[&resumable::RESUMABLE, &flow::FLOW, &unprefixed::UNPREFIXED];

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

    /// The chunk the request carries, or asks about, validated.
    fn chunk(&self, params: &Params, head: &Head) -> Result<ChunkRequest, ParamError>;

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
}

impl ChunkRequest {
    /// The chunk described by `params` in whichever registered dialect they are.
    pub fn from_params(params: &Params) -> Result<ChunkRequest, ParamError> {
        let head = Head::default();
        detect(params, &head)
            .ok_or(ParamError::NoDialect)?
            .chunk(params, &head)
    }
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
