//! The completion hook (`RESUMABLE_ON_COMPLETE`): runs the operator's program, without a shell,
//! on a finished file before it is published, and turns how it ended into a decision.
//!
//! The program gets the file's description as JSON on stdin and as `RESUMABLE_HOOK_*`
//! variables, plus the request's `RESUMABLE_*` settings and the server's environment (without
//! the request's own CGI variables), in its own process group. Exit 0
//! accepts (a JSON object on stdout is handed to the client); exit 75 (EX_TEMPFAIL) asks to be
//! run again later; any other exit refuses the file, the first line on stderr saying why. A
//! program that cannot be started, is killed by a signal, or runs past the timeout (it is then
//! killed with its whole group) has not decided: that is the server's fault, not the file's.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::Serialize;
use serde_json::{Map, Value};

/// The most of the program's stdout read as its answer.
const MAX_STDOUT: usize = 48 * 1024;
/// The largest answer passed on, as re-serialised JSON: with the published name it must fit the
/// completion record (64 KiB), or the record would be unreadable and the upload look unfinished.
const MAX_DATA: usize = 32 * 1024;
/// The most of its stderr kept for the log and the refusal reason.
const MAX_STDERR: usize = 4 * 1024;
/// The longest refusal reason passed on to the client.
const MAX_REASON: usize = 500;
/// sysexits.h EX_TEMPFAIL: "try again later", as mail delivery programs use it.
pub const EXIT_TEMPFAIL: i32 = 75;
/// CGI request variables that are not passed on: a CGI process's environment describes the
/// request (its headers as `HTTP_*`, `HTTP_PROXY` among them, which tools take for a proxy
/// setting), and a program that sees `GATEWAY_INTERFACE` may think it is a CGI script itself.
const REQUEST_VARIABLES: &[&str] = &[
    "GATEWAY_INTERFACE",
    "REQUEST_METHOD",
    "QUERY_STRING",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "PATH_INFO",
    "PATH_TRANSLATED",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The longest `RESUMABLE_HOOK_METADATA` passed in the environment.
const MAX_METADATA_VARIABLE: usize = 32 * 1024;

/// The program and how long it may take.
#[derive(Debug, Clone)]
pub struct Hook {
    pub program: PathBuf,
    pub timeout: Duration,
}

/// What the program is told about the file, on stdin and as `RESUMABLE_HOOK_*` variables.
#[derive(Debug, Serialize)]
pub struct HookInput<'a> {
    /// Absolute path of the assembled file.
    pub path: &'a Path,
    /// The path it is to be published under, relative to the upload dir.
    pub name: &'a str,
    pub size: u64,
    pub identifier: &'a str,
    /// The client dialect (`resumable`, `flow`, ...; `form`, `tus` for those flows).
    pub client: &'a str,
    pub user: Option<&'a str>,
    /// tus metadata, form fields, or the chunk request's query and form fields.
    pub metadata: &'a Map<String, Value>,
}

/// How the program decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit 0; `data` is its stdout when that is a JSON object.
    Accept { data: Option<Value> },
    /// Another exit status; `reason` is the first line it wrote on stderr.
    Reject { reason: String },
}

/// The program did not decide; the file is kept and the next request asks again.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("the completion hook {} could not be started: {source}", program.display())]
    Start { program: PathBuf, source: io::Error },
    #[error(
        "the completion hook {} ran longer than {} s and was killed with its process group{stderr}",
        program.display(), timeout.as_secs()
    )]
    Timeout {
        program: PathBuf,
        timeout: Duration,
        stderr: String,
    },
    #[error("the completion hook {} was killed by signal {signal}{stderr}", program.display())]
    Killed {
        program: PathBuf,
        signal: i32,
        stderr: String,
    },
    #[error("the completion hook {} asked to be run again later (exit 75){stderr}", program.display())]
    TryLater { program: PathBuf, stderr: String },
    #[error("talking to the completion hook {} failed: {source}", program.display())]
    Io { program: PathBuf, source: io::Error },
}

/// What came back from one run.
struct Exchange {
    status: ExitStatus,
    stdout: Vec<u8>,
    stdout_overflow: bool,
    stderr: Vec<u8>,
}

impl Hook {
    /// Runs the program on one file. `settings` are the request's `RESUMABLE_*` variables.
    pub fn run(
        &self,
        input: &HookInput<'_>,
        settings: &[(&str, Vec<u8>)],
    ) -> Result<Verdict, HookError> {
        let stdin_json = serde_json::to_vec(input).unwrap_or_default();
        let mut command = Command::new(&self.program);
        command.env_clear();
        for (name, value) in std::env::vars_os() {
            if inherited(&name) {
                command.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            command.env("PATH", DEFAULT_PATH);
        }
        for (name, value) in settings {
            command.env(name, env_value(value));
        }
        let metadata = Value::Object(input.metadata.clone()).to_string();
        command
            .env(
                "RESUMABLE_HOOK_PATH",
                env_value(input.path.as_os_str().as_bytes()),
            )
            .env("RESUMABLE_HOOK_NAME", env_value(input.name.as_bytes()))
            .env("RESUMABLE_HOOK_SIZE", input.size.to_string())
            .env(
                "RESUMABLE_HOOK_IDENTIFIER",
                env_value(input.identifier.as_bytes()),
            )
            .env("RESUMABLE_HOOK_CLIENT", input.client);
        // The kernel limits one variable to 128 KiB; stdin always has all of it.
        if metadata.len() <= MAX_METADATA_VARIABLE {
            command.env("RESUMABLE_HOOK_METADATA", metadata);
        }
        if let Some(user) = input.user {
            command.env("RESUMABLE_HOOK_USER", env_value(user.as_bytes()));
        }
        // Its own process group, so that a timeout kills whatever it started too; its working
        // directory is ours (the CGI script's directory, or the worker's).
        command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = self.program.clone();
        let mut child = spawn(&mut command).map_err(|source| HookError::Start {
            program: program.clone(),
            source,
        })?;
        let pid = Pid::from_child(&child);
        let _on_signal = crate::interrupt::kill_on_signal(pid);
        let exchange = match exchange(&mut child, &stdin_json, Instant::now() + self.timeout) {
            Ok(exchange) => exchange,
            Err((failure, stderr)) => {
                kill(&mut child, pid);
                log_stderr(&self.program, &stderr);
                return Err(match failure {
                    Failure::Timeout => HookError::Timeout {
                        program,
                        timeout: self.timeout,
                        stderr: quoted_first_line(&stderr),
                    },
                    Failure::Io(source) => HookError::Io { program, source },
                });
            }
        };
        log_stderr(&self.program, &exchange.stderr);
        match (exchange.status.code(), exchange.status.signal()) {
            (Some(0), _) => {
                if exchange.stdout_overflow {
                    log::warn!(
                        "completion hook {}: stdout longer than {MAX_STDOUT} bytes, not passed on",
                        self.program.display()
                    );
                }
                let data = (!exchange.stdout_overflow)
                    .then(|| serde_json::from_slice::<Value>(&exchange.stdout).ok())
                    .flatten()
                    .filter(Value::is_object);
                let too_large = data
                    .as_ref()
                    .is_some_and(|d| d.to_string().len() > MAX_DATA);
                if too_large {
                    log::warn!(
                        "completion hook {}: its JSON is larger than {MAX_DATA} bytes, not passed on",
                        self.program.display()
                    );
                }
                Ok(Verdict::Accept {
                    data: data.filter(|_| !too_large),
                })
            }
            (Some(EXIT_TEMPFAIL), _) => Err(HookError::TryLater {
                program,
                stderr: quoted_first_line(&exchange.stderr),
            }),
            (Some(code), _) => {
                let reason = first_line(&exchange.stderr).unwrap_or_else(|| {
                    format!("refused by the server's completion check (exit {code})")
                });
                Ok(Verdict::Reject { reason })
            }
            (None, signal) => Err(HookError::Killed {
                program,
                signal: signal.unwrap_or(0),
                stderr: quoted_first_line(&exchange.stderr),
            }),
        }
    }
}

/// Whether a variable of this process's environment is passed on: the operator's own (SetEnv,
/// systemd Environment=, the shell's), not the request's and not our settings (the request's
/// effective ones are set instead, FastCGI params included).
fn inherited(name: &OsStr) -> bool {
    let name = name.as_bytes();
    !(name.starts_with(b"HTTP_")
        || name.starts_with(b"RESUMABLE_")
        || REQUEST_VARIABLES.iter().any(|v| v.as_bytes() == name))
}

/// An environment value cannot hold a NUL byte (a client can send one, `%00`); the JSON on
/// stdin keeps the exact value.
fn env_value(bytes: &[u8]) -> std::ffi::OsString {
    let clean: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    OsStr::from_bytes(&clean).to_os_string()
}

/// Starts the program. A program file that is open for writing somewhere (being replaced as
/// the hook is deployed, or inherited for an instant by another thread's fork before its exec)
/// cannot be executed (ETXTBSY); that passes within moments, so it is tried again briefly.
fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e)
                if attempt < 10
                    && e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10 * attempt));
            }
            other => return other,
        }
    }
}

enum Failure {
    Timeout,
    Io(io::Error),
}

/// Kills the program's process group (and the program itself, should it have left the group),
/// then reaps it.
fn kill(child: &mut Child, pid: Pid) {
    let _ = kill_process_group(pid, Signal::KILL);
    let _ = kill_process(pid, Signal::KILL);
    let _ = child.wait();
}

/// Feeds stdin and collects stdout and stderr until the program has exited, all in this
/// thread (a grandchild holding a pipe open can then never block a thread forever). Fails with
/// what it wrote on stderr so far.
fn exchange(
    child: &mut Child,
    input: &[u8],
    deadline: Instant,
) -> Result<Exchange, (Failure, Vec<u8>)> {
    let io = |e: io::Error| (Failure::Io(e), Vec::new());
    let take = |fd: Option<OwnedFd>| -> Result<Option<OwnedFd>, (Failure, Vec<u8>)> {
        match fd {
            Some(fd) => {
                rustix::io::ioctl_fionbio(&fd, true).map_err(|e| io(e.into()))?;
                Ok(Some(fd))
            }
            None => Ok(None),
        }
    };
    let mut stdin = take(child.stdin.take().map(OwnedFd::from))?;
    let mut stdout = take(child.stdout.take().map(OwnedFd::from))?;
    let mut stderr = take(child.stderr.take().map(OwnedFd::from))?;
    let mut written = 0;
    let mut out = Collected::new(MAX_STDOUT);
    let mut err = Collected::new(MAX_STDERR);
    if input.is_empty() {
        stdin = None;
    }
    loop {
        let status = child.try_wait().map_err(io)?;
        if let Some(status) = status {
            // Its own output is all in the pipes now; what a process it left behind writes
            // later is not its answer.
            drain(&mut stdout, &mut out);
            drain(&mut stderr, &mut err);
            return Ok(Exchange {
                status,
                stdout: out.bytes,
                stdout_overflow: out.overflow,
                stderr: err.bytes,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            drain(&mut stderr, &mut err);
            return Err((Failure::Timeout, err.bytes));
        }
        // Woken by the pipes; the short cap notices an exit while a grandchild holds them.
        let wait = (deadline - now).min(Duration::from_millis(50));
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: wait.subsec_nanos() as _,
        };
        let mut fds = Vec::with_capacity(3);
        let order: Vec<u8> = [(&stdin, 0u8), (&stdout, 1), (&stderr, 2)]
            .iter()
            .filter(|(fd, _)| fd.is_some())
            .map(|(_, n)| *n)
            .collect();
        for n in &order {
            let (fd, flags) = match n {
                0 => (stdin.as_ref(), PollFlags::OUT),
                1 => (stdout.as_ref(), PollFlags::IN),
                _ => (stderr.as_ref(), PollFlags::IN),
            };
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd, flags));
            }
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            continue;
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io(e.into())),
        }
        let ready: Vec<(u8, bool)> = order
            .iter()
            .zip(fds.iter())
            .map(|(n, fd)| (*n, !fd.revents().is_empty()))
            .collect();
        drop(fds);
        for (n, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match n {
                0 => {
                    if let Some(fd) = &stdin {
                        match rustix::io::write(fd, &input[written..]) {
                            Ok(n) => written += n,
                            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                            // It closed its stdin (or never reads it): fine.
                            Err(_) => written = input.len(),
                        }
                    }
                    if written >= input.len() {
                        stdin = None;
                    }
                }
                1 => read_some(&mut stdout, &mut out),
                _ => read_some(&mut stderr, &mut err),
            }
        }
    }
}

/// A bounded copy of what a pipe delivered; the rest is read and dropped.
struct Collected {
    bytes: Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl Collected {
    fn new(limit: usize) -> Collected {
        Collected {
            bytes: Vec::new(),
            limit,
            overflow: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.limit - self.bytes.len().min(self.limit);
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        if data.len() > room {
            self.overflow = true;
        }
    }
}

/// Reads what is there now; closes the pipe at its end.
fn read_some(pipe: &mut Option<OwnedFd>, into: &mut Collected) {
    let Some(fd) = pipe.as_ref() else {
        return;
    };
    let mut buffer = [0u8; 8192];
    match rustix::io::read(fd.as_fd(), &mut buffer) {
        Ok(0) => *pipe = None,
        Ok(n) => into.push(&buffer[..n]),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
        Err(_) => *pipe = None,
    }
}

/// Reads everything already waiting in a pipe, without waiting for more.
fn drain(pipe: &mut Option<OwnedFd>, into: &mut Collected) {
    // Bounded: a process left behind that keeps writing cannot keep us here.
    for _ in 0..64 {
        let before = (into.bytes.len(), into.overflow, pipe.is_some());
        read_some(pipe, into);
        if pipe.is_none() || before == (into.bytes.len(), into.overflow, true) {
            return;
        }
    }
}

fn first_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(
        line.chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect(),
    )
}

fn quoted_first_line(stderr: &[u8]) -> String {
    first_line(stderr)
        .map(|line| format!(": {line}"))
        .unwrap_or_default()
}

/// The program's stderr goes to our log, line by line, so the operator sees it.
fn log_stderr(program: &Path, stderr: &[u8]) {
    for line in String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        log::info!("completion hook {}: {line}", program.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("hook-{n}.sh"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn run(program: PathBuf, timeout: u64) -> Result<Verdict, HookError> {
        let metadata = Map::new();
        let input = HookInput {
            path: Path::new("/nonexistent/file"),
            name: "a/b.txt",
            size: 3,
            identifier: "3-btxt",
            client: "resumable",
            user: None,
            metadata: &metadata,
        };
        Hook {
            program,
            timeout: Duration::from_secs(timeout),
        }
        .run(&input, &[("RESUMABLE_MAX_FILE_SIZE", b"1G".to_vec())])
    }

    #[test]
    fn exits_become_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let accept = script(
            dir.path(),
            r#"read -r json; case "$json" in *'"name":"a/b.txt"'*) ;; *) exit 3;; esac
               [ "$RESUMABLE_HOOK_SIZE" = 3 ] && [ "$RESUMABLE_MAX_FILE_SIZE" = 1G ] || exit 4
               [ -z "$RESUMABLE_HOOK_USER" ] || exit 5
               echo '{"id": 7}'"#,
        );
        assert_eq!(
            run(accept, 10).unwrap(),
            Verdict::Accept {
                data: Some(serde_json::json!({"id": 7}))
            }
        );
        let plain = script(dir.path(), "echo not json");
        assert_eq!(run(plain, 10).unwrap(), Verdict::Accept { data: None });
        // An answer too large for the completion record is not passed on.
        let large = script(
            dir.path(),
            r#"printf '{"x":"'; head -c 40000 /dev/zero | tr '\0' a; printf '"}'"#,
        );
        assert_eq!(run(large, 10).unwrap(), Verdict::Accept { data: None });
        let fits = script(
            dir.path(),
            r#"printf '{"x":"'; head -c 30000 /dev/zero | tr '\0' a; printf '"}'"#,
        );
        assert!(matches!(
            run(fits, 10).unwrap(),
            Verdict::Accept { data: Some(_) }
        ));
        let reject = script(
            dir.path(),
            "echo '' >&2; echo 'virus found: EICAR' >&2; echo more >&2; exit 1",
        );
        assert_eq!(
            run(reject, 10).unwrap(),
            Verdict::Reject {
                reason: "virus found: EICAR".into()
            }
        );
        let silent = script(dir.path(), "exit 9");
        assert!(
            matches!(run(silent, 10).unwrap(), Verdict::Reject { reason } if reason.contains("exit 9"))
        );
        let later = script(dir.path(), "echo 'database down' >&2; exit 75");
        assert!(
            matches!(run(later, 10), Err(HookError::TryLater { stderr, .. }) if stderr.contains("database down"))
        );
        let crash = script(dir.path(), "kill -SEGV $$");
        assert!(matches!(
            run(crash, 10),
            Err(HookError::Killed { signal: 11, .. })
        ));
        let missing = dir.path().join("no-such-hook");
        assert!(matches!(run(missing, 10), Err(HookError::Start { .. })));
    }

    #[test]
    fn the_request_does_not_reach_the_hooks_environment() {
        for name in [
            "HTTP_PROXY",
            "GATEWAY_INTERFACE",
            "QUERY_STRING",
            "RESUMABLE_TEMP_DIR",
        ] {
            assert!(!inherited(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "HOME", "UPLOADS_URL", "REMOTE_ADDR"] {
            assert!(inherited(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn a_hook_past_its_time_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let slow = script(
            dir.path(),
            &format!("sleep 300 & echo $! > {}; wait", marker.display()),
        );
        assert!(matches!(run(slow, 1), Err(HookError::Timeout { .. })));
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was in the hook's group: killed, so gone (or a zombie of
        // init's) as soon as the kernel has finished it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                break;
            }
            assert!(Instant::now() < deadline, "{state}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_hook_that_leaves_a_process_holding_its_pipes_is_still_done_when_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let leaves = script(
            dir.path(),
            &format!(
                "sleep 30 & echo $! > {}; echo '{{\"ok\":1}}'",
                marker.display()
            ),
        );
        assert_eq!(
            run(leaves, 20).unwrap(),
            Verdict::Accept {
                data: Some(serde_json::json!({"ok": 1}))
            }
        );
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }

    #[test]
    fn a_large_input_and_output_do_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        // Writes 1 MiB before reading stdin: both pipes full at once.
        let chatty = script(dir.path(), "head -c 1048576 /dev/zero; cat > /dev/null");
        let mut metadata = Map::new();
        metadata.insert("big".into(), Value::String("x".repeat(1 << 20)));
        let input = HookInput {
            path: Path::new("/x"),
            name: "x",
            size: 0,
            identifier: "x",
            client: "form",
            user: Some("alice"),
            metadata: &metadata,
        };
        let hook = Hook {
            program: chatty,
            timeout: Duration::from_secs(30),
        };
        assert_eq!(
            hook.run(&input, &[]).unwrap(),
            Verdict::Accept { data: None }
        );
    }
}
