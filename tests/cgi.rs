//! The binary as a real CGI process: the shared scenarios, plus what only CGI shows
//! (environment contract, settings errors, process races, the PHP takeover, memory).

mod common;

use common::*;

#[test]
fn cgi_passes_every_scenario() {
    scenarios::run_all(&Cgi::new());
}

#[test]
fn cgi_reads_a_parameter_namespace() {
    let cgi = Cgi::new().with_env("RESUMABLE_PARAMETER_NAMESPACE", "rjs-");
    dialects::namespaced_resumable(&cgi, "rjs-");
}

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use serde_json::Value;

#[test]
fn without_gateway_interface_it_prints_usage_and_exits_2() {
    let output = Command::new(binary()).env_clear().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("resumable-cgi serve"));
    assert!(output.stdout.is_empty());
}

#[test]
fn invalid_settings_are_a_500_that_names_the_variable_and_write_nothing() {
    let upload = Upload::new(Client::Resumable, "cfg.bin", pseudo_random(10, 1), 1024);
    for (name, value) in [
        ("RESUMABLE_MAX_FILE_SIZE", "lots"),
        ("RESUMABLE_MAX_CHUNK_SIZE", "-5"),
        ("RESUMABLE_MISSING_CHUNK_STATUS", "200"),
        ("RESUMABLE_LOG", "chatty"),
        ("RESUMABLE_TEMP_DIR", ""),
    ] {
        let cgi = Cgi::new().with_env(name, value);
        let before = snapshot(cgi.dirs.root.path());
        let run = cgi.run(&upload.chunk_request(1));
        assert_eq!(run.exit_code, Some(0));
        assert_eq!(run.response.status, 500, "{name}={value}");
        assert!(
            run.stderr.contains(name),
            "log names {name}: {}",
            run.stderr
        );
        assert_eq!(
            snapshot(cgi.dirs.root.path()),
            before,
            "{name}: nothing written"
        );
    }
}

#[test]
fn missing_or_unwritable_dirs_are_a_500_with_a_clear_log_line() {
    let upload = Upload::new(Client::Resumable, "dirs.bin", pseudo_random(10, 1), 1024);
    let cgi = Cgi::new();
    std::fs::remove_dir(&cgi.dirs.temp).unwrap();
    let run = cgi.run(&upload.chunk_request(1));
    assert_eq!((run.exit_code, run.response.status), (Some(0), 500));
    assert!(
        run.stderr.contains("temp directory")
            && run.stderr.contains(&*cgi.dirs.temp.to_string_lossy()),
        "{}",
        run.stderr
    );

    let cgi = Cgi::new();
    std::fs::remove_dir(&cgi.dirs.uploads).unwrap();
    let run = cgi.run(&upload.chunk_request(1));
    assert_eq!(run.response.status, 500);
    assert!(run.stderr.contains("upload directory"), "{}", run.stderr);
    assert!(
        snapshot(&cgi.dirs.temp).is_empty(),
        "nothing stored for an unusable setup"
    );
}

#[test]
fn missing_chunk_status_404_reproduces_the_php_script() {
    let cgi = Cgi::new().with_env("RESUMABLE_MISSING_CHUNK_STATUS", "404");
    let upload = Upload::new(Client::Resumable, "s404.bin", pseudo_random(10, 1), 1024);
    let run = cgi.run(&upload.test_request(1));
    assert_eq!(run.response.status, 404);
    assert_eq!(cgi.send(&upload.chunk_request(1)).status, 200);
    assert_eq!(cgi.send(&upload.test_request(1)).status, 200);
}

#[test]
fn configured_limits_refuse_with_415_before_reading_the_body() {
    let cgi = Cgi::new()
        .with_env("RESUMABLE_MAX_CHUNK_SIZE", "1K")
        .with_env("RESUMABLE_MAX_FILE_SIZE", "10K");
    let big_chunks = Upload::new(
        Client::ResumableOctet,
        "limit.bin",
        pseudo_random(4096, 1),
        2048,
    );
    assert_eq!(cgi.send(&big_chunks.chunk_request(1)).status, 415);
    let big_file = Upload::new(
        Client::Resumable,
        "limit2.bin",
        pseudo_random(20 << 10, 1),
        1024,
    );
    assert_eq!(cgi.send(&big_file.chunk_request(1)).status, 415);
    assert_eq!(cgi.send(&big_file.test_request(1)).status, 415);
    // A body larger than any chunk may be (2 x 1K + 1 MiB of framing): refused unread.
    let small = Upload::new(
        Client::ResumableOctet,
        "limit3.bin",
        pseudo_random(100, 1),
        1024,
    );
    let huge = TestRequest {
        body: vec![0; 3 << 20],
        ..small.chunk_request(1)
    };
    assert_eq!(cgi.send(&huge).status, 415);
    assert!(snapshot(&cgi.dirs.temp).values().all(|kind| kind == "dir"));
    // Within limits it works.
    let ok = Upload::new(
        Client::Resumable,
        "limit4.bin",
        pseudo_random(3000, 2),
        1024,
    );
    scenarios::assert_published(&cgi, &ok, &scenarios::upload_all(&cgi, &ok));
}

/// The classic PHP script's layout: an upload begun there finishes here.
#[test]
fn an_upload_begun_under_the_php_script_finishes_here() {
    let cgi = Cgi::new();
    let upload = Upload::new(
        Client::Resumable,
        "holiday-video.mp4",
        pseudo_random(5 * 700 + 300, 11),
        700,
    );
    assert_eq!(upload.chunk_count(), 5);
    // What upload.php leaves behind after chunks 1..3: temp/<identifier>/<filename>.part<N>.
    let php_dir = cgi.dirs.temp.join(&upload.identifier);
    std::fs::create_dir(&php_dir).unwrap();
    for number in 1..=3 {
        std::fs::write(
            php_dir.join(format!("holiday-video.mp4.part{number}")),
            upload.chunk_bytes(number),
        )
        .unwrap();
    }
    // The client reloads, tests each chunk, and uploads only the missing ones.
    let present: Vec<u16> = (1..=5)
        .map(|n| cgi.send(&upload.test_request(n)).status)
        .collect();
    assert_eq!(present, vec![200, 200, 200, 204, 204]);
    let done = scenarios::upload_in_order(&cgi, &upload, &[4, 5]);
    assert_eq!(
        scenarios::assert_published(&cgi, &upload, &done),
        "holiday-video.mp4"
    );
    // Parts are stored where PHP looks too, as long as they wait: a part that continues the
    // upload's staging file is appended to it and removed (so an upload begun here cannot be
    // finished by the PHP script), one that arrives ahead of a gap stays.
    let next = Upload::new(
        Client::Resumable,
        "report.pdf",
        pseudo_random(2100, 12),
        700,
    );
    cgi.send(&next.chunk_request(2));
    assert!(cgi
        .dirs
        .temp
        .join(&next.identifier)
        .join("report.pdf.part2")
        .is_file());
}

/// The last chunks of one file arriving in separate processes at the same moment: exactly one
/// assembly, one published file, every answer 200.
#[test]
fn racing_last_chunks_in_separate_processes_assemble_exactly_once() {
    let iterations = 40;
    let cgi = Arc::new(Cgi::new());
    for iteration in 0..iterations {
        let name = format!("race-{iteration}.bin");
        let upload = Arc::new(Upload::new(
            Client::Resumable,
            &name,
            pseudo_random(8 * 256 + 100, iteration),
            256,
        ));
        assert_eq!(upload.chunk_count(), 8);
        scenarios::upload_in_order(&*cgi, &upload, &[1, 2, 3, 4]);
        // Chunks 5..8 plus duplicates of 8 and 7, all released together.
        let numbers = [5u64, 6, 7, 8, 8, 7];
        let barrier = Arc::new(Barrier::new(numbers.len()));
        let handles: Vec<_> = numbers
            .into_iter()
            .map(|number| {
                let (cgi, upload, barrier) = (cgi.clone(), upload.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut command = cgi.command(&upload.chunk_request(number));
                    let mut child = command.spawn().unwrap();
                    barrier.wait();
                    use std::io::Write;
                    let body = upload.chunk_request(number).body;
                    child.stdin.take().unwrap().write_all(&body).unwrap();
                    let output = child.wait_with_output().unwrap();
                    assert_eq!(output.status.code(), Some(0));
                    TestResponse::from_cgi(&output.stdout)
                })
            })
            .collect();
        let responses: Vec<TestResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let completed_now = responses
            .iter()
            .filter(|r| r.json()["completedNow"] == Value::Bool(true))
            .count();
        for response in &responses {
            assert_eq!(
                response.status,
                200,
                "{}",
                String::from_utf8_lossy(&response.body)
            );
        }
        let published: Vec<String> = published_files(&cgi.dirs.uploads)
            .into_iter()
            .filter(|f| f.starts_with(&format!("race-{iteration}")))
            .collect();
        assert_eq!(published, vec![name.clone()], "iteration {iteration}");
        assert!(completed_now <= 1, "assembled {completed_now} times");
        let stored = std::fs::read(cgi.dirs.uploads.join(&name)).unwrap();
        assert_eq!(sha256_hex(&stored), upload.sha256());
        if completed_now == 0 {
            // Every racer stored its chunk before any saw full coverage is impossible: one of
            // them must have completed. (Kept as an explicit check of the lock's job.)
            panic!("iteration {iteration}: nobody completed the upload");
        }
    }
    scenarios::assert_no_parts_left(&*cgi);
    assert_eq!(
        std::fs::read_dir(cgi.dirs.uploads.join(".resumable-staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn authenticated_users_have_separate_uploads() {
    let cgi = Cgi::new();
    let mut alice = Upload::new(Client::Flow, "same.txt", b"alice's bytes".to_vec(), 1024);
    let mut bob = Upload::new(Client::Flow, "same.txt", b"bob's bytes!!".to_vec(), 1024);
    assert_eq!(alice.identifier, bob.identifier);
    alice.remote_user = Some("alice".into());
    bob.remote_user = Some("bob".into());
    scenarios::upload_all(&cgi, &alice);
    // Bob's test for the same identifier does not see Alice's upload.
    assert_eq!(cgi.send(&bob.test_request(1)).status, 204);
    let done = scenarios::upload_all(&cgi, &bob);
    assert_eq!(
        scenarios::assert_published(&cgi, &bob, &done),
        "same (1).txt"
    );
}

fn outside_snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    snapshot(dir)
}

#[test]
fn symlinks_planted_in_the_dirs_are_never_followed() {
    let cgi = Cgi::new();
    let outside = cgi.dirs.root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim.txt"), b"precious").unwrap();
    let before = outside_snapshot(&outside);

    // 1. The upload's temp folder is a symlink to elsewhere.
    let a = Upload::new(Client::ResumableOctet, "a.txt", pseudo_random(10, 1), 1024);
    symlink(&outside, cgi.dirs.temp.join(&a.identifier)).unwrap();
    assert_eq!(cgi.send(&a.chunk_request(1)).status, 500);
    assert_eq!(cgi.send(&a.test_request(1)).status, 500);

    // 2. A part name is a symlink to a file outside: it counts as absent, and storing the
    //    chunk replaces the link instead of writing through it.
    let b = Upload::new(Client::ResumableOctet, "b.txt", pseudo_random(10, 2), 1024);
    let b_dir = cgi.dirs.temp.join(&b.identifier);
    std::fs::create_dir(&b_dir).unwrap();
    symlink(outside.join("victim.txt"), b_dir.join("b.txt.part1")).unwrap();
    assert_eq!(cgi.send(&b.test_request(1)).status, 204);
    let done = cgi.send(&b.chunk_request(1));
    scenarios::assert_published(&cgi, &b, &done);

    // 3. A folder of the published path is a symlink out of the upload dir.
    symlink(&outside, cgi.dirs.uploads.join("linked")).unwrap();
    let mut c = Upload::new(Client::Flow, "c.txt", pseudo_random(10, 3), 1024);
    c.relative_path = "linked/c.txt".into();
    assert_eq!(cgi.send(&c.chunk_request(1)).status, 500);

    // 4. The published name itself is a symlink: it is a taken name, not a target.
    symlink(outside.join("victim.txt"), cgi.dirs.uploads.join("d.txt")).unwrap();
    let d = Upload::new(Client::Flow, "d.txt", pseudo_random(10, 4), 1024);
    assert_eq!(
        scenarios::assert_published(&cgi, &d, &scenarios::upload_all(&cgi, &d)),
        "d (1).txt"
    );

    assert_eq!(
        outside_snapshot(&outside),
        before,
        "nothing outside changed"
    );
}

#[test]
fn a_non_utf8_query_is_answered_not_panicked() {
    use std::os::unix::ffi::OsStrExt;
    let cgi = Cgi::new();
    let upload = Upload::new(
        Client::ResumableOctet,
        "bytes.txt",
        pseudo_random(10, 1),
        1024,
    );
    let request = upload.chunk_request(1);
    let mut command = cgi.command(&request);
    let mut raw = request.query.clone().into_bytes();
    raw.extend_from_slice(b"&junk=\xff\xfe");
    command.env("QUERY_STRING", std::ffi::OsStr::from_bytes(&raw));
    // A temp dir whose path is not UTF-8 is still just a path.
    let odd_temp = cgi
        .dirs
        .root
        .path()
        .join(std::ffi::OsStr::from_bytes(b"temp-\xff"));
    std::fs::create_dir(&odd_temp).unwrap();
    command.env("RESUMABLE_TEMP_DIR", &odd_temp);
    let run = Cgi::run_command(command, &request.body);
    assert_eq!(run.exit_code, Some(0));
    let response = run.response;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(odd_temp
        .join(&upload.identifier)
        .join("bytes.txt.complete")
        .is_file());
}

/// Peak memory of one CGI process streaming a large chunk: constant, whatever the chunk size.
/// The body comes from a file, so the test process itself stays small (a forked child's
/// ru_maxrss starts from its parent's).
#[test]
fn a_large_chunk_streams_in_constant_memory() {
    use std::io::Write;
    let size: u64 = 256 << 20;
    let cgi = Cgi::new().with_env("RESUMABLE_MAX_CHUNK_SIZE", "512M");
    // (label, multipart, Plupload: a counted chunk whose length only the multipart part tells)
    for (label, multipart, plupload) in [
        ("octet", false, false),
        ("multipart", true, false),
        ("plupload", true, true),
    ] {
        let name = format!("big-{label}.bin");
        let mut params = vec![
            ("resumableChunkNumber".to_string(), "1".to_string()),
            ("resumableChunkSize".into(), size.to_string()),
            ("resumableCurrentChunkSize".into(), size.to_string()),
            ("resumableTotalSize".into(), size.to_string()),
            (
                "resumableIdentifier".into(),
                format!("{size}-big{multipart}"),
            ),
            ("resumableFilename".into(), name.clone()),
            // The rest of what resumable.js sends: text fields cost the parser reads too.
            ("resumableType".into(), "application/octet-stream".into()),
            ("resumableRelativePath".into(), name.clone()),
            ("resumableTotalChunks".into(), "1".into()),
        ];
        if plupload {
            params = vec![
                ("name".into(), name.clone()),
                ("chunk".into(), "0".into()),
                ("chunks".into(), "1".into()),
            ];
        }
        let body_path = cgi.dirs.root.path().join("body");
        let mut body = std::io::BufWriter::new(std::fs::File::create(&body_path).unwrap());
        let (head, tail) = if multipart {
            let (_, framing) = common::multipart(&params, b"@@", &name);
            let at = framing.windows(2).position(|w| w == b"@@").unwrap();
            (framing[..at].to_vec(), framing[at + 2..].to_vec())
        } else {
            (Vec::new(), Vec::new())
        };
        body.write_all(&head).unwrap();
        let mut hasher = common::sha256::Sha256Hex::default();
        for block in 0..(size >> 20) {
            let bytes = pseudo_random(1 << 20, block);
            hasher.update(&bytes);
            body.write_all(&bytes).unwrap();
        }
        body.write_all(&tail).unwrap();
        drop(body);
        let expected = hasher.hex();
        let request = TestRequest {
            method: "POST".into(),
            query: if multipart {
                String::new()
            } else {
                encode_query(&params)
            },
            content_type: Some(if multipart {
                format!("multipart/form-data; boundary={BOUNDARY}")
            } else {
                "application/octet-stream".into()
            }),
            body: Vec::new(),
            remote_user: None,
        };
        let mut command = cgi.command(&request);
        let length = std::fs::metadata(&body_path).unwrap().len();
        command
            .env("CONTENT_LENGTH", length.to_string())
            .stdin(std::fs::File::open(&body_path).unwrap())
            .stdout(std::process::Stdio::null());
        // Reaped by wait4 below, which also reports its peak memory.
        #[allow(clippy::zombie_processes)]
        let child = command.spawn().unwrap();
        let (status, max_rss_kib) = wait_with_peak_rss(child.id() as i32);
        assert_eq!(status, 0);
        eprintln!(
            "{label}: {} MiB chunk, peak RSS {max_rss_kib} KiB",
            size >> 20
        );
        assert!(
            max_rss_kib < 10 * 1024,
            "peak RSS {max_rss_kib} KiB for a {size}-byte chunk"
        );
        let got = sha256_file(&cgi.dirs.uploads.join(&name));
        assert_eq!(got, expected);
        std::fs::remove_file(cgi.dirs.uploads.join(&name)).unwrap();
    }
}

/// Waits for a child and returns its exit status and peak resident memory (KiB), from wait4.
fn wait_with_peak_rss(pid: i32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

#[test]
fn cleanup_removes_abandoned_uploads_and_keeps_fresh_ones() {
    let cgi = Cgi::new();
    let old = Upload::new(Client::Resumable, "old.bin", pseudo_random(3000, 1), 1000);
    let fresh = Upload::new(Client::Resumable, "fresh.bin", pseudo_random(3000, 2), 1000);
    cgi.send(&old.chunk_request(1));
    cgi.send(&fresh.chunk_request(1));
    let old_dir = cgi.dirs.temp.join(&old.identifier);
    let three_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
    for entry in std::fs::read_dir(&old_dir).unwrap().flatten() {
        std::fs::File::open(entry.path())
            .unwrap()
            .set_modified(three_days_ago)
            .unwrap();
    }
    std::fs::File::open(&old_dir)
        .unwrap()
        .set_modified(three_days_ago)
        .unwrap();
    let output = Command::new(binary())
        .args(["cleanup", "--older-than", "48h"])
        .env("RESUMABLE_TEMP_DIR", &cgi.dirs.temp)
        .env("RESUMABLE_UPLOAD_DIR", &cgi.dirs.uploads)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("removed 1 abandoned"));
    assert!(!old_dir.exists());
    assert_eq!(cgi.send(&fresh.test_request(1)).status, 200);
    assert_eq!(cgi.send(&old.test_request(1)).status, 204);
}

/// A site changes chunkSize while an upload is half done: parts stored under the old size are
/// never taken for parts of the new one, even where their sizes coincide.
#[test]
fn a_changed_chunk_size_never_mixes_old_and_new_parts() {
    let cgi = Cgi::new();
    let data = pseudo_random(25, 77);
    // Before: chunks of 10 in ceil mode are [10, 10, 5]; chunks 1 and 3 arrive.
    let mut before = Upload::new(Client::Resumable, "resized.bin", data.clone(), 10);
    before.force_chunk_size = true;
    scenarios::upload_in_order(&cgi, &before, &[1, 3]);
    // After: chunks of 5 are [5, 5, 5, 5, 5]. Old part 3 is 5 bytes too, but of offset 20.
    let after = Upload::new(Client::Resumable, "resized.bin", data, 5);
    assert_eq!(after.identifier, before.identifier);
    assert_eq!(
        cgi.send(&after.test_request(3)).status,
        204,
        "old part 3 is not new part 3"
    );
    // The client uploads what its tests call missing, as resumable.js does.
    let mut last = None;
    for number in 1..=after.chunk_count() {
        if cgi.send(&after.test_request(number)).status != 200 {
            last = Some(cgi.send(&after.chunk_request(number)));
        }
    }
    let done = last.expect("something was uploaded");
    assert_eq!(
        scenarios::assert_published(&cgi, &after, &done),
        "resized.bin"
    );
    scenarios::assert_no_parts_left(&cgi);
    let left: Vec<String> = std::fs::read_dir(cgi.dirs.temp.join(&after.identifier))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 2 && left.iter().all(|f| common::kept_after_completion(f)),
        "only the completion record and the lock file are left: {left:?}"
    );
}

/// A form upload of 1 GiB in three files (and text fields between them) through one CGI
/// process: every file streams to disk, so peak memory stays that of a small request.
#[test]
fn a_one_gib_form_upload_streams_in_constant_memory() {
    use common::forms::*;
    use sha2::Digest;
    use std::io::Write;
    let cgi = Cgi::new();
    let sizes: [u64; 3] = [512 << 20, (384 << 20) + 12_345, (128 << 20) - 12_345];
    assert_eq!(sizes.iter().sum::<u64>(), 1 << 30);
    // The framing of each file part around a marker, then the marker replaced by the bytes.
    let parts: Vec<FormPart> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, _)| {
            [
                text(&format!("caption{i}"), "a big one"),
                file("files[]", &format!("gib-{i}.bin"), b"@@"),
            ]
        })
        .collect();
    let (content_type, framing) = form_body(&parts);
    let body_path = cgi.dirs.root.path().join("body");
    let mut body = std::io::BufWriter::new(std::fs::File::create(&body_path).unwrap());
    let mut expected = Vec::new();
    let mut pieces = framing.split(|&b| b == b'@').filter(|p| !p.is_empty());
    for (i, size) in sizes.iter().enumerate() {
        body.write_all(pieces.next().unwrap()).unwrap();
        let mut hasher = sha2::Sha256::new();
        let mut left = *size;
        let mut block_seed = i as u64 * 10_000;
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            let bytes = pseudo_random(n, block_seed);
            block_seed += 1;
            hasher.update(&bytes);
            body.write_all(&bytes).unwrap();
            left -= n as u64;
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        expected.push(hex);
    }
    body.write_all(pieces.next().unwrap()).unwrap();
    assert!(pieces.next().is_none());
    drop(body);
    let request = TestRequest {
        method: "POST".into(),
        content_type: Some(content_type),
        ..TestRequest::default()
    };
    let mut command = cgi.command(&request);
    let length = std::fs::metadata(&body_path).unwrap().len();
    let out_path = cgi.dirs.root.path().join("out");
    command
        .env("CONTENT_LENGTH", length.to_string())
        .stdin(std::fs::File::open(&body_path).unwrap())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null());
    // Reaped by wait4 below, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().unwrap();
    let (status, max_rss_kib) = wait_with_peak_rss(child.id() as i32);
    assert_eq!(status, 0);
    std::fs::remove_file(&body_path).unwrap();
    let response = TestResponse::from_cgi(&std::fs::read(&out_path).unwrap());
    eprintln!("1 GiB form upload in 3 files: peak RSS {max_rss_kib} KiB");
    assert_eq!(codes(&response), [0, 0, 0]);
    for (i, sha) in expected.iter().enumerate() {
        let stored = cgi.dirs.uploads.join(format!("gib-{i}.bin"));
        assert_eq!(std::fs::metadata(&stored).unwrap().len(), sizes[i]);
        assert_eq!(&sha256_file(&stored), sha, "gib-{i}.bin");
        std::fs::remove_file(stored).unwrap();
    }
    assert!(
        max_rss_kib < 10 * 1024,
        "peak RSS {max_rss_kib} KiB for a 1 GiB form upload"
    );
}
