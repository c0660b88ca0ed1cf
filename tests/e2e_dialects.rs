//! End-to-end for the other chunking clients: Dropzone 5.9 and 6.x, Fine Uploader 5.16 and
//! Plupload 2.3 from npm, unchanged, in headless Debian chromium, uploading to the same URL
//! behind nginx with the FastCGI worker (spawn-fcgi) and behind Apache with CGI (mod_cgid), both
//! from the shipped deploy/ files. Files of 0 bytes, 1 byte, exactly one chunk, one chunk + 1 and
//! several MiB with a Unicode name; chunks in parallel where the client can (Dropzone
//! `parallelChunkUploads`, Fine Uploader concurrent chunking with its success endpoint); Fine
//! Uploader resuming after a page reload, with the access log showing only the missing parts
//! sent. Every stored file's sha256 equals its source, and no chunk data is left in the temp dir.

#[allow(dead_code)]
#[path = "e2e/cases.rs"]
mod cases;
mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use cases::step_summary;
use common::sha256_file;
use harness::*;
use servers::*;

/// The chunk size every client is given: small, so that a few MiB make several chunks.
const C: usize = 512 * 1024;

/// One browser step: a client, its options, and the files it uploads (name, size).
struct Step {
    id: &'static str,
    lib: &'static str,
    opts: Value,
    files: Vec<(String, usize)>,
    /// Whether the browser must have had several upload requests open at once (`Some(true)`),
    /// never more than one (`Some(false)`), or either (several files in flight).
    parallel: Option<bool>,
}

/// 0 bytes, 1 byte, exactly one chunk, one chunk + 1, several MiB with a Unicode name.
fn every_size(tag: &str) -> Vec<(String, usize)> {
    vec![
        (format!("{tag}-empty.bin"), 0),
        (format!("{tag}-one-byte.bin"), 1),
        (format!("{tag}-one-chunk.bin"), C),
        (format!("{tag}-chunk-plus-one.bin"), C + 1),
        (format!("Grüße – 日本語 ✓ {tag}.bin"), 6 * C + 12345),
    ]
}

fn big(tag: &str) -> Vec<(String, usize)> {
    vec![(format!("{tag} (big) ☕.bin"), 7 * C + 777)]
}

fn steps() -> Vec<Step> {
    let step = |id, lib, opts, files, parallel| Step {
        id,
        lib,
        opts,
        files,
        parallel,
    };
    // Dropzone 5 with forceChunking never sends a 0-byte file (fixed in 6.1.0): nothing to test.
    let mut dz5 = every_size("dz5");
    dz5.remove(0);
    let fine_concurrent = json!({
        "chunking": {"enabled": true, "partSize": C, "concurrent": {"enabled": true},
                     "successEndpoint": true},
        "validation": {"allowEmpty": true},
        "maxConnections": 3,
    });
    vec![
        // one file at a time, its chunks in order
        step(
            "dropzone5",
            "dropzone5",
            json!({"chunkSize": C, "parallelUploads": 1}),
            dz5,
            Some(false),
        ),
        step(
            "dropzone5-parallel",
            "dropzone5",
            json!({"chunkSize": C, "parallelChunkUploads": true}),
            big("dz5-parallel"),
            Some(true),
        ),
        step(
            "dropzone6",
            "dropzone6",
            json!({"chunkSize": C, "parallelUploads": 1}),
            every_size("dz6"),
            Some(false),
        ),
        step(
            "dropzone6-parallel",
            "dropzone6",
            json!({"chunkSize": C, "parallelChunkUploads": 3}),
            big("dz6-parallel"),
            Some(true),
        ),
        step(
            "fineuploader",
            "fineuploader",
            fine_concurrent.clone(),
            every_size("fu"),
            None,
        ),
        step(
            "fineuploader-concurrent",
            "fineuploader",
            fine_concurrent,
            big("fu-concurrent"),
            Some(true),
        ),
        step(
            "fineuploader-params-in-query",
            "fineuploader",
            json!({"chunking": {"enabled": true, "partSize": C}, "request": {"paramsInBody": false}}),
            big("fu-query"),
            Some(false),
        ),
        step(
            "fineuploader-raw-body",
            "fineuploader",
            json!({"chunking": {"enabled": true, "partSize": C},
                   "request": {"paramsInBody": false, "forceMultipart": false}}),
            big("fu-raw"),
            Some(false),
        ),
        step(
            "plupload",
            "plupload",
            json!({"chunk_size": C, "filters": {"prevent_empty": false}}),
            every_size("pl"),
            Some(false),
        ),
        step(
            "plupload-raw-body",
            "plupload",
            json!({"chunk_size": C, "multipart": false}),
            big("pl-raw"),
            Some(false),
        ),
    ]
}

/// The resume case: Fine Uploader with resume records, its params in the query so that the
/// access log shows each part index.
const RESUME_FILE: &str = "fu-resume.bin";
const RESUME_PARTS: u64 = 10;
const RESUME_AT: u64 = 4;

fn resume_step(stack: &Stack, src: &std::path::Path) -> Value {
    json!({
        "id": "fineuploader-resume", "lib": "fineuploader", "target": stack.url,
        "mode": "reload-resume", "atChunks": RESUME_AT, "files": [src.join(RESUME_FILE)],
        "opts": {"chunking": {"enabled": true, "partSize": C}, "resume": {"enabled": true},
                 "request": {"paramsInBody": false}},
    })
}

fn run(stack: &Stack) {
    let src = stack.dir.path().join("src");
    let steps = steps();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut plan = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let mut paths = Vec::new();
        for (j, (name, size)) in step.files.iter().enumerate() {
            let path = src.join(step.id).join(name);
            make_file(&path, *size, 100 * i as u64 + j as u64);
            assert!(expected.insert(name.clone(), sha256_file(&path)).is_none());
            paths.push(path);
        }
        plan.push(json!({
            "id": step.id, "lib": step.lib, "target": stack.url, "opts": step.opts,
            "mode": "upload", "files": paths,
        }));
    }
    let resume_size = (RESUME_PARTS as usize - 1) * C + 4321;
    make_file(&src.join(RESUME_FILE), resume_size, 999);
    expected.insert(RESUME_FILE.into(), sha256_file(&src.join(RESUME_FILE)));
    plan.push(resume_step(stack, &src));

    let result = run_driver(
        &stack.dir,
        "dialects-browser.mjs",
        &stack.origin(),
        json!(plan),
    );
    let summary = |id: &str| step_summary(&result, id);
    let mut failures = Vec::new();
    for step in &steps {
        let s = summary(step.id);
        let state = &s["state"];
        let ok = s["failure"].is_null()
            && state["errors"] == json!([])
            && state["successes"].as_array().map_or(0, Vec::len) == step.files.len();
        eprintln!(
            "e2e {} {:<30} {} files={} {} ms {}",
            stack.name,
            step.id,
            if ok { "ok  " } else { "FAIL" },
            step.files.len(),
            s["ms"],
            if ok { String::new() } else { s.to_string() }
        );
        if !ok {
            failures.push(step.id.to_string());
        }
        // The browser had several chunk requests open at once where the client can, one
        // otherwise; Fine Uploader's success request followed each of its chunked files.
        let net = &s["net"];
        let max_open = net["maxOpen"].as_u64().unwrap_or(0);
        assert!(
            step.parallel
                .is_none_or(|parallel| (max_open >= 2) == parallel && max_open >= 1),
            "{} {}: at most {max_open} requests open at once: {net}",
            stack.name,
            step.id
        );
        if step.opts["chunking"]["successEndpoint"] == true {
            let chunked = step.files.iter().filter(|(_, size)| *size > C).count();
            assert_eq!(
                net["finishes"], chunked,
                "{} {}: {net}",
                stack.name, step.id
            );
        }
    }
    check_resume(stack, &summary("fineuploader-resume"));

    let stored: BTreeMap<String, String> = tree(&stack.upload_dir)
        .into_iter()
        .filter(|(k, _)| !k.split('/').any(|c| c.starts_with('.')))
        .collect();
    for (name, sha) in &expected {
        match stored.get(name) {
            Some(got) if got == sha => {}
            Some(got) => failures.push(format!("{name}: sha256 {got} != source {sha}")),
            None => failures.push(format!("{name}: not stored")),
        }
    }
    let extra: BTreeSet<&String> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    // No chunk data left: only the small completion records stay until cleanup.
    let left: Vec<String> = tree(&stack.temp_dir)
        .into_keys()
        .filter(|k| !common::kept_after_completion(k))
        .collect();
    assert!(
        failures.is_empty() && extra.is_empty() && left.is_empty(),
        "{}: failures {failures:#?}\nunexpected files {extra:?}\nleft in temp {left:?}\n\
         browser console: {}\nerror log:\n{}",
        stack.name,
        result["console"],
        read_lossy(&stack.error_log)
    );
    eprintln!(
        "e2e {}: {} steps, {} files stored, sha256 equal, temp clean; browser launch {} ms, total {} ms",
        stack.name,
        steps.len() + 1,
        expected.len(),
        result["launchMs"],
        result["totalMs"]
    );
}

/// From the access log: before the reload the server stored parts B; after it, the resumed
/// upload (its first request marked `qqresume=true`) sent exactly the other parts, once each.
fn check_resume(stack: &Stack, s: &Value) {
    assert!(
        s["failure"].is_null() && s["state"]["errors"] == json!([]),
        "{} resume: {s}",
        stack.name
    );
    let events = &s["events"][0];
    assert_eq!(events["reloaded"], true, "{s}");
    assert_eq!(
        events["casesAfterReload"], 0,
        "{s}: the page kept its state"
    );
    let hits = access_log(&stack.access_log);
    let parts = |phase: &str, status: Option<u16>| -> Vec<u64> {
        let mut v: Vec<u64> = hits
            .iter()
            .filter(|h| h.method == "POST" && h.param("qqfilename").as_deref() == Some(RESUME_FILE))
            .filter(|h| h.param("e2ephase").as_deref() == Some(phase))
            .filter(|h| status.is_none_or(|st| h.status == st))
            .filter_map(|h| h.param("qqpartindex")?.parse().ok())
            .collect();
        v.sort();
        v
    };
    let before_ok = parts("before", Some(200));
    let before_all = parts("before", None);
    let after = parts("after", None);
    let after_ok = parts("after", Some(200));
    let resumed: Vec<String> = hits
        .iter()
        .filter(|h| h.param("e2ephase").as_deref() == Some("after"))
        .filter_map(|h| {
            h.param("qqpartindex")
                .map(|p| format!("{p}{}", h.param("qqresume").map_or("", |_| " (qqresume)")))
        })
        .collect();
    eprintln!(
        "e2e {} fineuploader-resume: {RESUME_PARTS} parts; before the reload POST 200 {before_ok:?} \
         (all {before_all:?}); after it {resumed:?}",
        stack.name
    );
    let b: BTreeSet<u64> = before_ok.iter().copied().collect();
    let a: BTreeSet<u64> = after.iter().copied().collect();
    assert!(b.len() as u64 >= RESUME_AT, "{}: {b:?}", stack.name);
    assert_eq!(before_all, before_ok, "{}: a part was cut off", stack.name);
    assert!(
        b.is_disjoint(&a),
        "{}: parts the server had were sent again: {:?}",
        stack.name,
        b.intersection(&a).collect::<Vec<_>>()
    );
    assert_eq!(
        after.len(),
        a.len(),
        "{}: a part was sent twice",
        stack.name
    );
    assert_eq!(after_ok, after, "{}", stack.name);
    assert_eq!(
        b.union(&a).copied().collect::<Vec<_>>(),
        (0..RESUME_PARTS).collect::<Vec<_>>(),
        "{}",
        stack.name
    );
    assert!(
        resumed.first().is_some_and(|r| r.ends_with("(qqresume)")),
        "{}: the first request after the reload is not marked resumed: {resumed:?}",
        stack.name
    );
}

#[test]
fn e2e_dialects_nginx_fastcgi_worker() {
    let mut s = Stack::nginx("dialects-nginx-fastcgi");
    s.start_spawn_fcgi_worker();
    s.install_deploy_site("nginx/fastcgi.conf");
    s.start_nginx();
    run(&s);
}

#[test]
fn e2e_dialects_apache_cgi() {
    let mut s = Stack::apache("dialects-apache-cgi");
    s.install_deploy_site("apache/cgi.conf");
    s.start_apache();
    run(&s);
}
