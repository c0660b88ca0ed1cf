//! The tus 1.0 flow on the upload endpoint: OPTIONS discovery, creation (with upload) on the
//! endpoint, and HEAD, PATCH and DELETE on upload URLs `<endpoint>/<id>`, over the byte-range
//! store operations.
//!
//! The completion hook runs when the last byte is stored (a PATCH, or a creation with upload).
//! Its JSON stays in the completion record and the log: a completing PATCH is a 204 without a
//! body, and tus has no header for it. A refusal is a 415 (tus-js-client gives up on a 4xx
//! other than 409/423) and the upload is gone. A hook that did not decide is a 503 (retried),
//! and the retry runs it again: tus-js-client retries with a HEAD and, when that says every
//! byte is stored, counts the upload done without another PATCH, so the HEAD of an upload whose
//! bytes are all stored but which is not published completes it (as it already did after a
//! killed request); a PATCH of no bytes at the end does too.

use std::io::Read;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::completion::Finisher;
use super::{Failure, Handled, Service};
use crate::config::Config;
use crate::error::{Error, ALLOWED_METHODS};
use crate::escape::percent_encode_path;
use crate::protocol::blueimp;
use crate::protocol::tus::{self, Checksum, HashingReader, Metadata, TusError};
use crate::request::{Head, Method, Request, Response};
use crate::store::{
    Appended, Approve, CommitAt, Completion, Progress, RangeId, RangeInfo, RangeKey, RangeState,
    StageLen, StoreError,
};

/// Whether a request is for the tus flow: it says so (`Tus-Resumable`), it goes to an upload
/// URL, or it is a PATCH (which only tus sends here, blueimp's byte ranges aside).
pub(super) fn claims(head: &Head) -> bool {
    head.header("tus-resumable").is_some()
        || tus::names_upload(head)
        || (head.method == Method::Patch && !blueimp::recognizes(head))
}

/// Every tus answer names the protocol version (once).
pub(super) fn decorate(response: Response) -> Response {
    match response.header("Tus-Resumable") {
        Some(_) => response,
        None => response.with_header("Tus-Resumable", tus::VERSION),
    }
}

/// The OPTIONS answer: the methods for every client, and tus discovery.
pub(super) fn options(config: &Config) -> Response {
    Response::new(204)
        .with_header("Allow", ALLOWED_METHODS)
        .with_header("Tus-Resumable", tus::VERSION)
        .with_header("Tus-Version", tus::VERSION)
        .with_header("Tus-Extension", tus::EXTENSIONS)
        .with_header("Tus-Max-Size", &config.max_file_size.to_string())
        .with_header("Tus-Checksum-Algorithm", tus::CHECKSUM_ALGORITHMS)
}

impl Service {
    pub(super) fn tus(&self, request: Request) -> Result<Handled, Failure> {
        tus::check_version(&request.head)?;
        let method = tus::effective_method(&request.head);
        if !tus::names_upload(&request.head) {
            return match method {
                Method::Post => self.tus_create(request),
                other => Err(TusError::Method(other.as_str().to_string()).into()),
            };
        }
        let path = request.head.path_info.clone().unwrap_or_default();
        // Not an id this server could have issued (`..`, a slash, anything else): no upload.
        let id = tus::parse_id(&path).ok_or(StoreError::UnknownUpload)?;
        let key = RangeKey {
            user: request.head.remote_user.clone(),
            upload: RangeId::Tus(id.to_string()),
        };
        match method {
            Method::Head => self.tus_head(&key),
            Method::Patch => self.tus_patch(&key, request),
            Method::Delete => {
                self.store.remove_range(&key)?;
                Ok(Handled {
                    response: Response::new(204),
                    summary: format!("tus terminated {id}"),
                })
            }
            other => Err(TusError::Method(other.as_str().to_string()).into()),
        }
    }

    fn tus_create(&self, request: Request) -> Result<Handled, Failure> {
        let Request { head, body } = request;
        for unsupported in ["Upload-Defer-Length", "Upload-Concat"] {
            if head.header(unsupported).is_some() {
                return Err(TusError::Unsupported(unsupported).into());
            }
        }
        let length = tus::required_number(&head, "upload-length")?;
        let max = self.config.max_file_size;
        if length > max {
            return Err(TusError::TooLarge { length, max }.into());
        }
        let metadata = Metadata::parse(head.header("upload-metadata"))?;
        // A new upload must fit with room to spare: its data, then its published file.
        self.ensure_room_for_new_upload(length, length)?;
        // creation-with-upload: the body counts only when typed as a PATCH body is.
        let with_body = tus::is_offset_stream(&head) && head.content_length != Some(0);
        let checksum = match with_body {
            true => Checksum::parse(head.header("upload-checksum"))?,
            false => None,
        };
        if with_body {
            check_room(&head, length)?;
        }
        let id = tus::new_id().map_err(|source| StoreError::Io {
            op: "making an upload id",
            source,
        })?;
        let key = RangeKey {
            user: head.remote_user.clone(),
            upload: RangeId::Tus(id.clone()),
        };
        let state = RangeState {
            length,
            filename: metadata.filename().unwrap_or_default(),
            relative_path: metadata.relative_path(),
            metadata: metadata.render(),
            user: head.remote_user.clone(),
        };
        self.store.create_range(&key, &state)?;
        let base = self
            .config
            .tus_base_url
            .as_deref()
            .unwrap_or(&head.script_name);
        let location = format!("{}/{id}", base.trim_end_matches('/'));
        let mut response = Response::new(201).with_header("Location", &location);
        let mut summary = format!("tus created {id} ({length} bytes) {:?}", state.filename);
        let approve = self.approver(finisher(&key, state.metadata.as_deref()));
        let done = if with_body {
            let appended = self.tus_append(&key, 0, length, checksum, body, &approve)?;
            response = response.with_header("Upload-Offset", &appended.offset.to_string());
            summary.push_str(&format!(" with {} bytes", appended.received));
            refuse_overflow(&appended, length)?;
            completion_of(&appended.progress)?
        } else if length == 0 {
            match self.store.complete_range(&key, &approve)? {
                Some(progress) => completion_of(&progress)?,
                None => None,
            }
        } else {
            None
        };
        if let Some(done) = &done {
            log_data(&key, done);
            summary.push_str(", completed");
        }
        Ok(Handled {
            response: self.progress_headers(response, done.as_ref(), SystemTime::now()),
            summary,
        })
    }

    fn tus_head(&self, key: &RangeKey) -> Result<Handled, Failure> {
        let mut info = self.live_upload(key)?;
        let mut action = "";
        if info.offset == info.state.length {
            // Every byte is here. If the request that stored the last ones was killed before it
            // published the file (or before it removed the data), or its completion hook did
            // not decide, finish now: the client will send nothing more.
            let approve = self.approver(finisher(key, info.state.metadata.as_deref()));
            match self.store.complete_range(key, &approve)? {
                Some(progress) => {
                    if let Progress::Completed(done) = &progress {
                        action = " (completed now)";
                        log_data(key, done);
                    }
                    info.completion = completion_of(&progress)?;
                }
                // Another request is completing it (its hook may be running): an offset equal
                // to the length now would tell tus-js-client it is done before it is; a 423
                // makes it ask again.
                None if info.completion.is_none() => return Err(StoreError::Busy.into()),
                None => {}
            }
        }
        let mut response = Response::new(200)
            .with_header("Upload-Offset", &info.offset.to_string())
            .with_header("Upload-Length", &info.state.length.to_string())
            .with_header("Cache-Control", "no-store");
        if let Some(metadata) = &info.state.metadata {
            response = response.with_header("Upload-Metadata", metadata);
        }
        // A HEAD leaves the upload as it was: it expires as long after its last change.
        let response = self.progress_headers(response, info.completion.as_ref(), info.modified);
        Ok(Handled {
            response,
            summary: format!(
                "tus offset of {} is {}/{}{action}",
                upload_name(key),
                info.offset,
                info.state.length
            ),
        })
    }

    fn tus_patch(&self, key: &RangeKey, request: Request) -> Result<Handled, Failure> {
        let Request { head, body } = request;
        if !tus::is_offset_stream(&head) {
            return Err(TusError::ContentType(head.content_type.clone()).into());
        }
        let at = tus::required_number(&head, "upload-offset")?;
        let checksum = Checksum::parse(head.header("upload-checksum"))?;
        let info = self.live_upload(key)?;
        // Refused before the body is read: a wrong offset, or more than fits.
        if at != info.offset {
            return Err(StoreError::OffsetMismatch {
                offset: info.offset,
            }
            .into());
        }
        let length = info.state.length;
        let room = length.saturating_sub(at);
        check_room(&head, room)?;
        let approve = self.approver(finisher(key, info.state.metadata.as_deref()));
        let appended = self.tus_append(key, at, room, checksum, body, &approve)?;
        refuse_overflow(&appended, room)?;
        let mut summary = format!(
            "tus stored {} bytes of {} at {at}: {}/{length}",
            appended.received,
            upload_name(key),
            appended.offset
        );
        let short = head
            .content_length
            .is_some_and(|declared| appended.received < declared);
        if let Some(e) = &appended.cut {
            summary.push_str(&format!(" (body cut off: {e}; kept)"));
        } else if short {
            summary.push_str(" (body ended early; kept)");
        }
        let done = completion_of(&appended.progress)?;
        match &appended.progress {
            Progress::Completed(done) => {
                log::info!("completed {:?} ({} bytes)", done.file, done.size);
                log_data(key, done);
                summary.push_str(", completed");
            }
            Progress::AlreadyComplete(_) => summary.push_str(" (already complete)"),
            Progress::Incomplete | Progress::Rejected { .. } => {}
        }
        let response =
            Response::new(204).with_header("Upload-Offset", &appended.offset.to_string());
        Ok(Handled {
            response: self.progress_headers(response, done.as_ref(), SystemTime::now()),
            summary,
        })
    }

    /// Appends a PATCH (or creation) body: straight into the data file, keeping whatever
    /// arrives; or, with `Upload-Checksum`, held aside until it is verified (a mismatch is
    /// discarded whole).
    fn tus_append(
        &self,
        key: &RangeKey,
        at: u64,
        room: u64,
        checksum: Option<Checksum>,
        body: &mut (dyn Read + Send),
        approve: &Approve<'_>,
    ) -> Result<Appended, Failure> {
        let Some(checksum) = checksum else {
            return Ok(self.store.append_range(key, at, body, approve)?);
        };
        let mut hashing = HashingReader::new(body, checksum.algorithm);
        let staged = self
            .store
            .stage_range(key, false, &mut hashing, StageLen::AtMost(room))?;
        if !hashing.matches(&checksum.digest) {
            return Err(TusError::ChecksumMismatch.into());
        }
        let at = CommitAt::Append {
            offset: at,
            length: None,
        };
        Ok(staged.commit(at, approve)?)
    }

    /// The upload, unless it is unknown (404) or expired (410: it may not be resumed, even if
    /// cleanup has not removed it yet).
    fn live_upload(&self, key: &RangeKey) -> Result<RangeInfo, Failure> {
        let info = self
            .store
            .range_info(key)?
            .ok_or(StoreError::UnknownUpload)?;
        if info.modified + self.config.expire_after < SystemTime::now() {
            return Err(TusError::Expired.into());
        }
        Ok(info)
    }

    /// `Upload-Expires` while the upload is unfinished (`RESUMABLE_EXPIRE_AFTER` after it was
    /// last changed), the published file's name once it is finished.
    fn progress_headers(
        &self,
        response: Response,
        done: Option<&Completion>,
        changed: SystemTime,
    ) -> Response {
        match done {
            Some(done) => {
                let components: Vec<String> = done.file.split('/').map(str::to_string).collect();
                response.with_header(tus::COMPLETE_FILE_HEADER, &percent_encode_path(&components))
            }
            None => response.with_header(
                "Upload-Expires",
                &httpdate::fmt_http_date(changed + self.config.expire_after),
            ),
        }
    }
}

/// A declared body longer than what is left of the upload is refused before it is read.
fn check_room(head: &Head, room: u64) -> Result<(), Failure> {
    match head.content_length {
        Some(length) if length > room => Err(StoreError::BeyondLength { room }.into()),
        _ => Ok(()),
    }
}

/// A body that went on past the upload's end: what fitted is stored, the request is refused.
fn refuse_overflow(appended: &Appended, room: u64) -> Result<(), Failure> {
    if appended.overflow {
        return Err(Error::Store(StoreError::BeyondLength { room }).into());
    }
    Ok(())
}

/// The published file, if any; a refusal by the completion hook is the request's 415.
fn completion_of(progress: &Progress) -> Result<Option<Completion>, Failure> {
    match progress {
        Progress::Completed(done) | Progress::AlreadyComplete(done) => Ok(Some(done.clone())),
        Progress::Incomplete => Ok(None),
        Progress::Rejected { reason } => Err(Error::Rejected {
            reason: reason.clone(),
        }
        .into()),
    }
}

/// What the completion hook is told about a tus upload: its id, user and decoded metadata.
fn finisher<'a>(key: &'a RangeKey, metadata: Option<&str>) -> Finisher<'a> {
    // Stored as this server rendered it, so it parses; a damaged state gives no metadata.
    let pairs = Metadata::parse(metadata).unwrap_or_default().pairs;
    let metadata: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(String::from_utf8_lossy(&v).into_owned())))
        .collect();
    Finisher {
        client: "tus",
        identifier: upload_name(key),
        user: key.user.as_deref(),
        metadata,
    }
}

/// The hook's answer has no place in a tus response: the completion record keeps it, and the
/// log shows it.
fn log_data(key: &RangeKey, done: &Completion) {
    if let Some(data) = &done.data {
        log::info!(
            "completion hook data for tus upload {}: {data}",
            upload_name(key)
        );
    }
}

fn upload_name(key: &RangeKey) -> &str {
    match &key.upload {
        RangeId::Tus(id) | RangeId::Named(id) => id,
    }
}
