//! The suite's one process guard: a process a test started (or adopted from a pid file),
//! stopped by PID when dropped, also when an assertion fails.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// How long a process may take over SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A process this test started. Dropping it stops it by PID, then the children it had (found
/// through /proc by parent PID, e.g. fcgiwrap's preforked workers): SIGTERM, and SIGKILL after a
/// grace time, or SIGKILL at once after [`Proc::kill_on_drop`]. A process already reaped is never
/// signalled again: its PID may belong to another process by then.
pub struct Proc {
    pub name: String,
    pub pid: i32,
    child: Option<Child>,
    status: Option<ExitStatus>,
    grace: Duration,
}

impl Proc {
    /// Starts `cmd` with the stdin, stdout and stderr it was given.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            pid: child.id() as i32,
            child: Some(child),
            status: None,
            grace: GRACE,
        }
    }

    /// Starts `cmd` with no stdin and its stdout and stderr in the file `log`.
    pub fn spawn_logged(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        Proc::spawn(name, cmd.stdin(Stdio::null()).stdout(out).stderr(err))
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
                        status: None,
                        grace: GRACE,
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

    /// Dropping sends SIGKILL at once: for this program's own processes, whose end a test
    /// either watched already or no longer cares about.
    pub fn kill_on_drop(mut self) -> Proc {
        self.grace = Duration::ZERO;
        self
    }

    /// The child process (its pipes, say). Panics for an adopted process.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| panic!("{}: not a child of this test", self.name))
    }

    /// Its exit status if it has ended (reaping it). Panics for an adopted process.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child().try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for it to end. Panics for an adopted process.
    pub fn wait(&mut self) -> ExitStatus {
        if self.status.is_none() {
            self.status = Some(self.child().wait().expect("wait"));
        }
        self.status.unwrap()
    }

    /// Waits at most `limit` for it to end; its exit status if it did.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Running, and not a zombie.
    pub fn is_running(&mut self) -> bool {
        if self.child.is_some() {
            self.try_wait().is_none()
        } else {
            alive(self.pid)
        }
    }

    /// Sends `signal`; false if it could not be delivered (also once the process was reaped).
    pub fn signal(&self, signal: Signal) -> bool {
        self.status.is_none() && send(self.pid, signal)
    }

    /// SIGKILL now, without waiting for the end.
    pub fn kill(&self) {
        self.signal(Signal::KILL);
    }

    /// Waits at most `limit`, then kills; returns its exit status and what it wrote to its
    /// stdout and stderr pipes.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, Vec<u8>) {
        if self.wait_timeout(limit).is_none() {
            self.kill();
        }
        let child = self.child.take().expect("a child of this test");
        let output = child.wait_with_output().expect("reap");
        self.status = Some(output.status);
        (output.status, output.stdout, output.stderr)
    }

    fn stop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // The parent first, then the children it had: a supervisor such as fcgiwrap -c N respawns
        // a worker that dies while it still runs (killing children first leaked respawned ones).
        let children = children_of(self.pid);
        let first = if self.grace.is_zero() {
            Signal::KILL
        } else {
            Signal::TERM
        };
        self.signal(first);
        if !self.wait_gone(self.grace) {
            self.signal(Signal::KILL);
            self.wait_gone(GRACE);
        }
        for &child in &children {
            send(child, first);
        }
        let deadline = Instant::now() + self.grace;
        while children.iter().any(|&c| alive(c)) {
            if Instant::now() > deadline {
                for &child in &children {
                    send(child, Signal::KILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_gone(&mut self, limit: Duration) -> bool {
        if self.child.is_some() {
            return self.wait_timeout(limit).is_some();
        }
        let deadline = Instant::now() + limit;
        loop {
            if !alive(self.pid) {
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
fn send(pid: i32, signal: Signal) -> bool {
    match Pid::from_raw(pid).filter(|_| pid > 1) {
        Some(pid) => kill_process(pid, signal).is_ok(),
        None => false,
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
