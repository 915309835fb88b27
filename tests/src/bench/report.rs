//! Figures, their targets, the printed table and `kernel.json`.

use std::{fmt::Write as _, io, path::Path};

/// A bound a figure must respect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The figure must be at most this.
    AtMost(f64),
    /// The figure must be at least this.
    AtLeast(f64),
}

impl Target {
    /// Whether `value` meets the target.
    #[must_use]
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Target::AtMost(bound) => value <= bound,
            Target::AtLeast(bound) => value >= bound,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtMost(bound) => format!("<= {}", format_value(bound)),
            Target::AtLeast(bound) => format!(">= {}", format_value(bound)),
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Its name in the table and in `kernel.json`.
    pub name: String,
    /// The median over runs.
    pub value: f64,
    /// `ns`, `pps`, `ratio`, `bytes`, ...
    pub unit: &'static str,
    /// The target from issue 2, if the figure has one.
    pub target: Option<Target>,
    /// A short note printed next to it (how it was measured, what it means).
    pub note: String,
}

impl Figure {
    /// A figure with no target.
    #[must_use]
    pub fn info(name: &str, value: f64, unit: &'static str, note: &str) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: None,
            note: note.to_owned(),
        }
    }

    /// A figure checked against `target`.
    #[must_use]
    pub fn checked(name: &str, value: f64, unit: &'static str, target: Target, note: &str) -> Self {
        Self {
            target: Some(target),
            ..Self::info(name, value, unit, note)
        }
    }

    /// `PASS`, `MISS`, or `-` when there is no target.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self.target {
            Some(target) if target.met_by(self.value) => "PASS",
            Some(_) => "MISS",
            None => "-",
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
#[must_use]
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// Relative spread of `values` around their median: (max - min) / median.
#[must_use]
pub fn spread(values: &[f64]) -> f64 {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max - min) / median(values).abs()
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "n/a".to_owned()
    } else if value.abs() >= 1e5 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The table printed at the end of the benchmark.
#[must_use]
pub fn table(figures: &[Figure]) -> String {
    let name_width = figures
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(4)
        .max(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>14}  {:<6}  {:<12}  {:<6}  note",
        "figure", "value", "unit", "target", "status"
    );
    for figure in figures {
        let target = figure.target.map(Target::describe).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<name_width$}  {:>14}  {:<6}  {:<12}  {:<6}  {}",
            figure.name,
            format_value(figure.value),
            figure.unit,
            target,
            figure.status(),
            figure.note
        );
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `figures` as a JSON list of `{"name", "value", "unit"}` objects (NaN becomes null).
#[must_use]
pub fn json(figures: &[Figure]) -> String {
    let rows: Vec<String> = figures
        .iter()
        .map(|figure| {
            let value = if figure.value.is_finite() {
                format!("{}", figure.value)
            } else {
                "null".to_owned()
            };
            format!(
                "  {{\"name\": {}, \"value\": {value}, \"unit\": {}}}",
                json_string(&figure.name),
                json_string(figure.unit)
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

/// Writes [`json`] to `path`, creating its directory.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn write_json(path: &Path, figures: &[Figure]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, json(figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let cases: [(&str, &[f64], f64); 3] = [
            ("odd", &[5.0, 1.0, 3.0], 3.0),
            ("even", &[4.0, 1.0, 3.0, 2.0], 2.5),
            ("one", &[7.0], 7.0),
        ];
        for (name, values, expected) in cases {
            let got = median(values);
            assert!(
                (got - expected).abs() < 1e-12,
                "{name}: expected {expected}, got {got}"
            );
        }
    }

    #[test]
    fn status_follows_the_target() {
        let cases = [
            ("at most, met", Target::AtMost(6.0), 5.9, "PASS"),
            ("at most, equal", Target::AtMost(6.0), 6.0, "PASS"),
            ("at most, missed", Target::AtMost(6.0), 6.1, "MISS"),
            ("at least, met", Target::AtLeast(0.9), 0.95, "PASS"),
            ("at least, missed", Target::AtLeast(0.9), 0.5, "MISS"),
            ("nan misses", Target::AtLeast(0.9), f64::NAN, "MISS"),
        ];
        for (name, target, value, expected) in cases {
            let figure = Figure::checked("x", value, "ns", target, "");
            assert_eq!(figure.status(), expected, "{name}: value {value}");
        }
    }

    #[test]
    fn json_is_a_list_of_name_value_unit() {
        let figures = [
            Figure::info("bare_ns", 12.5, "ns", "note \"quoted\""),
            Figure::info("missing", f64::NAN, "ratio", ""),
        ];
        assert_eq!(
            json(&figures),
            "[\n  {\"name\": \"bare_ns\", \"value\": 12.5, \"unit\": \"ns\"},\n  \
             {\"name\": \"missing\", \"value\": null, \"unit\": \"ratio\"}\n]\n"
        );
    }
}
