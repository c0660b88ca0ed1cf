//! The transport-neutral request and response that every transport converts to and from.

use std::io::{self, Read, Write};

/// The HTTP methods the upload endpoint distinguishes; anything else is kept by name so the
/// handler can answer 405 with it in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Options,
    Other(String),
}

impl Method {
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        }
    }
}

/// One upload-endpoint request. The body is a stream: nothing here ever holds it in memory.
pub struct Request<'a> {
    pub method: Method,
    /// The raw query string, still percent-encoded (CGI `QUERY_STRING`).
    pub query: String,
    pub content_type: Option<String>,
    /// `None` when the transport does not know it (HTTP/1.1 chunked bodies in the dev server).
    pub content_length: Option<u64>,
    /// The authenticated user, if the web server set one; uploads are scoped by it.
    pub remote_user: Option<String>,
    pub body: &'a mut (dyn Read + Send),
}

/// What the handler answers; transports serialise it in their own framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut response = Response::new(status);
        response.body = value.to_string().into_bytes();
        response.body.push(b'\n');
        response
            .headers
            .push(("Content-Type".into(), "application/json".into()));
        response
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the response as a CGI program does (RFC 3875 6.2): a `Status:` header, the other
    /// headers, a blank line, the body. FastCGI's STDOUT stream carries exactly the same bytes.
    pub fn write_cgi(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut head = format!("Status: {} {}\r\n", self.status, reason_phrase(self.status));
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if self.header("Content-Type").is_none() && !self.body.is_empty() {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_has_status_headers_and_body() {
        let response = Response::json(200, &serde_json::json!({"success": true}));
        let mut out = Vec::new();
        response.write_cgi(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n"));
        assert!(text.ends_with("{\"success\":true}\n"));
    }

    #[test]
    fn empty_204_has_no_content_type() {
        let mut out = Vec::new();
        Response::new(204).write_cgi(&mut out).unwrap();
        assert_eq!(out, b"Status: 204 No Content\r\n\r\n");
    }
}
