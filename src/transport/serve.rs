//! `resumable-cgi serve`: a `php -S`-style development server with the demo page, the upload endpoint (through the same handler as CGI) and a read-only view of the uploads.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Cursor, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tiny_http::{Header, Server, StatusCode};

use crate::config::{process_env_lookup, Config};
use crate::handler;
use crate::request::{Method, Request, Response};
use crate::store::fsutil;

/// The demo page: our own uploader in plain JavaScript, speaking the resumable.js protocol.
const DEMO_PAGE: &str = include_str!("../../assets/demo.html");

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Requests handled at once; more wait for a slot, so memory stays bounded under a flood.
const MAX_IN_FLIGHT: usize = 32;
/// How long a stop waits for requests already running (a chunk being written) to finish.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The listing walks at most this deep and this many entries, whatever is in the upload dir.
const LIST_MAX_DEPTH: usize = 20;
const LIST_MAX_ENTRIES: usize = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub listen: String,
}

/// Parses the arguments after `serve`.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        listen: DEFAULT_LISTEN.to_string(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--listen" || arg == "-l" {
            match rest.next() {
                Some(value) => options.listen = value.clone(),
                None => return Err("--listen needs an address such as 127.0.0.1:8080".into()),
            }
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            options.listen = value.to_string();
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok(options)
}

/// Runs the server until SIGINT or SIGTERM. Errors are the ones that prevent starting.
pub fn run(options: &Options) -> Result<(), String> {
    let config = Config::from_lookup(&process_env_lookup).map_err(|e| e.to_string())?;
    // CGI mode insists the directories exist (a typo there must not scatter files); here the
    // point is a first run with nothing prepared, so create them.
    for dir in [&config.temp_dir, &config.upload_dir] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let server = Server::http(options.listen.as_str())
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let server = Arc::new(server);
    let bound = server.server_addr().to_ip();

    let stopping = Arc::new(AtomicBool::new(false));
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("cannot catch signals: {e}"))?;
    {
        let server = Arc::clone(&server);
        let stopping = Arc::clone(&stopping);
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if stopping.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: the user does not want to wait for running requests.
                    log::warn!("second signal {signal}: stopping without waiting");
                    std::process::exit(1);
                }
                log::info!("signal {signal}: stopping (Ctrl-C again to force)");
                server.unblock();
            }
        });
    }

    let url = match bound {
        Some(addr) => browser_url(addr),
        None => format!("{:?}", server.server_addr()),
    };
    println!("resumable-cgi development server: open {url}");
    println!(
        "  chunks in {}, finished files in {}; for trying things out only,",
        config.temp_dir.display(),
        config.upload_dir.display()
    );
    println!("  production is CGI or FastCGI behind Apache or nginx. Ctrl-C stops.");

    let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
    while !stopping.load(Ordering::SeqCst) {
        let request = match server.recv() {
            Ok(request) => request,
            Err(e) if stopping.load(Ordering::SeqCst) => {
                log::debug!("accept loop ended: {e}");
                break;
            }
            Err(e) => {
                log::warn!("could not read a request: {e}");
                continue;
            }
        };
        let slot = Slot::take(&in_flight);
        let upload_dir = config.upload_dir.clone();
        std::thread::spawn(move || {
            let _slot = slot;
            serve_one(request, &upload_dir);
        });
    }
    wait_for_running(&in_flight);
    log::info!("stopped");
    Ok(())
}

/// The address as a user types it: a wildcard bind is reached through loopback.
fn browser_url(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            format!("http://127.0.0.1:{}/", v4.port())
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => format!("http://[::1]:{}/", v6.port()),
        other => format!("http://{other}/"),
    }
}

/// One request's place among the [`MAX_IN_FLIGHT`]; given back on drop, even if the thread
/// unwinds.
struct Slot(Arc<(Mutex<usize>, Condvar)>);

impl Slot {
    fn take(counter: &Arc<(Mutex<usize>, Condvar)>) -> Slot {
        let (count, changed) = &**counter;
        let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
        while *count >= MAX_IN_FLIGHT {
            count = changed.wait(count).unwrap_or_else(|p| p.into_inner());
        }
        *count += 1;
        Slot(Arc::clone(counter))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (count, changed) = &*self.0;
        let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        changed.notify_all();
    }
}

fn wait_for_running(counter: &Arc<(Mutex<usize>, Condvar)>) {
    let (count, changed) = &**counter;
    let count = count.lock().unwrap_or_else(|p| p.into_inner());
    let (count, timeout) = changed
        .wait_timeout_while(count, STOP_GRACE, |n| *n > 0)
        .unwrap_or_else(|p| p.into_inner());
    if timeout.timed_out() {
        log::warn!(
            "{} request(s) still running after {STOP_GRACE:?}; leaving them",
            *count
        );
    }
}

/// tiny_http hands out its body reader as a plain `&mut dyn Read`, which is not `Send`; the
/// request itself is, so reading through it gives the handler the `Send` stream it needs
/// without buffering the body.
struct Body<'a>(&'a mut tiny_http::Request);

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.as_reader().read(buf)
    }
}

fn serve_one(mut request: tiny_http::Request, upload_dir: &Path) {
    let method = Method::parse(request.method().as_str());
    let url = request.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (url.clone(), String::new()),
    };
    if path == "/upload" {
        // The handler logs its own line for every upload request.
        let response = upload(&mut request, method, query);
        respond(request, response);
        return;
    }
    let reply = if !matches!(method, Method::Get | Method::Head) {
        Reply::text(405, "only GET and HEAD here; uploads go to /upload\n")
            .header("Allow", "GET, HEAD")
    } else if path == "/" || path == "/index.html" {
        Reply::bytes(
            200,
            "text/html; charset=utf-8",
            DEMO_PAGE.as_bytes().to_vec(),
        )
    } else if path == "/files" {
        Reply::text(308, "see /files/\n").header("Location", "/files/")
    } else if path == "/files/" {
        listing_page(upload_dir)
    } else if let Some(rest) = path.strip_prefix("/files/") {
        download(upload_dir, rest)
    } else {
        Reply::text(404, "not found: try / for the demo page\n")
    };
    log::info!("{} {} -> {}", method.as_str(), path, reply.status);
    reply.send(request);
}

fn upload(request: &mut tiny_http::Request, method: Method, query: String) -> Response {
    let content_type = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_string());
    // tiny_http knows the length from Content-Length; for a chunked body it does not, and the
    // handler then bounds the body itself.
    let content_length = request.body_length().map(|n| n as u64);
    let mut body = Body(request);
    let neutral = Request {
        method,
        query,
        content_type,
        content_length,
        remote_user: None,
        body: &mut body,
    };
    handler::handle(&process_env_lookup, neutral)
}

fn respond(request: tiny_http::Request, response: Response) {
    let mut reply = Reply {
        status: response.status,
        headers: response.headers,
        body: Payload::Memory(response.body),
    };
    if reply.find("Content-Type").is_none() && !reply.is_empty() {
        reply = reply.header("Content-Type", "text/plain; charset=utf-8");
    }
    reply.send(request);
}

enum Payload {
    Memory(Vec<u8>),
    /// A file streamed from disk with its size known up front.
    File(File, u64),
}

/// A response of the pages this module serves itself, and the handler's converted to it.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Payload,
}

impl Reply {
    fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Payload::Memory(body),
        }
    }

    fn text(status: u16, text: &str) -> Reply {
        Reply::bytes(
            status,
            "text/plain; charset=utf-8",
            text.as_bytes().to_vec(),
        )
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn find(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_empty(&self) -> bool {
        match &self.body {
            Payload::Memory(bytes) => bytes.is_empty(),
            Payload::File(_, size) => *size == 0,
        }
    }

    fn send(self, request: tiny_http::Request) {
        let headers: Vec<Header> = self
            .headers
            .iter()
            // A header tiny_http cannot represent is dropped rather than failing the response.
            .filter_map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
            .collect();
        let status = StatusCode(self.status);
        // tiny_http switches to chunked encoding above 32 KiB by default; with the length known,
        // Content-Length lets a browser show download progress and a HEAD tell the size.
        let identity = usize::MAX;
        let sent = match self.body {
            Payload::Memory(bytes) => {
                let length = bytes.len();
                request.respond(
                    tiny_http::Response::new(
                        status,
                        headers,
                        Cursor::new(bytes),
                        Some(length),
                        None,
                    )
                    .with_chunked_threshold(identity),
                )
            }
            // A size beyond usize (not on 64-bit) falls back to chunked encoding.
            Payload::File(file, size) => request.respond(
                tiny_http::Response::new(status, headers, file, usize::try_from(size).ok(), None)
                    .with_chunked_threshold(identity),
            ),
        };
        if let Err(e) = sent {
            // The browser went away (a reload mid-upload does this); nothing left to tell it.
            log::debug!("could not send the response: {e}");
        }
    }
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

fn percent_decode(text: &str) -> Option<Vec<u8>> {
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

/// Encodes a stored path for a link: components joined by `/`, everything but unreserved
/// characters escaped.
fn percent_encode_path(components: &[String]) -> String {
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

fn html_escape(text: &str) -> String {
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

/// Opens a stored file for download, one component at a time from the upload dir, refusing a
/// symlink at every step (O_NOFOLLOW), so nothing outside the upload dir is ever reached.
fn open_stored(upload_dir: &Path, components: &[String]) -> io::Result<(File, u64)> {
    let mut dir: OwnedFd = fsutil::open_root(upload_dir)?;
    let (name, folders) = components
        .split_last()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    for folder in folders {
        dir = fsutil::open_dir(dir.as_fd(), folder)?;
    }
    // O_NONBLOCK: a FIFO planted in the upload dir must not hang the request on open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir.as_fd(), name.as_str(), flags, Mode::empty())?;
    let stat = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok((File::from(fd), stat.st_size as u64))
}

fn download(upload_dir: &Path, encoded: &str) -> Reply {
    let Some(components) = safe_components(encoded) else {
        return Reply::text(400, "bad file path\n");
    };
    match open_stored(upload_dir, &components) {
        Ok((file, size)) => {
            let name = components.last().map(String::as_str).unwrap_or("download");
            Reply {
                status: 200,
                headers: vec![
                    // Served as bytes, never rendered: an uploaded .html must not run as this
                    // site's page.
                    ("Content-Type".into(), "application/octet-stream".into()),
                    ("X-Content-Type-Options".into(), "nosniff".into()),
                    (
                        "Content-Disposition".into(),
                        format!(
                            "attachment; filename*=UTF-8''{}",
                            percent_encode_path(&[name.to_string()])
                        ),
                    ),
                ],
                body: Payload::File(file, size),
            }
        }
        Err(e) => {
            log::debug!("download {encoded:?} refused: {e}");
            Reply::text(404, "no such uploaded file\n")
        }
    }
}

/// One published file: its path below the upload dir and its size.
struct Listed {
    components: Vec<String>,
    size: u64,
}

/// Every regular file below the upload dir, skipping hidden entries (the staging folder) and
/// symlinks, bounded in depth and count.
fn list_uploads(upload_dir: &Path) -> io::Result<(Vec<Listed>, bool)> {
    let root = fsutil::open_root(upload_dir)?;
    let mut found = Vec::new();
    let mut pending: Vec<(OwnedFd, Vec<String>)> = vec![(root, Vec::new())];
    let mut truncated = false;
    while let Some((dir, prefix)) = pending.pop() {
        let mut names = fsutil::list(dir.as_fd())?;
        names.sort();
        for name in names {
            if name.starts_with('.') {
                continue;
            }
            if found.len() >= LIST_MAX_ENTRIES {
                truncated = true;
                break;
            }
            let Ok(stat) = rfs::statat(dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let mut components = prefix.clone();
            components.push(name.clone());
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => found.push(Listed {
                    components,
                    size: stat.st_size as u64,
                }),
                FileType::Directory if prefix.len() < LIST_MAX_DEPTH => {
                    if let Ok(sub) = fsutil::open_dir(dir.as_fd(), &name) {
                        pending.push((sub, components));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort_by(|a, b| a.components.cmp(&b.components));
    Ok((found, truncated))
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

fn listing_page(upload_dir: &Path) -> Reply {
    let (files, truncated) = match list_uploads(upload_dir) {
        Ok(listed) => listed,
        Err(e) => {
            log::error!("cannot list {}: {e}", upload_dir.display());
            return Reply::text(500, "the upload directory cannot be read\n");
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
    if files.is_empty() {
        html.push_str("<p id=\"empty\">Nothing uploaded yet.</p>\n");
    } else {
        html.push_str("<table id=\"files\"><tr><th>Name</th><th>Size</th></tr>\n");
        for file in &files {
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
    if truncated {
        let _ = writeln!(
            html,
            "<p>Only the first {LIST_MAX_ENTRIES} files are shown.</p>"
        );
    }
    html.push_str("</body></html>\n");
    Reply::bytes(200, "text/html; charset=utf-8", html.into_bytes())
        .header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args =
            |list: &[&str]| parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&[]).unwrap().listen, DEFAULT_LISTEN);
        assert_eq!(
            args(&["--listen", "0.0.0.0:9"]).unwrap().listen,
            "0.0.0.0:9"
        );
        assert_eq!(args(&["--listen=[::1]:0"]).unwrap().listen, "[::1]:0");
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--port", "1"]).is_err());
    }

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
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(5), "5 bytes");
        assert_eq!(human_size(3 << 20), "3.0 MiB (3145728 bytes)");
    }
}
