//! End-to-end for the byte-range clients: tus-js-client 4, Uppy 6 (@uppy/core + @uppy/tus) and
//! blueimp jQuery-File-Upload 10 from npm in headless chromium, behind the shipped nginx config
//! with the FastCGI worker (spawn-fcgi) and the shipped Apache config with CGI (mod_cgid): every
//! stored file's sha256 against its source, the completion header, resume after a page reload
//! (from the requests the page made and the server's access log), Uppy's cancel, and one upload
//! begun through nginx + FastCGI and finished through Apache + CGI on the same directories.
//! Needs what scripts/install-test-deps installs.

mod common;
#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use common::sha256_file;

use harness::*;
use servers::*;

const MIB: usize = 1 << 20;

fn nginx_fastcgi(name: &str) -> Stack {
    let mut s = Stack::nginx(name);
    s.start_spawn_fcgi_worker();
    s.install_deploy_site("nginx/fastcgi.conf");
    s.start_nginx();
    s
}

fn apache_cgi(name: &str) -> Stack {
    let mut s = Stack::apache(name);
    s.install_deploy_site("apache/cgi.conf");
    s.start_apache();
    s
}

/// One browser step: a client, its options, files (name, size) and what to do mid-way.
struct Step {
    id: &'static str,
    lib: &'static str,
    opts: Value,
    files: Vec<(&'static str, usize)>,
    mode: &'static str,
    at_bytes: usize,
    throttle: Option<usize>,
}

fn step(
    id: &'static str,
    lib: &'static str,
    opts: Value,
    files: Vec<(&'static str, usize)>,
) -> Step {
    Step {
        id,
        lib,
        opts,
        files,
        mode: "upload",
        at_bytes: 0,
        throttle: None,
    }
}

impl Step {
    fn then(mut self, mode: &'static str, at_bytes: usize, throttle: Option<usize>) -> Step {
        self.mode = mode;
        self.at_bytes = at_bytes;
        self.throttle = throttle;
        self
    }

    /// Writes the source files; answers (name, path, sha256) for each.
    fn prepare(&self, stack: &Stack, seed: u64) -> Vec<(String, PathBuf, String)> {
        let dir = stack.dir.path().join("src").join(self.id);
        self.files
            .iter()
            .enumerate()
            .map(|(i, (name, size))| {
                let path = dir.join(name);
                make_file(&path, *size, seed * 100 + i as u64);
                (name.to_string(), path.clone(), sha256_file(&path))
            })
            .collect()
    }

    fn plan(&self, stack: &Stack, paths: &[PathBuf]) -> Value {
        json!({
            "id": self.id, "lib": self.lib, "endpoint": stack.url, "opts": self.opts,
            "files": paths, "mode": self.mode, "atBytes": self.at_bytes,
            "throttle": self.throttle,
        })
    }
}

/// What the suite runs through each stack.
fn steps() -> Vec<Step> {
    let unicode = "日本語 ファイル ✓.bin";
    vec![
        step(
            "tus-small",
            "tus",
            json!({}),
            vec![("tus-empty.bin", 0), ("tus-one.bin", 1), (unicode, 5 * MIB)],
        ),
        step(
            "tus-64-single",
            "tus",
            json!({}),
            vec![("tus-64-single.bin", 64 * MIB)],
        ),
        step(
            "tus-64-chunked",
            "tus",
            json!({"chunkSize": MIB}),
            vec![("tus-64-chunked.bin", 64 * MIB)],
        ),
        step(
            "uppy-small",
            "uppy",
            json!({}),
            vec![
                ("uppy-empty.bin", 0),
                ("uppy-one.bin", 1),
                ("uppy 5 MiB é.bin", 5 * MIB),
            ],
        ),
        step(
            "uppy-64-single",
            "uppy",
            json!({}),
            vec![("uppy-64-single.bin", 64 * MIB)],
        ),
        step(
            "uppy-64-chunked",
            "uppy",
            json!({"chunkSize": MIB}),
            vec![("uppy-64-chunked.bin", 64 * MIB)],
        ),
        // The page reloads after 6 of 24 PATCHes of 1 MiB: the same file then resumes.
        step(
            "tus-reload-chunked",
            "tus",
            json!({"chunkSize": MIB}),
            vec![("tus-reload-chunked.bin", 24 * MIB)],
        )
        .then("reload-resume", 6 * MIB, None),
        // One PATCH for the whole file, cut by the reload: the bytes that arrived are kept.
        step(
            "tus-reload-single",
            "tus",
            json!({}),
            vec![("tus-reload-single.bin", 24 * MIB)],
        )
        .then("reload-resume", 6 * MIB, Some(8 * MIB)),
        step(
            "uppy-reload",
            "uppy",
            json!({"chunkSize": MIB}),
            vec![("uppy-reload.bin", 16 * MIB)],
        )
        .then("reload-resume", 4 * MIB, None),
        step(
            "uppy-cancel",
            "uppy",
            json!({"chunkSize": MIB}),
            vec![("uppy-cancel.bin", 32 * MIB)],
        )
        .then("cancel", 4 * MIB, Some(4 * MIB)),
        step(
            "blueimp-chunks",
            "blueimp",
            json!({"maxChunkSize": MIB}),
            vec![
                ("blueimp-one-plus.bin", MIB + 1),
                ("blueimp 5 MiB ü.bin", 5 * MIB + 7),
            ],
        ),
        step(
            "blueimp-reload",
            "blueimp",
            json!({"maxChunkSize": MIB}),
            vec![("blueimp-reload.bin", 12 * MIB + 5)],
        )
        .then("reload-resume", 4 * MIB, None),
    ]
}

fn summary<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no browser result for {id}"))
}

fn requests(s: &Value) -> Vec<Value> {
    s["requests"].as_array().cloned().unwrap_or_default()
}

fn run_all(stack: &Stack) {
    let steps = steps();
    let mut sources: BTreeMap<&str, Vec<(String, PathBuf, String)>> = BTreeMap::new();
    let mut plans = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let files = s.prepare(stack, i as u64 + 1);
        let paths: Vec<PathBuf> = files.iter().map(|(_, p, _)| p.clone()).collect();
        plans.push(s.plan(stack, &paths));
        sources.insert(s.id, files);
    }
    let result = run_driver(&stack.dir, "tus-browser.mjs", &stack.origin(), json!(plans));
    eprintln!(
        "e2e {}: browser {} ms (launch {} ms), console {}",
        stack.name, result["totalMs"], result["launchMs"], result["console"]
    );
    for s in &steps {
        let r = summary(&result, s.id);
        eprintln!(
            "e2e {} {}: {} ms, {} requests",
            stack.name,
            s.id,
            r["ms"],
            requests(r).len()
        );
        if s.mode == "cancel" {
            check_cancel(stack, r);
            continue;
        }
        assert!(
            r["failure"].is_null()
                && r["state"]["done"] == true
                && r["state"]["errors"] == json!([]),
            "{} {}: {r}",
            stack.name,
            s.id
        );
        for (name, _, sha) in &sources[s.id] {
            let stored = stack.upload_dir.join(name);
            assert_eq!(
                sha256_file(&stored),
                *sha,
                "{} {}: {name}",
                stack.name,
                s.id
            );
        }
        if s.lib == "tus" {
            // The completing answer named the published file (Upload-Complete-File).
            for (name, _, _) in &sources[s.id] {
                assert_eq!(
                    r["state"]["completeFiles"][name.as_str()],
                    json!(name),
                    "{} {}: {}",
                    stack.name,
                    s.id,
                    r["state"]
                );
            }
        }
        if s.mode == "reload-resume" {
            check_resume(stack, s, r);
        }
    }
    // Nothing but small records is left in the temp dir: no data, no held-aside bodies.
    let left: Vec<String> = tree(&stack.temp_dir).into_keys().collect();
    assert!(
        left.iter().all(|p| p.ends_with("/state")
            || p.ends_with("/complete")
            || p.ends_with(common::LOCK_FILE)),
        "{}: {left:?}",
        stack.name
    );
}

/// After the reload the client asked the server what it had (tus: HEAD; blueimp: GET ?file=)
/// and sent only the rest: no new creation, every body starting at or after what was stored.
fn check_resume(stack: &Stack, s: &Step, r: &Value) {
    let all = requests(r);
    // What the reloaded page sent: from its first request that asks the server what it has
    // (a request cut by the reload may be reported just after the switch).
    let asks =
        |q: &&Value| q["phase"] == "after" && (q["method"] == "GET" || q["method"] == "HEAD");
    let first_ask = all
        .iter()
        .position(|q| asks(&q))
        .expect("a resume request after the reload");
    let after: Vec<&Value> = all[first_ask..].iter().collect();
    let before_bytes = r["events"][0]["sentBefore"].as_u64().unwrap_or(0);
    eprintln!("e2e {} {}: after the reload {after:?}", stack.name, s.id);
    assert!(
        before_bytes > 0 && r["events"][0]["doneBefore"] == false,
        "{r}"
    );
    let total = s.files[0].1 as u64;
    match s.lib {
        "blueimp" => {
            let resume = after
                .iter()
                .find(|q| q["method"] == "GET")
                .expect("the resume GET");
            assert_eq!(resume["status"], 200);
            let from = r["state"]["resumedFrom"][s.files[0].0].as_u64().unwrap();
            assert!(from > 0 && from < total, "resumed from {from}");
            let starts: Vec<u64> = after
                .iter()
                .filter(|q| q["method"] == "POST" && q["status"] == 200)
                .map(|q| range_start(q["range"].as_str().unwrap_or_default()))
                .collect();
            assert_eq!(starts.first(), Some(&from), "{starts:?}");
            assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        }
        _ => {
            assert!(
                !after.iter().any(|q| q["method"] == "POST"),
                "a new upload was created after the reload: {after:?}"
            );
            let head = after
                .iter()
                .find(|q| q["method"] == "HEAD")
                .expect("a HEAD after the reload");
            assert_eq!(head["status"], 200);
            let patches: Vec<u64> = after
                .iter()
                .filter(|q| q["method"] == "PATCH" && q["status"] == 204)
                .map(|q| q["offset"].as_str().unwrap().parse().unwrap())
                .collect();
            let first = *patches.first().expect("PATCHes after the reload");
            assert!(first > 0 && first < total, "resumed at {first} of {total}");
            // The web server logged the HEAD too.
            let hits = access_log(&stack.access_log);
            assert!(
                hits.iter().any(|h| h.method == "HEAD"
                    && h.status == 200
                    && h.target.starts_with(&stack.url)),
                "no HEAD in the access log"
            );
            if s.id == "tus-reload-single" {
                // One PATCH was cut mid-body; its bytes were kept, so the resume starts past 0
                // although no PATCH had been answered before the reload.
                let answered_before = all
                    .iter()
                    .filter(|q| {
                        q["phase"] == "before" && q["method"] == "PATCH" && q["status"] == 204
                    })
                    .count();
                assert_eq!(answered_before, 0, "{all:?}");
                assert_eq!(patches.len(), 1, "{patches:?}");
            }
        }
    }
}

fn range_start(range: &str) -> u64 {
    range
        .trim_start_matches("bytes ")
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Uppy's cancel terminated the upload (DELETE, 204) and nothing of it remains. A DELETE that
/// arrives while the cancelled PATCH's request still holds the upload (a CGI process the web
/// server has not reaped yet) is answered 423 with Retry-After, and tus-js-client sends it
/// again: every DELETE before the last is such a 423.
fn check_cancel(stack: &Stack, r: &Value) {
    let all = requests(r);
    assert!(r["failure"].is_null(), "{r}");
    let deletes: Vec<&Value> = all.iter().filter(|q| q["method"] == "DELETE").collect();
    let Some((delete, busy)) = deletes.split_last() else {
        panic!("{}: no DELETE after cancel: {all:?}", stack.name);
    };
    assert!(busy.iter().all(|q| q["status"] == 423), "{all:?}");
    assert_eq!(delete["status"], 204, "{all:?}");
    assert!(!stack.upload_dir.join("uppy-cancel.bin").exists());
    let upload = delete["path"].as_str().unwrap().rsplit('/').next().unwrap();
    let dir = stack.temp_dir.join(format!("~tus-{upload}"));
    assert!(!dir.exists(), "{}: {} remains", stack.name, dir.display());
}

#[test]
fn e2e_tus_nginx_fastcgi() {
    let s = nginx_fastcgi("tus-nginx-fastcgi");
    run_all(&s);
}

#[test]
fn e2e_tus_apache_cgi() {
    let s = apache_cgi("tus-apache-cgi");
    run_all(&s);
}

// ------------------------------------------------------------------ one upload, two servers

/// A raw HTTP/1.1 request with headers and a body; answers (status, headers).
fn http(
    origin: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>) {
    let host = origin.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status from {method} {path}: {text:.300}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Begun through nginx + the FastCGI worker, continued through Apache + CGI on the same temp
/// and upload directories: the state is all in the store, so either node finishes it.
#[test]
fn e2e_tus_begun_on_nginx_fastcgi_finished_on_apache_cgi() {
    let nginx = nginx_fastcgi("tus-interop-nginx");
    let mut apache = Stack::apache("tus-interop-apache");
    apache.temp_dir = nginx.temp_dir.clone();
    apache.upload_dir = nginx.upload_dir.clone();
    apache.install_deploy_site("apache/cgi.conf");
    apache.start_apache();

    let src = nginx.dir.path().join("src/interop.bin");
    make_file(&src, 3 * MIB + 11, 77);
    let data = std::fs::read(&src).unwrap();
    fn tus(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut h = vec![("Tus-Resumable", "1.0.0".to_string())];
        h.extend(extra.iter().cloned());
        h
    }
    let (status, created) = http(
        &nginx.origin(),
        "POST",
        &nginx.url,
        &tus(&[
            ("Upload-Length", data.len().to_string()),
            ("Upload-Metadata", "filename aW50ZXJvcC5iaW4=".into()),
        ]),
        b"",
    );
    assert_eq!(status, 201);
    let location = header(&created, "location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/", nginx.url)),
        "{location}"
    );
    let first = 2 * MIB;
    let patch = |origin: &str, at: usize, bytes: &[u8]| {
        http(
            origin,
            "PATCH",
            &location,
            &tus(&[
                ("Upload-Offset", at.to_string()),
                ("Content-Type", "application/offset+octet-stream".into()),
            ]),
            bytes,
        )
    };
    let (status, answer) = patch(&nginx.origin(), 0, &data[..first]);
    assert_eq!(
        (status, header(&answer, "upload-offset")),
        (204, Some("2097152"))
    );

    let (status, head) = http(&apache.origin(), "HEAD", &location, &tus(&[]), b"");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "upload-offset"), Some("2097152"));
    let (status, done) = patch(&apache.origin(), first, &data[first..]);
    assert_eq!(status, 204);
    assert_eq!(header(&done, "upload-complete-file"), Some("interop.bin"));
    assert_eq!(
        sha256_file(&nginx.upload_dir.join("interop.bin")),
        sha256_file(&src)
    );
    let (status, _) = http(&nginx.origin(), "HEAD", &location, &tus(&[]), b"");
    assert_eq!(status, 200, "the record is seen from the first node too");
    assert!(Path::new(&nginx.temp_dir).exists());
    let log = read_lossy(&apache.error_log);
    assert!(
        log.contains("completed"),
        "Apache + CGI completed it:\n{log}"
    );
}
