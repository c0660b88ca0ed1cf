//! Support shared by the reliability suites (races, crashes, disk, corpus): trial counts for CI
//! and for long manual runs, and the checks that an upload finished exactly once and left
//! nothing behind.
#![allow(dead_code)]

use std::path::Path;

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

/// Exactly one published copy of `upload`, under `name`, with its bytes.
pub fn assert_exactly_one_copy(uploads: &Path, upload: &dyn Chunked, name: &str, context: &str) {
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
