//! A small FastCGI client for the tests (records, params, one request per call) and a guard
//! that runs the binary as a FastCGI worker and kills it by PID however the test ends.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{binary, Dirs, Endpoint, Proc, TestRequest, TestResponse};

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;
pub const RESPONDER: u16 = 1;
pub const AUTHORIZER: u16 = 2;
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const UNKNOWN_ROLE: u8 = 3;

/// One record as written on the wire, padded to a multiple of 8.
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    assert!(content.len() <= 0xffff);
    let padding = (8 - content.len() % 8) % 8;
    let mut out = vec![
        1,
        kind,
        (id >> 8) as u8,
        id as u8,
        (content.len() >> 8) as u8,
        content.len() as u8,
        padding as u8,
        0,
    ];
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
    out
}

fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
    } else {
        out.extend_from_slice(&(length as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// A name-value pair stream.
pub fn pairs(list: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in list {
        push_length(&mut out, name.len());
        push_length(&mut out, value.len());
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
    out
}

pub fn begin(id: u16, role: u16, keep_conn: bool) -> Vec<u8> {
    let role = role.to_be_bytes();
    record(
        BEGIN_REQUEST,
        id,
        &[role[0], role[1], u8::from(keep_conn), 0, 0, 0, 0, 0],
    )
}

/// A stream (PARAMS or STDIN) cut into records of at most `piece` bytes, with its empty end.
pub fn stream(kind: u8, id: u16, data: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in data.chunks(piece.clamp(1, 0xffff)) {
        out.extend(record(kind, id, part));
    }
    out.extend(record(kind, id, &[]));
    out
}

/// The CGI variables a web server sends for `request`, plus `extra` after them.
pub fn cgi_params(request: &TestRequest, extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut list: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"GATEWAY_INTERFACE".to_vec(), b"CGI/1.1".to_vec()),
        (
            b"REQUEST_METHOD".to_vec(),
            request.method.clone().into_bytes(),
        ),
        (b"QUERY_STRING".to_vec(), request.query.clone().into_bytes()),
        (
            b"CONTENT_LENGTH".to_vec(),
            request.body.len().to_string().into_bytes(),
        ),
        (b"SCRIPT_NAME".to_vec(), b"/upload".to_vec()),
    ];
    if let Some(ct) = &request.content_type {
        list.push((b"CONTENT_TYPE".to_vec(), ct.clone().into_bytes()));
    }
    if let Some(user) = &request.remote_user {
        list.push((b"REMOTE_USER".to_vec(), user.clone().into_bytes()));
    }
    list.extend(extra.iter().cloned());
    list
}

/// BEGIN_REQUEST, PARAMS and the whole STDIN of one request.
pub fn request_bytes(
    id: u16,
    keep_conn: bool,
    params: &[(Vec<u8>, Vec<u8>)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = begin(id, RESPONDER, keep_conn);
    out.extend(stream(PARAMS, id, &pairs(params), 0xffff));
    out.extend(stream(STDIN, id, body, 0xffff));
    out
}

/// Everything the application sent for one request.
#[derive(Debug, Default)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
    /// Records for other request ids or management records seen on the way.
    pub others: Vec<(u8, u16, Vec<u8>)>,
}

impl Reply {
    pub fn response(&self) -> TestResponse {
        TestResponse::from_cgi(&self.stdout)
    }
}

/// One record: `None` on a clean end of stream.
pub fn read_record(input: &mut dyn Read) -> io::Result<Option<(u8, u16, Vec<u8>)>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // A socket with a timeout can answer EINTR after the process was stopped and resumed,
        // with no signal handler at all; read_exact below retries it too.
        match input.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    assert_eq!(header[0], 1, "the worker wrote a record of another version");
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut content = vec![0u8; length + usize::from(header[6])];
    input.read_exact(&mut content)?;
    content.truncate(length);
    Ok(Some((
        header[1],
        u16::from_be_bytes([header[2], header[3]]),
        content,
    )))
}

/// Reads until END_REQUEST for `id`.
pub fn read_reply(input: &mut dyn Read, id: u16) -> io::Result<Reply> {
    let mut reply = Reply::default();
    loop {
        let (kind, rid, content) =
            read_record(input)?.ok_or(io::Error::from(io::ErrorKind::UnexpectedEof))?;
        match (kind, rid == id) {
            (STDOUT, true) => reply.stdout.extend(content),
            (STDERR, true) => reply.stderr.extend(content),
            (END_REQUEST, true) => {
                reply.app_status =
                    u32::from_be_bytes([content[0], content[1], content[2], content[3]]);
                reply.protocol_status = content[4];
                return Ok(reply);
            }
            _ => reply.others.push((kind, rid, content)),
        }
    }
}

/// Decodes a GET_VALUES_RESULT body.
pub fn parse_pairs(mut bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let length = |bytes: &mut &[u8]| -> usize {
        if bytes[0] & 0x80 == 0 {
            let n = bytes[0] as usize;
            *bytes = &bytes[1..];
            n
        } else {
            let n = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]) as usize;
            *bytes = &bytes[4..];
            n
        }
    };
    while !bytes.is_empty() {
        let n = length(&mut bytes);
        let v = length(&mut bytes);
        out.push((
            String::from_utf8_lossy(&bytes[..n]).into_owned(),
            String::from_utf8_lossy(&bytes[n..n + v]).into_owned(),
        ));
        bytes = &bytes[n + v..];
    }
    out
}

#[derive(Debug, Clone)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    /// A TCP port that was free a moment ago.
    pub fn free_tcp() -> Addr {
        let probe = TcpListener::bind("127.0.0.1:0").expect("probe port");
        Addr::Tcp(probe.local_addr().unwrap())
    }

    pub fn listen_arg(&self) -> String {
        match self {
            Addr::Tcp(a) => a.to_string(),
            Addr::Unix(p) => p.display().to_string(),
        }
    }

    pub fn try_connect(&self) -> io::Result<Conn> {
        let conn = match self {
            Addr::Tcp(a) => Conn::Tcp(TcpStream::connect(a)?),
            Addr::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
        };
        // A hung worker fails the test instead of hanging it.
        conn.set_timeout(Some(Duration::from_secs(60)));
        Ok(conn)
    }

    pub fn connect(&self) -> Conn {
        self.try_connect().expect("connect to the FastCGI worker")
    }
}

pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(timeout).unwrap();
                s.set_write_timeout(timeout).unwrap();
            }
            Conn::Unix(s) => {
                s.set_read_timeout(timeout).unwrap();
                s.set_write_timeout(timeout).unwrap();
            }
        }
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    /// Sends one request (STDIN written in records as the body is read from `body`) and
    /// reads its reply.
    pub fn request(
        &mut self,
        id: u16,
        keep_conn: bool,
        params: &[(Vec<u8>, Vec<u8>)],
        body: &[u8],
    ) -> io::Result<Reply> {
        self.write_all(&request_bytes(id, keep_conn, params, body))?;
        read_reply(self, id)
    }

    pub fn send(&mut self, request: &TestRequest, keep_conn: bool) -> TestResponse {
        self.request(1, keep_conn, &cgi_params(request, &[]), &request.body)
            .expect("FastCGI reply")
            .response()
    }

    /// True when the worker closed the connection (EOF or reset) without writing anything.
    pub fn closed_silently(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A running worker process. Dropping it kills it by PID, so no test leaves one behind; it
/// goes before its dirs.
pub struct Worker {
    pub proc: Proc,
    pub addr: Addr,
    pub dirs: Dirs,
    pub stderr_path: PathBuf,
}

impl Worker {
    /// `resumable-cgi fastcgi --listen ADDR ARGS...` with the dirs in its environment.
    pub fn start(unix: bool, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let dirs = Dirs::new();
        let addr = if unix {
            Addr::Unix(dirs.root.path().join("fcgi.sock"))
        } else {
            Addr::free_tcp()
        };
        let mut command = Command::new(binary());
        command
            .arg("fastcgi")
            .arg("--listen")
            .arg(addr.listen_arg())
            .args(args);
        Worker::launch(command, dirs, addr, env)
    }

    /// Starts `command` (the binary under some launcher) with the usual environment and waits
    /// until `addr` answers.
    pub fn launch(mut command: Command, dirs: Dirs, addr: Addr, env: &[(&str, &str)]) -> Worker {
        let stderr_path = dirs.root.path().join("worker.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        command
            .env_clear()
            .current_dir(dirs.root.path())
            .env("RESUMABLE_TEMP_DIR", &dirs.temp)
            .env("RESUMABLE_UPLOAD_DIR", &dirs.uploads)
            .env("RESUMABLE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let proc = Proc::spawn("resumable-cgi fastcgi", &mut command).kill_on_drop();
        let mut worker = Worker {
            proc,
            addr,
            dirs,
            stderr_path,
        };
        worker.wait_ready();
        worker
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.addr.try_connect().is_ok() {
                return;
            }
            if let Some(status) = self.proc.try_wait() {
                panic!("worker exited early ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "worker never listened: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn assert_no_panic(&self) {
        let log = self.stderr();
        assert!(!log.contains("panicked"), "the worker panicked: {log}");
    }

    /// The worker's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn connect(&self) -> Conn {
        self.addr.connect()
    }
}

impl Endpoint for Worker {
    fn send(&self, request: &TestRequest) -> TestResponse {
        self.connect().send(request, false)
    }
    fn temp_dir(&self) -> &Path {
        &self.dirs.temp
    }
    fn upload_dir(&self) -> &Path {
        &self.dirs.uploads
    }
}
