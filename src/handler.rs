//! The only place where protocol and store meet: one Request in, one Response out.

use serde_json::json;

use crate::config::Config;
use crate::error::Error;
use crate::protocol::multipart::{self, IntakeError};
use crate::protocol::{ChunkRequest, Params};
use crate::request::{Method, Request, Response};
use crate::store::{Completion, PendingChunk, Progress, Store, UploadKey};

/// Handles one request with the settings `lookup` answers (the process environment, or
/// FastCGI params over it). Never panics on request input; every failure becomes a response
/// and one log line.
pub fn handle(lookup: &dyn Fn(&str) -> Option<Vec<u8>>, request: Request) -> Response {
    let method = request.method.clone();
    let config = Config::from_lookup(lookup);
    let outcome = config
        .clone()
        .map_err(Error::from)
        .and_then(|config| route(&config, request));
    match outcome {
        Ok((response, what)) => {
            log::info!("{} {} -> {}", method.as_str(), what, response.status);
            response
        }
        Err(error) => {
            let response = error.to_response();
            if response.status >= 500 {
                // An operator reading the error log needs to know which directories were meant:
                // the OS error ("Read-only file system") alone does not say.
                let dirs = match (&error, &config) {
                    (Error::Store(_), Ok(c)) => format!(
                        " (temp dir {}, upload dir {})",
                        c.temp_dir.display(),
                        c.upload_dir.display()
                    ),
                    _ => String::new(),
                };
                log::error!("{} -> {}: {error}{dirs}", method.as_str(), response.status);
            } else {
                log::warn!("{} -> {}: {error}", method.as_str(), response.status);
            }
            response
        }
    }
}

/// A response and a short description of what was done, for the log line.
type Handled = (Response, String);

fn route(config: &Config, request: Request) -> Result<Handled, Error> {
    match request.method {
        Method::Get | Method::Head => {
            test_chunk(config, &Params::from_query(&request.query), &request)
        }
        Method::Post | Method::Put => receive(config, request),
        Method::Options => Ok((
            Response::new(204).with_header("Allow", "GET, HEAD, POST, PUT, OPTIONS"),
            "options".into(),
        )),
        Method::Other(name) => Err(Error::MethodNotAllowed(name)),
    }
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

fn check_policy(config: &Config, chunk: &ChunkRequest) -> Result<(), Error> {
    if chunk.geometry.total_size > config.max_file_size {
        return Err(Error::FileTooLarge {
            total_size: chunk.geometry.total_size,
            max: config.max_file_size,
        });
    }
    if chunk.geometry.chunk_size > config.max_chunk_size {
        return Err(Error::ChunkTooLarge {
            chunk_size: chunk.geometry.chunk_size,
            max: config.max_chunk_size,
        });
    }
    Ok(())
}

fn describe(chunk: &ChunkRequest, action: &str) -> String {
    format!(
        "{} {action} chunk {} ({} bytes at {}) of {:?} id={:?}",
        chunk.dialect.as_str(),
        chunk.geometry.number,
        chunk.geometry.size,
        chunk.geometry.start,
        chunk.filename,
        chunk.identifier
    )
}

/// The test request (testChunks): 200 when the chunk is stored with its right size or the
/// upload is complete, else the configured "missing" status (204).
fn test_chunk(config: &Config, params: &Params, request: &Request) -> Result<Handled, Error> {
    let chunk = ChunkRequest::from_params(params)?;
    check_policy(config, &chunk)?;
    let store = Store::new(&config.temp_dir, &config.upload_dir);
    let key = upload_key(&chunk, request.remote_user.as_deref());
    if let Some(done) = store.completion(&key)? {
        // A process killed between writing the record and removing the parts leaves them
        // behind; the test of the last chunk (what a resuming client sends last) finishes that
        // cleanup. Best effort: the answer does not depend on it.
        if chunk.geometry.is_last() {
            if let Err(e) = store.complete_if_covered(&key) {
                log::warn!("finishing the cleanup of a completed upload: {e}");
            }
        }
        return Ok((
            completed_response(&done, false),
            describe(&chunk, "test (complete)"),
        ));
    }
    let geometry = chunk.geometry;
    if !store.has_chunk(&key, geometry.number, geometry.size)? {
        let mut response = Response::new(config.missing_chunk_status);
        if config.missing_chunk_status != 204 {
            response = Response::json(
                config.missing_chunk_status,
                &json!({"success": false, "present": false, "chunk": geometry.number}),
            );
        }
        return Ok((no_store(response), describe(&chunk, "test (missing)")));
    }
    // The last chunk is present: if the file is covered but was never assembled (the request
    // that should have done it failed, e.g. on a full disk), complete it now, since the client
    // will not upload anything again.
    if geometry.is_last() {
        if let Progress::Completed(done) | Progress::AlreadyComplete(done) =
            store.complete_if_covered(&key)?
        {
            return Ok((
                completed_response(&done, true),
                describe(&chunk, "test (completed now)"),
            ));
        }
    }
    let response = Response::json(
        200,
        &json!({"success": true, "present": true, "complete": false, "chunk": geometry.number}),
    );
    Ok((no_store(response), describe(&chunk, "test (present)")))
}

/// A chunk upload: multipart (fields + `file` part) or a raw body (octet mode).
fn receive(config: &Config, mut request: Request) -> Result<Handled, Error> {
    if let Some(length) = request.content_length {
        let max = config.max_body_size();
        if length > max {
            return Err(Error::BodyTooLarge { length, max });
        }
    }
    let mut params = Params::from_query(&request.query);
    let store = Store::new(&config.temp_dir, &config.upload_dir);
    let user = request.remote_user.clone();
    if multipart::is_multipart(request.content_type.as_deref()) {
        let content_type = request.content_type.clone().unwrap_or_default();
        let received = multipart::read_multipart(
            request.body,
            &content_type,
            config.max_body_size(),
            &mut params,
            |params, file| -> Result<(ChunkRequest, PendingChunk), Error> {
                let chunk = ChunkRequest::from_params(params)?;
                check_policy(config, &chunk)?;
                let key = upload_key(&chunk, user.as_deref());
                let mut pending = store.begin_chunk(&key, chunk.geometry.number)?;
                pending.write_from(file, chunk.geometry.size)?;
                Ok((chunk, pending))
            },
        );
        match received {
            // flow.js with testMethod POST: the params in a multipart body, no file part.
            Ok(None) => {
                let (response, what) = test_chunk(config, &params, &request)?;
                Ok((response, format!("{what} (POST)")))
            }
            Ok(Some((chunk, pending))) => commit(&store, &chunk, pending, user.as_deref()),
            Err(IntakeError::Multipart(e)) => Err(Error::Multipart(e)),
            Err(IntakeError::File(e)) => Err(e),
        }
    } else {
        let chunk = ChunkRequest::from_params(&params)?;
        check_policy(config, &chunk)?;
        let key = upload_key(&chunk, user.as_deref());
        let mut pending = store.begin_chunk(&key, chunk.geometry.number)?;
        pending.write_from(&mut request.body, chunk.geometry.size)?;
        commit(&store, &chunk, pending, user.as_deref())
    }
}

fn commit(
    store: &Store,
    chunk: &ChunkRequest,
    pending: PendingChunk,
    user: Option<&str>,
) -> Result<Handled, Error> {
    let key = upload_key(chunk, user);
    let handled = match store.commit_chunk(&key, pending)? {
        Progress::Incomplete => (
            Response::json(
                200,
                &json!({"success": true, "complete": false, "chunk": chunk.geometry.number}),
            ),
            describe(chunk, "stored"),
        ),
        Progress::Completed(done) => {
            log::info!("completed {:?} ({} bytes)", done.file, done.size);
            (
                completed_response(&done, true),
                describe(chunk, "stored, completed"),
            )
        }
        Progress::AlreadyComplete(done) => (
            completed_response(&done, false),
            describe(chunk, "ignored (already complete)"),
        ),
    };
    Ok((no_store(handled.0), handled.1))
}

/// The answer for a finished upload. Every request that touches it gets this body, because the
/// clients hand the body of whichever request finished last to the page (protocol.md 3.5).
fn completed_response(done: &Completion, just_now: bool) -> Response {
    no_store(Response::json(
        200,
        &json!({
            "success": true,
            "complete": true,
            "file": done.file,
            "size": done.size,
            "completedNow": just_now,
        }),
    ))
}

/// Test answers change as chunks arrive: no cache may keep them.
fn no_store(response: Response) -> Response {
    if response.header("Cache-Control").is_some() {
        return response;
    }
    response.with_header("Cache-Control", "no-store")
}
