//! The blueimp jQuery-File-Upload flow: byte-range chunks appended where the stored bytes end
//! (the same store operation as tus), and the resume request of its documented recipe.
//!
//! The completion hook runs when the last chunk is stored: its JSON goes to the page as
//! `files[0].data`; a refusal is `files[0].error` with the hook's words in a 200, as blueimp's
//! own server answers every per-file error (its page shows `files[i].error` only from a 2xx
//! answer; on any other status it shows the status text). A hook that did not decide is a 503,
//! and the resume request for the file (what the recipe's retry sends) runs it again.

use super::completion::{metadata_of, Finisher};
use super::{Failure, Handled, Service};
use crate::error::Error;
use crate::protocol::blueimp::{self, RangeChunk};
use crate::protocol::multipart::{self, IntakeError, MultipartError};
use crate::protocol::Params;
use crate::request::{Head, Request};
use crate::store::{CommitAt, Progress, RangeId, RangeKey, RangeState, StageLen, StoreError};

fn key_of(name: &str, head: &Head) -> RangeKey {
    RangeKey {
        user: head.remote_user.clone(),
        upload: RangeId::Named(name.to_string()),
    }
}

/// What the completion hook is told: the file name is blueimp's only identifier, and the form
/// fields the page sent with the chunk are the metadata.
fn finisher<'a>(name: &'a str, head: &'a Head, fields: &Params) -> Finisher<'a> {
    Finisher {
        client: "blueimp",
        identifier: name,
        user: head.remote_user.as_deref(),
        metadata: metadata_of(fields),
    }
}

impl Service {
    /// `GET ?file=<name>`: how many bytes of that file are stored, so the page resumes there.
    /// An upload whose bytes are all stored but which a killed request left unpublished is
    /// completed now: the client has nothing more to send.
    pub(super) fn blueimp_resume(&self, name: &str, head: &Head) -> Result<Handled, Failure> {
        let key = key_of(name, head);
        let mut info = self.store.range_info(&key)?;
        if let Some(info) = info.as_mut() {
            if info.offset == info.state.length {
                let approve = self.approver(finisher(name, head, &Params::default()));
                match self.store.complete_range(&key, &approve)? {
                    Some(Progress::Completed(done) | Progress::AlreadyComplete(done)) => {
                        info.completion = Some(done);
                    }
                    Some(Progress::Rejected { reason }) => {
                        return Err(Error::Rejected { reason }.into())
                    }
                    Some(Progress::Incomplete) | None => {}
                }
            }
        }
        let stored = info.as_ref().map(|info| info.offset);
        let published = info
            .as_ref()
            .and_then(|info| info.completion.as_ref())
            .map(|done| done.file.as_str());
        Ok(Handled {
            response: blueimp::resume(name, stored, published),
            summary: format!("blueimp resume {name:?}: {stored:?} bytes stored"),
        })
    }

    /// One chunk: checked against what is stored before its body is read, held aside until it
    /// arrived whole (and its multipart framing ended properly), then appended.
    pub(super) fn blueimp_chunk(&self, request: Request) -> Result<Handled, Failure> {
        let Request { head, body } = request;
        let chunk = blueimp::chunk(&head)?;
        if chunk.total > self.config.max_file_size {
            return Err(Error::FileTooLarge {
                total_size: chunk.total,
                max: self.config.max_file_size,
            }
            .into());
        }
        if let Some(length) = head.content_length {
            let max = self.config.max_body_size();
            if length > max {
                return Err(Error::BodyTooLarge { length, max }.into());
            }
        }
        let key = key_of(&chunk.name, &head);
        self.check_placement(&key, &chunk)?;
        let len = StageLen::Exact(chunk.len);
        let mut fields = Params::default();
        let staged = if multipart::is_multipart(head.content_type.as_deref()) {
            let content_type = head.content_type.clone().unwrap_or_default();
            let staged = multipart::read_multipart(
                body,
                &content_type,
                self.config.max_body_size(),
                &mut fields,
                |_, file| {
                    self.store
                        .stage_range(&key, true, file, len)
                        .map_err(Failure::from)
                },
            );
            match staged {
                Ok(Some(staged)) => staged,
                Ok(None) => {
                    return Err(Error::Multipart(MultipartError::Malformed(
                        "no file part in a chunk upload".into(),
                    ))
                    .into())
                }
                Err(IntakeError::Multipart(e)) => return Err(Error::Multipart(e).into()),
                Err(IntakeError::File(failure)) => return Err(failure),
            }
        } else {
            self.store.stage_range(&key, true, body, len)?
        };
        // Byte 0 starts the file (over): the client sends a file from its start only when it
        // has nothing to resume (a first try, or a page without the resume recipe).
        let at = if chunk.start == 0 {
            CommitAt::StartOver(RangeState {
                length: chunk.total,
                filename: chunk.name.clone(),
                relative_path: None,
                metadata: None,
                user: head.remote_user.clone(),
            })
        } else {
            CommitAt::Append {
                offset: chunk.start,
                length: Some(chunk.total),
            }
        };
        let approve = self.approver(finisher(&chunk.name, &head, &fields));
        let appended = staged.commit(at, &approve)?;
        let summary = format!(
            "blueimp stored bytes {}-{} of {:?}: {}/{}",
            chunk.start,
            chunk.start + chunk.len - 1,
            chunk.name,
            appended.offset,
            chunk.total
        );
        let (published, summary) = match &appended.progress {
            Progress::Completed(done) => {
                log::info!("completed {:?} ({} bytes)", done.file, done.size);
                (Some(done), format!("{summary}, completed"))
            }
            Progress::AlreadyComplete(done) => (Some(done), summary),
            Progress::Incomplete => (None, summary),
            Progress::Rejected { reason } => {
                log::warn!(
                    "blueimp {:?}: {}",
                    chunk.name,
                    Error::Rejected {
                        reason: reason.clone()
                    }
                );
                return Ok(Handled {
                    response: blueimp::refused(&chunk.name, chunk.total, reason),
                    summary: format!("{summary}, refused by the completion hook"),
                });
            }
        };
        let response = blueimp::stored(
            &chunk.name,
            appended.offset,
            published.map(|done| done.file.as_str()),
            published.and_then(|done| done.data.as_ref()),
        );
        Ok(Handled { response, summary })
    }

    /// A chunk after the first must start exactly where the stored bytes of the same file end;
    /// anything else is refused before its body is read (and again, under the lock, when it is
    /// appended).
    fn check_placement(&self, key: &RangeKey, chunk: &RangeChunk) -> Result<(), Failure> {
        if chunk.start == 0 {
            return Ok(());
        }
        let offset = match self.store.range_info(key)? {
            Some(info) if info.completion.is_none() => {
                if info.state.length != chunk.total {
                    return Err(StoreError::LengthMismatch {
                        length: info.state.length,
                    }
                    .into());
                }
                info.offset
            }
            // Nothing in progress under that name: only byte 0 can start it.
            _ => 0,
        };
        if offset != chunk.start {
            return Err(StoreError::OffsetMismatch { offset }.into());
        }
        Ok(())
    }
}
