//! What a CGI process undoes when its web server ends it with a signal: the half-written chunk
//! file it was streaming into, and the completion hook's process group it was waiting on.
//!
//! Apache's mod_cgid sends SIGTERM to the program when the client's body breaks off (a closed
//! or reset connection, a stall past `Timeout`). Without this the program died mid-read and
//! left its temporary chunk file behind until the upload completed or the cleanup ran. Only
//! the CGI transport turns this on; a FastCGI worker treats SIGTERM as "finish in-flight
//! requests and stop" instead, and an upload killed with SIGKILL still loses nothing (its
//! temporary file never counts).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::process::{kill_process_group, Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Whether anything is registered at all (only in a CGI process).
static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static PENDING: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());

enum Undo {
    /// A file to remove: the directory it is in, and its name there.
    File { dir: OwnedFd, name: String },
    /// A process group to kill.
    Group(Pid),
}

/// Keeps something registered until dropped.
#[must_use]
pub struct Registration(Option<u64>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            pending().retain(|(n, _)| *n != id);
        }
    }
}

fn pending() -> std::sync::MutexGuard<'static, Vec<(u64, Undo)>> {
    // A panic elsewhere while holding it leaves the list as valid as it was.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(undo: impl FnOnce() -> Option<Undo>) -> Registration {
    if !ENABLED.load(Ordering::SeqCst) {
        return Registration(None);
    }
    let Some(undo) = undo() else {
        return Registration(None);
    };
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    pending().push((id, undo));
    Registration(Some(id))
}

/// Removes `dir/name` if the process is told to stop before the registration is dropped.
pub fn remove_on_signal(dir: &OwnedFd, name: &str) -> Registration {
    register(|| {
        let dir = dir.try_clone().ok()?;
        Some(Undo::File {
            dir,
            name: name.to_string(),
        })
    })
}

/// Kills the process group led by `pid` if the process is told to stop meanwhile.
pub fn kill_on_signal(pid: Pid) -> Registration {
    register(|| Some(Undo::Group(pid)))
}

/// Turns the registry on and starts the thread that undoes it on SIGTERM, SIGINT or SIGHUP,
/// then ends the process as that signal would have.
pub fn install_for_cgi() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    ENABLED.store(true, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                undo_all(signal);
                // Ends the process as the signal's default action would (the web server sees a
                // death by SIGTERM, as before).
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

fn undo_all(signal: i32) {
    let mut list = pending();
    let (mut files, mut groups) = (0, 0);
    for (_, undo) in list.drain(..) {
        match undo {
            Undo::File { dir, name } => {
                if crate::store::fsutil::remove_file(std::os::fd::AsFd::as_fd(&dir), &name).is_ok()
                {
                    files += 1;
                }
            }
            Undo::Group(pid) => {
                if kill_process_group(pid, Signal::KILL).is_ok() {
                    groups += 1;
                }
            }
        }
    }
    log::warn!(
        "stopped by signal {signal} before the response was written: removed {files} unfinished \
         chunk file(s), killed {groups} completion hook(s)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_registered_unless_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        let fd = crate::store::fsutil::open_root(dir.path()).unwrap();
        let registration = remove_on_signal(&fd, "x");
        assert!(registration.0.is_none());
    }
}
