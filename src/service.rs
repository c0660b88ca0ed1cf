//! The only place where protocol and store meet: built once from a validated [`Config`], it
//! turns one [`Request`] into one [`Response`], whichever transport carried it.

use crate::config::{Config, ConfigError};
use crate::error::{Error, ALLOWED_METHODS};
use crate::protocol::multipart::{self, IntakeError};
use crate::protocol::{self, ChunkDialect, ChunkRequest, Finished, Outcome, Params};
use crate::request::{Head, Method, Request, Response};
use crate::store::{Completion, FsStore, Progress, ReceivedChunk, UploadKey, UploadStore};

/// The upload endpoint: settings plus the store they name.
pub struct Service {
    config: Config,
    store: Box<dyn UploadStore>,
}

/// A response and a short description of what was done, for the log line.
struct Handled {
    response: Response,
    summary: String,
}

/// An error, and the dialect whose client must be told (when it was known by then).
struct Failure {
    error: Error,
    dialect: Option<&'static dyn ChunkDialect>,
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            error: error.into(),
            dialect: None,
        }
    }
}

/// A chunk whose bytes arrived, with what the client said about it.
struct Received {
    dialect: &'static dyn ChunkDialect,
    chunk: ChunkRequest,
    bytes: Box<dyn ReceivedChunk>,
}

impl Service {
    pub fn new(config: Config) -> Service {
        let store = Box::new(FsStore::new(&config.temp_dir, &config.upload_dir));
        Service { config, store }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A service for one request whose settings override some of these (FastCGI params named
    /// like a `RESUMABLE_*` variable). `lookup` answers the overriding value or the base one.
    pub fn with_overrides(
        &self,
        lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Service, ConfigError> {
        Config::from_lookup(lookup).map(Service::new)
    }

    /// Handles one request. Never panics on request input; every failure becomes a response
    /// and one log line.
    pub fn handle(&self, request: Request) -> Response {
        let method = request.head.method.clone();
        match self.route(request) {
            Ok(Handled { response, summary }) => {
                log::info!("{} {summary} -> {}", method.as_str(), response.status);
                response
            }
            Err(Failure { error, dialect }) => {
                let response = match dialect {
                    Some(dialect) => dialect.refuse(&error),
                    None => error.to_response(),
                };
                self.log_failure(&method, response.status, &error);
                response
            }
        }
    }

    /// Answers a request whose settings were invalid: that request's 500, with the log line
    /// naming the variable.
    pub fn refuse_misconfigured(method: &Method, error: ConfigError) -> Response {
        let error = Error::Config(error);
        let response = error.to_response();
        log::error!("{} -> {}: {error}", method.as_str(), response.status);
        response
    }

    fn log_failure(&self, method: &Method, status: u16, error: &Error) {
        if status < 500 {
            log::warn!("{} -> {status}: {error}", method.as_str());
            return;
        }
        // An operator reading the error log needs to know which directories were meant: the
        // OS error ("Read-only file system") alone does not say.
        let dirs = match error {
            Error::Store(_) => format!(
                " (temp dir {}, upload dir {})",
                self.config.temp_dir.display(),
                self.config.upload_dir.display()
            ),
            _ => String::new(),
        };
        log::error!("{} -> {status}: {error}{dirs}", method.as_str());
    }

    fn route(&self, request: Request) -> Result<Handled, Failure> {
        match request.head.method {
            Method::Get | Method::Head => {
                self.probe(&Params::from_query(&request.head.query), &request.head)
            }
            Method::Post | Method::Put => self.receive(request),
            Method::Options => Ok(Handled {
                response: Response::new(204).with_header("Allow", ALLOWED_METHODS),
                summary: "options".into(),
            }),
            Method::Patch | Method::Delete | Method::Other(_) => {
                Err(Error::MethodNotAllowed(request.head.method.as_str().to_string()).into())
            }
        }
    }

    /// The dialect and chunk a request describes, checked against the configured limits.
    fn chunk_of(
        &self,
        params: &Params,
        head: &Head,
    ) -> Result<(&'static dyn ChunkDialect, ChunkRequest), Failure> {
        let dialect = protocol::detect(params, head).ok_or(protocol::ParamError::NoDialect)?;
        let refuse = |error: Error| Failure {
            error,
            dialect: Some(dialect),
        };
        let chunk = dialect.chunk(params, head).map_err(|e| refuse(e.into()))?;
        self.check_policy(&chunk).map_err(refuse)?;
        Ok((dialect, chunk))
    }

    fn check_policy(&self, chunk: &ChunkRequest) -> Result<(), Error> {
        if chunk.geometry.total_size > self.config.max_file_size {
            return Err(Error::FileTooLarge {
                total_size: chunk.geometry.total_size,
                max: self.config.max_file_size,
            });
        }
        if chunk.geometry.chunk_size > self.config.max_chunk_size {
            return Err(Error::ChunkTooLarge {
                chunk_size: chunk.geometry.chunk_size,
                max: self.config.max_chunk_size,
            });
        }
        Ok(())
    }

    /// The test request (testChunks): is this chunk stored, or the upload complete?
    fn probe(&self, params: &Params, head: &Head) -> Result<Handled, Failure> {
        let (dialect, chunk) = self.chunk_of(params, head)?;
        let key = upload_key(&chunk, head.remote_user.as_deref());
        let failed = |error: crate::store::StoreError| Failure {
            error: error.into(),
            dialect: Some(dialect),
        };
        let geometry = chunk.geometry;
        let (outcome, action) = if let Some(done) = self.store.completion(&key).map_err(failed)? {
            // A process killed between writing the record and removing the parts leaves them
            // behind; the test of the last chunk (what a resuming client sends last) finishes
            // that cleanup. Best effort: the answer does not depend on it.
            if geometry.is_last() {
                if let Err(e) = self.store.complete_if_covered(&key) {
                    log::warn!("finishing the cleanup of a completed upload: {e}");
                }
            }
            (complete(&done, false), "test (complete)")
        } else if !self
            .store
            .has_chunk(&key, geometry.number, geometry.size)
            .map_err(failed)?
        {
            let status = self.config.missing_chunk_status;
            let missing = Outcome::Missing {
                chunk: geometry.number,
                status,
            };
            (missing, "test (missing)")
        } else {
            // The last chunk is present: if the file is covered but was never assembled (the
            // request that should have done it failed, e.g. on a full disk), complete it now,
            // since the client will not upload anything again.
            let completed = if geometry.is_last() {
                match self.store.complete_if_covered(&key).map_err(failed)? {
                    Progress::Completed(done) | Progress::AlreadyComplete(done) => Some(done),
                    Progress::Incomplete => None,
                }
            } else {
                None
            };
            match completed {
                Some(done) => (complete(&done, true), "test (completed now)"),
                None => (
                    Outcome::Present {
                        chunk: geometry.number,
                    },
                    "test (present)",
                ),
            }
        };
        Ok(Handled {
            response: dialect.answer(&outcome),
            summary: describe(&chunk, action),
        })
    }

    /// A chunk upload: multipart (fields, then the file part) or a raw body (octet mode).
    fn receive(&self, request: Request) -> Result<Handled, Failure> {
        let Request { head, body } = request;
        if let Some(length) = head.content_length {
            let max = self.config.max_body_size();
            if length > max {
                return Err(Error::BodyTooLarge { length, max }.into());
            }
        }
        let mut params = Params::from_query(&head.query);
        if !multipart::is_multipart(head.content_type.as_deref()) {
            let received = self.receive_chunk(&params, &head, body)?;
            return self.commit(received);
        }
        let content_type = head.content_type.clone().unwrap_or_default();
        let received = multipart::read_multipart(
            body,
            &content_type,
            self.config.max_body_size(),
            &mut params,
            |params, file| self.receive_chunk(params, &head, file),
        );
        match received {
            Ok(Some(received)) => self.commit(received),
            // flow.js with testMethod POST: the params in a multipart body, no file part.
            Ok(None) => {
                let Handled { response, summary } = self.probe(&params, &head)?;
                Ok(Handled {
                    response,
                    summary: format!("{summary} (POST)"),
                })
            }
            Err(IntakeError::Multipart(e)) => Err(Error::Multipart(e).into()),
            Err(IntakeError::File(failure)) => Err(failure),
        }
    }

    /// Streams one chunk's bytes into the store; it does not count until committed.
    fn receive_chunk(
        &self,
        params: &Params,
        head: &Head,
        body: &mut dyn std::io::Read,
    ) -> Result<Received, Failure> {
        let (dialect, chunk) = self.chunk_of(params, head)?;
        let key = upload_key(&chunk, head.remote_user.as_deref());
        let bytes = self
            .store
            .receive_chunk(&key, chunk.geometry.number, chunk.geometry.size, body)
            .map_err(|e| Failure {
                error: e.into(),
                dialect: Some(dialect),
            })?;
        Ok(Received {
            dialect,
            chunk,
            bytes,
        })
    }

    fn commit(&self, received: Received) -> Result<Handled, Failure> {
        let Received {
            dialect,
            chunk,
            bytes,
        } = received;
        let progress = bytes.commit().map_err(|e| Failure {
            error: e.into(),
            dialect: Some(dialect),
        })?;
        let (outcome, action) = match progress {
            Progress::Incomplete => (
                Outcome::Stored {
                    chunk: chunk.geometry.number,
                },
                "stored",
            ),
            Progress::Completed(done) => {
                log::info!("completed {:?} ({} bytes)", done.file, done.size);
                (complete(&done, true), "stored, completed")
            }
            Progress::AlreadyComplete(done) => {
                (complete(&done, false), "ignored (already complete)")
            }
        };
        Ok(Handled {
            response: dialect.answer(&outcome),
            summary: describe(&chunk, action),
        })
    }
}

fn complete(done: &Completion, just_now: bool) -> Outcome {
    Outcome::Complete(Finished {
        file: done.file.clone(),
        size: done.size,
        just_now,
    })
}

fn upload_key(chunk: &ChunkRequest, request_user: Option<&str>) -> UploadKey {
    UploadKey {
        user: request_user.map(str::to_string),
        identifier: chunk.identifier.clone(),
        filename: chunk.filename.clone(),
        relative_path: chunk.relative_path.clone(),
        total_size: chunk.geometry.total_size,
        chunk_size: chunk.geometry.chunk_size,
    }
}

fn describe(chunk: &ChunkRequest, action: &str) -> String {
    format!(
        "{} {action} chunk {} ({} bytes at {}) of {:?} id={:?}",
        chunk.dialect,
        chunk.geometry.number,
        chunk.geometry.size,
        chunk.geometry.start,
        chunk.filename,
        chunk.identifier
    )
}
