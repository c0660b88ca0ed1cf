//! Client emulation for Dropzone 5/6, Fine Uploader 5.16 and Plupload 2.3 (their fields, file
//! parts and chunking, as clients.md records them), resumable.js with `parameterNamespace`, and
//! the scenarios every transport runs with them (in scenarios::all()).

use serde_json::Value;

use super::scenarios::{assert_no_parts_left, assert_published, expect_status, Scenario};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Dropzone `chunking: true, forceChunking: true` (so one chunk carries the fields too).
    Dropzone,
    /// Fine Uploader, params in the multipart body (the default).
    FineUploader,
    /// Fine Uploader `paramsInBody: false`: params in the query, the file part in the body.
    FineUploaderQuery,
    /// Fine Uploader `paramsInBody: false, forceMultipart: false`: the chunk as the raw body.
    FineUploaderOctet,
    /// Plupload multipart.
    Plupload,
    /// Plupload `multipart: false`: fields in the query, the chunk as the raw body.
    PluploadOctet,
}

pub const ALL_DIALECTS: [Dialect; 6] = [
    Dialect::Dropzone,
    Dialect::FineUploader,
    Dialect::FineUploaderQuery,
    Dialect::FineUploaderOctet,
    Dialect::Plupload,
    Dialect::PluploadOctet,
];

impl Dialect {
    fn is_fine_uploader(self) -> bool {
        matches!(
            self,
            Dialect::FineUploader | Dialect::FineUploaderQuery | Dialect::FineUploaderOctet
        )
    }

    fn is_plupload(self) -> bool {
        matches!(self, Dialect::Plupload | Dialect::PluploadOctet)
    }

    /// Whether chunks may arrive in any order (Plupload 2.x sends them strictly in order).
    pub fn any_order(self) -> bool {
        !self.is_plupload()
    }
}

/// Changes a request's fields (a lying client).
pub type FieldEdit<'a> = &'a dyn Fn(&mut Vec<(String, String)>);

/// One file as one of these clients uploads it: chunks of `chunk_size`, the last smaller.
#[derive(Debug, Clone)]
pub struct ChunkedFile {
    pub dialect: Dialect,
    pub data: Vec<u8>,
    pub name: String,
    /// `dzuuid` / `qquuid`; Plupload sends none.
    pub uuid: String,
    pub chunk_size: u64,
    pub remote_user: Option<String>,
    /// Fields the page adds (Dropzone `params`, Fine Uploader `request.params`, Plupload
    /// `multipart_params`).
    pub extra: Vec<(String, String)>,
}

impl ChunkedFile {
    pub fn new(dialect: Dialect, name: &str, data: Vec<u8>, chunk_size: u64) -> ChunkedFile {
        let digest = sha256_hex(format!("{name}/{}/{dialect:?}", data.len()).as_bytes());
        ChunkedFile {
            dialect,
            uuid: format!(
                "{}-{}-4{}-a{}-{}",
                &digest[..8],
                &digest[8..12],
                &digest[12..15],
                &digest[15..18],
                &digest[18..30]
            ),
            name: name.to_string(),
            data,
            chunk_size,
            remote_user: None,
            extra: Vec::new(),
        }
    }

    pub fn count(&self) -> u64 {
        (self.data.len() as u64).div_ceil(self.chunk_size).max(1)
    }

    /// The bytes of chunk `index` (0-based).
    pub fn bytes(&self, index: u64) -> &[u8] {
        let start = (index * self.chunk_size) as usize;
        let end = (start + self.chunk_size as usize).min(self.data.len());
        &self.data[start..end]
    }

    /// Fine Uploader sends a file of one part unchunked.
    fn unchunked(&self) -> bool {
        self.dialect.is_fine_uploader() && self.count() == 1
    }

    fn fields(&self, index: u64, resume: bool) -> Vec<(String, String)> {
        let pair = |name: &str, value: String| (name.to_string(), value);
        let total = self.data.len() as u64;
        let mut fields = Vec::new();
        match self.dialect {
            Dialect::Dropzone => fields.extend([
                pair("dzuuid", self.uuid.clone()),
                pair("dzchunkindex", index.to_string()),
                pair("dztotalfilesize", total.to_string()),
                pair("dzchunksize", self.chunk_size.to_string()),
                pair("dztotalchunkcount", self.count().to_string()),
                pair("dzchunkbyteoffset", (index * self.chunk_size).to_string()),
            ]),
            _ if self.unchunked() => {
                fields.extend(self.extra.iter().cloned());
                fields.extend([
                    pair("qquuid", self.uuid.clone()),
                    pair("qqfilename", self.name.clone()),
                    pair("qqtotalfilesize", total.to_string()),
                ]);
                return fields;
            }
            Dialect::FineUploader | Dialect::FineUploaderQuery | Dialect::FineUploaderOctet => {
                fields.extend(self.extra.iter().cloned());
                fields.extend([
                    pair("qqpartindex", index.to_string()),
                    pair("qqpartbyteoffset", (index * self.chunk_size).to_string()),
                    pair("qqchunksize", self.bytes(index).len().to_string()),
                    pair("qqtotalparts", self.count().to_string()),
                    pair("qqtotalfilesize", total.to_string()),
                    pair("qqfilename", self.name.clone()),
                ]);
                if resume {
                    fields.push(pair("qqresume", "true".into()));
                }
                fields.push(pair("qquuid", self.uuid.clone()));
                return fields;
            }
            // ceil(size / chunk size): 0 for an empty file
            Dialect::Plupload | Dialect::PluploadOctet => fields.extend([
                pair("name", self.name.clone()),
                pair("chunk", index.to_string()),
                pair("chunks", total.div_ceil(self.chunk_size).to_string()),
            ]),
        }
        fields.extend(self.extra.iter().cloned());
        fields
    }

    /// The request for chunk `index` (0-based), as the client sends it.
    pub fn request(&self, index: u64) -> TestRequest {
        self.request_with(index, false, self.bytes(index))
    }

    /// Fine Uploader's first request of a resumed upload (`qqresume=true`).
    pub fn resumed_request(&self, index: u64) -> TestRequest {
        self.request_with(index, true, self.bytes(index))
    }

    pub fn request_with(&self, index: u64, resume: bool, bytes: &[u8]) -> TestRequest {
        self.request_edited(index, resume, bytes, &|_| {})
    }

    /// The request for chunk `index` with its fields changed by `edit` (a lying client).
    pub fn request_edited(
        &self,
        index: u64,
        resume: bool,
        bytes: &[u8],
        edit: FieldEdit,
    ) -> TestRequest {
        let mut fields = self.fields(index, resume);
        edit(&mut fields);
        let (query, content_type, body) = match self.dialect {
            Dialect::Dropzone => {
                let (ct, body) = multipart(&fields, bytes, &self.name);
                (String::new(), Some(ct), body)
            }
            Dialect::FineUploader => {
                let blob = if self.unchunked() { &self.name } else { "blob" };
                let (ct, body) = multipart_with(&fields, "qqfile", bytes, blob);
                (String::new(), Some(ct), body)
            }
            Dialect::FineUploaderQuery => {
                let blob = if self.unchunked() { &self.name } else { "blob" };
                let (ct, body) = multipart_with(&[], "qqfile", bytes, blob);
                (encode_query(&fields), Some(ct), body)
            }
            Dialect::FineUploaderOctet => {
                let mut fields = fields;
                fields.push(("qqfile".into(), self.name.clone()));
                (
                    encode_query(&fields),
                    Some("application/octet-stream".into()),
                    bytes.to_vec(),
                )
            }
            Dialect::Plupload => {
                let (ct, body) = multipart(&fields, bytes, "blob");
                (String::new(), Some(ct), body)
            }
            Dialect::PluploadOctet => (
                encode_query(&fields),
                Some("application/octet-stream".into()),
                bytes.to_vec(),
            ),
        };
        TestRequest {
            method: "POST".into(),
            query,
            content_type,
            body,
            remote_user: self.remote_user.clone(),
        }
    }

    /// Fine Uploader's chunking success request: url-encoded, no file.
    pub fn finish_request(&self) -> TestRequest {
        let mut fields = self.extra.clone();
        fields.extend([
            ("qquuid".to_string(), self.uuid.clone()),
            ("qqfilename".to_string(), self.name.clone()),
            ("qqtotalfilesize".to_string(), self.data.len().to_string()),
            ("qqtotalparts".to_string(), self.count().to_string()),
        ]);
        TestRequest {
            method: "POST".into(),
            query: String::new(),
            content_type: Some("application/x-www-form-urlencoded".into()),
            body: encode_query(&fields).into_bytes(),
            remote_user: self.remote_user.clone(),
        }
    }
}

impl Chunked for ChunkedFile {
    fn chunk_count(&self) -> u64 {
        self.count()
    }
    fn chunk_request(&self, number: u64) -> TestRequest {
        self.request(number - 1)
    }
    fn sha256(&self) -> String {
        sha256_hex(&self.data)
    }
    fn filename(&self) -> &str {
        &self.name
    }
}

/// resumable.js 1.1.0 multipart with `parameterNamespace: ns` and `query: custom`: every field,
/// the custom ones and the file part are prefixed, in the query and in the form.
pub fn namespaced_request(
    upload: &Upload,
    number: u64,
    ns: &str,
    custom: &[(&str, &str)],
) -> TestRequest {
    let standard: Vec<(String, String)> =
        serde_urlencoded::from_str(&upload.test_request(number).query).unwrap();
    let fields: Vec<(String, String)> = standard
        .into_iter()
        .chain(custom.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .map(|(name, value)| (format!("{ns}{name}"), value))
        .collect();
    let (ct, body) = multipart_with(
        &fields,
        &format!("{ns}file"),
        upload.chunk_bytes(number),
        &upload.filename,
    );
    TestRequest {
        method: "POST".into(),
        query: encode_query(&fields),
        content_type: Some(ct),
        body,
        remote_user: upload.remote_user.clone(),
    }
}

/// A file of `size` pseudo-random bytes in chunks of 1000.
pub fn thousands(dialect: Dialect, name: &str, size: usize, seed: u64) -> ChunkedFile {
    ChunkedFile::new(dialect, name, pseudo_random(size, seed), 1000)
}

/// Sends chunks by 0-based index, each answered 200 with `"success": true`; the last answer.
pub fn send_all(endpoint: &dyn Endpoint, file: &ChunkedFile, order: &[u64]) -> TestResponse {
    let mut last = None;
    for &index in order {
        let what = format!("{:?} chunk {index} of {:?}", file.dialect, file.name);
        last = Some(send_ok(endpoint, &file.request(index), &what));
    }
    last.expect("at least one chunk")
}

/// Sends `request`, which must be answered 200 with `"success": true`.
pub fn send_ok(endpoint: &dyn Endpoint, request: &TestRequest, what: &str) -> TestResponse {
    let response = endpoint.send(request);
    assert_eq!(
        response.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["success"], Value::Bool(true), "{what}");
    response
}

pub fn send_in_order(endpoint: &dyn Endpoint, file: &ChunkedFile) -> TestResponse {
    let order: Vec<u64> = (0..file.count()).collect();
    send_all(endpoint, file, &order)
}

/// The answer names the published file, which has the source's bytes; returns its name.
pub fn assert_stored(
    endpoint: &dyn Endpoint,
    file: &ChunkedFile,
    response: &TestResponse,
) -> String {
    let json = response.json();
    assert_eq!(
        json["complete"],
        Value::Bool(true),
        "{:?}: {json}",
        file.dialect
    );
    assert_eq!(json["size"], Value::from(file.data.len() as u64));
    let name = json["file"].as_str().expect("file name").to_string();
    let stored = std::fs::read(endpoint.upload_dir().join(&name)).expect("published file");
    assert_eq!(
        sha256_hex(&stored),
        sha256_hex(&file.data),
        "bytes of {name}"
    );
    name
}

pub fn all() -> Vec<Scenario> {
    vec![
        ("dialects_every_size", dialects_every_size),
        (
            "dialects_retries_duplicates_and_order",
            dialects_retries_duplicates_and_order,
        ),
        (
            "plupload_chunk_zero_begins_an_upload",
            plupload_chunk_zero_begins_an_upload,
        ),
        (
            "fine_uploader_success_request_and_resume",
            fine_uploader_success_request_and_resume,
        ),
        (
            "dialects_refuse_lies_and_count_nothing",
            dialects_refuse_lies_and_count_nothing,
        ),
        (
            "dialects_hostile_names_stay_inside",
            dialects_hostile_names_stay_inside,
        ),
        (
            "extra_fields_never_change_the_dialect",
            extra_fields_never_change_the_dialect,
        ),
    ]
}

/// 0 bytes, 1 byte, exactly one chunk, one chunk + 1, several chunks with a Unicode name.
fn dialects_every_size(endpoint: &dyn Endpoint) {
    const C: u64 = 1000;
    for (d, dialect) in ALL_DIALECTS.into_iter().enumerate() {
        for (i, size) in [0, 1, C, C + 1, 3 * C + 123].into_iter().enumerate() {
            let name = if i == 4 {
                format!("Grüße {d} – 日本語 ✓.bin")
            } else {
                format!("size-{d}-{size}.bin")
            };
            let file = ChunkedFile::new(dialect, &name, pseudo_random(size as usize, size), C);
            let done = send_in_order(endpoint, &file);
            assert_eq!(assert_stored(endpoint, &file, &done), name);
        }
    }
    assert_no_parts_left(endpoint);
}

fn dialects_retries_duplicates_and_order(endpoint: &dyn Endpoint) {
    for (d, dialect) in ALL_DIALECTS.into_iter().enumerate() {
        let file = thousands(dialect, &format!("retried-{d}.bin"), 5500, 9);
        assert_eq!(file.count(), 6);
        let order: &[u64] = if dialect.any_order() {
            // parallel chunks finish in any order; a retried chunk arrives twice
            &[0, 5, 2, 2, 1, 4, 1, 3]
        } else {
            // Plupload retries a chunk whose answer was lost before it sends the next
            &[0, 0, 1, 2, 2, 3, 4, 5]
        };
        let done = send_all(endpoint, &file, order);
        let name = assert_stored(endpoint, &file, &done);
        assert_eq!(done.json()["completedNow"], Value::Bool(true));
        // Late duplicates (of the last chunk, and of any chunk) change nothing.
        let before = snapshot(endpoint.upload_dir());
        let late: &[u64] = if dialect.is_plupload() {
            &[5, 5, 3]
        } else {
            &[5, 0, 3]
        };
        for &index in late {
            let again = send_all(endpoint, &file, &[index]);
            assert_eq!(again.json()["file"], Value::from(name.clone()));
            assert_eq!(again.json()["completedNow"], Value::Bool(false));
        }
        assert_eq!(snapshot(endpoint.upload_dir()), before, "no second copy");
    }
    // A single-chunk Plupload file sent again after it completed (its answer was lost): the same
    // file, not a second copy.
    let single = ChunkedFile::new(
        Dialect::Plupload,
        "retried-single.txt",
        b"once".to_vec(),
        1000,
    );
    let name = assert_stored(endpoint, &single, &send_in_order(endpoint, &single));
    let before = snapshot(endpoint.upload_dir());
    let again = send_in_order(endpoint, &single);
    assert_eq!(again.json()["file"], Value::from(name));
    assert_eq!(snapshot(endpoint.upload_dir()), before);
    assert_no_parts_left(endpoint);
}

/// Plupload has no upload id: its chunks arrive in order from chunk 0, so chunk 0 begins the
/// file, whatever an earlier upload of the same name and chunk count left.
fn plupload_chunk_zero_begins_an_upload(endpoint: &dyn Endpoint) {
    for dialect in [Dialect::Plupload, Dialect::PluploadOctet] {
        let tag = format!("{dialect:?}").to_lowercase();
        // An upload abandoned after two of four chunks...
        let abandoned = thousands(dialect, &format!("{tag}-again.bin"), 3500, 1);
        send_all(endpoint, &abandoned, &[0, 1]);
        // ... then another file of that name and chunk count: its bytes only.
        let second = thousands(dialect, &format!("{tag}-again.bin"), 3999, 2);
        let done = send_in_order(endpoint, &second);
        assert_eq!(
            assert_stored(endpoint, &second, &done),
            format!("{tag}-again.bin")
        );
        // ... and once more after it completed: a new upload, published beside it.
        let third = thousands(dialect, &format!("{tag}-again.bin"), 3001, 3);
        let done = send_in_order(endpoint, &third);
        assert_eq!(
            assert_stored(endpoint, &third, &done),
            format!("{tag}-again (1).bin")
        );
        // A chunk after 0 for an upload that never began: nothing tells its chunk size or
        // start, so it is refused and nothing is stored.
        let orphan = thousands(dialect, &format!("{tag}-orphan.bin"), 2500, 4);
        for index in [1, 2] {
            expect_status(
                endpoint,
                &orphan.request(index),
                400,
                "chunk before chunk 0",
            );
        }
        let done = send_in_order(endpoint, &orphan);
        assert_stored(endpoint, &orphan, &done);
        // The next chunks are checked against the size chunk 0 set.
        let shifty = thousands(dialect, &format!("{tag}-shifty.bin"), 2500, 5);
        send_all(endpoint, &shifty, &[0]);
        expect_status(
            endpoint,
            &shifty.request_with(1, false, &shifty.data[1000..1999]),
            400,
            "short inner chunk",
        );
        expect_status(
            endpoint,
            &shifty.request_with(2, false, &shifty.data[1000..2001]),
            400,
            "long last chunk",
        );
        let done = send_all(endpoint, &shifty, &[1, 2]);
        assert_stored(endpoint, &shifty, &done);
    }
    assert_no_parts_left(endpoint);
}

fn fine_uploader_success_request_and_resume(endpoint: &dyn Endpoint) {
    let file = thousands(Dialect::FineUploader, "finished.bin", 4200, 6);
    // Nothing stored yet: every part is missing, and the client must start over.
    let nothing = expect_status(endpoint, &file.finish_request(), 409, "finish with nothing");
    assert_eq!(nothing["reset"], Value::Bool(true));
    assert_eq!(nothing["missingParts"], serde_json::json!([0, 1, 2, 3, 4]));
    send_all(endpoint, &file, &[0, 4, 2]);
    let missing = expect_status(
        endpoint,
        &file.finish_request(),
        409,
        "finish with parts missing",
    );
    assert_eq!(missing["reset"], Value::Bool(true));
    assert_eq!(missing["missingParts"], serde_json::json!([1, 3]));
    assert!(
        missing["error"].as_str().unwrap().contains("2, 4"),
        "{missing}"
    );
    // A resumed upload whose parts are here goes on.
    send_ok(endpoint, &file.resumed_request(1), "resumed");
    let done = send_all(endpoint, &file, &[3]);
    let name = assert_stored(endpoint, &file, &done);
    for _ in 0..2 {
        let finished = endpoint.send(&file.finish_request());
        assert_eq!(finished.status, 200);
        assert_eq!(finished.json()["success"], Value::Bool(true));
        assert_eq!(finished.json()["file"], Value::from(name.clone()));
    }
    // A finish request carrying a file is refused.
    let (ct, body) = multipart_with(&[], "qqfile", b"x", "blob");
    let mut request = file.finish_request();
    request.query = String::from_utf8(request.body.clone()).unwrap();
    request.content_type = Some(ct);
    request.body = body;
    expect_status(endpoint, &request, 400, "finish with a file");
    // A resumed upload whose parts are gone (cleaned up): start over, nothing stored.
    let lost = thousands(Dialect::FineUploader, "lost.bin", 3000, 7);
    let json = expect_status(
        endpoint,
        &lost.resumed_request(2),
        409,
        "resume of a lost upload",
    );
    assert_eq!(json["reset"], Value::Bool(true));
    assert_eq!(json["preventRetry"], Value::Bool(false));
    let done = send_in_order(endpoint, &lost);
    assert_stored(endpoint, &lost, &done);
    assert_no_parts_left(endpoint);
}

fn dialects_refuse_lies_and_count_nothing(endpoint: &dyn Endpoint) {
    let dz = thousands(Dialect::Dropzone, "lies-dz.bin", 2500, 8);
    let lie = |file: &ChunkedFile, index: u64, field: &str, value: &str| {
        file.request_edited(index, false, file.bytes(index), &|fields| {
            for (name, v) in fields.iter_mut() {
                if name == field {
                    *v = value.to_string();
                }
            }
        })
    };
    for (field, value, status) in [
        ("dzchunkbyteoffset", "1", 400),
        ("dzchunkindex", "3", 400),
        ("dzchunksize", "0", 400),
        ("dzchunksize", "999", 400),
        ("dztotalfilesize", "-5", 400),
        ("dzuuid", "", 400),
        // the file could never fit in the maximum file size
        ("dztotalchunkcount", "99999999999", 415),
        ("dzchunksize", "134217728", 415),
    ] {
        // (the chunk at offset 0, so that a changed chunk size keeps the offset right)
        let json = expect_status(endpoint, &lie(&dz, 0, field, value), status, field);
        assert_eq!(json["preventRetry"], Value::Bool(true), "{field}");
    }
    // A short or long inner chunk, a last chunk longer than the chunk size: 400, not stored.
    expect_status(
        endpoint,
        &dz.request_with(0, false, &dz.data[..999]),
        400,
        "short inner chunk",
    );
    expect_status(
        endpoint,
        &dz.request_with(2, false, &dz.data[..1001]),
        400,
        "long last chunk",
    );
    // A body cut short in transit: 422, not stored.
    let mut cut = dz.request(0);
    cut.body.truncate(cut.body.len() - 100);
    expect_status(endpoint, &cut, 422, "truncated multipart");
    let fu = thousands(Dialect::FineUploaderOctet, "lies-fu.bin", 2500, 8);
    expect_status(
        endpoint,
        &fu.request_with(1, false, &fu.data[..999]),
        422,
        "body shorter than qqchunksize",
    );
    for (field, value, status) in [
        ("qqpartbyteoffset", "1001", 400),
        ("qqtotalparts", "2", 400),
        ("qqtotalfilesize", "3500", 400),
        ("qqchunksize", "18446744073709551615", 400),
    ] {
        expect_status(endpoint, &lie(&fu, 1, field, value), status, field);
    }
    let huge = fu.request_edited(1, false, fu.bytes(1), &|fields| {
        for (name, value) in fields.iter_mut() {
            match name.as_str() {
                "qqtotalfilesize" => *value = "11811160064".into(),
                "qqtotalparts" => *value = "11811161".into(),
                _ => {}
            }
        }
    });
    expect_status(
        endpoint,
        &huge,
        415,
        "a Fine Uploader file over the maximum",
    );
    let pl = ChunkedFile::new(Dialect::PluploadOctet, "lies-pl.bin", Vec::new(), 1000);
    let mut request = pl.request(0);
    request.query = "name=lies-pl.bin&chunk=0&chunks=99999999999999".into();
    expect_status(endpoint, &request, 415, "too many Plupload chunks");
    // GET is no test request for Dropzone or Plupload.
    let mut get = pl.request(0);
    get.method = "GET".into();
    get.body.clear();
    expect_status(endpoint, &get, 400, "a Plupload GET");
    // Nothing was stored for any of them.
    for (path, kind) in snapshot(endpoint.temp_dir()) {
        assert!(kind == "dir" || !path.contains("lies"), "leftover {path}");
    }
    for file in [dz, fu] {
        let done = send_in_order(endpoint, &file);
        assert_stored(endpoint, &file, &done);
    }
}

fn dialects_hostile_names_stay_inside(endpoint: &dyn Endpoint) {
    let outside = endpoint.upload_dir().parent().unwrap().to_path_buf();
    let list = || {
        let mut names: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = list();
    let hostile = [
        "../../escape.txt",
        "/etc/passwd",
        "..",
        "..\\..\\win.txt",
        ".htaccess",
        "a/../../b.txt",
    ];
    for dialect in ALL_DIALECTS {
        for (i, name) in hostile.into_iter().enumerate() {
            let mut file = ChunkedFile::new(dialect, name, pseudo_random(1500, i as u64), 1000);
            file.uuid = ["../../../id", "/", "..", "a\\..\\b", ".x", "%2e%2e%2f"][i].into();
            let stored = assert_stored(endpoint, &file, &send_in_order(endpoint, &file));
            assert!(
                !stored
                    .split('/')
                    .any(|c| c == ".." || c.starts_with('.') || c.is_empty()),
                "{dialect:?}: {stored}"
            );
        }
    }
    assert_eq!(list(), before, "nothing written beside the dirs");
    assert_no_parts_left(endpoint);
}

/// Fields a page adds whose names another client uses: each request stays its client's.
fn extra_fields_never_change_the_dialect(endpoint: &dyn Endpoint) {
    let common: Vec<(String, String)> = [
        ("name", "page-field"),
        ("chunk", "7"),
        ("chunks", "9"),
        ("identifier", "page-id"),
        ("token", "abc"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, dialect) in ALL_DIALECTS.into_iter().enumerate() {
        let mut file = thousands(dialect, &format!("extra-{i}.bin"), 2100, 3);
        file.extra = common.clone();
        if dialect.is_plupload() {
            // Plupload's own fields are its; its page may add ids of its own.
            file.extra
                .retain(|(k, _)| !["name", "chunk", "chunks"].contains(&k.as_str()));
            file.extra.push(("uuid".into(), "page-uuid".into()));
        }
        let done = send_in_order(endpoint, &file);
        assert_eq!(
            assert_stored(endpoint, &file, &done),
            format!("extra-{i}.bin")
        );
    }
    // resumable.js, flow.js and simple-uploader with `query: {...}` of the same names.
    for (i, client) in ALL_CLIENTS.into_iter().enumerate() {
        let upload = Upload::new(
            client,
            &format!("extra-r{i}.bin"),
            pseudo_random(2100, 4),
            1000,
        );
        let mut last = None;
        for number in 1..=upload.chunk_count() {
            let mut request = upload.chunk_request(number);
            // (simple-uploader's own `identifier` is not an extra field for it)
            let extra: Vec<(String, String)> = common
                .iter()
                .filter(|(k, _)| client != Client::Unprefixed || k != "identifier")
                .cloned()
                .collect();
            let extra = encode_query(&extra);
            request.query = if request.query.is_empty() {
                extra
            } else {
                format!("{}&{extra}", request.query)
            };
            last = Some(send_ok(endpoint, &request, &format!("{client:?}")));
        }
        assert_published(endpoint, &upload, &last.unwrap());
    }
}

/// resumable.js with `parameterNamespace: ns` against an endpoint whose
/// RESUMABLE_PARAMETER_NAMESPACE is `ns`: uploads, with a custom `query` field; a page without
/// the namespace still works beside it.
pub fn namespaced_resumable(endpoint: &dyn Endpoint, ns: &str) {
    let upload = Upload::new(
        Client::Resumable,
        "namespaced.bin",
        pseudo_random(3500, 10),
        1000,
    );
    let custom = [
        ("chunk", "1"),
        ("qquuid", "not-fine-uploader"),
        ("user", "42"),
    ];
    let mut last = None;
    for number in [3, 1, 2, 2] {
        let request = namespaced_request(&upload, number, ns, &custom);
        last = Some(send_ok(endpoint, &request, "namespaced"));
    }
    assert_published(endpoint, &upload, &last.unwrap());
    // The test request carries the namespaced fields in the query.
    let mut test = namespaced_request(&upload, 1, ns, &custom);
    test.method = "GET".into();
    test.body.clear();
    test.content_type = None;
    assert_eq!(endpoint.send(&test).status, 200);
    let plain = Upload::new(
        Client::Flow,
        "not-namespaced.bin",
        pseudo_random(1500, 11),
        1000,
    );
    let done = super::scenarios::upload_all(endpoint, &plain);
    assert_published(endpoint, &plain, &done);
}
