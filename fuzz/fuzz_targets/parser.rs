//! Fuzzes the shared packet parser with arbitrary frames: it must never panic, and its
//! verdicts must keep the invariants the kernel programs rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_common::{
    layout::{L4, Reason},
    parse::{Parsed, parse},
};

/// Ethernet + the smallest IP header + the smallest L4 header carrying a port (UDP).
const MIN_PORT_FRAME: usize = 14 + 20 + 8;

fuzz_target!(|frame: &[u8]| {
    let parsed = parse(frame, frame.len());
    match parsed {
        Parsed::Port {
            l4,
            syn,
            payload_offset,
            payload_len,
            ..
        } => {
            // The kernel multiplies payload_offset by GSO segments for byte counts: it must
            // be a real offset inside the frame, past every header.
            let offset = usize::from(payload_offset);
            assert!(
                offset <= frame.len(),
                "payload offset {offset} past a {}-byte frame",
                frame.len()
            );
            assert!(
                offset >= MIN_PORT_FRAME,
                "payload offset {offset} inside the headers"
            );
            // The payload classifier reads inside payload_offset..+payload_len only.
            let end = offset + usize::from(payload_len);
            assert!(
                end <= frame.len(),
                "payload {offset}..{end} past a {}-byte frame",
                frame.len()
            );
            assert!(l4 == L4::Tcp || !syn, "a UDP datagram counted as a SYN");
        }
        Parsed::Unparsed {
            reason,
            ip_protocol,
        } => match reason {
            Reason::Icmp => assert!(
                matches!(ip_protocol, Some(1 | 58)),
                "icmp with IP protocol {ip_protocol:?}"
            ),
            Reason::OtherL4 => assert!(
                matches!(ip_protocol, Some(p) if p != 6 && p != 17),
                "other_l4 with IP protocol {ip_protocol:?}"
            ),
            Reason::InternalError => panic!("the parser reported an internal error"),
            _ => assert_eq!(ip_protocol, None, "{reason:?} with an IP protocol"),
        },
    }
    // Only a malformed verdict may depend on bytes past the end of the frame: every other
    // verdict was reached reading inside it, so trailing bytes (Ethernet padding, an FCS)
    // cannot change it.
    if !matches!(
        parsed,
        Parsed::Unparsed {
            reason: Reason::Malformed,
            ..
        }
    ) {
        let mut padded = frame.to_vec();
        padded.extend_from_slice(&[0xa5; 64]);
        assert_eq!(
            parse(padded.as_slice(), padded.len()),
            parsed,
            "trailing bytes changed the verdict"
        );
    }
});
