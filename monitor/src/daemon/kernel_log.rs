//! Forwarding the kernel programs' aya-log records into the daemon's log, as aya-log's
//! documentation does: wait for the ring buffer's fd to be readable, then drain it.

use tokio::io::{Interest, unix::AsyncFd};

use crate::dataplane::KernelLogger;

/// Spawns a task draining `logger` for `interface` until the runtime stops.
pub fn spawn(interface: String, logger: KernelLogger) -> Option<tokio::task::JoinHandle<()>> {
    // SAFETY: the logger owns its ring buffer's fd (`EbpfLogger: AsFd` borrows it from the
    // map it holds) and keeps returning that same open fd until it is dropped, which
    // happens only with the `AsyncFd`.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(logger) => logger,
        Err(error) => {
            log::warn!("{interface}: kernel-side log unavailable: {error}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            match logger.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(error) => {
                    log::warn!("{interface}: kernel-side log stopped: {error}");
                    return;
                }
            }
        }
    }))
}
