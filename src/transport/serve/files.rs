//! The development server's read-only view of the upload dir: a listing page and downloads.

use std::fmt::Write as _;
use std::path::Path;

use crate::escape::{html_escape, percent_decode, percent_encode_path};
use crate::request::{Body, Response};
use crate::store::published;

/// The listing walks at most this deep and this many entries, whatever is in the upload dir.
const LIST_MAX_DEPTH: usize = 20;
const LIST_MAX_ENTRIES: usize = 5000;

fn text(status: u16, message: &str) -> Response {
    Response::new(status)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_bytes(message.as_bytes().to_vec())
}

/// `/files/<path>`: the path, decoded, as components that stay inside the upload dir.
/// `None` for anything that could climb out or name a hidden entry.
fn safe_components(encoded: &str) -> Option<Vec<String>> {
    let decoded = String::from_utf8(percent_decode(encoded)?).ok()?;
    let components: Vec<String> = decoded.split('/').map(str::to_string).collect();
    let acceptable = |c: &String| {
        !c.is_empty()
            && !c.starts_with('.')
            && !c.contains('\\')
            && !c.chars().any(char::is_control)
    };
    (!components.is_empty() && components.len() <= LIST_MAX_DEPTH + 1)
        .then_some(())
        .filter(|()| components.iter().all(acceptable))
        .map(|()| components)
}

/// `/files/<path>`: the file as bytes to save, never as a page to render.
pub fn download(upload_dir: &Path, encoded: &str) -> Response {
    let Some(components) = safe_components(encoded) else {
        return text(400, "bad file path\n");
    };
    match published::open(upload_dir, &components) {
        Ok((file, len)) => {
            let name = components.last().map(String::as_str).unwrap_or("download");
            let mut response = Response::new(200)
                // Served as bytes, never rendered: an uploaded .html must not run as this
                // site's page.
                .with_header("Content-Type", "application/octet-stream")
                .with_header("X-Content-Type-Options", "nosniff")
                .with_header(
                    "Content-Disposition",
                    &format!(
                        "attachment; filename*=UTF-8''{}",
                        percent_encode_path(&[name.to_string()])
                    ),
                );
            response.body = Body::File { file, len };
            response
        }
        Err(e) => {
            log::debug!("download {encoded:?} refused: {e}");
            text(404, "no such uploaded file\n")
        }
    }
}

fn human_size(size: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} bytes")
    } else {
        format!("{value:.1} {} ({size} bytes)", UNITS[unit])
    }
}

/// `/files/`: every published file with its size, linked for download.
pub fn listing_page(upload_dir: &Path) -> Response {
    let listing = match published::list(upload_dir, LIST_MAX_DEPTH, LIST_MAX_ENTRIES) {
        Ok(listing) => listing,
        Err(e) => {
            log::error!("cannot list {}: {e}", upload_dir.display());
            return text(500, "the upload directory cannot be read\n");
        }
    };
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Uploaded files</title><link rel=\"icon\" href=\"data:,\">\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}\
         table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .6rem;\
         border-bottom:1px solid #ddd}td.size{text-align:right;white-space:nowrap}</style>\
         </head><body>\n<h1>Uploaded files</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>In <code>{}</code>. <a href=\"/\">Back to the upload page</a>.</p>",
        html_escape(&upload_dir.display().to_string())
    );
    if listing.files.is_empty() {
        html.push_str("<p id=\"empty\">Nothing uploaded yet.</p>\n");
    } else {
        html.push_str("<table id=\"files\"><tr><th>Name</th><th>Size</th></tr>\n");
        for file in &listing.files {
            let _ = writeln!(
                html,
                "<tr><td><a href=\"/files/{}\">{}</a></td><td class=\"size\" data-bytes=\"{}\">{}</td></tr>",
                percent_encode_path(&file.components),
                html_escape(&file.components.join("/")),
                file.size,
                human_size(file.size)
            );
        }
        html.push_str("</table>\n");
    }
    if listing.truncated {
        let _ = writeln!(
            html,
            "<p>Only the first {LIST_MAX_ENTRIES} files are shown.</p>"
        );
    }
    html.push_str("</body></html>\n");
    Response::html(200, html).with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_cannot_climb_or_hide() {
        assert_eq!(safe_components("a.txt"), Some(vec!["a.txt".to_string()]));
        assert_eq!(
            safe_components("dir/my%20file.txt"),
            Some(vec!["dir".to_string(), "my file.txt".to_string()])
        );
        for bad in [
            "",
            "../etc/passwd",
            "%2e%2e/secret",
            "a/%2E%2E%2Fsecret",
            "a//b",
            ".resumable-staging/x",
            "dir/.hidden",
            "a\\..\\b",
            "%00",
            "%zz",
            "%",
            "%ff",
            "/etc/passwd",
        ] {
            assert_eq!(safe_components(bad), None, "{bad}");
        }
    }

    #[test]
    fn links_round_trip() {
        let components = vec!["d ir".to_string(), "ü & <b>.txt".to_string()];
        let encoded = percent_encode_path(&components);
        assert!(!encoded.contains(' ') && !encoded.contains('<'));
        assert_eq!(safe_components(&encoded), Some(components));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(5), "5 bytes");
        assert_eq!(human_size(3 << 20), "3.0 MiB (3145728 bytes)");
    }
}
