//! The suite's one scratch directory: a fresh directory under the system temp dir, reachable by
//! the web servers' user, removed when dropped and kept (and named) when its test failed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The uid and gid of www-data (Debian), the user the web servers under test run as.
pub const WWW_DATA: u32 = 33;

/// `rcgi-LABEL-PID-N` under the temp dir, mode 0755. Removed when dropped, unless the thread is
/// panicking: then it stays for inspection and its path is printed with the failure.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A fresh directory; `label` says what it is for, so a kept one is easy to find.
    pub fn new(label: &str) -> Scratch {
        // unique per process and per call: tests run in parallel threads of one process
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("rcgi-{label}-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { path }
    }

    /// A fresh directory labelled with the running test's name (libtest names each test's
    /// thread after it), kept short: unix socket paths inside it must stay under 108 bytes.
    pub fn for_this_test() -> Scratch {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("test");
        let test = name.rsplit("::").next().unwrap_or(name);
        let label: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32)
            .collect();
        Scratch::new(&label)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory (parents included, mode 0755), owned by www-data when `www_data` is set
    /// (where the web server's user writes).
    pub fn dir(&self, rel: &str, www_data: bool) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        if www_data {
            std::os::unix::fs::chown(&p, Some(WWW_DATA), Some(WWW_DATA)).unwrap();
        }
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
