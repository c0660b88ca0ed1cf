//! SIGKILL at every step of storing a chunk and completing an upload, hundreds of times.
//!
//! The narrow windows (after the body is written, before its rename, halfway through assembly,
//! between publishing and the completion record, during cleanup) are hit deterministically
//! with strace's syscall tampering: `strace -e inject=<syscall>:signal=SIGKILL:when=<n>` kills
//! the very release binary at the entry of its n-th such syscall, before it runs. No
//! fault-injection code exists in the program itself. Wider windows are hit by killing the
//! process by PID while its body streams in, and at random times.
//!
//! After each kill the client does what it would do after a network error: it retries the
//! request, or (a reloaded page) tests every chunk and uploads the missing ones. Then: exactly
//! one published copy with the right bytes, nothing left in the temp or staging dirs, and a
//! watcher thread that looked at the upload dir all along never saw a partial file.

mod common;
mod reliability;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dialects::{ChunkedFile, Dialect};
use common::*;
use reliability::*;
use serde_json::Value;

const STRACE: &str = "/usr/bin/strace";
const CHUNK: u64 = 4096;
const LIMIT: Duration = Duration::from_secs(30);

/// A named point of the store, as the syscall whose entry it is.
///
/// The request that stores an upload's first chunk (src/store/chunk.rs, complete.rs): write
/// the body to the chunk's temp file; flock (the lock: the directory flock kept for earlier
/// builds, then the record lock); renameat (chunk into place); renameat (the geometry file);
/// if it is chunk 1, copy_file_range (appending it to the staging file), unlinkat (the
/// appended part). (Writeback is started only for bytes 32 MiB behind the end: never here.)
///
/// A chunk that continues the staging file once the geometry is recorded (src/store/direct.rs):
/// flock (lock), the staging file cut to where the chunk starts, flock (the lock let go, the
/// chunk's claim kept), the body written into the staging file but its last byte, flock (lock
/// again), the last byte, fcntl (the claim let go), then as every chunk: copy_file_range per
/// stored part that continues it, unlinkat per appended part. The request that completes the
/// upload then: fsync (staging); linkat (publish); fsync (upload dir); fsync (record);
/// renameat (record); unlinkat (staging); unlinkat (parts).
#[derive(Debug, Clone, Copy)]
struct Point {
    name: &'static str,
    syscall: &'static str,
    when: u32,
    victim: Victim,
}

/// Which request of a trial is killed, and what the order of its chunks is made to be so that
/// the request reaches the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The first request, any chunk: stored as a part.
    First,
    /// The first request, chunk 1: stored as a part, then appended to a new staging file.
    FirstChunkFirst,
    /// Chunk 2 right after chunk 1: written straight into the staging file, not completing.
    Direct,
    /// The last request, which completes the upload: written straight in, then the stored
    /// parts after it appended (its chunk is never the last one).
    Completing,
}

const POINTS: [Point; 14] = [
    Point {
        name: "after_chunk_write",
        syscall: "flock",
        when: 1,
        victim: Victim::First,
    },
    Point {
        name: "before_rename",
        syscall: "renameat",
        when: 1,
        victim: Victim::First,
    },
    Point {
        name: "mid_append",
        syscall: "copy_file_range",
        when: 1,
        victim: Victim::FirstChunkFirst,
    },
    Point {
        name: "appended_before_removing_parts",
        syscall: "unlinkat",
        when: 1,
        victim: Victim::FirstChunkFirst,
    },
    Point {
        name: "direct_claimed_before_body",
        syscall: "flock",
        when: 2,
        victim: Victim::Direct,
    },
    Point {
        name: "direct_body_before_last_byte",
        syscall: "flock",
        when: 3,
        victim: Victim::Direct,
    },
    Point {
        // fcntl: 1 the lock, 2 who writes straight in, 3 the claim, 4 the lock let go, 5 the
        // directory's descriptor duplicated, 6 the lock again, 7 the claim let go.
        name: "direct_written_before_release",
        syscall: "fcntl",
        when: 7,
        victim: Victim::Direct,
    },
    Point {
        name: "completing_body_before_last_byte",
        syscall: "flock",
        when: 3,
        victim: Victim::Completing,
    },
    Point {
        name: "completing_append",
        syscall: "copy_file_range",
        when: 1,
        victim: Victim::Completing,
    },
    Point {
        name: "assembled_before_publish",
        syscall: "linkat",
        when: 1,
        victim: Victim::Completing,
    },
    Point {
        name: "after_publish_before_record",
        syscall: "fsync",
        when: 2,
        victim: Victim::Completing,
    },
    Point {
        name: "record_written_before_rename",
        syscall: "renameat",
        when: 1,
        victim: Victim::Completing,
    },
    Point {
        name: "after_record_before_cleanup",
        syscall: "unlinkat",
        when: 1,
        victim: Victim::Completing,
    },
    Point {
        name: "mid_cleanup",
        syscall: "unlinkat",
        when: 3,
        victim: Victim::Completing,
    },
];

/// The points of a counted chunk's requests (src/store/counted.rs): a counted chunk is always
/// stored as a part, so the points of a chunk written straight in are left out, and the
/// request that completes the upload renames its own part into place before the record (the
/// record is its second renameat).
fn counted_points() -> Vec<Point> {
    POINTS
        .iter()
        .filter(|point| point.victim != Victim::Direct)
        .filter(|point| point.name != "completing_body_before_last_byte")
        .map(|&point| match point.name {
            "record_written_before_rename" => Point { when: 2, ..point },
            _ => point,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    At(Point),
    /// Killed by PID while the body is only partly sent and partly written.
    WhileStreaming,
    /// Killed by PID after a random delay while the completing chunk is processed.
    RandomTime,
}

fn require_strace() {
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is needed to kill the binary at exact points (scripts/install-test-deps installs it)"
    );
}

/// The CGI command for `request`, run under strace that kills it at `point`.
fn under_strace(cgi: &Cgi, request: &TestRequest, point: Point) -> Command {
    let base = cgi.command(request);
    let mut command = Command::new(STRACE);
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={}", point.syscall))
        .arg("-e")
        .arg(format!(
            "inject={}:signal=SIGKILL:when={}",
            point.syscall, point.when
        ))
        .arg(binary())
        .env_clear()
        .current_dir(cgi.dirs.root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in base.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command
}

fn killed(status: &ExitStatus) -> bool {
    // strace re-raises the tracee's fatal signal on itself (or exits 128+9).
    status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL)
}

/// Spawns `command`, writes `body` from a thread, waits (bounded). Killed on any failure.
fn run_to_end(mut command: Command, body: &[u8]) -> (ExitStatus, Vec<u8>, String) {
    let mut child = Proc::spawn("resumable-cgi", &mut command).kill_on_drop();
    let mut stdin = child.child().stdin.take().expect("stdin");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let (status, stdout, stderr) = child.finish(LIMIT);
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (status, stdout, stderr)
}

/// Kills the CGI process once part of the body is written to the chunk's temp file.
fn kill_while_streaming(
    cgi: &Cgi,
    request: &TestRequest,
    held_back: usize,
    context: &str,
) -> ExitStatus {
    let mut child = Proc::spawn("resumable-cgi", &mut cgi.command(request)).kill_on_drop();
    let mut stdin = child.child().stdin.take().expect("stdin");
    // Everything but the last `held_back` bytes, in small pieces: the file part is under way, never
    // finished. (The multipart intake does one blocking read per step of multer's parser, so
    // it needs many small reads, not just the bytes, before it reaches the file part.)
    // Never more than a multipart body's closing delimiter: holding back part of the file's
    // data too could stop the body inside the part's headers (a last chunk of a few bytes),
    // before the chunk's temp file exists.
    let held_back = held_back.min(closing_delimiter_len(&request.body));
    let cut = request.body.len().saturating_sub(held_back);
    for piece in request.body[..cut].chunks(32) {
        stdin.write_all(piece).expect("partial body");
        std::thread::sleep(Duration::from_micros(300));
    }
    let deadline = Instant::now() + LIMIT;
    let pid = child.pid;
    while !chunk_temp_file_started(&cgi.dirs.temp) && !has_read(pid, cut) {
        if let Some(status) = child.try_wait() {
            let mut out = String::new();
            if let Some(mut stdout) = child.child().stdout.take() {
                let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
            }
            let mut err = String::new();
            if let Some(mut stderr) = child.child().stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            panic!("{context}: answered before its body was complete ({status}): {out} {err}");
        }
        assert!(
            Instant::now() < deadline,
            "{context}: the body was never taken in: {:?}",
            snapshot(&cgi.dirs.temp)
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill();
    let (status, _, _) = child.finish(LIMIT);
    drop(stdin);
    status
}

/// A chunk's temporary file exists: the request is past its parameters and streaming the body
/// (the intake may gather up to a buffer's worth before the first write, so no byte count).
/// The length of a multipart body's closing `\r\n--boundary--\r\n`, or (a raw octet body) all
/// but its first byte.
fn closing_delimiter_len(body: &[u8]) -> usize {
    let fallback = body.len().saturating_sub(1);
    if !body.ends_with(b"--\r\n") {
        return fallback;
    }
    body.windows(4)
        .rposition(|w| w == b"\r\n--")
        .map_or(fallback, |at| body.len() - at)
}

/// Whether process `pid` has read at least `bytes` (`rchar`): it has taken in the part of the
/// body sent so far, wherever it writes it (a chunk written straight into the staging file
/// leaves no temp file to look for).
fn has_read(pid: i32, bytes: usize) -> bool {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
        return false;
    };
    io.lines()
        .find_map(|line| line.strip_prefix("rchar:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .is_some_and(|read| read >= bytes)
}

fn chunk_temp_file_started(temp: &Path) -> bool {
    let found = snapshot(temp).keys().any(|path| path.ends_with(".tmp"));
    if found {
        // Let the process take in what was sent so far.
        std::thread::sleep(Duration::from_millis(2));
    }
    found
}

/// Kills the CGI process after `delay`, wherever it is by then (or finds it finished).
fn kill_after(cgi: &Cgi, request: &TestRequest, delay: Duration) -> ExitStatus {
    let mut child = Proc::spawn("resumable-cgi", &mut cgi.command(request)).kill_on_drop();
    let mut stdin = child.child().stdin.take().expect("stdin");
    let body = request.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    std::thread::sleep(delay);
    child.kill();
    let (status, _, _) = child.finish(LIMIT);
    let _ = writer.join();
    status
}

/// Looks at the upload dir continuously: any file under a final name must be the whole file.
struct Watcher {
    stop: Arc<AtomicBool>,
    looks: Arc<AtomicUsize>,
    problems: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(uploads: PathBuf, size: u64, sha: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let looks = Arc::new(AtomicUsize::new(0));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (s, l, p) = (stop.clone(), looks.clone(), problems.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(entries) = std::fs::read_dir(&uploads) else {
                    continue;
                };
                let mut names = Vec::new();
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name == ".resumable-staging" {
                        continue;
                    }
                    // A published file never changes after link(2): read it whole.
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        if bytes.len() as u64 != size || sha256_hex(&bytes) != sha {
                            p.lock().unwrap().push(format!(
                                "{name} seen with {} bytes (expected {size})",
                                bytes.len()
                            ));
                        }
                    }
                    names.push(name);
                }
                if names.len() > 1 {
                    p.lock()
                        .unwrap()
                        .push(format!("two published copies: {names:?}"));
                }
                l.fetch_add(1, Ordering::Relaxed);
            }
        });
        Watcher {
            stop,
            looks,
            problems,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("watcher");
        }
        let problems = self.problems.lock().unwrap().clone();
        (self.looks.load(Ordering::Relaxed), problems)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a trial observed, for the summary.
#[derive(Default)]
struct Tally {
    trials: usize,
    killed: usize,
    watcher_looks: usize,
}

/// One upload in random order; the victim request is killed by `fault`; the client recovers.
fn trial(fault: Fault, seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let cgi = Cgi::new();
    let client = ALL_CLIENTS[(seed % ALL_CLIENTS.len() as u64) as usize];
    let name = format!("crash-{seed}.bin");
    let data = pseudo_random((4 * CHUNK + rng.below(CHUNK)) as usize, seed);
    let upload = Upload::new(client, &name, data, CHUNK);
    let count = upload.chunk_count();
    let mut order: Vec<u64> = (1..=count).collect();
    rng.shuffle(&mut order);
    let victim = match fault {
        Fault::At(point) => arrange(&mut order, point.victim),
        Fault::RandomTime => order.len() - 1,
        // Every other pair of trials sends the chunks in order, so that the victim's body is
        // written straight into the staging file (the others mostly store parts).
        Fault::WhileStreaming if (seed / 2).is_multiple_of(2) => {
            order.sort_unstable();
            1 + rng.below(order.len() as u64 - 1) as usize
        }
        Fault::WhileStreaming => rng.below(order.len() as u64) as usize,
    };
    // Half the trials retry the killed request at once; the others carry on and then resume
    // as a reloaded page does (test each chunk, upload what is missing).
    let retry_at_once = seed.is_multiple_of(2);
    let context = format!("{fault:?} seed {seed} {client:?} order {order:?}");
    let watcher = Watcher::start(
        cgi.dirs.uploads.clone(),
        upload.data.len() as u64,
        upload.sha256(),
    );
    let mut finals: Vec<TestResponse> = Vec::new();
    let send = |request: &TestRequest, finals: &mut Vec<TestResponse>| {
        let response = cgi.send(request);
        assert_eq!(
            response.status,
            200,
            "{context}: {}",
            String::from_utf8_lossy(&response.body)
        );
        finals.push(response);
    };
    for (position, &number) in order.iter().enumerate() {
        let request = upload.chunk_request(number);
        if position != victim {
            send(&request, &mut finals);
            continue;
        }
        let status = match fault {
            Fault::At(point) => {
                let (status, stdout, stderr) =
                    run_to_end(under_strace(&cgi, &request, point), &request.body);
                assert!(
                    killed(&status),
                    "{context}: {} was never reached ({status:?}): {} {stderr}",
                    point.name,
                    String::from_utf8_lossy(&stdout)
                );
                status
            }
            Fault::WhileStreaming => {
                // At least 3 bytes: with only the CRLF after a multipart body's closing
                // `--boundary--` missing, the part is complete and rightly stored.
                let held_back = 3 + rng.below(46) as usize;
                let status = kill_while_streaming(&cgi, &request, held_back, &context);
                // The partial chunk does not count.
                let test = cgi.send(&upload.test_request(number));
                assert_eq!(test.status, 204, "{context}: a partial chunk counted");
                status
            }
            Fault::RandomTime => kill_after(&cgi, &request, Duration::from_micros(rng.below(6000))),
        };
        if killed(&status) {
            tally.killed += 1;
        } else {
            assert_eq!(status.code(), Some(0), "{context}");
        }
        if retry_at_once {
            send(&request, &mut finals);
        }
    }
    if !retry_at_once {
        for number in 1..=count {
            let test = cgi.send(&upload.test_request(number));
            match test.status {
                200 => finals.push(test),
                204 => send(&upload.chunk_request(number), &mut finals),
                other => panic!("{context}: test of chunk {number} answered {other}"),
            }
        }
    }
    let (looks, problems) = watcher.finish();
    assert!(problems.is_empty(), "{context}: {problems:?}");
    assert!(looks > 0, "{context}: the watcher never looked");
    tally.watcher_looks += looks;
    let last = finals.last().expect("a final answer").json();
    assert_eq!(last["complete"], Value::Bool(true), "{context}: {last}");
    assert_eq!(last["file"], Value::from(name.clone()), "{context}");
    assert_exactly_one_copy(&cgi.dirs.uploads, &upload, &name, &context);
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, &context);
    // Every later touch answers "complete" with the same file and recreates nothing.
    let again = cgi.send(&upload.chunk_request(order[0]));
    assert_eq!(again.json()["file"], Value::from(name.clone()), "{context}");
    assert_exactly_one_copy(&cgi.dirs.uploads, &upload, &name, &context);
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, &context);
    tally.trials += 1;
}

/// Orders the chunks of one trial so that the victim request reaches the points of `victim`,
/// and answers its position.
fn arrange(order: &mut Vec<u64>, victim: Victim) -> usize {
    let count = order.len() as u64;
    match victim {
        Victim::First => 0,
        Victim::FirstChunkFirst => {
            order.retain(|&n| n != 1);
            order.insert(0, 1);
            0
        }
        Victim::Direct => {
            order.retain(|&n| n > 2);
            order.splice(0..0, [1, 2]);
            1
        }
        Victim::Completing => {
            // The last chunk comes before the completing one, as a stored part it appends.
            let last = order.len() - 1;
            if order[last] == count {
                order.swap(last, 0);
            }
            last
        }
    }
}

/// The position of chunk `first` (the chunk that always continues an empty staging file) in
/// `order`, moved to the front when it was last (then it would complete the upload).
fn first_chunk_not_last(order: &mut [u64], first: u64) -> usize {
    let position = order.iter().position(|&n| n == first).expect("chunk 1");
    if position + 1 < order.len() {
        return position;
    }
    order.swap(position, 0);
    0
}

fn run_fault(fault: Fault, count: usize, seed_base: u64) -> Tally {
    let mut tally = Tally::default();
    for i in 0..count {
        trial(fault, seed_base + i as u64, &mut tally);
    }
    eprintln!(
        "{fault:?}: {} trials, {} processes killed, watcher looked {} times",
        tally.trials, tally.killed, tally.watcher_looks
    );
    tally
}

#[test]
fn sigkill_at_every_named_point_then_the_client_recovers() {
    require_strace();
    let per_point = trials(24);
    for (i, point) in POINTS.iter().enumerate() {
        let tally = run_fault(Fault::At(*point), per_point, 1000 * (i as u64 + 1));
        assert_eq!(
            tally.killed, per_point,
            "{}: every trial killed",
            point.name
        );
    }
}

/// Dropzone (chunks in any order) and Plupload (in order, counted from chunk 0): the request
/// that completes the upload killed at every named point (for counted chunks the second
/// renameat is the shape's record), or a random chunk's killed while its body streams in, then
/// retried at once, as these clients retry (they send no test requests).
#[test]
fn counted_chunks_killed_then_retried() {
    require_strace();
    let mut killed_count = 0;
    let faults = counted_points()
        .into_iter()
        .map(Fault::At)
        .chain([Fault::WhileStreaming]);
    for (i, fault) in faults.enumerate() {
        for dialect in [Dialect::Dropzone, Dialect::Plupload] {
            for t in 0..trials(2) as u64 {
                killed_count += counted_trial(fault, dialect, 50_000 + 100 * i as u64 + t);
            }
        }
    }
    eprintln!("counted chunks: {killed_count} processes killed");
}

/// One counted upload; the victim request is killed by `fault` and retried. Returns 1 if the
/// victim was killed.
fn counted_trial(fault: Fault, dialect: Dialect, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let cgi = Cgi::new();
    let name = format!("crash-{dialect:?}-{seed}.bin");
    let data = pseudo_random((4 * CHUNK + 1 + rng.below(CHUNK - 1)) as usize, seed);
    let file = ChunkedFile::new(dialect, &name, data, CHUNK);
    let mut order: Vec<u64> = (0..file.count()).collect();
    if dialect.any_order() {
        rng.shuffle(&mut order);
    }
    let victim = match fault {
        Fault::At(point) if point.victim == Victim::Completing => order.len() - 1,
        Fault::At(point) if point.victim == Victim::FirstChunkFirst => {
            first_chunk_not_last(&mut order, 0)
        }
        _ => rng.below(order.len() as u64) as usize,
    };
    let context = format!("{fault:?} seed {seed} {dialect:?} order {order:?}");
    let watcher = Watcher::start(
        cgi.dirs.uploads.clone(),
        file.data.len() as u64,
        file.sha256(),
    );
    let mut last = None;
    let mut was_killed = 0;
    for (position, &index) in order.iter().enumerate() {
        let request = file.request(index);
        if position == victim {
            let status = match fault {
                Fault::At(point) => {
                    run_to_end(under_strace(&cgi, &request, point), &request.body).0
                }
                _ => kill_while_streaming(&cgi, &request, 3 + rng.below(46) as usize, &context),
            };
            assert!(killed(&status), "{context}: not killed ({status:?})");
            was_killed = 1;
        }
        let response = cgi.send(&request);
        assert_eq!(
            response.status,
            200,
            "{context}: {}",
            String::from_utf8_lossy(&response.body)
        );
        last = Some(response.json());
    }
    let (looks, problems) = watcher.finish();
    assert!(problems.is_empty() && looks > 0, "{context}: {problems:?}");
    let last = last.expect("a final answer");
    assert_eq!(last["complete"], Value::Bool(true), "{context}: {last}");
    assert_exactly_one_copy(&cgi.dirs.uploads, &file, &name, &context);
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, &context);
    was_killed
}

#[test]
fn sigkill_while_the_body_streams_in() {
    let count = trials(30);
    let tally = run_fault(Fault::WhileStreaming, count, 50_000);
    assert_eq!(tally.killed, count);
}

#[test]
fn sigkill_at_random_times_during_the_completing_request() {
    let count = trials(60);
    let tally = run_fault(Fault::RandomTime, count, 90_000);
    // Some kills land after the process finished; most must land inside it.
    assert!(tally.killed > 0, "no random kill hit a running process");
}

/// A FastCGI worker process killed in the middle of a request (at each named point, and while
/// the body streams in), then restarted: the client's retry through the new worker completes
/// the file exactly once. Other uploads' chunks go through a long-running worker on the same
/// dirs meanwhile.
#[test]
fn a_fastcgi_worker_killed_mid_request_and_restarted() {
    use common::fastcgi_client::{cgi_params, request_bytes, Addr, Worker};
    require_strace();
    let shared = Cgi::new();
    let launch = |wrap: Option<Point>| -> Worker {
        let dirs = Dirs::sharing(&shared.dirs);
        let addr = Addr::free_tcp();
        let mut command = match wrap {
            Some(point) => {
                let mut c = Command::new(STRACE);
                c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
                    .arg(format!("trace={}", point.syscall))
                    .arg("-e")
                    .arg(format!(
                        "inject={}:signal=SIGKILL:when={}",
                        point.syscall, point.when
                    ))
                    .arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        command
            .arg("fastcgi")
            .arg("--listen")
            .arg(addr.listen_arg())
            .args(["--workers", "1"]);
        Worker::launch(command, dirs, addr, &[])
    };
    let steady = launch(None);
    let per_point = trials(6);
    let mut seed = 200_000u64;
    let mut killed_count = 0;
    // The victim is the completing request: points only an earlier chunk reaches are left out.
    let faults: Vec<Option<Point>> = POINTS
        .iter()
        .copied()
        .filter(|point| point.victim == Victim::Completing)
        .map(Some)
        .chain(std::iter::repeat_n(None, per_point))
        .collect();
    for fault in faults {
        let repeats = if fault.is_some() { per_point } else { 1 };
        for _ in 0..repeats {
            seed += 1;
            let client = ALL_CLIENTS[(seed % ALL_CLIENTS.len() as u64) as usize];
            let name = format!("fcgi-crash-{seed}.bin");
            let upload = Upload::new(client, &name, pseudo_random(4 * 4096 + 77, seed), 4096);
            let context = format!("FastCGI {:?} seed {seed}", fault.map(|p| p.name));
            let watcher = Watcher::start(
                shared.dirs.uploads.clone(),
                upload.data.len() as u64,
                upload.sha256(),
            );
            // Every chunk but the one before the last: the victim writes it into the staging
            // file, appends the last one's part, and completes the upload.
            let count = upload.chunk_count();
            for number in (1..=count).filter(|&n| n != count - 1) {
                assert_eq!(
                    fcgi_send(&steady, &upload.chunk_request(number)).status,
                    200
                );
            }
            let request = upload.chunk_request(count - 1);
            let mut victim = launch(fault);
            let bytes = request_bytes(1, false, &cgi_params(&request, &[]), &request.body);
            let mut conn = victim.connect();
            match fault {
                Some(point) => {
                    let _ = conn.write_all(&bytes);
                    assert!(conn.closed_silently(), "{context}: a reply came");
                    let deadline = Instant::now() + LIMIT;
                    let status = loop {
                        if let Some(status) = victim.proc.try_wait() {
                            break status;
                        }
                        assert!(Instant::now() < deadline, "{context}: still running");
                        std::thread::sleep(Duration::from_millis(2));
                    };
                    assert!(killed(&status), "{context}: {} not reached", point.name);
                }
                None => {
                    // All but the last few bytes of the FastCGI stream, then SIGKILL by PID.
                    let cut = bytes.len() - 40;
                    for piece in bytes[..cut].chunks(64) {
                        conn.write_all(piece).unwrap();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let deadline = Instant::now() + LIMIT;
                    while !has_read(victim.proc.pid, cut) {
                        assert!(
                            Instant::now() < deadline,
                            "{context}: the body not taken in"
                        );
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    victim.proc.kill();
                    let status = victim.proc.wait();
                    assert!(killed(&status), "{context}");
                }
            }
            killed_count += 1;
            drop(conn);
            victim.assert_no_panic();
            drop(victim);
            // The web server answered 502 to the client, which retries; a new worker runs.
            let restarted = launch(None);
            let done = fcgi_send(&restarted, &request);
            assert_eq!(done.status, 200, "{context}: {:?}", done.json());
            assert_eq!(done.json()["file"], Value::from(name.clone()), "{context}");
            let (_, problems) = watcher.finish();
            assert!(problems.is_empty(), "{context}: {problems:?}");
            let mine: Vec<String> = published_files(&shared.dirs.uploads)
                .into_iter()
                .filter(|f| f.starts_with(&format!("fcgi-crash-{seed}")))
                .collect();
            assert_eq!(mine, vec![name.clone()], "{context}");
            let stored = std::fs::read(shared.dirs.uploads.join(&name)).unwrap();
            assert_eq!(sha256_hex(&stored), upload.sha256(), "{context}");
            assert_clean(&shared.dirs.temp, &shared.dirs.uploads, &context);
            // Only this file's copy is here; earlier trials' files were checked already.
            std::fs::remove_file(shared.dirs.uploads.join(&name)).unwrap();
        }
    }
    steady.assert_no_panic();
    eprintln!("FastCGI: {killed_count} workers killed mid-request and replaced");
}

/// One request to a FastCGI worker, sent again (as nginx retries an upstream whose connection
/// failed) if reading the reply was interrupted by a signal (EINTR, seen once in a long run;
/// the shared test client does not restart it) or the connection was reset (seen once on a
/// loaded 2-core CI machine, on the steady worker, with nothing in its log; every chunk request
/// is idempotent, so a retry is what a client does). A second failure fails the test, with the
/// worker's log.
fn fcgi_send(worker: &common::fastcgi_client::Worker, request: &TestRequest) -> TestResponse {
    use common::fastcgi_client::cgi_params;
    use std::io::ErrorKind;
    let mut attempt = 0;
    loop {
        let mut conn = worker.connect();
        match conn.request(1, false, &cgi_params(request, &[]), &request.body) {
            Ok(reply) => return reply.response(),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionReset
                ) && attempt < 2 =>
            {
                eprintln!(
                    "FastCGI reply failed ({e}); retrying the request. Worker log so far:\n{}",
                    worker.stderr()
                );
                attempt += 1;
            }
            Err(e) => panic!("FastCGI reply: {e}; worker log:\n{}", worker.stderr()),
        }
    }
}
