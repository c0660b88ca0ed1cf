//! The hostile-input corpus (tests/corpus/hostile.json, written by tests/corpus/generate.py):
//! every case through a real CGI process in a scratch root that holds the temp dir, the upload
//! dir and sibling files. Each must get its documented status, exit 0, log a line with that
//! status, never panic, and leave everything outside the temp and upload dirs untouched;
//! refused requests store nothing, and whatever is published has a safe name.

mod common;
mod reliability;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/hostile.json");

/// A string field of a case: a string, or segments (string, {"repeat","times"}, {"b64"}).
fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Array(segments) => {
            let mut out = Vec::new();
            for segment in segments {
                match segment {
                    Value::String(s) => out.extend_from_slice(s.as_bytes()),
                    Value::Object(o) if o.contains_key("b64") => {
                        out.extend(decode_base64(o["b64"].as_str().expect("b64 text")))
                    }
                    Value::Object(o) => {
                        let unit = o["repeat"].as_str().expect("repeat");
                        let times = o["times"].as_u64().expect("times") as usize;
                        out.extend(unit.repeat(times).into_bytes());
                    }
                    other => panic!("bad segment {other}"),
                }
            }
            Some(out)
        }
        other => panic!("bad field {other}"),
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for group in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

/// Everything under `root` except the temp and upload dirs.
fn outside(root: &Path) -> BTreeMap<String, String> {
    snapshot(root)
        .into_iter()
        .filter(|(path, _)| !path.starts_with("temp") && !path.starts_with("uploads"))
        .collect()
}

fn plant_siblings(root: &Path) {
    std::fs::write(root.join("sibling.txt"), b"do not touch").unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), b"root:x:0:0").unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/victim.txt"), b"precious").unwrap();
    std::fs::write(root.join("hello.txt"), b"not the upload").unwrap();
}

fn safe_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && (!c.starts_with('.') || c == ".resumable-staging")
        && !c.chars().any(|ch| ch.is_control())
        && c.len() <= 255
}

/// A case's request headers (tus, blueimp) and PATH_INFO, as the web server passes them.
fn header_vars(case: &Value) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = case["headers"]
        .as_array()
        .map(|headers| {
            headers
                .iter()
                .map(|pair| {
                    let name = pair[0].as_str().expect("header name");
                    let value = bytes_of(&pair[1]).expect("header value");
                    let value = String::from_utf8(value).expect("header values are text");
                    let var = name.to_ascii_uppercase().replace('-', "_");
                    (format!("HTTP_{var}"), value)
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(path) = case["path_info"].as_str() {
        vars.push(("PATH_INFO".into(), path.into()));
    }
    vars
}

/// Runs one case; returns what went wrong, if anything.
fn run_case(case: &Value) -> Option<String> {
    let name = case["name"].as_str().expect("name");
    let expect = case["expect"].as_u64().expect("expect") as u16;
    let query = bytes_of(&case["query"]).unwrap_or_default();
    let request = TestRequest {
        method: case["method"].as_str().expect("method").to_string(),
        query: String::from_utf8(query).expect("queries are ASCII"),
        content_type: bytes_of(&case["content_type"])
            .map(|ct| String::from_utf8(ct).expect("content types are text")),
        body: bytes_of(&case["body"]).unwrap_or_default(),
        remote_user: None,
    };
    let cgi = Cgi::new();
    plant_siblings(cgi.dirs.root.path());
    let before = outside(cgi.dirs.root.path());
    let mut command = cgi.command(&request);
    if let Some(length) = case.get("content_length").and_then(Value::as_str) {
        command.env("CONTENT_LENGTH", length);
    }
    if request.method.is_empty() {
        command.env("REQUEST_METHOD", "");
    }
    command.envs(header_vars(case));
    let run = Cgi::run_command(command, &request.body);
    let mut problems = Vec::new();
    if run.exit_code != Some(0) {
        problems.push(format!("exit {:?}", run.exit_code));
    }
    if run.response.status != expect {
        problems.push(format!(
            "status {} (expected {expect}): {}",
            run.response.status,
            String::from_utf8_lossy(&run.response.body).trim()
        ));
    }
    if !run.stderr.contains(&format!("-> {}", run.response.status)) {
        problems.push(format!("no log line for the answer: {:?}", run.stderr));
    }
    if outside(cgi.dirs.root.path()) != before {
        problems.push("something outside the temp and upload dirs changed".into());
    }
    for path in snapshot(&cgi.dirs.uploads).keys() {
        if !path.trim_end_matches('/').split('/').all(safe_component) {
            problems.push(format!("unsafe published path {path:?}"));
        }
    }
    let stored = matches!(request.method.as_str(), "POST" | "PUT" | "PATCH")
        && matches!(run.response.status, 200 | 201 | 204);
    if !stored {
        let published = published_files(&cgi.dirs.uploads);
        if !published.is_empty() {
            problems.push(format!("refused but published {published:?}"));
        }
        let parts = stored_files(&cgi.dirs.temp);
        if !parts.is_empty() {
            problems.push(format!("refused but stored {parts:?}"));
        }
    } else if run.response.json()["complete"] == Value::Bool(true) {
        let file = run.response.json()["file"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match std::fs::read(cgi.dirs.uploads.join(&file)) {
            Ok(bytes)
                if bytes.len() as u64 == run.response.json()["size"].as_u64().unwrap_or(0) => {}
            _ => problems.push(format!("the answer names {file:?}, which is not the file")),
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!("{name}: {}", problems.join("; ")))
    }
}

#[test]
fn every_hostile_case_gets_its_documented_status_and_touches_nothing_outside() {
    let text = std::fs::read_to_string(CORPUS).expect("tests/corpus/hostile.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("corpus JSON");
    assert!(cases.len() >= 200, "the corpus has {} cases", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(
            names.insert(case["name"].as_str().unwrap().to_string()),
            "duplicate name"
        );
    }
    // Two threads: each case is its own CGI process in its own scratch root.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let half = cases.len() / 2;
        let handles: Vec<_> = [&cases[..half], &cases[half..]]
            .into_iter()
            .map(|slice| scope.spawn(move || slice.iter().filter_map(run_case).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut statuses = BTreeMap::<u64, usize>::new();
    for case in &cases {
        *statuses
            .entry(case["expect"].as_u64().unwrap())
            .or_default() += 1;
    }
    eprintln!(
        "{} hostile cases, expected statuses {statuses:?}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The same corpus through one FastCGI worker process (its own parameter and body framing):
/// the documented status for every case, no panic, the worker still serving, and nothing
/// outside its temp and upload dirs changed. Cases that set CONTENT_LENGTH or an empty method
/// by hand are CGI-specific and skipped here.
#[test]
fn every_hostile_case_gets_its_documented_status_over_fastcgi() {
    use common::fastcgi_client::{cgi_params, Worker};
    let text = std::fs::read_to_string(CORPUS).expect("tests/corpus/hostile.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("corpus JSON");
    let worker = Worker::start(false, &["--workers", "2"], &[]);
    let root = worker.dirs.root.path().to_path_buf();
    plant_siblings(&root);
    let outside_worker = |root: &Path| {
        let mut snap = outside(root);
        snap.remove("worker.stderr");
        snap
    };
    let before = outside_worker(&root);
    let mut failures = Vec::new();
    let mut sent = 0;
    for case in &cases {
        let method = case["method"].as_str().expect("method");
        if case.get("content_length").is_some() || method.is_empty() {
            continue;
        }
        let name = case["name"].as_str().expect("name");
        let expect = case["expect"].as_u64().expect("expect") as u16;
        let request = TestRequest {
            method: method.to_string(),
            query: String::from_utf8(bytes_of(&case["query"]).unwrap_or_default()).unwrap(),
            content_type: bytes_of(&case["content_type"]).map(|c| String::from_utf8(c).unwrap()),
            body: bytes_of(&case["body"]).unwrap_or_default(),
            remote_user: None,
        };
        let extra: Vec<(Vec<u8>, Vec<u8>)> = header_vars(case)
            .into_iter()
            .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
            .collect();
        let reply =
            worker
                .connect()
                .request(1, false, &cgi_params(&request, &extra), &request.body);
        sent += 1;
        match reply {
            Ok(reply) => {
                let response = reply.response();
                if response.status != expect {
                    failures.push(format!(
                        "{name}: status {} (expected {expect}): {}",
                        response.status,
                        String::from_utf8_lossy(&response.body).trim()
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: no reply: {e}")),
        }
    }
    worker.assert_no_panic();
    assert_eq!(
        outside_worker(&root),
        before,
        "nothing outside the dirs changed"
    );
    for path in snapshot(&worker.dirs.uploads).keys() {
        assert!(
            path.trim_end_matches('/').split('/').all(safe_component),
            "unsafe published path {path:?}"
        );
    }
    eprintln!("{sent} hostile cases over FastCGI");
    assert!(
        failures.is_empty(),
        "{} cases failed over FastCGI:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Symlinks where the store creates its own names (the staging folder, the staging file, the
/// completion record, a user's folder): never followed, nothing outside changes.
#[test]
fn symlinks_at_the_stores_own_names_are_never_followed() {
    let cgi = Cgi::new();
    let root = cgi.dirs.root.path();
    plant_siblings(root);
    let victim_dir = root.join("outside");
    let before = outside(root);

    // The staging folder is a link out of the upload dir: the assembly refuses (500), and
    // nothing is created through it.
    let a = Upload::new(Client::Flow, "a.txt", pseudo_random(10, 1), 1024);
    symlink(&victim_dir, cgi.dirs.uploads.join(".resumable-staging")).unwrap();
    let run = cgi.run(&a.chunk_request(1));
    assert_eq!(run.response.status, 500, "{}", run.stderr);
    assert!(run.stderr.contains("staging"), "{}", run.stderr);
    std::fs::remove_file(cgi.dirs.uploads.join(".resumable-staging")).unwrap();
    // With the link gone, the client's next request (a test of the stored last chunk) completes.
    let done = cgi.send(&a.test_request(1));
    scenarios::assert_published(&cgi, &a, &done);

    // The completion record's name is a link to a file outside: not read through, not
    // written through.
    let b = Upload::new(Client::Flow, "b.txt", pseudo_random(10, 2), 1024);
    let b_dir = cgi.dirs.temp.join(&b.identifier);
    std::fs::create_dir(&b_dir).unwrap();
    symlink(victim_dir.join("victim.txt"), b_dir.join("b.txt.complete")).unwrap();
    let run = cgi.run(&b.chunk_request(1));
    assert_eq!(run.response.status, 500, "{}", run.stderr);
    assert!(run.stderr.contains("completion record"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(victim_dir.join("victim.txt")).unwrap(),
        b"precious"
    );

    // A user's folder is a link.
    let mut c = Upload::new(Client::Flow, "c.txt", pseudo_random(10, 3), 1024);
    c.remote_user = Some("mallory".into());
    let probe = cgi.run(&c.chunk_request(1));
    assert_eq!(probe.response.status, 200);
    let user_dir = std::fs::read_dir(&cgi.dirs.temp)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("~user-"))
        .expect("user folder")
        .path();
    std::fs::remove_dir_all(&user_dir).unwrap();
    symlink(&victim_dir, &user_dir).unwrap();
    let mut d = c.clone();
    d.filename = "d.txt".into();
    d.identifier = "10-dtxt".into();
    assert_eq!(cgi.run(&d.chunk_request(1)).response.status, 500);

    assert_eq!(outside(root), before, "nothing outside the dirs changed");
}

/// The fuzz targets' inputs kept in the repository (fuzz/seeds/<target>/, where a crash found
/// by `cargo fuzz` is also kept as a regression), replayed through the same code on every
/// `cargo test`: no panic, and the same properties the targets assert.
#[test]
fn fuzz_seeds_and_kept_crashes_replay_cleanly() {
    use resumable_cgi::protocol::multipart::read_multipart;
    use resumable_cgi::protocol::{Intent, Params};
    use resumable_cgi::store::layout;
    use std::io::Cursor;

    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let files = |target: &str| -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(seeds.join(target))
            .map(|dir| {
                dir.flatten()
                    .map(|e| std::fs::read(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    };
    let params_inputs = files("params");
    let multipart_inputs = files("multipart");
    assert!(!params_inputs.is_empty() && !multipart_inputs.is_empty());
    for data in &params_inputs {
        let (query, form) = match data.iter().position(|&b| b == 0) {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (&data[..], &[][..]),
        };
        let mut params = Params::from_query(&String::from_utf8_lossy(query));
        for line in String::from_utf8_lossy(form).split('\n') {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            params.push(name.to_string(), value.to_string());
        }
        if let Ok(intent) = Intent::from_params(&params) {
            let (identifier, filename) = intent.names();
            let dir = layout::upload_dir_name(identifier);
            assert!(!dir.contains('/') && dir != ".." && dir.len() <= 255);
            let relative_path = match &intent {
                Intent::Chunk(chunk) => chunk.relative_path.as_deref(),
                _ => None,
            };
            let (folders, file) = layout::published_path(filename, relative_path);
            for c in folders.iter().chain(std::iter::once(&file)) {
                assert!(c != ".." && !c.starts_with('.') && !c.contains('/'));
            }
        }
    }
    for data in &multipart_inputs {
        let (head, body) = match data.iter().position(|&b| b == b'\n') {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (&[][..], &data[..]),
        };
        let content_type = if head.is_empty() {
            "multipart/form-data; boundary=X".to_string()
        } else {
            String::from_utf8_lossy(head).into_owned()
        };
        let mut params = Params::default();
        let mut reader = Cursor::new(body.to_vec());
        let result = read_multipart(&mut reader, &content_type, 1 << 16, &mut params, |_, f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        });
        if let Ok(Some(bytes)) = result {
            assert!(bytes.len() <= body.len());
        }
    }
    eprintln!(
        "replayed {} params and {} multipart fuzz inputs",
        params_inputs.len(),
        multipart_inputs.len()
    );
}
