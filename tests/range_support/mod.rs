//! Support for the byte-range suites (tus, blueimp): a request with headers and PATH_INFO, the
//! endpoint it goes to (the service in-process, the binary as CGI, a FastCGI worker), and the
//! tus and blueimp client steps those suites are written in.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use resumable_cgi::config::Config;
use resumable_cgi::request::{Head, Method, Request};
use resumable_cgi::service::Service;

use super::common::fastcgi_client::{cgi_params, Worker};
use super::common::*;

/// The endpoint's URL path (SCRIPT_NAME); tus upload URLs are below it.
pub const SCRIPT: &str = "/upload";

/// One HTTP request as the web server hands it on.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub path_info: Option<String>,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub user: Option<String>,
}

impl Req {
    pub fn new(method: &str) -> Req {
        Req {
            method: method.into(),
            ..Req::default()
        }
    }

    /// A tus request: `Tus-Resumable: 1.0.0` set.
    pub fn tus(method: &str, path_info: Option<&str>) -> Req {
        Req::new(method)
            .path(path_info)
            .header("Tus-Resumable", "1.0.0")
    }

    pub fn path(mut self, path_info: Option<&str>) -> Req {
        self.path_info = path_info.map(str::to_string);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn body(mut self, content_type: &str, body: &[u8]) -> Req {
        self.content_type = Some(content_type.into());
        self.body = body.to_vec();
        self
    }

    pub fn user(mut self, user: &str) -> Req {
        self.user = Some(user.into());
        self
    }

    pub fn query(mut self, query: &str) -> Req {
        self.query = query.into();
        self
    }

    /// The CGI variables beyond those of a [`TestRequest`]: headers and paths.
    pub fn extra_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")),
                    v.clone(),
                )
            })
            .collect();
        vars.push(("SCRIPT_NAME".into(), SCRIPT.into()));
        if let Some(path) = &self.path_info {
            vars.push(("PATH_INFO".into(), path.clone()));
        }
        vars
    }

    pub fn test_request(&self) -> TestRequest {
        TestRequest {
            method: self.method.clone(),
            query: self.query.clone(),
            content_type: self.content_type.clone(),
            body: self.body.clone(),
            remote_user: self.user.clone(),
        }
    }
}

/// Something that answers [`Req`]s over one temp and upload dir.
pub trait Target: Sync {
    fn call(&self, req: &Req) -> TestResponse;
    fn temp(&self) -> &Path;
    fn uploads(&self) -> &Path;
}

/// The service in-process, built once from settings, as a FastCGI worker builds it.
pub struct InProc {
    pub dirs: Dirs,
    pub service: Service,
}

impl InProc {
    pub fn new(settings: &[(&str, &str)]) -> InProc {
        let dirs = Dirs::new();
        let temp = dirs.temp.to_string_lossy().into_owned();
        let uploads = dirs.uploads.to_string_lossy().into_owned();
        let config = Config::from_lookup(&|name| match name {
            "RESUMABLE_TEMP_DIR" => Some(temp.clone().into_bytes()),
            "RESUMABLE_UPLOAD_DIR" => Some(uploads.clone().into_bytes()),
            other => settings
                .iter()
                .find(|(n, _)| *n == other)
                .map(|(_, v)| v.as_bytes().to_vec()),
        })
        .expect("valid settings");
        InProc {
            dirs,
            service: Service::new(config),
        }
    }

    /// Sends `req` with its body read from `body` (one that fails or ends early, say).
    pub fn call_with_body(&self, req: &Req, body: &mut (dyn std::io::Read + Send)) -> TestResponse {
        let mut vars = vec![
            ("REQUEST_METHOD".to_string(), req.method.clone()),
            ("QUERY_STRING".to_string(), req.query.clone()),
            ("CONTENT_LENGTH".to_string(), req.body.len().to_string()),
        ];
        if let Some(ct) = &req.content_type {
            vars.push(("CONTENT_TYPE".into(), ct.clone()));
        }
        if let Some(user) = &req.user {
            vars.push(("REMOTE_USER".into(), user.clone()));
        }
        vars.extend(req.extra_vars());
        let head = Head::from_cgi_vars(vars);
        assert_eq!(head.method, Method::parse(&req.method));
        let response = self.service.handle(Request { head, body });
        TestResponse {
            status: response.status,
            headers: response.headers.clone(),
            body: response.bytes().to_vec(),
        }
    }
}

impl Target for InProc {
    fn call(&self, req: &Req) -> TestResponse {
        self.call_with_body(req, &mut Cursor::new(req.body.clone()))
    }
    fn temp(&self) -> &Path {
        &self.dirs.temp
    }
    fn uploads(&self) -> &Path {
        &self.dirs.uploads
    }
}

/// The binary as a CGI program, one process per request.
pub struct CgiTarget(pub Cgi);

impl CgiTarget {
    pub fn new(settings: &[(&str, &str)]) -> CgiTarget {
        let mut cgi = Cgi::new();
        for (name, value) in settings {
            cgi = cgi.with_env(name, value);
        }
        CgiTarget(cgi)
    }

    pub fn command(&self, req: &Req) -> std::process::Command {
        let mut command = self.0.command(&req.test_request());
        command.envs(req.extra_vars());
        command
    }

    pub fn run(&self, req: &Req) -> CgiRun {
        Cgi::run_command(self.command(req), &req.body)
    }
}

impl Target for CgiTarget {
    fn call(&self, req: &Req) -> TestResponse {
        let run = self.run(req);
        assert_eq!(run.exit_code, Some(0), "CGI exit; stderr: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("-> {}", run.response.status)),
            "one log line with the status: {}",
            run.stderr
        );
        run.response
    }
    fn temp(&self) -> &Path {
        &self.0.dirs.temp
    }
    fn uploads(&self) -> &Path {
        &self.0.dirs.uploads
    }
}

/// A FastCGI worker process.
pub struct FcgiTarget(pub Worker);

impl Target for FcgiTarget {
    fn call(&self, req: &Req) -> TestResponse {
        let extra: Vec<(Vec<u8>, Vec<u8>)> = req
            .extra_vars()
            .into_iter()
            .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
            .collect();
        let test = req.test_request();
        self.0
            .connect()
            .request(1, false, &cgi_params(&test, &extra), &req.body)
            .expect("a FastCGI reply")
            .response()
    }
    fn temp(&self) -> &Path {
        &self.0.dirs.temp
    }
    fn uploads(&self) -> &Path {
        &self.0.dirs.uploads
    }
}

/// Sends `req` and checks its status; answers the response for further checks.
pub fn expect_status(target: &dyn Target, what: &str, req: &Req, status: u16) -> TestResponse {
    let response = target.call(req);
    assert_eq!(
        response.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&response.body)
    );
    response
}

// ---------------------------------------------------------------------------- tus client steps

pub fn b64(text: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `filename <b64>,...` from pairs, as tus-js-client writes `Upload-Metadata`.
pub fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", b64(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn creation(length: u64, meta: &[(&str, &str)]) -> Req {
    let req = Req::tus("POST", None).header("Upload-Length", &length.to_string());
    match meta.is_empty() {
        true => req,
        false => req.header("Upload-Metadata", &metadata(meta)),
    }
}

pub fn patch(path: &str, offset: u64, bytes: &[u8]) -> Req {
    Req::tus("PATCH", Some(path))
        .header("Upload-Offset", &offset.to_string())
        .body("application/offset+octet-stream", bytes)
}

pub fn head(path: &str) -> Req {
    Req::tus("HEAD", Some(path))
}

/// The PATH_INFO of the upload a creation answer's `Location` names.
pub fn upload_path(response: &TestResponse) -> String {
    let location = response
        .header("Location")
        .unwrap_or_else(|| panic!("no Location in {} {:?}", response.status, response.headers));
    let path = location
        .strip_prefix(SCRIPT)
        .unwrap_or_else(|| panic!("Location {location:?} is not below {SCRIPT}"));
    path.to_string()
}

/// Creates an upload and answers its PATH_INFO.
pub fn create(target: &dyn Target, length: u64, meta: &[(&str, &str)]) -> String {
    let response = target.call(&creation(length, meta));
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    upload_path(&response)
}

/// The offset a HEAD reports.
pub fn offset_of(target: &dyn Target, path: &str) -> u64 {
    let response = target.call(&head(path));
    assert_eq!(response.status, 200, "HEAD {path}: {:?}", response.headers);
    response
        .header("Upload-Offset")
        .and_then(|v| v.parse().ok())
        .expect("Upload-Offset")
}

/// Uploads `data` in PATCHes of `piece` bytes; answers the last PATCH's answer.
pub fn upload_all(target: &dyn Target, path: &str, data: &[u8], piece: usize) -> TestResponse {
    let mut offset = 0;
    let mut last = None;
    for bytes in data.chunks(piece.max(1)) {
        let response = target.call(&patch(path, offset as u64, bytes));
        assert_eq!(
            response.status, 204,
            "PATCH at {offset}: {:?}",
            response.headers
        );
        offset += bytes.len();
        assert_eq!(
            response.header("Upload-Offset"),
            Some(offset.to_string().as_str())
        );
        last = Some(response);
    }
    last.expect("some data")
}

/// The published file the answer's `Upload-Complete-File` names, read back.
pub fn published(target: &dyn Target, response: &TestResponse) -> (String, Vec<u8>) {
    let encoded = response
        .header("Upload-Complete-File")
        .unwrap_or_else(|| panic!("no Upload-Complete-File in {:?}", response.headers));
    let decoded = resumable_cgi::escape::percent_decode(encoded).expect("percent-encoded");
    let relative = String::from_utf8(decoded).expect("UTF-8 path");
    let bytes = std::fs::read(target.uploads().join(&relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    (relative, bytes)
}

/// Regular files left in the temp dir (state, data and records of uploads).
pub fn temp_files(target: &dyn Target) -> Vec<String> {
    stored_files(target.temp())
}

// ---------------------------------------------------------------------------- blueimp steps

/// One blueimp chunk: `Content-Range` and `Content-Disposition` headers, the bytes in the
/// `files[]` part of a multipart body (or raw when `multipart` is false).
pub fn blueimp_chunk(name: &str, start: u64, bytes: &[u8], total: u64, multipart: bool) -> Req {
    let last = start + bytes.len() as u64 - 1;
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let req = Req::new("POST")
        .header("Content-Range", &format!("bytes {start}-{last}/{total}"))
        .header(
            "Content-Disposition",
            &format!("attachment; filename=\"{encoded}\""),
        );
    if !multipart {
        return req.body("application/octet-stream", bytes);
    }
    let boundary = "----blueimpboundary7MA4YWxk";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nx\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files[]\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            name.replace('"', "%22")
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    req.body(&format!("multipart/form-data; boundary={boundary}"), &body)
}

/// The resume request of blueimp's recipe.
pub fn blueimp_resume(name: &str) -> Req {
    Req::new("GET").query(&serde_urlencoded::to_string([("file", name)]).unwrap())
}
