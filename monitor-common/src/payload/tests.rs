//! The classifier against a table of signatures and near misses, its read discipline, and
//! a differential against [`reference`] on generated and mutated payloads.

use core::cell::RefCell;

use super::{
    PayloadKind, classify, reference,
    samples::{Rng, corpus, mutate, table, with},
};
use crate::parse::Packet;

extern crate std;
use std::{format, string::String, vec, vec::Vec};

/// Headers before the payload in the test buffers: Ethernet, IPv4 and TCP with timestamps.
const HEADERS: usize = 66;

/// Runs the fast path on `payload` embedded after [`HEADERS`] bytes and followed by
/// `trailer`, which lies past the payload's end and must not change the outcome.
fn fast(payload: &[u8], trailer: &[u8]) -> PayloadKind {
    let mut buffer = vec![0x45u8; HEADERS];
    buffer.extend_from_slice(payload);
    buffer.extend_from_slice(trailer);
    classify(buffer.as_slice(), HEADERS, payload.len())
}

/// Trailers that would complete many signatures if the classifier read past the payload.
const TRAILERS: [&[u8]; 4] = [
    b"",
    b"                ",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"T / HTTP/1.1\r\n\r\n",
];

#[test]
fn every_signature_and_near_miss_is_classified_as_expected_by_both_classifiers() {
    let mut failures = Vec::<String>::new();
    for case in table() {
        let by_reference = reference::classify(&case.payload);
        if by_reference != case.expected {
            failures.push(format!(
                "{}: reference: expected {:?}, got {by_reference:?}",
                case.name, case.expected
            ));
        }
        for trailer in TRAILERS {
            let by_fast_path = fast(&case.payload, trailer);
            if by_fast_path != case.expected {
                failures.push(format!(
                    "{}: fast path with trailer {trailer:02x?}: expected {:?}, got {by_fast_path:?}",
                    case.name, case.expected
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_kind() {
    let table = table();
    for kind in PayloadKind::ALL {
        assert!(
            table.iter().any(|case| case.expected == kind),
            "expected a table row for {kind:?}, found none"
        );
    }
}

#[test]
fn labels_are_distinct_and_indices_follow_all() {
    for (index, kind) in PayloadKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, index, "expected {kind:?} at index {index}");
        for other in &PayloadKind::ALL[index + 1..] {
            assert_ne!(kind.as_str(), other.as_str(), "expected distinct labels");
        }
    }
}

/// An accessor that records every read and refuses those past `readable` bytes.
struct Recording<'a> {
    bytes: &'a [u8],
    readable: usize,
    reads: RefCell<Vec<(usize, usize)>>,
}

impl Packet for Recording<'_> {
    type Bytes<const N: usize> = [u8; N];

    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.reads.borrow_mut().push((offset, N));
        if offset + N > self.readable {
            return None;
        }
        self.bytes.read::<N>(offset)
    }
}

#[test]
fn reads_are_at_most_two_and_stay_inside_the_payload() {
    let sample = b"a0001 CAPABILITY\r\nand more bytes after it";
    let mut buffer = vec![0u8; HEADERS];
    buffer.extend_from_slice(sample);
    for len in 0..=sample.len() {
        let packet = Recording {
            bytes: &buffer,
            readable: buffer.len(),
            reads: RefCell::new(Vec::new()),
        };
        let kind = classify(&packet, HEADERS, len);
        let reads = packet.reads.into_inner();
        assert!(
            reads.len() <= 2,
            "len {len}: expected at most 2 reads, got {reads:?}"
        );
        for &(offset, size) in &reads {
            assert!(
                offset >= HEADERS && offset + size <= HEADERS + len,
                "len {len}: expected reads inside {HEADERS}..{}, got {size} bytes at {offset}",
                HEADERS + len
            );
        }
        assert_eq!(
            kind,
            reference::classify(&sample[..len]),
            "len {len}: fast path and reference disagree"
        );
    }
}

#[test]
fn a_payload_the_accessor_cannot_read_is_other() {
    // An XDP multi-buffer frame: the payload runs past the linear part.
    let mut buffer = vec![0u8; HEADERS];
    buffer.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    for readable in HEADERS..HEADERS + 16 {
        let packet = Recording {
            bytes: &buffer,
            readable,
            reads: RefCell::new(Vec::new()),
        };
        let kind = classify(&packet, HEADERS, buffer.len() - HEADERS);
        assert_eq!(
            kind,
            PayloadKind::Other,
            "{} readable payload bytes: expected Other, got {kind:?}",
            readable - HEADERS
        );
    }
}

#[test]
fn fast_path_agrees_with_the_reference_on_100k_generated_payloads() {
    const RUNS: usize = 100_000;
    let corpus = corpus();
    let mut rng = Rng(0x7061_796c_6f61_6406);
    let mut seen = [0usize; PayloadKind::COUNT as usize];
    let mut disagreements = Vec::<String>::new();
    for run in 0..RUNS {
        let mut payload = if rng.below(8) == 0 {
            (0..rng.below(40)).map(|_| rng.byte()).collect()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        for _ in 0..rng.below(4) {
            mutate(&mut rng, &mut payload);
        }
        // The buffer keeps bytes past the payload's end: a cut keeps the cut-off bytes
        // there, so a classifier reading past the end would see the whole signature.
        let visible = rng
            .below(payload.len() + 1)
            .max(payload.len().saturating_sub(rng.below(3)));
        let expected = reference::classify(&payload[..visible]);
        let mut buffer = vec![0u8; HEADERS];
        buffer.extend_from_slice(&payload);
        let got = classify(buffer.as_slice(), HEADERS, visible);
        seen[expected as usize] += 1;
        if got != expected && disagreements.len() < 20 {
            disagreements.push(format!(
                "run {run}: payload {:02x?} (first {visible} bytes): reference {expected:?}, fast path {got:?}",
                &payload
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
    for kind in PayloadKind::ALL {
        assert!(
            seen[kind as usize] >= 200,
            "expected at least 200 generated payloads of kind {kind:?}, got {} (seen {seen:?})",
            seen[kind as usize]
        );
    }
}

#[test]
fn every_single_byte_substitution_of_every_sample_agrees() {
    let mut disagreements = Vec::<String>::new();
    let mut checked = 0usize;
    for sample in corpus() {
        for at in 0..sample.len().min(20) {
            for value in 0..=u8::MAX {
                let mutated = with(sample.clone(), at, value);
                let expected = reference::classify(&mutated);
                let got = fast(&mutated, b"");
                checked += 1;
                if got != expected && disagreements.len() < 20 {
                    disagreements.push(format!(
                        "{mutated:02x?}: reference {expected:?}, fast path {got:?}"
                    ));
                }
            }
        }
    }
    assert!(
        checked > 100_000,
        "expected over 100k substitutions, checked {checked}"
    );
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn uniform_random_payloads_almost_never_match_a_signature() {
    // The chance that a mid-stream segment of an encrypted stream looks like a signature:
    // the largest is TLS, about 1e-7 (see the module docs), so 100k random payloads
    // should match nothing.
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut matched = Vec::new();
    for _ in 0..100_000 {
        let payload: Vec<u8> = (0..16 + rng.below(48)).map(|_| rng.byte()).collect();
        let kind = fast(&payload, b"");
        if kind != PayloadKind::Other {
            matched.push((kind, payload));
        }
    }
    assert!(
        matched.is_empty(),
        "expected no random payload to match, got {matched:02x?}"
    );
}
