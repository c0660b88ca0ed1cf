//! A second, independent tus client: tuspy (Python, from PyPI, unchanged) against the
//! development server. Its first run sends the whole file in one PATCH through a proxy that
//! passes bytes on slowly, and is killed (SIGKILL, by PID) mid-PATCH; the bytes that reached the
//! server stay. Its second run finds the upload in its URL storage, asks HEAD where to go on and
//! sends only the rest, in 1 MiB PATCHes with sha1 `Upload-Checksum`s. Needs the venv that
//! scripts/install-test-deps makes (tests/py/.venv).

mod common;
mod reliability;
mod serve_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Proc;
use common::*;
use serve_support::DevServer;

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/install-test-deps (it installs tuspy from PyPI)",
        venv.display()
    );
    venv
}

/// A TCP proxy that passes the client's bytes on at about `rate` bytes a second (answers at
/// full speed) and counts them; when the client goes away it closes the server's side too, as
/// a web server does when its client's connection drops.
struct SlowProxy {
    port: u16,
    forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(to: std::net::SocketAddr, rate: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (forwarded.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(to).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    let pause = Duration::from_secs_f64(buf.len() as f64 / rate as f64);
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        count.fetch_add(n as u64, Ordering::Relaxed);
                        std::thread::sleep(pause);
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        SlowProxy {
            port,
            forwarded,
            stop,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tuspy(endpoint: &str, file: &Path, storage: &Path, chunk: usize, checksum: bool) -> Command {
    let mut command = Command::new(python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tuspy_upload.py"))
        .arg(endpoint)
        .arg(file)
        .arg(storage)
        .arg(chunk.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if checksum {
        command.arg("--checksum");
    }
    command
}

/// The offset the server reports for the upload at `url`.
fn offset(server: &DevServer, url: &str) -> u64 {
    let path = url
        .split_once("//")
        .and_then(|(_, rest)| rest.split_once('/'))
        .unwrap_or_else(|| panic!("not an absolute URL: {url:?}"))
        .1;
    let answer = server.http(
        "HEAD",
        &format!("/{path}"),
        &[("Tus-Resumable", "1.0.0")],
        b"",
    );
    assert_eq!(answer.status, 200, "HEAD {path}");
    answer
        .header("Upload-Offset")
        .unwrap_or_else(|| panic!("HEAD {path}: {:?}", answer.headers))
        .parse()
        .unwrap()
}

#[test]
fn tuspy_killed_mid_patch_resumes_where_the_bytes_stopped() {
    let server = DevServer::start();
    let work = tempfile::tempdir().unwrap();
    let total = 8 << 20;
    let data = pseudo_random(total, 4242);
    let file = work.path().join("tuspy-8mib.bin");
    std::fs::write(&file, &data).unwrap();
    let storage = work.path().join("tus-urls.json");

    // Run 1: one PATCH for the whole file, at about 2 MiB/s, killed after 3 MiB went through.
    let proxy = SlowProxy::start(server.addr, 2 << 20);
    let endpoint = format!("http://127.0.0.1:{}/upload", proxy.port);
    let mut first = Proc::spawn(
        "tuspy",
        &mut tuspy(&endpoint, &file, &storage, 64 << 20, false),
    )
    .kill_on_drop();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.forwarded.load(Ordering::Relaxed) < 3 << 20 {
        if let Ok(Some(status)) = first.child().try_wait() {
            let mut err = String::new();
            let _ = first
                .child()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("tuspy ended before it was killed ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "tuspy never got 3 MiB through");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill();
    let at_kill = proxy.forwarded.load(Ordering::Relaxed);
    let (_, out, _) = first.finish(Duration::from_secs(10));
    let out = String::from_utf8_lossy(&out).into_owned();
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("URL "))
        .unwrap_or_else(|| panic!("tuspy printed no URL: {out}"))
        .to_string();
    assert!(!out.contains("DONE"), "{out}");
    // The server notices the cut body, keeps what arrived, makes it durable.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains("PATCH tus stored") {
        assert!(
            Instant::now() < deadline,
            "no PATCH logged: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept = offset(&server, &url);
    assert!(
        kept >= 1 << 20 && kept < total as u64,
        "kept {kept} of {total}"
    );

    // Run 2: straight to the server, the same URL storage; 1 MiB PATCHes with sha1 checksums.
    let second = tuspy(&server.url(), &file, &storage, 1 << 20, true)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        out.contains(&format!("URL {url}")),
        "the same upload: {out}"
    );
    assert!(out.contains(&format!("DONE {total}")), "{out}");
    let stored = std::fs::read(server.upload_dir().join("tuspy-8mib.bin")).unwrap();
    assert_eq!(sha256_hex(&stored), sha256_hex(&data));

    // The log: one creation, and the resumed PATCHes start exactly at what was kept.
    let log = server.log();
    assert_eq!(log.matches("tus created").count(), 1, "{log}");
    let resumed_at: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("PATCH tus stored"))
        .filter_map(|l| l.split(" at ").nth(1)?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(resumed_at.first(), Some(&0), "{log}");
    assert_eq!(resumed_at.get(1), Some(&kept), "{log}");
    let expected = (kept..total as u64).step_by(1 << 20).count();
    assert_eq!(resumed_at.len(), 1 + expected, "{log}");
    eprintln!(
        "tuspy: killed when {at_kill} bytes had gone through the proxy; {kept} bytes kept; \
         the second run sent {expected} PATCHes"
    );
}
