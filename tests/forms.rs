//! Plain form uploads (no chunk dialect) through a real CGI process and a real FastCGI worker:
//! one file, five files among text fields, each per-file error code provoked for real (1, 2
//! before and after the file parts, 3 with a cut body, 4, 5, 6 with the upload dir gone),
//! oversized and malformed bodies, the HTML, redirect and URL answers, and every hostile file
//! name of the chunked corpus. Error 7 (a full disk) is in tests/disk.rs and the 1 GiB
//! constant-memory run in tests/cgi.rs.

mod common;

use std::path::Path;

use common::fastcgi_client::{cgi_params, Worker};
use common::forms::*;
use common::*;
use serde_json::Value;

/// A CGI program or a FastCGI worker, sent requests with extra CGI variables (settings, which
/// FastCGI params override per request, and `HTTP_*` headers).
enum Target {
    Cgi(Cgi),
    FastCgi(Worker),
}

impl Target {
    fn both() -> Vec<Target> {
        vec![
            Target::Cgi(Cgi::new()),
            Target::FastCgi(Worker::start(false, &["--workers", "2"], &[])),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Cgi(_) => "CGI",
            Target::FastCgi(_) => "FastCGI",
        }
    }

    fn dirs(&self) -> &Dirs {
        match self {
            Target::Cgi(cgi) => &cgi.dirs,
            Target::FastCgi(worker) => &worker.dirs,
        }
    }

    fn uploads(&self) -> &Path {
        &self.dirs().uploads
    }

    /// The response, and the log lines this request produced.
    fn send(&self, request: &TestRequest, vars: &[(&str, &str)]) -> (TestResponse, String) {
        match self {
            Target::Cgi(cgi) => {
                let mut command = cgi.command(request);
                command.envs(vars.iter().copied());
                let run = Cgi::run_command(command, &request.body);
                assert_eq!(run.exit_code, Some(0), "{}", run.stderr);
                (run.response, run.stderr)
            }
            Target::FastCgi(worker) => {
                let before = worker.stderr().len();
                let extra: Vec<(Vec<u8>, Vec<u8>)> = vars
                    .iter()
                    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect();
                let reply = worker
                    .connect()
                    .request(1, false, &cgi_params(request, &extra), &request.body)
                    .expect("a FastCGI reply");
                worker.assert_no_panic();
                let log = worker
                    .stderr()
                    .get(before..)
                    .unwrap_or_default()
                    .to_string();
                (reply.response(), log)
            }
        }
    }

    fn post(&self, parts: &[FormPart], vars: &[(&str, &str)]) -> TestResponse {
        self.send(&form_request(parts), vars).0
    }

    /// The stored file named by an entry holds exactly `data`.
    fn assert_stored(&self, entry: &Value, data: &[u8]) {
        let file = entry["file"].as_str().unwrap_or_else(|| panic!("{entry}"));
        let bytes = std::fs::read(self.uploads().join(file)).expect("the stored file");
        assert_eq!(
            sha256_hex(&bytes),
            sha256_hex(data),
            "{}: {file}",
            self.name()
        );
        assert_eq!(entry["error"], 0);
        assert_eq!(entry["size"], data.len() as u64);
    }
}

fn ok_json(response: &TestResponse, context: &str) {
    assert_eq!(
        response.status,
        200,
        "{context}: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(response
        .header("Content-Type")
        .is_some_and(|ct| ct.starts_with("application/json")));
}

#[test]
fn one_file_and_five_files_among_text_fields() {
    for target in Target::both() {
        let data = pseudo_random(70_000, 1);
        let response = target.post(&[file("userfile", "one.bin", &data)], &[]);
        ok_json(&response, target.name());
        assert_eq!(response.json()["success"], true);
        let entry = &entries(&response)[0];
        assert_eq!(entry["field"], "userfile");
        assert_eq!(entry["name"], "one.bin");
        assert_eq!(entry["file"], "one.bin");
        assert_eq!(entry["type"], "application/octet-stream");
        target.assert_stored(entry, &data);

        // Five files, text fields before, between and after, sizes from empty to 1 MiB; the
        // same name twice gets a free name the second time.
        let files: Vec<(String, Vec<u8>)> = [0usize, 1, 4095, 300_000, 1 << 20]
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let name = if i == 4 {
                    "one.bin".into()
                } else {
                    format!("f{i}.dat")
                };
                (name, pseudo_random(size, 10 + i as u64))
            })
            .collect();
        let mut parts = vec![text("title", "holiday"), text("csrf", "x")];
        for (i, (name, data)) in files.iter().enumerate() {
            parts.push(file("files[]", name, data));
            parts.push(text(&format!("caption{i}"), "between"));
        }
        parts.push(text("after", "the end"));
        let response = target.post(&parts, &[]);
        ok_json(&response, target.name());
        assert_eq!(response.json()["success"], true);
        let listed = entries(&response);
        assert_eq!(listed.len(), 5);
        for (entry, (name, data)) in listed.iter().zip(&files) {
            assert_eq!(entry["name"], name.as_str());
            target.assert_stored(entry, data);
        }
        assert_eq!(listed[4]["file"], "one (1).bin");
        assert!(staging_is_empty(target.uploads()));
        assert_eq!(
            published_files(target.uploads()).len(),
            6,
            "{}",
            target.name()
        );
    }
}

#[test]
fn size_limits_cut_a_file_off_and_the_files_after_it_still_arrive() {
    for target in Target::both() {
        let small = pseudo_random(1000, 2);
        let big = pseudo_random(5000, 3);
        // The whole form may be larger than one file (RESUMABLE_MAX_POST_SIZE follows
        // RESUMABLE_MAX_FILE_SIZE unless set).
        let limits = [
            ("RESUMABLE_MAX_FILE_SIZE", "4000"),
            ("RESUMABLE_MAX_POST_SIZE", "1M"),
        ];
        // 1: over RESUMABLE_MAX_FILE_SIZE, between two files that fit.
        let response = target.post(
            &[
                file("a", "before.bin", &small),
                file("b", "big.bin", &big),
                file("c", "after.bin", &small),
            ],
            &limits,
        );
        ok_json(&response, target.name());
        assert_eq!(codes(&response), [0, 1, 0]);
        assert_eq!(response.json()["success"], false);
        let refused = &entries(&response)[1];
        assert_eq!(
            (refused["size"].as_u64(), refused["file"].is_null()),
            (Some(0), true)
        );
        assert!(refused["message"].as_str().unwrap().contains("4000"));
        assert!(!target.uploads().join("big.bin").exists());
        assert!(target.uploads().join("after.bin").exists());
        assert!(staging_is_empty(target.uploads()));

        // 2: MAX_FILE_SIZE applies to the file parts after it (matched case-insensitively),
        // not to those before it; it never raises the configured limit (1 wins over 2).
        let response = target.post(
            &[
                file("f", "early.bin", &big),
                text("max_file_size", "2000"),
                file("f", "late-small.bin", &small),
                file("f", "late-big.bin", &big),
                text("MAX_FILE_SIZE", "100000"),
                file("f", "raised.bin", &big),
            ],
            &limits,
        );
        ok_json(&response, target.name());
        assert_eq!(codes(&response), [1, 0, 2, 1]);
        let response = target.post(
            &[
                text("MAX_FILE_SIZE", "2000"),
                file("f", "form-big.bin", &big),
                file("f", "form-small.bin", &small),
            ],
            &[],
        );
        assert_eq!(codes(&response), [2, 0]);
        assert!(staging_is_empty(target.uploads()));
    }
}

#[test]
fn empty_inputs_too_many_files_and_a_form_without_files() {
    for target in Target::both() {
        let data = pseudo_random(100, 4);
        // 4: an empty file input; 5: beyond RESUMABLE_MAX_FILE_UPLOADS (empty inputs do not
        // count towards it).
        let response = target.post(
            &[
                file("a", "", b""),
                file("a", "1.txt", &data),
                file("a", "2.txt", &data),
                file("a", "3.txt", &data),
            ],
            &[("RESUMABLE_MAX_FILE_UPLOADS", "2")],
        );
        ok_json(&response, target.name());
        assert_eq!(codes(&response), [4, 0, 0, 5]);
        assert!(!target.uploads().join("3.txt").exists());
        assert!(entries(&response)[3]["message"]
            .as_str()
            .unwrap()
            .contains("more than 2"));
        // A form with no file input at all is a form with no files.
        let response = target.post(&[text("name", "value")], &[]);
        ok_json(&response, target.name());
        assert_eq!(response.json()["files"], Value::Array(vec![]));
    }
}

#[test]
fn a_cut_body_keeps_the_files_before_the_cut_and_reports_the_cut_one() {
    for target in Target::both() {
        let first = pseudo_random(20_000, 5);
        let second = pseudo_random(200_000, 6);
        let mut request = form_request(&[
            file("f", "whole.bin", &first),
            file("f", "cut.bin", &second),
            file("f", "never.bin", &first),
        ]);
        let full = request.body.len().to_string();
        // The client goes away inside the second file: the web server passes what came.
        request.body.truncate(20_000 + 150_000);
        let (response, log) = target.send(&request, &[("CONTENT_LENGTH", &full)]);
        assert_eq!(response.status, 200, "{}", target.name());
        let body = response.json();
        assert_eq!(body["success"], false);
        assert!(body["error"].as_str().unwrap().contains("ended"), "{body}");
        assert_eq!(codes(&response), [0, 3]);
        target.assert_stored(&entries(&response)[0], &first);
        assert!(!target.uploads().join("cut.bin").exists());
        assert!(staging_is_empty(target.uploads()));
        assert!(log.contains("ended inside \"cut.bin\""), "{log}");
    }
}

#[test]
fn oversized_and_malformed_bodies_publish_nothing() {
    for target in Target::both() {
        let data = pseudo_random(10_000, 7);
        let parts = [file("f", "a.bin", &data), file("f", "b.bin", &data)];
        // Over RESUMABLE_MAX_POST_SIZE: 413 from CONTENT_LENGTH alone.
        let (response, log) = target.send(
            &form_request(&parts),
            &[("RESUMABLE_MAX_POST_SIZE", "15000")],
        );
        assert_eq!(response.status, 413, "{}", target.name());
        assert_eq!(response.json()["preventRetry"], true);
        assert!(log.contains("-> 413"), "{log}");
        // Unknown length (no CONTENT_LENGTH): 413 once the limit is passed.
        let (response, _) = target.send(
            &form_request(&parts),
            &[
                ("RESUMABLE_MAX_POST_SIZE", "15000"),
                ("CONTENT_LENGTH", "unknown"),
            ],
        );
        assert_eq!(response.status, 413, "{}", target.name());
        // Malformed after a whole file: a part header without its blank line.
        let mut request = form_request(&parts);
        let at = request.body.len() - format!("--{BOUNDARY}--\r\n").len();
        request.body.truncate(at);
        request.body.extend_from_slice(
            format!("--{BOUNDARY}\r\nX: {}\r\n", "y".repeat(2 << 20)).as_bytes(),
        );
        request
            .body
            .extend_from_slice(format!("\r\n\r\n--{BOUNDARY}--\r\n").as_bytes());
        let (response, _) = target.send(&request, &[]);
        assert_eq!(response.status, 400, "{}", target.name());
        // Chunk parameters after the file part: neither a chunk nor a form.
        let response = target.post(
            &[
                file("file", "c.bin", &data),
                text("flowIdentifier", "x"),
                text("flowChunkNumber", "1"),
            ],
            &[],
        );
        assert_eq!(response.status, 400, "{}", target.name());
        assert!(published_files(target.uploads()).is_empty());
        assert!(staging_is_empty(target.uploads()));
    }
}

#[test]
fn a_missing_upload_dir_is_error_6_and_a_500_naming_it() {
    for target in Target::both() {
        let uploads = target.uploads().to_path_buf();
        std::fs::remove_dir(&uploads).unwrap();
        let data = pseudo_random(3000, 8);
        let (response, log) = target.send(
            &form_request(&[file("f", "a.bin", &data), file("f", "b.bin", &data)]),
            &[],
        );
        assert_eq!(response.status, 500, "{}", target.name());
        assert_eq!(codes(&response), [6, 6]);
        assert!(log.contains(&uploads.display().to_string()), "{log}");
        std::fs::create_dir(&uploads).unwrap();
        let response = target.post(&[file("f", "a.bin", &data)], &[]);
        assert_eq!(codes(&response), [0]);
    }
}

#[test]
fn browsers_get_a_page_or_a_redirect_and_pages_get_urls() {
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for target in Target::both() {
        let data = pseudo_random(500, 9);
        let parts = [file("f", "<b>bold</b> & co.txt", &data), file("f", "", b"")];
        let (page, _) = target.send(&form_request(&parts), &[("HTTP_ACCEPT", browser)]);
        assert_eq!(page.status, 200);
        assert!(page
            .header("Content-Type")
            .is_some_and(|ct| ct.starts_with("text/html")));
        let html = String::from_utf8_lossy(&page.body);
        assert!(
            html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co.txt") && !html.contains("<b>bold"),
            "{html}"
        );
        assert!(html.contains("1 of 2 files stored"), "{html}");

        // A redirect once every file is stored; the failures shown on a page otherwise.
        let redirect = [
            ("HTTP_ACCEPT", browser),
            ("RESUMABLE_FORM_REDIRECT", "/thanks"),
        ];
        let (response, _) = target.send(&form_request(&parts[..1]), &redirect);
        assert_eq!(response.status, 303);
        assert_eq!(response.header("Location"), Some("/thanks"));
        let (response, _) = target.send(&form_request(&parts), &redirect);
        assert_eq!(response.status, 200);
        assert!(String::from_utf8_lossy(&response.body).contains("href=\"/thanks\""));

        // RESUMABLE_PUBLIC_URL: a URL per stored file, and in the chunked completion answer.
        let public = [("RESUMABLE_PUBLIC_URL", "https://example.com/up")];
        let response = target.post(&[file("f", "a b#.txt", &data)], &public);
        assert_eq!(
            entries(&response)[0]["url"],
            "https://example.com/up/a%20b%23.txt"
        );
        let upload = Upload::new(Client::Flow, "chunked é.bin", data.clone(), 1024);
        let (done, _) = target.send(&upload.chunk_request(1), &public);
        assert_eq!(done.json()["complete"], true);
        assert_eq!(
            done.json()["url"],
            "https://example.com/up/chunked%20%C3%A9.bin"
        );
        let (plain, _) = target.send(&upload.test_request(1), &[]);
        assert!(
            plain.json().get("url").is_none(),
            "no URL unless configured"
        );
    }
}

/// Folder uploads: Chrome sends the relative path as the file name; Uppy's XHR upload sends a
/// `relativePath` field before the file (the string `null` when there is none).
#[test]
fn folders_from_the_file_name_or_a_relative_path_field() {
    for target in Target::both() {
        let data = pseudo_random(100, 10);
        let response = target.post(
            &[
                file("f", "album/2024/a.jpg", &data),
                text("relativePath", "trip/day 1/b.jpg"),
                file("f", "b.jpg", &data),
                text("relativePath", "null"),
                file("f", "c.jpg", &data),
            ],
            &[],
        );
        let stored: Vec<Value> = entries(&response)
            .iter()
            .map(|e| e["file"].clone())
            .collect();
        assert_eq!(stored, ["album/2024/a.jpg", "trip/day 1/b.jpg", "c.jpg"]);
    }
}

/// Every file name and relative path of the chunked hostile corpus, as a form's file name (a
/// browser escapes only `"`, CR and LF) and as Uppy's relativePath field: stored under a safe
/// name inside the upload dir, byte-identical, and nothing outside it touched. A name with a
/// control character that HTTP forbids in a header line is refused as malformed (400).
#[test]
fn hostile_names_from_the_chunked_corpus_stay_inside() {
    let corpus: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/corpus/hostile.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut names = Vec::new();
    for case in &corpus {
        let label = case["name"].as_str().unwrap();
        let (Some(query), 200) = (case["query"].as_str(), case["expect"].as_u64().unwrap_or(0))
        else {
            continue;
        };
        let field = if label.starts_with("filename-") {
            "resumableFilename"
        } else if label.starts_with("relativepath-") {
            "resumableRelativePath"
        } else {
            continue;
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        // (An empty name is an empty file input, error 4: tested above.)
        if let Some((_, value)) = pairs.into_iter().find(|(n, v)| n == field && !v.is_empty()) {
            names.push((label.to_string(), value));
        }
    }
    assert!(names.len() > 100, "{} names", names.len());
    let forbidden_in_headers = |name: &str| {
        name.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    };
    for target in Target::both() {
        let root = target.dirs().root.path().to_path_buf();
        std::fs::write(root.join("sibling.txt"), b"do not touch").unwrap();
        let outside = || {
            snapshot(&root)
                .into_iter()
                .filter(|(p, _)| {
                    !p.starts_with("temp") && !p.starts_with("uploads") && p != "worker.stderr"
                })
                .collect::<Vec<_>>()
        };
        let before = outside();
        let mut refused = 0;
        for (i, (label, name)) in names.iter().enumerate() {
            let data = pseudo_random(64, i as u64);
            let response = target.post(
                &[
                    file("f", name, &data),
                    text("relativePath", name),
                    file("g", "plain.txt", &data),
                ],
                &[],
            );
            if forbidden_in_headers(name) {
                assert_eq!(response.status, 400, "{label}");
                refused += 1;
                continue;
            }
            ok_json(&response, label);
            assert_eq!(codes(&response), [0, 0], "{label}");
            for entry in entries(&response) {
                let stored = entry["file"].as_str().unwrap();
                for component in stored.split('/') {
                    assert!(
                        !component.is_empty()
                            && component != ".."
                            && !component.starts_with('.')
                            && !component.chars().any(char::is_control)
                            && component.len() <= 255,
                        "{label}: {stored:?}"
                    );
                }
                target.assert_stored(&entry, &data);
            }
        }
        assert_eq!(
            outside(),
            before,
            "{}: nothing outside changed",
            target.name()
        );
        assert!(staging_is_empty(target.uploads()));
        eprintln!(
            "{}: {} hostile names, {refused} refused as malformed headers",
            target.name(),
            names.len()
        );
    }
}
