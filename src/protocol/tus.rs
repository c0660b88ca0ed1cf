//! tus 1.0.0 (tus-js-client, Uppy's `@uppy/tus`, tuspy...): the headers a request carries, read
//! strictly — versions, lengths and offsets, `Upload-Metadata`, `Upload-Checksum` and upload ids.

use std::fmt;
use std::io::{self, Read};

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::params::parse_decimal;
use crate::request::{Head, Method};

/// The only protocol version spoken (`Tus-Resumable`, `Tus-Version`).
pub const VERSION: &str = "1.0.0";
/// What `Tus-Extension` announces.
pub const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
/// What `Tus-Checksum-Algorithm` announces.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The body type of a PATCH (and of a creation that carries data).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// The response header that names the published file once an upload is complete: its path
/// relative to the upload dir, percent-encoded.
pub const COMPLETE_FILE_HEADER: &str = "Upload-Complete-File";
/// Random bytes in an upload id (128 bits: unguessable), written as lower-case hex.
pub const ID_BYTES: usize = 16;
/// Longest `Upload-Metadata` accepted; web servers cap a header line near 8 KiB anyway.
pub const MAX_METADATA: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusError {
    /// No `Tus-Resumable`, or a version other than 1.0.0.
    Version(Option<String>),
    /// A header that must be a non-negative decimal integer is missing or is not one.
    BadNumber {
        header: &'static str,
        value: Option<String>,
    },
    /// `Upload-Length` over `RESUMABLE_MAX_FILE_SIZE`, or a body longer than what is left.
    TooLarge {
        length: u64,
        max: u64,
    },
    BadMetadata(String),
    BadChecksum(String),
    UnsupportedAlgorithm(String),
    /// The body does not hash to the `Upload-Checksum` value; it was discarded.
    ChecksumMismatch,
    /// A PATCH whose Content-Type is not `application/offset+octet-stream`.
    ContentType(Option<String>),
    /// An extension not offered here (`Upload-Defer-Length`, `Upload-Concat`).
    Unsupported(&'static str),
    /// A method the endpoint or an upload URL does not answer in tus.
    Method(String),
    /// The upload was left untouched for longer than `RESUMABLE_EXPIRE_AFTER`.
    Expired,
}

impl fmt::Display for TusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TusError::Version(None) => write!(f, "tus requests need Tus-Resumable: {VERSION}"),
            TusError::Version(Some(v)) => {
                write!(f, "tus version {v:?} is not supported (only {VERSION})")
            }
            TusError::BadNumber {
                header,
                value: None,
            } => write!(f, "missing header {header}"),
            TusError::BadNumber {
                header,
                value: Some(v),
            } => write!(f, "{header}: {v:?} is not a non-negative whole number"),
            TusError::TooLarge { length, max } => {
                write!(f, "{length} bytes is more than the maximum of {max}")
            }
            TusError::BadMetadata(why) => write!(f, "invalid Upload-Metadata: {why}"),
            TusError::BadChecksum(why) => write!(f, "invalid Upload-Checksum: {why}"),
            TusError::UnsupportedAlgorithm(name) => write!(
                f,
                "checksum algorithm {name:?} is not supported (only {CHECKSUM_ALGORITHMS})"
            ),
            TusError::ChecksumMismatch => {
                write!(
                    f,
                    "the body does not match Upload-Checksum; it was discarded"
                )
            }
            TusError::ContentType(ct) => write!(
                f,
                "a PATCH body must be {OFFSET_OCTET_STREAM}, not {:?}",
                ct.as_deref().unwrap_or("")
            ),
            TusError::Unsupported(header) => write!(f, "{header} is not supported here"),
            TusError::Method(method) => write!(f, "method {method} is not a tus request here"),
            TusError::Expired => write!(f, "the upload has expired; start a new one"),
        }
    }
}

impl std::error::Error for TusError {}

/// The `Tus-Resumable` check every tus request but OPTIONS must pass.
pub fn check_version(head: &Head) -> Result<(), TusError> {
    match head.header("tus-resumable").map(str::trim) {
        Some(VERSION) => Ok(()),
        other => Err(TusError::Version(
            other.map(|v| v.chars().take(32).collect()),
        )),
    }
}

/// The method the client means: `X-HTTP-Method-Override` wins (for environments without PATCH
/// or DELETE), as the protocol requires.
pub fn effective_method(head: &Head) -> Method {
    match head.header("x-http-method-override") {
        Some(name) => Method::parse(name.trim()),
        None => head.method.clone(),
    }
}

/// A header that must be a non-negative decimal integer; `Ok(None)` when absent.
pub fn number(head: &Head, header: &'static str) -> Result<Option<u64>, TusError> {
    match head.header(header) {
        None => Ok(None),
        Some(value) => parse_decimal(value.trim())
            .map(Some)
            .ok_or_else(|| TusError::BadNumber {
                header,
                value: Some(value.chars().take(64).collect()),
            }),
    }
}

/// Like [`number`], refusing an absent header.
pub fn required_number(head: &Head, header: &'static str) -> Result<u64, TusError> {
    number(head, header)?.ok_or(TusError::BadNumber {
        header,
        value: None,
    })
}

/// Whether the request's Content-Type is `application/offset+octet-stream` (parameters aside).
pub fn is_offset_stream(head: &Head) -> bool {
    head.content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
    })
}

/// A new upload id: [`ID_BYTES`] random bytes from the operating system, in hex.
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; ID_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The upload id a PATH_INFO names (`/<id>`), if it is one this server could have issued:
/// exactly 32 lower-case hex digits, nothing else (no `..`, no slash, no encoding).
pub fn parse_id(path_info: &str) -> Option<&str> {
    let id = path_info.strip_prefix('/')?;
    let valid = id.len() == ID_BYTES * 2
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    valid.then_some(id)
}

/// Whether PATH_INFO names something below the endpoint (a tus upload URL, valid or not).
pub fn names_upload(head: &Head) -> bool {
    head.path_info.as_deref().is_some_and(|p| p != "/")
}

/// `Upload-Metadata`: keys and their decoded values, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    /// Parses `key base64,key2 base64,key3` strictly: keys are printable ASCII without space
    /// or comma, each at most once; values are standard base64 (an absent value is empty).
    pub fn parse(header: Option<&str>) -> Result<Metadata, TusError> {
        let Some(header) = header else {
            return Ok(Metadata::default());
        };
        if header.len() > MAX_METADATA {
            return Err(TusError::BadMetadata(format!(
                "{} bytes, more than {MAX_METADATA}",
                header.len()
            )));
        }
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        for item in header.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once(' ') {
                Some((key, value)) => (key, value.trim()),
                None => (item, ""),
            };
            if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(TusError::BadMetadata(format!("key {key:?}")));
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(TusError::BadMetadata(format!("key {key:?} twice")));
            }
            let value = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| TusError::BadMetadata(format!("{key}: value is not base64")))?;
            pairs.push((key.to_string(), value));
        }
        Ok(Metadata { pairs })
    }

    /// A value as text (lossy), `None` when absent or empty.
    pub fn text(&self, key: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
    }

    /// The file's name: `filename` (tus-js-client's and tusd's key), else `name` (Uppy's).
    pub fn filename(&self) -> Option<String> {
        self.text("filename").or_else(|| self.text("name"))
    }

    /// `relativePath` for files from a dropped folder. Uppy sends the string `null` when there
    /// is none: that is no path.
    pub fn relative_path(&self) -> Option<String> {
        self.text("relativePath").filter(|p| p != "null")
    }

    /// The header value as a HEAD answers it: what the client sent, re-encoded canonically.
    pub fn render(&self) -> Option<String> {
        if self.pairs.is_empty() {
            return None;
        }
        let items: Vec<String> = self
            .pairs
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!(
                        "{k} {}",
                        base64::engine::general_purpose::STANDARD.encode(v)
                    )
                }
            })
            .collect();
        Some(items.join(","))
    }
}

/// An `Upload-Checksum`: the algorithm and the digest the body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

impl Checksum {
    pub fn parse(header: Option<&str>) -> Result<Option<Checksum>, TusError> {
        let Some(header) = header else {
            return Ok(None);
        };
        let (name, value) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| TusError::BadChecksum("expected `<algorithm> <base64>`".into()))?;
        let (algorithm, len) = match name {
            "sha1" => (Algorithm::Sha1, 20),
            "sha256" => (Algorithm::Sha256, 32),
            other => {
                return Err(TusError::UnsupportedAlgorithm(
                    other.chars().take(32).collect(),
                ))
            }
        };
        let digest = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| TusError::BadChecksum("the digest is not base64".into()))?;
        if digest.len() != len {
            return Err(TusError::BadChecksum(format!(
                "a {name} digest is {len} bytes, not {}",
                digest.len()
            )));
        }
        Ok(Some(Checksum { algorithm, digest }))
    }
}

/// Reads through to the body while hashing what passes, for checking `Upload-Checksum`.
pub struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Hasher,
}

enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl<'a> HashingReader<'a> {
    pub fn new(inner: &'a mut dyn Read, algorithm: Algorithm) -> HashingReader<'a> {
        let hasher = match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        };
        HashingReader { inner, hasher }
    }

    /// Whether what was read hashes to `expected`.
    pub fn matches(self, expected: &[u8]) -> bool {
        match self.hasher {
            Hasher::Sha1(h) => h.finalize().as_slice() == expected,
            Hasher::Sha256(h) => h.finalize().as_slice() == expected,
        }
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match &mut self.hasher {
            Hasher::Sha1(h) => h.update(&buf[..n]),
            Hasher::Sha256(h) => h.update(&buf[..n]),
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head::with_headers(crate::request::Method::Get, headers)
    }

    #[test]
    fn versions_and_numbers() {
        assert!(check_version(&head(&[("tus-resumable", "1.0.0")])).is_ok());
        assert_eq!(
            check_version(&head(&[("tus-resumable", "0.2.2")])),
            Err(TusError::Version(Some("0.2.2".into())))
        );
        assert_eq!(check_version(&head(&[])), Err(TusError::Version(None)));
        let h = head(&[("upload-offset", "-5"), ("upload-length", "12")]);
        assert!(number(&h, "upload-offset").is_err());
        assert_eq!(number(&h, "upload-length"), Ok(Some(12)));
        assert_eq!(number(&h, "upload-x"), Ok(None));
        assert!(required_number(&h, "upload-x").is_err());
        for bad in ["0x10", "1e3", "1.0", "+1", "", "99999999999999999999"] {
            assert!(number(&head(&[("n", bad)]), "n").is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_exactly_what_new_id_makes() {
        let id = new_id().unwrap();
        assert_eq!(parse_id(&format!("/{id}")), Some(id.as_str()));
        assert_ne!(new_id().unwrap(), id);
        for bad in [
            "",
            "/",
            "/..",
            "/../etc/passwd",
            &format!("/{id}/x"),
            &format!("/{}", id.to_uppercase()),
            &format!("/{}", &id[1..]),
            &format!("/{id}0"),
            &format!("//{id}"),
            "/%2e%2e",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn metadata_is_strict_base64_with_unique_keys() {
        let m = Metadata::parse(Some(
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential, relativePath bnVsbA==",
        ))
        .unwrap();
        assert_eq!(m.filename().as_deref(), Some("world_domination_plan.pdf"));
        assert_eq!(m.text("is_confidential"), None);
        assert_eq!(m.relative_path(), None, "Uppy's \"null\" is no path");
        assert_eq!(
            m.render().as_deref(),
            Some("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,relativePath bnVsbA==")
        );
        let uppy = Metadata::parse(Some("name YS50eHQ=,type dGV4dC9wbGFpbg==")).unwrap();
        assert_eq!(uppy.filename().as_deref(), Some("a.txt"));
        for bad in [
            "filename !!!",
            "filename aGVsbG8",
            "a aGk=,a aGk=",
            "k\u{1}y aGk=",
            "ключ aGk=",
        ] {
            assert!(Metadata::parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(Metadata::parse(Some(&"a".repeat(MAX_METADATA + 1))).is_err());
        assert_eq!(Metadata::parse(None).unwrap().render(), None);
    }

    #[test]
    fn checksums() {
        // sha1("hello world")
        let c = Checksum::parse(Some("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="))
            .unwrap()
            .unwrap();
        let mut body: &[u8] = b"hello world";
        let mut reader = HashingReader::new(&mut body, c.algorithm);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert!(reader.matches(&c.digest));
        assert_eq!(
            Checksum::parse(Some("md5 XrY7u+Ae7tCTyyK7j1rNww==")),
            Err(TusError::UnsupportedAlgorithm("md5".into()))
        );
        assert!(Checksum::parse(Some("sha1")).is_err());
        assert!(Checksum::parse(Some("sha1 !!")).is_err());
        assert!(Checksum::parse(Some("sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")).is_err());
        assert_eq!(Checksum::parse(None), Ok(None));
    }
}
