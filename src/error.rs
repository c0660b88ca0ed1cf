//! The one error type of a request, and the single place where an error becomes a status code
//! and a JSON body.
//!
//! Status choices follow ../shared/reference/protocol.md 3.4: 415 is "stop this file" for every
//! client; 400 is fatal for resumable.js (a request that can never succeed should not be retried
//! 100 times); 422 is retried by resumable.js and not fatal-listed anywhere (a chunk damaged in
//! transit); 503 is "try again" (full disk); 500 only for a broken installation.

use std::fmt;

use crate::config::ConfigError;
use crate::protocol::multipart::MultipartError;
use crate::protocol::ParamError;
use crate::request::Response;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// A `RESUMABLE_*` setting is invalid: nothing is written.
    Config(ConfigError),
    MethodNotAllowed(String),
    Params(ParamError),
    Multipart(MultipartError),
    /// The declared file is larger than RESUMABLE_MAX_FILE_SIZE.
    FileTooLarge {
        total_size: u64,
        max: u64,
    },
    /// The declared chunk size is larger than RESUMABLE_MAX_CHUNK_SIZE.
    ChunkTooLarge {
        chunk_size: u64,
        max: u64,
    },
    /// The request body is larger than any chunk may be.
    BodyTooLarge {
        length: u64,
        max: u64,
    },
    Store(StoreError),
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
            Error::Store(_) => 500,
        }
    }

    /// Policy refusals and requests that can never succeed tell the client not to retry
    /// (Fine Uploader reads `preventRetry`).
    fn prevent_retry(&self) -> bool {
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
            response = response.with_header("Allow", "GET, HEAD, POST, PUT, OPTIONS");
        }
        response.with_header("Cache-Control", "no-store")
    }

    /// What the client is told. Server-side detail (paths, OS errors) stays in the log.
    fn public_reason(&self) -> String {
        match self {
            Error::Config(_) => "the upload endpoint is misconfigured".into(),
            Error::Store(StoreError::NoSpace { .. }) => {
                "the server is out of disk space; retry later".into()
            }
            Error::Store(StoreError::BodyLength { .. } | StoreError::BodyRead(_)) => {
                self.to_string()
            }
            Error::Store(_) => "the server could not store the upload".into(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::MethodNotAllowed(m) => write!(f, "method {m} is not allowed"),
            Error::Params(e) => write!(f, "{e}"),
            Error::Multipart(e) => write!(f, "{e}"),
            Error::FileTooLarge { total_size, max } => write!(
                f,
                "file of {total_size} bytes is larger than the maximum of {max}"
            ),
            Error::ChunkTooLarge { chunk_size, max } => write!(
                f,
                "chunk size {chunk_size} is larger than the maximum of {max}"
            ),
            Error::BodyTooLarge { length, max } => write!(
                f,
                "request body of {length} bytes is larger than the maximum of {max}"
            ),
            Error::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<ParamError> for Error {
    fn from(e: ParamError) -> Self {
        Error::Params(e)
    }
}
impl From<MultipartError> for Error {
    fn from(e: MultipartError) -> Self {
        Error::Multipart(e)
    }
}
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}
