//! Streaming multipart/form-data intake, one part at a time: text fields come back whole
//! (bounded), each file part as a reader of its bytes, and nothing is buffered beyond one read.
//!
//! multer is async; it runs here under `pollster` through [`YieldingBody`], which returns
//! `Pending` between reads because multer keeps pulling until it sees `Pending` and would
//! otherwise slurp the whole body into memory (multer 3.1's `Multipart` polls its stream until
//! it is `Pending`, so a stream that is always ready is read to its end first).

use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use multer::{Constraints, Multipart, SizeLimit};

use super::params::Params;
use crate::buffer::AlignedBuffer;

/// The form field that carries the chunk bytes (the clients' `fileParameterName` default).
pub const FILE_FIELD: &str = "file";
/// Largest text field accepted; parameters are short.
pub const MAX_TEXT_FIELD: u64 = 64 * 1024;
/// Most text fields accepted; the clients send about ten.
pub const MAX_FIELDS: usize = 256;
/// Most bytes of everything but the file part's data (preamble, part headers, text fields)
/// multer may hold: it buffers a part's headers and the preamble whole, so without this bound a
/// body of one huge header line would be held in memory up to the whole-body limit.
pub const MAX_FRAMING: u64 = 1 << 20;
const READ_SIZE: usize = 64 * 1024;

#[derive(Debug)]
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

impl MultipartError {
    fn from_multer(error: multer::Error, limit: u64) -> MultipartError {
        use multer::Error as E;
        match error {
            E::StreamSizeExceeded { .. } => MultipartError::TooLarge(limit),
            E::IncompleteStream
            | E::IncompleteFieldData { .. }
            | E::IncompleteHeaders
            | E::StreamReadFailed(_) => MultipartError::Incomplete(error.to_string()),
            other => MultipartError::Malformed(other.to_string()),
        }
    }
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
    multipart: Multipart<'r>,
    framing: Framing,
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
        let boundary =
            multer::parse_boundary(content_type).map_err(|_| MultipartError::NoBoundary)?;
        if boundary.is_empty() {
            return Err(MultipartError::NoBoundary);
        }
        let constraints = Constraints::new().size_limit(
            SizeLimit::new()
                .whole_stream(limit)
                // Any part may be a file (its name varies by client), so multer bounds each part
                // by the body limit and text fields are held to MAX_TEXT_FIELD below.
                .per_field(limit),
        );
        let framing = Framing::new(limit);
        let multipart = Multipart::with_constraints(
            YieldingBody::new(body, framing.clone()),
            boundary,
            constraints,
        );
        Ok(MultipartReader {
            multipart,
            framing,
            fields: 0,
            files: 0,
        })
    }

    /// Lowers the bound on the whole body once the flow that reads it is known (a chunk may
    /// carry less than a form). Bytes already read count: past it already, the body is too
    /// large now.
    pub fn set_limit(&self, limit: u64) -> Result<(), MultipartError> {
        self.framing.limit.store(limit, Ordering::Relaxed);
        if self.framing.read.load(Ordering::Relaxed) > limit {
            self.framing.too_large.store(true, Ordering::Relaxed);
            return Err(MultipartError::TooLarge(limit));
        }
        Ok(())
    }

    /// The next part, or `None` after the closing boundary.
    pub fn next_part(&mut self) -> Result<Option<Part<'r>>, MultipartError> {
        let framing = &self.framing;
        let Some(mut field) = framing
            .block_on(self.multipart.next_field())
            .map_err(|e| framing.convert(e))?
        else {
            return Ok(None);
        };
        let name = field.name().unwrap_or_default().to_string();
        let filename = file_name_of(&field);
        // The clients name their file part differently (`file`, `qqfile`, `files[]`); a part
        // that carries a file name is a file whatever its name.
        if name == FILE_FIELD || filename.is_some() {
            self.files += 1;
            if self.files > MAX_FILE_PARTS {
                return Err(MultipartError::Malformed(format!(
                    "more than {MAX_FILE_PARTS} file parts"
                )));
            }
            let content_type = field
                .headers()
                .get("content-type")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Ok(Some(Part::File(Box::new(FilePart {
                name,
                filename,
                content_type,
                field,
                pending: Bytes::new(),
                error: None,
                framing: framing.clone(),
            }))));
        }
        self.fields += 1;
        if self.fields > MAX_FIELDS {
            return Err(MultipartError::Malformed(format!(
                "more than {MAX_FIELDS} form fields"
            )));
        }
        let value = read_text(&mut field, &name, framing)?;
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

/// The `filename` attribute of a part. multer drops one that is not UTF-8 (the part would then
/// pass for a text field); it is kept here with replacement characters.
fn file_name_of(field: &multer::Field<'_>) -> Option<String> {
    if let Some(name) = field.file_name() {
        return Some(name.to_string());
    }
    let raw = field.headers().get("content-disposition")?.as_bytes();
    let text = String::from_utf8_lossy(raw);
    let at = text
        .match_indices("filename=")
        .find(|(i, _)| *i > 0 && matches!(text.as_bytes()[i - 1], b';' | b' ' | b'\t'))?
        .0;
    let value = &text[at + "filename=".len()..];
    Some(match value.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default().to_string(),
        None => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    })
}

fn read_text(
    field: &mut multer::Field<'_>,
    name: &str,
    framing: &Framing,
) -> Result<String, MultipartError> {
    let mut value = Vec::new();
    while let Some(bytes) = framing
        .block_on(field.chunk())
        .map_err(|e| framing.convert(e))?
    {
        value.extend_from_slice(&bytes);
        if value.len() as u64 > MAX_TEXT_FIELD {
            return Err(MultipartError::Malformed(format!(
                "form field {name:?} is larger than {MAX_TEXT_FIELD} bytes"
            )));
        }
    }
    Ok(String::from_utf8_lossy(&value).into_owned())
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

/// Bytes read from the body and bytes of file data handed on: the difference is what multer
/// holds of headers, fields and preamble (plus at most a read or two of file data).
#[derive(Clone)]
struct Framing {
    read: Arc<AtomicU64>,
    file: Arc<AtomicU64>,
    exceeded: Arc<AtomicBool>,
    /// The most bytes the whole body may carry ([`MultipartReader::set_limit`]).
    limit: Arc<AtomicU64>,
    too_large: Arc<AtomicBool>,
    /// Set before every call into multer: the body's next poll yields instead of reading, so
    /// multer reads only when what it already holds does not answer the call. Without this the
    /// yield state carried over between calls and every `next_field`/`chunk` pulled another
    /// read even with data buffered: ~128 KiB per text field, 1.2 MiB for resumable.js's nine.
    must_yield: Arc<AtomicBool>,
}

impl Framing {
    fn new(limit: u64) -> Framing {
        Framing {
            read: Arc::default(),
            file: Arc::default(),
            exceeded: Arc::default(),
            limit: Arc::new(AtomicU64::new(limit)),
            too_large: Arc::default(),
            must_yield: Arc::default(),
        }
    }

    /// Runs one multer call to completion on this thread.
    fn block_on<F: std::future::Future>(&self, call: F) -> F::Output {
        self.must_yield.store(true, Ordering::Relaxed);
        pollster::block_on(call)
    }

    fn file_bytes(&self, n: usize) {
        self.file.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a read; an error once the non-file bytes pass their bound or the body its limit.
    fn read_bytes(&self, n: usize) -> Result<(), &'static str> {
        let read = self.read.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let framing = read.saturating_sub(self.file.load(Ordering::Relaxed));
        if framing > MAX_FRAMING + 2 * READ_SIZE as u64 {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err("too many bytes of part headers and fields");
        }
        if read > self.limit.load(Ordering::Relaxed) {
            self.too_large.store(true, Ordering::Relaxed);
            return Err("the body is larger than allowed");
        }
        Ok(())
    }

    /// What a multer error means, given what the body reader saw.
    fn convert(&self, error: multer::Error) -> MultipartError {
        let limit = self.limit.load(Ordering::Relaxed);
        if self.exceeded.load(Ordering::Relaxed) {
            MultipartError::Malformed(format!(
                "more than {MAX_FRAMING} bytes of part headers and fields"
            ))
        } else if self.too_large.load(Ordering::Relaxed) {
            MultipartError::TooLarge(limit)
        } else {
            MultipartError::from_multer(error, limit)
        }
    }
}

/// A blocking reader as a `Stream` that multer drains one read at a time.
struct YieldingBody<'a> {
    body: &'a mut (dyn Read + Send),
    done: bool,
    framing: Framing,
    /// One read buffer for the whole body: a fresh zeroed Vec per read cost a memset and a
    /// misaligned copy for every read.
    buffer: AlignedBuffer,
}

impl<'a> YieldingBody<'a> {
    fn new(body: &'a mut (dyn Read + Send), framing: Framing) -> Self {
        YieldingBody {
            body,
            done: false,
            framing,
            buffer: AlignedBuffer::new(READ_SIZE),
        }
    }
}

impl Stream for YieldingBody<'_> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // multer pulls until it sees Pending; yielding after each read keeps it to one read
        // at a time instead of slurping the body.
        if self.framing.must_yield.swap(false, Ordering::Relaxed) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.framing.must_yield.store(true, Ordering::Relaxed);
        let this = &mut *self;
        let buf = this.buffer.as_mut_slice();
        loop {
            match this.body.read(buf) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    if let Err(why) = this.framing.read_bytes(n) {
                        this.done = true;
                        return Poll::Ready(Some(Err(io::Error::other(why))));
                    }
                    // multer copies what it gets into its own buffer anyway; this copy
                    // replaces the memset of a fresh buffer.
                    return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf[..n]))));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// The bytes of one file part as `Read`. A multipart error is kept aside (and reported as such
/// by [`FilePart::take_error`] or [`FilePart::finish`]) while the consumer sees an ordinary
/// I/O error.
pub struct FilePart<'r> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    field: multer::Field<'r>,
    pending: Bytes,
    error: Option<MultipartError>,
    framing: Framing,
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
        let framing = &self.framing;
        while let Some(bytes) = framing
            .block_on(self.field.chunk())
            .map_err(|e| framing.convert(e))?
        {
            framing.file_bytes(bytes.len());
        }
        Ok(())
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
    /// Fills `buf` (up to the end of the part) rather than returning one multer chunk: multer
    /// hands out pieces of its 64 KiB reads cut at arbitrary offsets, and passing them on one
    /// by one made the chunk writer issue many small writes at unaligned file offsets. The
    /// body is read as it is anyway; a failure drops what was gathered, as the whole file is
    /// then refused.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pending.is_empty() {
                match self.framing.block_on(self.field.chunk()) {
                    Ok(Some(bytes)) => {
                        self.framing.file_bytes(bytes.len());
                        self.pending = bytes;
                        continue;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let error = self.framing.convert(e);
                        let message = error.to_string();
                        self.error = Some(error);
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
                    }
                }
            }
            let n = (buf.len() - filled).min(self.pending.len());
            buf[filled..filled + n].copy_from_slice(&self.pending.split_to(n));
            filled += n;
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
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
        // multer has read a read or two ahead by now, well under the new limit.
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
    fn framing_is_bounded_whatever_multer_would_buffer() {
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
        // multer may hold a few reads, never the whole part.
        assert!(ahead <= 4 * READ_SIZE as u64, "{ahead}");
    }
}
