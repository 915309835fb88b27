//! The demo's progress messages from its client threads, held back while `portmon top` owns
//! the terminal (a line printed under a full-screen view would garble it) and printed when
//! the view closes.

use std::{
    process::{Command, Stdio},
    sync::{Mutex, PoisonError},
};

/// `Some(held lines)` while the terminal belongs to the live view.
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Prints `line` on stdout now, or after the live view if it is showing.
pub fn say(line: String) {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    match held.as_mut() {
        Some(lines) => lines.push(line),
        None => println!("{line}"),
    }
}

/// While it lives, the live view owns the terminal: lines are held back. On drop (the view
/// has exited, normally or not) the terminal is reset and the held lines are printed.
pub struct LiveView(());

impl LiveView {
    /// Starts holding lines back.
    pub fn start() -> Self {
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Vec::new);
        Self(())
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        restore_terminal();
        let lines = HELD
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        for line in lines {
            println!("{line}");
        }
    }
}

/// Leaves the terminal usable even if the view was stopped in raw mode or on the alternate
/// screen: leave the alternate screen, show the cursor, `stty sane`.
fn restore_terminal() {
    print!("\x1b[?1049l\x1b[?25h");
    let _ = Command::new("stty")
        .arg("sane")
        .stdin(Stdio::inherit())
        .status();
    println!();
}
