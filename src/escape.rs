//! Percent-encoding of stored paths for links and URLs, and HTML escaping of names shown on a
//! page: the two ways a client-chosen name is made safe to send back.

use std::fmt::Write as _;

/// Encodes a stored path for a link: components joined by `/`, everything but unreserved
/// characters escaped.
pub fn percent_encode_path(components: &[String]) -> String {
    let mut out = String::new();
    for (i, component) in components.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in component.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The public URL of a file stored at `stored_path` (relative to the upload dir, `/`-separated)
/// when the upload dir is served under `prefix` (which ends in `/`).
pub fn public_url(prefix: &str, stored_path: &str) -> String {
    let components: Vec<String> = stored_path.split('/').map(str::to_string).collect();
    format!("{prefix}{}", percent_encode_path(&components))
}

/// Decodes `%XX` escapes; `None` for a malformed escape. `+` stays `+` (a path, not a form).
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let components = vec!["d ir".to_string(), "ü & <b>.txt".to_string()];
        let encoded = percent_encode_path(&components);
        assert_eq!(encoded, "d%20ir/%C3%BC%20%26%20%3Cb%3E.txt");
        assert_eq!(
            percent_decode(&encoded).unwrap(),
            components.join("/").into_bytes()
        );
        for bad in ["%", "%z1", "%1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn public_urls_encode_each_component() {
        assert_eq!(
            public_url("https://example.com/files/", "a b/c#?.txt"),
            "https://example.com/files/a%20b/c%23%3F.txt"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
