//! Protocol parameters (resumable*, flow*, unprefixed) merged from the query string and form
//! fields, turned into one validated [`ChunkRequest`].

use std::fmt;

use super::geometry::{Geometry, GeometryError};

/// Which client's parameter names a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// resumable.js: `resumableChunkNumber`, ...
    Resumable,
    /// flow.js: `flowChunkNumber`, ...
    Flow,
    /// simple-uploader.js (a flow.js fork): `chunkNumber`, ...
    Unprefixed,
}

impl Dialect {
    fn prefix(self) -> &'static str {
        match self {
            Dialect::Resumable => "resumable",
            Dialect::Flow => "flow",
            Dialect::Unprefixed => "",
        }
    }

    /// The wire name of a field: `resumable` + `ChunkNumber`, or `chunkNumber` unprefixed.
    pub fn name(self, field: &str) -> String {
        match self {
            Dialect::Unprefixed => {
                let mut chars = field.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            _ => format!("{}{}", self.prefix(), field),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Resumable => "resumable",
            Dialect::Flow => "flow",
            Dialect::Unprefixed => "unprefixed",
        }
    }
}

/// Longest identifier, file name or relative path accepted (bytes). Longer values are refused
/// rather than truncated: two different long names must never map to the same upload.
pub const MAX_TEXT_PARAM: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// No `resumableIdentifier`, `flowIdentifier` or `identifier`.
    NoDialect,
    Missing(String),
    NotANumber {
        name: String,
        value: String,
    },
    Empty(String),
    TooLong {
        name: String,
        len: usize,
    },
    /// The same name arrived twice with different values (query vs form, or repeated).
    Conflicting {
        name: String,
    },
    Geometry(GeometryError),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NoDialect => write!(
                f,
                "no resumableIdentifier, flowIdentifier or identifier parameter"
            ),
            ParamError::Missing(name) => write!(f, "missing parameter {name}"),
            ParamError::NotANumber { name, value } => {
                write!(
                    f,
                    "parameter {name}={value:?} is not a whole number of bytes"
                )
            }
            ParamError::Empty(name) => write!(f, "parameter {name} is empty"),
            ParamError::TooLong { name, len } => {
                write!(
                    f,
                    "parameter {name} is {len} bytes, more than {MAX_TEXT_PARAM}"
                )
            }
            ParamError::Conflicting { name } => {
                write!(f, "parameter {name} was sent twice with different values")
            }
            ParamError::Geometry(e) => write!(f, "{e}"),
        }
    }
}

/// Name/value pairs from every place a client puts them, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_query(query: &str) -> Params {
        // serde_urlencoded decodes `+` and percent-escapes; invalid UTF-8 becomes U+FFFD.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        Params { pairs }
    }

    pub fn push(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }

    /// The value of `name`; every occurrence must agree (resumable.js sends each parameter in
    /// the query and in the form, with the same value).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ParamError> {
        let mut found: Option<&str> = None;
        for (n, v) in &self.pairs {
            if n == name {
                match found {
                    Some(previous) if previous != v => {
                        return Err(ParamError::Conflicting {
                            name: name.to_string(),
                        })
                    }
                    _ => found = Some(v),
                }
            }
        }
        Ok(found)
    }

    pub fn dialect(&self) -> Option<Dialect> {
        [Dialect::Resumable, Dialect::Flow, Dialect::Unprefixed]
            .into_iter()
            .find(|d| self.pairs.iter().any(|(n, _)| *n == d.name("Identifier")))
    }
}

/// One chunk (or test for one chunk) as the client described it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    pub dialect: Dialect,
    pub identifier: String,
    pub filename: String,
    /// `dir/sub/file.txt` for files from a dropped folder; may equal the file name.
    pub relative_path: Option<String>,
    pub geometry: Geometry,
    pub total_chunks: Option<u64>,
}

impl ChunkRequest {
    pub fn from_params(params: &Params) -> Result<ChunkRequest, ParamError> {
        let dialect = params.dialect().ok_or(ParamError::NoDialect)?;
        let text = |field: &str, required: bool| -> Result<Option<String>, ParamError> {
            let name = dialect.name(field);
            match params.get(&name)? {
                None if required => Err(ParamError::Missing(name)),
                None => Ok(None),
                Some(v) if v.is_empty() && required => Err(ParamError::Empty(name)),
                Some("") => Ok(None),
                Some(v) if v.len() > MAX_TEXT_PARAM => {
                    Err(ParamError::TooLong { name, len: v.len() })
                }
                Some(v) => Ok(Some(v.to_string())),
            }
        };
        let number = |field: &str, required: bool| -> Result<Option<u64>, ParamError> {
            let name = dialect.name(field);
            match params.get(&name)? {
                None if !required => Ok(None),
                None => Err(ParamError::Missing(name)),
                Some(v) => parse_decimal(v).map(Some).ok_or(ParamError::NotANumber {
                    name,
                    value: v.chars().take(64).collect(),
                }),
            }
        };
        let identifier = text("Identifier", true)?.unwrap_or_default();
        let filename = text("Filename", true)?.unwrap_or_default();
        let relative_path = text("RelativePath", false)?;
        let chunk_number = number("ChunkNumber", true)?.unwrap_or_default();
        let chunk_size = number("ChunkSize", true)?.unwrap_or_default();
        let current = number("CurrentChunkSize", true)?.unwrap_or_default();
        let total_size = number("TotalSize", true)?.unwrap_or_default();
        let total_chunks = number("TotalChunks", false)?;
        let geometry = Geometry::check(chunk_number, chunk_size, current, total_size, total_chunks)
            .map_err(ParamError::Geometry)?;
        Ok(ChunkRequest {
            dialect,
            identifier,
            filename,
            relative_path,
            geometry,
            total_chunks,
        })
    }
}

/// Plain decimal digits only, as JavaScript writes its numbers: no sign, no spaces, no `0x`,
/// no exponent, no fraction; at most u64.
pub fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Result<ChunkRequest, ParamError> {
        ChunkRequest::from_params(&Params::from_query(query))
    }

    const RESUMABLE: &str = "resumableChunkNumber=2&resumableChunkSize=10&resumableCurrentChunkSize=15&resumableTotalSize=25&resumableType=text%2Fplain&resumableIdentifier=25-myfile1txt&resumableFilename=my%20file%20(1).txt&resumableRelativePath=my%20file%20(1).txt&resumableTotalChunks=2";

    #[test]
    fn resumable_query_from_protocol_md() {
        let r = request(RESUMABLE).unwrap();
        assert_eq!(r.dialect, Dialect::Resumable);
        assert_eq!(r.identifier, "25-myfile1txt");
        assert_eq!(r.filename, "my file (1).txt");
        assert_eq!(r.geometry.start, 10);
        assert_eq!(r.geometry.size, 15);
        assert_eq!(r.total_chunks, Some(2));
    }

    #[test]
    fn flow_and_unprefixed_names() {
        let flow = RESUMABLE.replace("resumable", "flow");
        assert_eq!(request(&flow).unwrap().dialect, Dialect::Flow);
        let plain = "chunkNumber=1&chunkSize=10&currentChunkSize=5&totalSize=5&identifier=x&filename=a.txt&relativePath=&totalChunks=1";
        let r = request(plain).unwrap();
        assert_eq!(r.dialect, Dialect::Unprefixed);
        assert_eq!(r.relative_path, None);
    }

    #[test]
    fn numbers_are_strict() {
        for bad in [
            "-1",
            "+1",
            "1.0",
            "0x10",
            "1e3",
            " 1",
            "",
            "18446744073709551616",
        ] {
            let q = RESUMABLE.replace(
                "resumableTotalSize=25",
                &format!("resumableTotalSize={bad}"),
            );
            assert!(
                matches!(request(&q), Err(ParamError::NotANumber { .. })),
                "{bad}"
            );
        }
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn missing_and_conflicting_values() {
        assert_eq!(request("a=b").unwrap_err(), ParamError::NoDialect);
        let q = RESUMABLE.replace("&resumableFilename=my%20file%20(1).txt", "");
        assert_eq!(
            request(&q).unwrap_err(),
            ParamError::Missing("resumableFilename".into())
        );
        let q = RESUMABLE.replace("resumableIdentifier=25-myfile1txt", "resumableIdentifier=");
        assert_eq!(
            request(&q).unwrap_err(),
            ParamError::Empty("resumableIdentifier".into())
        );
        let mut params = Params::from_query(RESUMABLE);
        params.push("resumableChunkNumber".into(), "2".into());
        assert!(ChunkRequest::from_params(&params).is_ok());
        params.push("resumableChunkNumber".into(), "1".into());
        assert!(matches!(
            ChunkRequest::from_params(&params),
            Err(ParamError::Conflicting { .. })
        ));
    }
}
