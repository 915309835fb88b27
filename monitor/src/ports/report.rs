//! Output of `portmon ports`: an aligned table for people, a JSON array for tools.

use std::fmt::Write as _;

use super::PortInfo;

/// Column headers of [`render_text`].
const HEADERS: [&str; 8] = [
    "PORT",
    "PROTO",
    "SERVICE",
    "RANGE",
    "SECURITY",
    "SECURE ALTERNATIVE",
    "PERIMETER",
    "REASON",
];

/// An aligned, human-readable table, one row per entry, ending with a newline.
///
/// `PERIMETER` says `never` for traffic that must not cross the perimeter; `-` marks an empty
/// cell. Columns are padded by characters, so config text with non-ASCII letters stays aligned.
#[must_use]
pub fn render_text(infos: &[PortInfo]) -> String {
    let rows: Vec<[String; 8]> = infos
        .iter()
        .map(|info| {
            [
                info.port.to_string(),
                info.protocol.as_str().to_owned(),
                info.service.to_owned(),
                info.range.as_str().to_owned(),
                info.security.as_str().to_owned(),
                info.secure_alternative.unwrap_or("-").to_owned(),
                if info.never_across_perimeter {
                    "never"
                } else {
                    "-"
                }
                .to_owned(),
                info.reason.unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|header| header.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &HEADERS, &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

fn push_row<S: AsRef<str>>(out: &mut String, cells: &[S], widths: &[usize]) {
    let last = cells.len().saturating_sub(1);
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        if index == last {
            // No trailing spaces after the last column.
            out.push_str(cell);
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "{cell:<width$}  ");
        }
    }
    out.push('\n');
}

/// A pretty-printed JSON array of the entries, fields in [`PortInfo`]'s order, ending with a
/// newline (print it with `print!`, not `println!`).
#[must_use]
pub fn render_json(infos: &[PortInfo]) -> String {
    match serde_json::to_string_pretty(infos) {
        Ok(mut json) => {
            json.push('\n');
            json
        }
        // serde_json fails only on non-string map keys and I/O, which these types cannot produce;
        // still, say so rather than print something that looks like a valid empty answer.
        Err(error) => {
            format!("{{\"error\": \"cannot serialize port classifications: {error}\"}}\n")
        }
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;
    use crate::ports::Policy;

    /// The golden file `portmon ports 23 --json` must print (the CLI test compares against it too).
    const GOLDEN_23: &str = include_str!("../../tests/golden/ports-23.json");

    #[test]
    fn json_of_port_23_matches_the_golden_file() {
        let policy = Policy::builtin();
        let infos = policy.resolve("23").expect("23 resolves");
        let got = render_json(&infos);
        assert_eq!(
            got, GOLDEN_23,
            "render_json(resolve(\"23\")) differs from monitor/tests/golden/ports-23.json;\n\
             expected:\n{GOLDEN_23}\ngot:\n{got}"
        );
    }

    #[test]
    fn text_table_is_aligned() {
        let policy = Policy::builtin();
        let infos: Vec<_> = ["21", "23", "53"]
            .iter()
            .flat_map(|query| policy.resolve(query).expect("port resolves"))
            .collect();
        let text = render_text(&infos);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1 + infos.len(),
            "expected a header and one line per entry, got:\n{text}"
        );
        let column = lines[0].find("SERVICE").expect("header has SERVICE");
        for line in &lines[1..] {
            let service = &line[column..];
            assert!(
                service.starts_with("ftp ")
                    || service.starts_with("telnet ")
                    || service.starts_with("dns "),
                "expected the service column at byte {column} in every line, got {line:?}"
            );
        }
        assert!(
            lines[2].contains("ssh (22/tcp)"),
            "expected telnet's alternative in {:?}",
            lines[2]
        );
        assert!(
            !text.lines().any(|line| line.ends_with(' ')),
            "expected no trailing spaces, got:\n{text}"
        );
    }

    #[test]
    fn perimeter_flag_shows_in_text() {
        let policy = Policy::builtin();
        let infos = policy.resolve("445").expect("445 resolves");
        let text = render_text(&infos);
        assert!(
            text.contains(" never "),
            "expected `never` in the PERIMETER column, got:\n{text}"
        );
    }
}
