//! The chunked flow shared by every chunk dialect: a test request (is this chunk stored?), a
//! chunk upload (stream it in, count it, complete the file when it was the last one missing),
//! for chunks whose sizes the client declares and for counted ones, and the client's "every
//! chunk was sent".

use serde_json::{Map, Value};

use super::completion::{metadata_of, Finisher};
use super::{Failure, Handled, Service};
use std::io::Read;

use crate::error::Error;
use crate::protocol::multipart::{self, IntakeError, MultipartReader};
use crate::protocol::{
    self, ChunkDialect, ChunkRequest, CountedChunk, FinishRequest, Finished, Intent, Outcome,
    ParamError, Params,
};
use crate::request::{Head, Request};
use crate::store::{
    BodySize, ChunkSlot, Completion, Finish, Place, Progress, ReceivedChunk, StoreError, UploadKey,
};

/// A chunk whose bytes arrived, with what the client said about it.
struct Received {
    dialect: &'static dyn ChunkDialect,
    /// The chunk's number, for the answer.
    number: u64,
    /// The upload's identifier, for the completion hook.
    identifier: String,
    /// The chunk as the log line names it.
    label: String,
    bytes: Box<dyn ReceivedChunk>,
    user: Option<String>,
    /// The request's parameters, for the completion hook.
    metadata: Map<String, Value>,
}

/// Most bytes of a url-encoded body (Fine Uploader's chunking success request): a few fields.
const MAX_FORM_BODY: u64 = multipart::MAX_TEXT_FIELD;

impl Service {
    /// The dialect and intent a request describes, checked against the configured limits.
    fn intent_of(
        &self,
        params: &Params,
        head: &Head,
    ) -> Result<(&'static dyn ChunkDialect, Intent), Failure> {
        let dialect = protocol::detect(params, head).ok_or(ParamError::NoDialect)?;
        let intent = dialect
            .intent(params, head)
            .map_err(Error::from)
            .and_then(|intent| self.check_policy(&intent).map(|()| intent))
            .map_err(|error| Failure {
                error,
                dialect: Some(dialect),
            })?;
        Ok((dialect, intent))
    }

    fn check_policy(&self, intent: &Intent) -> Result<(), Error> {
        let (total_size, chunk_size) = match intent {
            Intent::Chunk(chunk) => (chunk.geometry.total_size, Some(chunk.geometry.chunk_size)),
            Intent::Finish(finish) => (finish.total_size, None),
            // The smallest file the chunks can make: every chunk but the last at least the
            // chunk size (one byte when not declared), the last at least one byte.
            Intent::Counted(c) => (
                (c.count - 1)
                    .saturating_mul(c.chunk_size.unwrap_or(1))
                    .saturating_add(u64::from(c.count > 1)),
                c.chunk_size,
            ),
        };
        if total_size > self.config.max_file_size {
            return Err(Error::FileTooLarge {
                total_size,
                max: self.config.max_file_size,
            });
        }
        match chunk_size {
            Some(chunk_size) if chunk_size > self.config.max_chunk_size => {
                Err(Error::ChunkTooLarge {
                    chunk_size,
                    max: self.config.max_chunk_size,
                })
            }
            _ => Ok(()),
        }
    }

    /// A request that carries no file: a test request (testChunks), or "every chunk was sent".
    pub(super) fn probe(&self, params: &Params, head: &Head) -> Result<Handled, Failure> {
        let (dialect, intent) = self.intent_of(params, head)?;
        let refuse = |error: Error| Failure {
            error,
            dialect: Some(dialect),
        };
        match intent {
            Intent::Chunk(chunk) => self.test(dialect, chunk, params, head),
            Intent::Finish(finish) => self.finish(dialect, finish, head).map_err(refuse),
            Intent::Counted(_) => Err(refuse(ParamError::NotATest(dialect.name()).into())),
        }
    }

    /// The test request (testChunks): is this chunk stored, or the upload complete?
    fn test(
        &self,
        dialect: &'static dyn ChunkDialect,
        chunk: ChunkRequest,
        params: &Params,
        head: &Head,
    ) -> Result<Handled, Failure> {
        let key = upload_key(dialect, &chunk, head.remote_user.as_deref());
        let failed = |error: StoreError| Failure {
            error: error.into(),
            dialect: Some(dialect),
        };
        let geometry = chunk.geometry;
        let approve = self.approver(Finisher {
            client: dialect.name(),
            identifier: &chunk.identifier,
            user: head.remote_user.as_deref(),
            metadata: metadata_of(params),
        });
        let (outcome, action) = if let Some(done) = self.store.completion(&key).map_err(failed)? {
            // A process killed between writing the record and removing the parts leaves them
            // behind; the test of the last chunk (what a resuming client sends last) finishes
            // that cleanup. Best effort: the answer does not depend on it.
            if geometry.is_last() {
                if let Err(e) = self.store.complete_if_covered(&key, &approve) {
                    log::warn!("finishing the cleanup of a completed upload: {e}");
                }
            }
            (self.complete(&done, false), "test (complete)")
        } else if !self
            .store
            .has_chunk(
                &key,
                ChunkSlot {
                    number: geometry.number,
                    size: geometry.size,
                },
            )
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
            // request that should have done it failed, e.g. on a full disk, or its completion
            // hook did not decide), complete it now, since the client will not upload anything
            // again.
            let completed = if geometry.is_last() {
                match self
                    .store
                    .complete_if_covered(&key, &approve)
                    .map_err(failed)?
                {
                    Progress::Completed(done) | Progress::AlreadyComplete(done) => Some(done),
                    Progress::Incomplete => None,
                    Progress::Rejected { reason } => {
                        return Err(rejected(dialect, reason));
                    }
                }
            } else {
                None
            };
            match completed {
                Some(done) => (self.complete(&done, true), "test (completed now)"),
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
            summary: describe(dialect, action, &label(&chunk)),
        })
    }

    /// The client says every chunk was sent: complete the upload, or say which are missing.
    fn finish(
        &self,
        dialect: &'static dyn ChunkDialect,
        finish: FinishRequest,
        head: &Head,
    ) -> Result<Handled, Error> {
        let key = UploadKey {
            client: dialect.name(),
            user: head.remote_user.clone(),
            identifier: finish.identifier.clone(),
            filename: finish.filename.clone(),
            relative_path: None,
            total_size: finish.total_size,
            // Recorded with the parts; the request does not say.
            chunk_size: 0,
        };
        let approve = self.approver(Finisher {
            client: dialect.name(),
            identifier: &finish.identifier,
            user: head.remote_user.as_deref(),
            metadata: Default::default(),
        });
        let what = format!(
            "all {} chunks of {:?} id={:?}",
            finish.total_chunks, finish.filename, finish.identifier
        );
        let (outcome, action) = match self.store.finish(&key, finish.total_chunks, &approve)? {
            Finish::Rejected { reason } => return Err(Error::Rejected { reason }),
            Finish::Completed(done) => {
                log::info!("completed {:?} ({} bytes)", done.file, done.size);
                (self.complete(&done, true), "finished, completed")
            }
            Finish::AlreadyComplete(done) => (self.complete(&done, false), "finished"),
            Finish::Missing { first, more } => {
                let mut list = first
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                if more {
                    list.push_str(", ...");
                }
                return Err(Error::StartOver {
                    reason: format!(
                        "the upload is not complete: chunks {list} (counting from 1) of {} are \
                         not stored; send the file again",
                        finish.total_chunks
                    ),
                    missing: first,
                });
            }
        };
        Ok(Handled {
            response: dialect.answer(&outcome),
            summary: describe(dialect, action, &what),
        })
    }

    /// A POST or PUT: a chunk, multipart (fields, then the file part) or a raw body (octet
    /// mode); flow.js's test by POST (fields, no file part); or, when no chunk dialect claims
    /// the parameters of a multipart body, a plain form upload (the form flow).
    pub(super) fn receive(&self, request: Request) -> Result<Handled, Failure> {
        let Request { head, body } = request;
        let mut params = self.params_of(&head);
        let is_multipart = multipart::is_multipart(head.content_type.as_deref());
        // Without a dialect in the query, a multipart body may be a form upload, which may be
        // larger than a chunk: its fields tell which it is.
        let may_be_form = is_multipart && protocol::detect(&params, &head).is_none();
        let max_chunk_body = self.config.max_body_size();
        let limit = if may_be_form {
            max_chunk_body.max(self.config.max_post_size)
        } else {
            max_chunk_body
        };
        if let Some(length) = head.content_length.filter(|&length| length > limit) {
            return Err(if may_be_form {
                Error::PostTooLarge {
                    length: Some(length),
                    max: self.config.max_post_size,
                }
            } else {
                Error::BodyTooLarge {
                    length,
                    max: max_chunk_body,
                }
            }
            .into());
        }
        if !is_multipart {
            if is_form(head.content_type.as_deref()) && protocol::detect(&params, &head).is_none() {
                // Fields in a url-encoded body and no file: Fine Uploader's chunking success
                // request. (A raw chunk of that type names its upload in the query.)
                read_form(body, &mut params)?;
                return self.probe(&params, &head);
            }
            let received = self.receive_chunk(&params, &head, body)?;
            return self.commit(received);
        }
        let content_type = head.content_type.clone().unwrap_or_default();
        let mut reader =
            MultipartReader::new(body, &content_type, limit).map_err(Error::Multipart)?;
        let mut fields = Params::default();
        let file = reader.read_fields(&mut fields).map_err(Error::Multipart)?;
        params.append(&fields);
        if protocol::detect(&params, &head).is_none() {
            return self.receive_form(&head, params, &fields, reader, file);
        }
        let Some(file) = file else {
            // flow.js with testMethod POST: the params in a multipart body, no file part.
            let Handled { response, summary } = self.probe(&params, &head)?;
            return Ok(Handled {
                response,
                summary: format!("{summary} (POST)"),
            });
        };
        if let Some(length) = head.content_length.filter(|&l| l > max_chunk_body) {
            return Err(Error::BodyTooLarge {
                length,
                max: max_chunk_body,
            }
            .into());
        }
        // Some clients (Dropzone) name the file only in the part's `filename` attribute.
        params.set_file_name(file.filename());
        reader.set_limit(max_chunk_body).map_err(Error::Multipart)?;
        match reader.take_only_file(file, |file| self.receive_chunk(&params, &head, file)) {
            Ok(received) => self.commit(received),
            Err(IntakeError::Multipart(e)) => Err(Error::Multipart(e).into()),
            Err(IntakeError::File(failure)) => Err(failure),
        }
    }

    /// Streams one chunk's bytes into the store; it does not count until committed.
    fn receive_chunk(
        &self,
        params: &Params,
        head: &Head,
        body: &mut dyn Read,
    ) -> Result<Received, Failure> {
        let (dialect, intent) = self.intent_of(params, head)?;
        let failed = |error: Error| Failure {
            error,
            dialect: Some(dialect),
        };
        let (number, identifier, label, bytes) = match intent {
            Intent::Chunk(chunk) => {
                let key = upload_key(dialect, &chunk, head.remote_user.as_deref());
                // A new upload must fit with room to spare: its parts, then its assembled file.
                if !self.config.min_free_space.is_off()
                    && !self.store.has_upload(&key).map_err(|e| failed(e.into()))?
                {
                    let total = chunk.geometry.total_size;
                    self.ensure_room_for_new_upload(total, total)
                        .map_err(failed)?;
                }
                if chunk.resumed && !self.store.knows(&key).map_err(|e| failed(e.into()))? {
                    return Err(failed(Error::StartOver {
                        reason: "this upload is resumed, but none of its chunks are stored \
                                 here any more; send the file again"
                            .into(),
                        missing: Vec::new(),
                    }));
                }
                let geometry = chunk.geometry;
                let bytes = self.store.receive_chunk(
                    &key,
                    ChunkSlot {
                        number: geometry.number,
                        size: geometry.size,
                    },
                    body,
                );
                (
                    geometry.number,
                    chunk.identifier.clone(),
                    label(&chunk),
                    bytes,
                )
            }
            Intent::Counted(chunk) => {
                let bytes = self.receive_counted(&chunk, head, body);
                let size = bytes.as_ref().map_or(0, |bytes| bytes.size());
                let label = counted_label(&chunk, size);
                (chunk.number, chunk.identifier.clone(), label, bytes)
            }
            Intent::Finish(_) => {
                return Err(failed(ParamError::UnexpectedFile(dialect.name()).into()));
            }
        };
        Ok(Received {
            dialect,
            number,
            identifier,
            label,
            bytes: bytes.map_err(|e| failed(e.into()))?,
            user: head.remote_user.clone(),
            metadata: metadata_of(params),
        })
    }

    fn receive_counted(
        &self,
        chunk: &CountedChunk,
        head: &Head,
        body: &mut dyn Read,
    ) -> Result<Box<dyn ReceivedChunk>, StoreError> {
        let key = UploadKey {
            client: "counted",
            user: head.remote_user.clone(),
            identifier: chunk.identifier.clone(),
            filename: chunk.filename.clone(),
            relative_path: None,
            // Known once the chunk is committed (see UploadStore::receive_counted_chunk).
            total_size: 0,
            chunk_size: 0,
        };
        let place = Place {
            number: chunk.number,
            count: chunk.count,
            chunk_size: chunk.chunk_size,
            first_begins: chunk.first_begins,
            max_total: self.config.max_file_size,
        };
        // A raw body is as long as the request says; a multipart part says where it ends.
        let size = match (
            multipart::is_multipart(head.content_type.as_deref()),
            head.content_length,
        ) {
            (false, Some(length)) => BodySize::Exactly(length),
            _ => BodySize::AtMost(self.config.max_chunk_size),
        };
        self.store.receive_counted_chunk(&key, place, size, body)
    }

    fn commit(&self, received: Received) -> Result<Handled, Failure> {
        let Received {
            dialect,
            number,
            identifier,
            label,
            bytes,
            user,
            metadata,
        } = received;
        let approve = self.approver(Finisher {
            client: dialect.name(),
            identifier: &identifier,
            user: user.as_deref(),
            metadata,
        });
        let progress = bytes.commit(&approve).map_err(|e| Failure {
            error: e.into(),
            dialect: Some(dialect),
        })?;
        let (outcome, action) = match progress {
            Progress::Incomplete => (Outcome::Stored { chunk: number }, "stored"),
            Progress::Completed(done) => {
                log::info!("completed {:?} ({} bytes)", done.file, done.size);
                (self.complete(&done, true), "stored, completed")
            }
            Progress::AlreadyComplete(done) => {
                (self.complete(&done, false), "ignored (already complete)")
            }
            Progress::Rejected { reason } => return Err(rejected(dialect, reason)),
        };
        Ok(Handled {
            response: dialect.answer(&outcome),
            summary: describe(dialect, action, &label),
        })
    }
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// Adds the fields of a url-encoded body to `params`; the body must be small.
fn read_form(body: &mut dyn Read, params: &mut Params) -> Result<(), Error> {
    let mut text = Vec::new();
    body.take(MAX_FORM_BODY + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::Store(StoreError::BodyRead(e)))?;
    if text.len() as u64 > MAX_FORM_BODY {
        return Err(Error::BodyTooLarge {
            length: text.len() as u64,
            max: MAX_FORM_BODY,
        });
    }
    for (name, value) in Params::from_query(&String::from_utf8_lossy(&text)).pairs() {
        params.push(name.clone(), value.clone());
    }
    Ok(())
}

impl Service {
    fn complete(&self, done: &Completion, just_now: bool) -> Outcome {
        Outcome::Complete(Finished {
            file: done.file.clone(),
            size: done.size,
            just_now,
            url: self.public_url(&done.file),
            data: done.data.clone(),
            object: done.object.clone(),
        })
    }
}

/// The completion hook refused the file: the client must stop sending it.
fn rejected(dialect: &'static dyn ChunkDialect, reason: String) -> Failure {
    Failure {
        error: Error::Rejected { reason },
        dialect: Some(dialect),
    }
}

fn upload_key(
    dialect: &'static dyn ChunkDialect,
    chunk: &ChunkRequest,
    request_user: Option<&str>,
) -> UploadKey {
    UploadKey {
        client: dialect.name(),
        user: request_user.map(str::to_string),
        identifier: chunk.identifier.clone(),
        filename: chunk.filename.clone(),
        relative_path: chunk.relative_path.clone(),
        total_size: chunk.geometry.total_size,
        chunk_size: chunk.geometry.chunk_size,
    }
}

fn describe(dialect: &dyn ChunkDialect, action: &str, what: &str) -> String {
    format!("{} {action} {what}", dialect.name())
}

fn label(chunk: &ChunkRequest) -> String {
    format!(
        "chunk {} ({} bytes at {}) of {:?} id={:?}",
        chunk.geometry.number,
        chunk.geometry.size,
        chunk.geometry.start,
        chunk.filename,
        chunk.identifier
    )
}

fn counted_label(chunk: &CountedChunk, size: u64) -> String {
    format!(
        "chunk {} of {} ({size} bytes) of {:?} id={:?}",
        chunk.number, chunk.count, chunk.filename, chunk.identifier
    )
}
