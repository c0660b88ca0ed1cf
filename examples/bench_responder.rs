//! Bench-only FastCGI responders, the limits `bench/run` measures the real worker against; not
//! part of the shipped binary.
//!
//! `--discard` (the default) reads and drops every body; `--sink DIR` writes every body to a
//! file in DIR and nothing else. Both answer 200 with a small JSON body and store no upload.
//! They run on the library's own FastCGI server, so the only difference from the real worker is
//! what happens to the body.
//!
//! ```text
//! cargo run --release --example bench_responder -- \
//!     --listen HOST:PORT|/path/to.sock [--discard | --sink DIR] [--workers N]
//! ```

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use resumable_cgi::buffer::AlignedBuffer;
use resumable_cgi::request::Response;
use resumable_cgi::transport::fastcgi::params::Params;
use resumable_cgi::transport::fastcgi::server::{serve, Listener, Options, SharedApp};
use resumable_cgi::transport::fastcgi::{DEFAULT_WORKERS, MAX_WORKERS};
use resumable_cgi::transport::shutdown::Shutdown;

const USAGE: &str = "\
usage: bench_responder --listen HOST:PORT|/path/to.sock [--discard | --sink DIR] [--workers N]

  --listen ADDR   a unix socket if ADDR contains a slash, else HOST:PORT
  --discard       read and drop every body (the default)
  --sink DIR      write every body to a file in DIR, renamed over one of 256 slots
  --workers N     worker threads (default 16)

Logs go to stderr; RESUMABLE_LOG sets the level (default warn). SIGTERM or SIGINT stops it.
";
/// The discarding responder's read size.
const DISCARD_BUFFER: usize = 64 * 1024;
/// The sink writes through a page-aligned buffer of the size the store's chunk writer uses, so
/// its disk work matches what any storing backend pays.
const SINK_BUFFER: usize = 256 * 1024;
/// Bodies are renamed over this many files, so the disk does not fill during a long run and
/// replaced files are freed as re-sent chunks are.
const SINK_SLOTS: u64 = 256;

enum Mode {
    Discard,
    Sink(PathBuf),
}

struct Cli {
    listen: String,
    mode: Mode,
    workers: usize,
}

fn main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cli = match parse_args(&args) {
        Ok(cli) => cli,
        Err(e) => {
            eprint!("bench_responder: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (listener, socket) = match bind(&cli.listen) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("bench_responder: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let result = run(listener, &cli);
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_responder: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let level = std::env::var("RESUMABLE_LOG").unwrap_or_else(|_| "warn".into());
    env_logger::Builder::new()
        .parse_filters(&level)
        .target(env_logger::Target::Stderr)
        .init();
}

fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut listen = None;
    let mut mode = Mode::Discard;
    let mut workers = DEFAULT_WORKERS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value()?),
            "--discard" => mode = Mode::Discard,
            "--sink" => mode = Mode::Sink(PathBuf::from(value()?)),
            "--workers" => {
                let text = value()?;
                workers = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_WORKERS).contains(n))
                    .ok_or(format!("--workers {text:?}: expected 1 to {MAX_WORKERS}"))?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    Ok(Cli {
        listen,
        mode,
        workers,
    })
}

/// A unix socket (returned with its path, to remove on exit) if `listen` contains a slash,
/// else a TCP socket.
fn bind(listen: &str) -> io::Result<(Listener, Option<PathBuf>)> {
    if !listen.contains('/') {
        return Ok((Listener::Tcp(TcpListener::bind(listen)?), None));
    }
    let path = PathBuf::from(listen);
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        // A socket left by an earlier run is replaced; any other file is left alone.
        if !meta.file_type().is_socket() {
            return Err(io::Error::other("exists and is not a socket"));
        }
        std::fs::remove_file(&path)?;
    }
    Ok((Listener::Unix(UnixListener::bind(&path)?), Some(path)))
}

fn run(listener: Listener, cli: &Cli) -> io::Result<()> {
    let options = Options {
        workers: cli.workers,
        io_timeout: std::time::Duration::from_secs(120),
    };
    let app: SharedApp = match &cli.mode {
        Mode::Discard => {
            log::warn!("benchmark responder: bodies are read and dropped, nothing is stored");
            Arc::new(discard)
        }
        Mode::Sink(dir) => {
            log::warn!(
                "benchmark responder: bodies are written to {}, no upload is stored",
                dir.display()
            );
            let sink = Sink::new(dir);
            Arc::new(move |params: &Params, body: &mut (dyn Read + Send)| {
                sink.respond(params, body)
            })
        }
    };
    let shutdown = Shutdown::on_signals(|| {})?;
    serve(listener, &options, app, &shutdown).map(|_| ())
}

/// Reads `body` to its end through `buffer`, handing each read to `each`; returns the bytes read.
fn drain(
    body: &mut (dyn Read + Send),
    buffer: &mut [u8],
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut received = 0u64;
    loop {
        match body.read(buffer) {
            Ok(0) => return Ok(received),
            Ok(n) => {
                each(&buffer[..n])?;
                received += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn failure(status: u16, error: &io::Error) -> Response {
    Response::json(
        status,
        &serde_json::json!({"success": false, "error": error.to_string()}),
    )
}

/// `--discard`: counts and drops the body.
fn discard(_params: &Params, body: &mut (dyn Read + Send)) -> Response {
    let mut buffer = vec![0u8; DISCARD_BUFFER];
    match drain(body, &mut buffer, |_| Ok(())) {
        Ok(received) => Response::json(
            200,
            &serde_json::json!({"success": true, "discarded": received}),
        ),
        Err(e) => failure(400, &e),
    }
}

/// `--sink DIR`: each body goes to a new file in DIR, then is renamed over one of the slots.
/// No parsing, no lock, no completion check.
struct Sink {
    dir: PathBuf,
    sequence: AtomicU64,
}

impl Sink {
    fn new(dir: &Path) -> Sink {
        Sink {
            dir: dir.to_path_buf(),
            sequence: AtomicU64::new(0),
        }
    }

    fn respond(&self, _params: &Params, body: &mut (dyn Read + Send)) -> Response {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".body-{}-{seq}.tmp", std::process::id()));
        match self.store(&temp, seq, body) {
            Ok(written) => Response::json(
                200,
                &serde_json::json!({"success": true, "written": written}),
            ),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                failure(500, &e)
            }
        }
    }

    fn store(&self, temp: &Path, seq: u64, body: &mut (dyn Read + Send)) -> io::Result<u64> {
        let mut file = std::fs::File::create_new(temp)?;
        let mut buffer = AlignedBuffer::new(SINK_BUFFER);
        let written = drain(body, buffer.as_mut_slice(), |bytes| file.write_all(bytes))?;
        drop(file);
        let slot = self.dir.join(format!("body-{}", seq % SINK_SLOTS));
        std::fs::rename(temp, slot)?;
        Ok(written)
    }
}
