//! Streaming multipart/form-data intake, one part at a time: text fields come back whole
//! (bounded), each file part as a reader of its bytes, and nothing is buffered beyond one read.
//!
//! The reader is our own (RFC 7578 over RFC 2046 section 5.1.1). The body is scanned for the
//! delimiter `CRLF--boundary` with `memchr::memmem`; file data is read from the body straight
//! into the consumer's buffer and scanned there, so a file byte is copied once, by the kernel,
//! as for an octet body. Only the bytes that arrived in the same read as part headers, and a
//! tail shorter than the delimiter that might begin one, pass through the reader's own buffer.
//!
//! Answers to malformed bodies (kept from the multer-based reader this replaces, and pinned by
//! tests/corpus): a body that ends before the close delimiter, a delimiter followed by anything
//! but transport padding and CRLF (LF-only line ends included: browsers always send CRLF), and
//! a body without any delimiter are `Incomplete`; bad part headers, more than
//! [`MAX_PART_HEADERS`] of them, and every bound below are `Malformed`; past the body limit,
//! `TooLarge`. Whatever follows the close delimiter (the epilogue) is never read.

use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use memchr::memmem;

use super::params::Params;

/// The form field that carries the chunk bytes (the clients' `fileParameterName` default).
pub const FILE_FIELD: &str = "file";
/// Largest text field accepted; parameters are short.
pub const MAX_TEXT_FIELD: u64 = 64 * 1024;
/// Most text fields accepted; the clients send about ten.
pub const MAX_FIELDS: usize = 256;
/// Most bytes of everything but file data (preamble, delimiters, part headers, text fields) in
/// one body. A part's header block is held whole while it is parsed, so this also bounds the
/// reader's buffer.
pub const MAX_FRAMING: u64 = 1 << 20;
/// Most header lines in one part (browsers send two or three).
pub const MAX_PART_HEADERS: usize = 32;
/// Longest boundary RFC 2046 allows; it also bounds the tail kept between reads.
const MAX_BOUNDARY: usize = 70;
const READ_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub enum MultipartError {
    /// No usable boundary in the Content-Type.
    NoBoundary,
    /// The body ended before the multipart stream did (client gone, or a short body).
    Incomplete(String),
    /// Structurally wrong: bad headers, a part after the file part, a field too large...
    Malformed(String),
    /// The whole body exceeded the configured bound.
    TooLarge(u64),
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::NoBoundary => write!(f, "multipart Content-Type without a boundary"),
            MultipartError::Incomplete(why) => write!(f, "multipart body ended early: {why}"),
            MultipartError::Malformed(why) => write!(f, "malformed multipart body: {why}"),
            MultipartError::TooLarge(limit) => {
                write!(f, "multipart body larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for MultipartError {}

fn incomplete_stream() -> MultipartError {
    MultipartError::Incomplete("incomplete multipart stream".into())
}

pub fn is_multipart(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    })
}

/// Most file parts one body may carry: each is listed in a form upload's answer, so their
/// number is bounded like the number of text fields.
pub const MAX_FILE_PARTS: usize = 1000;

/// A multipart body read one part at a time. Text fields come back whole (bounded); a file part
/// comes back as a reader of exactly its bytes, which must be finished or dropped before the
/// next part is asked for.
pub struct MultipartReader<'r> {
    scanner: Shared<'r>,
    fields: usize,
    files: usize,
}

/// One part of a multipart body.
pub enum Part<'r> {
    /// A part without a file name, read whole (at most [`MAX_TEXT_FIELD`] bytes).
    Text { name: String, value: String },
    /// A part with a `filename` attribute (or named [`FILE_FIELD`]).
    File(Box<FilePart<'r>>),
}

impl<'r> MultipartReader<'r> {
    /// Starts reading `body`, which may carry at most `limit` bytes in all.
    pub fn new(
        body: &'r mut (dyn Read + Send),
        content_type: &str,
        limit: u64,
    ) -> Result<MultipartReader<'r>, MultipartError> {
        let boundary = parse_boundary(content_type).ok_or(MultipartError::NoBoundary)?;
        Ok(MultipartReader {
            scanner: Shared(Arc::new(Mutex::new(Scanner::new(body, &boundary, limit)))),
            fields: 0,
            files: 0,
        })
    }

    /// Lowers the bound on the whole body once the flow that reads it is known (a chunk may
    /// carry less than a form). Bytes already read count: past it already, the body is too
    /// large now.
    pub fn set_limit(&self, limit: u64) -> Result<(), MultipartError> {
        let mut scanner = self.scanner.lock();
        scanner.limit = limit;
        if scanner.read > limit {
            return Err(scanner.fail(MultipartError::TooLarge(limit)));
        }
        Ok(())
    }

    /// The next part, or `None` after the closing boundary.
    pub fn next_part(&mut self) -> Result<Option<Part<'r>>, MultipartError> {
        let mut scanner = self.scanner.lock();
        let Some(headers) = scanner.next_headers()? else {
            return Ok(None);
        };
        let name = headers.name.unwrap_or_default();
        // The clients name their file part differently (`file`, `qqfile`, `files[]`); a part
        // that carries a file name is a file whatever its name.
        if name == FILE_FIELD || headers.filename.is_some() {
            self.files += 1;
            if self.files > MAX_FILE_PARTS {
                return Err(scanner.fail(MultipartError::Malformed(format!(
                    "more than {MAX_FILE_PARTS} file parts"
                ))));
            }
            let part = scanner.part;
            drop(scanner);
            return Ok(Some(Part::File(Box::new(FilePart {
                name,
                filename: headers.filename,
                content_type: headers.content_type,
                scanner: self.scanner.clone(),
                part,
                error: None,
            }))));
        }
        self.fields += 1;
        if self.fields > MAX_FIELDS {
            return Err(scanner.fail(MultipartError::Malformed(format!(
                "more than {MAX_FIELDS} form fields"
            ))));
        }
        let value = scanner.read_text(&name)?;
        Ok(Some(Part::Text { name, value }))
    }

    /// Reads text fields into `params` up to the first file part, which it returns (`None`
    /// when the body has none).
    pub fn read_fields(
        &mut self,
        params: &mut Params,
    ) -> Result<Option<FilePart<'r>>, MultipartError> {
        loop {
            match self.next_part()? {
                None => return Ok(None),
                Some(Part::Text { name, value }) => params.push(name, value),
                Some(Part::File(file)) => return Ok(Some(*file)),
            }
        }
    }

    /// For a flow that takes exactly one file, the last part (a chunk): `on_file` reads `file`;
    /// what it returns comes back once the rest of the body has been checked to end properly
    /// (nothing may follow the file part).
    pub fn take_only_file<T, E>(
        &mut self,
        mut file: FilePart<'r>,
        on_file: impl FnOnce(&mut dyn Read) -> Result<T, E>,
    ) -> Result<T, IntakeError<E>> {
        let outcome = on_file(&mut file);
        if let Some(e) = file.take_error() {
            return Err(IntakeError::Multipart(e));
        }
        let outcome = outcome.map_err(IntakeError::File)?;
        // Drains what the consumer left of the part (nothing, when it read to the end), so
        // that a truncated part is noticed here and not taken for a whole one.
        file.finish()?;
        match self.next_part()? {
            None => Ok(outcome),
            Some(_) => Err(IntakeError::Multipart(MultipartError::Malformed(format!(
                "a part follows the {FILE_FIELD:?} part, which must be the last"
            )))),
        }
    }
}

/// Reads a multipart body that carries at most one file part, the last. Text fields are
/// appended to `params`. When the file part starts (the part named `file`, or the first with a
/// `filename` attribute), `on_file` gets the params gathered so far and a reader of exactly
/// that part's bytes; what it returns comes back once the rest of the body has been checked to
/// end properly (nothing may follow the file part). Without a file part, `Ok(None)`.
pub fn read_multipart<T, E>(
    body: &mut (dyn Read + Send),
    content_type: &str,
    limit: u64,
    params: &mut Params,
    on_file: impl FnOnce(&Params, &mut dyn Read) -> Result<T, E>,
) -> Result<Option<T>, IntakeError<E>> {
    let mut reader = MultipartReader::new(body, content_type, limit)?;
    match reader.read_fields(params)? {
        None => Ok(None),
        Some(file) => {
            // Some clients name the file only in the part's `filename` attribute.
            params.set_file_name(file.filename());
            reader
                .take_only_file(file, |f| on_file(params, f))
                .map(Some)
        }
    }
}

/// A failure of the multipart structure, or of the consumer of the file part.
#[derive(Debug)]
pub enum IntakeError<E> {
    Multipart(MultipartError),
    File(E),
}

impl<E> From<MultipartError> for IntakeError<E> {
    fn from(e: MultipartError) -> Self {
        IntakeError::Multipart(e)
    }
}

/// The scanner, shared by the reader and the file part it handed out (one at a time uses it;
/// the lock is never contended).
struct Shared<'r>(Arc<Mutex<Scanner<'r>>>);

impl<'r> Shared<'r> {
    fn lock(&self) -> MutexGuard<'_, Scanner<'r>> {
        // A panic while it was held leaves nothing half-updated that matters more than the
        // request already lost.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn clone(&self) -> Shared<'r> {
        Shared(Arc::clone(&self.0))
    }
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type: a token or a quoted
/// string of 1 to 70 characters (RFC 2046 section 5.1.1). `None` for any other media type, a
/// missing, empty or longer boundary, or a parameter list that does not parse.
fn parse_boundary(content_type: &str) -> Option<String> {
    let (media, mut rest) = match content_type.find(';') {
        Some(at) => (&content_type[..at], &content_type[at..]),
        None => (content_type, ""),
    };
    if !media.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let mut boundary = None;
    while let Some(after) = rest.strip_prefix(';') {
        let after = after.trim_start_matches([' ', '\t']);
        if after.is_empty() {
            break;
        }
        let eq = after.find('=')?;
        let name = after[..eq].trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        let value_text = after[eq + 1..].trim_start_matches([' ', '\t']);
        let (value, tail) = if let Some(quoted) = value_text.strip_prefix('"') {
            let (value, used) = unquote(quoted.as_bytes())?;
            (value, &quoted[used..])
        } else {
            let end = value_text.find(';').unwrap_or(value_text.len());
            let token = value_text[..end].trim_end_matches([' ', '\t']);
            if token.is_empty() || !token.bytes().all(is_tchar) {
                return None;
            }
            (token.as_bytes().to_vec(), &value_text[end..])
        };
        rest = tail.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(';') {
            return None;
        }
        if name.eq_ignore_ascii_case("boundary") && boundary.is_none() {
            boundary = Some(value);
        }
    }
    let boundary = String::from_utf8(boundary?).ok()?;
    let fits = (1..=MAX_BOUNDARY).contains(&boundary.len());
    (fits && !boundary.bytes().any(|b| b.is_ascii_control())).then_some(boundary)
}

/// The content of a quoted string whose opening quote is already consumed, with quoted pairs
/// undone, and how many bytes it took (the closing quote included).
fn unquote(text: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut value = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => return Some((value, i + 1)),
            b'\\' if i + 1 < text.len() => {
                value.push(text[i + 1]);
                i += 2;
            }
            b => {
                value.push(b);
                i += 1;
            }
        }
    }
    None
}

/// RFC 9110 `tchar`: the characters of a token (header names, parameter names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the reader keeps of a part's headers.
struct PartHeaders {
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
}

/// Parses a part's header block (the lines between the delimiter line and the empty line, the
/// last line's CRLF excluded). Names are case-insensitive; a repeated header's last value
/// counts. A bare LF also ends a line, as HTTP parsers accept; anything else outside the
/// header grammar is malformed.
fn parse_part_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let bad = |why: &str| MultipartError::Malformed(format!("bad part header: {why}"));
    let mut disposition = None;
    let mut content_type = None;
    let mut count = 0;
    let lines = block
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    for line in lines.filter(|_| !block.is_empty()) {
        count += 1;
        if count > MAX_PART_HEADERS {
            return Err(MultipartError::Malformed(format!(
                "more than {MAX_PART_HEADERS} headers in one part"
            )));
        }
        let colon = memchr::memchr(b':', line).ok_or_else(|| bad("a line without a colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(bad("not a header name"));
        }
        let value = line[colon + 1..].trim_ascii();
        if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err(bad("a control character in a value"));
        }
        if name.eq_ignore_ascii_case(b"content-disposition") {
            disposition = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let (name, filename) = disposition.map(disposition_names).unwrap_or_default();
    Ok(PartHeaders {
        name,
        filename,
        content_type,
    })
}

/// `name` and the file name of a Content-Disposition value. Parameter names are
/// case-insensitive and the first of a repeated one counts. Values are a token or a quoted
/// string in which only `\"` is an escape (browsers do not escape backslashes, and Windows
/// paths keep theirs); percent-escapes (`%22`) and encoded words (`=?UTF-8?Q?...?=`) are kept
/// as sent, as PHP keeps them. Bytes that are not UTF-8 become replacement characters, so a
/// file name in another charset still makes a file part. `filename*` (RFC 5987, which RFC 7578
/// forbids but some clients send) counts only without a plain `filename`, which is what
/// browsers send and PHP reads.
fn disposition_names(value: &[u8]) -> (Option<String>, Option<String>) {
    let (mut name, mut filename, mut extended) = (None, None, None);
    let mut rest = match memchr::memchr(b';', value) {
        Some(at) => &value[at..],
        None => return (None, None),
    };
    while let Some(after) = rest.strip_prefix(b";") {
        let after = after.trim_ascii_start();
        let Some(eq) = memchr::memchr(b'=', after) else {
            break;
        };
        let key = after[..eq].trim_ascii();
        let text = after[eq + 1..].trim_ascii_start();
        let (raw, tail): (Vec<u8>, &[u8]) = match text.strip_prefix(b"\"") {
            Some(quoted) => match closing_quote(quoted) {
                Some(end) => (unescape_quotes(&quoted[..end]), &quoted[end + 1..]),
                // An unterminated quoted value: the rest of the line.
                None => (quoted.to_vec(), &[]),
            },
            None => {
                let end = memchr::memchr(b';', text).unwrap_or(text.len());
                (text[..end].trim_ascii().to_vec(), &text[end..])
            }
        };
        let slot = if key.eq_ignore_ascii_case(b"name") {
            &mut name
        } else if key.eq_ignore_ascii_case(b"filename") {
            &mut filename
        } else if key.eq_ignore_ascii_case(b"filename*") {
            &mut extended
        } else {
            &mut None
        };
        if slot.is_none() {
            *slot = Some(raw);
        }
        rest = match memchr::memchr(b';', tail) {
            Some(at) => &tail[at..],
            None => &[],
        };
    }
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let filename = filename
        .map(text)
        .or_else(|| extended.and_then(|value| decode_ext_value(&value)));
    (name.map(text), filename)
}

/// Where a quoted value ends: the first `"` that is not preceded by a backslash.
fn closing_quote(quoted: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr(b'"', &quoted[from..])?;
        if at == 0 || quoted[at - 1] != b'\\' {
            return Some(at);
        }
        from = at + 1;
    }
}

fn unescape_quotes(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'\\' && value.get(i + 1) == Some(&b'"') {
            i += 1;
        }
        out.push(value[i]);
        i += 1;
    }
    out
}

/// An RFC 5987 `ext-value` (`charset'language'percent-encoded`): UTF-8 or ISO-8859-1.
fn decode_ext_value(value: &[u8]) -> Option<String> {
    let mut fields = value.splitn(3, |&b| b == b'\'');
    let charset = fields.next()?;
    let _language = fields.next()?;
    let encoded = fields.next()?;
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match encoded[i] {
            b'%' if i + 2 < encoded.len() => {
                let (hi, lo) = (hex(encoded[i + 1])?, hex(encoded[i + 2])?);
                bytes.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'%' => return None,
            b => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    if charset.eq_ignore_ascii_case(b"utf-8") {
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        Some(bytes.iter().map(|&b| b as char).collect())
    } else {
        None
    }
}

/// Where the scanner stands in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first delimiter.
    Preamble,
    /// Right after a delimiter's `--boundary`: the close delimiter or a part follows.
    Delimiter,
    /// Inside a part's data.
    Data,
    /// After the close delimiter.
    End,
}

/// The body, its unconsumed bytes (`buf[pos..end]`) and the position in the multipart grammar.
struct Scanner<'r> {
    body: &'r mut (dyn Read + Send),
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Bytes read from the body, against `limit`.
    read: u64,
    limit: u64,
    /// Bytes consumed that were not file or skipped data, against [`MAX_FRAMING`].
    framing: u64,
    /// `CRLF--boundary`; the first delimiter is this without its CRLF.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    stage: Stage,
    /// Number of the current part (1-based) and its name, for messages.
    part: u64,
    part_name: String,
    /// The first failure: every later call reports it again, so a broken body never reads as
    /// ended.
    failed: Option<MultipartError>,
}

impl<'r> Scanner<'r> {
    fn new(body: &'r mut (dyn Read + Send), boundary: &str, limit: u64) -> Scanner<'r> {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        let finder = memmem::Finder::new(&delimiter).into_owned();
        Scanner {
            body,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            read: 0,
            limit,
            framing: 0,
            delimiter,
            finder,
            stage: Stage::Preamble,
            part: 0,
            part_name: String::new(),
            failed: None,
        }
    }

    fn fail(&mut self, error: MultipartError) -> MultipartError {
        self.failed = Some(error.clone());
        error
    }

    fn check(&self) -> Result<(), MultipartError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn window(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// One read of the body into `dst`, counted against the limit; 0 at its end.
    fn read_body(&mut self, dst: &mut [u8]) -> Result<usize, MultipartError> {
        if self.eof {
            return Ok(0);
        }
        loop {
            match self.body.read(dst) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.read += n as u64;
                    if self.read > self.limit {
                        return Err(self.fail(MultipartError::TooLarge(self.limit)));
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("failed to read stream: {e}");
                    return Err(self.fail(MultipartError::Incomplete(why)));
                }
            }
        }
    }

    /// Appends one read to the window; 0 at the body's end. The window is at most a header
    /// block (bounded by [`MAX_FRAMING`]) or a delimiter's length when this is called, so the
    /// buffer stays bounded.
    fn fill(&mut self) -> Result<usize, MultipartError> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < self.end + READ_SIZE {
            self.buf.resize(self.end + READ_SIZE, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.read_body(&mut buf[self.end..self.end + READ_SIZE]);
        self.buf = buf;
        let n = read?;
        self.end += n;
        Ok(n)
    }

    /// Puts bytes read past the data (into the consumer's buffer) back in front; the window
    /// is empty when this is called.
    fn stash(&mut self, bytes: &[u8]) {
        if self.buf.len() < bytes.len() {
            self.buf.resize(bytes.len(), 0);
        }
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.pos = 0;
        self.end = bytes.len();
    }

    fn consume_framing(&mut self, n: usize) -> Result<(), MultipartError> {
        self.pos += n;
        self.framing += n as u64;
        self.check_framing(0)
    }

    /// An error once the framing consumed plus `held` (bytes of it still in the window) pass
    /// [`MAX_FRAMING`].
    fn check_framing(&mut self, held: usize) -> Result<(), MultipartError> {
        if self.framing + held as u64 > MAX_FRAMING {
            return Err(self.fail(MultipartError::Malformed(format!(
                "more than {MAX_FRAMING} bytes of part headers and fields"
            ))));
        }
        Ok(())
    }

    fn ended_early(&mut self) -> MultipartError {
        let why = format!("field {:?} received with incomplete data", self.part_name);
        self.fail(MultipartError::Incomplete(why))
    }

    /// The next part's headers, the scanner left at the start of its data; `None` after the
    /// close delimiter.
    fn next_headers(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        self.check()?;
        loop {
            match self.stage {
                Stage::End => return Ok(None),
                // The rest of a file part its reader left.
                Stage::Data => self.skip_data()?,
                Stage::Preamble => self.skip_preamble()?,
                Stage::Delimiter => {
                    if !self.after_delimiter()? {
                        self.stage = Stage::End;
                        return Ok(None);
                    }
                    let headers = self.header_block()?;
                    self.stage = Stage::Data;
                    self.part += 1;
                    self.part_name = headers.name.clone().unwrap_or_default();
                    return Ok(Some(headers));
                }
            }
        }
    }

    /// Skips to just past the first `--boundary`, wherever it is (the preamble may be
    /// anything, even without a line end before the delimiter).
    fn skip_preamble(&mut self) -> Result<(), MultipartError> {
        let dash = self.delimiter.len() - 2;
        loop {
            let window = self.window();
            if let Some(at) = memmem::find(window, &self.delimiter[2..]) {
                self.consume_framing(at + dash)?;
                self.stage = Stage::Delimiter;
                return Ok(());
            }
            let skip = window.len().saturating_sub(dash - 1);
            self.consume_framing(skip)?;
            if self.fill()? == 0 {
                return Err(self.fail(incomplete_stream()));
            }
        }
    }

    /// After `--boundary`: `false` for the close delimiter (`--`), `true` once transport
    /// padding (spaces and tabs) is consumed and the CRLF that ends the delimiter line is next
    /// (left in the window: it may begin the empty line of an empty header block).
    fn after_delimiter(&mut self) -> Result<bool, MultipartError> {
        while self.window().len() < 2 {
            if self.fill()? == 0 {
                return Err(self.fail(incomplete_stream()));
            }
        }
        if self.window().starts_with(b"--") {
            self.consume_framing(2)?;
            return Ok(false);
        }
        loop {
            let window = self.window();
            let padding = window.iter().position(|&b| b != b' ' && b != b'\t');
            let (skip, line_end) = match padding {
                Some(at) if window.len() >= at + 2 => (at, Some(&window[at..at + 2] == b"\r\n")),
                Some(at) if window[at] != b'\r' => (at, Some(false)),
                Some(at) => (at, None),
                None => (window.len(), None),
            };
            match line_end {
                Some(true) => {
                    self.consume_framing(skip)?;
                    return Ok(true);
                }
                Some(false) => return Err(self.fail(incomplete_stream())),
                None => self.consume_framing(skip)?,
            }
            if self.fill()? == 0 {
                return Err(self.fail(incomplete_stream()));
            }
        }
    }

    /// Reads and parses a part's header block; the window starts with the delimiter line's
    /// CRLF and is left at the part's data.
    fn header_block(&mut self) -> Result<PartHeaders, MultipartError> {
        let mut from = 0;
        loop {
            let window = self.window();
            if let Some(at) = memmem::find(&window[from..], b"\r\n\r\n") {
                let at = from + at;
                let block = if at == 0 { &[][..] } else { &window[2..at] };
                let headers = parse_part_headers(block);
                let headers = headers.map_err(|e| self.fail(e))?;
                self.consume_framing(at + 4)?;
                return Ok(headers);
            }
            from = window.len().saturating_sub(3);
            self.check_framing(window.len())?;
            if self.fill()? == 0 {
                return Err(self.fail(incomplete_stream()));
            }
        }
    }

    /// How many bytes at the window's start are data, and whether the delimiter follows
    /// them. Reads when the window holds nothing that can be decided; at the body's end
    /// without a delimiter, the part is incomplete.
    fn scan_data(&mut self) -> Result<(usize, bool), MultipartError> {
        loop {
            let window = self.window();
            if let Some(at) = self.finder.find(window) {
                return Ok((at, true));
            }
            let keep = partial_delimiter(window, &self.delimiter);
            if window.len() > keep {
                return Ok((window.len() - keep, false));
            }
            if self.fill()? == 0 {
                return Err(self.ended_early());
            }
        }
    }

    /// Consumes the delimiter that ends the current part's data.
    fn end_data(&mut self) -> Result<(), MultipartError> {
        self.stage = Stage::Delimiter;
        self.consume_framing(self.delimiter.len())
    }

    /// A text part's value, at most [`MAX_TEXT_FIELD`] bytes.
    fn read_text(&mut self, name: &str) -> Result<String, MultipartError> {
        let mut value = Vec::new();
        loop {
            let (n, ended) = self.scan_data()?;
            if (value.len() + n) as u64 > MAX_TEXT_FIELD {
                return Err(self.fail(MultipartError::Malformed(format!(
                    "form field {name:?} is larger than {MAX_TEXT_FIELD} bytes"
                ))));
            }
            value.extend_from_slice(&self.buf[self.pos..self.pos + n]);
            self.consume_framing(n)?;
            if ended {
                self.end_data()?;
                return Ok(String::from_utf8_lossy(&value).into_owned());
            }
        }
    }

    /// Reads past the rest of the current part's data.
    fn skip_data(&mut self) -> Result<(), MultipartError> {
        self.check()?;
        while self.stage == Stage::Data {
            let (n, ended) = self.scan_data()?;
            self.pos += n;
            if ended {
                self.end_data()?;
            }
        }
        Ok(())
    }

    /// Fills `out` with the current part's data, up to its end (0 once there). With the
    /// window empty the body is read straight into `out` and scanned there: the bytes past a
    /// delimiter found in it, or a tail that may begin one, go back into the window.
    fn read_file(&mut self, out: &mut [u8]) -> Result<usize, MultipartError> {
        self.check()?;
        if self.stage != Stage::Data {
            return Ok(0);
        }
        let mut filled = 0;
        while filled < out.len() {
            let room = out.len() - filled;
            if self.pos == self.end && !self.eof && room >= self.delimiter.len() {
                let span = filled..filled + room.min(READ_SIZE);
                let n = self.read_body(&mut out[span])?;
                let got = &out[filled..filled + n];
                if let Some(at) = self.finder.find(got) {
                    self.stash(&got[at..]);
                    self.end_data()?;
                    return Ok(filled + at);
                }
                let keep = partial_delimiter(got, &self.delimiter);
                self.stash(&got[n - keep..]);
                filled += n - keep;
                continue;
            }
            let (n, ended) = self.scan_data()?;
            let take = n.min(room);
            out[filled..filled + take].copy_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            filled += take;
            if ended && take == n {
                self.end_data()?;
                return Ok(filled);
            }
        }
        Ok(filled)
    }
}

/// The length of the longest end of `data` that is the start of `delimiter` (shorter than the
/// whole: a whole one would have been found).
fn partial_delimiter(data: &[u8], delimiter: &[u8]) -> usize {
    let from = data.len().saturating_sub(delimiter.len() - 1);
    (from..data.len())
        .find(|&at| data[at] == b'\r' && delimiter.starts_with(&data[at..]))
        .map_or(0, |at| data.len() - at)
}

/// The bytes of one file part as `Read`. A multipart error is kept aside (and reported as such
/// by [`FilePart::take_error`] or [`FilePart::finish`]) while the consumer sees an ordinary
/// I/O error.
pub struct FilePart<'r> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    scanner: Shared<'r>,
    /// Which part of the body this is: once the reader has moved on, it reads nothing.
    part: u64,
    error: Option<MultipartError>,
}

impl FilePart<'_> {
    /// The part's field name (`file`, `userfile`, `files[]`...).
    pub fn field_name(&self) -> &str {
        &self.name
    }

    /// The `filename` attribute as sent (`None` for a part named `file` without one).
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }

    /// The part's own Content-Type header, as sent.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The multipart failure behind an error the reader returned, if that was one.
    pub fn take_error(&mut self) -> Option<MultipartError> {
        self.error.take()
    }

    /// Reads (and discards) whatever is left of the part, so that the next part can be read,
    /// and reports whether the part ended properly.
    pub fn finish(mut self) -> Result<(), MultipartError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut scanner = self.scanner.lock();
        if scanner.part != self.part {
            return scanner.check();
        }
        scanner.skip_data()
    }

    /// The part read as a text field (a part named `file` without a file name, where a form
    /// upload expects text).
    pub fn into_text(mut self) -> Result<String, MultipartError> {
        let mut value = Vec::new();
        let read = (&mut self).take(MAX_TEXT_FIELD + 1).read_to_end(&mut value);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if read.is_err() || value.len() as u64 > MAX_TEXT_FIELD {
            return Err(MultipartError::Malformed(format!(
                "form field {:?} is larger than {MAX_TEXT_FIELD} bytes",
                self.name
            )));
        }
        Ok(String::from_utf8_lossy(&value).into_owned())
    }
}

impl Read for FilePart<'_> {
    /// Fills `buf` (up to the end of the part) rather than returning what one read of the
    /// body gave: the chunk writer then issues whole, aligned writes. A failure drops what was
    /// gathered, as the whole file is then refused.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = {
            let mut scanner = self.scanner.lock();
            if scanner.part != self.part {
                return Ok(0);
            }
            scanner.read_file(buf)
        };
        result.map_err(|error| {
            let message = error.to_string();
            self.error = Some(error);
            io::Error::new(io::ErrorKind::UnexpectedEof, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, data) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    fn read(raw: &[u8]) -> (Params, Result<Option<Vec<u8>>, IntakeError<io::Error>>) {
        let mut params = Params::default();
        let mut cursor = io::Cursor::new(raw.to_vec());
        let result = read_multipart(&mut cursor, CT, 1 << 20, &mut params, |_, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map(|_| data)
        });
        (params, result)
    }

    /// Reads at most 64 KiB at a time and counts what it handed out.
    struct Trickle {
        data: io::Cursor<Vec<u8>>,
        served: Arc<AtomicU64>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(READ_SIZE);
            let got = self.data.read(&mut buf[..n])?;
            self.served.fetch_add(got as u64, Ordering::Relaxed);
            Ok(got)
        }
    }

    #[test]
    fn the_body_is_read_only_as_far_as_the_parser_needs() {
        // resumable.js sends nine text fields before the file part; each used to cost a read of
        // its own whether or not the data was already buffered.
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let mut parts: Vec<(&str, Option<&str>, &[u8])> =
            names.iter().map(|n| (*n, None, &b"12345"[..])).collect();
        let data = vec![9u8; 4 << 20];
        parts.push(("file", Some("f.bin"), &data));
        let served = Arc::new(AtomicU64::new(0));
        let mut body = Trickle {
            data: io::Cursor::new(body(&parts)),
            served: served.clone(),
        };
        let mut params = Params::default();
        let mut read_before_file = 0;
        let total = read_multipart(&mut body, CT, 8 << 20, &mut params, |_, r| {
            read_before_file = served.load(Ordering::Relaxed);
            io::copy(r, &mut io::sink())
        })
        .unwrap();
        assert_eq!(total, Some(4 << 20));
        assert!(
            read_before_file <= 2 * READ_SIZE as u64,
            "{read_before_file}"
        );
    }

    #[test]
    fn parts_one_at_a_time_every_file_in_turn() {
        let raw = body(&[
            ("a", None, b"1"),
            ("files[]", Some("x.txt"), b"xx"),
            ("MAX_FILE_SIZE", None, b"9"),
            ("files[]", Some(""), b""),
            ("files[]", Some("z.bin"), &[7u8; 100_000]),
        ]);
        let mut cursor = io::Cursor::new(raw);
        let mut reader = MultipartReader::new(&mut cursor, CT, 1 << 20).unwrap();
        let mut seen = Vec::new();
        while let Some(part) = reader.next_part().unwrap() {
            match part {
                Part::Text { name, value } => seen.push(format!("{name}={value}")),
                Part::File(mut file) => {
                    let mut data = Vec::new();
                    file.read_to_end(&mut data).unwrap();
                    seen.push(format!(
                        "{}:{}:{}:{}",
                        file.field_name(),
                        file.filename().unwrap(),
                        file.content_type().unwrap(),
                        data.len()
                    ));
                    file.finish().unwrap();
                }
            }
        }
        assert_eq!(
            seen,
            [
                "a=1",
                "files[]:x.txt:application/octet-stream:2",
                "MAX_FILE_SIZE=9",
                "files[]::application/octet-stream:0",
                "files[]:z.bin:application/octet-stream:100000",
            ]
        );
    }

    #[test]
    fn a_file_name_that_is_not_utf8_still_makes_a_file_part() {
        let mut raw = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"caf\xe9.txt\"\r\n\r\n".to_vec();
        raw.extend_from_slice(b"data\r\n--XyZ--\r\n");
        let mut cursor = io::Cursor::new(raw);
        let mut reader = MultipartReader::new(&mut cursor, CT, 1 << 20).unwrap();
        let Some(Part::File(file)) = reader.next_part().unwrap() else {
            panic!("not a file part");
        };
        assert_eq!(file.filename(), Some("caf\u{fffd}.txt"));
    }

    #[test]
    fn the_limit_can_be_lowered_once_the_flow_is_known() {
        let raw = body(&[("a", None, b"1"), ("file", Some("f"), &[1u8; 600_000])]);
        let mut cursor = io::Cursor::new(raw);
        let mut reader = MultipartReader::new(&mut cursor, CT, 1 << 20).unwrap();
        let mut file = reader.read_fields(&mut Params::default()).unwrap().unwrap();
        // The reader has read a read or two ahead by now, well under the new limit.
        reader.set_limit(300_000).unwrap();
        assert!(io::copy(&mut file, &mut io::sink()).is_err());
        assert!(matches!(
            file.take_error(),
            Some(MultipartError::TooLarge(300_000))
        ));
        drop(file);
        assert!(matches!(
            reader.set_limit(1000),
            Err(MultipartError::TooLarge(1000))
        ));
    }

    #[test]
    fn fields_then_file() {
        let raw = body(&[
            ("flowChunkNumber", None, b"1"),
            ("file", Some("a b.txt"), b"hello"),
        ]);
        let (params, result) = read(&raw);
        assert_eq!(result.unwrap(), Some(b"hello".to_vec()));
        assert_eq!(params.get("flowChunkNumber").unwrap(), Some("1"));
    }

    #[test]
    fn no_file_part_is_a_test_request() {
        let raw = body(&[("flowChunkNumber", None, b"1")]);
        assert!(read(&raw).1.unwrap().is_none());
    }

    #[test]
    fn truncated_file_part_is_incomplete() {
        let raw = body(&[("file", Some("x"), &[7u8; 5000])]);
        let (_, result) = read(&raw[..3000]);
        assert!(matches!(
            result,
            Err(IntakeError::Multipart(MultipartError::Incomplete(_)))
        ));
    }

    #[test]
    fn part_after_file_is_malformed() {
        let raw = body(&[("file", Some("x"), b"abc"), ("late", None, b"1")]);
        assert!(matches!(
            read(&raw).1,
            Err(IntakeError::Multipart(MultipartError::Malformed(_)))
        ));
    }

    #[test]
    fn oversized_text_field_is_refused() {
        let big = vec![b'a'; (MAX_TEXT_FIELD + 1) as usize];
        let raw = body(&[("note", None, &big)]);
        assert!(read(&raw).1.is_err());
    }

    #[test]
    fn framing_is_bounded() {
        // One part header line of 4 MiB: refused once past the bound, not held whole.
        let mut raw = b"--XyZ\r\nX-Junk: ".to_vec();
        raw.extend(std::iter::repeat_n(b'j', 4 << 20));
        raw.extend_from_slice(
            b"\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--XyZ--\r\n",
        );
        let mut params = Params::default();
        let result = read_multipart(
            &mut io::Cursor::new(raw),
            CT,
            64 << 20,
            &mut params,
            |_, r| {
                let mut data = Vec::new();
                r.read_to_end(&mut data).map(|_| data)
            },
        );
        assert!(matches!(
            result,
            Err(IntakeError::Multipart(MultipartError::Malformed(_)))
        ));
        // Thousands of tiny fields: refused past MAX_FIELDS.
        let many: Vec<(String, Option<&str>, &[u8])> = (0..MAX_FIELDS + 1)
            .map(|i| (format!("f{i}"), None, &b"1"[..]))
            .collect();
        let parts: Vec<(&str, Option<&str>, &[u8])> =
            many.iter().map(|(n, f, d)| (n.as_str(), *f, *d)).collect();
        assert!(matches!(
            read(&body(&parts)).1,
            Err(IntakeError::Multipart(MultipartError::Malformed(_)))
        ));
    }

    #[test]
    fn an_empty_boundary_is_no_boundary() {
        let mut params = Params::default();
        let result = read_multipart(
            &mut io::Cursor::new(b"--\r\n".to_vec()),
            "multipart/form-data; boundary=",
            1 << 20,
            &mut params,
            |_, _| Ok::<_, io::Error>(()),
        );
        assert!(matches!(
            result,
            Err(IntakeError::Multipart(MultipartError::NoBoundary))
        ));
    }

    #[test]
    fn large_file_part_streams_without_buffering() {
        // 8 MiB: whatever size the callback reads in, the body is never consumed more than a
        // few reads ahead of what the callback has been given.
        struct Counting<'a> {
            inner: io::Cursor<Vec<u8>>,
            consumed: &'a AtomicU64,
        }
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.inner.read(buf)?;
                self.consumed.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
        }
        let data = vec![42u8; 8 << 20];
        let raw = body(&[("file", Some("big"), &data)]);
        let consumed = AtomicU64::new(0);
        let mut params = Params::default();
        let mut counting = Counting {
            inner: io::Cursor::new(raw),
            consumed: &consumed,
        };
        let mut ahead = 0;
        let total = read_multipart(&mut counting, CT, 16 << 20, &mut params, |_, r| {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok::<_, io::Error>(total);
                }
                assert!(n <= buf.len());
                total += n as u64;
                ahead = ahead.max(consumed.load(Ordering::Relaxed) - total);
            }
        })
        .unwrap();
        assert_eq!(total, Some(8 << 20));
        // The reader may hold a read or two, never the whole part.
        assert!(ahead <= 4 * READ_SIZE as u64, "{ahead}");
    }

    /// Serves a body in pieces of the given sizes (cycled), as a pipe or socket might.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Pieces {
        fn new(data: &[u8], sizes: &[usize]) -> Pieces {
            Pieces {
                data: data.to_vec(),
                at: 0,
                sizes: sizes.to_vec(),
                turn: 0,
            }
        }
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = size.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// A part as read: name, file name (file parts only), bytes.
    type Seen = (String, Option<String>, Vec<u8>);

    /// Every part of `raw`, the body served in `pieces` and file parts read `consumer` bytes
    /// at a time.
    fn parts_of(
        raw: &[u8],
        content_type: &str,
        pieces: &[usize],
        consumer: usize,
    ) -> Result<Vec<Seen>, MultipartError> {
        let mut body = Pieces::new(raw, pieces);
        let mut reader = MultipartReader::new(&mut body, content_type, 64 << 20)?;
        let mut seen = Vec::new();
        while let Some(part) = reader.next_part()? {
            match part {
                Part::Text { name, value } => seen.push((name, None, value.into_bytes())),
                Part::File(mut file) => {
                    let mut data = Vec::new();
                    let mut buf = vec![0u8; consumer];
                    loop {
                        match file.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                            Err(_) => return Err(file.take_error().expect("a multipart error")),
                        }
                    }
                    let filename = file.filename().map(str::to_string);
                    seen.push((file.field_name().to_string(), filename, data));
                    file.finish()?;
                }
            }
        }
        Ok(seen)
    }

    /// Data that ends, begins and is full of almost-delimiters of `--XyZ`, none whole.
    const NEAR: &[&[u8]] = &[
        b"\r",
        b"\r\n",
        b"\r\n-",
        b"\r\n--",
        b"\r\n--X",
        b"\r\n--Xy",
        b"\r\n--xyz",
        b"\r\n-XyZ",
        b"\r--XyZ",
        b"\n--XyZ",
        b"--XyZ",
        b"\r\r\n--Xy\r\n-",
        b"\r\n\r\n",
    ];

    fn tricky_data() -> Vec<u8> {
        let mut data = Vec::new();
        for (i, near) in NEAR.iter().enumerate() {
            data.extend_from_slice(near);
            data.extend(std::iter::repeat_n(b'a' + i as u8, i * 7));
        }
        data.extend_from_slice(b"\r\n--Xy");
        data
    }

    fn tricky_body() -> (Vec<u8>, Vec<u8>) {
        let data = tricky_data();
        let raw = body(&[
            ("flowChunkNumber", None, b"\r\n--Xy\r"),
            ("empty", None, b""),
            ("file", Some("t.bin"), &data),
        ]);
        (raw, data)
    }

    #[test]
    fn every_split_of_the_body_reads_the_same() {
        let (raw, data) = tricky_body();
        let want = vec![
            ("flowChunkNumber".to_string(), None, b"\r\n--Xy\r".to_vec()),
            ("empty".to_string(), None, Vec::new()),
            ("file".to_string(), Some("t.bin".to_string()), data),
        ];
        for consumer in [1, 2, 3, 8, 9, 10, 64, 4096, 256 * 1024] {
            // One byte at a time, and every cut of the body into two reads.
            assert_eq!(
                parts_of(&raw, CT, &[1], consumer).unwrap(),
                want,
                "{consumer}"
            );
            for cut in 1..raw.len() {
                let pieces = [cut, raw.len()];
                let got = parts_of(&raw, CT, &pieces, consumer).unwrap();
                assert_eq!(got, want, "cut at {cut}, consumer reads {consumer}");
            }
        }
    }

    #[test]
    fn a_body_cut_anywhere_before_the_close_delimiter_is_an_error() {
        let (raw, _) = tricky_body();
        let close = raw.len() - b"\r\n".len();
        for cut in 0..=raw.len() {
            for consumer in [7, 1 << 16] {
                let result = parts_of(&raw[..cut], CT, &[5, 3, 11], consumer);
                if cut >= close {
                    assert!(result.is_ok(), "cut at {cut}: {result:?}");
                } else {
                    assert!(
                        matches!(result, Err(MultipartError::Incomplete(_))),
                        "cut at {cut}: {result:?}"
                    );
                }
            }
        }
        // Through read_multipart as the chunk flow uses it: never a completed file.
        let raw = body(&[("file", Some("x"), &[7u8; 200_000])]);
        for cut in [
            0,
            1,
            50,
            150,
            100_000,
            199_999,
            raw.len() - 10,
            raw.len() - 3,
        ] {
            let (_, result) = read(&raw[..cut]);
            assert!(
                matches!(
                    result,
                    Err(IntakeError::Multipart(MultipartError::Incomplete(_)))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_whole_delimiter_inside_data_ends_the_part() {
        // RFC 2046 forbids the delimiter in data; followed by junk it is refused as multer did.
        let raw = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nab\r\n--XyZjunk\r\n--XyZ--\r\n";
        assert!(matches!(
            parts_of(raw, CT, &[1 << 20], 1 << 16),
            Err(MultipartError::Incomplete(_))
        ));
    }

    #[test]
    fn transport_padding_preamble_and_epilogue_are_skipped() {
        let raw = b"This is a preamble.\r\n--XyZ \t \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\t\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--XyZ--epilogue, never read\r\n";
        for pieces in [1, 2, 3, 1000] {
            let got = parts_of(raw, CT, &[pieces], 10).unwrap();
            let values: Vec<_> = got
                .iter()
                .map(|(n, _, v)| (n.as_str(), v.as_slice()))
                .collect();
            assert_eq!(values, [("a", &b"1"[..]), ("b", &b"2"[..])]);
        }
        // Padding then anything but CRLF is not a delimiter line.
        let raw = b"--XyZ  x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n";
        assert!(matches!(
            parts_of(raw, CT, &[1], 1),
            Err(MultipartError::Incomplete(_))
        ));
        // A close delimiter straight after the preamble: a form without parts.
        assert!(parts_of(b"--XyZ--", CT, &[1], 1).unwrap().is_empty());
    }

    #[test]
    fn lf_only_line_ends_are_refused_as_incomplete() {
        // Browsers always send CRLF; multer refused LF-only bodies this way, and so do we.
        let raw = b"--XyZ\nContent-Disposition: form-data; name=\"a\"\n\n1\n--XyZ--\n";
        for pieces in [1, 1000] {
            assert!(matches!(
                parts_of(raw, CT, &[pieces], 16),
                Err(MultipartError::Incomplete(_))
            ));
        }
    }

    #[test]
    fn a_part_without_headers_is_an_unnamed_field() {
        let raw = b"--XyZ\r\n\r\nvalue\r\n--XyZ--\r\n";
        let got = parts_of(raw, CT, &[1], 1).unwrap();
        assert_eq!(got, [(String::new(), None, b"value".to_vec())]);
    }

    fn disposition(value: &str) -> (Option<String>, Option<String>) {
        disposition_names(value.as_bytes())
    }

    #[test]
    fn content_disposition_names_as_browsers_and_php_send_and_read_them() {
        let some = |n: &str, f: Option<&str>| (Some(n.to_string()), f.map(str::to_string));
        assert_eq!(
            disposition(r#"form-data; name="a"; filename="b.txt""#),
            some("a", Some("b.txt"))
        );
        assert_eq!(
            disposition(r#"form-data; filename="b.txt"; name="a""#),
            some("a", Some("b.txt"))
        );
        assert_eq!(
            disposition(r#"form-data;name=a;filename=b.txt"#),
            some("a", Some("b.txt"))
        );
        assert_eq!(
            disposition(r#"form-data; NAME="a"; FileName="b""#),
            some("a", Some("b"))
        );
        assert_eq!(
            disposition(r#"form-data; name="x;y"; filename="c;d.txt""#),
            some("x;y", Some("c;d.txt"))
        );
        assert_eq!(
            disposition(r#"form-data; name="a"; filename="say \"hi\".txt""#),
            some("a", Some("say \"hi\".txt"))
        );
        // Windows paths (old IE) keep their backslashes; percent-escapes stay as sent.
        assert_eq!(
            disposition(r#"form-data; name="a"; filename="C:\dir\b.txt""#),
            some("a", Some("C:\\dir\\b.txt"))
        );
        assert_eq!(
            disposition(r#"form-data; name="a%22b"; filename="%22.txt""#),
            some("a%22b", Some("%22.txt"))
        );
        // Encoded words (quoted-printable, RFC 2047) are not decoded, as PHP does not.
        assert_eq!(
            disposition(r#"form-data; name="=?UTF-8?Q?caf=C3=A9?="; filename="=?UTF-8?Q?a=20b?=""#),
            some("=?UTF-8?Q?caf=C3=A9?=", Some("=?UTF-8?Q?a=20b?="))
        );
        // filename* only without filename.
        assert_eq!(
            disposition("form-data; name=\"a\"; filename*=UTF-8''caf%C3%A9.txt"),
            some("a", Some("café.txt"))
        );
        assert_eq!(
            disposition("form-data; name=\"a\"; filename*=iso-8859-1'fr'caf%E9.txt"),
            some("a", Some("café.txt"))
        );
        assert_eq!(
            disposition("form-data; name=\"a\"; filename*=UTF-8''x.txt; filename=\"y.txt\""),
            some("a", Some("y.txt"))
        );
        assert_eq!(
            disposition("form-data; name=\"a\"; filename*=koi8-r''x"),
            some("a", None)
        );
        // The first of a repeated parameter; an empty file name is still a file name.
        assert_eq!(
            disposition(r#"form-data; name="a"; name="b"; filename="""#),
            some("a", Some(""))
        );
        assert_eq!(disposition("form-data"), (None, None));
        assert_eq!(
            disposition(r#"form-data; name="unterminated"#),
            some("unterminated", None)
        );
    }

    #[test]
    fn names_that_are_not_utf8_become_replacement_characters() {
        let (name, filename) =
            disposition_names(b"form-data; name=\"n\xff\"; filename=\"f\xe9.txt\"");
        assert_eq!(name.as_deref(), Some("n\u{fffd}"));
        assert_eq!(filename.as_deref(), Some("f\u{fffd}.txt"));
    }

    #[test]
    fn part_headers_follow_the_header_grammar() {
        let ok = parse_part_headers(b"content-disposition: form-data; name=\"a\"\r\nContent-Type:  text/plain \r\nX-Other: \xe9").unwrap();
        assert_eq!(ok.name.as_deref(), Some("a"));
        assert_eq!(ok.content_type.as_deref(), Some("text/plain"));
        // A repeated header: the last counts.
        let last = parse_part_headers(b"Content-Type: a/b\r\nContent-Type: c/d").unwrap();
        assert_eq!(last.content_type.as_deref(), Some("c/d"));
        for bad in [
            &b"no colon"[..],
            b"Bad Name: x",
            b": empty",
            b" folded: x",
            b"X: a\rb",
            b"X: a\x00b",
        ] {
            assert!(
                matches!(parse_part_headers(bad), Err(MultipartError::Malformed(_))),
                "{bad:?}"
            );
        }
        let many: Vec<u8> = (0..=MAX_PART_HEADERS)
            .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
            .collect();
        assert!(matches!(
            parse_part_headers(&many[..many.len() - 2]),
            Err(MultipartError::Malformed(_))
        ));
    }

    #[test]
    fn boundaries_from_the_content_type() {
        let b = |ct: &str| parse_boundary(ct);
        assert_eq!(
            b("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            b("Multipart/Form-Data;Boundary=XyZ ; charset=utf-8").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            b(r#"multipart/form-data; boundary="a b:c""#).as_deref(),
            Some("a b:c")
        );
        assert_eq!(
            b("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW").as_deref(),
            Some("----WebKitFormBoundary7MA4YWxkTrZu0gW")
        );
        assert_eq!(
            b(&format!("multipart/form-data; boundary={}", "x".repeat(70))).map(|s| s.len()),
            Some(70)
        );
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            r#"multipart/form-data; boundary="""#,
            "multipart/mixed; boundary=XyZ",
            "multipart/form-dataX; boundary=XyZ",
            "multipart/form-data; boundary",
            r#"multipart/form-data; boundary="open"#,
            "multipart/form-data; boundary=a b",
        ] {
            assert_eq!(b(bad), None, "{bad}");
        }
        assert_eq!(
            b(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn the_reader_keeps_no_more_than_a_read_and_copies_file_data_once() {
        // 8 MiB read in 1 MiB gulps: the reader's own buffer never grows past one read, since
        // file data goes straight from the body into the consumer's buffer.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let raw = body(&[("a", None, b"1"), ("file", Some("big"), &data)]);
        let mut cursor = io::Cursor::new(raw);
        let mut reader = MultipartReader::new(&mut cursor, CT, 16 << 20).unwrap();
        let mut file = reader.read_fields(&mut Params::default()).unwrap().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == data);
        let held = file.scanner.lock().buf.len();
        assert!(held <= READ_SIZE + 4 + MAX_BOUNDARY, "{held}");
        file.finish().unwrap();
        assert!(reader.next_part().unwrap().is_none());
    }

    #[test]
    fn a_file_part_left_unread_is_skipped_and_reads_nothing_after() {
        let raw = body(&[("f1", Some("a"), &[1u8; 100_000]), ("b", None, b"2")]);
        let mut cursor = io::Cursor::new(raw);
        let mut reader = MultipartReader::new(&mut cursor, CT, 1 << 20).unwrap();
        let Some(Part::File(mut file)) = reader.next_part().unwrap() else {
            panic!("not a file part");
        };
        let mut first = [0u8; 10];
        assert_eq!(file.read(&mut first).unwrap(), 10);
        let Some(Part::Text { name, value }) = reader.next_part().unwrap() else {
            panic!("not a text part");
        };
        assert_eq!((name.as_str(), value.as_str()), ("b", "2"));
        assert_eq!(file.read(&mut first).unwrap(), 0);
        assert!(reader.next_part().unwrap().is_none());
    }

    #[test]
    fn an_error_sticks() {
        let raw = body(&[("file", Some("x"), &[7u8; 5000])]);
        let mut cursor = io::Cursor::new(raw[..3000].to_vec());
        let mut reader = MultipartReader::new(&mut cursor, CT, 1 << 20).unwrap();
        let mut file = reader.read_fields(&mut Params::default()).unwrap().unwrap();
        assert!(io::copy(&mut file, &mut io::sink()).is_err());
        assert!(matches!(
            file.take_error(),
            Some(MultipartError::Incomplete(_))
        ));
        assert!(io::copy(&mut file, &mut io::sink()).is_err());
        drop(file);
        assert!(matches!(
            reader.next_part(),
            Err(MultipartError::Incomplete(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn random_data_and_random_splits_read_back_exactly(
            data in proptest::collection::vec(proptest::sample::select(b"\r\n-XyZa".to_vec()), 0..3000),
            text in proptest::collection::vec(proptest::sample::select(b"\r\n-XyZb".to_vec()), 0..200),
            pieces in proptest::collection::vec(1usize..300, 1..8),
            consumer in 1usize..5000,
        ) {
            let delimiter = b"\r\n--XyZ";
            // A whole delimiter inside data ends the part by definition; keep those out.
            let mut data = data;
            let mut text = text;
            proptest::prop_assume!(memmem::find(&data, delimiter).is_none());
            proptest::prop_assume!(memmem::find(&text, delimiter).is_none());
            // Nor may data end with what a delimiter begins with followed by the real one.
            data.insert(0, b'a');
            text.insert(0, b'b');
            let mut check = data.clone();
            check.extend_from_slice(delimiter);
            proptest::prop_assume!(memmem::find(&check, delimiter) == Some(data.len()));
            let mut check_text = text.clone();
            check_text.extend_from_slice(delimiter);
            proptest::prop_assume!(memmem::find(&check_text, delimiter) == Some(text.len()));
            let raw = body(&[("t", None, &text), ("file", Some("f"), &data)]);
            let got = parts_of(&raw, CT, &pieces, consumer).unwrap();
            proptest::prop_assert_eq!(got.len(), 2);
            proptest::prop_assert_eq!(&got[0].2, &String::from_utf8_lossy(&text).into_owned().into_bytes());
            proptest::prop_assert_eq!(&got[1].2, &data);
        }

        #[test]
        fn a_damaged_body_never_panics_nor_hands_on_more_than_was_sent(
            edits in proptest::collection::vec((0usize..2000, proptest::sample::select(b"\r\n-XyZ\"; =\x00\xff".to_vec())), 0..6),
            cut in 0usize..2100,
            pieces in proptest::collection::vec(1usize..200, 1..4),
        ) {
            let (mut raw, _) = tricky_body();
            for (at, byte) in edits {
                let at = at % raw.len();
                raw[at] = byte;
            }
            raw.truncate(cut.min(raw.len()));
            let mut params = Params::default();
            let mut body = Pieces::new(&raw, &pieces);
            let result = read_multipart(&mut body, CT, 1 << 16, &mut params, |_, file| {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map(|_| bytes)
            });
            if let Ok(Some(bytes)) = result {
                proptest::prop_assert!(bytes.len() <= raw.len());
            }
        }
    }
}
