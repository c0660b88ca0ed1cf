//! The one error type of a request, and the single place where an error becomes a status code
//! and a JSON body.
//!
//! How the clients treat statuses (resumable.js 1.1.0 and flow.js 2.14.1, read from their
//! published sources): 415 stops the file for every client (in `permanentErrors`); 400 is
//! fatal for resumable.js too, so a request that can never succeed is not retried 100 times;
//! 422 is retried by resumable.js and fatal for none, fitting a chunk damaged in transit; 503
//! means "try again" (a full disk); 500 only ever means a broken installation.

use crate::config::ConfigError;
use crate::protocol::multipart::MultipartError;
use crate::protocol::ParamError;
use crate::request::Response;
use crate::store::publish::PublishError;
use crate::store::StoreError;

/// The methods the endpoint answers, for `Allow` headers.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, OPTIONS";

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
    #[error(transparent)]
    Store(#[from] StoreError),
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
            | Error::BodyTooLarge { .. } => 415,
            Error::Store(StoreError::BodyLength { .. } | StoreError::BodyRead(_)) => 422,
            Error::Store(StoreError::NoSpace { .. }) => 503,
            Error::Store(StoreError::Publish(PublishError::Unavailable { .. })) => 503,
            Error::Store(_) => 500,
        }
    }

    /// Policy refusals and requests that can never succeed tell the client not to retry
    /// (Fine Uploader reads `preventRetry`).
    pub fn prevent_retry(&self) -> bool {
        matches!(self.status(), 400 | 405 | 415)
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
        if status == 503 {
            response = response.with_header("Retry-After", "30");
        }
        if let Error::MethodNotAllowed(_) = self {
            response = response.with_header("Allow", ALLOWED_METHODS);
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
            Error::Store(StoreError::BodyLength { .. } | StoreError::BodyRead(_)) => {
                self.to_string()
            }
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
