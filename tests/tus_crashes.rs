//! SIGKILL in the middle of a tus PATCH (and of a blueimp chunk), at every step of storing and
//! completing a byte-range upload: the process is killed at the entry of an exact syscall by
//! `strace -e inject=<syscall>:signal=SIGKILL:when=<n>`, or by PID while its body streams. The
//! client then does what tus-js-client does after a network error — HEAD, and PATCH the rest
//! from the offset it is told — (blueimp: the resume GET, then the rest). Then: nothing lost
//! (the published file is the source, byte for byte), published exactly once, nothing left but
//! small records, and a watcher that looked at the upload dir all along never saw a partial file.

mod common;
mod range_support;
mod reliability;

use std::io::Write;

use common::Proc;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use range_support::*;
use reliability::*;

const STRACE: &str = "/usr/bin/strace";
const LIMIT: Duration = Duration::from_secs(30);

/// Where a PATCH that completes its upload is killed (see the syscall sequence in
/// src/store/range.rs): appending the body (write), making it durable (fdatasync), giving the
/// data its staging name (the first linkat: temp and upload dirs share a filesystem here),
/// publishing (the second linkat), syncing the upload dir (fsync), the record (renameat), the
/// staging file's and the data's removal (unlinkat).
const POINTS: [(&str, &str, u32); 8] = [
    ("mid_body", "write", 3),
    ("before_datasync", "fdatasync", 1),
    ("before_staging_link", "linkat", 1),
    ("before_publish", "linkat", 2),
    ("published_before_record", "fsync", 1),
    ("record_before_rename", "renameat", 1),
    ("before_staging_removed", "unlinkat", 1),
    ("before_data_removed", "unlinkat", 2),
];

/// The binary under strace, which kills it at the entry of the `when`-th `syscall`.
fn under_strace(base: Command, syscall: &str, when: u32) -> Command {
    let mut command = Command::new(STRACE);
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=SIGKILL:when={when}"))
        .arg(binary())
        .env_clear()
        .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(base.get_current_dir().unwrap_or(Path::new(".")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` with `body` on stdin (written in pipe-sized pieces), bounded; answers whether
/// it died of SIGKILL.
fn run_killed(command: Command, body: &[u8]) -> bool {
    let mut child = Proc::spawn("resumable-cgi", &mut { command }).kill_on_drop();
    let mut stdin = child.child().stdin.take().expect("stdin");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        for piece in body.chunks(64 * 1024) {
            if stdin.write_all(piece).is_err() {
                break;
            }
        }
    });
    let (status, _, stderr) = child.finish(LIMIT);
    let _ = writer.join();
    assert!(!String::from_utf8_lossy(&stderr).contains("panicked"));
    status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL)
}

/// Looks at the upload dir all along: a file under a final name is always the whole file, and
/// there is never more than one.
struct Watcher {
    stop: Arc<AtomicBool>,
    problems: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Watcher {
    fn start(uploads: PathBuf, sha: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (stop.clone(), problems.clone());
        let thread = std::thread::spawn(move || {
            let mut looks = 0;
            while !s.load(Ordering::Relaxed) {
                let names: Vec<String> = published_files(&uploads);
                for name in &names {
                    if let Ok(bytes) = std::fs::read(uploads.join(name)) {
                        if sha256_hex(&bytes) != sha {
                            p.lock()
                                .unwrap()
                                .push(format!("{name}: {} bytes, not the file", bytes.len()));
                        }
                    }
                }
                if names.len() > 1 {
                    p.lock().unwrap().push(format!("two copies: {names:?}"));
                }
                looks += 1;
            }
            looks
        });
        Watcher {
            stop,
            problems,
            thread: Some(thread),
        }
    }

    fn finish(mut self, context: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let looks = self.thread.take().map(|t| t.join().unwrap()).unwrap_or(0);
        let problems = self.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "{context}: {problems:?}");
        looks
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Published once, byte-identical; in the temp dir only the upload's state and record; an
/// empty staging folder.
fn assert_finished_once(t: &dyn Target, name: &str, data: &[u8], context: &str) {
    assert_eq!(published_files(t.uploads()), [name], "{context}");
    let stored = std::fs::read(t.uploads().join(name)).unwrap();
    assert_eq!(sha256_hex(&stored), sha256_hex(data), "{context}: bytes");
    for path in temp_files(t) {
        assert!(
            path.ends_with("/state") || path.ends_with("/complete"),
            "{context}: left {path}"
        );
    }
    let staging = t.uploads().join(".resumable-staging");
    if let Ok(entries) = std::fs::read_dir(&staging) {
        assert_eq!(entries.count(), 0, "{context}: staging not empty");
    }
}

/// What tus-js-client does after the PATCH failed: HEAD, then the rest from the offset (if
/// any is missing). Answers the answer that names the published file.
fn tus_recover(t: &dyn Target, path: &str, data: &[u8], context: &str) -> TestResponse {
    let head_answer = t.call(&head(path));
    assert_eq!(head_answer.status, 200, "{context}: HEAD");
    let offset: usize = head_answer
        .header("Upload-Offset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset <= data.len(), "{context}: offset {offset}");
    if offset == data.len() {
        return head_answer;
    }
    let rest = t.call(&patch(path, offset as u64, &data[offset..]));
    assert_eq!(rest.status, 204, "{context}: PATCH the rest at {offset}");
    rest
}

#[test]
fn tus_patch_killed_at_every_step() {
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is needed (scripts/install-test-deps)"
    );
    let mut killed = 0;
    let mut looks = 0;
    let mut trial_count = 0;
    for (i, (point, syscall, when)) in POINTS.iter().enumerate() {
        for round in 0..trials(3) {
            let seed = (i * 100 + round) as u64;
            let t = CgiTarget::new(&[]);
            let name = format!("tus-{point}-{round}.bin");
            let data = pseudo_random(600_000 + 70_001 * round, seed);
            let sha = sha256_hex(&data);
            let watcher = Watcher::start(t.uploads().to_path_buf(), sha);
            let path = create(&t, data.len() as u64, &[("filename", &name)]);
            // Some rounds PATCH a first part normally; the killed PATCH carries the rest.
            let at = if round % 2 == 1 { 100_000 } else { 0 };
            if at > 0 {
                assert_eq!(t.call(&patch(&path, 0, &data[..at])).status, 204);
            }
            let context = format!("{point} round {round}");
            let req = patch(&path, at as u64, &data[at..]);
            if run_killed(under_strace(t.command(&req), syscall, *when), &req.body) {
                killed += 1;
            }
            let done = tus_recover(&t, &path, &data, &context);
            assert_eq!(published(&t, &done).0, name, "{context}");
            assert_finished_once(&t, &name, &data, &context);
            // The client, told the upload is complete, asks again later: nothing changes.
            assert_eq!(offset_of(&t, &path), data.len() as u64);
            assert_finished_once(&t, &name, &data, &context);
            looks += watcher.finish(&context);
            trial_count += 1;
        }
    }
    eprintln!("{trial_count} tus PATCHes killed at {} points ({killed} died of SIGKILL); the watcher looked {looks} times", POINTS.len());
    assert_eq!(killed, trial_count, "every trial must have been killed");
}

/// Killed by PID while its body is only partly sent: exactly the bytes written stay (the next
/// HEAD reports them), and the upload finishes from there.
#[test]
fn tus_patch_killed_while_its_body_streams() {
    for round in 0..trials(4) {
        let t = CgiTarget::new(&[]);
        let data = pseudo_random(2_000_000, 50 + round as u64);
        let name = format!("stream-{round}.bin");
        let path = create(&t, data.len() as u64, &[("filename", &name)]);
        let req = patch(&path, 0, &data);
        let mut child = Proc::spawn("resumable-cgi", &mut t.command(&req)).kill_on_drop();
        let mut stdin = child.child().stdin.take().unwrap();
        let cut = 300_000 + round * 250_000;
        stdin.write_all(&data[..cut]).unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while offset_of(&t, &path) < cut as u64 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the bytes never landed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill();
        child.finish(LIMIT);
        drop(stdin);
        assert_eq!(
            offset_of(&t, &path),
            cut as u64,
            "round {round}: exactly what was written"
        );
        let done = tus_recover(&t, &path, &data, &format!("stream round {round}"));
        assert_eq!(published(&t, &done).1, data);
        assert_finished_once(&t, &name, &data, &format!("stream round {round}"));
    }
}

/// A checksummed PATCH (held aside, verified, then appended) and a blueimp chunk (the same
/// append) killed while they are appended, and again as they publish.
#[test]
fn staged_appends_killed_mid_copy() {
    for (point, syscall, when) in [("append", "copy_file_range", 1), ("publish", "linkat", 1)] {
        // tus with Upload-Checksum: the killed PATCH completes the upload.
        let t = CgiTarget::new(&[]);
        let data = pseudo_random(500_000, 7);
        let name = format!("checksum-{point}.bin");
        let path = create(&t, data.len() as u64, &[("filename", &name)]);
        let digest = b64(&sha2::Sha256::digest(&data));
        let req = patch(&path, 0, &data).header("Upload-Checksum", &format!("sha256 {digest}"));
        assert!(run_killed(
            under_strace(t.command(&req), syscall, when),
            &req.body
        ));
        let context = format!("checksum {point}");
        let done = tus_recover(&t, &path, &data, &context);
        assert_eq!(published(&t, &done).1, data, "{context}");
        assert_finished_once(&t, &name, &data, &context);

        // blueimp: the last of three chunks killed; the resume GET says where to go on.
        let t = CgiTarget::new(&[]);
        let name = format!("blueimp-{point}.bin");
        let total = data.len() as u64;
        for start in [0, 200_000] {
            let chunk = blueimp_chunk(
                &name,
                start,
                &data[start as usize..start as usize + 200_000],
                total,
                true,
            );
            assert_eq!(t.call(&chunk).status, 200);
        }
        let last = blueimp_chunk(&name, 400_000, &data[400_000..], total, true);
        assert!(run_killed(
            under_strace(t.command(&last), syscall, when),
            &last.body
        ));
        let context = format!("blueimp {point}");
        let stored = t.call(&blueimp_resume(&name)).json()["file"]["size"].as_u64();
        match stored {
            // Not all appended: send the rest from there, as the recipe's retry does.
            Some(size) if size < total => {
                let rest = blueimp_chunk(&name, size, &data[size as usize..], total, true);
                assert_eq!(t.call(&rest).status, 200, "{context}");
            }
            // Every byte was stored but not published: the resume request published it.
            Some(size) => assert_eq!(size, total, "{context}"),
            None => panic!("{context}: nothing stored"),
        }
        assert_finished_once(&t, &name, &data, &context);
    }
}

use sha2::Digest as _;
