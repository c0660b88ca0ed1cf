//! The demo page's own uploader in headless Chromium against `resumable-cgi serve`: two files,
//! one paused and resumed, one resumed after a page reload, checked on disk and against the
//! server's log; a third refused by the server's size limit, shown in words.

mod common;
mod serve_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use serve_support::DevServer;

/// Screenshots of the run land here (`-mid-upload.png`, `-done.png`, `-listing.png`).
const SCREENSHOTS: &str = "/tmp/resumable-cgi-demo";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_demo_page(url: &str, work: &Path, out: &Path) -> (bool, String) {
    // Stopped by PID if the test fails before it ends.
    let mut node = Proc::spawn_logged(
        "node (scripts/install-test-deps installs it)",
        Command::new("node")
            .arg(repo().join("tests/js/demo-page.mjs"))
            .arg(url)
            .arg(work)
            .arg(SCREENSHOTS)
            .current_dir(repo().join("tests/js")),
        out,
    );
    let status = node
        .wait_timeout(Duration::from_secs(240))
        .expect("demo-page.mjs timed out");
    (status.success(), std::fs::read_to_string(out).unwrap())
}

#[test]
fn demo_page_uploads_two_files_and_resumes_one_after_a_reload() {
    let server = DevServer::start_with(&[("RESUMABLE_MAX_FILE_SIZE", "7M")]);
    let work = Scratch::for_this_test();
    let out = work.path().join("node.out");
    let (ok, output) = run_demo_page(&server.url(), work.path(), &out);
    let log = server.log();
    assert!(ok, "demo-page.mjs failed:\n{output}\nserver log:\n{log}");
    let result: Value = output
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("no RESULT line in:\n{output}"));
    eprintln!("{output}");

    // Both files are on disk, byte for byte, under the names the page showed.
    let files = result["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for file in files {
        let source = std::fs::read(file["source"].as_str().unwrap()).unwrap();
        let stored_name = file["stored"].as_str().unwrap();
        let stored = std::fs::read(server.upload_dir().join(stored_name)).unwrap();
        assert_eq!(sha256_hex(&source), file["sha256"].as_str().unwrap());
        assert_eq!(
            sha256_hex(&stored),
            sha256_hex(&source),
            "{stored_name} differs from its source"
        );
    }
    // The folder picker kept the folder.
    assert_eq!(files[0]["stored"], "demo-folder/alpha.bin");
    assert_eq!(files[1]["stored"], "bravo.bin");
    assert_eq!(result["listingNames"].as_array().unwrap().len(), 2);

    // The resumed file: the server stored every chunk exactly once, so nothing that arrived
    // before the reload was sent again after it.
    let resumed = &result["resumed"];
    let id = resumed["id"].as_str().unwrap();
    let total = resumed["total"].as_u64().unwrap();
    assert_eq!(total, 24, "6 MiB + 77 bytes in 256 KiB chunks");
    let mut stored_per_chunk: BTreeMap<u64, usize> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line
            .split("POST resumable stored")
            .nth(1)
            .filter(|rest| rest.contains(&format!("id=\"{id}\"")))
        else {
            continue;
        };
        let number: u64 = rest
            .split("chunk ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("chunk number in {line:?}"));
        *stored_per_chunk.entry(number).or_default() += 1;
    }
    let expected: BTreeMap<u64, usize> = (1..=total).map(|n| (n, 1)).collect();
    assert_eq!(stored_per_chunk, expected, "server log:\n{log}");

    let posts_after = resumed["postsAfterReload"].as_u64().unwrap();
    let skipped_after = resumed["skippedAfterReload"].as_u64().unwrap();
    let sent_after = resumed["sentAfterReload"].as_u64().unwrap();
    assert_eq!(
        posts_after, sent_after,
        "every POST after the reload stored"
    );
    assert!(
        skipped_after >= resumed["confirmedBeforeReload"].as_u64().unwrap(),
        "{resumed}"
    );
    assert!(skipped_after > 0 && posts_after < total, "{resumed}");
    assert_eq!(posts_after + skipped_after, total, "{resumed}");
    assert!(resumed["testsAfterReload"].as_u64().unwrap() >= total);
    eprintln!(
        "resumed after the reload: {skipped_after} of {total} chunks were on the server, \
         {posts_after} sent"
    );

    // Paused part-way (no chunk moved while paused), then finished.
    let pause = &result["pause"];
    assert!(pause["pausedAt"].as_u64().unwrap() < pause["total"].as_u64().unwrap());
    assert_eq!(pause["pausedAt"], pause["stillAt"]);
    // The refused file: a 415 from the server, shown in words, nothing published.
    assert!(log.contains("-> 415: file of 8388608 bytes is larger than the maximum of 7340032"));
    assert!(!server.upload_dir().join("too-big.bin").exists());
    assert!(!log.contains("panicked"), "{log}");
}
