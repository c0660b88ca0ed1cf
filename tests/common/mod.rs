//! Shared test support: a transport-neutral request/response, the CGI runner, client
//! emulation (resumable.js, flow.js, octet) and the scenario suite every transport runs.
#![allow(dead_code)]

pub mod dialects;
pub mod fastcgi_client;
pub mod forms;
pub mod http;
pub mod process;
pub mod scenarios;
pub mod scratch;
pub mod sha256;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use process::Proc;
pub use scratch::Scratch;
#[allow(unused_imports)] // not every test crate hashes files
pub use sha256::{sha256_file, sha256_hex};

/// One HTTP-level request to the upload endpoint.
#[derive(Debug, Clone, Default)]
pub struct TestRequest {
    pub method: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub remote_user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a CGI response (`Status:` header, headers, blank line, body).
    pub fn from_cgi(raw: &[u8]) -> TestResponse {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("CGI output has a header block");
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut status = 200;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':').expect("header line");
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("Status") {
                status = value[..3].parse().expect("numeric status");
            }
            headers.push((name.to_string(), value));
        }
        TestResponse {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }
}

/// Something that answers upload requests: a CGI process, a FastCGI worker, a dev server.
pub trait Endpoint {
    fn send(&self, request: &TestRequest) -> TestResponse;
    fn temp_dir(&self) -> &Path;
    fn upload_dir(&self) -> &Path;
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_resumable-cgi"))
}

/// A fresh temp dir and upload dir in one scratch directory.
pub struct Dirs {
    pub root: Scratch,
    pub temp: PathBuf,
    pub uploads: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = Scratch::for_this_test();
        let temp = root.path().join("temp");
        let uploads = root.path().join("uploads");
        std::fs::create_dir(&temp).unwrap();
        std::fs::create_dir(&uploads).unwrap();
        Dirs {
            root,
            temp,
            uploads,
        }
    }

    /// A scratch directory of its own (for a worker's socket and log) over `other`'s temp and
    /// upload dirs, so that several processes share one store.
    pub fn sharing(other: &Dirs) -> Dirs {
        Dirs {
            root: Scratch::for_this_test(),
            temp: other.temp.clone(),
            uploads: other.uploads.clone(),
        }
    }
}

/// Runs the binary as a CGI program, once per request.
pub struct Cgi {
    pub dirs: Dirs,
    /// Extra environment (RESUMABLE_* settings) for every request.
    pub env: Vec<(String, String)>,
}

/// What one CGI run produced.
pub struct CgiRun {
    pub response: TestResponse,
    pub exit_code: Option<i32>,
    pub stderr: String,
}

impl Cgi {
    pub fn new() -> Cgi {
        Cgi {
            dirs: Dirs::new(),
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Cgi {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn command(&self, request: &TestRequest) -> Command {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .current_dir(self.dirs.root.path())
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", &request.method)
            .env("QUERY_STRING", &request.query)
            .env("CONTENT_LENGTH", request.body.len().to_string())
            .env("RESUMABLE_TEMP_DIR", &self.dirs.temp)
            .env("RESUMABLE_UPLOAD_DIR", &self.dirs.uploads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ct) = &request.content_type {
            command.env("CONTENT_TYPE", ct);
        }
        if let Some(user) = &request.remote_user {
            command.env("REMOTE_USER", user);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    pub fn run(&self, request: &TestRequest) -> CgiRun {
        Cgi::run_command(self.command(request), &request.body)
    }

    /// Runs a prepared CGI command with `body` on its stdin.
    pub fn run_command(mut command: Command, body: &[u8]) -> CgiRun {
        let mut child = command.spawn().expect("start the CGI binary");
        let mut stdin = child.stdin.take().expect("stdin");
        let body = body.to_vec();
        // A writer thread: the program may answer (and exit) before reading the whole body.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output().expect("CGI output");
        let _ = writer.join();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !stderr.contains("panicked"),
            "the CGI program panicked: {stderr}"
        );
        CgiRun {
            response: TestResponse::from_cgi(&output.stdout),
            exit_code: output.status.code(),
            stderr,
        }
    }
}

impl Endpoint for Cgi {
    fn send(&self, request: &TestRequest) -> TestResponse {
        let run = self.run(request);
        assert_eq!(
            run.exit_code,
            Some(0),
            "CGI exit status; stderr: {}",
            run.stderr
        );
        run.response
    }
    fn temp_dir(&self) -> &Path {
        &self.dirs.temp
    }
    fn upload_dir(&self) -> &Path {
        &self.dirs.uploads
    }
}

/// Which client's wire format to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// resumable.js 1.1.0 multipart: params in the query string *and* the form.
    Resumable,
    /// resumable.js octet mode: params in the query, raw body.
    ResumableOctet,
    /// flow.js 2.14.1 multipart: params only in the form.
    Flow,
    /// flow.js octet mode, PUT, the body typed with the file's MIME type.
    FlowOctet,
    /// simple-uploader.js: unprefixed names, multipart.
    Unprefixed,
}

pub const ALL_CLIENTS: [Client; 5] = [
    Client::Resumable,
    Client::ResumableOctet,
    Client::Flow,
    Client::FlowOctet,
    Client::Unprefixed,
];

/// One file being uploaded: its bytes, identity and chunking.
#[derive(Debug, Clone)]
pub struct Upload {
    pub client: Client,
    pub data: Vec<u8>,
    pub identifier: String,
    pub filename: String,
    pub relative_path: String,
    pub chunk_size: u64,
    /// ceil mode (`forceChunkSize: true`) instead of the default floor mode.
    pub force_chunk_size: bool,
    pub remote_user: Option<String>,
}

impl Upload {
    pub fn new(client: Client, filename: &str, data: Vec<u8>, chunk_size: u64) -> Upload {
        let clean: String = filename
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        Upload {
            client,
            identifier: format!("{}-{}", data.len(), clean),
            filename: filename.to_string(),
            relative_path: filename.to_string(),
            data,
            chunk_size,
            force_chunk_size: false,
            remote_user: None,
        }
    }

    /// The chunk sizes the client would send (resumable.js/flow.js geometry).
    pub fn chunk_sizes(&self) -> Vec<u64> {
        let total = self.data.len() as u64;
        let c = self.chunk_size;
        let count = if self.force_chunk_size {
            total.div_ceil(c)
        } else {
            total / c
        }
        .max(1);
        (0..count)
            .map(|offset| {
                let start = offset * c;
                let mut end = total.min((offset + 1) * c);
                if total - end < c && !self.force_chunk_size {
                    end = total;
                }
                end - start
            })
            .collect()
    }

    pub fn chunk_count(&self) -> u64 {
        self.chunk_sizes().len() as u64
    }

    fn params(&self, number: u64) -> Vec<(String, String)> {
        let sizes = self.chunk_sizes();
        let current = sizes[(number - 1) as usize];
        let (prefix, lower_first) = match self.client {
            Client::Resumable | Client::ResumableOctet => ("resumable", false),
            Client::Flow | Client::FlowOctet => ("flow", false),
            Client::Unprefixed => ("", true),
        };
        let name = |field: &str| {
            if lower_first {
                let mut c = field.chars();
                let first = c.next().unwrap().to_ascii_lowercase();
                format!("{first}{}", c.as_str())
            } else {
                format!("{prefix}{field}")
            }
        };
        let mut params = vec![
            (name("ChunkNumber"), number.to_string()),
            (name("ChunkSize"), self.chunk_size.to_string()),
            (name("CurrentChunkSize"), current.to_string()),
            (name("TotalSize"), self.data.len().to_string()),
        ];
        if matches!(self.client, Client::Resumable | Client::ResumableOctet) {
            params.push((name("Type"), "application/octet-stream".into()));
        }
        params.extend([
            (name("Identifier"), self.identifier.clone()),
            (name("Filename"), self.filename.clone()),
            (name("RelativePath"), self.relative_path.clone()),
            (name("TotalChunks"), sizes.len().to_string()),
        ]);
        params
    }

    pub fn chunk_bytes(&self, number: u64) -> &[u8] {
        let start = ((number - 1) * self.chunk_size) as usize;
        let size = self.chunk_sizes()[(number - 1) as usize] as usize;
        &self.data[start..start + size]
    }

    /// The test request (testChunks) for chunk `number`: GET, params in the query.
    pub fn test_request(&self, number: u64) -> TestRequest {
        TestRequest {
            method: "GET".into(),
            query: encode_query(&self.params(number)),
            content_type: None,
            body: Vec::new(),
            remote_user: self.remote_user.clone(),
        }
    }

    /// The upload request for chunk `number`, as this client sends it.
    pub fn chunk_request(&self, number: u64) -> TestRequest {
        self.chunk_request_with_body(number, self.chunk_bytes(number))
    }

    pub fn chunk_request_with_body(&self, number: u64, bytes: &[u8]) -> TestRequest {
        let params = self.params(number);
        let query = encode_query(&params);
        let (method, query, content_type, body) = match self.client {
            Client::Resumable => {
                let (ct, body) = multipart(&params, bytes, &self.filename);
                ("POST", query, Some(ct), body)
            }
            Client::Flow | Client::Unprefixed => {
                let (ct, body) = multipart(&params, bytes, &self.filename);
                ("POST", String::new(), Some(ct), body)
            }
            Client::ResumableOctet => (
                "POST",
                query,
                Some("application/octet-stream".to_string()),
                bytes.to_vec(),
            ),
            // flow.js octet: the Blob's type, or no Content-Type at all for an untyped file.
            Client::FlowOctet => ("PUT", query, None, bytes.to_vec()),
        };
        TestRequest {
            method: method.into(),
            query,
            content_type,
            body,
            remote_user: self.remote_user.clone(),
        }
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.data)
    }
}

/// Any emulated client's file: its chunks (numbered from 1) as requests, and its bytes.
pub trait Chunked: Sync {
    fn chunk_count(&self) -> u64;
    fn chunk_request(&self, number: u64) -> TestRequest;
    fn sha256(&self) -> String;
    fn filename(&self) -> &str;
}

impl Chunked for Upload {
    fn chunk_count(&self) -> u64 {
        Upload::chunk_count(self)
    }
    fn chunk_request(&self, number: u64) -> TestRequest {
        Upload::chunk_request(self, number)
    }
    fn sha256(&self) -> String {
        Upload::sha256(self)
    }
    fn filename(&self) -> &str {
        &self.filename
    }
}

pub fn encode_query(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).expect("encodable query")
}

pub const BOUNDARY: &str = "----resumablecgitestboundary7MA4YWxkTrZu0gW";

/// A multipart/form-data body as a browser writes it: text fields, then the `file` part.
pub fn multipart(params: &[(String, String)], file: &[u8], filename: &str) -> (String, Vec<u8>) {
    multipart_with(params, "file", file, filename)
}

/// [`multipart`] with the file part named `field` (`qqfile`, `ns_file`, ...).
pub fn multipart_with(
    params: &[(String, String)],
    field: &str,
    file: &[u8],
    filename: &str,
) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, value) in params {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    let escaped = filename
        .replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    write!(
        body,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{escaped}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(file);
    write!(body, "\r\n--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Every regular file under `dir`, relative path -> contents' sha256 (symlinks listed as such).
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // A file the server removes while the walk passes (a staging file being published,
            // a part being appended) is simply not there in this snapshot.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                out.insert(rel, "symlink".into());
            } else if meta.is_dir() {
                out.insert(format!("{rel}/"), "dir".into());
                walk(base, &path, out);
            } else if let Ok(mut file) = std::fs::File::open(&path) {
                let mut hasher = sha256::Sha256Hex::default();
                if std::io::copy(&mut file, &mut hasher).is_ok() {
                    out.insert(rel, hasher.hex());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// The files a finished upload left in the upload dir (ignoring the staging folder).
pub fn published_files(upload_dir: &Path) -> Vec<String> {
    snapshot(upload_dir)
        .into_iter()
        .filter(|(path, kind)| kind != "dir" && !path.starts_with(".resumable-staging"))
        .map(|(path, _)| path)
        .collect()
}

/// The lock file in an upload's temp directory (src/store/lock.rs).
pub const LOCK_FILE: &str = ".resumable-lock";

/// The files under a temp dir that hold data or state: every regular file but the uploads'
/// lock files (empty, waiting for cleanup like the folders they sit in).
pub fn stored_files(temp_dir: &Path) -> Vec<String> {
    snapshot(temp_dir)
        .into_iter()
        .filter(|(path, kind)| kind != "dir" && !path.ends_with(&format!("/{LOCK_FILE}")))
        .map(|(path, _)| path)
        .collect()
}

/// Holds an upload's lock the way the program takes it: an exclusive open-file-description
/// record lock on the lock file in the upload's temp directory, opened read-write. Waits when
/// `wait`, else `None` while someone else holds it. Released when the file is dropped.
pub fn record_lock(upload_temp_dir: &Path, wait: bool) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(upload_temp_dir.join(LOCK_FILE))
        .unwrap();
    // SAFETY: zeroed flock is a valid whole-file request; l_pid must be 0 for OFD locks.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = libc::F_WRLCK as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: the descriptor is open and `request` outlives the call.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), command, &request) };
    if result == 0 {
        return Some(file);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) if !wait => None,
        _ => panic!("record lock on {}: {error}", upload_temp_dir.display()),
    }
}

/// Whether a path of a temp-dir snapshot is what a finished upload may keep until cleanup:
/// its completion record and the lock file.
pub fn kept_after_completion(path: &str) -> bool {
    path.ends_with(".complete") || path.ends_with(LOCK_FILE)
}

/// `systemd-analyze verify` on a socket unit and its service: it must succeed and say nothing.
pub fn assert_units_verify(socket: &Path, service: &Path, what: &str) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(socket)
        .arg(service)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify{what}:\n{text}"
    );
}
