//! Operations, with the real binary: the completion hook (the shipped shell and Python hooks
//! and scripts that sleep, crash or race), CORS answers, `resumable-cgi list` while uploads
//! arrive, the FastCGI I/O timeout, and a CGI process ended by SIGTERM mid-body. The free-space
//! floor is in tests/disk.rs (it mounts a small tmpfs); the browser side of the hook and of
//! CORS, and SIGTERM from real mod_cgid, are in tests/e2e_operations.rs.

mod common;
mod range_support;
mod reliability;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::fastcgi_client::*;
use common::Proc;
use common::*;
use rustix::process::Signal;
use serde_json::{json, Value};

const CHUNK: u64 = 64 << 10;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn cgi_with_hook(hook: &Path) -> Cgi {
    Cgi::new().with_env("RESUMABLE_ON_COMPLETE", hook.to_str().unwrap())
}

fn upload(name: &str, data: Vec<u8>) -> Upload {
    Upload::new(Client::Resumable, name, data, CHUNK)
}

/// Sends every chunk but the last; each must be stored.
fn all_but_last(endpoint: &dyn Endpoint, upload: &Upload) {
    for n in 1..upload.chunk_count() {
        let response = endpoint.send(&upload.chunk_request(n));
        assert_eq!(response.status, 200, "chunk {n}: {:?}", response.json());
    }
}

/// Regular files left in the temp dir (records excepted) and in the staging folder.
fn leftovers(cgi: &Cgi) -> Vec<String> {
    let mut left: Vec<String> = snapshot(&cgi.dirs.temp)
        .into_iter()
        .filter(|(p, kind)| kind != "dir" && !kept_after_completion(p))
        .map(|(p, _)| p)
        .collect();
    left.extend(
        snapshot(&cgi.dirs.uploads.join(".resumable-staging"))
            .into_keys()
            .map(|p| format!("staging/{p}")),
    );
    left
}

fn expect_503(run: &CgiRun, needle: &str) {
    assert_eq!(run.exit_code, Some(0), "{}", run.stderr);
    assert_eq!(run.response.status, 503, "{:?}", run.response.json());
    assert_eq!(run.response.header("Retry-After"), Some("30"));
    assert!(
        run.stderr.contains(needle),
        "log says {needle:?}: {}",
        run.stderr
    );
}

// ------------------------------------------------------------------ completion hook

#[test]
fn the_shipped_shell_hook_checks_the_bytes_and_every_later_answer_carries_its_json() {
    let hook = repo().join("deploy/hooks/on-complete.sh");
    let cgi = cgi_with_hook(&hook);
    let file = upload("photo.bin", pseudo_random(3 * CHUNK as usize + 100, 1));
    let last = scenarios::upload_all(&cgi, &file);
    let name = scenarios::assert_published(&cgi, &file, &last);
    let answer = last.json();
    assert_eq!(
        answer["data"],
        json!({"type": "application/octet-stream", "sha256": file.sha256()}),
        "{answer}"
    );
    // A late duplicate of a chunk and the test requests answer the same data: the completion
    // record kept it.
    for request in [
        file.chunk_request(2),
        file.test_request(1),
        file.test_request(file.chunk_count()),
    ] {
        let again = cgi.send(&request);
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["data"], answer["data"], "{:?}", again.json());
        assert_eq!(again.json()["file"], Value::from(name.clone()));
    }
    assert!(leftovers(&cgi).is_empty(), "{:?}", leftovers(&cgi));
}

#[test]
fn the_shipped_shell_hook_refuses_by_content_and_the_file_goes_with_its_parts() {
    let hook = repo().join("deploy/hooks/on-complete.sh");
    let cgi = cgi_with_hook(&hook);
    // Named like a picture, but a shell script.
    let mut data = b"#!/bin/sh\nrm -rf ~\n".to_vec();
    data.extend(std::iter::repeat_n(b'#', 2 * CHUNK as usize));
    let file = upload("holiday.jpg", data);
    all_but_last(&cgi, &file);
    let run = cgi.run(&file.chunk_request(file.chunk_count()));
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.response.status, 415, "{:?}", run.response.json());
    assert_eq!(
        run.response.json(),
        json!({"success": false, "preventRetry": true,
               "error": "files of type text/x-shellscript are not accepted here"})
    );
    assert!(
        run.stderr.contains("completion hook refused"),
        "{}",
        run.stderr
    );
    assert!(published_files(&cgi.dirs.uploads).is_empty());
    assert!(leftovers(&cgi).is_empty(), "{:?}", leftovers(&cgi));
    // Gone: a test request finds nothing, so a new attempt starts from the first chunk.
    assert_eq!(cgi.send(&file.test_request(1)).status, 204);
}

/// The page sends the sha256 it computed (resumable.js `query`); the Python hook compares.
fn with_checksum(request: TestRequest, sha256: &str) -> TestRequest {
    TestRequest {
        query: format!("{}&sha256={sha256}", request.query),
        ..request
    }
}

#[test]
fn the_shipped_python_hook_compares_checksums_and_answers_the_url() {
    let hook = repo().join("deploy/hooks/on-complete.py");
    let cgi = cgi_with_hook(&hook)
        .with_env("UPLOADS_URL", "https://files.example/u/")
        .with_env("PATH", "/usr/local/bin:/usr/bin:/bin");
    let journal = cgi.dirs.root.path().join("journal.jsonl");
    let cgi = cgi.with_env("UPLOAD_JOURNAL", journal.to_str().unwrap());

    let good = upload("report 2024.pdf", pseudo_random(2 * CHUNK as usize + 7, 2));
    let mut last = None;
    for n in 1..=good.chunk_count() {
        last = Some(cgi.send(&with_checksum(good.chunk_request(n), &good.sha256())));
    }
    let last = last.unwrap();
    scenarios::assert_published(&cgi, &good, &last);
    assert_eq!(
        last.json()["data"],
        json!({"sha256": good.sha256(), "url": "https://files.example/u/report%202024.pdf"})
    );
    let entry: Value =
        serde_json::from_str(std::fs::read_to_string(&journal).unwrap().trim()).unwrap();
    assert_eq!(entry["name"], "report 2024.pdf");
    assert_eq!(entry["size"], good.data.len());

    // Bytes that are not what the page had: refused, nothing published.
    let bad = upload("other.bin", pseudo_random(CHUNK as usize + 5, 3));
    let wrong = "0".repeat(64);
    let run = cgi.run(&with_checksum(bad.chunk_request(1), &wrong));
    assert_eq!(run.response.status, 415);
    let reason = run.response.json()["error"].as_str().unwrap().to_string();
    assert!(reason.starts_with("checksum mismatch"), "{reason}");
    assert!(reason.contains(&bad.sha256()), "{reason}");
    assert_eq!(published_files(&cgi.dirs.uploads), vec!["report 2024.pdf"]);
}

#[test]
fn a_hook_past_its_timeout_keeps_the_file_and_the_next_request_runs_it_again() {
    let cgi = Cgi::new();
    let runs = cgi.dirs.root.path().join("runs");
    let ready = cgi.dirs.root.path().join("ready");
    let hook = script(
        cgi.dirs.root.path(),
        "slow.sh",
        &format!(
            "#!/bin/sh\nsha256sum \"$RESUMABLE_HOOK_PATH\" | cut -c1-64 >> {runs}\n\
             [ -e {ready} ] || sleep 300\necho '{{\"scanned\": true}}'\n",
            runs = runs.display(),
            ready = ready.display()
        ),
    );
    let cgi = cgi_with_hook(&hook).with_env("RESUMABLE_HOOK_TIMEOUT", "1");
    let file = upload("big.bin", pseudo_random(4 * CHUNK as usize + 1, 4));
    all_but_last(&cgi, &file);
    let run = cgi.run(&file.chunk_request(file.chunk_count()));
    expect_503(&run, "ran longer than 1 s and was killed");
    assert!(published_files(&cgi.dirs.uploads).is_empty());
    // The synced file waits under its kept name; every part is still there.
    let staging: Vec<String> = snapshot(&cgi.dirs.uploads.join(".resumable-staging"))
        .into_keys()
        .collect();
    assert!(
        staging.len() == 1 && staging[0].ends_with(".assembled"),
        "{staging:?}"
    );
    for n in 1..file.chunk_count() {
        assert_eq!(cgi.send(&file.test_request(n)).status, 200, "chunk {n}");
    }
    // The hook works again: the client's test of the last chunk (what a reloaded page sends)
    // runs it, on the same bytes, and publishes.
    std::fs::write(&ready, "").unwrap();
    let done = cgi.send(&file.test_request(file.chunk_count()));
    assert_eq!(done.status, 200, "{:?}", done.json());
    scenarios::assert_published(&cgi, &file, &done);
    assert_eq!(done.json()["data"], json!({"scanned": true}));
    let seen = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        vec![file.sha256(), file.sha256()],
        "two runs, both on the whole file"
    );
    assert!(leftovers(&cgi).is_empty(), "{:?}", leftovers(&cgi));
}

#[test]
fn a_hook_that_crashes_cannot_start_or_asks_for_later_is_a_503_and_nothing_is_lost() {
    let mut cgi = Cgi::new();
    let dir = cgi.dirs.root.path().to_path_buf();
    let crash = script(
        &dir,
        "crash.sh",
        "#!/bin/sh\necho dying >&2\nkill -SEGV $$\n",
    );
    let later = script(
        &dir,
        "later.sh",
        "#!/bin/sh\necho 'database is down' >&2\nexit 75\n",
    );
    let python_crash = script(
        &dir,
        "crash.py",
        "#!/usr/bin/env python3\nimport os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n",
    );
    let fine = script(&dir, "fine.sh", "#!/bin/sh\necho '{\"ok\": 1}'\n");
    let file = upload("keep.bin", pseudo_random(2 * CHUNK as usize + 3, 5));
    all_but_last(&cgi, &file);
    let last = file.chunk_request(file.chunk_count());
    for (hook, needle) in [
        (crash, "was killed by signal 11: dying"),
        (python_crash, "was killed by signal 6"),
        (dir.join("missing.sh"), "could not be started"),
        (
            later,
            "asked to be run again later (exit 75): database is down",
        ),
        (fine, "completion hook accepted"),
    ] {
        cgi.env = vec![("RESUMABLE_ON_COMPLETE".into(), hook.display().to_string())];
        let run = cgi.run(&last);
        if needle == "completion hook accepted" {
            assert!(run.stderr.contains(needle), "{}", run.stderr);
            scenarios::assert_published(&cgi, &file, &run.response);
            assert_eq!(run.response.json()["data"], json!({"ok": 1}));
        } else {
            expect_503(&run, needle);
            assert!(published_files(&cgi.dirs.uploads).is_empty(), "{needle}");
        }
    }
}

#[test]
fn the_hook_runs_once_when_the_last_chunks_race_across_processes() {
    let cgi = Cgi::new();
    let runs = cgi.dirs.root.path().join("runs");
    // Slow enough that every racing request arrives while it runs.
    let hook = script(
        cgi.dirs.root.path(),
        "count.sh",
        &format!(
            "#!/bin/sh\necho \"$RESUMABLE_HOOK_NAME\" >> {}\nsleep 1\necho '{{\"n\": 1}}'\n",
            runs.display()
        ),
    );
    let cgi = Arc::new(cgi_with_hook(&hook));
    let file = upload("race.bin", pseudo_random(6 * CHUNK as usize + 11, 6));
    let count = file.chunk_count();
    for n in 1..count - 1 {
        assert_eq!(cgi.send(&file.chunk_request(n)).status, 200);
    }
    // The last two chunks, four times each, released together.
    let requests: Vec<TestRequest> = (0..8)
        .map(|i| file.chunk_request(count - 1 + i % 2))
        .collect();
    let barrier = Arc::new(Barrier::new(requests.len()));
    let answers: Vec<TestResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|request| {
                let (cgi, barrier) = (Arc::clone(&cgi), Arc::clone(&barrier));
                scope.spawn(move || {
                    barrier.wait();
                    cgi.send(request)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let complete: Vec<&TestResponse> = answers
        .iter()
        .filter(|a| a.json()["complete"] == Value::Bool(true))
        .collect();
    assert!(!complete.is_empty());
    for answer in &answers {
        assert_eq!(answer.status, 200, "{:?}", answer.json());
    }
    for answer in complete {
        assert_eq!(answer.json()["data"], json!({"n": 1}));
    }
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "race.bin\n");
    reliability::assert_exactly_one_copy(&cgi.dirs.uploads, &file, "race.bin", "race");
    reliability::assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, "race");
}

#[test]
fn a_fastcgi_param_names_the_hook_per_location_and_the_hook_sees_that_setting() {
    let worker = Worker::start(false, &["--workers", "2"], &[]);
    let hook = script(
        worker.dirs.root.path(),
        "env.sh",
        "#!/bin/sh\nprintf '{\"hook\":\"%s\",\"client\":\"%s\",\"user\":\"%s\",\"proxy\":\"%s\"}' \
         \"$RESUMABLE_ON_COMPLETE\" \"$RESUMABLE_HOOK_CLIENT\" \"$RESUMABLE_HOOK_USER\" \"${HTTP_PROXY:-}\"\n",
    );
    let mut file = Upload::new(
        Client::Flow,
        "f.bin",
        pseudo_random(CHUNK as usize + 9, 7),
        CHUNK,
    );
    file.remote_user = Some("alice".into());
    let extra = vec![
        (
            b"RESUMABLE_ON_COMPLETE".to_vec(),
            hook.to_str().unwrap().as_bytes().to_vec(),
        ),
        // A request header the web server passes as a param never reaches the hook.
        (b"HTTP_PROXY".to_vec(), b"http://attacker:3128".to_vec()),
    ];
    let mut last = None;
    for n in 1..=file.chunk_count() {
        let request = file.chunk_request(n);
        let reply = worker
            .connect()
            .request(1, false, &cgi_params(&request, &extra), &request.body)
            .unwrap();
        last = Some(reply.response());
    }
    let last = last.unwrap();
    assert_eq!(last.status, 200, "{:?} {}", last.json(), worker.stderr());
    assert_eq!(
        last.json()["data"],
        json!({"hook": hook.to_str().unwrap(), "client": "flow", "user": "alice", "proxy": ""})
    );
    // Without the param the same worker publishes without asking anyone.
    let plain = Upload::new(Client::Flow, "g.bin", pseudo_random(100, 8), CHUNK);
    let answer = worker.send(&plain.chunk_request(1));
    assert_eq!(answer.json()["complete"], Value::Bool(true));
    assert!(answer.json().get("data").is_none());
}

// ------------------------------------------------------------------ SIGTERM mid-body

/// Starts the CGI program for `request` and feeds it only `sent` bytes of the body, keeping
/// stdin open (a client whose body stalled).
fn cgi_mid_body(cgi: &Cgi, request: &TestRequest, sent: usize) -> (Proc, std::process::ChildStdin) {
    let mut command = cgi.command(request);
    command.stdin(Stdio::piped());
    let mut child = Proc::spawn("resumable-cgi", &mut command).kill_on_drop();
    let mut stdin = child.child().stdin.take().unwrap();
    stdin.write_all(&request.body[..sent]).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn temp_chunks(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .filter(|p| p.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_cgi_process_ended_by_sigterm_mid_body_removes_its_half_written_chunk() {
    let cgi = Cgi::new();
    for client in [Client::ResumableOctet, Client::Resumable] {
        // Chunks larger than the multipart reader's buffer, so half a body is read at once.
        let file = Upload::new(client, "stall.bin", pseudo_random(4 << 20, 9), 1 << 20);
        let request = file.chunk_request(2);
        let (mut child, stdin) = cgi_mid_body(&cgi, &request, request.body.len() / 2);
        wait_for("the temporary chunk", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.child().try_wait() {
                let mut err = String::new();
                let _ = child
                    .child()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("{client:?}: the program ended early ({status}): {err}");
            }
            !temp_chunks(&cgi.dirs.temp).is_empty()
        });
        // SAFETY: kill(2) on our own unreaped child.
        assert!(child.signal(Signal::TERM));
        let (status, stdout, stderr) = child.finish(Duration::from_secs(20));
        drop(stdin);
        let stderr = String::from_utf8_lossy(&stderr);
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{client:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("stopped by signal 15")
                && stderr.contains("removed 1 unfinished chunk"),
            "{client:?}: {stderr}"
        );
        assert!(
            temp_chunks(&cgi.dirs.temp).is_empty(),
            "{:?}",
            snapshot(&cgi.dirs.temp)
        );
        assert_eq!(cgi.send(&file.test_request(2)).status, 204);
    }
}

#[test]
fn a_cgi_process_ended_while_its_hook_runs_takes_the_hook_down_with_it() {
    let cgi = Cgi::new();
    let pid_file = cgi.dirs.root.path().join("hook.pid");
    let hook = script(
        cgi.dirs.root.path(),
        "hang.sh",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    );
    let cgi = cgi_with_hook(&hook);
    let file = upload("hang.bin", pseudo_random(100, 10));
    let request = file.chunk_request(1);
    let (child, stdin) = cgi_mid_body(&cgi, &request, request.body.len());
    drop(stdin);
    wait_for("the hook to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on our own unreaped child.
    assert!(child.signal(Signal::TERM));
    let (status, _, stderr) = child.finish(Duration::from_secs(20));
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "{}",
        String::from_utf8_lossy(&stderr)
    );
    wait_for("the hook's sleep to go", Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{sleeper}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    assert!(published_files(&cgi.dirs.uploads).is_empty());
}

// ------------------------------------------------------------------ CORS

/// The service in-process with `settings`, answering requests with extra headers.
fn service_with(dirs: &Dirs, settings: &[(&str, &str)]) -> resumable_cgi::service::Service {
    let mut pairs: Vec<(String, String)> = vec![
        ("RESUMABLE_TEMP_DIR".into(), dirs.temp.display().to_string()),
        (
            "RESUMABLE_UPLOAD_DIR".into(),
            dirs.uploads.display().to_string(),
        ),
    ];
    pairs.extend(settings.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let config = resumable_cgi::config::Config::from_lookup(&|name| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone().into_bytes())
    })
    .unwrap();
    resumable_cgi::service::Service::new(config)
}

fn ask(
    service: &resumable_cgi::service::Service,
    request: &TestRequest,
    headers: &[(&str, &str)],
) -> resumable_cgi::request::Response {
    let mut vars = vec![
        ("REQUEST_METHOD".to_string(), request.method.clone()),
        ("QUERY_STRING".to_string(), request.query.clone()),
        ("CONTENT_LENGTH".to_string(), request.body.len().to_string()),
    ];
    vars.extend(
        request
            .content_type
            .iter()
            .map(|ct| ("CONTENT_TYPE".to_string(), ct.clone())),
    );
    for (name, value) in headers {
        vars.push((
            format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
            value.to_string(),
        ));
    }
    let mut body = std::io::Cursor::new(request.body.clone());
    service.handle(resumable_cgi::request::Request {
        head: resumable_cgi::request::Head::from_cgi_vars(vars),
        body: &mut body,
    })
}

fn cors_headers(response: &resumable_cgi::request::Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("Access-Control-"))
        .cloned()
        .collect()
}

#[test]
fn cors_answers_listed_origins_only_with_exactly_the_headers_clients_need() {
    let dirs = Dirs::new();
    let page = "http://127.0.0.1:5173";
    let listed = service_with(
        &dirs,
        &[(
            "RESUMABLE_CORS_ORIGINS",
            &format!("https://app.example {page}"),
        )],
    );
    let options = TestRequest {
        method: "OPTIONS".into(),
        ..TestRequest::default()
    };
    let preflight = ask(
        &listed,
        &options,
        &[
            ("Origin", page),
            ("Access-Control-Request-Method", "PATCH"),
            (
                "Access-Control-Request-Headers",
                "tus-resumable,upload-offset,content-type",
            ),
        ],
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("Access-Control-Allow-Origin"), Some(page));
    assert_eq!(
        preflight.header("Access-Control-Allow-Methods"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    let allowed = preflight
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .to_string();
    for header in [
        "Content-Type",
        "X-Requested-With",
        "Cache-Control",
        "Content-Range",
        "Content-Disposition",
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Offset",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Concat",
        "Upload-Defer-Length",
    ] {
        assert!(
            allowed.split(", ").any(|h| h == header),
            "{header} in {allowed}"
        );
    }
    assert!(preflight.header("Access-Control-Max-Age").is_some());
    assert_eq!(preflight.header("Vary"), Some("Origin"));
    assert_eq!(preflight.header("Access-Control-Allow-Credentials"), None);

    // Every answer to that origin, a refusal included, can be read by its page.
    let file = upload("cors.bin", pseudo_random(10, 11));
    for request in [
        file.test_request(1),
        file.chunk_request(1),
        TestRequest {
            method: "POST".into(),
            ..TestRequest::default()
        },
    ] {
        let answer = ask(&listed, &request, &[("Origin", page)]);
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some(page),
            "{}",
            answer.status
        );
        assert_eq!(answer.header("Vary"), Some("Origin"));
        let exposed = answer.header("Access-Control-Expose-Headers").unwrap();
        for header in [
            "Location",
            "Upload-Offset",
            "Upload-Length",
            "Upload-Expires",
            "Tus-Resumable",
            "Range",
        ] {
            assert!(
                exposed.split(", ").any(|h| h == header),
                "{header} in {exposed}"
            );
        }
    }
    // An origin not listed: no CORS header at all, and its preflight is an ordinary OPTIONS.
    for request in [file.test_request(1), options.clone()] {
        let answer = ask(
            &listed,
            &request,
            &[
                ("Origin", "http://127.0.0.1:5174"),
                ("Access-Control-Request-Method", "POST"),
            ],
        );
        assert!(cors_headers(&answer).is_empty(), "{:?}", answer.headers);
    }
    let plain = ask(
        &listed,
        &options,
        &[
            ("Origin", "http://127.0.0.1:5174"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert_eq!(
        plain.header("Allow"),
        Some(resumable_cgi::error::ALLOWED_METHODS)
    );

    // Credentials: the exact origin and Allow-Credentials.
    let with_credentials = service_with(
        &dirs,
        &[
            ("RESUMABLE_CORS_ORIGINS", page),
            ("RESUMABLE_CORS_CREDENTIALS", "1"),
        ],
    );
    let answer = ask(
        &with_credentials,
        &file.test_request(1),
        &[("Origin", page)],
    );
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some(page));
    assert_eq!(
        answer.header("Access-Control-Allow-Credentials"),
        Some("true")
    );
    // `*`: any origin, no credentials.
    let any = service_with(&dirs, &[("RESUMABLE_CORS_ORIGINS", "*")]);
    let answer = ask(
        &any,
        &file.test_request(1),
        &[("Origin", "https://anywhere.example")],
    );
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
    // Unset: today's answers, untouched.
    let unset = service_with(&dirs, &[]);
    let answer = ask(
        &unset,
        &options,
        &[("Origin", page), ("Access-Control-Request-Method", "POST")],
    );
    assert!(cors_headers(&answer).is_empty());
    assert_eq!(answer.header("Vary"), None);
}

#[test]
fn cors_credentials_with_any_origin_is_refused_at_start() {
    let cgi = Cgi::new()
        .with_env("RESUMABLE_CORS_ORIGINS", "*")
        .with_env("RESUMABLE_CORS_CREDENTIALS", "1");
    let run = cgi.run(&upload("x.bin", vec![1]).test_request(1));
    assert_eq!(run.response.status, 500);
    assert!(
        run.stderr.contains("RESUMABLE_CORS_ORIGINS"),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------ list

fn list(cgi: &Cgi, args: &[&str]) -> (i32, String) {
    let output = Command::new(binary())
        .arg("list")
        .args(args)
        .env_clear()
        .env("RESUMABLE_TEMP_DIR", &cgi.dirs.temp)
        .env("RESUMABLE_UPLOAD_DIR", &cgi.dirs.uploads)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn list_json(cgi: &Cgi) -> Vec<Value> {
    let (code, out) = list(cgi, &["--json"]);
    assert_eq!(code, 0);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn list_shows_uploads_while_they_arrive_and_never_waits_for_a_lock() {
    let cgi = Arc::new(Cgi::new());
    let mut plain = Upload::new(
        Client::Flow,
        "plain.bin",
        pseudo_random(5 * CHUNK as usize, 12),
        CHUNK,
    );
    plain.remote_user = Some("bob".into());
    let hashed = Upload::new(
        Client::Resumable,
        "Grüße – ✓.bin",
        pseudo_random(3 * CHUNK as usize + 1, 13),
        CHUNK,
    );
    let uploads = [plain.clone(), hashed.clone()];
    let mut seen_receiving = Vec::new();
    // Each chunk waits for a whole listing that began after the previous one was stored, so
    // every stage of the uploads is listed at least once, while chunks keep arriving.
    let listings = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let sender = {
            let (cgi, listings) = (Arc::clone(&cgi), &listings);
            let uploads = uploads.clone();
            scope.spawn(move || {
                for upload in &uploads {
                    for n in 1..=upload.chunk_count() {
                        let seen = listings.load(std::sync::atomic::Ordering::SeqCst);
                        while listings.load(std::sync::atomic::Ordering::SeqCst) < seen + 2 {
                            std::thread::yield_now();
                        }
                        assert_eq!(cgi.send(&upload.chunk_request(n)).status, 200);
                    }
                }
            })
        };
        while !sender.is_finished() {
            for entry in list_json(&cgi) {
                if entry["state"] == "receiving" {
                    seen_receiving.push(entry);
                }
            }
            listings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        sender.join().unwrap();
    });
    // Caught in flight, with what it is, once its first chunk was stored.
    let caught = seen_receiving
        .iter()
        .find(|e| e["file"] == "plain.bin" && e["parts"] == 2)
        .expect("plain.bin seen while receiving");
    assert_eq!(caught["client"], "flow");
    assert_eq!(caught["user"], "bob");
    assert_eq!(caught["total"], plain.data.len());
    assert!(caught["stored"].as_u64().unwrap() < plain.data.len() as u64);
    assert!(caught["lastActivity"].as_str().unwrap().ends_with('Z'));

    // Done: both complete, under the names they were published as, hashed names resolved.
    let done = list_json(&cgi);
    assert_eq!(done.len(), 2, "{done:?}");
    for upload in [&plain, &hashed] {
        let entry = done
            .iter()
            .find(|e| e["published"] == upload.filename.as_str())
            .unwrap_or_else(|| panic!("{} in {done:?}", upload.filename));
        assert_eq!(entry["state"], "complete", "{entry}");
    }

    // A new upload in flight, its directory locked by a request: list answers at once.
    let stuck = Upload::new(
        Client::ResumableOctet,
        "stuck.bin",
        pseudo_random(2 * CHUNK as usize, 14),
        CHUNK,
    );
    cgi.send(&stuck.chunk_request(1));
    let dir = std::fs::File::open(cgi.dirs.temp.join(&stuck.identifier)).unwrap();
    dir.lock().unwrap();
    let (code, text) = list(&cgi, &[]);
    assert_eq!(code, 0);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("STATE"));
    let line = lines
        .find(|l| l.contains("stuck.bin"))
        .expect("stuck.bin listed");
    assert!(line.starts_with("receiving"), "{line}");
    assert!(line.contains(&format!("{}/{}", CHUNK, 2 * CHUNK)), "{line}");
    // Past the cleanup age it is abandoned (what `cleanup` would remove).
    std::thread::sleep(Duration::from_millis(1100));
    let (_, old) = list(&cgi, &["--older-than", "0s"]);
    assert!(
        old.lines()
            .any(|l| l.starts_with("abandoned") && l.contains("stuck.bin")),
        "{old}"
    );
    dir.unlock().unwrap();
}

// ------------------------------------------------------------------ FastCGI I/O timeout

#[test]
fn the_fastcgi_io_timeout_setting_frees_a_worker_from_a_stalled_connection() {
    let worker = Worker::start(false, &["--workers", "1"], &[("RESUMABLE_IO_TIMEOUT", "1")]);
    let file = upload("slow.bin", pseudo_random(2 * CHUNK as usize, 19));
    let request = file.chunk_request(1);
    let mut conn = worker.connect();
    let bytes = request_bytes(1, false, &cgi_params(&request, &[]), &request.body);
    // Everything but the end of the body, then silence.
    conn.write_all(&bytes[..bytes.len() - 1000]).unwrap();
    conn.set_timeout(Some(Duration::from_secs(30)));
    let mut rest = Vec::new();
    // Closed by the worker before the test's own 30 s (the default would be 120 s).
    match conn.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // The only worker serves again.
    let answer = worker.send(&file.test_request(1));
    assert_eq!(answer.status, 204, "{}", worker.stderr());
    assert!(
        worker.stderr().contains("FastCGI connection closed"),
        "{}",
        worker.stderr()
    );
    assert!(temp_chunks(&worker.dirs.temp).is_empty());
}

/// A form upload asks the hook about every file received whole: a refused file is error 8 with
/// the hook's words and is not published, the others are, and the hook saw the real bytes.
#[test]
fn a_form_upload_asks_the_hook_about_each_file() {
    use common::forms::{codes, file, form_request};
    let dir = Scratch::new("form-hook");
    let seen = dir.path().join("seen");
    let hook = script(
        dir.path(),
        "hook.sh",
        &format!(
            "#!/bin/sh\npath=$(sed -n 's/.*\"path\": *\"\\([^\"]*\\)\".*/\\1/p')\n\
             cat \"$path\" >> {seen}\n\
             if grep -q VIRUS \"$path\"; then echo 'infected: refused' >&2; exit 1; fi\nexit 0\n",
            seen = seen.display()
        ),
    );
    let cgi = cgi_with_hook(&hook);
    let run = cgi.run(&form_request(&[
        file("f", "clean.txt", b"hello"),
        file("f", "bad.txt", b"a VIRUS here"),
    ]));
    assert_eq!(run.response.status, 200, "{}", run.stderr);
    assert_eq!(codes(&run.response), [0, 8]);
    let answer = run.response.json();
    assert_eq!(
        answer["files"][1]["message"]
            .as_str()
            .map(|m| m.contains("infected: refused")),
        Some(true),
        "{answer}"
    );
    assert_eq!(published_files(&cgi.dirs.uploads), ["clean.txt"]);
    assert_eq!(std::fs::read(&seen).unwrap(), b"helloa VIRUS here");
}

// ------------------------------------------------- the hook, list and disk for tus and blueimp

use range_support::{
    blueimp_chunk, blueimp_resume, creation, head as tus_head, patch, upload_path, CgiTarget,
    FcgiTarget, Req, Target,
};

/// A hook for the byte-range suites: it logs every input it gets (one JSON line), refuses names
/// with `bad`, waits past its 1 s timeout on names with `slow` until `ready` exists, and
/// answers the sha256 of the bytes it was shown.
fn range_hook(dir: &Path) -> PathBuf {
    script(
        dir,
        "range-hook.sh",
        &format!(
            "#!/bin/sh\ninput=$(cat)\nprintf '%s\\n' \"$input\" | tr -d '\\n' >> {runs}\necho >> {runs}\n\
             case \"$RESUMABLE_HOOK_NAME\" in\n\
             *bad*) echo \"refused: $RESUMABLE_HOOK_NAME is bad\" >&2; echo more >&2; exit 1;;\n\
             *slow*) [ -e {ready} ] || sleep 300;;\nesac\n\
             printf '{{\"sha256\": \"%s\"}}\\n' \"$(sha256sum \"$RESUMABLE_HOOK_PATH\" | cut -c1-64)\"\n",
            runs = dir.join("runs").display(),
            ready = dir.join("ready").display()
        ),
    )
}

fn hook_settings(hook: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("RESUMABLE_ON_COMPLETE", hook.to_string_lossy().into_owned()),
        ("RESUMABLE_HOOK_TIMEOUT", "1".into()),
    ]
}

/// What the hook was given, run by run, for the files whose name contains `name`.
fn hook_runs(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|run| run["name"].as_str().is_some_and(|n| n.contains(name)))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Upload::new(Client::Resumable, "x", bytes.to_vec(), CHUNK).sha256()
}

/// Creates a tus upload of `data` and sends all of it but the last byte.
fn tus_all_but_last(t: &dyn Target, name: &str, data: &[u8]) -> String {
    let created = t.call(&creation(
        data.len() as u64,
        &[("filename", name), ("note", "hi")],
    ));
    assert_eq!(created.status, 201);
    let path = upload_path(&created);
    let first = &data[..data.len() - 1];
    assert_eq!(t.call(&patch(&path, 0, first)).status, 204);
    path
}

fn tus_hook_scenarios(t: &dyn Target, dir: &Path) {
    let staging = t.uploads().join(".resumable-staging");
    // Accepted: published, the hook saw the tus id, user and metadata, and its JSON stays in
    // the completion record (a 204 has no body for it).
    let data = pseudo_random(70_000, 31);
    let path = tus_all_but_last(t, "ok.bin", &data);
    let id = path.trim_start_matches('/').to_string();
    let last = t.call(&patch(
        &path,
        data.len() as u64 - 1,
        &data[data.len() - 1..],
    ));
    assert_eq!(last.status, 204, "{}", String::from_utf8_lossy(&last.body));
    let (name, bytes) = range_support::published(t, &last);
    assert_eq!((name.as_str(), bytes == data), ("ok.bin", true));
    let runs = hook_runs(dir, "ok.bin");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (&runs[0]["client"], &runs[0]["identifier"], &runs[0]["size"]),
        (&json!("tus"), &json!(id), &json!(data.len()))
    );
    assert_eq!(
        runs[0]["metadata"],
        json!({"filename": "ok.bin", "note": "hi"})
    );
    let record: Value = serde_json::from_slice(
        &std::fs::read(t.temp().join(format!("~tus-{id}/complete"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["data"], json!({"sha256": sha256_hex(&data)}));
    assert_eq!(t.call(&tus_head(&path)).status, 200);

    // Refused: a 415 the client gives up on, with the hook's first stderr line; the upload is
    // gone (HEAD 404) and nothing is published or kept.
    let data = pseudo_random(5_000, 32);
    let path = tus_all_but_last(t, "bad.bin", &data);
    let last = t.call(&patch(
        &path,
        data.len() as u64 - 1,
        &data[data.len() - 1..],
    ));
    assert_eq!(last.status, 415);
    assert_eq!(last.json()["error"], "refused: bad.bin is bad");
    assert_eq!(last.json()["preventRetry"], true);
    assert_eq!(t.call(&tus_head(&path)).status, 404);
    assert!(!t.uploads().join("bad.bin").exists());
    assert!(!t
        .temp()
        .join(format!("~tus-{}", path.trim_start_matches('/')))
        .exists());
    assert!(snapshot(&staging).is_empty(), "{:?}", snapshot(&staging));

    // Undecided (past the timeout): a 503 the client retries, the bytes kept; the retry's
    // empty PATCH at the end runs the hook again and publishes.
    let data = pseudo_random(9_000, 33);
    let path = tus_all_but_last(t, "slow.bin", &data);
    let end = data.len() as u64;
    let last = t.call(&patch(&path, end - 1, &data[data.len() - 1..]));
    assert_eq!(last.status, 503, "{}", String::from_utf8_lossy(&last.body));
    assert_eq!(last.header("Retry-After"), Some("30"));
    assert!(!t.uploads().join("slow.bin").exists());
    std::fs::write(dir.join("ready"), "").unwrap();
    let retried = t.call(&patch(&path, end, b""));
    assert_eq!(
        retried.status,
        204,
        "{}",
        String::from_utf8_lossy(&retried.body)
    );
    assert_eq!(range_support::published(t, &retried).1, data);
    let runs = hook_runs(dir, "slow.bin");
    assert_eq!(runs.len(), 2, "{runs:?}");

    // Undecided again, then tus-js-client's retry: HEADs (and an empty PATCH) at once. The
    // hook runs once more, the file is published once, no answer claims the end before it is.
    std::fs::remove_file(dir.join("ready")).unwrap();
    let data = pseudo_random(9_000, 34);
    let path = tus_all_but_last(t, "slow2.bin", &data);
    let last = t.call(&patch(&path, end - 1, &data[data.len() - 1..]));
    assert_eq!(last.status, 503);
    std::fs::write(dir.join("ready"), "").unwrap();
    let requests: Vec<Req> = (0..6)
        .map(|i| match i {
            0 => patch(&path, end, b""),
            _ => tus_head(&path),
        })
        .collect();
    let barrier = Barrier::new(requests.len());
    let answers: Vec<TestResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|req| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    t.call(req)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for answer in &answers {
        match answer.status {
            200 | 204 => assert!(
                answer.header("Upload-Complete-File").is_some(),
                "{:?}",
                answer.headers
            ),
            423 => {}
            other => panic!("{other}: {:?}", answer.headers),
        }
    }
    assert_eq!(hook_runs(dir, "slow2.bin").len(), 2);
    let done = t.call(&tus_head(&path));
    assert_eq!(done.status, 200);
    assert_eq!(range_support::published(t, &done).1, data);
    let copies: Vec<String> = published_files(t.uploads())
        .into_iter()
        .filter(|f| f.starts_with("slow2"))
        .collect();
    assert_eq!(copies, ["slow2.bin"]);
    assert!(snapshot(&staging).is_empty(), "{:?}", snapshot(&staging));
}

fn blueimp_hook_scenarios(t: &dyn Target, dir: &Path) {
    let send = |name: &str, data: &[u8]| -> TestResponse {
        let half = data.len() / 2;
        let first = t.call(&blueimp_chunk(
            name,
            0,
            &data[..half],
            data.len() as u64,
            true,
        ));
        assert_eq!(first.status, 200);
        t.call(&blueimp_chunk(
            name,
            half as u64,
            &data[half..],
            data.len() as u64,
            true,
        ))
    };
    // Accepted: the hook's JSON is files[0].data; it saw the form fields.
    let data = pseudo_random(20_000, 41);
    let last = send("ok.txt", &data);
    assert_eq!(last.status, 200);
    let file = &last.json()["files"][0];
    assert_eq!(file["complete"], true, "{file}");
    assert_eq!(file["data"], json!({"sha256": sha256_hex(&data)}));
    assert_eq!(std::fs::read(t.uploads().join("ok.txt")).unwrap(), data);
    let runs = hook_runs(dir, "ok.txt");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            &runs[0]["client"],
            &runs[0]["identifier"],
            &runs[0]["metadata"]
        ),
        (&json!("blueimp"), &json!("ok.txt"), &json!({"note": "x"}))
    );

    // Refused: files[0].error in a 200, as blueimp's pages read it; nothing kept.
    let data = pseudo_random(3_000, 42);
    let last = send("bad.txt", &data);
    assert_eq!(last.status, 200);
    assert_eq!(last.json()["files"][0]["error"], "refused: bad.txt is bad");
    assert!(!t.uploads().join("bad.txt").exists());
    assert_eq!(
        t.call(&blueimp_resume("bad.txt")).json()["file"],
        Value::Null
    );

    // Undecided: a 503; the resume request of the page's retry runs the hook again.
    let data = pseudo_random(3_000, 43);
    let last = send("slow.txt", &data);
    assert_eq!(last.status, 503);
    assert_eq!(last.header("Retry-After"), Some("30"));
    assert!(!t.uploads().join("slow.txt").exists());
    std::fs::write(dir.join("ready"), "").unwrap();
    let resumed = t.call(&blueimp_resume("slow.txt"));
    assert_eq!(resumed.status, 200);
    assert_eq!(
        resumed.json()["file"]["complete"],
        true,
        "{}",
        resumed.json()
    );
    assert_eq!(std::fs::read(t.uploads().join("slow.txt")).unwrap(), data);
    assert_eq!(hook_runs(dir, "slow.txt").len(), 2);
}

fn settings_ref<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn tus_and_blueimp_uploads_ask_the_hook_over_cgi() {
    let dir = Scratch::new("range-hook-cgi");
    let settings = hook_settings(&range_hook(dir.path()));
    let t = CgiTarget::new(&settings_ref(&settings));
    tus_hook_scenarios(&t, dir.path());
    std::fs::remove_file(dir.path().join("ready")).unwrap();
    blueimp_hook_scenarios(&t, dir.path());
}

#[test]
fn tus_and_blueimp_uploads_ask_the_hook_over_fastcgi() {
    let dir = Scratch::new("range-hook-fcgi");
    let settings = hook_settings(&range_hook(dir.path()));
    let t = FcgiTarget(Worker::start(
        false,
        &["--workers", "2"],
        &settings_ref(&settings),
    ));
    tus_hook_scenarios(&t, dir.path());
    std::fs::remove_file(dir.path().join("ready")).unwrap();
    blueimp_hook_scenarios(&t, dir.path());
    t.0.assert_no_panic();
}

#[test]
fn list_shows_a_tus_upload_in_flight() {
    let t = CgiTarget::new(&[]);
    let created = t.call(&creation(1000, &[("filename", "movie.mp4")]).user("ann"));
    assert_eq!(created.status, 201);
    let path = upload_path(&created);
    let stored = t.call(&patch(&path, 0, &[7u8; 300]).user("ann"));
    assert_eq!(stored.status, 204);
    let blueimp = t.call(&blueimp_chunk("b.txt", 0, b"abc", 10, false));
    assert_eq!(blueimp.status, 200);
    let entries = list_json(&t.0);
    let tus = entries
        .iter()
        .find(|e| e["client"] == "tus")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(
        (
            &tus["identifier"],
            &tus["user"],
            &tus["file"],
            &tus["stored"],
            &tus["total"],
            &tus["state"]
        ),
        (
            &json!(path.trim_start_matches('/')),
            &json!("ann"),
            &json!("movie.mp4"),
            &json!(300),
            &json!(1000),
            &json!("receiving")
        ),
        "{tus}"
    );
    let b = entries.iter().find(|e| e["client"] == "blueimp").unwrap();
    assert_eq!(
        (&b["identifier"], &b["stored"]),
        (&json!("b.txt"), &json!(3))
    );
    let (code, text) = list(&t.0, &[]);
    assert_eq!(code, 0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("receiving   tus") && l.contains("movie.mp4")),
        "{text}"
    );
}

#[test]
fn too_little_free_space_refuses_tus_creation_and_form_files_and_stores_nothing() {
    let t = CgiTarget::new(&[("RESUMABLE_MIN_FREE_SPACE", "100%")]);
    let refused = t.call(&creation(10, &[("filename", "a.bin")]));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("Retry-After"), Some("30"));
    assert!(refused.header("Location").is_none());
    let with_body = t.call(
        &creation(3, &[("filename", "b.bin")]).body("application/offset+octet-stream", b"abc"),
    );
    assert_eq!(with_body.status, 503);
    assert!(snapshot(t.temp()).is_empty(), "{:?}", snapshot(t.temp()));

    use common::forms::{file, form_request};
    let run = t.0.run(&form_request(&[file("f", "c.txt", b"hello")]));
    assert_eq!(run.response.status, 503, "{}", run.stderr);
    assert_eq!(run.response.header("Retry-After"), Some("30"));
    assert!(
        run.stderr.contains("RESUMABLE_MIN_FREE_SPACE"),
        "{}",
        run.stderr
    );
    assert!(published_files(t.uploads()).is_empty());
    assert!(common::forms::staging_is_empty(t.uploads()));
}
