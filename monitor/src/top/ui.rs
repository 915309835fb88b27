//! The interactive loop: sample every interval, redraw, react to keys. The terminal is
//! restored on every way out: return, error (a guard), panic (ratatui's hook), and SIGINT,
//! SIGTERM or SIGHUP (a flag the loop polls, so the guard runs; a watchdog ends the process
//! if the loop is stuck in a terminal that hung up).

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::{
    model::{self, Rates, ViewState},
    render::{Screen, render},
    source::Source,
};
use crate::snapshot::Snapshot;

/// Set by the signal handler; the loop ends at its next turn.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// The longest the loop waits for a key before it checks the signal flag and the clock.
const TICK: Duration = Duration::from_millis(200);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and the handler
        // only stores to an atomic, which is async-signal-safe.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How long the loop may take to notice a signal before the watchdog ends the process.
const SIGNAL_GRACE: Duration = Duration::from_secs(2);

/// Ends the process if the loop does not end within [`SIGNAL_GRACE`] of a signal. When the
/// terminal hangs up, crossterm can spin on its end-of-file inside `event::poll` and never
/// return to the loop; exiting then is safe: the kernel detaches programs attached by this
/// process (their links die with its file descriptors).
fn spawn_watchdog() {
    std::thread::spawn(|| {
        while !SIGNALLED.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
        }
        std::thread::sleep(SIGNAL_GRACE);
        ratatui::restore();
        std::process::exit(1);
    });
}

/// Leaves raw mode and the alternate screen when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Redraw,
    Ignore,
}

fn on_key(state: &mut ViewState, code: KeyCode, modifiers: KeyModifiers) -> Action {
    match code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('d') => {
            state.direction = state.direction.next();
            Action::Redraw
        }
        KeyCode::Char('s') => {
            state.sort = state.sort.next();
            Action::Redraw
        }
        KeyCode::Char('p') => {
            state.paused = !state.paused;
            Action::Redraw
        }
        _ => Action::Ignore,
    }
}

/// Runs the live view until q, Esc, Ctrl-C or a signal. `first` is the source's first
/// snapshot; rates appear from the second.
///
/// # Errors
/// When the terminal cannot be set up or drawn to. Sampling errors are shown, not fatal:
/// the daemon may be restarting.
pub fn run(source: &Source, first: Snapshot, interval: Duration) -> anyhow::Result<()> {
    install_signal_handlers().context("installing the signal handlers")?;
    spawn_watchdog();
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let _restore = Restore;
    let described = source.describe();
    let mut state = ViewState::default();
    let mut before = first;
    let mut rates: Option<Rates> = None;
    let mut error: Option<String> = None;
    let mut next_sample = Instant::now() + interval;
    while !SIGNALLED.load(Ordering::Relaxed) {
        terminal
            .draw(|frame| {
                let screen = Screen {
                    source: &described,
                    rates: rates.as_ref(),
                    state,
                    error: error.as_deref(),
                    now_unix_ms: before.time_unix_ms,
                };
                render(&screen, frame.area(), frame.buffer_mut());
            })
            .context("drawing the live view")?;
        let wait = next_sample
            .saturating_duration_since(Instant::now())
            .min(TICK);
        let ready = match event::poll(wait) {
            Ok(ready) => ready,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => false,
            Err(error) => return Err(error).context("reading the keyboard"),
        };
        if ready
            && let Event::Key(key) = event::read().context("reading the keyboard")?
            && key.kind == KeyEventKind::Press
            && on_key(&mut state, key.code, key.modifiers) == Action::Quit
        {
            break;
        }
        if Instant::now() >= next_sample {
            next_sample = Instant::now() + interval;
            if state.paused {
                continue;
            }
            match source.sample() {
                Ok(after) => {
                    rates = Some(model::rates(&before, &after));
                    before = after;
                    error = None;
                }
                Err(failed) => error = Some(failed.to_string()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{DirectionFilter, SortKey};

    #[test]
    fn keys_quit_filter_sort_and_pause() {
        let mut state = ViewState::default();
        for (name, code, modifiers, action) in [
            ("q", KeyCode::Char('q'), KeyModifiers::NONE, Action::Quit),
            ("Esc", KeyCode::Esc, KeyModifiers::NONE, Action::Quit),
            (
                "Ctrl-C",
                KeyCode::Char('c'),
                KeyModifiers::CONTROL,
                Action::Quit,
            ),
            (
                "plain c",
                KeyCode::Char('c'),
                KeyModifiers::NONE,
                Action::Ignore,
            ),
            ("d", KeyCode::Char('d'), KeyModifiers::NONE, Action::Redraw),
            ("s", KeyCode::Char('s'), KeyModifiers::NONE, Action::Redraw),
            ("p", KeyCode::Char('p'), KeyModifiers::NONE, Action::Redraw),
        ] {
            assert_eq!(on_key(&mut state, code, modifiers), action, "key {name}");
        }
        assert_eq!(
            state,
            ViewState {
                direction: DirectionFilter::Ingress,
                sort: SortKey::Packets,
                paused: true,
            },
            "after d, s and p"
        );
    }
}
