//! Plumbing for the end-to-end suite: the installed program, free ports, rendering the shipped
//! deploy/ files, waiting for a server to listen, the browser driver and access-log parsing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::Proc;
use crate::common::{sha256_file, Scratch};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_resumable-cgi"))
}

/// The program as an operator installs it: copied next to the configs, mode 0755.
pub fn install_program(dir: &Scratch) -> PathBuf {
    let bin = dir.dir("bin", false).join("resumable-cgi");
    fs::copy(program(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    bin
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

/// Waits (15 s at most) until something accepts TCP connections at `addr` (`host:port`).
pub fn wait_for_listener(addr: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            panic!("{what} did not listen on {addr}; log:\n{}", read_lossy(log));
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
pub fn run_browser(dir: &Scratch, origin: &str, steps: serde_json::Value) -> serde_json::Value {
    run_driver(dir, "e2e-browser.mjs", origin, steps)
}

/// Runs the browser driver `script` (in tests/js) with a plan of `steps`; returns the JSON
/// result it prints on its `RESULT` line.
pub fn run_driver(
    dir: &Scratch,
    script: &str,
    origin: &str,
    steps: serde_json::Value,
) -> serde_json::Value {
    let plan = serde_json::json!({
        "origin": origin,
        "profileDir": dir.path().join("chromium-profile"),
        "steps": steps,
    });
    let plan_path = dir.path().join(format!("plan-{}.json", free_port()));
    write(&plan_path, &serde_json::to_string_pretty(&plan).unwrap());
    let _ = fs::remove_dir_all(dir.path().join("chromium-profile"));
    let log_path = dir.path().join("browser.log");
    let label = format!("node {script}");
    let script_path = repo().join("tests/js").join(script);
    let mut cmd = Command::new("node");
    cmd.arg(&script_path)
        .arg(&plan_path)
        .current_dir(repo().join("tests/js"));
    let out_path = dir.path().join("browser.out");
    let mut proc = Proc::spawn_logged(&label, &mut cmd, &out_path);
    assert!(
        proc.wait_timeout(Duration::from_secs(300)).is_some(),
        "browser run timed out"
    );
    drop(proc);
    let output = read_lossy(&out_path);
    let _ = fs::write(&log_path, &output);
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("browser driver gave no result:\n{output}"));
    serde_json::from_str(line).unwrap()
}
