//! The suite's one HTTP/1.1 client: a request written exactly as given, on a connection of its
//! own, and the answer read back as a [`TestResponse`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{TestRequest, TestResponse};

/// One connection to a server. Every request on it asks the server to close it after answering.
pub struct HttpConn {
    stream: TcpStream,
    host: String,
}

impl HttpConn {
    /// Connects to `origin` (`http://host:port` or `host:port`); a read waits at most `timeout`,
    /// so a server that never answers fails the test instead of hanging it.
    pub fn open(origin: &str, timeout: Duration) -> HttpConn {
        let host = origin.strip_prefix("http://").unwrap_or(origin);
        let host = host.trim_end_matches('/').to_string();
        let stream = TcpStream::connect(&host).unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        stream.set_read_timeout(Some(timeout)).unwrap();
        HttpConn { stream, host }
    }

    /// The request line and `headers` as given (no normalisation of `target`, so traversal
    /// attempts reach the server as typed), with `Host`, `Connection: close` and, when given,
    /// `Content-Length`.
    pub fn write_head(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
    ) {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(length) = content_length {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        self.stream
            .write_all(head.as_bytes())
            .expect("write the request head");
    }

    /// Body bytes. An error means the server answered (and closed) before reading them all,
    /// which is an answer too.
    pub fn write_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// `parts` in the chunked transfer coding, in uneven pieces as a streaming client sends
    /// them, and the last chunk.
    pub fn write_chunked(&mut self, parts: &[&[u8]]) {
        for piece in parts.iter().flat_map(|part| part.chunks(70_001)) {
            self.stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .unwrap();
            self.stream.write_all(piece).unwrap();
            self.stream.write_all(b"\r\n").unwrap();
        }
        self.stream.write_all(b"0\r\n\r\n").unwrap();
    }

    /// The socket itself, for a test that breaks the connection on purpose.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads the answer (to its announced end, or until the server closes): none if the
    /// connection ended or the read timed out before a whole header block came.
    pub fn read_response(&mut self, head_only: bool) -> Option<TestResponse> {
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while !complete(&raw, head_only) {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        parse(&raw, head_only)
    }
}

/// One request on a fresh connection: the head, then the body (chunked when `headers` ask for
/// it, else with a Content-Length when there is a body or the method is POST or PUT) written
/// as far as the server reads it, then the answer, which must come.
pub fn request(
    origin: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[&[u8]],
    timeout: Duration,
) -> TestResponse {
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Transfer-Encoding") && v.contains("chunked"));
    let length: usize = body.iter().map(|part| part.len()).sum();
    let mut conn = HttpConn::open(origin, timeout);
    let content_length =
        (!chunked && (length > 0 || matches!(method, "POST" | "PUT"))).then_some(length as u64);
    conn.write_head(method, target, headers, content_length);
    if chunked {
        conn.write_chunked(body);
    } else {
        for part in body {
            if conn.write_body(part).is_err() {
                break;
            }
        }
    }
    conn.read_response(method == "HEAD")
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {target} from {origin}"))
}

/// `request` sent to the upload URL `path` (HTTP has no form for its REMOTE_USER).
pub fn send(origin: &str, path: &str, request: &TestRequest, timeout: Duration) -> TestResponse {
    let content_type = request
        .content_type
        .as_deref()
        .map(|ct| ("Content-Type", ct));
    self::request(
        origin,
        &request.method,
        &target(path, request),
        content_type.as_slice(),
        &[&request.body],
        timeout,
    )
}

/// The request target for `request` at `path`: the path and the request's query.
pub fn target(path: &str, request: &TestRequest) -> String {
    if request.query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", request.query)
    }
}

/// The whole answer is in `raw`: its head, and as much body as its Content-Length says.
/// Without one (a chunked body, say), the answer ends when the server closes.
fn complete(raw: &[u8], head_only: bool) -> bool {
    let Some((head, rest)) = split_head(raw) else {
        return false;
    };
    if head_only {
        return true;
    }
    header_lines(&head)
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .is_some_and(|length| rest.len() >= length)
}

fn parse(raw: &[u8], head_only: bool) -> Option<TestResponse> {
    let (head, rest) = split_head(raw)?;
    let status_line = head.split("\r\n").next()?;
    if !status_line.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = header_lines(&head);
    let body = if head_only {
        Vec::new()
    } else if is_chunked(&headers) {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    Some(TestResponse {
        status,
        headers,
        body,
    })
}

/// The header block (status line included) and what follows it.
fn split_head(raw: &[u8]) -> Option<(String, &[u8])> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..split]).into_owned(),
        &raw[split + 4..],
    ))
}

fn header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Transfer-Encoding") && v.to_ascii_lowercase().contains("chunked")
    })
}

/// The body in `rest`, in the chunked transfer coding.
fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        rest = &rest[end + 2..];
        if size == 0 || rest.len() < size {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
}

/// Only the headers, with a Content-Length over the limit and no body: the web server must refuse
/// from the header alone. 0: no answer within 3 s.
pub fn announced_only(origin: &str, path: &str, length: u64) -> u16 {
    let mut conn = HttpConn::open(origin, Duration::from_secs(3));
    conn.write_head(
        "POST",
        path,
        &[("Content-Type", "application/octet-stream")],
        Some(length),
    );
    conn.read_response(false).map_or(0, |answer| answer.status)
}
