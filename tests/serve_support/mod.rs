//! The dev server as a test sees it: a real process on a free port, a minimal HTTP/1.1 client,
//! and the server's log.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::common::{binary, Dirs, Endpoint, Proc, TestRequest, TestResponse};

const SETTINGS: [&str; 6] = [
    "RESUMABLE_TEMP_DIR",
    "RESUMABLE_UPLOAD_DIR",
    "RESUMABLE_MAX_FILE_SIZE",
    "RESUMABLE_MAX_CHUNK_SIZE",
    "RESUMABLE_MISSING_CHUNK_STATUS",
    "RESUMABLE_LOG",
];

/// `resumable-cgi serve --listen 127.0.0.1:0` in a directory; killed by PID when dropped, so
/// a failing test leaves no server behind.
pub struct DevServer {
    proc: Proc,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    temp: PathBuf,
    uploads: PathBuf,
    log: Arc<Mutex<String>>,
    /// Kept so the scratch directory lives as long as the server.
    _dirs: Option<Dirs>,
}

impl DevServer {
    /// A server over fresh temp and upload dirs given through the RESUMABLE_* settings.
    pub fn start() -> DevServer {
        DevServer::start_with(&[])
    }

    /// Like [`DevServer::start`], with more settings (`RESUMABLE_MAX_FILE_SIZE`, ...).
    pub fn start_with(settings: &[(&str, &str)]) -> DevServer {
        let dirs = Dirs::new();
        let mut env = vec![
            ("RESUMABLE_TEMP_DIR".to_string(), dirs.temp.clone()),
            ("RESUMABLE_UPLOAD_DIR".to_string(), dirs.uploads.clone()),
        ];
        env.extend(
            settings
                .iter()
                .map(|(name, value)| (name.to_string(), PathBuf::from(value))),
        );
        let (root, temp, uploads) = (
            dirs.root.path().to_path_buf(),
            dirs.temp.clone(),
            dirs.uploads.clone(),
        );
        let mut server = DevServer::start_in(&root, &env, &temp, &uploads);
        server._dirs = Some(dirs);
        server
    }

    /// A server started in `dir` with only the given settings (the rest at their defaults).
    pub fn start_in(
        dir: &Path,
        env: &[(String, PathBuf)],
        temp: &Path,
        uploads: &Path,
    ) -> DevServer {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .current_dir(dir)
            .env_remove("GATEWAY_INTERFACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in SETTINGS {
            command.env_remove(name);
        }
        command.env("RESUMABLE_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut proc = Proc::spawn("resumable-cgi serve", &mut command).kill_on_drop();
        let stdout = proc.child().stdout.take().expect("stdout");
        let stderr = proc.child().stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.split("open ").nth(1) {
                        let _ = found.send(url.trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let mut server = DevServer {
            proc,
            addr: "127.0.0.1:1".parse().unwrap(),
            dir: dir.to_path_buf(),
            temp: temp.to_path_buf(),
            uploads: uploads.to_path_buf(),
            log,
            _dirs: None,
        };
        let url = match address.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => panic!("the server printed no URL; log:\n{}", server.log()),
        };
        server.addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("URL {url:?} names no address"));
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid as u32
    }

    /// Sends `signal` and waits (at most 15 s) for the process to end.
    pub fn stop_with(&mut self, signal: rustix::process::Signal) -> ExitStatus {
        assert!(self.proc.signal(signal), "signal the server");
        match self.proc.wait_timeout(Duration::from_secs(15)) {
            Some(status) => status,
            None => {
                self.proc.kill();
                panic!(
                    "the server did not stop on {signal:?}; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// One HTTP/1.1 request on a fresh connection.
    pub fn http(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TestResponse {
        http(self.addr, method, target, headers, body)
    }

    pub fn get(&self, target: &str) -> TestResponse {
        self.http("GET", target, &[], b"")
    }
}

impl Endpoint for DevServer {
    fn send(&self, request: &TestRequest) -> TestResponse {
        let target = if request.query.is_empty() {
            "/upload".to_string()
        } else {
            format!("/upload?{}", request.query)
        };
        let mut headers = Vec::new();
        if let Some(ct) = &request.content_type {
            headers.push(("Content-Type", ct.as_str()));
        }
        self.http(&request.method, &target, &headers, &request.body)
    }
    fn temp_dir(&self) -> &Path {
        &self.temp
    }
    fn upload_dir(&self) -> &Path {
        &self.uploads
    }
}

/// Writes the request exactly as given (no path normalisation, so traversal attempts reach
/// the server as typed) with a Content-Length body, and reads the answer to EOF.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TestResponse {
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Transfer-Encoding") && v.contains("chunked"));
    let mut stream = TcpStream::connect(addr).expect("connect to the dev server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !chunked && (!body.is_empty() || matches!(method, "POST" | "PUT")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if chunked {
        // Uneven pieces, as a streaming client would send them.
        for piece in body.chunks(70_001) {
            stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .unwrap();
            stream.write_all(piece).unwrap();
            stream.write_all(b"\r\n").unwrap();
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
    } else {
        // The server may answer (an error) before reading everything; that is fine.
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> TestResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let is_chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Transfer-Encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if head_only {
        Vec::new()
    } else if is_chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    TestResponse {
        status,
        headers,
        body,
    }
}

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
