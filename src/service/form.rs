//! The form flow: a multipart POST or PUT that no chunk dialect claims is a plain form upload.
//! Every file part streams into its own staging file under PHP's limits (protocol/form.rs);
//! once the whole body has been read, the files are published in the order sent and every file
//! part is reported. A malformed body publishes nothing; one cut short publishes the files that
//! arrived whole before the cut.

use super::completion::{metadata_of, Finisher};
use super::{Failure, Handled, Service};
use crate::error::Error;
use crate::protocol::form::{self, FileError, FileIntent, FileReport, FormReport, FormState};
use crate::protocol::multipart::{FilePart, MultipartError, MultipartReader, Part};
use crate::protocol::{self, Params};
use crate::request::Head;
use crate::store::{Approval, AssembledFile, IncomingFile, Received, StoreError};

/// A file received whole, waiting for the end of the body to be published.
struct Staged {
    /// Its entry in the report.
    index: usize,
    file: Box<dyn IncomingFile>,
    relative_path: Option<String>,
}

/// What the form flow gathered while reading the body.
#[derive(Default)]
struct Intake {
    report: FormReport,
    staged: Vec<Staged>,
    /// The first failure on the server's side (PHP's codes 6 and 7): when no file could be
    /// stored, it sets the status (500 for a broken installation, 503 for a full disk).
    server_failure: Option<StoreError>,
}

/// How reading one part ended.
enum PartEnd {
    /// Go on with the next part.
    Next,
    /// The body ended early (the report says where).
    Cut,
}

impl Service {
    /// Receives a form upload whose text fields before the first file part (`fields`) have
    /// been read; `params` holds the query's and theirs; `first` is that file part (none: a
    /// form without file inputs).
    pub(super) fn receive_form<'r>(
        &self,
        head: &Head,
        mut params: Params,
        fields: &Params,
        mut reader: MultipartReader<'r>,
        first: Option<FilePart<'r>>,
    ) -> Result<Handled, Failure> {
        let max = self.config.max_post_size;
        if let Some(length) = head.content_length.filter(|&length| length > max) {
            let length = Some(length);
            return Err(Error::PostTooLarge { length, max }.into());
        }
        // Files are new uploads: the whole request must fit with room to spare, or none of it
        // is stored (PHP has no error number for a full disk, and a 503 lets the page retry).
        if first.is_some() {
            // A missing or unusable directory is each file's error below, as PHP says it.
            let room = self.ensure_room_for_new_upload(0, head.content_length.unwrap_or(0));
            if let Err(low @ Error::Store(StoreError::LowSpace { .. })) = room {
                return Err(low.into());
            }
        }
        reader.set_limit(max).map_err(refuse)?;
        let mut form = FormState::new(self.config.max_file_size, self.config.max_file_uploads);
        for (name, value) in fields.iter() {
            form.text_field(name, value);
        }
        let mut intake = Intake::default();
        let mut next = first.map(|file| Part::File(Box::new(file)));
        loop {
            let part = match next.take() {
                Some(part) => part,
                None => match reader.next_part() {
                    Ok(Some(part)) => part,
                    Ok(None) => break,
                    Err(MultipartError::Incomplete(why)) => {
                        log::warn!("form upload: the body ended between parts: {why}");
                        intake.report.cut = true;
                        break;
                    }
                    Err(e) => return Err(refuse(e)),
                },
            };
            let end = match part {
                Part::Text { name, value } => {
                    form.text_field(&name, &value);
                    params.push(name, value);
                    PartEnd::Next
                }
                // Named like a chunk's file part but without a file name: a text field here.
                Part::File(file) if file.filename().is_none() => {
                    let name = file.field_name().to_string();
                    let value = file.into_text().map_err(refuse)?;
                    form.text_field(&name, &value);
                    params.push(name, value);
                    PartEnd::Next
                }
                Part::File(file) => self.receive_form_file(&mut form, *file, &mut intake)?,
            };
            if let PartEnd::Cut = end {
                intake.report.cut = true;
                break;
            }
        }
        // A chunk whose parameters come after its file part is neither a chunk (the file part
        // must be the last) nor a form upload.
        if let Some(dialect) = protocol::detect(&params, head) {
            return Err(refuse(MultipartError::Malformed(format!(
                "{} chunk parameters follow the file part, which must be the last",
                dialect.name()
            ))));
        }
        Ok(self.publish_form(head, &params, intake))
    }

    /// Streams one file part into the store (or past it, when it is refused) and reports it.
    fn receive_form_file(
        &self,
        form: &mut FormState,
        mut file: FilePart<'_>,
        intake: &mut Intake,
    ) -> Result<PartEnd, Failure> {
        let filename = file.filename().unwrap_or_default().to_string();
        let mut report = FileReport::new(file.field_name(), &filename, file.content_type());
        let mut staged = None;
        let ended = match form.file_part(&filename) {
            FileIntent::Skip(error) => {
                report.fail(error);
                file.finish()
            }
            FileIntent::Take {
                max,
                over,
                relative_path,
            } => match self.store.begin_file() {
                Err(e) => {
                    report.fail(FileError::NoTempFile);
                    self.server_failed(intake, &report, e);
                    file.finish()
                }
                Ok(mut incoming) => match incoming.receive(&mut file, max) {
                    Ok(Received::Whole(size)) => {
                        report.size = size;
                        staged = Some((incoming, relative_path));
                        file.finish()
                    }
                    // Cut off as soon as it passed the limit; the rest of the part is read
                    // past so that the files after it still arrive.
                    Ok(Received::TooLarge) => {
                        report.fail(over);
                        file.finish()
                    }
                    Err(StoreError::BodyRead(e)) => Err(file
                        .take_error()
                        .unwrap_or_else(|| MultipartError::Incomplete(e.to_string()))),
                    Err(e) => {
                        report.fail(FileError::CantWrite);
                        self.server_failed(intake, &report, e);
                        file.finish()
                    }
                },
            },
        };
        let end = match ended {
            Ok(()) => PartEnd::Next,
            Err(MultipartError::Incomplete(why)) => {
                log::warn!("form upload: the body ended inside {filename:?}: {why}");
                if report.error.is_none() {
                    report.fail(FileError::Partial);
                }
                staged = None;
                PartEnd::Cut
            }
            Err(e) => return Err(refuse(e)),
        };
        if let Some((file, relative_path)) = staged {
            intake.staged.push(Staged {
                index: intake.report.files.len(),
                file,
                relative_path,
            });
        }
        intake.report.files.push(report);
        Ok(end)
    }

    /// Publishes the files received whole, in the order sent, and answers with every file part.
    fn publish_form(&self, head: &Head, params: &Params, mut intake: Intake) -> Handled {
        for staged in std::mem::take(&mut intake.staged) {
            let Some(report) = intake.report.files.get_mut(staged.index) else {
                continue;
            };
            match self.completion_hook(head, params, report, &*staged.file) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    report.fail(FileError::Refused(reason));
                    continue;
                }
                Err(e) => {
                    report.fail(FileError::CantWrite);
                    let report = report.clone();
                    self.server_failed(&mut intake, &report, e);
                    continue;
                }
            }
            match staged
                .file
                .publish(&report.name, staged.relative_path.as_deref())
            {
                Ok(path) => {
                    log::info!(
                        "stored {path:?} ({} bytes) from form field {:?}",
                        report.size,
                        report.field
                    );
                    report.url = self.public_url(&path);
                    report.file = Some(path);
                }
                Err(e) => {
                    report.fail(FileError::CantWrite);
                    let report = report.clone();
                    self.server_failed(&mut intake, &report, e);
                }
            }
        }
        let report = &intake.report;
        for refused in report.files.iter().filter(|f| f.error.is_some()) {
            let error = refused.error.clone().unwrap_or(FileError::CantWrite);
            log::info!(
                "form file {:?} not stored: error {} ({})",
                refused.name,
                error.code(),
                error.message()
            );
        }
        // Nothing stored because of the server: the status says so (retry later, or a broken
        // installation). Once a file is stored, a retry would store it twice: 200 and the
        // per-file errors tell the page which ones failed.
        let failure = intake
            .server_failure
            .filter(|_| report.stored() == 0)
            .map(Error::Store);
        let status = failure.as_ref().map_or(200, Error::status);
        let html = form::prefers_html(head.header("accept"));
        let redirect = self.config.form_redirect.as_deref();
        let mut response = form::answer(report, status, html, redirect, head.header("referer"));
        if let Some(failure) = &failure {
            response = failure.with_retry_after(response);
        }
        Handled {
            response,
            summary: format!(
                "form upload: {} of {} file parts stored{}",
                report.stored(),
                report.files.len(),
                if report.cut { ", body cut short" } else { "" }
            ),
        }
    }

    /// Asks the completion hook (when one is set) about a file received whole, before it is
    /// published: `Ok(Err(reason))` when it refused (error 8, the file is not published), an
    /// error when it could not decide (the server's trouble: the file is not stored).
    fn completion_hook(
        &self,
        head: &Head,
        params: &Params,
        report: &FileReport,
        file: &dyn IncomingFile,
    ) -> Result<Result<(), String>, StoreError> {
        if self.config.on_complete.is_none() {
            return Ok(Ok(()));
        }
        let approve = self.approver(Finisher {
            client: "form",
            identifier: &report.field,
            user: head.remote_user.as_deref(),
            metadata: metadata_of(params),
        });
        let path = file.path()?;
        let assembled = AssembledFile {
            path: &path,
            name: &report.name,
            size: report.size,
        };
        Ok(match approve(&assembled)? {
            Approval::Publish { .. } => Ok(()),
            Approval::Reject { reason } => Err(reason),
        })
    }

    /// Notes a failure on the server's side and logs it with the directories involved.
    fn server_failed(&self, intake: &mut Intake, report: &FileReport, error: StoreError) {
        log::error!(
            "form file {:?}: {error} (upload dir {})",
            report.name,
            self.config.upload_dir.display()
        );
        intake.server_failure.get_or_insert(error);
    }
}

/// A body that is not a well-formed form, or too large: refused as a whole, nothing published.
fn refuse(error: MultipartError) -> Failure {
    match error {
        MultipartError::TooLarge(max) => Error::PostTooLarge { length: None, max },
        other => Error::Multipart(other),
    }
    .into()
}
