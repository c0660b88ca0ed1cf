//! The worker pool: a fixed number of threads accept from one listening socket and each serves
//! one connection at a time; accept errors back off; a requested shutdown drains and stops.

use std::io::{self, Read, Write};
use std::net::{self, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::connection::{App, Connection, Ending, Limits};
use super::params::Params;
use crate::request::Response;
use crate::transport::shutdown::Shutdown;

/// How long shutdown waits for in-flight requests before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a lingering close waits for the peer's next bytes or its end.
const LINGER_STALL: Duration = Duration::from_secs(2);
/// The longest a lingering close reads what the peer still sends.
const LINGER_MAX: Duration = Duration::from_secs(30);
/// How often blocked waits look at the stop flag.
const TICK: Duration = Duration::from_millis(200);

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l) => l.set_nonblocking(on),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "unix socket".into()),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl Stream {
    fn prepare(&self, io_timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(io_timeout))?;
                s.set_write_timeout(Some(io_timeout))
            }
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(io_timeout))?;
                s.set_write_timeout(Some(io_timeout))
            }
        }
    }

    /// Ends a connection whose last request was answered before its body was all read: our
    /// side is closed first (the web server sees the end of the answer at once), then what
    /// still comes in is read and dropped until the peer closes too, a read stalls for
    /// [`LINGER_STALL`], [`LINGER_MAX`] passed, or a stop is requested. Closing with unread
    /// input would send a reset, which can destroy the answer before the peer reads it.
    fn linger_close(&self, stop: &AtomicBool) {
        let ended = match self {
            Stream::Tcp(s) => s
                .shutdown(net::Shutdown::Write)
                .and_then(|()| s.set_read_timeout(Some(LINGER_STALL))),
            Stream::Unix(s) => s
                .shutdown(net::Shutdown::Write)
                .and_then(|()| s.set_read_timeout(Some(LINGER_STALL))),
        };
        if ended.is_err() {
            return;
        }
        let started = Instant::now();
        let mut sink = vec![0u8; 64 * 1024];
        let mut reader = self;
        while started.elapsed() < LINGER_MAX && !stop.load(Ordering::SeqCst) {
            match reader.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(net::Shutdown::Both),
        };
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits until `fd` is readable (or hung up). False when `stop` was raised first or `limit`
/// passed, so an idle connection never holds a worker through shutdown. With `data_first`,
/// input that is already waiting wins over `stop`: a request the server has sent on an
/// accepted connection is in flight and gets served.
fn wait_readable(
    fd: BorrowedFd<'_>,
    stop: &AtomicBool,
    limit: Option<Duration>,
    data_first: bool,
) -> bool {
    let started = Instant::now();
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: TICK.as_nanos() as _,
    };
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if data_first {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        if matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0) {
            return true;
        }
    }
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if limit.is_some_and(|limit| started.elapsed() >= limit) {
            return false;
        }
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(0) => continue,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // Let the read that follows report whatever is wrong with the fd.
            Err(_) => return true,
        }
    }
}

pub struct Options {
    pub workers: usize,
    /// How long a connection may sit between requests, or a read or write may stall, before
    /// the connection is closed and its worker freed (`RESUMABLE_IO_TIMEOUT`, default 120 s:
    /// longer than nginx's upstream keepalive_timeout of 60 s, so the web server normally
    /// closes idle connections first).
    pub io_timeout: Duration,
}

/// The request handler a worker pool serves, shared by its threads.
pub type SharedApp = Arc<dyn Fn(&Params, &mut (dyn Read + Send)) -> Response + Send + Sync>;

/// Serves until `shutdown` is requested (or every worker thread died), then gives in-flight
/// requests up to [`SHUTDOWN_GRACE`]. Answers how many workers were still busy at the end; the
/// caller decides to leave the process anyway.
pub fn serve(
    listener: Listener,
    options: &Options,
    app: SharedApp,
    shutdown: &Shutdown,
) -> io::Result<usize> {
    listener.set_nonblocking(true)?;
    let listener = Arc::new(listener);
    let workers = options.workers.max(1);
    let limits = Limits {
        max_conns: workers,
        max_reqs: workers,
    };
    log::info!(
        "FastCGI responder on {} with {workers} workers",
        listener.describe()
    );
    for n in 0..workers {
        let running = shutdown.enter(usize::MAX);
        let (listener, app, stop) = (Arc::clone(&listener), Arc::clone(&app), shutdown.clone());
        let io_timeout = options.io_timeout;
        let spawned = std::thread::Builder::new()
            .name(format!("fastcgi-{n}"))
            .spawn(move || {
                let _running = running;
                worker(&listener, stop.flag(), limits, io_timeout, &*app);
            });
        if let Err(e) = spawned {
            log::error!("could not start worker thread {n}: {e}");
        }
    }
    shutdown.wait_for_stop_or_idle();
    log::info!("stopping: no new connections, waiting for in-flight requests");
    let left = shutdown.drain(SHUTDOWN_GRACE);
    if left > 0 {
        log::warn!("{left} workers still busy after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(left)
}

fn worker(
    listener: &Listener,
    stop: &AtomicBool,
    limits: Limits,
    io_timeout: Duration,
    app: &App<'_>,
) {
    let mut backoff = Duration::ZERO;
    while wait_readable(listener.as_fd(), stop, None, false) {
        let stream = match listener.accept() {
            Ok(stream) => {
                backoff = Duration::ZERO;
                stream
            }
            // Another worker took it, or the client gave up while queued.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for resources instead of spinning or
                // exiting; the connection stays queued in the backlog.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                log::error!("accept failed: {e}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                continue;
            }
        };
        if let Err(e) = stream.prepare(io_timeout) {
            log::warn!("could not set up a FastCGI connection: {e}");
            continue;
        }
        let ready = || wait_readable(stream.as_fd(), stop, Some(io_timeout), true);
        let input_within = |limit: Duration| wait_readable(stream.as_fd(), stop, Some(limit), true);
        // A bug must cost one connection, not a worker of the fixed pool.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Connection::new(&stream, &stream, limits, &ready)
                .with_input_within(&input_within)
                .serve(app)
        }));
        match served {
            Ok(Ok(Ending::Done)) => {}
            Ok(Ok(Ending::BodyLeft)) => stream.linger_close(stop),
            Ok(Err(e)) => log::warn!("FastCGI connection closed: {e}"),
            Err(_) => log::error!("FastCGI connection closed after a panic (a bug)"),
        }
        stream.shutdown();
    }
}
