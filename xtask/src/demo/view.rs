//! The live view while the traffic runs: `portmon top` when this portmon has it and stdout
//! is a terminal, else a summary line scraped from `/metrics` every few seconds.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use super::{Portmon, console, metrics, process::ChildGuard, servers::Service, stop::Stop};
use crate::command;

/// How often the summary line is printed when `portmon top` is not shown.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Whether this portmon has the `top` subcommand.
pub fn has_top(portmon: &Path) -> bool {
    command::succeeds(Command::new(portmon).args(["top", "--help"]))
}

/// Runs `portmon top` in the foreground until it quits or the demo stops.
pub fn top(
    portmon: &Path,
    listen: SocketAddr,
    stop: &Stop,
    daemon: &mut Portmon,
) -> anyhow::Result<()> {
    println!("demo: starting the live view, portmon top (q quits it and ends the demo)");
    stop.sleep(Duration::from_secs(3));
    // Declared before `top`, so dropped after it: the terminal is reset once top is gone.
    let _view = console::LiveView::start();
    // Not in a process group of its own: it owns the terminal.
    let mut top = ChildGuard::spawn(
        "portmon top",
        Command::new(portmon).args(["top", "--url", &format!("http://{listen}")]),
    )?;
    let result = loop {
        if let Err(error) = daemon.check_alive() {
            break Err(error);
        }
        if let Some(status) = top.try_wait()? {
            console::say(format!(
                "demo: portmon top exited ({status}); ending the demo"
            ));
            break Ok(());
        }
        if !stop.sleep(Duration::from_millis(100)) {
            break Ok(());
        }
    };
    top.stop()?;
    result
}

/// Prints a summary line every few seconds until the demo stops.
pub fn summaries(
    listen: SocketAddr,
    iface: &str,
    services: &[Service],
    stop: &Stop,
    daemon: &mut Portmon,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while stop.sleep(SUMMARY_EVERY) {
        daemon.check_alive()?;
        match metrics::get(listen, "/metrics") {
            Ok(text) => {
                let samples = metrics::parse(&text);
                println!(
                    "{}",
                    metrics::View::new(&samples, iface).summary(started.elapsed(), services)
                );
            }
            Err(error) => eprintln!("demo: scraping portmon: {error:#}"),
        }
    }
    Ok(())
}
