//! The packet-shape table through the shared parser on the host: the same verdicts the
//! kernel programs must reach (see `kernel_table.rs`), without a kernel.

use monitor_common::parse::{Parsed, parse};
use portmon_tests::frames::{cases, hex};

#[test]
fn every_case_parses_to_its_expected_verdict() {
    let mut failures = Vec::new();
    for case in cases() {
        let got = parse(case.frame.as_slice(), case.frame.len());
        if got != case.expected {
            failures.push(format!(
                "{}: expected {:?}, got {got:?}\n  frame {}",
                case.name,
                case.expected,
                hex(&case.frame)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = cases().iter().map(|case| case.name).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "two table rows share a name");
}

/// Every truncation of every well-formed port case must parse without panicking and never
/// yield a port whose payload starts past the cut.
#[test]
fn truncations_never_report_a_payload_past_the_frame() {
    for case in cases() {
        for cut in 0..=case.frame.len() {
            let short = &case.frame[..cut];
            if let Parsed::Port { payload_offset, .. } = parse(short, short.len()) {
                assert!(
                    usize::from(payload_offset) <= cut,
                    "{} cut to {cut}: payload offset {payload_offset} past the frame",
                    case.name
                );
            }
        }
    }
}
