//! Cross-origin answers (`RESUMABLE_CORS_ORIGINS`, `RESUMABLE_CORS_CREDENTIALS`): which pages on
//! other origins may upload here, the preflight `OPTIONS` answer, and the headers every answer
//! to such a page carries. Unset, nothing changes; an origin not listed gets no CORS header, so
//! its browser refuses to hand the page any answer.

use crate::request::{Head, Method, Response};

/// Every method some client uses (tus PATCH/DELETE/HEAD, blueimp DELETE, PUT in octet mode).
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
/// Every request header a supported client sends that is not CORS-safelisted: Dropzone and
/// Fine Uploader (X-Requested-With, Cache-Control, X-Mime-Type), blueimp (Content-Range,
/// Content-Disposition), tus-js-client (Tus-*, Upload-*, X-HTTP-Method-Override, X-Request-ID),
/// and Authorization for pages that send a token.
const ALLOW_HEADERS: &str = "Content-Type, X-Requested-With, Cache-Control, X-Mime-Type, \
     Content-Range, Content-Disposition, Tus-Resumable, Upload-Length, Upload-Offset, \
     Upload-Metadata, Upload-Checksum, Upload-Concat, Upload-Defer-Length, \
     X-HTTP-Method-Override, X-Request-ID, Authorization";
/// Response headers a page's client must be able to read: tus needs Location and Upload-Offset
/// (without them it reports "missing Location header"), blueimp reads Range.
const EXPOSE_HEADERS: &str = "Location, Upload-Offset, Upload-Length, Upload-Expires, \
     Upload-Metadata, Upload-Defer-Length, Upload-Concat, Tus-Resumable, Tus-Version, \
     Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Range, Retry-After";
/// How long a browser may keep a preflight answer (Chromium keeps at most two hours of it).
const MAX_AGE: &str = "86400";

/// Which origins may upload from their pages, and whether with cookies and HTTP auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Origins,
    credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    /// Serialised origins (`scheme://host[:port]`, lower case), as browsers send them.
    Listed(Vec<String>),
}

impl CorsPolicy {
    /// `https://a.example http://localhost:3000`, or `*`; empty means no policy.
    pub fn parse(text: &str, credentials: bool) -> Result<Option<CorsPolicy>, &'static str> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Ok(None);
        }
        let origins = if words == ["*"] {
            if credentials {
                return Err("`*` cannot be combined with RESUMABLE_CORS_CREDENTIALS=1: \
                            list the origins that may send credentials");
            }
            Origins::Any
        } else {
            let mut listed = Vec::new();
            for word in words {
                listed.push(normalise(word).ok_or(
                    "expected `*` or space-separated origins such as https://app.example or \
                     http://localhost:3000 (scheme, host, optional port; no path)",
                )?);
            }
            Origins::Listed(listed)
        };
        Ok(Some(CorsPolicy {
            origins,
            credentials,
        }))
    }

    fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::Listed(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// from an allowed origin; `None` for anything else, which is routed as usual.
    pub fn preflight(&self, head: &Head) -> Option<Response> {
        let origin = head.header("origin")?;
        if head.method != Method::Options
            || head.header("access-control-request-method").is_none()
            || !self.allows(origin)
        {
            return None;
        }
        let response = Response::new(204)
            .with_header("Access-Control-Allow-Methods", ALLOW_METHODS)
            .with_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            .with_header("Access-Control-Max-Age", MAX_AGE);
        Some(self.decorate(Some(origin), response))
    }

    /// Adds what every answer carries when a policy is set: `Vary: Origin` (the answer depends
    /// on it), and for an allowed origin the permission to read the answer and its headers.
    pub fn decorate(&self, origin: Option<&str>, response: Response) -> Response {
        let response = response.with_header("Vary", "Origin");
        let Some(origin) = origin.filter(|o| self.allows(o)) else {
            return response;
        };
        let allowed = match (&self.origins, self.credentials) {
            (Origins::Any, false) => "*",
            _ => origin,
        };
        let response = response
            .with_header("Access-Control-Allow-Origin", allowed)
            .with_header("Access-Control-Expose-Headers", EXPOSE_HEADERS);
        if self.credentials {
            response.with_header("Access-Control-Allow-Credentials", "true")
        } else {
            response
        }
    }
}

/// `scheme://host[:port]` in lower case without a trailing slash, or `None` for anything else
/// (a path, a query, credentials, `null`).
fn normalise(word: &str) -> Option<String> {
    let word = word.strip_suffix('/').unwrap_or(word).to_ascii_lowercase();
    let (scheme, rest) = word.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    (scheme_ok && host_ok).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, headers: &[(&str, &str)]) -> Head {
        Head::with_headers(method, headers)
    }

    #[test]
    fn settings() {
        assert_eq!(CorsPolicy::parse("  ", false), Ok(None));
        let listed = CorsPolicy::parse("https://A.example/ http://localhost:3000", true)
            .unwrap()
            .unwrap();
        assert!(listed.allows("https://a.example"));
        assert!(listed.allows("http://localhost:3000"));
        assert!(!listed.allows("http://localhost:3001"));
        assert!(!listed.allows("null"));
        assert!(CorsPolicy::parse("*", true).is_err());
        for bad in [
            "https://a.example/path",
            "a.example",
            "* https://a",
            "null",
            "http://u@h",
        ] {
            assert!(CorsPolicy::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflight_and_answers() {
        let policy = CorsPolicy::parse("http://page:1", false).unwrap().unwrap();
        let ask = [
            ("origin", "http://page:1"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-requested-with",
            ),
        ];
        let answer = policy.preflight(&head(Method::Options, &ask)).unwrap();
        assert_eq!(answer.status, 204);
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some("http://page:1")
        );
        assert!(answer
            .header("Access-Control-Allow-Headers")
            .unwrap()
            .contains("X-Requested-With"));
        assert!(answer.header("Access-Control-Max-Age").is_some());
        assert_eq!(answer.header("Access-Control-Allow-Credentials"), None);
        // another origin, or an OPTIONS that is not a preflight: routed as usual
        let other = [
            ("origin", "http://evil:1"),
            ("access-control-request-method", "POST"),
        ];
        assert!(policy.preflight(&head(Method::Options, &other)).is_none());
        assert!(policy
            .preflight(&head(Method::Options, &[("origin", "http://page:1")]))
            .is_none());

        let plain = policy.decorate(Some("http://evil:1"), Response::new(200));
        assert!(plain
            .headers
            .iter()
            .all(|(n, _)| !n.starts_with("Access-Control")));
        assert_eq!(plain.header("Vary"), Some("Origin"));
        let allowed = policy.decorate(Some("http://page:1"), Response::new(200));
        assert!(allowed
            .header("Access-Control-Expose-Headers")
            .unwrap()
            .contains("Upload-Offset"));

        let any = CorsPolicy::parse("*", false).unwrap().unwrap();
        let answer = any.decorate(Some("http://x:2"), Response::new(200));
        assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
        let with_credentials = CorsPolicy::parse("http://x:2", true).unwrap().unwrap();
        let answer = with_credentials.decorate(Some("http://x:2"), Response::new(200));
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some("http://x:2")
        );
        assert_eq!(
            answer.header("Access-Control-Allow-Credentials"),
            Some("true")
        );
    }
}
