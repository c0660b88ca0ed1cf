//! Disk trouble on real filesystems: the temp and upload dirs on a tiny tmpfs that fills up
//! (bytes and inodes) at every step of a chunk and of an assembly, read-only mounts, and a
//! directory that disappears. Full disks answer 503 + Retry-After (retried by every client),
//! nothing corrupt or partial is ever left under a final name, and the upload completes once
//! space is back. Broken installations answer 500 with a log line that names the problem.
//!
//! Mounting needs root. CI runs as root, so these tests fail (not skip) without it, unless
//! RESUMABLE_SKIP_ROOT_TESTS=1 says so explicitly.

mod common;
mod reliability;

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use reliability::*;
use serde_json::Value;

const CHUNK: u64 = 64 << 10;

fn have_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("RESUMABLE_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: not root and RESUMABLE_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!("tests/disk.rs mounts tmpfs and must run as root (set RESUMABLE_SKIP_ROOT_TESTS=1 to skip knowingly)");
}

/// A tmpfs mounted for the test, unmounted when dropped (also on a failed assertion).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, options: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "resumable-test"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs -o {options} failed");
        Tmpfs { dir }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A CGI endpoint whose temp and upload dirs live on `temp_fs` and `upload_fs` (may be the
/// same mount). The scratch root (the CGI's working dir) stays on the ordinary disk.
fn cgi_on(cgi: &mut Cgi, temp_fs: &Path, upload_fs: &Path) {
    cgi.dirs.temp = temp_fs.join("temp");
    cgi.dirs.uploads = upload_fs.join("uploads");
    std::fs::create_dir_all(&cgi.dirs.temp).unwrap();
    std::fs::create_dir_all(&cgi.dirs.uploads).unwrap();
}

/// Fills the filesystem of `dir` completely, then frees `leave` bytes. Returns the filler.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).unwrap();
    let block = vec![0xA5u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(leave)).unwrap();
    path
}

/// Uses up every inode of the filesystem of `dir` but `leave`. Returns the filler folder.
fn fill_inodes(dir: &Path, leave: usize) -> PathBuf {
    let folder = dir.join("inode-filler");
    std::fs::create_dir(&folder).unwrap();
    let mut made = Vec::new();
    for i in 0.. {
        let path = folder.join(i.to_string());
        match File::create(&path) {
            Ok(_) => made.push(path),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling inodes: {e}"),
        }
    }
    for path in made.iter().rev().take(leave) {
        std::fs::remove_file(path).unwrap();
    }
    folder
}

fn expect_503(run: &CgiRun, context: &str) {
    assert_eq!(run.exit_code, Some(0), "{context}");
    assert_eq!(
        run.response.status,
        503,
        "{context}: {}",
        String::from_utf8_lossy(&run.response.body)
    );
    assert_eq!(run.response.header("Retry-After"), Some("30"), "{context}");
    assert_eq!(run.response.json()["success"], Value::Bool(false));
    assert!(
        run.stderr.contains("no space left"),
        "{context}: log names the problem: {}",
        run.stderr
    );
}

/// Nothing under a final name unless it is the whole file.
fn assert_no_partial_file(uploads: &Path, upload: &Upload, context: &str) {
    for name in published_files(uploads) {
        let bytes = std::fs::read(uploads.join(&name)).unwrap();
        assert_eq!(sha256_hex(&bytes), upload.sha256(), "{context}: {name}");
    }
}

#[test]
fn a_full_disk_during_a_chunk_is_a_503_and_counts_nothing() {
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new();
    // Room for the five finished files: the filler takes whatever is free each time.
    let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=4m");
    cgi_on(&mut cgi, &fs.dir, &fs.dir);
    for client in ALL_CLIENTS {
        let name = format!("full-chunk-{client:?}.bin");
        let upload = Upload::new(client, &name, pseudo_random(3 * CHUNK as usize, 1), CHUNK);
        assert_eq!(cgi.send(&upload.chunk_request(1)).status, 200);
        let filler = fill(&fs.dir, 0);
        let run = cgi.run(&upload.chunk_request(2));
        expect_503(&run, &name);
        // Nothing counted, no temporary file left behind.
        assert_eq!(cgi.send(&upload.test_request(2)).status, 204, "{name}");
        assert!(
            snapshot(&cgi.dirs.temp)
                .keys()
                .all(|p| !p.ends_with(".tmp")),
            "{name}: temp file left"
        );
        std::fs::remove_file(filler).unwrap();
        // The client's retry succeeds once space is back.
        assert_eq!(cgi.send(&upload.chunk_request(2)).status, 200);
        let done = cgi.send(&upload.chunk_request(3));
        assert_eq!(scenarios::assert_published(&cgi, &upload, &done), name);
    }
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, "full chunk");
}

#[test]
fn a_full_disk_during_assembly_is_a_503_and_completes_once_space_is_back() {
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new();
    let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=2m");
    cgi_on(&mut cgi, &fs.dir, &fs.dir);
    for (i, by_test) in [false, true].into_iter().enumerate() {
        let name = format!("full-assembly-{i}.bin");
        let upload = Upload::new(
            Client::Resumable,
            &name,
            pseudo_random(4 * CHUNK as usize + 1000, 2),
            CHUNK,
        );
        // Chunk 4 waits as a part for chunk 3, which completes the upload: room for chunk 3
        // (written straight into the staging file, where chunks 1 and 2 are already), not for
        // appending part 4 after it.
        scenarios::upload_in_order(&cgi, &upload, &[4, 1, 2]);
        let filler = fill(&fs.dir, CHUNK + 16384);
        let run = cgi.run(&upload.chunk_request(3));
        expect_503(&run, &name);
        assert_no_partial_file(&cgi.dirs.uploads, &upload, &name);
        assert!(published_files(&cgi.dirs.uploads)
            .iter()
            .all(|f| !f.starts_with(&format!("full-assembly-{i}"))));
        // Testing the last chunk retries the assembly: still full, still 503.
        expect_503(&cgi.run(&upload.test_request(4)), &name);
        std::fs::remove_file(filler).unwrap();
        let done = if by_test {
            // A reloaded client only tests: the test of the present last chunk completes.
            cgi.send(&upload.test_request(4))
        } else {
            cgi.send(&upload.chunk_request(4))
        };
        assert_eq!(done.json()["completedNow"], Value::Bool(true));
        assert_eq!(scenarios::assert_published(&cgi, &upload, &done), name);
    }
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, "full assembly");
}

/// Every amount of free space from none to plenty when the completing chunk arrives: the
/// answer is 200 or 503, never anything else, and after space is freed and the client retries,
/// exactly one correct copy exists.
#[test]
fn every_amount_of_free_space_ends_in_exactly_one_correct_file() {
    if !have_root() {
        return;
    }
    let steps = trials(24);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new();
    for step in 0..steps {
        let mut cgi = Cgi::new();
        let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=1m");
        cgi_on(&mut cgi, &fs.dir, &fs.dir);
        let client = ALL_CLIENTS[step % ALL_CLIENTS.len()];
        let name = format!("sweep-{step}.bin");
        let upload = Upload::new(
            client,
            &name,
            pseudo_random(3 * 32768 + 999, step as u64),
            32768,
        );
        scenarios::upload_in_order(&cgi, &upload, &[2, 3]);
        let leave = (step as u64 * 240 * 1024) / steps as u64;
        let filler = fill(&fs.dir, leave);
        let run = cgi.run(&upload.chunk_request(1));
        let context = format!("{name} with {leave} bytes free");
        assert!(
            matches!(run.response.status, 200 | 503),
            "{context}: {}",
            run.response.status
        );
        *outcomes.entry(run.response.status).or_default() += 1;
        assert_no_partial_file(&cgi.dirs.uploads, &upload, &context);
        std::fs::remove_file(filler).unwrap();
        let done = cgi.send(&upload.chunk_request(1));
        assert_eq!(done.status, 200, "{context}");
        assert_exactly_one_copy(&cgi.dirs.uploads, &upload, &name, &context);
        assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, &context);
    }
    eprintln!("free-space sweep: {steps} steps, outcomes {outcomes:?}");
    assert!(outcomes.contains_key(&503) && outcomes.contains_key(&200));
}

/// Out of inodes at each file creation a completing chunk does (its temp file, the staging
/// folder and file, the record): 503, then a clean completion.
#[test]
fn running_out_of_inodes_is_a_503_too() {
    if !have_root() {
        return;
    }
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new();
    for leave in 0..6 {
        let mut cgi = Cgi::new();
        let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=4m,nr_inodes=64");
        cgi_on(&mut cgi, &fs.dir, &fs.dir);
        let name = format!("inodes-{leave}.bin");
        let upload = Upload::new(Client::Flow, &name, pseudo_random(3000, leave as u64), 1000);
        scenarios::upload_in_order(&cgi, &upload, &[1, 2]);
        let filler = fill_inodes(&fs.dir, leave);
        let run = cgi.run(&upload.chunk_request(3));
        let context = format!("{name}, {leave} inodes free");
        assert!(
            matches!(run.response.status, 200 | 503),
            "{context}: {}",
            run.stderr
        );
        if run.response.status == 503 {
            expect_503(&run, &context);
        }
        *outcomes.entry(run.response.status).or_default() += 1;
        assert_no_partial_file(&cgi.dirs.uploads, &upload, &context);
        std::fs::remove_dir_all(filler).unwrap();
        let done = cgi.send(&upload.chunk_request(3));
        assert_eq!(done.status, 200, "{context}");
        assert_exactly_one_copy(&cgi.dirs.uploads, &upload, &name, &context);
        assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, &context);
    }
    eprintln!("inode sweep outcomes {outcomes:?}");
    assert!(outcomes.contains_key(&503));
}

fn expect_500_naming(run: &CgiRun, needle: &str, context: &str) {
    assert_eq!(run.exit_code, Some(0), "{context}");
    assert_eq!(run.response.status, 500, "{context}: {}", run.stderr);
    assert!(
        run.stderr.contains("ERROR") && run.stderr.contains(needle),
        "{context}: the log line names {needle:?}: {}",
        run.stderr
    );
}

#[test]
fn read_only_dirs_are_a_500_that_says_so_and_recover_when_writable() {
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new();
    let temp_fs = Tmpfs::mount(cgi.dirs.root.path().join("tmnt"), "size=4m");
    let up_fs = Tmpfs::mount(cgi.dirs.root.path().join("umnt"), "size=4m");
    cgi_on(&mut cgi, &temp_fs.dir, &up_fs.dir);
    let upload = Upload::new(Client::Resumable, "ro.bin", pseudo_random(3000, 9), 1000);
    assert_eq!(cgi.send(&upload.chunk_request(1)).status, 200);

    // Read-only temp dir: chunks cannot be stored; tests still answer.
    temp_fs.remount("ro");
    expect_500_naming(
        &cgi.run(&upload.chunk_request(2)),
        "Read-only file system",
        "ro temp",
    );
    assert_eq!(cgi.send(&upload.test_request(1)).status, 200);
    assert_eq!(cgi.send(&upload.test_request(2)).status, 204);
    temp_fs.remount("rw");
    assert_eq!(cgi.send(&upload.chunk_request(2)).status, 200);

    // Read-only upload dir: the last chunk is stored, the assembly fails, nothing published.
    up_fs.remount("ro");
    expect_500_naming(
        &cgi.run(&upload.chunk_request(3)),
        "Read-only file system",
        "ro uploads",
    );
    up_fs.remount("rw");
    assert!(published_files(&cgi.dirs.uploads).is_empty());
    let done = cgi.send(&upload.test_request(3));
    assert_eq!(scenarios::assert_published(&cgi, &upload, &done), "ro.bin");
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, "read-only");
    drop(up_fs);
    drop(temp_fs);
}

#[test]
fn an_upload_dir_that_vanishes_mid_upload_is_a_500_naming_it() {
    // No mount needed: runs as any user.
    let cgi = Cgi::new();
    let upload = Upload::new(Client::Flow, "vanish.bin", pseudo_random(3000, 9), 1000);
    scenarios::upload_in_order(&cgi, &upload, &[1, 2]);
    // Chunks 1 and 2 are in the upload dir's staging folder by now, and go with it.
    std::fs::remove_dir_all(&cgi.dirs.uploads).unwrap();
    let path = cgi.dirs.uploads.to_string_lossy().into_owned();
    expect_500_naming(&cgi.run(&upload.chunk_request(3)), &path, "upload dir gone");
    // And the temp dir gone: the log names that one.
    let other = Cgi::new();
    std::fs::remove_dir(&other.dirs.temp).unwrap();
    let temp = other.dirs.temp.to_string_lossy().into_owned();
    expect_500_naming(&other.run(&upload.test_request(1)), &temp, "temp dir gone");
    std::fs::create_dir(&cgi.dirs.uploads).unwrap();
    // The client's test requests find chunks 1 and 2 missing, and it sends them again.
    for number in [1, 2] {
        assert_eq!(cgi.send(&upload.test_request(number)).status, 204);
    }
    let done = scenarios::upload_in_order(&cgi, &upload, &[3, 1, 2]);
    assert_eq!(
        scenarios::assert_published(&cgi, &upload, &done),
        "vanish.bin"
    );
    let _ = ErrorKind::NotFound;
}

/// A form upload on a full disk (a real tmpfs): the file that does not fit is error 7 (PHP's
/// "failed to write"), cut off with its bytes removed, and the files around it are stored
/// (200, so that a retry does not store them twice). When nothing could be stored the status
/// is 503 + Retry-After, and out of inodes no file can even be created: error 6, 503 too.
/// (The free-space check at the start, which would refuse this form whole since its body is
/// larger than the disk, is off: this is about the disk filling while the files arrive.)
#[test]
fn a_full_disk_during_a_form_upload_is_error_7_for_the_file_that_does_not_fit() {
    use common::forms::*;
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new().with_env("RESUMABLE_MIN_FREE_SPACE", "0");
    let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=1m,nr_inodes=64");
    cgi_on(&mut cgi, &fs.dir, &fs.dir);
    let small = pseudo_random(10_000, 1);
    let big = pseudo_random(2 << 20, 2);
    let run = cgi.run(&form_request(&[
        file("f", "small-1.bin", &small),
        file("f", "big.bin", &big),
        file("f", "small-2.bin", &small),
    ]));
    assert_eq!(run.response.status, 200, "{}", run.stderr);
    assert_eq!(codes(&run.response), [0, 7, 0]);
    assert!(run.stderr.contains("no space left"), "{}", run.stderr);
    assert_eq!(
        published_files(&cgi.dirs.uploads),
        ["small-1.bin", "small-2.bin"]
    );
    assert!(staging_is_empty(&cgi.dirs.uploads));

    // Not a byte free: nothing stored, 503 with Retry-After; once space is back the retry works.
    let filler = fill(&fs.dir, 0);
    let request = form_request(&[file("f", "retry.bin", &small)]);
    let run = cgi.run(&request);
    expect_503(&run, "form on a full disk");
    assert_eq!(codes(&run.response), [7]);
    assert!(staging_is_empty(&cgi.dirs.uploads));
    std::fs::remove_file(filler).unwrap();

    // No inode left: the file to receive into cannot be created.
    let inodes = fill_inodes(&fs.dir, 0);
    let run = cgi.run(&request);
    assert_eq!(run.response.status, 503, "{}", run.stderr);
    assert_eq!(codes(&run.response), [6]);
    std::fs::remove_dir_all(inodes).unwrap();

    let run = cgi.run(&request);
    assert_eq!(codes(&run.response), [0]);
    assert_eq!(
        std::fs::read(cgi.dirs.uploads.join("retry.bin")).unwrap(),
        small
    );
}

/// RESUMABLE_MIN_FREE_SPACE: a new upload that would leave less free is refused before anything
/// of it is stored; an upload already running is not asked, and completes.
#[test]
fn a_new_upload_that_would_leave_too_little_free_is_a_503_and_running_ones_go_on() {
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new().with_env("RESUMABLE_MIN_FREE_SPACE", "1M");
    let fs = Tmpfs::mount(cgi.dirs.root.path().join("mnt"), "size=8m");
    cgi_on(&mut cgi, &fs.dir, &fs.dir);
    let running = Upload::new(
        Client::Resumable,
        "running.bin",
        pseudo_random(1 << 20, 15),
        CHUNK,
    );
    assert_eq!(cgi.send(&running.chunk_request(1)).status, 200);
    // 2.5 MiB free: a new 1 MiB upload needs its parts and its file (2 MiB) plus the 1 MiB floor.
    let filler = fill(&fs.dir, 5 << 19);
    let new = Upload::new(
        Client::ResumableOctet,
        "new.bin",
        pseudo_random(1 << 20, 16),
        CHUNK,
    );
    for request in [
        new.chunk_request(1),
        new.chunk_request(2),
        new.chunk_request(16),
    ] {
        let run = cgi.run(&request);
        assert_eq!(run.exit_code, Some(0));
        assert_eq!(run.response.status, 503, "{:?}", run.response.json());
        assert_eq!(run.response.header("Retry-After"), Some("30"));
        assert_eq!(
            run.response.json()["error"],
            "the server is low on disk space; retry later"
        );
        assert!(
            run.stderr.contains("RESUMABLE_MIN_FREE_SPACE")
                && run.stderr.contains("temp directory"),
            "{}",
            run.stderr
        );
    }
    assert!(
        !cgi.dirs.temp.join(&new.identifier).exists(),
        "nothing stored for it"
    );
    let rest: Vec<u64> = (2..=running.chunk_count()).collect();
    let last = scenarios::upload_in_order(&cgi, &running, &rest);
    scenarios::assert_published(&cgi, &running, &last);
    // Space again: the new upload starts and completes.
    std::fs::remove_file(filler).unwrap();
    let last = scenarios::upload_all(&cgi, &new);
    scenarios::assert_published(&cgi, &new, &last);
}

/// The floor as a share of the filesystem, checked on the upload dir's own filesystem.
#[test]
fn the_free_space_floor_is_a_share_of_each_filesystem_the_upload_uses() {
    if !have_root() {
        return;
    }
    let mut cgi = Cgi::new().with_env("RESUMABLE_MIN_FREE_SPACE", "50%");
    let temp_fs = Tmpfs::mount(cgi.dirs.root.path().join("tmnt"), "size=64m");
    let upload_fs = Tmpfs::mount(cgi.dirs.root.path().join("umnt"), "size=4m");
    cgi_on(&mut cgi, &temp_fs.dir, &upload_fs.dir);
    // 4 MiB for files, half of which must stay free: 1.5 MiB fits, then 1 MiB no longer does.
    let fits = Upload::new(Client::Flow, "fits.bin", pseudo_random(3 << 19, 17), CHUNK);
    let last = scenarios::upload_all(&cgi, &fits);
    scenarios::assert_published(&cgi, &fits, &last);
    let too_big = Upload::new(
        Client::Flow,
        "too-big.bin",
        pseudo_random(1 << 20, 18),
        CHUNK,
    );
    let run = cgi.run(&too_big.chunk_request(1));
    assert_eq!(run.response.status, 503);
    assert!(
        run.stderr.contains("the upload directory"),
        "{}",
        run.stderr
    );
    assert!(!cgi.dirs.temp.join(&too_big.identifier).exists());
}
