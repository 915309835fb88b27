//! Durations written as humans write them: `200ms`, `1s`, `5m`, `1m30s`.
//!
//! A tiny parser rather than a dependency: the grammar is one line, and the error
//! message can say exactly what was expected.

use std::time::Duration;

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {why} (write e.g. 200ms, 1s, 5m or 1m30s)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses one or more `<integer><unit>` groups, unit one of `ms`, `s`, `m`, `h`.
///
/// # Errors
/// When the text is empty, a group lacks its number or unit, the unit is unknown, or the
/// sum overflows.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let error = |why| DurationError {
        input: input.to_owned(),
        why,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(error("a number must come first"));
        }
        let (number, after) = rest.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| error("the number is too large"))?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(error("the unit is missing")),
            _ => return Err(error("the unit must be ms, s, m or h")),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| error("it is too long"))?;
        rest = after;
    }
    Ok(total)
}

/// Writes `duration` the way [`parse`] reads it (for `--help` and logs).
#[must_use]
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        format!("{millis}ms")
    } else if !millis.is_multiple_of(60_000) || millis == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{}m", millis / 60_000)
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms_and_rejects_the_rest() {
        let cases: &[(&str, &str, Option<Duration>)] = &[
            ("milliseconds", "200ms", Some(Duration::from_millis(200))),
            ("seconds", "1s", Some(Duration::from_secs(1))),
            ("minutes", "5m", Some(Duration::from_mins(5))),
            ("hours", "2h", Some(Duration::from_hours(2))),
            ("combined", "1m30s", Some(Duration::from_secs(90))),
            ("surrounding spaces", " 10s ", Some(Duration::from_secs(10))),
            ("zero", "0s", Some(Duration::ZERO)),
            ("empty", "", None),
            ("no unit", "10", None),
            ("no number", "s", None),
            ("unknown unit", "10d", None),
            ("negative", "-1s", None),
            ("fraction", "1.5s", None),
            ("space inside", "1 s", None),
            ("overflow", "99999999999999999999s", None),
        ];
        for (name, input, expected) in cases {
            let got = parse(input).ok();
            assert_eq!(got, *expected, "case {name}: parse({input:?})");
        }
    }

    #[test]
    fn errors_name_the_input_and_the_accepted_forms() {
        let message = parse("10d").expect_err("10d is not a duration").to_string();
        assert!(
            message.contains("`10d`") && message.contains("200ms, 1s, 5m"),
            "expected the input and examples in the message, got {message:?}"
        );
    }

    #[test]
    fn format_round_trips() {
        for millis in [0, 1, 200, 1000, 1500, 60_000, 90_000, 300_000] {
            let duration = Duration::from_millis(millis);
            assert_eq!(
                parse(&format(duration)),
                Ok(duration),
                "round trip of {millis} ms through {:?}",
                format(duration)
            );
        }
    }
}
