//! blueimp jQuery-File-Upload 10 with `maxChunkSize`: each chunk is a byte range named by
//! `Content-Range: bytes a-b/total` and `Content-Disposition: attachment; filename="<encodeURI
//! name>"` (file part `files[]`, or a raw body); the resume recipe asks `GET ?file=<name>`; the
//! answers are `{"files":[…]}` with a `Range: 0-<last stored byte>` header the client reads.

use std::fmt;

use serde_json::json;

use super::params::{parse_decimal, Params, MAX_TEXT_PARAM};
use crate::escape::percent_decode;
use crate::request::{Head, Response};

/// The query parameter of the resume request (`GET ?file=<name>`).
pub const RESUME_PARAM: &str = "file";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlueimpError {
    ContentRange(String),
    /// No usable file name in `Content-Disposition`: it is what names the upload.
    Name(String),
}

impl fmt::Display for BlueimpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlueimpError::ContentRange(value) => write!(
                f,
                "Content-Range {value:?} is not `bytes <first>-<last>/<total>` within the total"
            ),
            BlueimpError::Name(why) => write!(f, "no file name in Content-Disposition: {why}"),
        }
    }
}

impl std::error::Error for BlueimpError {}

/// One chunk as the client described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeChunk {
    /// The file's name, decoded (it names the upload: blueimp sends no id).
    pub name: String,
    /// First byte of this chunk in the file.
    pub start: u64,
    /// Bytes in this chunk.
    pub len: u64,
    /// Size of the whole file.
    pub total: u64,
}

/// A chunk upload of this client: it is the only one that sends `Content-Range` on a request.
pub fn recognizes(head: &Head) -> bool {
    head.header("content-range").is_some()
}

/// The resume request of blueimp's documented recipe: a GET with `file` and nothing else a
/// chunk dialect would claim (the caller checks that).
pub fn resume_name(params: &Params) -> Option<String> {
    params
        .text(RESUME_PARAM, true)
        .ok()
        .flatten()
        .filter(|name| name.len() <= MAX_TEXT_PARAM)
}

/// The chunk a request carries, from its headers.
pub fn chunk(head: &Head) -> Result<RangeChunk, BlueimpError> {
    let range = head.header("content-range").unwrap_or_default();
    let (start, last, total) =
        parse_content_range(range).ok_or_else(|| BlueimpError::ContentRange(clip(range)))?;
    let name = disposition_name(head.header("content-disposition"))?;
    Ok(RangeChunk {
        name,
        start,
        len: last - start + 1,
        total,
    })
}

/// `bytes <first>-<last>/<total>` with first <= last < total, all strictly decimal.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let spec = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        parse_decimal(first.trim())?,
        parse_decimal(last.trim())?,
        parse_decimal(total.trim())?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

/// The `filename="…"` of `Content-Disposition`, percent-decoded as UTF-8 (the client writes it
/// with `encodeURI`).
fn disposition_name(value: Option<&str>) -> Result<String, BlueimpError> {
    let value = value.ok_or_else(|| BlueimpError::Name("the header is missing".into()))?;
    let quoted = value
        .split(';')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("filename="))
        .ok_or_else(|| BlueimpError::Name("no filename= in it".into()))?;
    let raw = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    let bytes = percent_decode(raw).ok_or_else(|| BlueimpError::Name("a bad % escape".into()))?;
    let name = String::from_utf8(bytes).map_err(|_| BlueimpError::Name("not UTF-8".into()))?;
    if name.is_empty() || name.len() > MAX_TEXT_PARAM {
        return Err(BlueimpError::Name(format!("{} bytes long", name.len())));
    }
    Ok(name)
}

fn clip(value: &str) -> String {
    value.chars().take(80).collect()
}

/// The answer to a stored chunk: the file's name and how many bytes are stored from its start,
/// with the `Range` header the client takes its next offset from.
pub fn stored(
    name: &str,
    stored: u64,
    complete: Option<&str>,
    data: Option<&serde_json::Value>,
) -> Response {
    let mut file = json!({"name": name, "size": stored});
    if let Some(published) = complete {
        file["name"] = json!(published.rsplit('/').next().unwrap_or(published));
        file["file"] = json!(published);
        file["complete"] = json!(true);
    }
    if let Some(data) = data {
        file["data"] = data.clone();
    }
    let response = Response::json(200, &json!({ "files": [file] }));
    let response = match stored.checked_sub(1) {
        Some(last) => response.with_header("Range", &format!("0-{last}")),
        None => response,
    };
    response.with_header("Cache-Control", "no-store")
}

/// The answer to a file the completion hook refused (it is gone): a 200 with the reason as
/// `files[0].error`, as blueimp's pages read every per-file error.
pub fn refused(name: &str, size: u64, reason: &str) -> Response {
    let file = json!({"name": name, "size": size, "error": reason});
    Response::json(200, &json!({ "files": [file] })).with_header("Cache-Control", "no-store")
}

/// The answer to the resume request: the bytes stored from the start (all of them, and the
/// published name, once the file is complete), or `null` when nothing of that name is stored.
pub fn resume(name: &str, stored: Option<u64>, published: Option<&str>) -> Response {
    let file = match (stored, published) {
        (Some(size), Some(published)) => {
            json!({"name": name, "size": size, "file": published, "complete": true})
        }
        (Some(size), None) => json!({"name": name, "size": size}),
        (None, _) => serde_json::Value::Null,
    };
    Response::json(200, &json!({ "file": file })).with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(range: &str, disposition: &str) -> Head {
        Head {
            headers: vec![
                ("content-range".into(), range.into()),
                ("content-disposition".into(), disposition.into()),
            ],
            ..Head::default()
        }
    }

    #[test]
    fn chunks_from_the_headers() {
        let c = chunk(&head(
            "bytes 10-19/25",
            "attachment; filename=\"%E6%97%A5%E6%9C%AC%20a.txt\"",
        ))
        .unwrap();
        assert_eq!(
            c,
            RangeChunk {
                name: "日本 a.txt".into(),
                start: 10,
                len: 10,
                total: 25
            }
        );
        for bad in [
            "bytes 10-9/25",
            "bytes 0-25/25",
            "bytes -1-3/25",
            "bytes 0-3",
            "0-3/25",
            "bytes 0x0-3/25",
            "bytes */25",
            "bytes 0-99999999999999999999/1",
        ] {
            assert!(
                matches!(
                    chunk(&head(bad, "attachment; filename=\"a\"")),
                    Err(BlueimpError::ContentRange(_))
                ),
                "{bad}"
            );
        }
        for bad in [
            "attachment",
            "attachment; filename=\"\"",
            "attachment; filename=\"%zz\"",
            "attachment; filename=\"%ff\"",
        ] {
            assert!(
                matches!(chunk(&head("bytes 0-1/2", bad)), Err(BlueimpError::Name(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_carry_the_next_offset() {
        let r = stored("a.txt", 10, None, None);
        assert_eq!(r.header("Range"), Some("0-9"));
        let body: serde_json::Value = serde_json::from_slice(r.bytes()).unwrap();
        assert_eq!(body["files"][0]["size"], 10);
        let done = stored("a.txt", 25, Some("dir/a (1).txt"), Some(&json!({"ok": 1})));
        let body: serde_json::Value = serde_json::from_slice(done.bytes()).unwrap();
        assert_eq!(body["files"][0]["name"], "a (1).txt");
        assert_eq!(body["files"][0]["complete"], true);
        assert_eq!(body["files"][0]["data"], json!({"ok": 1}));
        let refused: serde_json::Value =
            serde_json::from_slice(refused("a.txt", 25, "infected").bytes()).unwrap();
        assert_eq!(refused["files"][0]["error"], "infected");
        let answer = |stored, published| -> serde_json::Value {
            serde_json::from_slice(resume("a", stored, published).bytes()).unwrap()
        };
        assert!(answer(None, None)["file"].is_null());
        assert_eq!(answer(Some(7), None)["file"]["size"], 7);
        let done = answer(Some(9), Some("d/a (1)"));
        assert_eq!(done["file"]["size"], 9);
        assert_eq!(done["file"]["complete"], true);
    }
}
