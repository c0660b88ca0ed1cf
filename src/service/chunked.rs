//! The chunked flow shared by every chunk dialect: a test request (is this chunk stored?) and a
//! chunk upload (stream it in, count it, complete the file when it was the last one missing).

use super::{Failure, Handled, Service};
use crate::error::Error;
use crate::protocol::multipart::{self, IntakeError};
use crate::protocol::{self, ChunkDialect, ChunkRequest, Finished, Outcome, Params};
use crate::request::{Head, Request};
use crate::store::{Completion, Progress, ReceivedChunk, StoreError, UploadKey};

/// A chunk whose bytes arrived, with what the client said about it.
struct Received {
    dialect: &'static dyn ChunkDialect,
    chunk: ChunkRequest,
    bytes: Box<dyn ReceivedChunk>,
}

impl Service {
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
    pub(super) fn probe(&self, params: &Params, head: &Head) -> Result<Handled, Failure> {
        let (dialect, chunk) = self.chunk_of(params, head)?;
        let key = upload_key(&chunk, head.remote_user.as_deref());
        let failed = |error: StoreError| Failure {
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
    pub(super) fn receive(&self, request: Request) -> Result<Handled, Failure> {
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
        object: done.object.clone(),
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
