//! The dev server as a test sees it: a real process on a free port, spoken to over HTTP, and
//! the server's log.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::common::{binary, http, Dirs, Endpoint, Proc, TestRequest, TestResponse};

/// How long a request may wait for the server's answer.
const TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Copies the server's stderr into `log`; it ends when the server's stderr closes.
    log_reader: Option<std::thread::JoinHandle<()>>,
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
        let log_reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
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
            log_reader: Some(log_reader),
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

    fn origin(&self) -> String {
        self.addr.to_string()
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
            Some(status) => {
                // The last lines it wrote are in the log only once the reader has seen the
                // end of its stderr.
                // (Bounded: a child it left running could hold its stderr open.)
                if let Some(reader) = self.log_reader.take() {
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    while !reader.is_finished() && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                status
            }
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
        http::request(&self.origin(), method, target, headers, &[body], TIMEOUT)
    }

    pub fn get(&self, target: &str) -> TestResponse {
        self.http("GET", target, &[], b"")
    }
}

impl Endpoint for DevServer {
    fn send(&self, request: &TestRequest) -> TestResponse {
        http::send(&self.origin(), "/upload", request, TIMEOUT)
    }
    fn temp_dir(&self) -> &Path {
        &self.temp
    }
    fn upload_dir(&self) -> &Path {
        &self.uploads
    }
}
