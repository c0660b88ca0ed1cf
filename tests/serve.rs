//! `resumable-cgi serve` as a real process driven over HTTP: the shared upload scenarios, the
//! demo page, the listing and downloads (no way out of the upload dir), and a clean stop.

mod common;
mod serve_support;

use std::os::unix::fs::symlink;

use common::*;
use rustix::process::Signal;
use serde_json::Value;
use serve_support::DevServer;

#[test]
fn dev_server_passes_every_scenario() {
    let server = DevServer::start();
    scenarios::run_all(&server);
    let log = server.log();
    assert!(!log.contains("panicked"), "server log:\n{log}");
}

/// A multi-chunk multipart upload and an octet upload, each checked with test requests before
/// and after, then found in the listing and downloaded byte for byte.
#[test]
fn uploads_are_listed_and_downloadable() {
    let server = DevServer::start();

    let multipart = Upload::new(
        Client::Resumable,
        "report 2024.pdf",
        pseudo_random(3 * 65536 + 40_000, 7),
        65536,
    );
    assert_eq!(multipart.chunk_count(), 3);
    for number in 1..=3 {
        assert_eq!(server.send(&multipart.test_request(number)).status, 204);
    }
    // Out of order: the last chunk (the big one) first.
    scenarios::upload_in_order(&server, &multipart, &[3, 1]);
    assert_eq!(server.send(&multipart.test_request(3)).status, 200);
    assert_eq!(server.send(&multipart.test_request(2)).status, 204);
    let done = scenarios::upload_in_order(&server, &multipart, &[2]);
    let stored = scenarios::assert_published(&server, &multipart, &done);
    assert_eq!(stored, "report 2024.pdf");
    for number in 1..=3 {
        let test = server.send(&multipart.test_request(number));
        assert_eq!(test.status, 200);
        assert_eq!(test.json()["complete"], Value::Bool(true));
    }

    let mut octet = Upload::new(
        Client::ResumableOctet,
        "photo.jpg",
        pseudo_random(100_000, 8),
        30_000,
    );
    octet.relative_path = "holiday/photo.jpg".into();
    let done = scenarios::upload_all(&server, &octet);
    assert_eq!(
        scenarios::assert_published(&server, &octet, &done),
        "holiday/photo.jpg"
    );

    let listing = server.get("/files/");
    assert_eq!(listing.status, 200);
    assert!(listing
        .header("Content-Type")
        .is_some_and(|ct| ct.starts_with("text/html")));
    let html = String::from_utf8_lossy(&listing.body);
    assert!(html.contains("href=\"/files/report%202024.pdf\""), "{html}");
    assert!(html.contains("data-bytes=\"236608\""), "{html}");
    assert!(html.contains("href=\"/files/holiday/photo.jpg\""), "{html}");
    assert!(html.contains("data-bytes=\"100000\""), "{html}");
    assert!(!html.contains(".resumable-staging"), "{html}");

    let download = server.get("/files/report%202024.pdf");
    assert_eq!(download.status, 200);
    assert_eq!(sha256_hex(&download.body), multipart.sha256());
    assert_eq!(
        download.header("Content-Type"),
        Some("application/octet-stream")
    );
    let download = server.get("/files/holiday/photo.jpg");
    assert_eq!(download.status, 200);
    assert_eq!(sha256_hex(&download.body), octet.sha256());
    let head = server.http("HEAD", "/files/holiday/photo.jpg", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("100000"));

    // The handler logged one line per upload request, the server one per page request.
    let log = server.log();
    assert_eq!(log.matches("stored, completed chunk").count(), 2, "{log}");
    assert!(log.contains("GET /files/ -> 200"), "{log}");
}

#[test]
fn downloads_never_leave_the_upload_dir() {
    let server = DevServer::start();
    let root = server.dir.clone();
    let uploads = server.upload_dir().to_path_buf();
    std::fs::write(root.join("secret.txt"), "top secret").unwrap();
    std::fs::write(uploads.join("fine.txt"), "fine").unwrap();
    std::fs::create_dir(uploads.join("sub")).unwrap();
    symlink(root.join("secret.txt"), uploads.join("link.txt")).unwrap();
    symlink(&root, uploads.join("linkdir")).unwrap();
    std::fs::create_dir_all(uploads.join(".resumable-staging")).unwrap();
    std::fs::write(uploads.join(".resumable-staging/x.assembling"), "half").unwrap();
    std::fs::write(uploads.join(".hidden"), "hidden").unwrap();

    assert_eq!(server.get("/files/fine.txt").body, b"fine");
    for (target, expected) in [
        ("/files/../secret.txt", 400),
        ("/files/sub/../../secret.txt", 400),
        ("/files/%2e%2e/secret.txt", 400),
        ("/files/%2E%2E%2Fsecret.txt", 400),
        ("/files/sub/..%2f..%2fsecret.txt", 400),
        ("/files//etc/passwd", 400),
        ("/files/..\\secret.txt", 400),
        ("/files/fine.txt%00", 400),
        ("/files/.resumable-staging/x.assembling", 400),
        ("/files/.hidden", 400),
        ("/files/link.txt", 404),
        ("/files/linkdir/secret.txt", 404),
        ("/files/sub", 404),
        ("/files/missing.txt", 404),
    ] {
        let response = server.get(target);
        assert_eq!(response.status, expected, "{target}");
        assert!(
            !String::from_utf8_lossy(&response.body).contains("secret"),
            "{target} leaked"
        );
    }
    let html = String::from_utf8_lossy(&server.get("/files/").body).into_owned();
    assert!(html.contains("fine.txt"), "{html}");
    for hidden in ["link.txt", "linkdir", ".hidden", "resumable-staging"] {
        assert!(!html.contains(hidden), "{hidden} listed: {html}");
    }
}

/// A request body sent with Transfer-Encoding: chunked has no length up front; it still
/// streams into the handler, which bounds it itself.
#[test]
fn chunked_request_bodies_are_accepted() {
    let server = DevServer::start();
    let upload = Upload::new(
        Client::ResumableOctet,
        "streamed.bin",
        pseudo_random(300_000, 9),
        150_000,
    );
    let mut last = None;
    for number in 1..=upload.chunk_count() {
        let request = upload.chunk_request(number);
        let response = server.http(
            "POST",
            &format!("/upload?{}", request.query),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Transfer-Encoding", "chunked"),
            ],
            &request.body,
        );
        assert_eq!(response.status, 200, "{}", server.log());
        last = Some(response);
    }
    let stored = scenarios::assert_published(&server, &upload, &last.unwrap());
    assert_eq!(stored, "streamed.bin");
}

#[test]
fn first_run_creates_its_dirs_serves_the_page_and_stops_on_signals() {
    for signal in [Signal::INT, Signal::TERM] {
        let scratch = Scratch::for_this_test();
        let dir = scratch.path();
        let mut server = DevServer::start_in(dir, &[], &dir.join("temp"), &dir.join("uploads"));
        assert!(dir.join("temp").is_dir() && dir.join("uploads").is_dir());

        let page = server.get("/");
        assert_eq!(page.status, 200);
        assert!(page
            .header("Content-Type")
            .is_some_and(|ct| ct.starts_with("text/html")));
        let html = String::from_utf8_lossy(&page.body);
        assert!(html.contains("resumable-cgi demo") && html.contains("resumableChunkNumber"));
        assert!(!html.contains("<script src"), "no external script");
        assert_eq!(server.get("/nothing-here").status, 404);
        assert_eq!(server.http("POST", "/", &[], b"x").status, 405);
        assert_eq!(server.get("/files/").status, 200);

        // The defaults (./temp, ./uploads) are used by the endpoint too.
        let upload = Upload::new(Client::Flow, "a.txt", b"hello".to_vec(), 1 << 20);
        let done = scenarios::upload_all(&server, &upload);
        assert_eq!(
            scenarios::assert_published(&server, &upload, &done),
            "a.txt"
        );

        let status = server.stop_with(signal);
        assert_eq!(status.code(), Some(0), "{signal:?}; log:\n{}", server.log());
        assert!(server.log().contains("stopped"));
    }
}

#[test]
fn bad_arguments_exit_2_and_a_busy_port_exits_1() {
    let output = std::process::Command::new(binary())
        .args(["serve", "--port", "1"])
        .env_remove("GATEWAY_INTERFACE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--port"));

    let scratch = Scratch::for_this_test();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = std::process::Command::new(binary())
        .args(["serve", "--listen", &busy.local_addr().unwrap().to_string()])
        .current_dir(scratch.path())
        .env_remove("GATEWAY_INTERFACE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}

/// The body streams from the socket to the disk and back: a 96 MiB chunk in and out leaves the
/// server's peak RSS far below the chunk's size.
#[test]
fn big_bodies_stream_in_constant_memory() {
    let server = DevServer::start_with(&[("RESUMABLE_MAX_CHUNK_SIZE", "128M")]);
    let size = 96 << 20;
    let upload = Upload::new(
        Client::ResumableOctet,
        "big.bin",
        pseudo_random(size, 11),
        size as u64,
    );
    let done = scenarios::upload_all(&server, &upload);
    scenarios::assert_published(&server, &upload, &done);
    let download = server.get("/files/big.bin");
    assert_eq!(download.header("Content-Length"), Some("100663296"));
    assert_eq!(sha256_hex(&download.body), upload.sha256());
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!("dev server peak RSS after 96 MiB in and out: {peak_kib} KiB");
    assert!(peak_kib < 16 * 1024, "peak RSS {peak_kib} KiB");
}
