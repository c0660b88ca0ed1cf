//! How the worker got its listening socket: inherited (systemd fd 3, or fd 0 from spawn-fcgi /
//! mod_fcgid), or bound from `--listen`; then the pool runs with a validated configuration.

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rustix::net::{sockopt, AddressFamily};

use super::params::Params;
use super::server::{self, Listener, Options, SharedApp};
use crate::config::Config;
use crate::service::Service;
use crate::transport::shutdown::Shutdown;

/// Default pool size: uploads are I/O-bound, so more than the cores; each busy worker costs
/// well under 1 MiB (buffers) plus its thread.
pub const DEFAULT_WORKERS: usize = 16;
/// The largest pool `--workers` accepts.
pub const MAX_WORKERS: usize = 4096;
const SD_LISTEN_FDS_START: i32 = 3;

/// How the worker serves, whichever way it got its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Permissions of a unix socket the worker binds itself.
    pub socket_mode: u32,
    pub workers: usize,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            socket_mode: 0o660,
            workers: DEFAULT_WORKERS,
        }
    }
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

/// EX_CONFIG (sysexits.h): the worker refuses to start on an invalid setting, so that a typo
/// is seen at start and not as a 500 on every request.
pub const EXIT_CONFIG: u8 = 78;

fn run(listener: Listener, options: &WorkerOptions, how: &str) -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("resumable-cgi fastcgi: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    log::info!("FastCGI mode: {how}");
    let io_timeout = config.io_timeout;
    let service = Arc::new(Service::new(config));
    let app: SharedApp = Arc::new(move |params: &Params, body: &mut (dyn Read + Send)| {
        super::respond(&service, params, body)
    });
    let shutdown = match Shutdown::on_signals(|| {}) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            log::error!("cannot catch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server_options = Options {
        workers: options.workers,
        io_timeout,
    };
    match server::serve(listener, &server_options, app, &shutdown) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("FastCGI worker failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Modes 2 and 3. `None` when no listening socket was inherited, so the caller goes on to the
/// command line. `listen` is the `--listen` the command line gave, which contradicts an
/// inherited socket.
pub fn run_inherited(options: &WorkerOptions, listen: Option<&str>) -> Option<ExitCode> {
    let (listener, how) = match inherited_listener() {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            log::error!("{e}");
            return Some(ExitCode::FAILURE);
        }
    };
    if listen.is_some() {
        log::error!("--listen given, but a listening socket was inherited ({how})");
        return Some(ExitCode::from(2));
    }
    Some(run(listener, options, how))
}

/// Mode 4: `resumable-cgi fastcgi --listen ADDR [--socket-mode 0660] [--workers N]`.
pub fn run_listening(listen: &str, options: &WorkerOptions) -> ExitCode {
    match unix_path(listen) {
        Some(path) => match bind_unix(&path, options.socket_mode) {
            Ok(listener) => {
                let code = run(Listener::Unix(listener), options, "bound unix socket");
                let _ = std::fs::remove_file(&path);
                code
            }
            Err(e) => {
                log::error!("cannot listen on {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        None => match TcpListener::bind(listen) {
            Ok(listener) => run(Listener::Tcp(listener), options, "bound TCP socket"),
            Err(e) => {
                log::error!("cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
