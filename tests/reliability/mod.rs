//! Support shared by the reliability suites (races, crashes, disk, corpus): trial counts for CI
//! and for long manual runs, processes that are killed by PID whatever happens, and the checks
//! that an upload finished exactly once and left nothing behind.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::common::*;

/// `RESUMABLE_STRESS=long` multiplies every trial count (manual runs); CI uses the default.
pub fn stress_factor() -> usize {
    match std::env::var("RESUMABLE_STRESS").as_deref() {
        Ok("long") => 10,
        Ok(other) => other.parse().unwrap_or(1),
        Err(_) => 1,
    }
}

pub fn trials(ci: usize) -> usize {
    ci * stress_factor()
}

/// A child process that is killed (SIGKILL, by its PID) and reaped when dropped, so that a
/// failing assertion never leaves it running.
pub struct Guarded(pub Option<Child>);

impl Guarded {
    pub fn new(child: Child) -> Guarded {
        Guarded(Some(child))
    }

    pub fn pid(&self) -> i32 {
        self.0.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child still owned")
    }

    pub fn kill(&mut self) {
        if let Some(child) = self.0.as_mut() {
            // SAFETY: kill(2) on the PID of our own child, not yet reaped (so not reused).
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        }
    }

    /// Waits at most `limit`, then kills; returns the exit status and stdout.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, Vec<u8>) {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait().expect("try_wait") {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    // SAFETY: as in kill().
                    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let output = child.wait_with_output().expect("reap");
        (output.status, output.stdout, output.stderr)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: as in kill().
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Exactly one published copy of `upload`, under `name`, with its bytes.
pub fn assert_exactly_one_copy(uploads: &Path, upload: &Upload, name: &str, context: &str) {
    let published = published_files(uploads);
    assert_eq!(
        published,
        vec![name.to_string()],
        "{context}: published files"
    );
    let stored = std::fs::read(uploads.join(name)).expect("published file");
    assert_eq!(sha256_hex(&stored), upload.sha256(), "{context}: bytes");
}

/// Nothing but completion records and lock files in the temp dir, nothing in the staging folder.
pub fn assert_clean(temp: &Path, uploads: &Path, context: &str) {
    for (path, kind) in snapshot(temp) {
        assert!(
            kind == "dir" || kept_after_completion(&path),
            "{context}: leftover {path} in the temp dir"
        );
    }
    let staging = uploads.join(".resumable-staging");
    if staging.exists() {
        let left: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().collect();
        assert!(left.is_empty(), "{context}: staging left {left:?}");
    }
}

/// xorshift, for shuffles and choices that reproduce from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
