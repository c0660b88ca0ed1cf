//! Plain form uploads (RFC 7578: a browser's `<form enctype="multipart/form-data">`, `fetch` with
//! a `FormData`, Dropzone without chunking, Uppy's XHR upload): which file parts are taken and
//! how large each may be, by PHP's rules (`main/rfc1867.c`), the per-file error codes, and the
//! JSON, HTML or redirect answer.
//!
//! The PHP rules kept here: `MAX_FILE_SIZE` is a text field matched case-insensitively, parsed
//! like C's `strtoll` (leading digits; nothing numeric is 0, which means "no limit"), and it
//! applies to the file parts after it; the configured maximum is checked first, so the field
//! can only lower it. A file larger than a limit is refused with size 0.

use serde_json::{json, Value};

use crate::escape::html_escape;
use crate::request::Response;

/// The text field Uppy's XHR upload sends before each file with its folder path (the string
/// `null` when it has none).
pub const RELATIVE_PATH_FIELD: &str = "relativePath";
/// The hidden field of RFC 1867 forms that lowers the size limit of the files after it.
pub const MAX_FILE_SIZE_FIELD: &str = "MAX_FILE_SIZE";

/// Why a file part was not stored, with PHP's `UPLOAD_ERR_*` numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// 1: larger than `RESUMABLE_MAX_FILE_SIZE` (PHP: `upload_max_filesize`).
    TooLarge { max: u64 },
    /// 2: larger than the form's `MAX_FILE_SIZE` field.
    LargerThanForm { max: i64 },
    /// 3: the body ended inside this file.
    Partial,
    /// 4: an empty file input (`filename=""`).
    NoFile,
    /// 5: beyond `RESUMABLE_MAX_FILE_UPLOADS` (PHP has no code 5: it drops such parts unlisted).
    TooMany { max: u32 },
    /// 6: no file could be created to receive it (PHP: no temp dir).
    NoTempFile,
    /// 7: writing, syncing or publishing it failed.
    CantWrite,
    /// 8: the completion hook refused it (PHP: an extension stopped it), with its reason.
    Refused(String),
}

impl FileError {
    pub fn code(&self) -> u8 {
        match self {
            FileError::TooLarge { .. } => 1,
            FileError::LargerThanForm { .. } => 2,
            FileError::Partial => 3,
            FileError::NoFile => 4,
            FileError::TooMany { .. } => 5,
            FileError::NoTempFile => 6,
            FileError::CantWrite => 7,
            FileError::Refused(_) => 8,
        }
    }

    pub fn message(&self) -> String {
        match self {
            FileError::TooLarge { max } => {
                format!("the file is larger than the maximum of {max} bytes")
            }
            FileError::LargerThanForm { max } => {
                format!("the file is larger than the form's MAX_FILE_SIZE of {max} bytes")
            }
            FileError::Partial => "the upload ended inside this file".into(),
            FileError::NoFile => "no file was chosen".into(),
            FileError::TooMany { max } => {
                format!("more than {max} files in one upload; this one was not stored")
            }
            FileError::NoTempFile => "the server could not create a file to receive it".into(),
            FileError::CantWrite => "the server could not write the file".into(),
            FileError::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// What a file part may be: refused outright, or taken with a size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileIntent {
    Skip(FileError),
    Take {
        /// The most bytes it may have.
        max: u64,
        /// What a larger file is reported as.
        over: FileError,
        /// Folders to publish it in (from a `relativePath` field, or from a `folder/name` file
        /// name as Chrome sends for a folder upload).
        relative_path: Option<String>,
    },
}

/// The limits and the form's own fields as they bear on the file parts, in body order.
#[derive(Debug, Clone)]
pub struct FormState {
    max_file_size: u64,
    max_file_uploads: u32,
    /// The latest `MAX_FILE_SIZE` value; 0: none.
    form_max: i64,
    taken: u32,
    relative_path: Option<String>,
}

impl FormState {
    pub fn new(max_file_size: u64, max_file_uploads: u32) -> FormState {
        FormState {
            max_file_size,
            max_file_uploads,
            form_max: 0,
            taken: 0,
            relative_path: None,
        }
    }

    /// A text field of the body (not of the query: PHP reads `MAX_FILE_SIZE` from the body).
    pub fn text_field(&mut self, name: &str, value: &str) {
        if name.eq_ignore_ascii_case(MAX_FILE_SIZE_FIELD) {
            self.form_max = strtoll(value);
        } else if name == RELATIVE_PATH_FIELD {
            self.relative_path = Some(value.to_string()).filter(|v| !v.is_empty() && v != "null");
        }
    }

    /// The next file part, sent with `filename`.
    pub fn file_part(&mut self, filename: &str) -> FileIntent {
        // A relativePath field describes the file part that follows it, and only that one.
        let relative_path = self.relative_path.take();
        if filename.is_empty() {
            return FileIntent::Skip(FileError::NoFile);
        }
        if self.taken >= self.max_file_uploads {
            return FileIntent::Skip(FileError::TooMany {
                max: self.max_file_uploads,
            });
        }
        self.taken += 1;
        let (max, over) = match self.form_max {
            0 => (self.max_file_size, None),
            // PHP compares the size so far with a negative limit: any byte is too many.
            form if form < 0 => (0, Some(form)),
            form if (form as u64) < self.max_file_size => (form as u64, Some(form)),
            _ => (self.max_file_size, None),
        };
        FileIntent::Take {
            max,
            over: match over {
                Some(form) => FileError::LargerThanForm { max: form },
                None => FileError::TooLarge {
                    max: self.max_file_size,
                },
            },
            relative_path: relative_path.or_else(|| Some(filename.to_string())),
        }
    }
}

/// C's `strtoll(text, NULL, 10)`, as PHP parses `MAX_FILE_SIZE`: leading white space, a sign,
/// then as many digits as there are (clamped to the i64 range); no digits is 0.
pub fn strtoll(text: &str) -> i64 {
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for digit in digits.bytes().take_while(u8::is_ascii_digit) {
        let d = i64::from(digit - b'0');
        value = match value.checked_mul(10).and_then(|v| {
            if negative {
                v.checked_sub(d)
            } else {
                v.checked_add(d)
            }
        }) {
            Some(v) => v,
            None if negative => return i64::MIN,
            None => return i64::MAX,
        };
    }
    value
}

/// One file part as the client is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The part's field name.
    pub field: String,
    /// The file name the client sent.
    pub name: String,
    /// The part's Content-Type without parameters, as PHP reports it.
    pub content_type: String,
    /// Where it was stored, relative to the upload dir.
    pub file: Option<String>,
    pub size: u64,
    pub url: Option<String>,
    pub error: Option<FileError>,
}

impl FileReport {
    pub fn new(field: &str, name: &str, content_type: Option<&str>) -> FileReport {
        FileReport {
            field: field.to_string(),
            name: name.to_string(),
            content_type: content_type
                .and_then(|ct| ct.split(';').next())
                .unwrap_or_default()
                .trim()
                .to_string(),
            file: None,
            size: 0,
            url: None,
            error: None,
        }
    }

    /// Marks the file refused. Like PHP, a refused file has size 0.
    pub fn fail(&mut self, error: FileError) {
        self.size = 0;
        self.file = None;
        self.url = None;
        self.error = Some(error);
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "field": self.field,
            "name": self.name,
            "file": self.file,
            "size": self.size,
            "type": self.content_type,
            "error": self.error.as_ref().map_or(0, FileError::code),
            "message": self.error.as_ref().map_or_else(|| "stored".to_string(), FileError::message),
        });
        if let Some(url) = &self.url {
            entry["url"] = json!(url);
        }
        entry
    }
}

/// Every file part of one form upload, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormReport {
    pub files: Vec<FileReport>,
    /// The body ended before the closing boundary.
    pub cut: bool,
}

impl FormReport {
    /// True when the body was whole and every file part was stored.
    pub fn success(&self) -> bool {
        !self.cut && self.files.iter().all(|f| f.error.is_none())
    }

    pub fn stored(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_none()).count()
    }

    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "success": self.success(),
            "files": self.files.iter().map(FileReport::to_json).collect::<Vec<_>>(),
        });
        if self.cut {
            body["error"] = json!("the request body ended before the form did");
        }
        // Uppy's XHR upload sends one file per request and shows the answer's top-level
        // `url` as the file's link.
        if let [only] = self.files.as_slice() {
            if let Some(url) = &only.url {
                body["url"] = json!(url);
            }
        }
        body
    }

    /// The same results as a page for a browser that navigated here by posting the form, with
    /// a link back to the form's page and one on to `continue_to`.
    pub fn to_html(&self, back: Option<&str>, continue_to: Option<&str>) -> String {
        let mut page = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Upload: {stored} of {total} stored</title>\n</head>\n<body>\n\
             <h1>{stored} of {total} files stored</h1>\n<ul id=\"files\">\n",
            stored = self.stored(),
            total = self.files.len(),
        );
        for f in &self.files {
            let name = html_escape(&f.name);
            let code = f.error.as_ref().map_or(0, FileError::code);
            let line = match (&f.error, &f.file) {
                (None, Some(file)) => {
                    let stored = match &f.url {
                        Some(url) => {
                            format!("<a href=\"{}\">{}</a>", html_escape(url), html_escape(file))
                        }
                        None => html_escape(file),
                    };
                    format!("stored as {stored} ({} bytes)", f.size)
                }
                (error, _) => format!(
                    "not stored: {}",
                    html_escape(&error.clone().unwrap_or(FileError::CantWrite).message())
                ),
            };
            page.push_str(&format!(
                "<li data-error=\"{code}\"><strong class=\"name\">{name}</strong>: {line}</li>\n"
            ));
        }
        page.push_str("</ul>\n");
        if self.cut {
            page.push_str("<p>The upload ended before the whole form arrived.</p>\n");
        }
        for (label, url) in [("Back", back), ("Continue", continue_to)] {
            if let Some(url) = url {
                page.push_str(&format!(
                    "<p><a href=\"{}\">{label}</a></p>\n",
                    html_escape(url)
                ));
            }
        }
        page.push_str("</body>\n</html>\n");
        page
    }
}

/// Whether the request's `Accept` ranks `text/html` above JSON: a browser navigating to the
/// answer of a form it posted does; `fetch`, XHR uploaders and clients sending `*/*` do not.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    quality(accept, "text/html") > quality(accept, "application/json")
}

/// The weight `accept` gives `media_type`: that of the most specific range that matches it
/// (RFC 9110 12.5.1), 0 when none does.
fn quality(accept: &str, media_type: &str) -> f32 {
    let (kind, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut pieces = range.split(';');
        let pattern = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let specificity = if pattern == media_type {
            2
        } else if pattern == format!("{kind}/*") {
            1
        } else if pattern == "*/*" {
            0
        } else {
            continue;
        };
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// The answer to a form upload that was read to its end: JSON by default; for a browser that
/// navigated here (`html`), a page listing the results, or a redirect to `redirect` when every
/// file was stored (a page with the failures otherwise, so none goes unnoticed). `referer` is
/// the form's page, linked back to when it is a web address.
pub fn answer(
    report: &FormReport,
    status: u16,
    html: bool,
    redirect: Option<&str>,
    referer: Option<&str>,
) -> Response {
    let response = match (html, redirect) {
        (true, Some(url)) if report.success() && status == 200 => Response::new(303)
            .with_header("Location", url)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_bytes(format!("<a href=\"{}\">See Other</a>\n", html_escape(url)).into_bytes()),
        (true, redirect) => {
            let back = referer.filter(|r| r.starts_with("http://") || r.starts_with("https://"));
            Response::html(status, report.to_html(back, redirect))
        }
        (false, _) => Response::json(status, &report.to_json()),
    };
    response.with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_file_size_is_parsed_as_php_parses_it() {
        for (text, value) in [
            ("1000", 1000),
            ("  42abc", 42),
            ("+7", 7),
            ("-5", -5),
            ("abc", 0),
            ("", 0),
            ("1e3", 1),
            ("99999999999999999999", i64::MAX),
            ("-99999999999999999999", i64::MIN),
        ] {
            assert_eq!(strtoll(text), value, "{text:?}");
        }
    }

    #[test]
    fn the_form_can_only_lower_the_configured_maximum() {
        let mut form = FormState::new(1000, 20);
        let take = |max, over| FileIntent::Take {
            max,
            over,
            relative_path: Some("a".into()),
        };
        assert_eq!(
            form.file_part("a"),
            take(1000, FileError::TooLarge { max: 1000 })
        );
        form.text_field("max_file_size", "10");
        assert_eq!(
            form.file_part("a"),
            take(10, FileError::LargerThanForm { max: 10 })
        );
        form.text_field("MAX_FILE_SIZE", "5000");
        assert_eq!(
            form.file_part("a"),
            take(1000, FileError::TooLarge { max: 1000 })
        );
        form.text_field("MAX_FILE_SIZE", "1000");
        assert_eq!(
            form.file_part("a"),
            take(1000, FileError::TooLarge { max: 1000 }),
            "equal: the configured limit is checked first"
        );
        form.text_field("MAX_FILE_SIZE", "-1");
        assert_eq!(
            form.file_part("a"),
            take(0, FileError::LargerThanForm { max: -1 })
        );
        form.text_field("MAX_FILE_SIZE", "none");
        assert_eq!(
            form.file_part("a"),
            take(1000, FileError::TooLarge { max: 1000 })
        );
    }

    #[test]
    fn empty_inputs_and_the_count_limit() {
        let mut form = FormState::new(1000, 2);
        assert_eq!(form.file_part(""), FileIntent::Skip(FileError::NoFile));
        assert!(matches!(form.file_part("a"), FileIntent::Take { .. }));
        assert!(matches!(form.file_part("b"), FileIntent::Take { .. }));
        assert_eq!(
            form.file_part("c"),
            FileIntent::Skip(FileError::TooMany { max: 2 })
        );
    }

    #[test]
    fn a_relative_path_field_belongs_to_the_next_file_only() {
        let mut form = FormState::new(1000, 20);
        let path = |intent: FileIntent| match intent {
            FileIntent::Take { relative_path, .. } => relative_path,
            FileIntent::Skip(_) => None,
        };
        form.text_field("relativePath", "album/2024/a.jpg");
        assert_eq!(
            path(form.file_part("a.jpg")).as_deref(),
            Some("album/2024/a.jpg")
        );
        assert_eq!(path(form.file_part("b.jpg")).as_deref(), Some("b.jpg"));
        form.text_field("relativePath", "null");
        assert_eq!(
            path(form.file_part("dir/c.jpg")).as_deref(),
            Some("dir/c.jpg")
        );
    }

    #[test]
    fn accept_headers() {
        let browser =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert!(prefers_html(Some(browser)));
        for not_html in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/plain, */*"),
            Some("text/html;q=0.5, application/json"),
            Some("text/*, application/json"),
        ] {
            assert!(!prefers_html(not_html), "{not_html:?}");
        }
        assert!(prefers_html(Some("text/html, application/json;q=0.9")));
        assert!(prefers_html(Some("text/html")));
    }

    fn report() -> FormReport {
        let mut stored = FileReport::new("files[]", "a <b>.txt", Some("text/plain; charset=utf-8"));
        stored.file = Some("a <b>.txt".into());
        stored.size = 5;
        stored.url = Some("/files/a%20%3Cb%3E.txt".into());
        let mut refused = FileReport::new("files[]", "big.bin", None);
        refused.size = 99;
        refused.fail(FileError::TooLarge { max: 10 });
        FormReport {
            files: vec![stored, refused],
            cut: false,
        }
    }

    #[test]
    fn json_answer_lists_every_file() {
        let body = report().to_json();
        assert_eq!(body["success"], false);
        let files = body["files"].as_array().unwrap();
        assert_eq!(files[0]["type"], "text/plain");
        assert_eq!(files[0]["error"], 0);
        assert_eq!(files[0]["url"], "/files/a%20%3Cb%3E.txt");
        assert_eq!(files[1]["error"], 1);
        assert_eq!(files[1]["size"], 0);
        assert_eq!(files[1]["file"], Value::Null);
        assert!(files[1].get("url").is_none());
        assert!(body.get("url").is_none(), "two files: no top-level url");
        let one = FormReport {
            files: report().files[..1].to_vec(),
            cut: false,
        };
        assert_eq!(one.to_json()["url"], "/files/a%20%3Cb%3E.txt");
    }

    #[test]
    fn html_answer_escapes_and_redirect_needs_success() {
        let report = report();
        let page = report.to_html(Some("http://x/form?a=1&b=2"), None);
        assert!(
            page.contains("href=\"http://x/form?a=1&amp;b=2\">Back"),
            "{page}"
        );
        assert!(
            page.contains("a &lt;b&gt;.txt") && !page.contains("<b>"),
            "{page}"
        );
        assert!(page.contains("data-error=\"1\""));
        let response = answer(&report, 200, true, Some("/done"), None);
        assert_eq!(response.status, 200, "a failure is shown, not redirected");
        assert!(String::from_utf8_lossy(response.bytes()).contains("href=\"/done\""));
        let ok = FormReport {
            files: report.files[..1].to_vec(),
            cut: false,
        };
        let response = answer(&ok, 200, true, Some("/done"), None);
        assert_eq!(response.status, 303);
        assert_eq!(response.header("Location"), Some("/done"));
        assert_eq!(answer(&ok, 200, false, Some("/done"), None).status, 200);
        let javascript = answer(&report, 200, true, None, Some("javascript:alert(1)"));
        assert!(!String::from_utf8_lossy(javascript.bytes()).contains("javascript"));
    }
}
