//! Plumbing for the end-to-end suite: per-test directories, free ports, rendering the shipped
//! deploy/ files, processes that are stopped by PID when dropped (also when a test panics),
//! the browser driver, sha256 and access-log parsing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const WWW_DATA: u32 = 33;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_resumable-cgi"))
}

/// A directory for one test under /tmp, readable by www-data; removed when the test passes,
/// kept (and named in the panic output) when it fails.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        // unique per process and per call: tests run in parallel threads of one process
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("rcgi-e2e-{name}-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    /// A subdirectory, optionally owned by www-data (where the web server's user writes).
    pub fn dir(&self, rel: &str, www_data: bool) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        if www_data {
            std::os::unix::fs::chown(&p, Some(WWW_DATA), Some(WWW_DATA)).unwrap();
        }
        p
    }

    /// The program as an operator installs it: copied next to the configs, mode 0755.
    pub fn install_program(&self) -> PathBuf {
        let bin = self.dir("bin", false).join("resumable-cgi");
        fs::copy(program(), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("e2e: kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads a shipped file from deploy/ and replaces every `@NAME@` from `vars`; a placeholder left
/// over means the shipped file and the suite disagree, which fails the test.
pub fn render(deploy_rel: &str, vars: &[(&str, String)]) -> String {
    let src = repo().join("deploy").join(deploy_rel);
    let mut text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for (name, value) in vars {
        text = text.replace(&format!("@{name}@"), value);
    }
    if let Some(at) = find_placeholder(&text) {
        panic!("{deploy_rel}: placeholder {at} not rendered by the suite");
    }
    text
}

fn find_placeholder(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' {
            let rest = &text[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 && rest[end..].starts_with('@') {
                return Some(format!("@{}@", &rest[..end]));
            }
        }
        i += 1;
    }
    None
}

pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A process this test started. Dropping it stops it by PID: its children first (found through
/// /proc by parent PID, e.g. fcgiwrap's preforked workers), SIGTERM, then SIGKILL after a grace time.
pub struct Proc {
    pub name: String,
    pub pid: i32,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            pid: child.id() as i32,
            child: Some(child),
        }
    }

    /// A daemon that wrote its PID to `pidfile` (spawn-fcgi): adopted for stopping.
    pub fn from_pidfile(name: &str, pidfile: &Path) -> Proc {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = fs::read_to_string(pidfile) {
                if let Some(pid) = text.split_whitespace().next().and_then(|t| t.parse().ok()) {
                    return Proc {
                        name: name.into(),
                        pid,
                        child: None,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no pid in {}",
                pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => alive(self.pid),
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe_kill(self.pid, sig);
    }

    fn stop(&mut self) {
        // The parent first, then the children it had: a supervisor such as fcgiwrap -c N respawns
        // a worker that dies while it still runs (killing children first leaked respawned ones).
        let children = children_of(self.pid);
        unsafe_kill(self.pid, 15);
        if !self.wait_gone(Duration::from_secs(5)) {
            unsafe_kill(self.pid, 9);
            self.wait_gone(Duration::from_secs(5));
        }
        for &child in &children {
            unsafe_kill(child, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while children.iter().any(|&c| alive(c)) {
            if Instant::now() > deadline {
                for &child in &children {
                    unsafe_kill(child, 9);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_gone(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            let gone = match &mut self.child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !alive(self.pid),
            };
            if gone {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// kill(2) for one PID this test started (never a group, never by name).
fn unsafe_kill(pid: i32, sig: i32) {
    use rustix::process::{kill_process, Pid, Signal};
    let signal = match sig {
        1 => Signal::HUP,
        9 => Signal::KILL,
        10 => Signal::USR1,
        _ => Signal::TERM,
    };
    if let Some(pid) = Pid::from_raw(pid).filter(|_| pid > 1) {
        let _ = kill_process(pid, signal);
    }
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// PIDs whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) {
                let after = stat.rsplit(')').next().unwrap_or("");
                let ppid = after
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<i32>().ok());
                if ppid == Some(pid) {
                    out.push(p);
                }
            }
        }
    }
    out
}

pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            panic!("{what} did not listen on {port}; log:\n{}", read_lossy(log));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn wait_for_socket(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what}: no socket at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub fn sha256_file(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex(&Sha256::digest(&data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic test content (xorshift), so a failure can be reproduced byte for byte.
pub fn make_file(path: &Path, size: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    write_bytes(path, &data);
}

pub fn write_bytes(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Every regular file under `root`, relative, with its sha256.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, sha256_file(&p));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// One request line of an access log: method, path+query, status.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub target: String,
    pub status: u16,
}

impl Hit {
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

/// Parses `"METHOD TARGET HTTP/x" STATUS` out of combined-style log lines (nginx and Apache).
pub fn access_log(path: &Path) -> Vec<Hit> {
    read_lossy(path)
        .lines()
        .filter_map(|line| {
            let start = line.find('"')?;
            let rest = &line[start + 1..];
            let end = rest.find('"')?;
            let mut req = rest[..end].split(' ');
            let method = req.next()?.to_string();
            let target = req.next()?.to_string();
            let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
            Some(Hit {
                method,
                target,
                status,
            })
        })
        .collect()
}

/// Runs tests/js/e2e-browser.mjs with a plan; returns its JSON result.
pub fn run_browser(dir: &TestDir, origin: &str, steps: serde_json::Value) -> serde_json::Value {
    run_browser_script(dir, "e2e-browser.mjs", origin, steps)
}

/// Runs a browser driver of tests/js/ (`script`) with a plan; returns its JSON result.
pub fn run_browser_script(
    dir: &TestDir,
    script: &str,
    origin: &str,
    steps: serde_json::Value,
) -> serde_json::Value {
    let plan = serde_json::json!({
        "origin": origin,
        "profileDir": dir.path.join("chromium-profile"),
        "steps": steps,
    });
    let plan_path = dir.path.join(format!("plan-{}.json", free_port()));
    write(&plan_path, &serde_json::to_string_pretty(&plan).unwrap());
    let _ = fs::remove_dir_all(dir.path.join("chromium-profile"));
    let log_path = dir.path.join("browser.log");
    let script = repo().join("tests/js").join(script);
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(&plan_path)
        .current_dir(repo().join("tests/js"));
    let out_path = dir.path.join("browser.out");
    let mut proc = Proc::spawn("node browser driver", &mut cmd, &out_path);
    let deadline = Instant::now() + Duration::from_secs(300);
    while proc.is_running() {
        assert!(Instant::now() < deadline, "browser run timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(proc);
    let output = read_lossy(&out_path);
    let _ = fs::write(&log_path, &output);
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("browser driver gave no result:\n{output}"));
    serde_json::from_str(line).unwrap()
}

/// A raw HTTP/1.1 POST whose body is streamed from `parts` (no client library in between, so the
/// exact Content-Length reaches the server). Answers (status, body).
pub fn http_post(origin: &str, path: &str, content_type: &str, parts: &[&[u8]]) -> (u16, String) {
    use std::io::Write;
    let host = origin.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for p in parts {
        // the server may answer (413) and close before the body is sent: that is an answer too
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status from POST {path}: {text:.300}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Only the headers, with a Content-Length over the limit and no body: the web server must refuse
/// from the header alone.
pub fn http_post_announced(origin: &str, path: &str, len: u64) -> u16 {
    use std::io::Write;
    let host = origin.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
