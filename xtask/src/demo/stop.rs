//! When the demo must stop: Ctrl-C (SIGINT), SIGTERM or SIGHUP, or its deadline.
//!
//! The signal handler only sets an atomic flag (async-signal-safe); every loop of the demo
//! polls [`Stop::requested`] and sleeps through [`Stop::sleep`], so each notices within
//! [`POLL`] and returns, and the guards then remove what was created.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;

/// How often a waiting loop looks at the stop conditions.
const POLL: Duration = Duration::from_millis(50);

/// Set by the signal handler.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to the stop flag instead of killing the process, so
/// the demo's guards run.
///
/// # Errors
/// When a handler cannot be installed.
pub fn install_handlers() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid (empty mask, no flags, default handler)
        // and is fully set below before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is a valid sigaction whose handler only stores to an atomic,
        // which is async-signal-safe; the old action is not asked for (null).
        if unsafe { libc::sigaction(signal, &raw const action, std::ptr::null_mut()) } != 0 {
            bail!(
                "installing a handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Whether a stop signal arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// The demo's stop conditions: a signal, its own flag (set on error or teardown), the deadline.
#[derive(Clone, Debug)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    deadline: Instant,
}

impl Stop {
    /// Stops at `deadline` at the latest.
    pub fn new(deadline: Instant) -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            deadline,
        }
    }

    /// Whether everything should stop now.
    pub fn requested(&self) -> bool {
        signalled() || self.flag.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// Asks every loop sharing this `Stop` to finish.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sleeps `duration`, or less if a stop is requested; returns whether to go on.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            if self.requested() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep(POLL.min(until - now));
        }
    }
}
