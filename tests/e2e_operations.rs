//! End-to-end operations with real parts: Apache (mod_cgid) running the shipped
//! deploy/apache/cross-origin.conf with the shipped Python completion hook, real resumable.js
//! and flow.js in headless Chromium uploading from pages on other origins (another port) with
//! and without credentials, refused for an unlisted origin and when credentials are not
//! allowed; the hook's JSON shown on the page and its refusal shown as the file's error; and a
//! client whose body breaks off, after which mod_cgid's SIGTERM leaves no half-written chunk.

mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::process::alive;
use common::sha256_file;
use harness::*;
use servers::*;

const MIB: usize = 1 << 20;

/// Apache with the shipped cross-origin site twice: `/upload/cred` as shipped (credentials
/// allowed) and `/upload/plain` with credentials off; both allow `page` and run the shipped
/// Python hook, installed where www-data can run it.
fn cross_origin_stack(page: &str) -> Stack {
    let mut s = Stack::apache("ops-cross-origin");
    let hook = s.dir.dir("hooks", false).join("on-complete.py");
    std::fs::copy(repo().join("deploy/hooks/on-complete.py"), &hook).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let site = |url: &str| {
        let mut vars: Vec<(&str, String)> =
            s.vars().into_iter().filter(|(k, _)| *k != "URL").collect();
        vars.push(("URL", url.to_string()));
        vars.push(("CORS_ORIGINS", page.to_string()));
        vars.push(("HOOK", hook.display().to_string()));
        render("apache/cross-origin.conf", &vars)
    };
    let cred = site("/upload/cred");
    let shipped = "SetEnv RESUMABLE_CORS_CREDENTIALS 1";
    assert!(
        cred.contains(shipped),
        "the shipped file allows credentials"
    );
    let plain = site("/upload/plain").replace(shipped, "SetEnv RESUMABLE_CORS_CREDENTIALS 0");
    s.install_site(&format!("{cred}\n{plain}"));
    s.start_apache();
    s
}

fn step_of<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no result for {id}: {result}"))
}

/// The step finished with every file a success; answers the server's message for each.
fn succeeded(result: &Value, id: &str) -> Vec<Value> {
    let step = step_of(result, id);
    let state = &step["state"];
    assert!(
        step["failure"].is_null()
            && state["done"] == true
            && state["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{id}: {step}"
    );
    state["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str(s["message"].as_str().unwrap()).unwrap())
        .collect()
}

/// The step ended in an error for its file; answers the errors.
fn failed(result: &Value, id: &str) -> String {
    let step = step_of(result, id);
    let state = &step["state"];
    assert!(
        state["successes"].as_array().is_some_and(|s| s.is_empty()),
        "{id} must not succeed: {step}"
    );
    let errors = state["errors"].to_string();
    assert!(errors != "[]", "{id}: {step}");
    errors
}

#[test]
fn e2e_ops_pages_on_other_origins_and_the_completion_hook_in_chromium() {
    let page = format!("http://127.0.0.1:{}", free_port());
    let unlisted = format!("http://127.0.0.1:{}", free_port());
    let s = cross_origin_stack(&page);
    let src = s.dir.dir("src", false);
    let target = |path: &str| format!("{}{path}", s.origin());
    let file = |name: &str, size: usize, seed: u64| {
        let path = src.join(name);
        make_file(&path, size, seed);
        (path.clone(), sha256_file(&path))
    };
    let (photo, photo_sha) = file("photo.bin", 2 * MIB + MIB / 2, 1);
    let (octet, octet_sha) = file("cross-octet.bin", MIB + 12_345, 2);
    let (flowed, flowed_sha) = file("cross-flow.bin", 3 * MIB + 7, 3);
    let (denied, _) = file("denied.bin", MIB + 1, 4);
    let (stranger, _) = file("stranger.bin", MIB + 2, 5);
    // An executable under an innocent name: the hook refuses it by content.
    let tool = src.join("tool.bin");
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(MIB + 3, 0);
    write_bytes(&tool, &bytes);
    let chunked = |extra: Value| {
        let mut opts = json!({"chunkSize": MIB, "simultaneousUploads": 1});
        opts.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        opts
    };
    // A request with this header is preflighted; without it a cross-origin multipart POST or
    // an untyped octet POST is a "simple" request that reaches the server whatever the origin
    // (CORS only keeps the page from reading the answer).
    let preflighted = json!({"X-Requested-With": "XMLHttpRequest"});
    let steps = json!([
        // The hook's JSON reaches the page; the page sent the sha256 it wanted checked.
        {"id": "hook-data", "lib": "resumable", "target": target("/upload/cred"), "pageOrigin": page,
         "opts": chunked(json!({"withCredentials": true, "query": {"sha256": photo_sha}})),
         "files": [photo], "mode": "upload"},
        {"id": "hook-refuses", "lib": "resumable", "target": target("/upload/cred"), "pageOrigin": page,
         "opts": chunked(json!({"withCredentials": true})), "files": [tool], "mode": "upload"},
        // Preflighted (a header Dropzone and Fine Uploader send), no credentials.
        {"id": "cross-octet", "lib": "resumable", "target": target("/upload/plain"), "pageOrigin": page,
         "opts": chunked(json!({"method": "octet", "headers": preflighted})), "files": [octet], "mode": "upload"},
        // flow.js with credentials where they are allowed.
        {"id": "cross-flow-credentials", "lib": "flow", "target": target("/upload/cred"), "pageOrigin": page,
         "opts": chunked(json!({"withCredentials": true})), "files": [flowed], "mode": "upload"},
        // Credentials where they are not allowed: the browser refuses.
        {"id": "credentials-refused", "lib": "resumable", "target": target("/upload/plain"), "pageOrigin": page,
         "opts": chunked(json!({"method": "octet", "headers": preflighted, "withCredentials": true,
                                "maxChunkRetries": 1, "chunkRetryInterval": 100})),
         "files": [denied], "mode": "upload", "timeoutMs": 30000},
        // A page on an origin nobody listed.
        {"id": "unlisted-origin", "lib": "resumable", "target": target("/upload/plain"), "pageOrigin": unlisted,
         "opts": chunked(json!({"method": "octet", "headers": preflighted, "maxChunkRetries": 1,
                                "chunkRetryInterval": 100})),
         "files": [stranger], "mode": "upload", "timeoutMs": 30000},
    ]);
    let result = run_browser(&s.dir, &s.origin(), steps);
    eprintln!("e2e ops browser result: {result}");

    let answers = succeeded(&result, "hook-data");
    assert_eq!(
        answers.last().unwrap()["data"],
        json!({"sha256": photo_sha, "url": "/files/photo.bin"})
    );
    // What the page showed is that answer.
    let shown = step_of(&result, "hook-data")["shown"].to_string();
    assert!(shown.contains(&photo_sha), "{shown}");
    let refused = failed(&result, "hook-refuses");
    assert!(
        refused.contains("executable files are not accepted"),
        "{refused}"
    );
    succeeded(&result, "cross-octet");
    succeeded(&result, "cross-flow-credentials");
    failed(&result, "credentials-refused");
    failed(&result, "unlisted-origin");

    // Exactly the accepted files arrived, byte-identical.
    let stored = tree(&s.upload_dir);
    let expected: Vec<(String, String)> = vec![
        ("cross-flow.bin".into(), flowed_sha),
        ("cross-octet.bin".into(), octet_sha),
        ("photo.bin".into(), photo_sha),
    ];
    let published: Vec<(String, String)> = stored
        .into_iter()
        .filter(|(name, _)| !name.starts_with(".resumable-staging"))
        .collect();
    assert_eq!(published, expected);
    // The refused file went with its parts; nothing of it is staged.
    assert!(
        tree(&s.upload_dir.join(".resumable-staging")).is_empty(),
        "{:?}",
        tree(&s.upload_dir)
    );
    // The browser stopped at the preflight: no request of the refused uploads but the
    // preflight reached the program.
    let hits = access_log(&s.access_log);
    let methods = |name: &str| -> BTreeSet<String> {
        hits.iter()
            .filter(|h| h.param("resumableFilename").as_deref() == Some(name))
            .map(|h| h.method.clone())
            .collect()
    };
    for name in ["denied.bin", "stranger.bin"] {
        assert!(
            !methods(name).contains("POST"),
            "{name}: {:?}",
            methods(name)
        );
    }
    assert!(methods("cross-octet.bin").contains("POST"));
    let preflights = hits.iter().filter(|h| h.method == "OPTIONS").count();
    assert!(preflights >= 2, "preflights seen: {preflights}");
    let log = read_lossy(&s.error_log);
    assert!(log.contains("completion hook accepted"), "{log}");
    assert!(log.contains("completion hook refused"), "{log}");
}

/// mod_cgid and a program it gives up on. A client whose body breaks off (closed, or stalled
/// past Apache's Timeout): mod_cgid closes the program's stdin and sends it SIGTERM; the
/// program has always seen the end of input first here, and removes its chunk on that path.
/// A program that keeps Apache waiting past Timeout for its answer (its completion hook hangs):
/// mod_cgid's SIGTERM is then what ends it, and the program takes the hook's process group
/// down with it. (SIGTERM mid-body is tested directly in tests/operations.rs.)
#[test]
fn e2e_ops_mod_cgid_broken_bodies_and_a_hanging_hook_leave_nothing_behind() {
    let mut s = Stack::apache("ops-sigterm");
    let run = s.dir.dir("hookrun", true);
    let hook = s.dir.dir("hooks", false).join("hang.sh");
    let sleeper_pid = run.join("sleep.pid");
    write(
        &hook,
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
            sleeper_pid.display()
        ),
    );
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let site = render("apache/cgi.conf", &s.vars());
    s.install_site(&format!(
        "{site}\n# test: a short client timeout, and a hook that hangs\nTimeout 2\n\
         <Location \"{}\">\n    SetEnv RESUMABLE_ON_COMPLETE \"{}\"\n</Location>\n",
        s.url,
        hook.display()
    ));
    s.start_apache();
    let host = s.origin().strip_prefix("http://").unwrap().to_string();
    let post = |id: &str, size: usize, declared: usize| {
        let query = format!(
            "resumableChunkNumber=1&resumableChunkSize={declared}&resumableCurrentChunkSize={declared}&\
             resumableTotalSize={declared}&resumableIdentifier={id}&resumableFilename={id}.bin"
        );
        let mut client = std::net::TcpStream::connect(&host).unwrap();
        write!(
            client,
            "POST {}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {declared}\r\nConnection: close\r\n\r\n",
            s.url
        )
        .unwrap();
        client.write_all(&vec![7u8; size]).unwrap();
        client
    };
    let files_of = |id: &str| -> Vec<String> {
        std::fs::read_dir(s.temp_dir.join(id))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}; error log:\n{}",
                read_lossy(&s.error_log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for (trial, stall) in [(0, false), (1, true), (2, false)] {
        let id = format!("broken-{trial}");
        let client = post(&id, 2 * MIB, 8 * MIB);
        wait("the chunk being written", &|| {
            files_of(&id).iter().any(|f| f.ends_with(".tmp"))
        });
        // The client goes away, or goes silent until Apache's Timeout.
        let kept = stall.then_some(client);
        wait("the half-written chunk to go", &|| files_of(&id).is_empty());
        drop(kept);
    }
    let log = read_lossy(&s.error_log);
    assert_eq!(log.matches("AH01270").count(), 3, "{log}");

    // A whole one-chunk file whose hook hangs: Apache gives up after Timeout.
    let mut client = post("hangs", 1000, 1000);
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut client, &mut answer);
    wait("mod_cgid's SIGTERM", &|| {
        read_lossy(&s.error_log).contains("killed 1 completion hook")
    });
    let sleeper: i32 = std::fs::read_to_string(&sleeper_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait("the hook's process group to go", &|| !alive(sleeper));
    assert!(tree(&s.upload_dir)
        .keys()
        .all(|f| f.starts_with(".resumable-staging")));
    let log = read_lossy(&s.error_log);
    eprintln!(
        "e2e ops mod_cgid: broken bodies ended by end of input {} times, by SIGTERM {} times; \
         the hanging hook's request answered {:?}",
        log.matches("POST -> 422").count(),
        log.lines()
            .filter(|l| l.contains("stopped by signal 15") && l.contains("killed 0"))
            .count(),
        answer.lines().next()
    );
}
