//! How a long-running transport stops: the first SIGINT or SIGTERM stops accepting and gives
//! requests in flight a grace period; a second one stops at once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The stop request and the count of work still running, shared by the accept loop, the
/// threads doing the work and the signal thread.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    requested: AtomicBool,
    running: Mutex<usize>,
    changed: Condvar,
}

/// One unit of running work (a request, or a worker thread); counted until dropped, even when
/// its thread unwinds.
pub struct Running {
    inner: Arc<Inner>,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::request`] triggers (tests, embedding).
    pub fn manual() -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                requested: AtomicBool::new(false),
                running: Mutex::new(0),
                changed: Condvar::new(),
            }),
        }
    }

    /// Catches SIGINT and SIGTERM. The first requests the stop and calls `wake`, which must make
    /// a blocked accept return; a second exits the process at once (the user does not want to
    /// wait for running requests).
    pub fn on_signals(wake: impl Fn() + Send + 'static) -> io::Result<Shutdown> {
        let shutdown = Shutdown::manual();
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if handle.is_requested() {
                        log::warn!("second signal {signal}: stopping without waiting");
                        std::process::exit(1);
                    }
                    log::info!("signal {signal}: stopping (send it again to force)");
                    handle.request();
                    wake();
                }
            })?;
        Ok(shutdown)
    }

    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        let _count = self.lock();
        self.inner.changed.notify_all();
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// The flag itself, for loops that poll it between short waits.
    pub fn flag(&self) -> &AtomicBool {
        &self.inner.requested
    }

    /// Counts one unit of work; waits first while `max` are already running, so memory stays
    /// bounded under a flood.
    pub fn enter(&self, max: usize) -> Running {
        let mut count = self.lock();
        while *count >= max {
            count = self
                .inner
                .changed
                .wait(count)
                .unwrap_or_else(|p| p.into_inner());
        }
        *count += 1;
        Running {
            inner: Arc::clone(&self.inner),
        }
    }

    pub fn running(&self) -> usize {
        *self.lock()
    }

    /// Blocks until a stop is requested or nothing is running any more.
    pub fn wait_for_stop_or_idle(&self) {
        let count = self.lock();
        let _unused = self
            .inner
            .changed
            .wait_while(count, |n| !self.is_requested() && *n > 0)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// Waits up to `grace` for the running work to finish; answers how much is still running.
    pub fn drain(&self, grace: Duration) -> usize {
        let count = self.lock();
        let (count, _) = self
            .inner
            .changed
            .wait_timeout_while(count, grace, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *count
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut count = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        self.inner.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_what_is_running_and_reports_what_is_left() {
        let shutdown = Shutdown::manual();
        let a = shutdown.enter(2);
        let b = shutdown.enter(2);
        assert_eq!(shutdown.running(), 2);
        let waiter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                let third = shutdown.enter(2);
                drop(third);
            })
        };
        drop(a);
        waiter.join().unwrap();
        assert_eq!(shutdown.drain(Duration::from_millis(10)), 1);
        drop(b);
        assert_eq!(shutdown.drain(Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_request_wakes_the_waiter() {
        let shutdown = Shutdown::manual();
        let _busy = shutdown.enter(1);
        let stopper = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.request())
        };
        shutdown.wait_for_stop_or_idle();
        stopper.join().unwrap();
        assert!(shutdown.is_requested());
    }
}
