//! Draws one screen of the live view into a ratatui [`Buffer`]. Pure: the same [`Screen`]
//! always gives the same cells, so tests check them through a `TestBackend` and `--once`
//! prints them.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Padding, Paragraph, Row, Table, Widget},
};

use super::model::{Class, PortRow, Rates, ViewState, visible};

/// Everything one frame shows.
#[derive(Clone, Copy, Debug)]
pub struct Screen<'a> {
    /// Where the snapshots come from (`http://127.0.0.1:9797`, or the local interfaces).
    pub source: &'a str,
    /// The rates of the last two samples; `None` until there are two.
    pub rates: Option<&'a Rates>,
    /// The viewer's choices.
    pub state: ViewState,
    /// The last sampling error, shown until a sample succeeds.
    pub error: Option<&'a str>,
    /// Wall-clock time of the later sample, in Unix milliseconds (for the alerts' ages).
    pub now_unix_ms: u64,
}

/// The style of a row of class `class`: plaintext red, ambiguous yellow, secure green.
#[must_use]
pub fn class_style(class: Class) -> Style {
    match class {
        Class::Plaintext => Style::default().fg(Color::Red),
        Class::Ambiguous => Style::default().fg(Color::Yellow),
        Class::Secure => Style::default().fg(Color::Green),
        Class::Unknown => Style::default(),
    }
}

/// A rate with an SI suffix and one decimal: `7.0`, `3.0k`, `12.5M`.
#[must_use]
pub fn si(value: f64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    UNITS
        .iter()
        .find(|&&(scale, _)| value >= scale)
        .map_or_else(
            || format!("{value:.1}"),
            |&(scale, unit)| format!("{:.1}{unit}", value / scale),
        )
}

/// How long ago `since` was, as `42s`, `3m05s` or `2h07m`.
#[must_use]
pub fn age(now_ms: u64, since_ms: u64) -> String {
    let seconds = now_ms.saturating_sub(since_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

const PORT_HEADER: [&str; 10] = [
    "IFACE", "DIR", "PROTO", "PORT", "SERVICE", "RANGE", "SECURITY", "PKT/S", "BIT/S", "SYN/S",
];
const PORT_WIDTHS: [u16; 10] = [15, 7, 5, 6, 16, 10, 9, 9, 9, 9];
const RANGE_HEADER: [&str; 6] = ["IFACE", "DIR", "RANGE", "PKT/S", "BIT/S", "SYN/S"];
const RANGE_WIDTHS: [u16; 6] = [15, 7, 10, 9, 9, 9];
const ALERT_HEADER: [&str; 6] = ["IFACE", "DIR", "PORT", "SERVICE", "REASON", "FOR"];
const ALERT_WIDTHS: [u16; 6] = [15, 7, 9, 16, 12, 8];
/// Lines of the header.
const HEADER_LINES: u16 = 3;
/// Borders and the column header of a table.
const TABLE_CHROME: u16 = 3;

fn header_row(names: &[&'static str]) -> Row<'static> {
    Row::new(names.iter().copied()).style(Style::default().add_modifier(Modifier::BOLD))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

fn port_row(row: &PortRow) -> Row<'static> {
    let syns = if row.protocol == "tcp" {
        si(row.rate.syns)
    } else {
        "-".to_owned()
    };
    Row::new(vec![
        Cell::from(row.interface.clone()),
        Cell::from(row.direction.clone()),
        Cell::from(row.protocol.clone()),
        Cell::from(
            row.port
                .map_or_else(|| "other".to_owned(), |p| p.to_string()),
        ),
        Cell::from(row.service.clone()),
        Cell::from(row.range.clone()),
        Cell::from(row.security.clone()),
        right(si(row.rate.packets)),
        right(si(row.rate.bits)),
        right(syns),
    ])
    .style(class_style(Class::of(&row.security)))
}

/// A table's frame: a border, and a blank column inside it so that words never touch it.
fn framed(title: String) -> Block<'static> {
    Block::bordered()
        .title(title)
        .padding(Padding::horizontal(1))
}

fn lengths(widths: &[u16]) -> Vec<Constraint> {
    widths.iter().map(|&w| Constraint::Length(w)).collect()
}

fn header(screen: &Screen<'_>) -> Paragraph<'static> {
    let interval = screen.rates.map_or_else(
        || "waiting for a second sample".to_owned(),
        |rates| {
            format!(
                "rates over {:.1}s, portmon reads every {}ms",
                rates.seconds, rates.interval_ms
            )
        },
    );
    let interfaces = screen.rates.map_or_else(String::new, |rates| {
        rates
            .interfaces
            .iter()
            .map(|(name, hooks)| {
                let hooks: Vec<String> = hooks
                    .iter()
                    .map(|a| format!("{} {}", a.hook, a.mode))
                    .collect();
                format!("{name} ({})", hooks.join(", "))
            })
            .collect::<Vec<_>>()
            .join("  ")
    });
    let paused = if screen.state.paused { "  PAUSED" } else { "" };
    let mut lines = vec![
        Line::from(format!("portmon top  {}  {interval}", screen.source))
            .style(Style::default().add_modifier(Modifier::BOLD)),
        Line::from(format!("interfaces: {interfaces}")),
        Line::from(format!(
            "direction {} (d)  sort {} (s)  pause (p)  quit (q){paused}",
            screen.state.direction.as_str(),
            screen.state.sort.as_str(),
        )),
    ];
    if let Some(error) = screen.error {
        lines.push(Line::from(format!("error: {error}")).style(Style::default().fg(Color::Red)));
    }
    Paragraph::new(lines)
}

fn ports_table(screen: &Screen<'_>) -> Table<'static> {
    let rows: Vec<Row<'static>> = screen.rates.map_or_else(Vec::new, |rates| {
        visible(rates, &screen.state)
            .into_iter()
            .map(port_row)
            .collect()
    });
    Table::new(rows, lengths(&PORT_WIDTHS))
        .header(header_row(&PORT_HEADER))
        .block(framed(format!(
            " ports, by {} ",
            screen.state.sort.as_str()
        )))
}

fn ranges_table(screen: &Screen<'_>) -> Table<'static> {
    let rows: Vec<Row<'static>> = screen.rates.map_or_else(Vec::new, |rates| {
        rates
            .ranges
            .iter()
            .filter(|range| screen.state.direction.shows(&range.direction))
            .map(|range| {
                Row::new(vec![
                    Cell::from(range.interface.clone()),
                    Cell::from(range.direction.clone()),
                    Cell::from(range.range.clone()),
                    right(si(range.rate.packets)),
                    right(si(range.rate.bits)),
                    right(si(range.rate.syns)),
                ])
            })
            .collect()
    });
    Table::new(rows, lengths(&RANGE_WIDTHS))
        .header(header_row(&RANGE_HEADER))
        .block(framed(" port ranges ".to_owned()))
}

fn alerts_table(screen: &Screen<'_>) -> Table<'static> {
    let firing = screen
        .rates
        .map_or(&[][..], |rates| rates.alerts.as_slice());
    let rows: Vec<Row<'static>> = if firing.is_empty() {
        vec![Row::new(["none firing"])]
    } else {
        firing
            .iter()
            .map(|alert| {
                Row::new(vec![
                    Cell::from(alert.interface.clone()),
                    Cell::from(alert.direction.clone()),
                    Cell::from(format!("{}/{}", alert.port, alert.protocol)),
                    Cell::from(alert.service.clone()),
                    Cell::from(alert.reason.clone()),
                    Cell::from(
                        alert
                            .since_unix_ms
                            .map_or_else(|| "?".to_owned(), |since| age(screen.now_unix_ms, since)),
                    ),
                ])
                .style(class_style(Class::Plaintext).add_modifier(Modifier::BOLD))
            })
            .collect()
    };
    Table::new(rows, lengths(&ALERT_WIDTHS))
        .header(header_row(&ALERT_HEADER))
        .block(framed(" alerts firing ".to_owned()))
}

fn count(rows: usize) -> u16 {
    u16::try_from(rows).unwrap_or(u16::MAX)
}

/// Heights of the parts: header, ranges, alerts (the ports table takes the rest).
fn part_heights(screen: &Screen<'_>) -> (u16, u16, u16) {
    let header = HEADER_LINES + u16::from(screen.error.is_some());
    let ranges = screen.rates.map_or(0, |rates| {
        rates
            .ranges
            .iter()
            .filter(|range| screen.state.direction.shows(&range.direction))
            .count()
    });
    let alerts = screen.rates.map_or(0, |rates| rates.alerts.len()).max(1);
    (
        header,
        TABLE_CHROME.saturating_add(count(ranges)),
        TABLE_CHROME.saturating_add(count(alerts)),
    )
}

/// The width that shows every column of the ports table unclipped (for `--once`).
#[must_use]
pub fn full_width() -> u16 {
    // Columns, one space between two, the two borders and their padding.
    PORT_WIDTHS.iter().sum::<u16>() + count(PORT_WIDTHS.len()) - 1 + 4
}

/// The height that shows every row of `screen` (for `--once`).
#[must_use]
pub fn full_height(screen: &Screen<'_>) -> u16 {
    let (header, ranges, alerts) = part_heights(screen);
    let ports = screen
        .rates
        .map_or(0, |rates| visible(rates, &screen.state).len())
        .max(1);
    header
        .saturating_add(TABLE_CHROME.saturating_add(count(ports)))
        .saturating_add(ranges)
        .saturating_add(alerts)
}

/// Draws `screen` into `area` of `buf`: the header, the ports (busiest first, coloured by
/// security class), the range totals and the alerts firing.
pub fn render(screen: &Screen<'_>, area: Rect, buf: &mut Buffer) {
    let (header_height, ranges, alerts) = part_heights(screen);
    let [header_area, ports_area, ranges_area, alerts_area] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(TABLE_CHROME + 1),
        Constraint::Length(ranges),
        Constraint::Length(alerts),
    ])
    .areas(area);
    header(screen).render(header_area, buf);
    if screen
        .rates
        .is_none_or(|rates| visible(rates, &screen.state).is_empty())
    {
        Paragraph::new("no traffic counted yet")
            .block(framed(" ports ".to_owned()))
            .render(ports_area, buf);
    } else {
        Widget::render(ports_table(screen), ports_area, buf);
    }
    Widget::render(ranges_table(screen), ranges_area, buf);
    Widget::render(alerts_table(screen), alerts_area, buf);
}

/// The text of `buf`, one line per row, trailing blanks removed (for `--once`).
#[must_use]
pub fn to_text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            if let Some(cell) = buf.cell((x, y)) {
                line.push_str(cell.symbol());
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::top::model::{DirectionFilter, SortKey, rates, tests::snapshot};

    /// Draws `screen` through a `TestBackend` of its full height.
    fn draw(screen: &Screen<'_>) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(full_width(), full_height(screen)))
            .unwrap_or_else(|error| panic!("a test terminal: {error}"));
        terminal
            .draw(|frame| render(screen, frame.area(), frame.buffer_mut()))
            .unwrap_or_else(|error| panic!("drawing: {error}"));
        terminal.backend().buffer().clone()
    }

    /// The row of `buf` containing `needle`, with its index.
    fn line_with(buf: &Buffer, needle: &str) -> (u16, String) {
        let text = to_text(buf);
        text.lines()
            .zip(0u16..)
            .find(|(line, _)| line.contains(needle))
            .map_or_else(
                || panic!("expected {needle:?} on screen:\n{text}"),
                |(line, y)| (y, line.to_owned()),
            )
    }

    /// The foreground colour of the first cell of `word` on line `y`.
    fn colour_of(buf: &Buffer, y: u16, line: &str, word: &str) -> Color {
        let column = line
            .find(word)
            .unwrap_or_else(|| panic!("expected {word:?} in {line:?}"));
        let x = u16::try_from(line[..column].chars().count()).unwrap_or(u16::MAX);
        buf.cell((x, y))
            .unwrap_or_else(|| panic!("cell ({x}, {y})"))
            .fg
    }

    fn screen(rates: &Rates, state: ViewState) -> Screen<'_> {
        Screen {
            source: "http://127.0.0.1:9797",
            rates: Some(rates),
            state,
            error: None,
            now_unix_ms: 12_000,
        }
    }

    #[test]
    fn rows_show_rates_coloured_by_security_class() {
        // 2 s apart, every series counted 2k: telnet 20 packets of 100 bytes in 2 s.
        let rates = rates(&snapshot(10_000, 1), &snapshot(12_000, 3));
        let buf = draw(&screen(&rates, ViewState::default()));
        // (case, a word that identifies the row, pkt/s, bit/s, syn/s, colour)
        let cases = [
            (
                "telnet, plaintext",
                "telnet",
                "10.0",
                "8.0k",
                "10.0",
                Color::Red,
            ),
            (
                "https, secure",
                "https",
                "50.0",
                "40.0k",
                "50.0",
                Color::Green,
            ),
            ("dns, ambiguous", "dns", "4.0", "3.2k", "-", Color::Yellow),
            (
                "ssh egress, secure",
                "ssh",
                "2.0",
                "1.6k",
                "2.0",
                Color::Green,
            ),
            ("other, unknown", "other", "1.0", "800.0", "-", Color::Reset),
        ];
        for (name, word, packets, bits, syns, colour) in cases {
            let (y, line) = line_with(&buf, &format!(" {word} "));
            let columns: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                columns[columns.len() - 4..columns.len() - 1],
                [packets, bits, syns],
                "case {name}: rates in {line:?}"
            );
            assert_eq!(
                colour_of(&buf, y, &line, word),
                colour,
                "case {name}: colour"
            );
        }
        // Sorted by bit/s: https above telnet above dns.
        let order: Vec<u16> = ["https", "telnet", " dns "]
            .iter()
            .map(|word| line_with(&buf, word).0)
            .collect();
        assert!(order.is_sorted(), "busiest first: rows {order:?}");
    }

    #[test]
    fn range_totals_and_the_firing_alert_are_shown() {
        let rates = rates(&snapshot(10_000, 1), &snapshot(12_000, 3));
        let buf = draw(&screen(&rates, ViewState::default()));
        let (_, line) = line_with(&buf, "well_known    ");
        assert!(
            line.contains("ingress") && line.contains("64.0") && line.contains("51.2k"),
            "ingress well-known range at 64 pkt/s, 51.2 kbit/s: {line:?}"
        );
        let (y, line) = line_with(&buf, "must_be_zero");
        assert!(
            line.contains("23/tcp") && line.contains("telnet") && line.contains("5s"),
            "the telnet alert, firing for 5 s: {line:?}"
        );
        assert_eq!(
            colour_of(&buf, y, &line, "telnet"),
            Color::Red,
            "alerts are red"
        );
        let (_, line) = line_with(&buf, "portmon top");
        assert!(
            line.contains("http://127.0.0.1:9797") && line.contains("rates over 2.0s"),
            "header: {line:?}"
        );
        line_with(&buf, "veth0 (xdp generic)");
    }

    #[test]
    fn the_direction_filter_and_pause_show_in_the_frame() {
        let rates = rates(&snapshot(10_000, 1), &snapshot(12_000, 3));
        let state = ViewState {
            direction: DirectionFilter::Egress,
            sort: SortKey::Packets,
            paused: true,
        };
        let buf = draw(&screen(&rates, state));
        let text = to_text(&buf);
        assert!(text.contains(" ssh "), "egress row shown:\n{text}");
        for hidden in [" telnet ", " https ", " dns "] {
            let in_ports = text
                .lines()
                .filter(|line| !line.contains("must_be_zero"))
                .any(|line| line.contains(hidden));
            assert!(!in_ports, "ingress row {hidden:?} hidden:\n{text}");
        }
        for needle in ["direction egress", "sort pkt/s", "PAUSED"] {
            assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn before_two_samples_the_frame_says_it_waits() {
        let buf = draw(&Screen {
            source: "local: veth0",
            rates: None,
            state: ViewState::default(),
            error: Some("connection refused"),
            now_unix_ms: 0,
        });
        let text = to_text(&buf);
        for needle in [
            "waiting for a second sample",
            "no traffic counted yet",
            "none firing",
            "error: connection refused",
        ] {
            assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn numbers_and_ages_read_well() {
        for (value, expected) in [
            (0.0, "0.0"),
            (7.0, "7.0"),
            (999.9, "999.9"),
            (3_024.0, "3.0k"),
            (12_500_000.0, "12.5M"),
            (2e9, "2.0G"),
        ] {
            assert_eq!(si(value), expected, "si({value})");
        }
        for (since, expected) in [(9_000, "3s"), (0, "3m20s"), (12_000, "0s")] {
            let now = if since == 0 { 200_000 } else { 12_000 };
            assert_eq!(age(now, since), expected, "age since {since}");
        }
        assert_eq!(age(7_500_000, 0), "2h05m");
    }
}
