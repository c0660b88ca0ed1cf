//! The service in-process, with no process per request: the shared scenarios, and a table of
//! requests per method with the status, headers and body each must get (the error-to-status
//! mapping included). Process-level behaviour stays in cgi.rs, fastcgi.rs and serve.rs.

mod common;

use std::io::Cursor;

use common::*;
use resumable_cgi::config::Config;
use resumable_cgi::request::{Head, Request};
use resumable_cgi::service::Service;
use serde_json::Value;

/// The service built once, as the FastCGI worker and the dev server build it.
struct InProcess {
    dirs: Dirs,
    service: Service,
}

impl InProcess {
    fn new() -> InProcess {
        InProcess::with(&[])
    }

    fn with(settings: &[(&str, &str)]) -> InProcess {
        let dirs = Dirs::new();
        let mut pairs: Vec<(String, Vec<u8>)> = vec![
            (
                "RESUMABLE_TEMP_DIR".into(),
                dirs.temp.to_string_lossy().into_owned().into_bytes(),
            ),
            (
                "RESUMABLE_UPLOAD_DIR".into(),
                dirs.uploads.to_string_lossy().into_owned().into_bytes(),
            ),
        ];
        for (name, value) in settings {
            pairs.push((name.to_string(), value.as_bytes().to_vec()));
        }
        let config = Config::from_lookup(&|name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
        .expect("valid settings");
        InProcess {
            dirs,
            service: Service::new(config),
        }
    }

    fn send_with_headers(&self, request: &TestRequest, headers: &[(&str, &str)]) -> TestResponse {
        let mut vars = vec![
            ("REQUEST_METHOD".to_string(), request.method.clone()),
            ("QUERY_STRING".to_string(), request.query.clone()),
            ("CONTENT_LENGTH".to_string(), request.body.len().to_string()),
        ];
        if let Some(ct) = &request.content_type {
            vars.push(("CONTENT_TYPE".into(), ct.clone()));
        }
        if let Some(user) = &request.remote_user {
            vars.push(("REMOTE_USER".into(), user.clone()));
        }
        for (name, value) in headers {
            vars.push((
                format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
                value.to_string(),
            ));
        }
        let mut body = Cursor::new(request.body.clone());
        let response = self.service.handle(Request {
            head: Head::from_cgi_vars(vars),
            body: &mut body,
        });
        TestResponse {
            status: response.status,
            headers: response.headers.clone(),
            body: response.bytes().to_vec(),
        }
    }
}

impl Endpoint for InProcess {
    fn send(&self, request: &TestRequest) -> TestResponse {
        self.send_with_headers(request, &[])
    }
    fn temp_dir(&self) -> &std::path::Path {
        &self.dirs.temp
    }
    fn upload_dir(&self) -> &std::path::Path {
        &self.dirs.uploads
    }
}

#[test]
fn in_process_passes_every_scenario() {
    scenarios::run_all(&InProcess::new());
}

/// resumable.js `parameterNamespace` with RESUMABLE_PARAMETER_NAMESPACE set to the same prefix
/// (and every other scenario still passing beside it).
#[test]
fn a_parameter_namespace_is_read_through() {
    // Without the setting, namespaced fields name no chunk: the multipart body is then a plain
    // form upload, answered with the form's per-file list rather than as a chunk.
    let upload = Upload::new(Client::Resumable, "ns.bin", pseudo_random(10, 1), 1000);
    let request = dialects::namespaced_request(&upload, 1, "up_", &[]);
    let answer = InProcess::new().send(&request);
    assert_eq!(answer.status, 200);
    assert!(answer.json()["files"].is_array(), "{:?}", answer.json());
    assert!(answer.json().get("chunk").is_none());
    let endpoint = InProcess::with(&[("RESUMABLE_PARAMETER_NAMESPACE", "up_")]);
    dialects::namespaced_resumable(&endpoint, "up_");
    scenarios::run_all(&endpoint);
}

/// One row of a method's table: a request and what the answer must be.
struct Case {
    name: &'static str,
    request: TestRequest,
    status: u16,
    /// Headers that must be present with exactly these values.
    headers: &'static [(&'static str, &'static str)],
    /// JSON fields that must have exactly these values (empty: no JSON body expected).
    json: Vec<(&'static str, Value)>,
}

fn run_table(endpoint: &InProcess, cases: Vec<Case>) {
    for case in cases {
        let response = endpoint.send(&case.request);
        assert_eq!(
            response.status,
            case.status,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&response.body)
        );
        for (name, value) in case.headers {
            assert_eq!(response.header(name), Some(*value), "{}: {name}", case.name);
        }
        let body = response.json();
        for (field, value) in &case.json {
            assert_eq!(&body[field], value, "{}: {field} in {body}", case.name);
        }
    }
}

fn get(query: &str) -> TestRequest {
    TestRequest {
        method: "GET".into(),
        query: query.into(),
        ..Default::default()
    }
}

fn octet(query: &str, body: &[u8]) -> TestRequest {
    TestRequest {
        method: "POST".into(),
        query: query.into(),
        content_type: Some("application/octet-stream".into()),
        body: body.to_vec(),
        ..Default::default()
    }
}

const ONE_CHUNK: &str = "resumableChunkNumber=1&resumableChunkSize=10&resumableCurrentChunkSize=4&resumableTotalSize=4&resumableIdentifier=t1&resumableFilename=t.txt";

#[test]
fn get_and_head_test_requests() {
    let endpoint = InProcess::new();
    run_table(
        &endpoint,
        vec![
            Case {
                name: "a missing chunk is 204 with no body",
                request: get(ONE_CHUNK),
                status: 204,
                headers: &[("Cache-Control", "no-store")],
                json: vec![],
            },
            Case {
                name: "no dialect is 400 with preventRetry",
                request: get("a=b"),
                status: 400,
                headers: &[("Cache-Control", "no-store")],
                json: vec![("success", false.into()), ("preventRetry", true.into())],
            },
            Case {
                name: "a lying geometry is 400",
                request: get(&ONE_CHUNK.replace("TotalSize=4", "TotalSize=3")),
                status: 400,
                headers: &[],
                json: vec![("success", false.into())],
            },
            Case {
                name: "over the file maximum is 415",
                request: get(&ONE_CHUNK
                    .replace("CurrentChunkSize=4", "CurrentChunkSize=10")
                    .replace("TotalSize=4", "TotalSize=99999999999999")),
                status: 415,
                headers: &[],
                json: vec![("preventRetry", true.into())],
            },
        ],
    );
    let stored = endpoint.send(&octet(ONE_CHUNK, b"abcd"));
    assert_eq!(stored.status, 200);
    let mut head = get(ONE_CHUNK);
    head.method = "HEAD".into();
    run_table(
        &endpoint,
        vec![Case {
            name: "a completed upload answers its file to a later test",
            request: head,
            status: 200,
            headers: &[("Cache-Control", "no-store")],
            json: vec![("complete", true.into()), ("file", "t.txt".into())],
        }],
    );
}

#[test]
fn post_and_put_chunks() {
    let endpoint = InProcess::with(&[("RESUMABLE_MAX_FILE_SIZE", "1K")]);
    let two = ONE_CHUNK
        .replace("TotalSize=4", "TotalSize=14")
        .replace("CurrentChunkSize=4", "CurrentChunkSize=10");
    let mut put = octet(&two, b"0123456789");
    put.method = "PUT".into();
    run_table(
        &endpoint,
        vec![
            Case {
                name: "a short body is 422 (retried) and counts nothing",
                request: octet(ONE_CHUNK, b"abc"),
                status: 422,
                headers: &[],
                json: vec![("preventRetry", false.into())],
            },
            Case {
                name: "a long body is 422",
                request: octet(ONE_CHUNK, b"abcde"),
                status: 422,
                headers: &[],
                json: vec![],
            },
            Case {
                name: "over RESUMABLE_MAX_FILE_SIZE is 415 with preventRetry",
                request: octet(
                    &ONE_CHUNK
                        .replace("CurrentChunkSize=4", "CurrentChunkSize=10")
                        .replace("TotalSize=4", "TotalSize=2000"),
                    b"0123456789",
                ),
                status: 415,
                headers: &[],
                json: vec![("preventRetry", true.into())],
            },
            Case {
                name: "a PUT stores like a POST",
                request: put,
                status: 200,
                headers: &[("Content-Type", "application/json")],
                json: vec![("success", true.into()), ("complete", false.into())],
            },
            Case {
                name: "a truncated multipart body is 422",
                request: TestRequest {
                    method: "POST".into(),
                    content_type: Some("multipart/form-data; boundary=xyz".into()),
                    body: b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb".to_vec(),
                    ..Default::default()
                },
                status: 422,
                headers: &[],
                json: vec![],
            },
            Case {
                name: "multipart without a boundary is 400",
                request: TestRequest {
                    method: "POST".into(),
                    content_type: Some("multipart/form-data".into()),
                    body: b"x".to_vec(),
                    ..Default::default()
                },
                status: 400,
                headers: &[],
                json: vec![],
            },
        ],
    );
    assert!(published_files(&endpoint.dirs.uploads).is_empty());
}

#[test]
fn other_methods() {
    let endpoint = InProcess::new();
    let method = |name: &str| TestRequest {
        method: name.into(),
        ..Default::default()
    };
    run_table(
        &endpoint,
        vec![
            Case {
                name: "OPTIONS lists the methods",
                request: method("OPTIONS"),
                status: 204,
                headers: &[("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
                json: vec![],
            },
            Case {
                name: "TRACE is 405",
                request: method("TRACE"),
                status: 405,
                headers: &[("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
                json: vec![("success", false.into())],
            },
        ],
    );
}

#[test]
fn a_planted_symlink_is_named_as_one() {
    let endpoint = InProcess::new();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), endpoint.dirs.temp.join("t1")).unwrap();
    let response = endpoint.send(&octet(ONE_CHUNK, b"abcd"));
    assert_eq!(response.status, 500);
    assert!(std::fs::read_dir(elsewhere.path())
        .unwrap()
        .next()
        .is_none());
}
