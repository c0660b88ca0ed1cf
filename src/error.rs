//! The one error type of a request, and the single place where an error becomes a status code
//! and a JSON body.
//!
//! How the clients treat statuses (resumable.js 1.1.0 and flow.js 2.14.1, read from their
//! published sources): 415 stops the file for every client (in `permanentErrors`); 400 is
//! fatal for resumable.js too, so a request that can never succeed is not retried 100 times;
//! 422 is retried by resumable.js and fatal for none, fitting a chunk damaged in transit; 503
//! means "try again" (a full disk); 500 only ever means a broken installation. 409 goes only to
//! Fine Uploader (a resumed or finished upload whose parts are gone), whose body then says
//! `"reset": true` so that it sends the file again from its first part; Dropzone and Plupload
//! treat every failure alike.

use crate::config::ConfigError;
use crate::protocol::blueimp::BlueimpError;
use crate::protocol::multipart::MultipartError;
use crate::protocol::tus::{self, TusError};
use crate::protocol::ParamError;
use crate::request::Response;
use crate::store::remote::PublishError;
use crate::store::StoreError;

/// The methods the endpoint answers, for `Allow` headers.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `RESUMABLE_*` setting is invalid: nothing is written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("method {0} is not allowed")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error(transparent)]
    Multipart(#[from] MultipartError),
    /// The declared file is larger than RESUMABLE_MAX_FILE_SIZE.
    #[error("file of {total_size} bytes is larger than the maximum of {max}")]
    FileTooLarge { total_size: u64, max: u64 },
    /// The declared chunk size is larger than RESUMABLE_MAX_CHUNK_SIZE.
    #[error("chunk size {chunk_size} is larger than the maximum of {max}")]
    ChunkTooLarge { chunk_size: u64, max: u64 },
    /// The request body is larger than any chunk may be.
    #[error("request body of {length} bytes is larger than the maximum of {max}")]
    BodyTooLarge { length: u64, max: u64 },
    /// A form upload larger than RESUMABLE_MAX_POST_SIZE (PHP's post_max_size); the length
    /// when the request announced it.
    #[error(
        "form upload{} is larger than the maximum of {max} bytes",
        .length.map(|l| format!(" of {l} bytes")).unwrap_or_default()
    )]
    PostTooLarge { length: Option<u64>, max: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client's view of the upload contradicts what is stored (a resumed upload whose parts
    /// are gone, or "every chunk was sent" with chunks missing): it must send the file again
    /// from its first chunk. `missing` names the missing chunks (1-based) when known.
    #[error("{reason}")]
    StartOver { reason: String, missing: Vec<u64> },
    #[error(transparent)]
    Tus(#[from] TusError),
    #[error(transparent)]
    Blueimp(#[from] BlueimpError),
    /// The completion hook refused the finished file; it is gone with its parts.
    #[error("the completion hook refused the file: {reason}")]
    Rejected { reason: String },
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::Config(_) => 500,
            Error::MethodNotAllowed(_) => 405,
            Error::Params(_) => 400,
            Error::Multipart(MultipartError::Incomplete(_)) => 422,
            Error::Multipart(MultipartError::TooLarge(_)) => 415,
            Error::Multipart(_) => 400,
            Error::FileTooLarge { .. }
            | Error::ChunkTooLarge { .. }
            | Error::BodyTooLarge { .. }
            | Error::Rejected { .. } => 415,
            Error::PostTooLarge { .. } => 413,
            Error::Store(StoreError::BodyLength { .. } | StoreError::BodyRead(_)) => 422,
            // The disk, or a hook that did not decide: the server's trouble, try again later.
            Error::Store(
                StoreError::NoSpace { .. } | StoreError::LowSpace { .. } | StoreError::Hook(_),
            ) => 503,
            Error::Store(StoreError::Contradicts(_)) => 400,
            Error::Store(StoreError::OverLimit(_)) => 415,
            // tus and blueimp read these (tus-js-client retries 409 and 423, after a HEAD).
            Error::Store(StoreError::UnknownUpload) => 404,
            Error::Store(StoreError::OffsetMismatch { .. } | StoreError::LengthMismatch { .. }) => {
                409
            }
            Error::Store(StoreError::Busy) => 423,
            Error::Store(StoreError::BeyondLength { .. }) => 413,
            Error::Store(StoreError::Publish(PublishError::Unavailable { .. })) => 503,
            Error::Store(_) => 500,
            Error::Tus(TusError::Version(_)) => 412,
            Error::Tus(TusError::TooLarge { .. }) => 413,
            Error::Tus(TusError::ContentType(_)) => 415,
            Error::Tus(TusError::ChecksumMismatch) => 460,
            Error::Tus(TusError::Method(_)) => 405,
            Error::Tus(TusError::Expired) => 410,
            Error::Tus(_) => 400,
            Error::Blueimp(_) => 400,
            Error::StartOver { .. } => 409,
        }
    }

    /// Policy refusals and requests that can never succeed tell the client not to retry
    /// (Fine Uploader reads `preventRetry`).
    pub fn prevent_retry(&self) -> bool {
        matches!(self.status(), 400 | 405 | 413 | 415)
    }

    /// Adds what a status asks of the client beside the body: when to retry a 503.
    pub fn with_retry_after(&self, response: Response) -> Response {
        if self.status() == 503 {
            response.with_header("Retry-After", "30")
        } else {
            response
        }
    }

    pub fn to_response(&self) -> Response {
        let status = self.status();
        let mut response = Response::json(
            status,
            &serde_json::json!({
                "success": false,
                "error": self.public_reason(),
                "preventRetry": self.prevent_retry(),
            }),
        );
        response = self.with_retry_after(response);
        if let Error::MethodNotAllowed(_) | Error::Tus(TusError::Method(_)) = self {
            response = response.with_header("Allow", ALLOWED_METHODS);
        }
        if let Error::Tus(TusError::Version(_)) = self {
            response = response.with_header("Tus-Version", tus::VERSION);
        }
        if let Error::Store(StoreError::Busy) = self {
            response = response.with_header("Retry-After", "1");
        }
        response.with_header("Cache-Control", "no-store")
    }

    /// What the client is told. Server-side detail (paths, OS errors) stays in the log.
    pub fn public_reason(&self) -> String {
        match self {
            Error::Config(_) => "the upload endpoint is misconfigured".into(),
            Error::Store(StoreError::NoSpace { .. }) => {
                "the server is out of disk space; retry later".into()
            }
            Error::Store(StoreError::Publish(PublishError::Unavailable { .. })) => {
                "the file is complete but the object store cannot be reached; retry later".into()
            }
            Error::Store(StoreError::LowSpace { .. }) => {
                "the server is low on disk space; retry later".into()
            }
            Error::Store(StoreError::Hook(_)) => {
                "the server could not finish checking the upload; retry later".into()
            }
            // The hook's own words, for the page (a form lists them as that file's error).
            Error::Rejected { reason } => reason.clone(),
            Error::Store(
                StoreError::BodyLength { .. }
                | StoreError::BodyRead(_)
                | StoreError::Contradicts(_)
                | StoreError::OverLimit(_)
                | StoreError::UnknownUpload
                | StoreError::Busy
                | StoreError::OffsetMismatch { .. }
                | StoreError::LengthMismatch { .. }
                | StoreError::BeyondLength { .. },
            ) => self.to_string(),
            Error::Store(_) => "the server could not store the upload".into(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;
    use crate::protocol::GeometryError;

    fn body(error: &Error) -> serde_json::Value {
        serde_json::from_slice(error.to_response().bytes()).unwrap()
    }

    #[test]
    fn each_error_maps_to_the_status_its_clients_need() {
        let cases: Vec<(Error, u16, bool)> = vec![
            (
                Error::Config(ConfigError {
                    name: "RESUMABLE_MAX_FILE_SIZE",
                    value: "12Q".into(),
                    reason: "bad",
                }),
                500,
                false,
            ),
            (Error::MethodNotAllowed("TRACE".into()), 405, true),
            (Error::Params(ParamError::NoDialect), 400, true),
            (
                Error::Params(ParamError::Geometry(GeometryError::ChunkNumberZero)),
                400,
                true,
            ),
            (
                Error::Multipart(MultipartError::Incomplete("eof".into())),
                422,
                false,
            ),
            (Error::Multipart(MultipartError::TooLarge(5)), 415, true),
            (Error::Multipart(MultipartError::NoBoundary), 400, true),
            (
                Error::FileTooLarge {
                    total_size: 2,
                    max: 1,
                },
                415,
                true,
            ),
            (
                Error::ChunkTooLarge {
                    chunk_size: 2,
                    max: 1,
                },
                415,
                true,
            ),
            (Error::BodyTooLarge { length: 2, max: 1 }, 415, true),
            (
                Error::PostTooLarge {
                    length: Some(2),
                    max: 1,
                },
                413,
                true,
            ),
            (
                Error::PostTooLarge {
                    length: None,
                    max: 1,
                },
                413,
                true,
            ),
            (
                Error::Store(StoreError::BodyLength {
                    expected: 2,
                    received: 1,
                }),
                422,
                false,
            ),
            (
                Error::Store(StoreError::NoSpace {
                    op: "writing a chunk",
                    source: io::Error::other("full"),
                }),
                503,
                false,
            ),
            (
                Error::Store(StoreError::Symlink {
                    which: "RESUMABLE_TEMP_DIR",
                    path: PathBuf::from("/t/x"),
                }),
                500,
                false,
            ),
            (
                Error::Store(StoreError::Contradicts("chunk 2 is short".into())),
                400,
                true,
            ),
            (
                Error::Store(StoreError::OverLimit("too big".into())),
                415,
                true,
            ),
            (
                Error::StartOver {
                    reason: "parts are missing".into(),
                    missing: vec![2],
                },
                409,
                false,
            ),
        ];
        for (error, status, prevent_retry) in cases {
            let response = error.to_response();
            assert_eq!(response.status, status, "{error}");
            assert_eq!(body(&error)["preventRetry"], prevent_retry, "{error}");
            assert_eq!(body(&error)["success"], false);
            assert_eq!(response.header("Cache-Control"), Some("no-store"));
            assert_eq!(response.header("Retry-After").is_some(), status == 503);
        }
    }

    #[test]
    fn byte_range_errors_map_to_what_tus_and_blueimp_clients_read() {
        type Header = Option<(&'static str, &'static str)>;
        let cases: Vec<(Error, u16, Header)> = vec![
            (
                TusError::Version(None).into(),
                412,
                Some(("Tus-Version", "1.0.0")),
            ),
            (StoreError::UnknownUpload.into(), 404, None),
            (TusError::Expired.into(), 410, None),
            (StoreError::OffsetMismatch { offset: 5 }.into(), 409, None),
            (StoreError::LengthMismatch { length: 5 }.into(), 409, None),
            (StoreError::Busy.into(), 423, Some(("Retry-After", "1"))),
            (StoreError::BeyondLength { room: 3 }.into(), 413, None),
            (TusError::TooLarge { length: 9, max: 1 }.into(), 413, None),
            (TusError::ContentType(None).into(), 415, None),
            (TusError::ChecksumMismatch.into(), 460, None),
            (
                TusError::UnsupportedAlgorithm("md5".into()).into(),
                400,
                None,
            ),
            (
                TusError::Method("GET".into()).into(),
                405,
                Some(("Allow", ALLOWED_METHODS)),
            ),
            (
                BlueimpError::ContentRange("bytes x".into()).into(),
                400,
                None,
            ),
        ];
        for (error, status, header) in cases {
            let response = error.to_response();
            assert_eq!(response.status, status, "{error}");
            if let Some((name, value)) = header {
                assert_eq!(response.header(name), Some(value), "{error}");
            }
            // The client may be told why: these reasons carry no server detail.
            assert_eq!(body(&error)["error"], error.to_string(), "{error}");
        }
    }

    #[test]
    fn server_detail_stays_out_of_the_answer() {
        let error = Error::Store(StoreError::Io {
            op: "renaming a chunk into place",
            source: io::Error::other("/secret/path: Permission denied"),
        });
        let reason = body(&error)["error"].as_str().unwrap().to_string();
        assert!(!reason.contains("/secret"), "{reason}");
        assert!(
            error.to_string().contains("/secret"),
            "the log line keeps it"
        );
    }
}
