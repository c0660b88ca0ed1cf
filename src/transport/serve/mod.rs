//! `resumable-cgi serve`: a `php -S`-style development server. It routes `/upload` to the same
//! service as CGI, `/` to the demo page and `/files/` to the read-only file browser.

mod demo;
mod files;

use std::fs;
use std::io::{self, Cursor, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tiny_http::{Header, Server, StatusCode};

use crate::config::Config;
use crate::request::{Body, Head, Method, Request, Response};
use crate::service::Service;
use crate::transport::fastcgi::EXIT_CONFIG;
use crate::transport::shutdown::Shutdown;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Requests handled at once; more wait for a slot, so memory stays bounded under a flood.
const MAX_IN_FLIGHT: usize = 32;
/// How long a stop waits for requests already running (a chunk being written) to finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the server until SIGINT or SIGTERM. Refuses to start (exit 78) on an invalid setting.
pub fn run(listen: &str) -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("resumable-cgi serve: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match serve(listen, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resumable-cgi serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listen: &str, mut config: Config) -> Result<(), String> {
    // The file browser below serves the upload dir at /files/: answers link there.
    config
        .public_url
        .get_or_insert_with(|| "/files/".to_string());
    // CGI mode insists the directories exist (a typo there must not scatter files); here the
    // point is a first run with nothing prepared, so create them.
    for dir in [&config.temp_dir, &config.upload_dir] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let server =
        Arc::new(Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?);
    let shutdown = {
        let server = Arc::clone(&server);
        Shutdown::on_signals(move || server.unblock())
            .map_err(|e| format!("cannot catch signals: {e}"))?
    };
    let url = match server.server_addr().to_ip() {
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

    let upload_dir = config.upload_dir.clone();
    let service = Arc::new(Service::new(config));
    while !shutdown.is_requested() {
        let request = match server.recv() {
            Ok(request) => request,
            Err(e) if shutdown.is_requested() => {
                log::debug!("accept loop ended: {e}");
                break;
            }
            Err(e) => {
                log::warn!("could not read a request: {e}");
                continue;
            }
        };
        let running = shutdown.enter(MAX_IN_FLIGHT);
        let (service, upload_dir) = (Arc::clone(&service), upload_dir.clone());
        std::thread::spawn(move || {
            let _running = running;
            serve_one(request, &service, &upload_dir);
        });
    }
    let left = shutdown.drain(STOP_GRACE);
    if left > 0 {
        log::warn!("{left} request(s) still running after {STOP_GRACE:?}; leaving them");
    }
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

/// tiny_http hands out its body reader as a plain `&mut dyn Read`, which is not `Send`; the
/// request itself is, so reading through it gives the service the `Send` stream it needs
/// without buffering the body.
struct BodyReader<'a>(&'a mut tiny_http::Request);

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.as_reader().read(buf)
    }
}

fn serve_one(mut request: tiny_http::Request, service: &Service, upload_dir: &Path) {
    let method = Method::parse(request.method().as_str());
    let url = request.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (url.clone(), String::new()),
    };
    if path == "/upload" || path.starts_with("/upload/") {
        // The service logs its own line for every upload request.
        let head = head_of(&request, method, &path, query);
        let response = service.handle(Request {
            head,
            body: &mut BodyReader(&mut request),
        });
        send(request, response);
        return;
    }
    let response = if !matches!(method, Method::Get | Method::Head) {
        Response::new(405)
            .with_header("Allow", "GET, HEAD")
            .with_bytes(b"only GET and HEAD here; uploads go to /upload\n".to_vec())
    } else if path == "/" || path == "/index.html" {
        demo::page()
    } else if path == "/files" {
        Response::new(308)
            .with_header("Location", "/files/")
            .with_bytes(b"see /files/\n".to_vec())
    } else if path == "/files/" {
        files::listing_page(upload_dir)
    } else if let Some(rest) = path.strip_prefix("/files/") {
        files::download(upload_dir, rest)
    } else {
        Response::new(404).with_bytes(b"not found: try / for the demo page\n".to_vec())
    };
    log::info!("{} {} -> {}", method.as_str(), path, response.status);
    send(request, response);
}

/// The request as a CGI program would see it, with `/upload` as the script.
fn head_of(request: &tiny_http::Request, method: Method, path: &str, query: String) -> Head {
    let mut vars: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            let name = h
                .field
                .as_str()
                .as_str()
                .to_ascii_uppercase()
                .replace('-', "_");
            (format!("HTTP_{name}"), h.value.as_str().to_string())
        })
        .collect();
    vars.push(("REQUEST_METHOD".into(), method.as_str().to_string()));
    vars.push(("QUERY_STRING".into(), query));
    vars.push(("SCRIPT_NAME".into(), "/upload".into()));
    vars.push(("REQUEST_URI".into(), request.url().to_string()));
    if let Some(rest) = path.strip_prefix("/upload") {
        vars.push(("PATH_INFO".into(), rest.to_string()));
    }
    if let Some(content_type) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
    {
        vars.push((
            "CONTENT_TYPE".into(),
            content_type.value.as_str().to_string(),
        ));
    }
    let mut head = Head::from_cgi_vars(vars);
    // tiny_http knows the length from Content-Length; for a chunked body it does not, and the
    // service then bounds the body itself.
    head.content_length = request.body_length().map(|n| n as u64);
    head
}

fn send(request: tiny_http::Request, response: Response) {
    let mut headers: Vec<Header> = response
        .headers
        .iter()
        // A header tiny_http cannot represent is dropped rather than failing the response.
        .filter_map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    if response.header("Content-Type").is_none() && response.body_len() > 0 {
        headers.extend(Header::from_bytes("Content-Type", "text/plain; charset=utf-8").ok());
    }
    let status = StatusCode(response.status);
    // tiny_http switches to chunked encoding above 32 KiB by default; with the length known,
    // Content-Length lets a browser show download progress and a HEAD tell the size.
    let identity = usize::MAX;
    let sent = match response.body {
        Body::Bytes(bytes) => {
            let length = bytes.len();
            request.respond(
                tiny_http::Response::new(status, headers, Cursor::new(bytes), Some(length), None)
                    .with_chunked_threshold(identity),
            )
        }
        // A size beyond usize (not on 64-bit) falls back to chunked encoding.
        Body::File { file, len } => request.respond(
            tiny_http::Response::new(status, headers, file, usize::try_from(len).ok(), None)
                .with_chunked_threshold(identity),
        ),
    };
    if let Err(e) = sent {
        // The browser went away (a reload mid-upload does this); nothing left to tell it.
        log::debug!("could not send the response: {e}");
    }
}
