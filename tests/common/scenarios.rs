//! Upload scenarios every transport must pass identically (CGI, FastCGI, dev server).
//! Each uses its own identifiers and file names, so all can share one server and its dirs.

use super::*;
use serde_json::Value;

pub type Scenario = (&'static str, fn(&dyn Endpoint));

pub fn all() -> Vec<Scenario> {
    let own: Vec<Scenario> = vec![
        (
            "every_client_multi_chunk_floor_mode",
            every_client_multi_chunk_floor_mode,
        ),
        ("ceil_mode_force_chunk_size", ceil_mode_force_chunk_size),
        ("zero_byte_file", zero_byte_file),
        ("file_smaller_than_one_chunk", file_smaller_than_one_chunk),
        (
            "out_of_order_and_duplicate_chunks",
            out_of_order_and_duplicate_chunks,
        ),
        ("test_requests_track_state", test_requests_track_state),
        (
            "a_resent_chunk_already_assembled_is_not_stored_again",
            a_resent_chunk_already_assembled_is_not_stored_again,
        ),
        (
            "late_duplicate_recreates_nothing",
            late_duplicate_recreates_nothing,
        ),
        ("folder_and_unicode_names", folder_and_unicode_names),
        ("name_clash_gets_a_free_name", name_clash_gets_a_free_name),
        (
            "flow_test_by_post_without_file",
            flow_test_by_post_without_file,
        ),
        (
            "invalid_requests_get_4xx_and_count_nothing",
            invalid_requests_get_4xx_and_count_nothing,
        ),
        ("policy_refusals_are_415", policy_refusals_are_415),
        ("traversal_names_stay_inside", traversal_names_stay_inside),
    ];
    own.into_iter().chain(super::dialects::all()).collect()
}

/// Runs every scenario against `endpoint`, naming the one that fails.
pub fn run_all(endpoint: &dyn Endpoint) {
    for (name, scenario) in all() {
        eprintln!("scenario {name}");
        scenario(endpoint);
    }
}

/// Uploads every chunk in `order` (1-based numbers) and returns the last response.
pub fn upload_in_order(endpoint: &dyn Endpoint, upload: &Upload, order: &[u64]) -> TestResponse {
    let mut last = None;
    for &number in order {
        let response = endpoint.send(&upload.chunk_request(number));
        assert_eq!(
            response.status,
            200,
            "chunk {number} of {:?}: {}",
            upload.filename,
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()["success"], Value::Bool(true));
        assert!(response
            .header("Content-Type")
            .is_some_and(|ct| ct.starts_with("application/json")));
        last = Some(response);
    }
    last.expect("at least one chunk")
}

pub fn upload_all(endpoint: &dyn Endpoint, upload: &Upload) -> TestResponse {
    let order: Vec<u64> = (1..=upload.chunk_count()).collect();
    upload_in_order(endpoint, upload, &order)
}

/// The completing response names the file; the file there has the source's bytes.
pub fn assert_published(
    endpoint: &dyn Endpoint,
    upload: &Upload,
    response: &TestResponse,
) -> String {
    let json = response.json();
    assert_eq!(json["complete"], Value::Bool(true), "{json}");
    assert_eq!(json["size"], Value::from(upload.data.len() as u64));
    let file = json["file"]
        .as_str()
        .expect("file name in the answer")
        .to_string();
    let stored = std::fs::read(endpoint.upload_dir().join(&file)).expect("published file");
    assert_eq!(sha256_hex(&stored), upload.sha256(), "bytes of {file}");
    file
}

/// No part and no temporary chunk is left in the temp dir (scenarios finish what they start).
pub fn assert_no_parts_left(endpoint: &dyn Endpoint) {
    for (path, _) in snapshot(endpoint.temp_dir()) {
        assert!(
            !path.contains(".part") || path.ends_with(".complete"),
            "leftover {path}"
        );
    }
}

fn every_client_multi_chunk_floor_mode(endpoint: &dyn Endpoint) {
    for (i, client) in ALL_CLIENTS.into_iter().enumerate() {
        // 5 chunks of 1000 and a last chunk of 1999 bytes: nearly twice the chunk size.
        let data = pseudo_random(4 * 1000 + 1999, 100 + i as u64);
        let upload = Upload::new(client, &format!("floor-{i}.bin"), data, 1000);
        assert_eq!(upload.chunk_sizes(), vec![1000, 1000, 1000, 1000, 1999]);
        let response = upload_all(endpoint, &upload);
        assert_eq!(
            assert_published(endpoint, &upload, &response),
            format!("floor-{i}.bin")
        );
        assert_no_parts_left(endpoint);
    }
}

fn ceil_mode_force_chunk_size(endpoint: &dyn Endpoint) {
    for (i, client) in [Client::Resumable, Client::FlowOctet]
        .into_iter()
        .enumerate()
    {
        let mut upload = Upload::new(
            client,
            &format!("ceil-{i}.bin"),
            pseudo_random(2500, 7),
            1000,
        );
        upload.force_chunk_size = true;
        assert_eq!(upload.chunk_sizes(), vec![1000, 1000, 500]);
        let response = upload_all(endpoint, &upload);
        assert_published(endpoint, &upload, &response);
    }
}

fn zero_byte_file(endpoint: &dyn Endpoint) {
    for (i, client) in [Client::Flow, Client::FlowOctet].into_iter().enumerate() {
        let upload = Upload::new(client, &format!("empty-{i}.txt"), Vec::new(), 1024);
        let response = upload_all(endpoint, &upload);
        assert_eq!(
            assert_published(endpoint, &upload, &response),
            format!("empty-{i}.txt")
        );
    }
}

fn file_smaller_than_one_chunk(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::Resumable,
        "small.txt",
        b"just a few bytes".to_vec(),
        1 << 20,
    );
    assert_eq!(upload.chunk_count(), 1);
    let response = upload_all(endpoint, &upload);
    assert_published(endpoint, &upload, &response);
}

fn out_of_order_and_duplicate_chunks(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::Flow,
        "shuffled.bin",
        pseudo_random(10 * 512 + 100, 3),
        512,
    );
    assert_eq!(upload.chunk_count(), 10);
    // prioritizeFirstAndLastChunk sends the last chunk second; retries resend chunks.
    let response = upload_in_order(endpoint, &upload, &[1, 10, 5, 5, 2, 9, 3, 8, 2, 4, 7, 6]);
    assert_published(endpoint, &upload, &response);
    assert_no_parts_left(endpoint);
}

fn test_requests_track_state(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::Resumable,
        "tested.bin",
        pseudo_random(3000, 4),
        1000,
    );
    let missing = endpoint.send(&upload.test_request(2));
    assert_eq!(missing.status, 204);
    assert!(missing.body.is_empty());
    assert_eq!(missing.header("Cache-Control"), Some("no-store"));
    upload_in_order(endpoint, &upload, &[2]);
    let present = endpoint.send(&upload.test_request(2));
    assert_eq!(present.status, 200);
    assert_eq!(present.json()["success"], Value::Bool(true));
    assert_eq!(endpoint.send(&upload.test_request(1)).status, 204);
    let done = upload_in_order(endpoint, &upload, &[1, 3]);
    let file = assert_published(endpoint, &upload, &done);
    // After completion every chunk tests present, and the answer names the file (clients pass
    // the body of whichever request finished last to the page).
    for number in 1..=3 {
        let after = endpoint.send(&upload.test_request(number));
        assert_eq!(after.status, 200);
        assert_eq!(after.json()["complete"], Value::Bool(true));
        assert_eq!(after.json()["file"], Value::from(file.clone()));
    }
}

/// Chunks that continue the upload are appended as they come and their parts removed; a
/// client re-sending one of those (its answer was lost) gets success, and no part is stored
/// again to wait for the completion's cleanup.
fn a_resent_chunk_already_assembled_is_not_stored_again(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::ResumableOctet,
        "resent.bin",
        pseudo_random(4 * 700, 6),
        700,
    );
    let parts = || {
        stored_files(endpoint.temp_dir())
            .into_iter()
            .filter(|path| path.contains("resent.bin.part"))
            .collect::<Vec<_>>()
    };
    upload_in_order(endpoint, &upload, &[1, 2, 3]);
    assert_eq!(parts(), Vec::<String>::new(), "appended parts are removed");
    for number in [1, 2, 1] {
        let again = endpoint.send(&upload.chunk_request(number));
        assert_eq!(again.status, 200, "re-sent chunk {number}");
        assert_eq!(again.json()["success"], Value::Bool(true));
        assert_eq!(again.json()["complete"], Value::Bool(false));
    }
    assert_eq!(parts(), Vec::<String>::new(), "no re-sent part is stored");
    assert_eq!(endpoint.send(&upload.test_request(2)).status, 200);
    let done = upload_in_order(endpoint, &upload, &[4]);
    assert_published(endpoint, &upload, &done);
    assert_no_parts_left(endpoint);
}

fn late_duplicate_recreates_nothing(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::ResumableOctet,
        "late.bin",
        pseudo_random(2048, 5),
        1024,
    );
    let done = upload_all(endpoint, &upload);
    let file = assert_published(endpoint, &upload, &done);
    let before = snapshot(endpoint.upload_dir());
    let temp_before = snapshot(endpoint.temp_dir());
    for number in [1, 2, 1] {
        let again = endpoint.send(&upload.chunk_request(number));
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["file"], Value::from(file.clone()));
    }
    assert_eq!(snapshot(endpoint.upload_dir()), before, "no second copy");
    assert_eq!(
        snapshot(endpoint.temp_dir()),
        temp_before,
        "no part recreated"
    );
}

fn folder_and_unicode_names(endpoint: &dyn Endpoint) {
    let mut upload = Upload::new(
        Client::Flow,
        "übung – 日本語 (1).txt",
        pseudo_random(1500, 6),
        1000,
    );
    upload.relative_path = "Fotos 2026/Ausflug/übung – 日本語 (1).txt".into();
    let response = upload_all(endpoint, &upload);
    assert_eq!(
        assert_published(endpoint, &upload, &response),
        "Fotos 2026/Ausflug/übung – 日本語 (1).txt"
    );
}

fn name_clash_gets_a_free_name(endpoint: &dyn Endpoint) {
    let first = Upload::new(Client::Resumable, "clash.txt", b"first".to_vec(), 1024);
    let mut second = Upload::new(Client::Resumable, "clash.txt", b"second!".to_vec(), 1024);
    second.identifier = "other-id".into();
    assert_eq!(
        assert_published(endpoint, &first, &upload_all(endpoint, &first)),
        "clash.txt"
    );
    assert_eq!(
        assert_published(endpoint, &second, &upload_all(endpoint, &second)),
        "clash (1).txt"
    );
}

fn flow_test_by_post_without_file(endpoint: &dyn Endpoint) {
    let upload = Upload::new(Client::Flow, "posted-test.bin", pseudo_random(100, 8), 1000);
    let request = upload.chunk_request(1);
    // Rebuild the body without the file part, as flow.js does for testMethod: 'POST'.
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(&upload.test_request(1).query).unwrap();
    let mut body = Vec::new();
    for (name, value) in &params {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    let test = TestRequest { body, ..request };
    assert_eq!(endpoint.send(&test).status, 204);
    upload_all(endpoint, &upload);
    assert_eq!(endpoint.send(&test).status, 200);
}

/// Sends `request`, which must be refused with `status` and a JSON reason; the JSON.
pub fn expect_status(
    endpoint: &dyn Endpoint,
    request: &TestRequest,
    status: u16,
    why: &str,
) -> Value {
    let response = endpoint.send(request);
    assert_eq!(
        response.status,
        status,
        "{why}: {}",
        String::from_utf8_lossy(&response.body)
    );
    let json = response.json();
    assert_eq!(json["success"], Value::Bool(false), "{why}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{why}"
    );
    json
}

fn invalid_requests_get_4xx_and_count_nothing(endpoint: &dyn Endpoint) {
    let upload = Upload::new(
        Client::ResumableOctet,
        "invalid.bin",
        pseudo_random(3000, 9),
        1000,
    );
    let good = upload.chunk_request(1);
    let with_query = |query: String| TestRequest {
        query,
        ..good.clone()
    };

    expect_status(
        endpoint,
        &with_query(good.query.replace("resumableIdentifier=", "resumableX=")),
        400,
        "no identifier",
    );
    expect_status(
        endpoint,
        &with_query(
            good.query
                .replace("resumableFilename=invalid.bin", "resumableFilename="),
        ),
        400,
        "empty filename",
    );
    for bad in ["-1", "1.5", "0x10", "", "abc", "99999999999999999999999"] {
        expect_status(
            endpoint,
            &with_query(good.query.replace(
                "resumableTotalSize=3000",
                &format!("resumableTotalSize={bad}"),
            )),
            400,
            bad,
        );
    }
    expect_status(
        endpoint,
        &with_query(
            good.query
                .replace("resumableChunkNumber=1", "resumableChunkNumber=0"),
        ),
        400,
        "chunk 0",
    );
    expect_status(
        endpoint,
        &with_query(
            good.query
                .replace("resumableChunkNumber=1", "resumableChunkNumber=9"),
        ),
        400,
        "past the end",
    );
    expect_status(
        endpoint,
        &with_query(good.query.replace(
            "resumableCurrentChunkSize=1000",
            "resumableCurrentChunkSize=999",
        )),
        400,
        "short inner chunk",
    );

    // Body shorter / longer than declared: a transit problem, retried by resumable.js.
    let short = TestRequest {
        body: good.body[..999].to_vec(),
        ..good.clone()
    };
    expect_status(endpoint, &short, 422, "short body");
    let mut long_body = good.body.clone();
    long_body.push(0);
    let long = TestRequest {
        body: long_body,
        ..good.clone()
    };
    expect_status(endpoint, &long, 422, "long body");

    // Multipart trouble.
    let multipart_upload =
        Upload::new(Client::Flow, "invalid-mp.bin", pseudo_random(3000, 9), 1000);
    let mp = multipart_upload.chunk_request(1);
    let cut = mp.body.len() - 200;
    let truncated = TestRequest {
        body: mp.body[..cut].to_vec(),
        ..mp.clone()
    };
    expect_status(endpoint, &truncated, 422, "truncated multipart");
    let no_boundary = TestRequest {
        content_type: Some("multipart/form-data".into()),
        ..mp.clone()
    };
    expect_status(endpoint, &no_boundary, 400, "no boundary");
    let garbage = TestRequest {
        body: b"not multipart at all".to_vec(),
        ..mp.clone()
    };
    assert!(
        matches!(endpoint.send(&garbage).status, 400 | 422),
        "garbage multipart"
    );
    let mut trailing = mp.body[..mp.body.len() - (BOUNDARY.len() + 6)].to_vec();
    write!(trailing, "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"late\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").unwrap();
    let part_after_file = TestRequest {
        body: trailing,
        ..mp.clone()
    };
    expect_status(endpoint, &part_after_file, 400, "part after the file part");

    // A parameter that contradicts itself between query and form (resumable sends both).
    let resumable = Upload::new(
        Client::Resumable,
        "invalid-r.bin",
        pseudo_random(3000, 9),
        1000,
    );
    let r = resumable.chunk_request(1);
    let contradicting = TestRequest {
        query: r
            .query
            .replace("resumableChunkNumber=1", "resumableChunkNumber=2"),
        ..r
    };
    expect_status(endpoint, &contradicting, 400, "query and form disagree");

    let method = TestRequest {
        method: "DELETE".into(),
        ..good.clone()
    };
    assert_eq!(endpoint.send(&method).status, 405);

    // Nothing was counted: every chunk still tests missing, and no part file exists.
    for u in [&upload, &multipart_upload, &resumable] {
        for number in 1..=3 {
            assert_eq!(
                endpoint.send(&u.test_request(number)).status,
                204,
                "{} {number}",
                u.filename
            );
        }
    }
    // (The upload's folder may exist, empty: removing it would race with a concurrent chunk.)
    for (path, kind) in snapshot(endpoint.temp_dir()) {
        assert!(
            kind == "dir" || !path.contains("invalid"),
            "leftover {path}"
        );
    }
}

fn policy_refusals_are_415(endpoint: &dyn Endpoint) {
    // Default limits: 10 GiB per file, 64 MiB per chunk.
    let upload = Upload::new(
        Client::ResumableOctet,
        "huge.bin",
        pseudo_random(100, 1),
        100,
    );
    let good = upload.chunk_request(1);
    let huge_file = TestRequest {
        query: good
            .query
            .replace("resumableTotalSize=100", "resumableTotalSize=11811160064"),
        ..good.clone()
    };
    let response = endpoint.send(&huge_file);
    assert_eq!(response.status, 415);
    assert_eq!(response.json()["preventRetry"], Value::Bool(true));
    let huge_chunk = TestRequest {
        query: good
            .query
            .replace("resumableChunkSize=100", "resumableChunkSize=134217728"),
        ..good
    };
    assert_eq!(endpoint.send(&huge_chunk).status, 415);
}

fn traversal_names_stay_inside(endpoint: &dyn Endpoint) {
    let outside = endpoint.upload_dir().parent().unwrap().to_path_buf();
    let before_outside: Vec<String> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let cases: [(&str, &str, &str); 6] = [
        ("../../escape-id", "../../escape.txt", "../../escape.txt"),
        ("/etc/passwd", "/etc/passwd", "/etc/passwd"),
        ("..", "..", "../.."),
        ("a\\..\\..\\b", "..\\..\\win.txt", "..\\..\\win.txt"),
        ("%2e%2e%2f", "%2e%2e%2fpct.txt", "%2e%2e%2f%2e%2e%2fpct.txt"),
        (".hidden", ".htaccess", ".config/.htaccess"),
    ];
    for (i, (identifier, filename, relative)) in cases.into_iter().enumerate() {
        let mut upload = Upload::new(Client::Flow, filename, pseudo_random(10, i as u64), 1024);
        upload.identifier = identifier.into();
        upload.relative_path = relative.into();
        let response = upload_all(endpoint, &upload);
        let file = assert_published(endpoint, &upload, &response);
        assert!(
            !file.split('/').any(|c| c == ".." || c.starts_with('.')),
            "{file}"
        );
    }
    let after_outside: Vec<String> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        before_outside, after_outside,
        "nothing written beside the dirs"
    );
}
