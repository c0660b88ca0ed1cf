//! Plain form uploads as browsers send them: a multipart body of text fields and file parts in
//! order (RFC 7578, file names escaped the WHATWG way), and readers for the per-file answer.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use super::{TestRequest, TestResponse, BOUNDARY};

/// One part of a form, in the order the browser sends it.
#[derive(Debug, Clone)]
pub enum FormPart {
    Text(String, String),
    File {
        field: String,
        filename: String,
        content_type: String,
        data: Vec<u8>,
    },
}

pub fn text(name: &str, value: &str) -> FormPart {
    FormPart::Text(name.into(), value.into())
}

pub fn file(field: &str, filename: &str, data: &[u8]) -> FormPart {
    FormPart::File {
        field: field.into(),
        filename: filename.into(),
        content_type: "application/octet-stream".into(),
        data: data.to_vec(),
    }
}

/// The Content-Type and body of a form post. Like a browser, only `"`, CR and LF are escaped in
/// names (as %22, %0D, %0A).
pub fn form_body(parts: &[FormPart]) -> (String, Vec<u8>) {
    let escape = |s: &str| {
        s.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut body = Vec::new();
    for part in parts {
        match part {
            FormPart::Text(name, value) => write!(
                body,
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                escape(name)
            )
            .unwrap(),
            FormPart::File {
                field,
                filename,
                content_type,
                data,
            } => {
                write!(
                    body,
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                    escape(field),
                    escape(filename)
                )
                .unwrap();
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A form POST with `parts` and no query string.
pub fn form_request(parts: &[FormPart]) -> TestRequest {
    let (content_type, body) = form_body(parts);
    TestRequest {
        method: "POST".into(),
        query: String::new(),
        content_type: Some(content_type),
        body,
        remote_user: None,
    }
}

/// The `files` entries of a form answer.
pub fn entries(response: &TestResponse) -> Vec<Value> {
    response.json()["files"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "no files in the answer: {}",
                String::from_utf8_lossy(&response.body)
            )
        })
        .clone()
}

/// The error code of each entry, in order.
pub fn codes(response: &TestResponse) -> Vec<u64> {
    entries(response)
        .iter()
        .map(|e| e["error"].as_u64().expect("numeric error"))
        .collect()
}

/// Nothing is left in the staging folder (every received file was published or removed).
pub fn staging_is_empty(upload_dir: &Path) -> bool {
    std::fs::read_dir(upload_dir.join(".resumable-staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}
