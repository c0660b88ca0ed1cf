//! Request parameters merged from the query string and form fields, and the strict readers
//! every dialect uses for their text and number values.

use std::fmt;

use super::geometry::GeometryError;

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

impl std::error::Error for ParamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParamError::Geometry(e) => Some(e),
            _ => None,
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

    /// Every name/value pair, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether any value was sent under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// A required or optional text value, refused when longer than [`MAX_TEXT_PARAM`] (never
    /// truncated: two long names must not map to one upload). An empty value is "absent" for an
    /// optional field and [`ParamError::Empty`] for a required one.
    pub fn text(&self, name: &str, required: bool) -> Result<Option<String>, ParamError> {
        match self.get(name)? {
            None if required => Err(ParamError::Missing(name.to_string())),
            None => Ok(None),
            Some("") if required => Err(ParamError::Empty(name.to_string())),
            Some("") => Ok(None),
            Some(v) if v.len() > MAX_TEXT_PARAM => Err(ParamError::TooLong {
                name: name.to_string(),
                len: v.len(),
            }),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    /// A required or optional whole number, strictly decimal ([`parse_decimal`]).
    pub fn number(&self, name: &str, required: bool) -> Result<Option<u64>, ParamError> {
        match self.get(name)? {
            None if !required => Ok(None),
            None => Err(ParamError::Missing(name.to_string())),
            Some(v) => parse_decimal(v).map(Some).ok_or(ParamError::NotANumber {
                name: name.to_string(),
                value: v.chars().take(64).collect(),
            }),
        }
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
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal("007"), Some(7));
    }

    #[test]
    fn repeated_names_must_agree() {
        let mut params = Params::from_query("a=1&a=1");
        assert_eq!(params.get("a"), Ok(Some("1")));
        params.push("a".into(), "2".into());
        assert!(matches!(
            params.get("a"),
            Err(ParamError::Conflicting { .. })
        ));
    }

    #[test]
    fn text_values_are_bounded_not_truncated() {
        let long = "x".repeat(MAX_TEXT_PARAM + 1);
        let params = Params::from_query(&format!("n={long}&e="));
        assert!(matches!(
            params.text("n", true),
            Err(ParamError::TooLong { .. })
        ));
        assert_eq!(params.text("e", false), Ok(None));
        assert_eq!(params.text("e", true), Err(ParamError::Empty("e".into())));
        assert_eq!(params.text("m", true), Err(ParamError::Missing("m".into())));
    }
}
