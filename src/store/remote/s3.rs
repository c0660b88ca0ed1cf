//! Writing a finished file to an S3-compatible store with rust-s3 (blocking): created only if
//! absent (`If-None-Match: *`), streamed from the file in parts (a multipart upload; one PUT
//! for a file smaller than a part), and recoverable after a crash through the progress note.
//!
//! Settings: RESUMABLE_PUBLISH_URL names the bucket and key prefix (`s3://bucket/prefix`); the
//! endpoint, region and credentials come from the standard variables: AWS_ENDPOINT_URL_S3 or
//! AWS_ENDPOINT_URL (a non-AWS server), AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID +
//! AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), or else the profile in ~/.aws/credentials.
//! A custom endpoint is addressed path-style (`http://host:port/bucket/key`, what SeaweedFS,
//! MinIO and Ceph RGW serve) unless RESUMABLE_S3_VIRTUAL_HOSTED=1.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::serde_types::Part;
use s3::{Bucket, Region};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PublishError;
use crate::store::complete::Completion;
use crate::store::{fsutil, layout};

/// The S3 minimum for every part but the last.
const MIN_PART: u64 = 5 << 20;
/// The S3 maximum number of parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// How many `name (n).ext` keys are tried before giving up.
const MAX_KEY_ATTEMPTS: u32 = 1_000;
/// The object metadata that says which publish wrote an object.
const TOKEN_META: &str = "x-amz-meta-resumable-token";
const TOKEN_NAME: &str = "resumable-token";
const CONTENT_TYPE: &str = "application/octet-stream";
/// A single request may take this long (a part on a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// `s3://bucket/prefix`, parsed, and how to address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    /// Address a custom endpoint as `bucket.host` instead of `host/bucket`.
    pub virtual_hosted: bool,
}

impl S3Target {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str, virtual_hosted: bool) -> Result<S3Target, &'static str> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or("expected s3://bucket or s3://bucket/prefix")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err("the bucket name must be 3 to 63 lower-case letters, digits, '.' or '-'");
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
            return Err("the prefix must not contain '.', '..' or empty components");
        }
        Ok(S3Target {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            virtual_hosted,
        })
    }

    /// The object key of a file published as `path` (relative to the upload dir).
    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

impl fmt::Display for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What a publish in progress wrote down before talking to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    /// Random; stored in the object's metadata, so the object is recognised as this upload's.
    token: String,
    key: String,
    upload_id: Option<String>,
}

/// Writes `local` (the finished file of `done`) to the store; answers the object key.
pub(super) fn publish(
    target: &S3Target,
    dir: BorrowedFd<'_>,
    note_name: &str,
    local: &File,
    done: &Completion,
) -> Result<String, PublishError> {
    let bucket = connect(target)?;
    let fail = |op: &'static str| move |e: S3Error| unavailable(target, op, e);
    let local_fail = |op: &'static str| {
        move |e: io::Error| PublishError::Unavailable {
            url: target.to_string(),
            op,
            detail: e.to_string(),
        }
    };
    let earlier = read_note(dir, note_name).map_err(local_fail("reading the publishing note"))?;
    if let Some(note) = &earlier {
        // A publish of this upload was interrupted: finished after all, or to be cleaned up.
        if token_of(&bucket, &note.key).map_err(fail("looking for the object"))?
            == Some(note.token.clone())
        {
            return Ok(note.key.clone());
        }
        abort_unfinished(&bucket, note).map_err(fail("aborting an unfinished upload"))?;
    }
    let token = earlier.map_or_else(new_token, |note| note.token);
    let (folders, name) = match done.file.rsplit_once('/') {
        Some((folders, name)) => (format!("{folders}/"), name),
        None => (String::new(), done.file.as_str()),
    };
    for attempt in 0..MAX_KEY_ATTEMPTS {
        let key = target.key(&format!(
            "{folders}{}",
            layout::clash_candidate(name, attempt)
        ));
        match token_of(&bucket, &key).map_err(fail("looking for a free key"))? {
            Some(found) if found == token => return Ok(key),
            Some(_) => continue,
            None => {}
        }
        let mut note = Note {
            token: token.clone(),
            key: key.clone(),
            upload_id: None,
        };
        write_note(dir, note_name, &note).map_err(local_fail("writing the publishing note"))?;
        let written = if done.size < MIN_PART {
            put_small(&bucket, &key, &token, local, done.size)
        } else {
            put_multipart(&bucket, &key, &token, local, done.size, |id| {
                note.upload_id = Some(id.to_string());
                write_note(dir, note_name, &note)
            })
        };
        match written {
            Ok(true) => return Ok(key),
            // Someone else created that key first: the next name.
            Ok(false) => {
                log::info!("{key:?} was created by someone else meanwhile: trying the next name");
                continue;
            }
            Err(Failure::Store(op, e)) => return Err(unavailable(target, op, e)),
            Err(Failure::Local(op, e)) => return Err(local_fail(op)(e)),
        }
    }
    Err(PublishError::Unavailable {
        url: target.to_string(),
        op: "choosing a key",
        detail: format!("{MAX_KEY_ATTEMPTS} names like {name:?} are all taken"),
    })
}

enum Failure {
    Store(&'static str, S3Error),
    Local(&'static str, io::Error),
}

/// One PUT, created only if absent: `Ok(false)` when the key exists.
fn put_small(
    bucket: &Bucket,
    key: &str,
    token: &str,
    local: &File,
    size: u64,
) -> Result<bool, Failure> {
    let mut content = vec![0; size as usize];
    local
        .read_exact_at(&mut content, 0)
        .map_err(|e| Failure::Local("reading the finished file", e))?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::IF_NONE_MATCH,
        http::HeaderValue::from_static("*"),
    );
    headers.insert(TOKEN_META, header_value(token));
    match bucket.put_object_with_content_type_and_headers(
        key,
        &content,
        CONTENT_TYPE,
        Some(headers),
    ) {
        Ok(_) => Ok(true),
        Err(e) if status(&e) == Some(412) => Ok(false),
        Err(e) => Err(Failure::Store("writing the object", e)),
    }
}

/// A multipart upload read part by part from the file (one part in memory at a time),
/// completed only if the key is absent: `Ok(false)` when it exists. `started` records the
/// upload id before any part is sent. Any failure aborts the upload.
fn put_multipart(
    bucket: &Bucket,
    key: &str,
    token: &str,
    local: &File,
    size: u64,
    started: impl FnOnce(&str) -> io::Result<()>,
) -> Result<bool, Failure> {
    let mut meta = http::HeaderMap::new();
    meta.insert(TOKEN_META, header_value(token));
    let with_meta = bucket
        .with_extra_headers(meta)
        .map_err(|e| Failure::Store("starting a multipart upload", e))?;
    let id = with_meta
        .initiate_multipart_upload(key, CONTENT_TYPE)
        .map_err(|e| Failure::Store("starting a multipart upload", e))?
        .upload_id;
    let abort = |failure: Failure| {
        if let Err(e) = bucket.abort_upload(key, &id) {
            log::warn!("aborting the multipart upload of {key:?}: {e}");
        }
        failure
    };
    started(&id).map_err(|e| abort(Failure::Local("writing the publishing note", e)))?;
    let part_size = part_size(size);
    let mut buffer = vec![0; part_size.min(size) as usize];
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < size {
        let len = part_size.min(size - offset) as usize;
        local
            .read_exact_at(&mut buffer[..len], offset)
            .map_err(|e| abort(Failure::Local("reading the finished file", e)))?;
        let number = parts.len() as u32 + 1;
        // rust-s3 aborts the upload itself when the store refuses a part
        let part: Part = bucket
            .put_multipart_chunk(&buffer[..len], key, number, &id, CONTENT_TYPE)
            .map_err(|e| Failure::Store("sending a part", e))?;
        parts.push(part);
        offset += len as u64;
    }
    let mut condition = http::HeaderMap::new();
    condition.insert(
        http::header::IF_NONE_MATCH,
        http::HeaderValue::from_static("*"),
    );
    let conditional = bucket
        .with_extra_headers(condition)
        .map_err(|e| abort(Failure::Store("completing the upload", e)))?;
    match conditional.complete_multipart_upload(key, &id, parts) {
        Ok(_) => Ok(true),
        Err(e) if status(&e) == Some(412) => {
            abort(Failure::Store("completing the upload", e));
            Ok(false)
        }
        Err(e) => Err(abort(Failure::Store("completing the upload", e))),
    }
}

/// Parts of at least the S3 minimum, large enough that no file needs more than MAX_PARTS,
/// in whole MiB.
fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(MIN_PART)
}

/// The token in the metadata of the object at `key`; `None` when there is no object. An
/// object without one answers an empty token (never this upload's).
fn token_of(bucket: &Bucket, key: &str) -> Result<Option<String>, S3Error> {
    match bucket.head_object(key) {
        Ok((head, 200)) => Ok(Some(
            head.metadata
                .and_then(|m| m.get(TOKEN_NAME).cloned())
                .unwrap_or_default(),
        )),
        Ok((_, 404)) => Ok(None),
        Ok((_, code)) => Err(S3Error::HttpFailWithBody(code, String::new())),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Aborts the multipart upload an interrupted publish left: the one its note names, or, when
/// it died before noting the id, every unfinished upload of exactly its key.
fn abort_unfinished(bucket: &Bucket, note: &Note) -> Result<(), S3Error> {
    let ids = match &note.upload_id {
        Some(id) => vec![id.clone()],
        None => bucket
            .list_multiparts_uploads(Some(&note.key), None)?
            .into_iter()
            .flat_map(|page| page.uploads)
            .filter(|upload| upload.key == note.key)
            .map(|upload| upload.id)
            .collect(),
    };
    for id in ids {
        match bucket.abort_upload(&note.key, &id) {
            Ok(()) => log::info!("aborted the unfinished multipart upload of {:?}", note.key),
            // already gone: completed or aborted
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn status(error: &S3Error) -> Option<u16> {
    match error {
        S3Error::HttpFailWithBody(code, _) => Some(*code),
        _ => None,
    }
}

fn header_value(text: &str) -> http::HeaderValue {
    // tokens are hex digits: always a valid header value
    http::HeaderValue::from_str(text).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// A refusal that more time will not fix (bad credentials, no such bucket) is a configuration
/// error; anything else (unreachable, overloaded, timed out) may pass.
fn unavailable(target: &S3Target, op: &'static str, error: S3Error) -> PublishError {
    match status(&error) {
        Some(400 | 401 | 403 | 404) => PublishError::Misconfigured {
            url: target.to_string(),
            detail: format!("{op}: {}", short(&error)),
        },
        _ => PublishError::Unavailable {
            url: target.to_string(),
            op,
            detail: short(&error),
        },
    }
}

/// An error's text, without the whole XML body a store may return.
fn short(error: &S3Error) -> String {
    let text = error.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The bucket handle from the target and the AWS_* environment.
fn connect(target: &S3Target) -> Result<Bucket, PublishError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let misconfigured = |detail: String| PublishError::Misconfigured {
        url: target.to_string(),
        detail,
    };
    let region_name = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL"));
    let region = match &endpoint {
        Some(endpoint) => Region::Custom {
            region: region_name,
            endpoint: endpoint.trim_end_matches('/').to_string(),
        },
        None => region_name
            .parse()
            .map_err(|e| misconfigured(format!("region {region_name:?}: {e}")))?,
    };
    // From the environment or the shared credentials file only: never from an instance
    // metadata service, which this program has no business calling.
    let credentials = Credentials::from_env()
        .or_else(|_| Credentials::from_profile(env("AWS_PROFILE").as_deref()))
        .map_err(|e| {
            misconfigured(format!(
                "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {e}"
            ))
        })?;
    let mut bucket = *Bucket::new(&target.bucket, region, credentials)
        .map_err(|e| misconfigured(e.to_string()))?;
    if endpoint.is_some() && !target.virtual_hosted {
        bucket.set_path_style();
    }
    bucket.set_request_timeout(Some(REQUEST_TIMEOUT));
    Ok(bucket)
}

fn new_token() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.update(now.as_nanos().to_be_bytes());
    let mut random = [0u8; 16];
    if let Ok(mut source) = File::open("/dev/urandom") {
        let _ = source.read_exact(&mut random);
    }
    hasher.update(random);
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_note(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Note>> {
    let file = match fsutil::open_read(dir, name) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.take(64 * 1024).read_to_end(&mut text)?;
    // a damaged note is as good as none: its upload, if any, is found by key below
    Ok(serde_json::from_slice(&text).ok())
}

fn write_note(dir: BorrowedFd<'_>, name: &str, note: &Note) -> io::Result<()> {
    let temp = format!(".{name}.tmp");
    let mut file = fsutil::create_truncate(dir, &temp)?;
    file.write_all(&serde_json::to_vec(note).unwrap_or_default())?;
    file.sync_all()?;
    fsutil::rename_within(dir, &temp, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_bucket_and_prefix() {
        let t = S3Target::parse("s3://my-bucket/uploads/incoming/", false).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("my-bucket", "uploads/incoming")
        );
        assert_eq!(t.key("a/b.txt"), "uploads/incoming/a/b.txt");
        let bare = S3Target::parse("s3://my-bucket", false).unwrap();
        assert_eq!(bare.key("b.txt"), "b.txt");
        for bad in [
            "http://x/y",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b-ok/../x",
            "s3://b-ok/a//b",
        ] {
            assert!(S3Target::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_respect_the_minimum_and_the_count_limit() {
        assert_eq!(part_size(1), MIN_PART);
        assert_eq!(part_size(10 << 30), MIN_PART);
        let huge = 200u64 << 30;
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
        assert_eq!(part_size(huge) % (1 << 20), 0);
    }
}
