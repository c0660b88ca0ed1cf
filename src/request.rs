//! The transport-neutral request and response that every transport converts to and from.

use std::fs::File;
use std::io::{self, Read, Write};

/// The HTTP methods the upload endpoint distinguishes; anything else is kept by name so the
/// service can answer 405 with it in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
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
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
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
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        }
    }
}

/// Everything about a request except its body: what the web server passed as CGI variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The raw query string, still percent-encoded (CGI `QUERY_STRING`).
    pub query: String,
    pub content_type: Option<String>,
    /// `None` when the transport does not know it (HTTP/1.1 chunked bodies in the dev server)
    /// or the web server sent a malformed one.
    pub content_length: Option<u64>,
    /// The authenticated user, if the web server set one; uploads are scoped by it.
    pub remote_user: Option<String>,
    /// Request headers as the web server passed them (`HTTP_*`), names lower-case with `-`.
    pub headers: Vec<(String, String)>,
    /// The path after the script's own (`/<id>` for a tus upload URL).
    pub path_info: Option<String>,
    /// The script's own URL path (`/cgi-bin/upload`).
    pub script_name: String,
    pub request_uri: Option<String>,
    /// Whether the client reached the web server over TLS (CGI `HTTPS=on`).
    pub https: bool,
    pub server_name: Option<String>,
    pub server_port: Option<String>,
}

impl Default for Head {
    fn default() -> Head {
        Head {
            method: Method::Get,
            query: String::new(),
            content_type: None,
            content_length: Some(0),
            remote_user: None,
            headers: Vec::new(),
            path_info: None,
            script_name: String::new(),
            request_uri: None,
            https: false,
            server_name: None,
            server_port: None,
        }
    }
}

impl Head {
    /// Builds the head from CGI-style variables (RFC 3875 meta-variables), as a CGI process
    /// finds them in its environment and a FastCGI worker in its PARAMS. `vars` yields every
    /// variable; values that were not valid UTF-8 arrive with replacement characters.
    pub fn from_cgi_vars<I>(vars: I) -> Head
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut head = Head::default();
        let mut method = None;
        for (name, value) in vars {
            // RFC 3875 4.1: a variable that is set but empty is the same as one not set.
            if value.is_empty() {
                continue;
            }
            match name.as_str() {
                "REQUEST_METHOD" => method = Some(value),
                "QUERY_STRING" => head.query = value,
                "CONTENT_TYPE" => head.content_type = Some(value),
                // A malformed length is "unknown": the service then bounds the body itself.
                "CONTENT_LENGTH" => head.content_length = value.trim().parse::<u64>().ok(),
                "REMOTE_USER" => head.remote_user = Some(value),
                "PATH_INFO" => head.path_info = Some(value),
                "SCRIPT_NAME" => head.script_name = value,
                "REQUEST_URI" => head.request_uri = Some(value),
                "HTTPS" => head.https = value.eq_ignore_ascii_case("on") || value == "1",
                "SERVER_NAME" => head.server_name = Some(value),
                "SERVER_PORT" => head.server_port = Some(value),
                _ => {
                    if let Some(header) = name.strip_prefix("HTTP_") {
                        head.headers
                            .push((header.to_ascii_lowercase().replace('_', "-"), value));
                    }
                }
            }
        }
        head.method = Method::parse(method.as_deref().unwrap_or("GET"));
        head
    }

    /// A head with only these method and headers (names as the client wrote them).
    pub fn with_headers(method: Method, headers: &[(&str, &str)]) -> Head {
        Head {
            method,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
            ..Head::default()
        }
    }

    /// The value of a request header (case-insensitive name); the first one when repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// `scheme://host[:port]` of the endpoint, for absolute URLs in answers. The `Host` header
    /// wins over `SERVER_NAME` because it is what the client used.
    pub fn origin(&self) -> Option<String> {
        let scheme = if self.https { "https" } else { "http" };
        if let Some(host) = self.header("host") {
            return Some(format!("{scheme}://{host}"));
        }
        let name = self.server_name.as_deref()?;
        match self.server_port.as_deref() {
            None | Some("80") if !self.https => Some(format!("{scheme}://{name}")),
            Some("443") if self.https => Some(format!("{scheme}://{name}")),
            None => Some(format!("{scheme}://{name}")),
            Some(port) => Some(format!("{scheme}://{name}:{port}")),
        }
    }
}

/// One upload-endpoint request. The body is a stream: nothing here ever holds it in memory.
pub struct Request<'a> {
    pub head: Head,
    /// Exactly the request body: transports stop it at `CONTENT_LENGTH` when known.
    pub body: &'a mut (dyn Read + Send),
}

/// What a response carries after its headers.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A file streamed from disk (the dev server's downloads), `len` bytes of it.
    File {
        file: File,
        len: u64,
    },
}

/// What the service answers; transports serialise it in their own framing.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut bytes = value.to_string().into_bytes();
        bytes.push(b'\n');
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_bytes(bytes)
    }

    pub fn html(status: u16, page: String) -> Response {
        Response::new(status)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_bytes(page.into_bytes())
    }

    pub fn with_bytes(mut self, bytes: Vec<u8>) -> Response {
        self.body = Body::Bytes(bytes);
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body when it is in memory (every answer but a download).
    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(bytes) => bytes,
            Body::File { .. } => &[],
        }
    }

    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Writes the response as a CGI program does (RFC 3875 6.2): a `Status:` header, the other
    /// headers, a blank line, the body. FastCGI's STDOUT stream carries exactly the same bytes.
    pub fn write_cgi(self, out: &mut dyn Write) -> io::Result<()> {
        let mut head = format!("Status: {} {}\r\n", self.status, reason_phrase(self.status));
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if self.header("Content-Type").is_none() && self.body_len() > 0 {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        match self.body {
            Body::Bytes(bytes) => out.write_all(&bytes)?,
            Body::File { file, len } => {
                io::copy(&mut file.take(len), out)?;
            }
        }
        out.flush()
    }
}

/// The first header of that name, compared without case as HTTP does.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        423 => "Locked",
        460 => "Checksum Mismatch",
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

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

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

    #[test]
    fn cgi_vars_become_a_head() {
        let head = Head::from_cgi_vars(vars(&[
            ("REQUEST_METHOD", "PATCH"),
            ("QUERY_STRING", "a=1"),
            ("CONTENT_LENGTH", "12"),
            ("CONTENT_TYPE", "application/offset+octet-stream"),
            ("HTTP_TUS_RESUMABLE", "1.0.0"),
            ("HTTP_UPLOAD_OFFSET", "0"),
            ("HTTP_HOST", "example.com:8443"),
            ("PATH_INFO", "/abc"),
            ("SCRIPT_NAME", "/cgi-bin/upload"),
            ("HTTPS", "on"),
            ("REMOTE_USER", ""),
        ]));
        assert_eq!(head.method, Method::Patch);
        assert_eq!(head.query, "a=1");
        assert_eq!(head.content_length, Some(12));
        assert_eq!(head.header("Tus-Resumable"), Some("1.0.0"));
        assert_eq!(head.header("upload-offset"), Some("0"));
        assert_eq!(head.path_info.as_deref(), Some("/abc"));
        assert_eq!(head.remote_user, None, "empty means unset");
        assert_eq!(head.origin().as_deref(), Some("https://example.com:8443"));
    }

    #[test]
    fn missing_and_malformed_lengths() {
        assert_eq!(Head::from_cgi_vars(vars(&[])).content_length, Some(0));
        let head = Head::from_cgi_vars(vars(&[("CONTENT_LENGTH", "12x")]));
        assert_eq!(head.content_length, None);
        assert_eq!(head.method, Method::Get);
    }

    #[test]
    fn origin_from_server_name_and_port() {
        let head = Head::from_cgi_vars(vars(&[("SERVER_NAME", "h"), ("SERVER_PORT", "8080")]));
        assert_eq!(head.origin().as_deref(), Some("http://h:8080"));
        let head = Head::from_cgi_vars(vars(&[("SERVER_NAME", "h"), ("SERVER_PORT", "80")]));
        assert_eq!(head.origin().as_deref(), Some("http://h"));
    }
}
