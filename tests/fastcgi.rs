//! The FastCGI transport end to end: the real binary as a worker (bound, under spawn-fcgi, under
//! systemd-socket-activate), driven by the test client and by libfcgi's cgi-fcgi.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::fastcgi_client::*;
use common::scenarios::{assert_published, upload_all, upload_in_order};
use common::*;
use rustix::process::Signal;
use serde_json::Value;

fn octet(name: &str, len: usize, chunk: u64, seed: u64) -> Upload {
    Upload::new(
        Client::ResumableOctet,
        name,
        pseudo_random(len, seed),
        chunk,
    )
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The worker still answers a fresh connection after whatever the test did to it.
fn assert_still_serves(worker: &Worker) {
    let response = worker.send(&TestRequest {
        method: "OPTIONS".into(),
        ..TestRequest::default()
    });
    assert_eq!(
        response.status,
        204,
        "worker stopped serving: {}",
        worker.stderr()
    );
    worker.assert_no_panic();
}

/// No temporary chunk file is left behind (the handler discards partial chunks when it returns).
fn wait_no_temp_files(worker: &Worker) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let temps: Vec<String> = snapshot(worker.temp_dir())
            .into_keys()
            .filter(|p| p.ends_with(".tmp"))
            .collect();
        if temps.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "temporary files left: {temps:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_worker_passes_every_scenario() {
    let worker = Worker::start(false, &["--workers", "4"], &[]);
    common::scenarios::run_all(&worker);
    worker.assert_no_panic();
}

#[test]
fn unix_socket_worker_passes_every_scenario() {
    let worker = Worker::start(true, &[], &[]);
    let Addr::Unix(path) = &worker.addr else {
        unreachable!()
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "default --socket-mode");
    common::scenarios::run_all(&worker);
    worker.assert_no_panic();
}

#[test]
fn multi_chunk_upload_over_tcp_and_unix_publishes_the_same_bytes() {
    for unix in [false, true] {
        let worker = Worker::start(unix, &["--workers", "2", "--socket-mode", "0600"], &[]);
        // Chunks of 1 MiB: many STDIN records each, the last chunk nearly twice the size.
        let upload = octet("big.bin", (3 << 20) + 777_777, 1 << 20, 11);
        let response = upload_all(&worker, &upload);
        let file = assert_published(&worker, &upload, &response);
        assert_eq!(published_files(&worker.dirs.uploads), vec![file]);
        worker.assert_no_panic();
    }
}

#[test]
fn simultaneous_last_chunks_on_many_connections_publish_exactly_one_file() {
    let worker = Worker::start(false, &["--workers", "8"], &[]);
    let upload = octet("race.bin", 5 * 65_536 + 999, 65_536, 3);
    let last = upload.chunk_count();
    upload_in_order(&worker, &upload, &(1..last).collect::<Vec<_>>());
    let request = upload.chunk_request(last);
    // More connections than workers: the rest wait in the backlog and are served later.
    let connections = 24;
    let barrier = Barrier::new(connections);
    let responses: Vec<TestResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = worker.connect();
                    barrier.wait();
                    conn.send(&request, false)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut file = None;
    let mut completed_now = 0;
    for response in &responses {
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let json = response.json();
        assert_eq!(json["complete"], Value::Bool(true));
        if json["completedNow"] == Value::Bool(true) {
            completed_now += 1;
        }
        let name = json["file"].as_str().unwrap().to_string();
        assert_eq!(file.get_or_insert(name.clone()), &name);
    }
    assert_eq!(completed_now, 1, "exactly one request assembled the file");
    assert_published(&worker, &upload, &responses[0]);
    assert_eq!(published_files(&worker.dirs.uploads).len(), 1);
    worker.assert_no_panic();
}

#[test]
fn keep_conn_serves_many_requests_on_one_connection_and_drains_unread_bodies() {
    let worker = Worker::start(false, &["--workers", "1"], &[]);
    let upload = octet("keep.bin", 4 * 100_000 + 5, 100_000, 5);
    let mut conn = worker.connect();
    let mut id = 0u16;
    let mut next_id = || {
        id = id % 3 + 1;
        id
    };
    // A refusal that reads none of its 150 kB body: the rest must be drained, not taken for
    // the next request's records.
    let refused = upload.chunk_request(1);
    let limit = vec![(bytes("RESUMABLE_MAX_CHUNK_SIZE"), bytes("1000"))];
    let reply = conn
        .request(
            next_id(),
            true,
            &cgi_params(&refused, &limit),
            &[7u8; 150_000],
        )
        .unwrap();
    assert_eq!(reply.response().status, 415);
    let mut last = None;
    for number in 1..=upload.chunk_count() {
        let test = upload.test_request(number);
        let id = next_id();
        let reply = conn
            .request(id, true, &cgi_params(&test, &[]), &[])
            .unwrap();
        assert_eq!(reply.response().status, 204, "chunk {number} before upload");
        assert_eq!(reply.protocol_status, REQUEST_COMPLETE);
        let chunk = upload.chunk_request(number);
        let id = next_id();
        let reply = conn
            .request(id, true, &cgi_params(&chunk, &[]), &chunk.body)
            .unwrap();
        assert_eq!(reply.response().status, 200);
        last = Some(reply.response());
    }
    assert_published(&worker, &upload, &last.unwrap());
    // Still the same connection, and with one worker no other could have answered.
    let reply = conn
        .request(9, true, &cgi_params(&upload.test_request(1), &[]), &[])
        .unwrap();
    assert_eq!(reply.response().json()["complete"], Value::Bool(true));
    worker.assert_no_panic();
}

#[test]
fn a_body_cut_off_mid_stream_is_not_counted_and_the_worker_goes_on() {
    let worker = Worker::start(false, &["--workers", "1"], &[]);
    let upload = octet("cut.bin", 3 * 200_000, 200_000, 9);
    let chunk = upload.chunk_request(1);
    for cut_inside_a_record in [false, true] {
        let mut conn = worker.connect();
        let mut wire = begin(1, RESPONDER, true);
        wire.extend(stream(PARAMS, 1, &pairs(&cgi_params(&chunk, &[])), 0xffff));
        wire.extend(record(STDIN, 1, &chunk.body[..60_000]));
        if cut_inside_a_record {
            // A header that promises 65535 bytes, followed by only 1000.
            let full = record(STDIN, 1, &chunk.body[60_000..125_535]);
            wire.extend_from_slice(&full[..8 + 1000]);
        }
        conn.write_all(&wire).unwrap();
        drop(conn);
        wait_no_temp_files(&worker);
        let test = worker.send(&upload.test_request(1));
        assert_eq!(test.status, 204, "the partial chunk must not count");
    }
    let response = upload_all(&worker, &upload);
    assert_published(&worker, &upload, &response);
    assert!(
        worker.stderr().contains("closed mid"),
        "{}",
        worker.stderr()
    );
    worker.assert_no_panic();
}

#[test]
fn non_utf8_params_before_query_string_lose_nothing() {
    let worker = Worker::start(false, &[], &[]);
    let upload = octet("utf8.bin", 3000, 1000, 4);
    let mut last = None;
    for number in 1..=upload.chunk_count() {
        let request = upload.chunk_request(number);
        let mut params = vec![
            (bytes("REQUEST_URI"), b"/upload/close\xffx?a=\xfe".to_vec()),
            (bytes("HTTP_COOKIE"), b"s=\xc3\x28".to_vec()),
            (b"HTTP_X_\xff\xfe".to_vec(), bytes("name not UTF-8")),
        ];
        params.extend(cgi_params(&request, &[]));
        let reply = worker
            .connect()
            .request(1, false, &params, &request.body)
            .unwrap();
        assert_eq!(reply.response().status, 200);
        last = Some(reply.response());
    }
    assert_published(&worker, &upload, &last.unwrap());
    worker.assert_no_panic();
}

#[test]
fn hostile_records_close_only_their_connection() {
    let worker = Worker::start(false, &["--workers", "3"], &[]);
    let upload = octet("hostile.bin", 2 * 50_000, 50_000, 8);
    let chunk = upload.chunk_request(1);
    let chunk_params = pairs(&cgi_params(&chunk, &[]));

    // Each of these leaves the stream unusable: the worker closes the connection, writes
    // nothing, and keeps serving others.
    let mut bad_version = begin(1, RESPONDER, true);
    bad_version[0] = 2;
    let mut bad_version_mid_body = begin(1, RESPONDER, true);
    bad_version_mid_body.extend(stream(PARAMS, 1, &chunk_params, 0xffff));
    bad_version_mid_body.extend(record(STDIN, 1, &chunk.body[..1000]));
    let mut v0 = record(STDIN, 1, &chunk.body[1000..2000]);
    v0[0] = 0;
    bad_version_mid_body.extend(v0);
    let short_begin = record(BEGIN_REQUEST, 1, &[0, 1]);
    let mut huge_pair_length = begin(1, RESPONDER, true);
    huge_pair_length.extend(record(PARAMS, 1, &[0xff, 0xff, 0xff, 0xff, 0x01, b'x']));
    huge_pair_length.extend(record(PARAMS, 1, &[]));
    let mut too_many_params = begin(1, RESPONDER, true);
    for _ in 0..17 {
        too_many_params.extend(record(PARAMS, 1, &[b'a'; 0xffff]));
    }
    let mut short_record = begin(1, RESPONDER, true);
    short_record.extend_from_slice(&record(PARAMS, 1, &[b'a'; 0xffff])[..100]);
    let mut stdin_before_params_end = begin(1, RESPONDER, true);
    stdin_before_params_end.extend(record(STDIN, 1, b"body"));
    let mut same_id_begin_again = begin(1, RESPONDER, true);
    same_id_begin_again.extend(begin(1, RESPONDER, true));
    let cases: [(&str, Vec<u8>); 8] = [
        ("bad version", bad_version),
        ("bad version inside STDIN", bad_version_mid_body),
        ("BEGIN_REQUEST body of 2 bytes", short_begin),
        ("name-value length of 2 GiB", huge_pair_length),
        ("params over 1 MiB", too_many_params),
        ("record shorter than its header says", short_record),
        ("STDIN before PARAMS end", stdin_before_params_end),
        ("BEGIN_REQUEST again for the active id", same_id_begin_again),
    ];
    for (name, wire) in cases {
        let mut conn = worker.connect();
        // The worker may close before reading everything: a failed write is fine.
        let _ = conn.write_all(&wire);
        conn.shutdown_write();
        assert!(conn.closed_silently(), "{name}: expected a silent close");
        assert_still_serves(&worker);
    }
    wait_no_temp_files(&worker);
    assert_eq!(worker.send(&upload.test_request(1)).status, 204);

    // These are answered, and the same connection goes on.
    let mut conn = worker.connect();
    conn.write_all(&record(99, 0, b"whatever")).unwrap();
    let (kind, id, body) = read_record(&mut conn).unwrap().unwrap();
    assert_eq!(
        (kind, id, body[0]),
        (UNKNOWN_TYPE, 0, 99),
        "unknown management type"
    );
    // Types the application never receives, and records for inactive ids, are ignored.
    conn.write_all(&record(99, 7, b"ignored")).unwrap();
    conn.write_all(&record(STDOUT, 1, b"ignored")).unwrap();
    conn.write_all(&record(STDIN, 4, b"ignored")).unwrap();
    let get_values = pairs(&[
        (bytes("FCGI_MAX_CONNS"), vec![]),
        (bytes("FCGI_MAX_REQS"), vec![]),
        (bytes("FCGI_MPXS_CONNS"), vec![]),
        (bytes("SOMETHING_ELSE"), vec![]),
    ]);
    conn.write_all(&record(GET_VALUES, 0, &get_values)).unwrap();
    let (kind, _, body) = read_record(&mut conn).unwrap().unwrap();
    assert_eq!(kind, GET_VALUES_RESULT);
    assert_eq!(
        parse_pairs(&body),
        vec![
            ("FCGI_MAX_CONNS".to_string(), "3".to_string()),
            ("FCGI_MAX_REQS".to_string(), "3".to_string()),
            ("FCGI_MPXS_CONNS".to_string(), "0".to_string()),
        ]
    );
    // Another role: UNKNOWN_ROLE.
    conn.write_all(&begin(5, AUTHORIZER, true)).unwrap();
    let reply = read_reply(&mut conn, 5).unwrap();
    assert_eq!(reply.protocol_status, UNKNOWN_ROLE);
    assert!(reply.stdout.is_empty());
    // A second request id while one is active: CANT_MPX_CONN for it, the first completes.
    let mut wire = begin(1, RESPONDER, true);
    wire.extend(stream(PARAMS, 1, &chunk_params, 0xffff));
    wire.extend(begin(2, RESPONDER, true));
    wire.extend(stream(STDIN, 1, &chunk.body, 0xffff));
    conn.write_all(&wire).unwrap();
    let reply = read_reply(&mut conn, 1).unwrap();
    assert_eq!(reply.response().status, 200);
    let refused: Vec<_> = reply
        .others
        .iter()
        .filter(|(kind, id, _)| *kind == END_REQUEST && *id == 2)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].2[4], CANT_MPX_CONN);
    // ABORT_REQUEST in the middle of a body: END_REQUEST, no output, chunk 2 not counted.
    let second = upload.chunk_request(2);
    let mut wire = begin(3, RESPONDER, true);
    wire.extend(stream(PARAMS, 3, &pairs(&cgi_params(&second, &[])), 0xffff));
    wire.extend(record(STDIN, 3, &second.body[..20_000]));
    wire.extend(record(ABORT_REQUEST, 3, &[]));
    conn.write_all(&wire).unwrap();
    let reply = read_reply(&mut conn, 3).unwrap();
    assert_eq!(reply.protocol_status, REQUEST_COMPLETE);
    assert!(reply.stdout.is_empty(), "no output for an aborted request");
    wait_no_temp_files(&worker);
    let reply = conn
        .request(4, true, &cgi_params(&upload.test_request(2), &[]), &[])
        .unwrap();
    assert_eq!(reply.response().status, 204, "aborted chunk not counted");
    // And the upload still completes on the same connection.
    let reply = conn
        .request(4, true, &cgi_params(&second, &[]), &second.body)
        .unwrap();
    assert_published(&worker, &upload, &reply.response());
    assert_still_serves(&worker);
}

#[test]
fn resumable_params_set_the_dirs_per_request_and_http_params_never_do() {
    let worker = Worker::start(false, &[], &[]);
    let other = Dirs::new();
    let dir = |p: &std::path::Path| p.as_os_str().as_encoded_bytes().to_vec();
    let per_request = vec![
        (bytes("RESUMABLE_TEMP_DIR"), dir(&other.temp)),
        (bytes("RESUMABLE_UPLOAD_DIR"), dir(&other.uploads)),
    ];
    let from_headers = vec![
        (bytes("HTTP_RESUMABLE_TEMP_DIR"), dir(&other.temp)),
        (bytes("HTTP_RESUMABLE_UPLOAD_DIR"), dir(&other.uploads)),
        (bytes("resumable_upload_dir"), dir(&other.uploads)),
    ];
    let send_all = |upload: &Upload, extra: &[(Vec<u8>, Vec<u8>)]| {
        let mut conn = worker.connect();
        let mut last = None;
        for number in 1..=upload.chunk_count() {
            let request = upload.chunk_request(number);
            let reply = conn
                .request(1, true, &cgi_params(&request, extra), &request.body)
                .unwrap();
            assert_eq!(reply.response().status, 200);
            last = Some(reply.response());
        }
        last.unwrap().json()
    };
    let upload = octet("here.bin", 2500, 1000, 21);
    let json = send_all(&upload, &per_request);
    assert_eq!(json["complete"], Value::Bool(true));
    assert_eq!(
        published_files(&other.uploads),
        vec!["here.bin".to_string()]
    );
    assert!(published_files(&worker.dirs.uploads).is_empty());

    let upload = octet("not-there.bin", 2500, 1000, 22);
    send_all(&upload, &from_headers);
    assert_eq!(
        published_files(&other.uploads),
        vec!["here.bin".to_string()]
    );
    assert_eq!(
        published_files(&worker.dirs.uploads),
        vec!["not-there.bin".to_string()]
    );
    worker.assert_no_panic();
}

/// One request through libfcgi's `cgi-fcgi`, as a CGI program would be run.
fn cgi_fcgi(connect: &str, request: &TestRequest) -> TestResponse {
    let mut child = Command::new("/usr/bin/cgi-fcgi")
        .args(["-bind", "-connect", connect])
        .env_clear()
        .env("REQUEST_METHOD", &request.method)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .env(
            "CONTENT_TYPE",
            request.content_type.as_deref().unwrap_or(""),
        )
        .env("SCRIPT_FILENAME", "/upload")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/cgi-fcgi (Debian libfcgi-bin)");
    let mut stdin = child.stdin.take().unwrap();
    let body = request.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(output.status.success(), "cgi-fcgi: {:?}", output);
    TestResponse::from_cgi(&output.stdout)
}

fn upload_with_cgi_fcgi(worker: &Worker, connect: &str, name: &str) {
    let upload = octet(name, 3 * 300_000 + 1234, 300_000, 31);
    let mut last = None;
    for number in 1..=upload.chunk_count() {
        assert_eq!(cgi_fcgi(connect, &upload.test_request(number)).status, 204);
        let response = cgi_fcgi(connect, &upload.chunk_request(number));
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        last = Some(response);
    }
    assert_published(worker, &upload, &last.unwrap());
    worker.assert_no_panic();
}

#[test]
fn under_spawn_fcgi_on_fd0_driven_by_cgi_fcgi() {
    // TCP: spawn-fcgi -n binds, then execs the binary in place with the socket on fd 0.
    let dirs = Dirs::new();
    let addr = Addr::free_tcp();
    let Addr::Tcp(socket) = &addr else {
        unreachable!()
    };
    let mut command = Command::new("/usr/bin/spawn-fcgi");
    command
        .args([
            "-n",
            "-a",
            "127.0.0.1",
            "-p",
            &socket.port().to_string(),
            "--",
        ])
        .arg(binary())
        .args(["--workers", "2"]);
    let worker = Worker::launch(command, dirs, addr.clone(), &[]);
    upload_with_cgi_fcgi(&worker, &addr.listen_arg(), "spawn-tcp.bin");
    assert!(worker.stderr().contains("fd 0"), "{}", worker.stderr());

    // Unix socket.
    let dirs = Dirs::new();
    let path = dirs.root.path().join("spawned.sock");
    let mut command = Command::new("/usr/bin/spawn-fcgi");
    command
        .arg("-n")
        .arg("-s")
        .arg(&path)
        .arg("--")
        .arg(binary());
    let worker = Worker::launch(command, dirs, Addr::Unix(path.clone()), &[]);
    upload_with_cgi_fcgi(&worker, &path.display().to_string(), "spawn-unix.bin");
}

#[test]
fn under_systemd_socket_activation_on_fd3() {
    let dirs = Dirs::new();
    let addr = Addr::free_tcp();
    let mut command = Command::new("/usr/bin/systemd-socket-activate");
    // systemd-socket-activate passes only the variables named with -E to the program.
    command
        .arg("-l")
        .arg(addr.listen_arg())
        .arg(format!(
            "--setenv=RESUMABLE_TEMP_DIR={}",
            dirs.temp.display()
        ))
        .arg(format!(
            "--setenv=RESUMABLE_UPLOAD_DIR={}",
            dirs.uploads.display()
        ))
        .arg("--setenv=RESUMABLE_LOG=info")
        .arg(binary())
        .args(["--workers", "2"]);
    let worker = Worker::launch(command, dirs, addr.clone(), &[]);
    let upload = octet("activated.bin", 3 * 100_000, 100_000, 41);
    let response = upload_all(&worker, &upload);
    assert_published(&worker, &upload, &response);
    assert!(worker.stderr().contains("fd 3"), "{}", worker.stderr());
    worker.assert_no_panic();
}

#[test]
fn sigterm_lets_the_in_flight_upload_finish_then_exits_0() {
    let mut worker = Worker::start(false, &["--workers", "2"], &[]);
    // An idle keep-conn connection must not hold shutdown up.
    let mut idle = worker.connect();
    let reply = idle
        .request(
            1,
            true,
            &cgi_params(
                &TestRequest {
                    method: "OPTIONS".into(),
                    ..TestRequest::default()
                },
                &[],
            ),
            &[],
        )
        .unwrap();
    assert_eq!(reply.response().status, 204);

    let upload = octet("term.bin", 1 << 20, 1 << 20, 51);
    let chunk = upload.chunk_request(1);
    let mut conn = worker.connect();
    let mut wire = begin(1, RESPONDER, false);
    wire.extend(stream(PARAMS, 1, &pairs(&cgi_params(&chunk, &[])), 0xffff));
    wire.extend(record(STDIN, 1, &chunk.body[..30_000]));
    conn.write_all(&wire).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    assert!(worker.proc.signal(Signal::TERM), "SIGTERM delivered");
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(&stream(STDIN, 1, &chunk.body[30_000..], 0xffff))
        .unwrap();
    let reply = read_reply(&mut conn, 1).unwrap();
    assert_published(&worker, &upload, &reply.response());
    let status = loop {
        if let Some(status) = worker.proc.try_wait() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", worker.stderr());
    assert!(
        idle.closed_silently(),
        "the idle connection is closed at shutdown"
    );
    worker.assert_no_panic();
}

/// 32 simultaneous single-chunk uploads into one worker; memory must not grow with the chunk.
/// CI uses 8 MiB chunks; `RESUMABLE_TEST_RSS_CHUNK_MIB=64 cargo test --release --test fastcgi
/// peak -- --nocapture` reproduces the figure in the README.
#[test]
fn peak_memory_of_one_worker_during_32_parallel_chunk_uploads() {
    let mib: usize = std::env::var("RESUMABLE_TEST_RSS_CHUNK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let size = mib << 20;
    let worker = Worker::start(true, &["--workers", "32"], &[]);
    let baseline = worker.peak_rss_kib();
    let data = pseudo_random(size, 61);
    let expected = sha256_hex(&data);
    let parallel = 32;
    let barrier = Barrier::new(parallel);
    std::thread::scope(|scope| {
        for n in 0..parallel {
            let (worker, data, barrier) = (&worker, &data, &barrier);
            scope.spawn(move || {
                let query = encode_query(&[
                    ("resumableChunkNumber".into(), "1".into()),
                    ("resumableChunkSize".into(), size.to_string()),
                    ("resumableCurrentChunkSize".into(), size.to_string()),
                    ("resumableTotalSize".into(), size.to_string()),
                    ("resumableIdentifier".into(), format!("rss-{n}")),
                    ("resumableFilename".into(), format!("rss-{n}.bin")),
                ]);
                let request = TestRequest {
                    method: "POST".into(),
                    query,
                    content_type: Some("application/octet-stream".into()),
                    body: Vec::new(),
                    remote_user: None,
                };
                let mut params = cgi_params(&request, &[]);
                for (name, value) in params.iter_mut() {
                    if name == b"CONTENT_LENGTH" {
                        *value = size.to_string().into_bytes();
                    }
                }
                let mut conn = worker.connect();
                let mut wire = begin(1, RESPONDER, false);
                wire.extend(stream(PARAMS, 1, &pairs(&params), 0xffff));
                conn.write_all(&wire).unwrap();
                barrier.wait();
                for piece in data.chunks(0xffff) {
                    conn.write_all(&record(STDIN, 1, piece)).unwrap();
                }
                conn.write_all(&record(STDIN, 1, &[])).unwrap();
                let reply = read_reply(&mut conn, 1).unwrap();
                let json = reply.response().json();
                assert_eq!(json["complete"], Value::Bool(true), "{json}");
            });
        }
    });
    let peak = worker.peak_rss_kib();
    eprintln!(
        "peak RSS (VmHWM) of the worker: {peak} KiB (at start {baseline} KiB) for {parallel} x {mib} MiB chunks"
    );
    for n in 0..parallel {
        let stored = std::fs::read(worker.dirs.uploads.join(format!("rss-{n}.bin"))).unwrap();
        assert_eq!(sha256_hex(&stored), expected);
    }
    // Constant memory: far below even one chunk, let alone 32.
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB");
    worker.assert_no_panic();
}
