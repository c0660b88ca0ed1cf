//! tus 1.0 on the upload endpoint, request by request: every status the protocol (and this
//! server) answers, through the service in-process, the binary as CGI and a FastCGI worker;
//! then what only a real process shows: a body cut off, two PATCHes at once, expiry and
//! cleanup, users kept apart, hostile names.

mod common;
mod range_support;

use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use common::fastcgi_client::Worker;
use common::*;
use range_support::*;
use sha1::Digest as _;

const MAX: &str = "1M";

fn settings() -> Vec<(&'static str, &'static str)> {
    vec![("RESUMABLE_MAX_FILE_SIZE", MAX)]
}

fn status_of(target: &dyn Target, req: &Req) -> u16 {
    target.call(req).status
}

/// Every status of the protocol, in the order a client meets them.
fn protocol_table(t: &dyn Target) {
    // Discovery: OPTIONS needs no Tus-Resumable and lists the extensions.
    let options = t.call(&Req::new("OPTIONS"));
    assert_eq!(options.status, 204);
    let preflight = t.call(&Req::tus("OPTIONS", None));
    let versions = preflight
        .headers
        .iter()
        .filter(|(n, _)| n == "Tus-Resumable")
        .count();
    assert_eq!(
        (preflight.status, versions),
        (204, 1),
        "{:?}",
        preflight.headers
    );
    for (name, value) in [
        ("Tus-Resumable", "1.0.0"),
        ("Tus-Version", "1.0.0"),
        (
            "Tus-Extension",
            "creation,creation-with-upload,termination,expiration,checksum",
        ),
        ("Tus-Max-Size", "1048576"),
        ("Tus-Checksum-Algorithm", "sha1,sha256"),
        ("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    ] {
        assert_eq!(options.header(name), Some(value), "OPTIONS {name}");
    }

    // Creation.
    let meta = [("filename", "report.pdf"), ("filetype", "application/pdf")];
    let created = t.call(&creation(11, &meta));
    assert_eq!(created.status, 201);
    assert_eq!(created.header("Tus-Resumable"), Some("1.0.0"));
    assert!(created
        .header("Upload-Expires")
        .is_some_and(|v| v.ends_with(" GMT")));
    let path = upload_path(&created);
    let id = path.trim_start_matches('/');
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let other = create(t, 11, &meta);
    assert_ne!(other, path, "every creation gets its own id");

    let refused_creations: Vec<(&str, Req, u16)> = vec![
        (
            "another version",
            creation(11, &[]).header("Tus-Resumable", "0.2.2"),
            412,
        ),
        ("over Tus-Max-Size", creation(1_048_577, &[]), 413),
        ("u64::MAX", creation(u64::MAX, &[]), 413),
        ("no Upload-Length", Req::tus("POST", None), 400),
        (
            "negative",
            Req::tus("POST", None).header("Upload-Length", "-1"),
            400,
        ),
        (
            "hex",
            Req::tus("POST", None).header("Upload-Length", "0x10"),
            400,
        ),
        (
            "fraction",
            Req::tus("POST", None).header("Upload-Length", "1.5"),
            400,
        ),
        (
            "beyond u64",
            Req::tus("POST", None).header("Upload-Length", "99999999999999999999"),
            400,
        ),
        (
            "deferred length",
            Req::tus("POST", None).header("Upload-Defer-Length", "1"),
            400,
        ),
        (
            "concatenation",
            creation(11, &[]).header("Upload-Concat", "partial"),
            400,
        ),
        (
            "metadata not base64",
            creation(11, &[]).header("Upload-Metadata", "filename !!!!"),
            400,
        ),
        (
            "metadata key twice",
            creation(11, &[]).header("Upload-Metadata", "filename YQ==,filename Yg=="),
            400,
        ),
        (
            "with upload, longer than the upload",
            creation(3, &[]).body("application/offset+octet-stream", b"abcd"),
            413,
        ),
        (
            "with upload, unsupported checksum",
            creation(3, &[])
                .header("Upload-Checksum", "md5 XrY7u+Ae7tCTyyK7j1rNww==")
                .body("application/offset+octet-stream", b"abc"),
            400,
        ),
        ("GET on the endpoint", Req::tus("GET", None), 405),
    ];
    for (name, req, status) in refused_creations {
        let response = expect_status(t, name, &req, status);
        assert_eq!(response.header("Tus-Resumable"), Some("1.0.0"), "{name}");
        if status == 412 {
            assert_eq!(response.header("Tus-Version"), Some("1.0.0"), "{name}");
        }
    }

    // HEAD: offset, length, the metadata as sent, never cached.
    let head_answer = t.call(&head(&path));
    assert_eq!(head_answer.status, 200);
    assert_eq!(head_answer.header("Upload-Offset"), Some("0"));
    assert_eq!(head_answer.header("Upload-Length"), Some("11"));
    assert_eq!(head_answer.header("Cache-Control"), Some("no-store"));
    let expires =
        |r: &TestResponse| httpdate::parse_http_date(r.header("Upload-Expires").unwrap()).unwrap();
    let until = expires(&head_answer)
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(until > Duration::from_secs(47 * 3600) && until <= Duration::from_secs(48 * 3600));
    assert_eq!(
        head_answer.header("Upload-Metadata"),
        Some(metadata(&meta).as_str())
    );

    // PATCH refusals, none of which changes the offset.
    let hello = b"hello world";
    let sha1 = |bytes: &[u8]| b64(&sha1::Sha1::digest(bytes));
    let refused_patches: Vec<(&str, Req, u16)> = vec![
        (
            "no Tus-Resumable",
            patch(&path, 0, b"hello").without("Tus-Resumable"),
            412,
        ),
        (
            "wrong Content-Type",
            patch(&path, 0, b"hello").body("application/octet-stream", b"hello"),
            415,
        ),
        (
            "no Upload-Offset",
            patch(&path, 0, b"hello").without("Upload-Offset"),
            400,
        ),
        (
            "negative offset",
            patch(&path, 0, b"hello").header("Upload-Offset", "-5"),
            400,
        ),
        (
            "offset not decimal",
            patch(&path, 0, b"hello").header("Upload-Offset", "1e3"),
            400,
        ),
        ("offset ahead", patch(&path, 5, b"hello"), 409),
        (
            "more than the length",
            patch(&path, 0, b"hello world!"),
            413,
        ),
        (
            "checksum mismatch",
            patch(&path, 0, b"hello")
                .header("Upload-Checksum", &format!("sha1 {}", sha1(b"HELLO"))),
            460,
        ),
        (
            "unsupported checksum",
            patch(&path, 0, b"hello").header("Upload-Checksum", "crc32 AAAAAA=="),
            400,
        ),
        (
            "checksum not base64",
            patch(&path, 0, b"hello").header("Upload-Checksum", "sha1 ****"),
            400,
        ),
        (
            "unknown id",
            patch(&format!("/{}", "0".repeat(32)), 0, b"hello"),
            404,
        ),
        ("GET on an upload", Req::tus("GET", Some(&path)), 405),
    ];
    for (name, req, status) in refused_patches {
        let response = expect_status(t, name, &req, status);
        assert_eq!(response.header("Tus-Resumable"), Some("1.0.0"), "{name}");
        assert_eq!(offset_of(t, &path), 0, "{name} changed the offset");
    }

    // Appending: a checksummed PATCH, then one through X-HTTP-Method-Override.
    let first = t.call(
        &patch(&path, 0, b"hello").header("Upload-Checksum", &format!("sha1 {}", sha1(b"hello"))),
    );
    assert_eq!(first.status, 204);
    assert_eq!(first.header("Upload-Offset"), Some("5"));
    assert!(first.header("Upload-Expires").is_some());
    assert!(first.header("Upload-Complete-File").is_none());
    assert_eq!(
        status_of(t, &patch(&path, 0, b"hello")),
        409,
        "a repeat at 0"
    );
    let overridden = patch(&path, 5, b" world")
        .header("X-HTTP-Method-Override", "PATCH")
        .header(
            "Upload-Checksum",
            &format!("sha256 {}", b64(&sha2::Sha256::digest(b" world"))),
        );
    let overridden = Req {
        method: "POST".into(),
        ..overridden
    };
    let last = t.call(&overridden);
    assert_eq!(last.status, 204, "{}", String::from_utf8_lossy(&last.body));
    assert_eq!(last.header("Upload-Offset"), Some("11"));
    assert!(
        last.header("Upload-Expires").is_none(),
        "a finished upload does not expire"
    );
    let (file, bytes) = published(t, &last);
    assert_eq!(
        (file.as_str(), bytes.as_slice()),
        ("report.pdf", &hello[..])
    );

    // After completion: HEAD says so; an empty PATCH at the end is a no-op, anything else 409.
    let done = t.call(&head(&path));
    assert_eq!(done.header("Upload-Offset"), Some("11"));
    assert_eq!(done.header("Upload-Complete-File"), Some("report.pdf"));
    let again = t.call(&patch(&path, 11, b""));
    assert_eq!(
        (again.status, again.header("Upload-Offset")),
        (204, Some("11"))
    );
    assert_eq!(status_of(t, &patch(&path, 5, b" world")), 409);
    assert_eq!(
        published_files(t.uploads()),
        ["report.pdf"],
        "published once"
    );

    // creation-with-upload, then the rest; a zero-byte upload is complete at creation.
    let with_upload = t.call(
        &creation(11, &[("filename", "report.pdf")])
            .body("application/offset+octet-stream", b"hello"),
    );
    assert_eq!(with_upload.status, 201);
    assert_eq!(with_upload.header("Upload-Offset"), Some("5"));
    let rest = t.call(&patch(&upload_path(&with_upload), 5, b" world"));
    let (file, bytes) = published(t, &rest);
    assert_eq!(
        (file.as_str(), bytes.as_slice()),
        ("report (1).pdf", &hello[..])
    );
    let empty = t.call(&creation(0, &[("filename", "empty.txt")]));
    assert_eq!(empty.status, 201);
    assert_eq!(published(t, &empty), ("empty.txt".to_string(), vec![]));

    // Termination: 204, every stored byte gone, then 404 for everything.
    let doomed = create(t, 100, &[("filename", "doomed.bin")]);
    assert_eq!(status_of(t, &patch(&doomed, 0, &[7u8; 40])), 204);
    let before = temp_files(t).len();
    let delete = t.call(&Req::tus("DELETE", Some(&doomed)));
    assert_eq!(delete.status, 204);
    assert_eq!(delete.header("Tus-Resumable"), Some("1.0.0"));
    assert_eq!(temp_files(t).len(), before - 2, "its state and data");
    for req in [
        head(&doomed),
        patch(&doomed, 40, b"x"),
        Req::tus("DELETE", Some(&doomed)),
    ] {
        assert_eq!(status_of(t, &req), 404, "{} after DELETE", req.method);
    }
    assert!(!published_files(t.uploads()).contains(&"doomed.bin".to_string()));

    // Upload URLs that are not ids this server issued.
    for bad in [
        "/..",
        "/../../etc",
        "/a/b",
        &format!("{path}/x"),
        &path.to_uppercase(),
        "/%2e%2e",
    ] {
        assert_eq!(status_of(t, &head(bad)), 404, "HEAD {bad}");
        assert_eq!(
            status_of(t, &Req::tus("DELETE", Some(bad))),
            404,
            "DELETE {bad}"
        );
    }
    // Any request to an upload URL without Tus-Resumable, a PATCH anywhere: 412.
    let bare = t.call(&Req::new("GET").path(Some(&path)));
    assert_eq!(
        (bare.status, bare.header("Tus-Version")),
        (412, Some("1.0.0"))
    );
    assert_eq!(status_of(t, &Req::new("PATCH")), 412);
    assert_eq!(status_of(t, &Req::new("DELETE").path(Some(&path))), 412);
}

#[test]
fn every_status_in_process() {
    protocol_table(&InProc::new(&settings()));
}

#[test]
fn every_status_over_cgi() {
    protocol_table(&CgiTarget::new(&settings()));
}

#[test]
fn every_status_over_fastcgi() {
    let target = FcgiTarget(Worker::start(false, &["--workers", "2"], &settings()));
    protocol_table(&target);
    target.0.assert_no_panic();
}

/// `RESUMABLE_TUS_BASE_URL` replaces SCRIPT_NAME in `Location` (a proxy that rewrites paths).
#[test]
fn the_base_url_setting_prefixes_locations() {
    let t = InProc::new(&[("RESUMABLE_TUS_BASE_URL", "https://files.example/tus/")]);
    let created = t.call(&creation(3, &[]));
    let location = created.header("Location").unwrap();
    let id = location.strip_prefix("https://files.example/tus/").unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(offset_of(&t, &format!("/{id}")), 0);
}

/// A body that ends in an error keeps every byte that arrived, and HEAD reports exactly them.
#[test]
fn a_cut_body_keeps_what_arrived_in_process() {
    struct FailsAfter(Vec<u8>, usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 >= self.0.len() {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.0.len() - self.1).min(1000);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let t = InProc::new(&[]);
    let data = pseudo_random(100_000, 7);
    let path = create(&t, data.len() as u64, &[("filename", "cut.bin")]);
    let mut cut = FailsAfter(data[..37_000].to_vec(), 0);
    let answer = t.call_with_body(&patch(&path, 0, &data), &mut cut);
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("Upload-Offset"), Some("37000"));
    assert_eq!(offset_of(&t, &path), 37_000);
    let rest = t.call(&patch(&path, 37_000, &data[37_000..]));
    assert_eq!(published(&t, &rest).1, data);
}

/// The same through a real CGI process whose stdin closes early (the web server's side of a
/// client that went away).
#[test]
fn a_cut_body_keeps_what_arrived_over_cgi() {
    let t = CgiTarget::new(&[]);
    let data = pseudo_random(300_000, 8);
    let path = create(&t, data.len() as u64, &[("filename", "cut.bin")]);
    let req = patch(&path, 0, &data);
    let mut command = t.command(&req);
    command.env("CONTENT_LENGTH", data.len().to_string());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..123_457]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let answer = TestResponse::from_cgi(&out.stdout);
    assert_eq!(answer.header("Upload-Offset"), Some("123457"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("ended early"), "{log}");
    assert_eq!(offset_of(&t, &path), 123_457);
    let rest = t.call(&patch(&path, 123_457, &data[123_457..]));
    assert_eq!(published(&t, &rest).1, data);
}

/// Two PATCHes for one upload at once: the second is refused (423) while the first streams,
/// never interleaved; the first completes as if alone.
#[test]
fn a_second_patch_is_refused_while_one_streams() {
    let t = CgiTarget::new(&[]);
    let data = pseudo_random(200_000, 9);
    let path = create(&t, data.len() as u64, &[("filename", "race.bin")]);
    let mut first = t.command(&patch(&path, 0, &data)).spawn().unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(&data[..50_000]).unwrap();
    stdin.flush().unwrap();
    // The first holds the lock while it waits for the rest of its body.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while offset_of(&t, &path) < 50_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first PATCH never wrote"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = t.call(&patch(&path, 50_000, &data[50_000..]));
    assert_eq!(
        second.status,
        423,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(second.header("Retry-After"), Some("1"));
    assert_eq!(t.call(&patch(&path, 0, &data)).status, 409);
    assert_eq!(t.call(&Req::tus("DELETE", Some(&path))).status, 423);
    stdin.write_all(&data[50_000..]).unwrap();
    drop(stdin);
    let out = first.wait_with_output().unwrap();
    let answer = TestResponse::from_cgi(&out.stdout);
    assert_eq!(
        answer.status,
        204,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(published(&t, &answer).1, data);
}

fn backdate_tree(dir: &std::path::Path, by: Duration) {
    let when = SystemTime::now() - by;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            backdate_tree(&path, by);
        }
        let file = std::fs::File::open(&path).unwrap();
        file.set_modified(when).unwrap();
    }
}

/// An upload untouched for longer than RESUMABLE_EXPIRE_AFTER answers 410, and `cleanup`
/// (whose default age is that setting) removes it; a fresh one stays.
#[test]
fn expired_uploads_answer_410_and_cleanup_removes_them() {
    let t = CgiTarget::new(&[("RESUMABLE_EXPIRE_AFTER", "2h")]);
    let old = create(&t, 10, &[("filename", "old.bin")]);
    assert_eq!(t.call(&patch(&old, 0, b"abc")).status, 204);
    backdate_tree(t.temp(), Duration::from_secs(3 * 3600));
    let fresh = create(&t, 10, &[("filename", "fresh.bin")]);
    assert_eq!(t.call(&head(&old)).status, 410);
    assert_eq!(t.call(&patch(&old, 3, b"def")).status, 410);
    assert_eq!(offset_of(&t, &fresh), 0);
    let cleanup = std::process::Command::new(binary())
        .arg("cleanup")
        .env_clear()
        .env("RESUMABLE_TEMP_DIR", t.temp())
        .env("RESUMABLE_UPLOAD_DIR", t.uploads())
        .env("RESUMABLE_EXPIRE_AFTER", "2h")
        .output()
        .unwrap();
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert!(String::from_utf8_lossy(&cleanup.stderr).contains("removed 1 abandoned"));
    assert_eq!(t.call(&head(&old)).status, 404);
    assert_eq!(offset_of(&t, &fresh), 0);
}

/// Uploads are scoped by REMOTE_USER: another user (or none) cannot see, resume or remove one.
#[test]
fn another_users_upload_is_not_found() {
    let t = InProc::new(&[]);
    let alice = t.call(&creation(4, &[("filename", "a.txt")]).user("alice"));
    let path = upload_path(&alice);
    assert_eq!(t.call(&head(&path).user("alice")).status, 200);
    for req in [
        head(&path).user("bob"),
        head(&path),
        patch(&path, 0, b"abcd").user("bob"),
        Req::tus("DELETE", Some(&path)).user("mallory"),
    ] {
        assert_eq!(t.call(&req).status, 404, "{} as {:?}", req.method, req.user);
    }
    let done = t.call(&patch(&path, 0, b"abcd").user("alice"));
    assert_eq!(published(&t, &done).1, b"abcd");
}

/// Metadata names go through the same sanitising as every client's: nothing climbs out, hides
/// or overwrites; Uppy's `relativePath: "null"` is no folder.
#[test]
fn hostile_names_are_published_safely() {
    let t = InProc::new(&[]);
    std::fs::write(t.uploads().join("taken.txt"), b"first").unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("filename", "../../etc/passwd")], "passwd"),
        (&[("filename", ".htaccess")], "_htaccess"),
        (&[("name", "a.txt"), ("relativePath", "null")], "a.txt"),
        (
            &[("filename", "c.txt"), ("relativePath", "../x/../../c.txt")],
            "x/c.txt",
        ),
        (
            &[("filename", "d.txt"), ("relativePath", "/abs/dir/d.txt")],
            "abs/dir/d.txt",
        ),
        (&[("filename", "taken.txt")], "taken (1).txt"),
        (
            &[("filename", "日本語 ファイル.txt")],
            "日本語 ファイル.txt",
        ),
        (&[], "unnamed"),
    ];
    for (meta, expected) in cases {
        let path = create(&t, 3, meta);
        let done = t.call(&patch(&path, 0, b"xyz"));
        assert_eq!(published(&t, &done).0, *expected, "{meta:?}");
    }
    assert_eq!(
        std::fs::read(t.uploads().join("taken.txt")).unwrap(),
        b"first"
    );
}

/// A symlink planted as an upload's data file is never written through.
#[test]
fn a_planted_symlink_is_never_followed() {
    let t = InProc::new(&[]);
    let victim = t.dirs.root.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let path = create(&t, 3, &[]);
    let dir = t
        .temp()
        .join(format!("~tus-{}", path.trim_start_matches('/')));
    std::fs::remove_file(dir.join("data")).unwrap();
    symlink(&victim, dir.join("data")).unwrap();
    let answer = t.call(&patch(&path, 0, b"abc"));
    assert!(answer.status >= 400, "{}", answer.status);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

/// One big PATCH streams: a 5 MiB body arrives byte-identical with a Unicode name.
#[test]
fn a_large_single_patch() {
    let t = InProc::new(&[]);
    let data = pseudo_random(5 << 20, 11);
    let path = create(&t, data.len() as u64, &[("filename", "größe ✓.bin")]);
    let done = upload_all(&t, &path, &data, data.len());
    let (name, bytes) = published(&t, &done);
    assert_eq!(name, "größe ✓.bin");
    assert_eq!(sha256_hex(&bytes), sha256_hex(&data));
    assert_eq!(
        temp_files(&t).len(),
        2,
        "state and record only: {:?}",
        temp_files(&t)
    );
}

/// Bodies stream: a FastCGI worker takes a 64 MiB PATCH (and publishes it) in a fraction of
/// that memory.
#[test]
fn a_64_mib_patch_in_constant_memory_over_fastcgi() {
    let worker = Worker::start(false, &["--workers", "2"], &[]);
    let baseline = worker.peak_rss_kib();
    let target = FcgiTarget(worker);
    let data = pseudo_random(64 << 20, 12);
    let path = create(&target, data.len() as u64, &[("filename", "big.bin")]);
    let done = target.call(&patch(&path, 0, &data));
    assert_eq!(done.status, 204);
    assert_eq!(sha256_hex(&published(&target, &done).1), sha256_hex(&data));
    let peak = target.0.peak_rss_kib();
    eprintln!("peak RSS of the worker: {peak} KiB (at start {baseline} KiB) for one 64 MiB PATCH");
    assert!(peak < 16 * 1024, "peak RSS {peak} KiB");
    target.0.assert_no_panic();
}
