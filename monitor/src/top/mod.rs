//! `portmon top`: a live terminal view of per-port rates, in the spirit of iftop and
//! bandwhich. It reads `/api/v1/snapshot` of a running daemon, or attaches the programs
//! itself when none answers and `--iface` is given.
//!
//! * [`model`]: rates from two snapshots, the viewer's filter and sort (pure);
//! * [`render`]: one frame into a ratatui buffer (pure);
//! * [`ui`]: the interactive loop, keys and terminal restoration;
//! * [`source`] and [`http`]: where the snapshots come from.

pub mod http;
pub mod model;
pub mod render;
pub mod source;
mod ui;

use std::{
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

use anyhow::Context as _;
use ratatui::{buffer::Buffer, layout::Rect};

use self::{
    model::ViewState,
    render::{Screen, full_height, full_width, to_text},
    source::Source,
};

/// `portmon top --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  portmon top                                  # the daemon on its default address
  portmon top --url http://10.0.0.5:9797       # a daemon listening elsewhere
  sudo portmon top --iface eth0                # no daemon: attach to eth0 for the view's lifetime
  portmon top --once > rates.txt               # one frame after two samples, for scripts

Keys: q or Esc quit, d direction filter (all, ingress, egress), s sort (bit/s, pkt/s, syn/s),
p pause. Rows are red for plaintext ports, yellow for ambiguous, green for secure.";

/// The flags of `portmon top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The daemon's metrics address [default: http://127.0.0.1:9797, portmon run's default].
    #[arg(long, value_name = "URL", env = "PORTMON_TOP_URL")]
    url: Option<String>,
    /// How often to sample (never faster than the daemon reads) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_interval)]
    interval: Option<Duration>,
    /// When no daemon answers, attach to this interface for the view's lifetime; repeat
    /// for several.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    iface: Vec<String>,
    /// Print one frame after two samples and exit (no terminal needed).
    #[arg(long)]
    once: bool,
}

impl From<TopArgs> for Options {
    fn from(args: TopArgs) -> Self {
        Self {
            url: args
                .url
                .unwrap_or_else(|| format!("http://{}", crate::config::defaults::LISTEN)),
            interval: args.interval.unwrap_or(crate::config::defaults::INTERVAL),
            ifaces: args.iface,
            once: args.once,
        }
    }
}

/// What `portmon top` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The daemon's URL.
    pub url: String,
    /// How often to sample.
    pub interval: Duration,
    /// Interfaces to attach to when no daemon answers.
    pub ifaces: Vec<String>,
    /// Render one frame to stdout after two samples and exit.
    pub once: bool,
}

/// Sampling more often than the daemon reads only repeats its totals.
fn sample_interval(asked: Duration, daemon_interval_ms: u64) -> Duration {
    asked.max(Duration::from_millis(daemon_interval_ms))
}

/// Runs the live view (or one frame of it with `--once`).
///
/// # Errors
/// No source (with what to do about it), a terminal that cannot be used, or stdout closed.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let (source, first) = Source::open(&options.url, &options.ifaces, options.interval)?;
    let interval = sample_interval(options.interval, first.interval_ms);
    if !options.once {
        return ui::run(&source, first, interval);
    }
    std::thread::sleep(interval);
    let second = source.sample().context("taking the second sample")?;
    let rates = model::rates(&first, &second);
    let described = source.describe();
    let screen = Screen {
        source: &described,
        rates: Some(&rates),
        state: ViewState::default(),
        error: None,
        now_unix_ms: second.time_unix_ms,
    };
    // As wide as the terminal when there is one, but never clipping a column.
    let width = if std::io::stdout().is_terminal() {
        ratatui::crossterm::terminal::size().map_or(0, |(columns, _)| columns)
    } else {
        0
    };
    let area = Rect::new(0, 0, width.max(full_width()), full_height(&screen));
    let mut buf = Buffer::empty(area);
    render::render(&screen, area, &mut buf);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(to_text(&buf).as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_never_faster_than_the_daemon_reads() {
        for (name, asked, daemon, expected) in [
            ("faster daemon", 1_000, 100, 1_000),
            ("slower daemon", 1_000, 5_000, 5_000),
        ] {
            assert_eq!(
                sample_interval(Duration::from_millis(asked), daemon),
                Duration::from_millis(expected),
                "case {name}"
            );
        }
    }
}
