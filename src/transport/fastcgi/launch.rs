//! How the worker got its listening socket: inherited (systemd fd 3, or fd 0 from spawn-fcgi /
//! mod_fcgid), or bound from `--listen`; plus the command-line options.

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustix::net::{sockopt, AddressFamily};

use super::params::Params;
use super::server::{self, Listener, Options};
use crate::request::Response;

/// Default pool size: uploads are I/O-bound, so more than the cores; each busy worker costs
/// well under 1 MiB (buffers) plus its thread.
pub const DEFAULT_WORKERS: usize = 16;
const MAX_WORKERS: usize = 4096;
const SD_LISTEN_FDS_START: i32 = 3;

struct Cli {
    listen: Option<String>,
    socket_mode: u32,
    workers: usize,
    /// Benchmark aid, not for production: read and discard every body and answer 200, so the
    /// FastCGI path can be measured without the store.
    discard: bool,
    /// Benchmark aid, not for production: write every body to a file in this directory (a
    /// temp name, then renamed over one of 256 slots) and answer 200, so the FastCGI path plus
    /// the disk work any storing backend pays can be measured without the store's logic.
    sink: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        listen: None,
        socket_mode: 0o660,
        workers: DEFAULT_WORKERS,
        discard: false,
        sink: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match name {
            "fastcgi" => {}
            "--listen" => cli.listen = Some(value()?),
            "--socket-mode" => {
                let text = value()?;
                cli.socket_mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or(format!(
                        "--socket-mode {text:?}: expected octal such as 0660"
                    ))?;
            }
            "--workers" => {
                let text = value()?;
                cli.workers = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_WORKERS).contains(n))
                    .ok_or(format!("--workers {text:?}: expected 1 to {MAX_WORKERS}"))?;
            }
            "--discard" => cli.discard = true,
            "--sink" => cli.sink = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(cli)
}

/// Modes 2 and 3: a listening socket handed over by the launcher, if there is one.
fn inherited_listener() -> io::Result<Option<(Listener, &'static str)>> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    if var("LISTEN_PID") == Some(std::process::id()) && var("LISTEN_FDS").unwrap_or(0) >= 1 {
        // SAFETY: sd_listen_fds(3) hands fds 3.. to the process named by LISTEN_PID, which we
        // just checked is us; nothing else in this process has touched fd 3.
        let fd = unsafe { BorrowedFd::borrow_raw(SD_LISTEN_FDS_START) };
        if !is_listening(fd) {
            return Err(io::Error::other(
                "LISTEN_FDS is set but fd 3 is not a listening socket",
            ));
        }
        // SAFETY: as above; ownership is taken exactly once, here.
        let owned = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
        rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
        return Ok(Some((
            listener_from(owned)?,
            "systemd socket activation (fd 3)",
        )));
    }
    let stdin = io::stdin();
    let fd0 = stdin.as_fd();
    if is_listening(fd0) {
        // Duplicated so that no unsafe ownership claim on fd 0 is needed.
        let owned = fd0.try_clone_to_owned()?;
        return Ok(Some((listener_from(owned)?, "listening socket on fd 0")));
    }
    Ok(None)
}

/// SO_ACCEPTCONN: true only for a listening socket; a pipe, tty or file answers ENOTSOCK.
fn is_listening(fd: BorrowedFd<'_>) -> bool {
    sockopt::socket_acceptconn(fd).unwrap_or(false)
}

fn listener_from(fd: OwnedFd) -> io::Result<Listener> {
    if sockopt::socket_domain(&fd)? == AddressFamily::UNIX {
        Ok(Listener::Unix(UnixListener::from(fd)))
    } else {
        Ok(Listener::Tcp(TcpListener::from(fd)))
    }
}

/// `unix:/path`, or anything with a slash, is a unix socket; everything else is HOST:PORT.
fn unix_path(listen: &str) -> Option<PathBuf> {
    if let Some(path) = listen.strip_prefix("unix:") {
        return Some(PathBuf::from(path));
    }
    listen.contains('/').then(|| PathBuf::from(listen))
}

fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Replace a socket left by a crashed worker, never a live one or another kind of file.
        if !meta.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created owner-only, then opened up to `mode`: never briefly wider than asked.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

fn run(listener: Listener, cli: &Cli, how: &str) -> ExitCode {
    log::info!("FastCGI mode: {how}");
    let options = Options {
        workers: cli.workers,
    };
    let result = if cli.discard {
        log::warn!("--discard: benchmark mode, bodies are thrown away and nothing is stored");
        server::serve(listener, &options, &discard)
    } else if let Some(dir) = &cli.sink {
        log::warn!(
            "--sink: benchmark mode, bodies are written to {} and nothing is stored",
            dir.display()
        );
        server::serve(
            listener,
            &options,
            &|params: &Params, body: &mut (dyn Read + Send)| sink(dir, params, body),
        )
    } else {
        server::serve(listener, &options, &super::respond)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("FastCGI worker failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Modes 2 and 3. `None` when no listening socket was inherited, so the caller goes on to the
/// command line.
pub fn run_inherited(args: &[String]) -> Option<ExitCode> {
    let (listener, how) = match inherited_listener() {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            log::error!("{e}");
            return Some(ExitCode::FAILURE);
        }
    };
    match parse_args(args) {
        Ok(cli) if cli.listen.is_none() => Some(run(listener, &cli, how)),
        Ok(_) => {
            log::error!("--listen given, but a listening socket was inherited ({how})");
            Some(ExitCode::from(2))
        }
        Err(e) => {
            log::error!("{e}");
            Some(ExitCode::from(2))
        }
    }
}

/// Mode 4: `resumable-cgi fastcgi --listen ADDR [--socket-mode 0660] [--workers N]`.
pub fn run_command(args: &[String]) -> ExitCode {
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("resumable-cgi fastcgi: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(listen) = cli.listen.clone() else {
        eprintln!(
            "resumable-cgi fastcgi: --listen HOST:PORT or --listen /path/to.sock is required \
             (or start it with a listening socket on fd 0 or systemd's fd 3)"
        );
        return ExitCode::from(2);
    };
    match unix_path(&listen) {
        Some(path) => match bind_unix(&path, cli.socket_mode) {
            Ok(listener) => {
                let code = run(Listener::Unix(listener), &cli, "bound unix socket");
                let _ = std::fs::remove_file(&path);
                code
            }
            Err(e) => {
                log::error!("cannot listen on {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        None => match TcpListener::bind(listen.as_str()) {
            Ok(listener) => run(Listener::Tcp(listener), &cli, "bound TCP socket"),
            Err(e) => {
                log::error!("cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The `--discard` responder (benchmark aid): counts and drops the body, stores nothing.
pub fn discard(_params: &Params, body: &mut (dyn Read + Send)) -> Response {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received: u64 = 0;
    loop {
        match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Response::json(
                    400,
                    &serde_json::json!({"success": false, "error": e.to_string()}),
                )
            }
        }
    }
    Response::json(
        200,
        &serde_json::json!({"success": true, "discarded": received}),
    )
}

/// The `--sink DIR` responder (benchmark aid): each body goes to a new file in `dir`, written
/// through a page-aligned 256 KiB buffer like a chunk, then renamed over one of 256 slots (so
/// the disk does not fill, and replaced files are freed as re-sent chunks are). No parsing,
/// no lock, no completion check.
fn sink(dir: &Path, _params: &Params, body: &mut (dyn Read + Send)) -> Response {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    const BUFFER: usize = 256 * 1024;
    const PAGE: usize = 4096;
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".body-{}-{seq}.tmp", std::process::id()));
    let result = (|| -> io::Result<u64> {
        let mut file = std::fs::File::create_new(&temp)?;
        let mut storage = vec![0u8; BUFFER + PAGE];
        let skew = (PAGE - storage.as_ptr() as usize % PAGE) % PAGE;
        let buffer = &mut storage[skew..skew + BUFFER];
        let mut received = 0u64;
        loop {
            match body.read(buffer) {
                Ok(0) => break,
                Ok(n) => {
                    file.write_all(&buffer[..n])?;
                    received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        drop(file);
        std::fs::rename(&temp, dir.join(format!("body-{}", seq % 256)))?;
        Ok(received)
    })();
    match result {
        Ok(received) => Response::json(
            200,
            &serde_json::json!({"success": true, "written": received}),
        ),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Response::json(
                500,
                &serde_json::json!({"success": false, "error": e.to_string()}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let cli = parse_args(&args(&[
            "--listen",
            "/tmp/x.sock",
            "--socket-mode=0600",
            "--workers",
            "4",
        ]))
        .unwrap();
        assert_eq!(cli.listen.as_deref(), Some("/tmp/x.sock"));
        assert_eq!(cli.socket_mode, 0o600);
        assert_eq!(cli.workers, 4);
        assert!(parse_args(&args(&["--workers", "0"])).is_err());
        assert!(parse_args(&args(&["--socket-mode", "999"])).is_err());
        assert!(parse_args(&args(&["--listen"])).is_err());
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert!(parse_args(&args(&["--sink"])).is_err());
        let sink = parse_args(&args(&["--sink", "/tmp/bodies"])).unwrap().sink;
        assert_eq!(sink, Some(PathBuf::from("/tmp/bodies")));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(unix_path("127.0.0.1:9000"), None);
        assert_eq!(unix_path("[::1]:9000"), None);
        assert_eq!(unix_path("/run/x.sock"), Some(PathBuf::from("/run/x.sock")));
        assert_eq!(unix_path("unix:x.sock"), Some(PathBuf::from("x.sock")));
    }

    #[test]
    fn a_pipe_on_fd0_is_not_a_listener() {
        let (reader, _writer) = std::io::pipe().unwrap();
        assert!(!is_listening(reader.as_fd()));
    }
}
